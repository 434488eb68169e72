// LoraConfig: low-rank adapters (LoRA, Hu et al. 2021) on some of every block's linears.
// A target W [out, in] gains two trainable matrices A [r, in] and B [out, r]; the layer
// computes y = W x + (alpha / r) · B (A · dropout(x)) with W frozen. B starts at zero, so a
// fresh adapter leaves the model's outputs unchanged. With rank > 0 NO base parameter is
// trained (embeddings, norms and head are frozen too, as PEFT's default).
//
// The adapters are ordinary parameter entries "layers.N.<target>.lora_a" / ".lora_b" of the
// shard's ParameterSet (parameter_layout.h), placed after every base parameter so that the
// trainable ones form one contiguous range of the flat buffers.
//
// Plain values: safe to copy and share across threads and ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::model {

// The linears of a block an adapter may sit on, in block order.
enum class LoraTarget : std::uint8_t { Qkv, Out, Gate, Up, Down };
inline constexpr int kLoraTargets = 5;

// "attn.qkv", "attn.out", "mlp.gate", "mlp.up", "mlp.down": the linear's parameter prefix.
const char* lora_target_name(LoraTarget target);
// Throws std::invalid_argument naming the valid targets.
LoraTarget parse_lora_target(const std::string& text);
// Column-parallel targets (qkv, gate, up) are cut by output rows under tensor parallelism:
// their B is split by rows and A replicated; row-parallel ones (out, down) split A by
// columns and replicate B.
bool lora_column_parallel(LoraTarget target);

struct LoraConfig {
  std::int64_t rank = 0;  // r; 0 = no adapters
  float alpha = 16.0f;
  float dropout = 0.0f;   // on the adapter input only, training forwards only
  std::vector<std::string> targets = {"attn.qkv", "attn.out"};

  bool enabled() const { return rank > 0; }
  float scale() const { return enabled() ? alpha / static_cast<float>(rank) : 0.0f; }
  // Whether `target` carries an adapter (false for every target when disabled).
  bool has(LoraTarget target) const;
  // Throws std::invalid_argument naming the offending field (rank >= 0, alpha > 0,
  // dropout in [0, 1), targets valid, non-empty when enabled, no repeats).
  void validate() const;
};

// True for the name of an adapter entry (ends in ".lora_a" or ".lora_b").
bool is_lora_parameter(const std::string& name);

}  // namespace loom::model
