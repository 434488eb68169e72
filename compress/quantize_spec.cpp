#include "compress/quantize_spec.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace loom::compress {
namespace {

const std::vector<std::string> kLinearNames = {"qkv", "out", "gate", "up", "down"};

Method parse_method(const std::string& name) {
  if (name == "rtn") return Method::Rtn;
  if (name == "gptq") return Method::Gptq;
  if (name == "smoothquant") return Method::SmoothQuant;
  if (name == "magnitude") return Method::Magnitude;
  if (name == "wanda") return Method::Wanda;
  if (name == "sparsegpt") return Method::SparseGpt;
  return Method::None;
}

}  // namespace

const char* method_name(Method method) {
  switch (method) {
    case Method::Rtn: return "rtn";
    case Method::Gptq: return "gptq";
    case Method::SmoothQuant: return "smoothquant";
    case Method::Magnitude: return "magnitude";
    case Method::Wanda: return "wanda";
    case Method::SparseGpt: return "sparsegpt";
    case Method::None: return "none";
  }
  return "?";
}

bool QuantizeSpec::targeted(const std::string& linear) const {
  return std::find(targets.begin(), targets.end(), linear) != targets.end();
}

std::string QuantizeSpec::describe() const {
  std::ostringstream s;
  s << method_name(method);
  if (method == Method::Rtn || method == Method::Gptq) s << " " << scheme.name() << (act_order ? " act-order" : "");
  if (method == Method::SmoothQuant) s << " W8A8 alpha " << alpha;
  if (prunes()) {
    if (prune_n > 0) {
      s << " " << prune_n << ":" << prune_m;
    } else {
      s << " " << std::lround(sparsity * 100) << "%";
    }
  }
  if (kv_int8) s << " + kv-int8";
  return s.str();
}

nlohmann::json QuantizeSpec::to_json() const {
  nlohmann::json j = {{"method", method_name(method)}, {"kv_int8", kv_int8}, {"targets", targets},
                      {"describe", describe()}};
  if (quantizes()) {
    j["bits"] = scheme.bits, j["group_size"] = scheme.group_size, j["symmetric"] = scheme.symmetric;
    j["scheme"] = scheme.name();
    j["activations"] = method == Method::SmoothQuant ? "int8" : "float";
  }
  if (method == Method::Gptq) j["act_order"] = act_order;
  if (method == Method::Gptq || method == Method::SparseGpt) j["damp"] = damp, j["block_size"] = block_size;
  if (prunes()) {
    j["structure"] = prune_n > 0 ? std::to_string(prune_n) + ":" + std::to_string(prune_m) : "unstructured";
    j["sparsity"] = prune_n > 0 ? static_cast<double>(prune_n) / prune_m : sparsity;
  }
  if (method == Method::SmoothQuant) j["alpha"] = alpha;
  return j;
}

void add_quantize_settings(config::Schema& schema) {
  schema.describe_group("", "What to compress and how");
  schema.add_enum("method", std::string("rtn"), {"rtn", "gptq", "smoothquant", "magnitude", "wanda", "sparsegpt", "none"},
                  "Compression method: rtn, gptq, smoothquant (W8A8) quantize; magnitude, wanda, sparsegpt prune; "
                  "none leaves the weights (with kv_int8: the int8 KV cache alone)");
  schema.add_int("bits", 8, "Weight bits for rtn and gptq: 8 or 4 (smoothquant is always 8)", {.min = 4, .max = 8});
  schema.add_int("group_size", 0, "Columns per quantization group: 0 (per output channel), 32, 64 or 128",
                 {.min = 0, .max = 128});
  schema.add_bool("symmetric", true, "Symmetric codes (zero point fixed at the middle) or asymmetric with zero points");
  schema.add_bool("act_order", false, "GPTQ: quantize columns in order of decreasing Hessian diagonal (groups stay "
                                      "natural: their parameters come from the original weights)");
  schema.add_float("damp", 0.01, "GPTQ / SparseGPT dampening: this fraction of mean(diag H) added to the diagonal",
                   {.min = 0.0, .max = 1.0});
  schema.add_int("block_size", 128, "GPTQ / SparseGPT: columns per lazy-update block", {.min = 1});
  schema.add_float("sparsity", 0.5, "Pruning: fraction of each layer's weights set to zero (unstructured)",
                   {.min = 0.0, .max = 0.99});
  schema.add_enum("structure", std::string("unstructured"), {"unstructured", "2:4"},
                  "Pruning pattern: unstructured to `sparsity`, or 2:4 (two of every four consecutive inputs)");
  schema.add_float("alpha", 0.5, "SmoothQuant migration strength: s_j = max|X_j|^alpha / max|W_j|^(1-alpha)",
                   {.min = 0.0, .max = 1.0});
  schema.add_bool("kv_int8", false, "Int8 KV cache (one scale per token and head) at inference");
  schema.add_string_list("targets", std::vector<std::string>(kLinearNames),
                         "Linear layers to compress: qkv, out, gate, up, down (gate: Llama only)");
}

QuantizeSpec quantize_spec(const config::Config& config) {
  QuantizeSpec spec;
  spec.method = parse_method(config.get_string("method"));
  spec.scheme.bits = static_cast<int>(config.get_int("bits"));
  spec.scheme.group_size = config.get_int("group_size");
  spec.scheme.symmetric = config.get_bool("symmetric");
  spec.act_order = config.get_bool("act_order");
  spec.damp = config.get_float("damp");
  spec.block_size = config.get_int("block_size");
  spec.sparsity = config.get_float("sparsity");
  if (config.get_string("structure") == "2:4") spec.prune_n = 2, spec.prune_m = 4;
  spec.alpha = config.get_float("alpha");
  spec.kv_int8 = config.get_bool("kv_int8");
  spec.targets = config.get_string_list("targets");
  try {
    spec.scheme.validate();
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(e.what());
  }
  for (const std::string& t : spec.targets) {
    if (std::find(kLinearNames.begin(), kLinearNames.end(), t) == kLinearNames.end()) {
      throw config::ConfigError("targets: unknown linear layer '" + t + "' (expected qkv, out, gate, up, down)");
    }
  }
  if (spec.method == Method::SmoothQuant) {
    if (spec.scheme.bits != 8) {
      throw config::ConfigError("bits: smoothquant is W8A8 (8-bit weights and activations), got bits=" +
                                std::to_string(spec.scheme.bits));
    }
    if (spec.scheme.group_size != 0) {
      throw config::ConfigError("group_size: smoothquant's int8 GEMM takes per-channel weight scales (group_size 0)");
    }
    spec.scheme = quant::Scheme{8, 0, true};
  }
  if (spec.act_order && spec.method != Method::Gptq) {
    throw config::ConfigError("act_order: only gptq orders columns (method is " +
                              std::string(method_name(spec.method)) + ")");
  }
  if (spec.prune_n > 0 && !spec.prunes()) {
    throw config::ConfigError("structure: 2:4 is a pruning pattern; method " + std::string(method_name(spec.method)) +
                              " does not prune");
  }
  if (spec.method == Method::None && !spec.kv_int8) {
    throw config::ConfigError("method: none with kv_int8 false would change nothing");
  }
  return spec;
}

}  // namespace loom::compress
