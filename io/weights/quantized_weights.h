// Quantized model files (loom-quantize's output, docs/compression.md): one HDF5 file holding
// a whole model whose linear layers are quantized (integer codes, scales, zero points) or
// pruned (dense values with a keep-mask), every other parameter as f32 like model.h5.
//
//   attributes   format = "loom-quantized", format_version = 1,
//                metadata = JSON {"model": {...}, "quantization": {...}, "source": ..., ...}
//   <name>                   f32, the global shape   (dense parameters, pruned weights)
//   <prefix>.weight.codes    u8 [out, in] (int8) or [out, ceil(in/2)] (int4, two per byte, even
//                            column in the low nibble)
//   <prefix>.weight.scales   f32 [out, groups]
//   <prefix>.weight.zeros    u8 [out, groups]        w ≈ scale · (code − zero)
//   <prefix>.weight.mask     u8 [out, ceil(in/8)]    pruning keep-bits, column c in bit c%8 of
//                                                    byte c/8 (1 = kept)
// with attributes bits, group_size, symmetric on every .codes dataset. A quantized weight has
// no <prefix>.weight dataset: its values are the dequantized codes.
//
// Writes go to "<file>.tmp" and are renamed after flush + close. Not thread-safe (HDF5);
// one rank writes, any rank reads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/parameter_layout.h"
#include "core/quant/quantized.h"
#include "io/weights/weights.h"

namespace loom::io {

inline constexpr int kQuantizedFormatVersion = 1;

// What one linear layer became.
struct CompressedLinear {
  std::string prefix;                                // "layers.3.mlp.down"
  std::optional<quant::QuantizedMatrix> quantized;   // global [out, in]
  std::vector<std::uint8_t> mask;                    // packed keep-bits [out, ceil(in/8)]; empty: not pruned
  std::int64_t rows = 0, cols = 0;                   // the weight's global shape
};

struct QuantizedModel {
  nlohmann::json metadata;              // "model" (model_config_json), "quantization", ...
  std::vector<NamedTensor> dense;       // every parameter not stored as codes (global f32)
  std::vector<CompressedLinear> linears;
};

void save_quantized_model(const std::filesystem::path& file, const QuantizedModel& model);
// True when `file` is an HDF5 file whose format attribute says loom-quantized.
bool is_quantized_model_file(const std::filesystem::path& file);
// Throws std::runtime_error naming the file and the dataset when something is missing or
// has the wrong shape.
QuantizedModel load_quantized_model(const std::filesystem::path& file);

// keep [rows, cols] (1 = kept) to and from the packed bit layout above.
std::vector<std::uint8_t> pack_mask(const std::uint8_t* keep, std::int64_t rows, std::int64_t cols);
std::vector<std::uint8_t> unpack_mask(const std::vector<std::uint8_t>& packed, std::int64_t rows, std::int64_t cols);

}  // namespace loom::io

namespace loom::io {

// Which part of a global [out, in] linear weight one tensor-parallel rank holds: a set of
// global rows (column-parallel: qkv's sections, gate, up) or a contiguous column range
// (row-parallel: out, down), from the parameter's layout (core/model/parameter_layout.h).
struct LinearSlice {
  std::vector<std::int64_t> rows;  // global row of each local row
  std::int64_t col0 = 0, cols = 0; // global columns [col0, col0 + cols)
};
LinearSlice linear_slice(const model::ParameterSpec& spec, int tp_rank, int tp_size);

// The slice's part of a global quantized matrix, and back. Column slices must start on a
// group boundary (and an even column for int4): std::invalid_argument otherwise.
quant::QuantizedMatrix slice_quantized(const quant::QuantizedMatrix& global, const LinearSlice& slice);
void place_quantized(const quant::QuantizedMatrix& part, const LinearSlice& slice, quant::QuantizedMatrix& global);
// The same for an unpacked keep-mask [rows, cols].
void place_mask(const std::vector<std::uint8_t>& part, const LinearSlice& slice, std::int64_t global_cols,
                std::vector<std::uint8_t>& global);

}  // namespace loom::io
