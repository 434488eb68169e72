#include "io/hf/hf_names.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>

#include "core/model/parameter_layout.h"

namespace loom::io::hf {
namespace {

using model::Family;
using model::ModelConfig;

constexpr const char* kGpt2Prefix = "transformer.";

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "weight" or "bias": the last component of a loom name.
std::string kind_of(const std::string& loom_name) { return loom_name.substr(loom_name.rfind('.') + 1); }

// Per-layer module names without the "layers.N." prefix, for names mapped one to one.
const std::map<std::string, std::string>& llama_layer_modules() {
  static const std::map<std::string, std::string> table = {
      {"attn_norm", "input_layernorm"},      {"attn.out", "self_attn.o_proj"}, {"mlp_norm", "post_attention_layernorm"},
      {"mlp.gate", "mlp.gate_proj"},         {"mlp.up", "mlp.up_proj"},        {"mlp.down", "mlp.down_proj"}};
  return table;
}

const std::map<std::string, std::string>& gpt2_layer_modules() {
  static const std::map<std::string, std::string> table = {{"attn_norm", "ln_1"},       {"mlp_norm", "ln_2"},
                                                           {"attn.qkv", "attn.c_attn"}, {"attn.out", "attn.c_proj"},
                                                           {"mlp.up", "mlp.c_fc"},      {"mlp.down", "mlp.c_proj"}};
  return table;
}

Shape transposed_shape(const Shape& shape) { return shape.size() == 2 ? Shape{shape[1], shape[0]} : shape; }

HfPiece whole(const std::string& hf_name, const Shape& loom_shape, bool transposed) {
  return HfPiece{hf_name, transposed ? transposed_shape(loom_shape) : loom_shape, 0, loom_shape[0], transposed};
}

TensorMapping map_llama(const ModelConfig& config, const model::ParameterSpec& spec) {
  TensorMapping m{spec.name, spec.global_shape, {}};
  const std::string& name = spec.name;
  if (name == "embed.tokens.weight") {
    m.pieces.push_back(whole("model.embed_tokens.weight", spec.global_shape, false));
  } else if (name == "final_norm.weight") {
    m.pieces.push_back(whole("model.norm.weight", spec.global_shape, false));
  } else if (name == "lm_head.weight") {
    m.pieces.push_back(whole("lm_head.weight", spec.global_shape, false));
  } else {
    // layers.N.<module>.<kind>
    const std::size_t layer_end = name.find('.', std::strlen("layers."));
    const std::string layer = name.substr(0, layer_end);
    const std::string module = name.substr(layer_end + 1, name.rfind('.') - layer_end - 1);
    const std::string kind = kind_of(name);
    const std::string hf_layer = "model." + layer + ".";
    if (module == "attn.qkv") {
      const std::int64_t q_rows = config.n_heads * config.head_dim();
      const std::int64_t kv_rows = config.n_kv_heads * config.head_dim();
      std::int64_t row = 0;
      for (const auto& [proj, rows] : {std::pair<const char*, std::int64_t>{"q_proj", q_rows},
                                       {"k_proj", kv_rows}, {"v_proj", kv_rows}}) {
        Shape shape = spec.global_shape;
        shape[0] = rows;
        m.pieces.push_back(HfPiece{hf_layer + "self_attn." + proj + "." + kind, shape, row, rows, false});
        row += rows;
      }
    } else {
      const auto it = llama_layer_modules().find(module);
      if (it == llama_layer_modules().end()) throw std::logic_error("hf_tensor_mapping: no llama name for " + name);
      m.pieces.push_back(whole(hf_layer + it->second + "." + kind, spec.global_shape, false));
    }
  }
  return m;
}

TensorMapping map_gpt2(const model::ParameterSpec& spec) {
  TensorMapping m{spec.name, spec.global_shape, {}};
  const std::string& name = spec.name;
  const std::string prefix = kGpt2Prefix;
  if (name == "embed.tokens.weight") {
    m.pieces.push_back(whole(prefix + "wte.weight", spec.global_shape, false));
  } else if (name == "embed.positions.weight") {
    m.pieces.push_back(whole(prefix + "wpe.weight", spec.global_shape, false));
  } else if (name.rfind("final_norm.", 0) == 0) {
    m.pieces.push_back(whole(prefix + "ln_f." + kind_of(name), spec.global_shape, false));
  } else if (name == "lm_head.weight") {
    m.pieces.push_back(whole("lm_head.weight", spec.global_shape, false));
  } else {
    const std::size_t layer_end = name.find('.', std::strlen("layers."));
    const std::string layer_index = name.substr(std::strlen("layers."), layer_end - std::strlen("layers."));
    const std::string module = name.substr(layer_end + 1, name.rfind('.') - layer_end - 1);
    const std::string kind = kind_of(name);
    const auto it = gpt2_layer_modules().find(module);
    if (it == gpt2_layer_modules().end()) throw std::logic_error("hf_tensor_mapping: no gpt2 name for " + name);
    // Conv1D keeps its weight as [in, out]; norms and biases are vectors.
    const bool conv1d_weight = kind == "weight" && spec.global_shape.size() == 2;
    m.pieces.push_back(
        whole(prefix + "h." + layer_index + "." + it->second + "." + kind, spec.global_shape, conv1d_weight));
  }
  return m;
}

std::int64_t row_width(const Shape& shape) { return shape.size() > 1 ? shape_numel(shape) / shape[0] : 1; }

}  // namespace

std::vector<TensorMapping> hf_tensor_mapping(const ModelConfig& config) {
  std::vector<TensorMapping> out;
  for (const model::ParameterSpec& spec :
       model::parameter_specs(config, model::ShardSpec::whole(config), model::HeadKind::LM)) {
    out.push_back(config.family == Family::Llama ? map_llama(config, spec) : map_gpt2(spec));
  }
  return out;
}

bool is_ignored_hf_buffer(const std::string& hf_name) {
  return ends_with(hf_name, ".attn.bias") || ends_with(hf_name, ".attn.masked_bias") ||
         ends_with(hf_name, ".rotary_emb.inv_freq");
}

std::string canonical_hf_name(Family family, const std::string& hf_name) {
  if (family != Family::GPT2 || hf_name.rfind(kGpt2Prefix, 0) == 0 || hf_name.rfind("lm_head.", 0) == 0) {
    return hf_name;
  }
  return kGpt2Prefix + hf_name;
}

std::vector<Tensor> split_for_hf(const TensorMapping& mapping, const Tensor& loom_tensor) {
  if (loom_tensor.shape() != mapping.loom_shape) {
    throw std::invalid_argument("split_for_hf: " + mapping.loom_name + " is " + shape_string(loom_tensor.shape()) +
                                ", expected " + shape_string(mapping.loom_shape));
  }
  // A tensor stored whole and untransposed is shared, not copied: export holds the model once.
  if (mapping.pieces.size() == 1 && !mapping.pieces[0].transposed) return {loom_tensor};
  const std::int64_t cols = row_width(mapping.loom_shape);
  const float* src = loom_tensor.data<float>();
  std::vector<Tensor> out;
  for (const HfPiece& piece : mapping.pieces) {
    Tensor t = Tensor::empty(piece.hf_shape, DType::F32);
    float* dst = t.data<float>();
    const float* rows = src + piece.row_begin * cols;
    if (!piece.transposed) {
      std::copy(rows, rows + piece.rows * cols, dst);
    } else {
      for (std::int64_t r = 0; r < piece.rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) dst[c * piece.rows + r] = rows[r * cols + c];
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

void place_from_hf(const HfPiece& piece, const Tensor& hf, Tensor& loom_tensor) {
  if (hf.shape() != piece.hf_shape) {
    throw std::invalid_argument("tensor '" + piece.hf_name + "' has shape " + shape_string(hf.shape()) +
                                ", the model config implies " + shape_string(piece.hf_shape));
  }
  const std::int64_t cols = row_width(loom_tensor.shape());
  const float* src = hf.data<float>();
  float* rows = loom_tensor.data<float>() + piece.row_begin * cols;
  if (!piece.transposed) {
    std::copy(src, src + piece.rows * cols, rows);
  } else {
    for (std::int64_t c = 0; c < cols; ++c) {
      for (std::int64_t r = 0; r < piece.rows; ++r) rows[r * cols + c] = src[c * piece.rows + r];
    }
  }
}

}  // namespace loom::io::hf
