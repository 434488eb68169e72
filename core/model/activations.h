// Activation memory of a model shard: what the forward pass saves for the backward pass,
// the backward scratch, and the head's buffers, all carved as views out of a few large
// arenas sized for the largest (B, T) seen so far. Changing (B, T) re-carves the views; only
// a larger token count than ever before reallocates, so steady-state training allocates
// nothing.
//
// Ownership: each arena owns its memory; the views alias it and are invalidated by the next
// plan() that changes (B, T). Threads: one owner thread.
#pragma once

#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/model/lora_config.h"
#include "core/model/model_config.h"

namespace loom::model {

// Per-rank sizes of one shard (tensor-parallel dims already divided by tp_size).
struct ShardDims {
  Family family = Family::GPT2;
  std::int64_t d_model = 0;      // C (never split)
  std::int64_t head_dim = 0;     // D
  std::int64_t q_heads = 0;      // Hq / tp
  std::int64_t kv_heads = 0;     // Hkv / tp
  std::int64_t ff = 0;           // d_ff / tp
  std::int64_t vocab = 0;        // V / tp
  std::int64_t vocab_global = 0; // V
  std::int64_t layers = 0;       // layers this stage owns
  // Storage of weights, activations and gradients (f32, or bf16 for mixed precision);
  // normalisation statistics, log-sum-exps and losses are always f32.
  DType dtype = DType::F32;
  // LoRA (lora_config.h): the adapters' rank (0: none), which targets carry one (bit t for
  // LoraTarget t) and whether their inputs are dropped out (then saved for the backward).
  std::int64_t lora_rank = 0;
  std::uint8_t lora_targets = 0;
  bool lora_dropout = false;

  std::int64_t q_dim() const { return q_heads * head_dim; }
  std::int64_t qkv_dim() const { return (q_heads + 2 * kv_heads) * head_dim; }
  bool has_lora(LoraTarget t) const { return lora_rank > 0 && (lora_targets >> static_cast<int>(t) & 1) != 0; }
  // The local input width of a target linear.
  std::int64_t lora_in(LoraTarget t) const {
    return t == LoraTarget::Out ? q_dim() : t == LoraTarget::Down ? ff : d_model;
  }
  void set_lora(const LoraConfig& lora);

  static ShardDims of(const ModelConfig& config, const ShardSpec& resolved);
};

// Contiguous buffers handed out in aligned pieces: take() in the compute dtype, take_f32()
// for statistics. In f32 both come from one buffer; with a bf16 compute dtype the f32
// pieces live in a second one. Without storage it only counts (the sizing pass).
class Arena {
 public:
  Arena(DType dtype, Tensor* storage, Tensor* f32_storage) : dtype_(dtype), storage_{storage, f32_storage} {}
  Tensor take(const Shape& shape) { return take_from(0, shape); }
  Tensor take_f32(const Shape& shape) { return take_from(dtype_ == DType::F32 ? 0 : 1, shape); }
  std::int64_t used(int buffer) const { return used_[buffer]; }
  // Bytes of both buffers.
  std::int64_t bytes() const;

 private:
  Tensor take_from(int buffer, const Shape& shape);
  DType dtype_;
  Tensor* storage_[2];
  std::int64_t used_[2] = {0, 0};
};

// What one block's forward saves (N = B·T tokens; mean only for LayerNorm, gate only for
// SwiGLU).
struct LayerActivations {
  Tensor attn_norm_out;   // [N, C]
  Tensor attn_norm_mean;  // [N]
  Tensor attn_norm_rstd;  // [N]
  Tensor qkv;             // [N, (Hq+2Hkv)·D], after RoPE
  Tensor attn_out;        // [N, Hq·D]
  Tensor attn_lse;        // [B, Hq, T]
  Tensor residual_mid;    // [N, C]  input + attention branch
  Tensor mlp_norm_out;    // [N, C]
  Tensor mlp_norm_mean;   // [N]
  Tensor mlp_norm_rstd;   // [N]
  Tensor mlp_gate;        // [N, F]  SwiGLU gate pre-activation
  Tensor mlp_up;          // [N, F]  up projection (GELU input for GPT-2)
  Tensor mlp_act;         // [N, F]  GELU(up) or silu(gate)·up
  Tensor output;          // [N, C]  residual_mid + MLP branch
  Tensor lora_u[kLoraTargets];  // [N, r]  A·dropout(x) of each adapted linear
  Tensor lora_x[kLoraTargets];  // [N, in] dropout(x) (lora dropout > 0 only)
};

// One micro-batch's saved state on this stage. Pipeline schedules keep several in flight.
struct SlotActivations {
  std::int64_t batch = 0, seq = 0;
  Tensor input;                          // [B, T, C] the stage's input hidden state
  std::vector<LayerActivations> layers;  // one per owned layer
  Tensor final_norm_out;                 // [N, C]   (head stage)
  Tensor final_norm_mean;                // [N]
  Tensor final_norm_rstd;                // [N]
  Tensor values;                         // [B, T]   scalar head output, f32
  Tensor values_compute;                 // [B, T]   the same in the compute dtype (bf16 only)

  void plan(const ShardDims& dims, bool has_head, std::int64_t batch, std::int64_t seq, Device device);
  // Bytes one slot takes for (B, T), without allocating (memory reports).
  static std::int64_t bytes_for(const ShardDims& dims, bool has_head, std::int64_t batch, std::int64_t seq);

 private:
  void carve(Arena& arena, const ShardDims& dims, bool has_head, std::int64_t batch, std::int64_t seq);
  Tensor storage_, f32_storage_;
};

// Gradient buffers reused by every layer's backward (one micro-batch at a time) and the LM
// head's buffers (logits are [N, V]: the largest activation, so there is one set, shared by
// all slots; dlogits overwrite logits in place).
struct Workspace {
  std::int64_t batch = 0, seq = 0;
  Tensor d_residual;    // [N, C] running gradient of the residual stream
  Tensor d_norm;        // [N, C] gradient of a norm output
  Tensor d_attn;        // [N, Hq·D]
  Tensor d_qkv;         // [N, (Hq+2Hkv)·D]
  Tensor d_mlp_act;     // [N, F]
  Tensor d_mlp_gate;    // [N, F]
  Tensor d_mlp_up;      // [N, F]
  Tensor logits;        // [N, V/tp] (LM head only); holds dlogits after backward
  Tensor loss_terms;    // [2, N] row 0: per-token loss (then dloss), row 1: 1 for a counted target
  Tensor ones_tokens;   // [N, 1] all ones: row sums of loss_terms by one GEMV-shaped matmul
  Tensor loss_totals;   // [2, 1] {Σ loss, count}
  Tensor d_lora_u;      // [N, r] (LoRA only)
  Tensor d_lora_x;      // [N, widest adapted input] (LoRA dropout only)
  Tensor d_values;      // [N, 1] the scalar head's f32 dvalues in the compute dtype (bf16 only)

  void plan(const ShardDims& dims, bool lm_head, std::int64_t batch, std::int64_t seq, Backend& backend);
  static std::int64_t bytes_for(const ShardDims& dims, bool lm_head, std::int64_t batch, std::int64_t seq);

 private:
  void carve(Arena& arena, const ShardDims& dims, bool lm_head, std::int64_t batch, std::int64_t seq);
  Tensor storage_, f32_storage_;
};

}  // namespace loom::model
