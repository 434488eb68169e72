// One transformer layer of post-training compression, on this rank's calibration samples
// and this rank's tensor-parallel slice of the layer (GPTQ's sequential scheme):
//
//   1. run the layer over the calibration hidden states and keep every linear's input
//      (attention norm out -> qkv; attention out -> out; MLP norm out -> gate, up; MLP
//      activation -> down);
//   2. statistics of those inputs (max |x|, Σ x², Σ x xᵀ as the method needs), summed over
//      the data-parallel ranks exactly (compress/algo/input_stats.h), the row-parallel
//      inputs gathered over tp first when the full Σ x xᵀ is needed;
//   3. SmoothQuant folds its scales into the norms; then each targeted linear is quantized
//      or pruned on its slice: column-parallel slices independently (selections over tp
//      through an MPI Selector), row-parallel slices of GPTQ / SparseGPT in tp-rank order,
//      each rank's finished blocks handed to the later ranks;
//   4. the layer's weights now hold the dequantized or pruned values, and the layer runs
//      again so its outputs, computed with the compressed weights, feed the next layer.
//
// The result is bit-identical whatever the dp split. Under tp the compression of a slice is
// exact (the methods give a split layer the bits of the whole one for the same statistics,
// when slices are multiples of the block and group sizes), but the layer's forward sums the
// row-parallel partial products over the ranks, so the calibration activations — and with
// them GPTQ's and SparseGPT's weight updates — differ from one process in the last bits;
// Wanda's and magnitude's masks do not move.
//
// Ranks: every method is collective over the engine's world (tp and dp groups). pp must be 1.
// Threads: the MPI thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/quantize_spec.h"
#include "core/quant/quantized.h"
#include "train/engine.h"

namespace loom::compress {

// What one linear of the layer became, on this rank (its slice).
struct LinearOutcome {
  std::string name;                                // "qkv", "out", "gate", "up", "down"
  std::optional<quant::QuantizedMatrix> quantized;  // the slice's codes
  std::vector<std::uint8_t> keep;                  // pruning: [rows, cols] of the slice, 1 = kept
  double loss = 0.0;                               // GPTQ / SparseGPT's error sum (this slice)
};

struct LayerOutcome {
  std::int64_t layer = 0;
  std::vector<LinearOutcome> linears;
  double seconds = 0.0;
  nlohmann::json to_json() const;  // per linear: loss, sparsity; seconds
};

class LayerCompressor {
 public:
  // samples_per_chunk: calibration samples per forward (the hidden chunks' batch size).
  LayerCompressor(train::Engine& engine, const QuantizeSpec& spec);

  // hidden: this rank's calibration hidden states entering layer `layer`, chunks [b, T, C];
  // on return they hold the layer's outputs with the compressed weights.
  LayerOutcome compress(std::int64_t layer, std::vector<Tensor>& hidden);
  // Runs layer `layer` over hidden in place (a resumed job replays finished layers).
  void forward(std::int64_t layer, std::vector<Tensor>& hidden);

  // "attn.qkv", "mlp.down", ...
  static std::string parameter_prefix(const std::string& linear);
  static bool row_parallel(const std::string& linear) { return linear == "out" || linear == "down"; }

 private:
  train::Engine& engine_;
  QuantizeSpec spec_;
};

}  // namespace loom::compress
