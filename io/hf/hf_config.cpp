#include "io/hf/hf_config.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace loom::io::hf {
namespace {

using model::Family;
using model::ModelConfig;
using nlohmann::json;

// The RoPE base loom's NTK-aware scaling runs with (core/kernels/cpu/rope.cpp).
double ntk_theta(double theta, double factor, std::int64_t rotary_dim) {
  const auto d = static_cast<double>(rotary_dim);
  return theta * std::pow(factor, d / (d - 2.0));
}

// Typed access to config.json with transformers' defaults; null counts as absent.
class HfFields {
 public:
  HfFields(const json& config, std::string source) : config_(config), source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw std::runtime_error(source_ + ": " + key + " " + what);
  }
  bool has(const std::string& key) const { return config_.contains(key) && !config_[key].is_null(); }

  std::int64_t required_int(const std::string& key) const {
    if (!has(key)) fail(key, "is missing (a positive integer is required)");
    return int_or(key, 0);
  }
  std::int64_t int_or(const std::string& key, std::int64_t fallback) const {
    if (!has(key)) return fallback;
    const json& v = config_[key];
    if (!v.is_number_integer()) fail(key, "must be an integer, got " + v.dump());
    return v.get<std::int64_t>();
  }
  double number_or(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = config_[key];
    if (!v.is_number()) fail(key, "must be a number, got " + v.dump());
    return v.get<double>();
  }
  bool bool_or(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = config_[key];
    if (!v.is_boolean()) fail(key, "must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  std::string string_or(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = config_[key];
    if (!v.is_string()) fail(key, "must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  const json& raw(const std::string& key) const { return config_[key]; }

 private:
  const json& config_;
  std::string source_;
};

Family family_of(const HfFields& f) {
  std::string type = f.string_or("model_type", "");
  if (type.empty() && f.has("architectures") && f.raw("architectures").is_array() && !f.raw("architectures").empty()) {
    const json& first = f.raw("architectures")[0];
    if (first == "LlamaForCausalLM") type = "llama";
    if (first == "GPT2LMHeadModel") type = "gpt2";
  }
  if (type == "llama") return Family::Llama;
  if (type == "gpt2") return Family::GPT2;
  if (type.empty()) f.fail("model_type", "is missing (loom imports model_type \"llama\" and \"gpt2\")");
  f.fail("model_type", "'" + type + "' is not supported (loom imports \"llama\" and \"gpt2\")");
}

void read_llama_rope(const HfFields& f, ModelConfig& c) {
  c.rope.theta = static_cast<float>(f.number_or("rope_theta", 10000.0));
  if (f.number_or("partial_rotary_factor", 1.0) != 1.0) {
    f.fail("partial_rotary_factor", "must be 1 (loom's llama rotates whole heads)");
  }
  if (f.has("rope_scaling")) {
    const json& s = f.raw("rope_scaling");
    if (!s.is_object()) f.fail("rope_scaling", "must be an object or null, got " + s.dump());
    const json type = s.contains("rope_type") ? s["rope_type"] : s.value("type", json("default"));
    if (type == "linear") {
      if (!s.contains("factor") || !s["factor"].is_number() || s["factor"].get<double>() < 1.0) {
        f.fail("rope_scaling.factor", "must be a number >= 1 for linear scaling, got " + s.value("factor", json()).dump());
      }
      c.rope.scaling = RopeConfig::Scaling::Linear;
      c.rope.factor = s["factor"].get<float>();
    } else if (type != "default") {
      f.fail("rope_scaling.rope_type", type.dump() + " is not supported (loom supports \"linear\"; \"dynamic\", "
                                                     "\"yarn\", \"longrope\" and \"llama3\" are not implemented)");
    }
  }
  if (f.has("loom_rope")) {
    const json& l = f.raw("loom_rope");
    if (!l.is_object() || l.value("scaling", "") != "ntk" || !l.value("theta", json()).is_number() ||
        !l.value("factor", json()).is_number()) {
      f.fail("loom_rope", "must be {\"scaling\": \"ntk\", \"theta\": number, \"factor\": number}, got " + l.dump());
    }
    const double expected = ntk_theta(l["theta"].get<double>(), l["factor"].get<double>(), c.head_dim());
    if (c.rope.scaling != RopeConfig::Scaling::None ||
        std::fabs(f.number_or("rope_theta", 0.0) - expected) > 1e-6 * expected) {
      f.fail("loom_rope", "does not match rope_theta / rope_scaling (rope_theta should be " + std::to_string(expected) +
                              " with rope_scaling null); was config.json edited by hand?");
    }
    c.rope.scaling = RopeConfig::Scaling::NTK;
    c.rope.theta = l["theta"].get<float>();
    c.rope.factor = l["factor"].get<float>();
  }
}

ModelConfig read_llama(const HfFields& f) {
  const std::int64_t heads = f.required_int("num_attention_heads");
  ModelConfig c = ModelConfig::from_family(Family::Llama, f.required_int("vocab_size"), f.required_int("hidden_size"),
                                           f.required_int("num_hidden_layers"), heads,
                                           f.int_or("num_key_value_heads", heads), f.required_int("intermediate_size"),
                                           f.required_int("max_position_embeddings"));
  c.norm_eps = static_cast<float>(f.number_or("rms_norm_eps", 1e-6));
  c.tie_embeddings = f.bool_or("tie_word_embeddings", false);
  const std::string act = f.string_or("hidden_act", "silu");
  if (act != "silu") f.fail("hidden_act", "'" + act + "' is not supported (loom's llama MLP is SwiGLU with silu)");
  const bool attention_bias = f.bool_or("attention_bias", false);
  const bool mlp_bias = f.bool_or("mlp_bias", false);
  if (attention_bias != mlp_bias) {
    f.fail("attention_bias", "and mlp_bias must agree (loom's model.bias covers both), got " +
                                 std::to_string(attention_bias) + " and " + std::to_string(mlp_bias));
  }
  c.bias = attention_bias;
  if (c.n_heads > 0 && c.d_model % c.n_heads == 0 && f.int_or("head_dim", c.d_model / c.n_heads) != c.d_model / c.n_heads) {
    f.fail("head_dim", "must be hidden_size / num_attention_heads = " + std::to_string(c.d_model / c.n_heads) +
                           " in loom, got " + std::to_string(f.int_or("head_dim", 0)));
  }
  c.init_std = static_cast<float>(f.number_or("initializer_range", 0.02));
  if (c.n_heads > 0 && c.d_model % c.n_heads == 0) read_llama_rope(f, c);
  return c;
}

ModelConfig read_gpt2(const HfFields& f) {
  const std::int64_t d_model = f.required_int("n_embd");
  const std::int64_t heads = f.required_int("n_head");
  ModelConfig c = ModelConfig::from_family(Family::GPT2, f.required_int("vocab_size"), d_model, f.required_int("n_layer"),
                                           heads, heads, f.int_or("n_inner", 4 * d_model), f.required_int("n_positions"));
  c.norm_eps = static_cast<float>(f.number_or("layer_norm_epsilon", 1e-5));
  c.tie_embeddings = f.bool_or("tie_word_embeddings", true);
  const std::string act = f.string_or("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
    f.fail("activation_function", "'" + act + "' is not supported (loom's GPT-2 uses the tanh GELU, gelu_new)");
  }
  if (!f.bool_or("scale_attn_weights", true)) f.fail("scale_attn_weights", "must be true (loom scales by 1/sqrt(d))");
  if (f.bool_or("scale_attn_by_inverse_layer_idx", false)) {
    f.fail("scale_attn_by_inverse_layer_idx", "must be false (not implemented in loom)");
  }
  if (f.bool_or("add_cross_attention", false)) f.fail("add_cross_attention", "must be false (decoder-only models only)");
  c.init_std = static_cast<float>(f.number_or("initializer_range", 0.02));
  return c;
}

// "model config: n_kv_heads (3) must ..." → "n_kv_heads" (ModelConfig::validate's wording).
std::string validation_field(const std::string& message) {
  const std::string prefix = "model config: ";
  if (message.rfind(prefix, 0) != 0) return "";
  return message.substr(prefix.size(), message.find(' ', prefix.size()) - prefix.size());
}

// The config.json key behind a ModelConfig field, so errors name what the user can edit.
std::string hf_key_of(const std::string& field, Family family) {
  const bool llama = family == Family::Llama;
  if (field == "vocab_size") return "vocab_size";
  if (field == "d_model") return llama ? "hidden_size" : "n_embd";
  if (field == "n_layers") return llama ? "num_hidden_layers" : "n_layer";
  if (field == "n_heads") return llama ? "num_attention_heads" : "n_head";
  if (field == "n_kv_heads") return llama ? "num_key_value_heads" : "n_head";
  if (field == "d_ff") return llama ? "intermediate_size" : "n_inner";
  if (field == "max_seq_len") return llama ? "max_position_embeddings" : "n_positions";
  if (field == "norm_eps") return llama ? "rms_norm_eps" : "layer_norm_epsilon";
  if (field == "rope.theta") return "rope_theta";
  if (field == "rope.factor") return "rope_scaling.factor";
  if (field == "init_std") return "initializer_range";
  return "the config";
}

}  // namespace

double float_for_json(float value) {
  char text[64];
  const auto result = std::to_chars(text, text + sizeof(text), value);
  *result.ptr = '\0';
  return std::strtod(text, nullptr);
}

json hf_config_json(const ModelConfig& c, const std::string& torch_dtype) {
  c.validate();
  if (c.rope.rotary_dim != 0 && c.rope.rotary_dim != c.head_dim()) {
    throw std::invalid_argument("model.rope.rotary_dim " + std::to_string(c.rope.rotary_dim) +
                                " (partial rotary) has no LlamaForCausalLM equivalent");
  }
  json j;
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["initializer_range"] = float_for_json(c.init_std);
  j["torch_dtype"] = torch_dtype;
  if (c.family == Family::Llama) {
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
    j["hidden_size"] = c.d_model;
    j["intermediate_size"] = c.d_ff;
    j["num_attention_heads"] = c.n_heads;
    j["num_key_value_heads"] = c.n_kv_heads;
    j["num_hidden_layers"] = c.n_layers;
    j["head_dim"] = c.head_dim();
    j["max_position_embeddings"] = c.max_seq_len;
    j["rms_norm_eps"] = float_for_json(c.norm_eps);
    j["hidden_act"] = "silu";
    j["attention_bias"] = c.bias;
    j["mlp_bias"] = c.bias;
    j["pretraining_tp"] = 1;
    j["rope_theta"] = float_for_json(c.rope.theta);
    j["rope_scaling"] = nullptr;
    if (c.rope.scaling == RopeConfig::Scaling::Linear) {
      j["rope_scaling"] = {{"type", "linear"}, {"rope_type", "linear"}, {"factor", float_for_json(c.rope.factor)}};
    } else if (c.rope.scaling == RopeConfig::Scaling::NTK) {
      j["rope_theta"] = ntk_theta(c.rope.theta, c.rope.factor, c.head_dim());
      j["loom_rope"] = {{"scaling", "ntk"}, {"theta", float_for_json(c.rope.theta)}, {"factor", float_for_json(c.rope.factor)}};
    }
  } else {
    if (!c.bias) throw std::invalid_argument("model.bias = false has no GPT2LMHeadModel equivalent (GPT-2 has biases)");
    j["architectures"] = {"GPT2LMHeadModel"};
    j["model_type"] = "gpt2";
    j["n_embd"] = c.d_model;
    j["n_layer"] = c.n_layers;
    j["n_head"] = c.n_heads;
    j["n_inner"] = c.d_ff;
    j["n_positions"] = c.max_seq_len;
    j["n_ctx"] = c.max_seq_len;
    j["layer_norm_epsilon"] = float_for_json(c.norm_eps);
    j["activation_function"] = "gelu_new";
    j["scale_attn_weights"] = true;
    j["scale_attn_by_inverse_layer_idx"] = false;
    j["reorder_and_upcast_attn"] = false;
  }
  return j;
}

ModelConfig model_config_from_hf(const json& hf_config, const std::string& source) {
  if (!hf_config.is_object()) throw std::runtime_error(source + ": must hold a JSON object");
  const HfFields fields(hf_config, source);
  const Family family = family_of(fields);
  ModelConfig c = family == Family::Llama ? read_llama(fields) : read_gpt2(fields);
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(source + ": " + hf_key_of(validation_field(e.what()), family) +
                             " describes a model loom cannot build (" + e.what() + ")");
  }
  return c;
}

}  // namespace loom::io::hf
