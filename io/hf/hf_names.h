// The correspondence between loom's parameters (core/model/parameter_layout.h) and the
// tensors of a Hugging Face checkpoint of the same model, for both families:
//
//   Llama (LlamaForCausalLM)           loom
//   model.embed_tokens.weight           embed.tokens.weight
//   model.layers.N.input_layernorm      layers.N.attn_norm
//   model.layers.N.self_attn.q_proj  ┐
//                           k_proj  ├─ layers.N.attn.qkv (row sections Hq·D, Hkv·D, Hkv·D)
//                           v_proj  ┘
//   model.layers.N.self_attn.o_proj     layers.N.attn.out
//   model.layers.N.post_attention_layernorm  layers.N.mlp_norm
//   model.layers.N.mlp.{gate,up,down}_proj   layers.N.mlp.{gate,up,down}
//   model.norm.weight, lm_head.weight   final_norm.weight, lm_head.weight (untied only)
//
//   GPT-2 (GPT2LMHeadModel)            loom
//   transformer.wte / wpe               embed.tokens / embed.positions
//   transformer.h.N.ln_1 / ln_2         layers.N.attn_norm / layers.N.mlp_norm
//   transformer.h.N.attn.c_attn         layers.N.attn.qkv   (Conv1D: weight stored [in, out])
//   transformer.h.N.attn.c_proj         layers.N.attn.out   (Conv1D)
//   transformer.h.N.mlp.c_fc / c_proj   layers.N.mlp.up / layers.N.mlp.down (Conv1D)
//   transformer.ln_f                    final_norm
//
// Both use the rotate-half RoPE convention and the same q/k/v head order, so weights move
// without permutation; GPT-2's Conv1D weights are transposed.
//
// Pure functions over values: safe from any thread or rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/model_config.h"
#include "core/tensor.h"

namespace loom::io::hf {

// Rows [row_begin, row_begin + rows) (dimension 0) of a loom tensor, stored as one Hugging
// Face tensor of shape hf_shape: the same rows, or their transpose for a GPT-2 Conv1D weight.
struct HfPiece {
  std::string hf_name;
  Shape hf_shape;
  std::int64_t row_begin = 0;
  std::int64_t rows = 0;
  bool transposed = false;
};

struct TensorMapping {
  std::string loom_name;
  Shape loom_shape;            // global shape
  std::vector<HfPiece> pieces;  // in row order, covering every row
};

// Every parameter of the whole model with an LM head, in loom's parameter order.
// Throws std::invalid_argument when the config is invalid.
std::vector<TensorMapping> hf_tensor_mapping(const model::ModelConfig& config);

// Tensors that Hugging Face files may hold but that carry no weights (GPT-2's causal-mask
// buffers attn.bias / attn.masked_bias, older Llama files' rotary_emb.inv_freq).
bool is_ignored_hf_buffer(const std::string& hf_name);

// The name hf_tensor_mapping uses for a name found in a file: GPT-2 files come with or
// without the "transformer." prefix of GPT2LMHeadModel.
std::string canonical_hf_name(model::Family family, const std::string& hf_name);

// The pieces of one loom tensor, each of its hf_shape (export): copies, or the tensor itself
// when it is stored whole and untransposed.
std::vector<Tensor> split_for_hf(const TensorMapping& mapping, const Tensor& loom_tensor);

// Writes HF tensor `hf` (of piece.hf_shape) into its rows of `loom_tensor` (import).
void place_from_hf(const HfPiece& piece, const Tensor& hf, Tensor& loom_tensor);

}  // namespace loom::io::hf
