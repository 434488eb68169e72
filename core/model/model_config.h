// ModelConfig: the architecture of a decoder-only transformer (GPT-2 or Llama family), the
// slice of it one rank holds (ShardSpec) and which head sits on top (HeadKind).
//
// Both families share one block structure; the family picks the norm (LayerNorm vs RMSNorm),
// the position scheme (learned table vs RoPE) and the MLP (GELU vs SwiGLU). Everything else
// is a field, so a config file can describe any member of either family.
//
// Plain values: safe to copy and share across threads and ranks.
#pragma once

#include <cstdint>
#include <string>

#include "core/backend.h"

namespace loom::model {

enum class Family { GPT2, Llama };

const char* family_name(Family family);
// "gpt2" or "llama" (case-sensitive); throws std::invalid_argument naming the accepted values.
Family parse_family(const std::string& text);

// What the final hidden state feeds: LM logits + cross-entropy, or one scalar per token
// (value and reward models read the last token of each sequence).
enum class HeadKind { LM, Scalar };

const char* head_kind_name(HeadKind kind);

struct ModelConfig {
  Family family = Family::GPT2;
  std::int64_t vocab_size = 50257;
  std::int64_t d_model = 768;
  std::int64_t n_layers = 12;
  std::int64_t n_heads = 12;
  std::int64_t n_kv_heads = 12;  // == n_heads for GPT-2; Llama may group queries (GQA)
  std::int64_t d_ff = 3072;      // MLP hidden width (GPT-2: 4*d_model)
  std::int64_t max_seq_len = 1024;
  float norm_eps = 1e-5f;
  RopeConfig rope;               // Llama only
  bool tie_embeddings = true;    // LM head reuses embed.tokens.weight
  bool bias = true;              // biases on the qkv, attention-out and MLP linears
  float init_std = 0.02f;

  std::int64_t head_dim() const { return d_model / n_heads; }
  std::int64_t qkv_dim() const { return (n_heads + 2 * n_kv_heads) * head_dim(); }

  // Throws std::invalid_argument naming the offending field and what was expected.
  void validate() const;

  // Parameters of the whole (unsharded) model with the given head; tied embeddings count once.
  std::int64_t parameter_count(HeadKind head = HeadKind::LM) const;

  // Training FLOPs (forward + backward) per token at sequence length seq_len, PaLM appendix B:
  // 6·N + 12·L·(Hq·D)·T, where N counts the parameters that take part in a matmul (every
  // parameter except the embedding tables, plus the LM head's V·C once, tied or not).
  double training_flops_per_token(std::int64_t seq_len) const;

  // GPT-2 small as released by OpenAI: 124,439,808 parameters.
  static ModelConfig gpt2_124m();
  // The settings a family implies (norm, biases, tying, eps), with the given sizes.
  static ModelConfig from_family(Family family, std::int64_t vocab_size, std::int64_t d_model,
                                 std::int64_t n_layers, std::int64_t n_heads, std::int64_t n_kv_heads,
                                 std::int64_t d_ff, std::int64_t max_seq_len);
};

// The part of the model one rank holds: layers [layer_begin, layer_end) of the pipeline and
// slice tp_rank of tp_size of every tensor-parallel weight. The embeddings live with layer
// 0, the final norm and head with the last layer.
struct ShardSpec {
  std::int64_t layer_begin = 0;
  std::int64_t layer_end = -1;  // -1: through the last layer
  int tp_rank = 0;
  int tp_size = 1;

  static ShardSpec whole(const ModelConfig& config) { return ShardSpec{0, config.n_layers, 0, 1}; }
  // layer_end = -1 resolved; throws std::invalid_argument when the spec does not fit config
  // (range outside the layers, heads/kv heads/d_ff/vocab not divisible by tp_size).
  ShardSpec resolved(const ModelConfig& config) const;

  bool owns_embeddings() const { return layer_begin == 0; }
  bool owns_head(const ModelConfig& config) const { return layer_end == config.n_layers; }
};

}  // namespace loom::model
