// What loom-quantize was asked to do: the method and its settings, declared once in a Schema
// (so `--help`, the YAML loader and docs/config.md agree) and checked together (a 4-bit
// SmoothQuant or a 2:4 GPTQ is refused with the setting named).
//
// Methods:
//   rtn          round-to-nearest weights (bits, group_size, symmetric)
//   gptq         GPTQ weights (+ act_order, damp, block_size)
//   smoothquant  SmoothQuant W8A8: smoothing (alpha) folded into the norms, int8 per-channel
//                weights, int8 per-token activations at inference
//   magnitude    pruning by |w| (layer-wide threshold, or 2:4)
//   wanda        pruning by |w|·‖x‖ per output row (or 2:4)
//   sparsegpt    SparseGPT pruning with its weight updates (or 2:4)
//   none         weights untouched (with kv_int8: the int8 KV cache alone)
// kv_int8 adds the int8 KV cache to any of them.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/quant/quantized.h"
#include "io/config/config.h"
#include "io/config/schema.h"

namespace loom::compress {

enum class Method { Rtn, Gptq, SmoothQuant, Magnitude, Wanda, SparseGpt, None };

struct QuantizeSpec {
  Method method = Method::Rtn;
  quant::Scheme scheme;            // rtn, gptq; smoothquant: int8 per channel, symmetric
  bool act_order = false;          // gptq
  double damp = 0.01;              // gptq, sparsegpt: fraction of mean(diag H)
  std::int64_t block_size = 128;   // gptq, sparsegpt: lazy-update block
  double sparsity = 0.5;           // pruning (unstructured)
  int prune_n = 0, prune_m = 0;    // 2:4 -> 2, 4
  double alpha = 0.5;              // smoothquant
  bool kv_int8 = false;
  std::vector<std::string> targets;  // linear names: qkv, out, gate, up, down

  bool quantizes() const { return method == Method::Rtn || method == Method::Gptq || method == Method::SmoothQuant; }
  bool prunes() const { return method == Method::Magnitude || method == Method::Wanda || method == Method::SparseGpt; }
  bool needs_calibration() const {
    return method == Method::Gptq || method == Method::SparseGpt || method == Method::Wanda ||
           method == Method::SmoothQuant;
  }
  bool needs_xtx() const { return method == Method::Gptq || method == Method::SparseGpt; }
  bool targeted(const std::string& linear) const;
  // "gptq int4-g128", "wanda 50%", "sparsegpt 2:4", "smoothquant W8A8 a0.5" (+ " kv-int8")
  std::string describe() const;
  nlohmann::json to_json() const;
};

const char* method_name(Method method);
// The settings above (method, bits, group_size, ...), added to a loom-quantize schema.
void add_quantize_settings(config::Schema& schema);
// Throws config::ConfigError naming the setting on an inconsistent combination.
QuantizeSpec quantize_spec(const config::Config& config);

}  // namespace loom::compress
