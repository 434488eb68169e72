// write_compressed_safetensors: an ExportModel as a Hugging Face directory in the
// compressed-tensors format (the one vLLM and transformers load for llm-compressor models):
// model.safetensors + config.json with a "quantization_config".
//
// Tensors take their Hugging Face names (io/hf/hf_names.h; loom's fused Llama qkv becomes
// q_proj / k_proj / v_proj, whose rows are per-row quantized and so split exactly). A
// quantized linear <m> (its weight's name without ".weight") is stored as compressed-tensors'
// compressors store it (compressors/quantized_compressors/{naive,pack}_quantized.py):
//
//   8-bit, format "int-quantized":
//     <m>.weight             I8  [out, in]          q = code − 128 (signed)
//   4-bit, format "pack-quantized":
//     <m>.weight_packed      I32 [out, ceil(in/8)]  eight unsigned nibbles u = q + 8 per word,
//                                                   column 8w + i in bits [4i, 4i + 4)
//     <m>.weight_shape       I64 [2]                {out, in}
//   both:
//     <m>.weight_scale       F32 [out, groups]      groups = 1 ("channel") or ceil(in/group_size) ("group")
//     <m>.weight_zero_point  asymmetric only: 8-bit I8 [out, groups] = zero − 128; 4-bit I32
//                            [ceil(out/8), groups], packed like the weight but along dim 0
//                            (row 8w + i in bits [4i, 4i + 4) of word row w), u = zero
// so that scale · (q − zero_point) — what compressed-tensors' dequantize computes — equals
// loom's scale · (code − zero) exactly. Symmetric loom schemes have zero = 2^(bits−1), i.e.
// a signed zero point of 0, and write none, as compressed-tensors does.
//
// quantization_config: quant_method "compressed-tensors", quantization_status "compressed",
// one config group per distinct scheme with weights {num_bits, type "int", symmetric, strategy
// "channel" | "group", group_size} and its "format"; a single group targets "Linear", several
// list their modules by name. "format" is the common format or "mixed-precision". "ignore"
// lists the linears left dense (always lm_head). When ExportModel::quantization names a
// sparsity, "sparsity_config" records it with format "dense" (the zeros are stored as
// ordinary codes) and the measured global_sparsity of the block linears.
//
// Where loom departs from compressed-tensors:
//   - a group count of ceil(in / group_size): loom's last group may be shorter than
//     group_size; compressed-tensors assumes in is a multiple of group_size;
//   - GPT-2's Conv1D linears are not nn.Linear and have no compressed-tensors layout; loom
//     writes their quantized weights in loom's [out, in] orientation (a dense Conv1D weight is
//     [in, out], as Hugging Face stores it), so a reader must transpose after dequantizing.
//
// Thread safety: reads the model only; one call per output directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/export/export_model.h"

namespace loom::compress {

// Validates the model, then writes dir/model.safetensors and dir/config.json (each atomically).
// Throws std::invalid_argument when the model cannot be expressed, std::runtime_error naming
// the file when writing fails.
void write_compressed_safetensors(const std::filesystem::path& dir, const ExportModel& model);

namespace compressed_tensors {

// Rows [row_begin, row_begin + rows) of a 4-bit matrix as [rows, ceil(cols / 8)] words.
std::vector<std::int32_t> pack_int4_rows(const quant::QuantizedMatrix& q, std::int64_t row_begin, std::int64_t rows);
// values [rows, cols], each in [0, 15], packed along dim 0 into [ceil(rows / 8), cols] words.
std::vector<std::int32_t> pack_int4_columns(const std::vector<std::uint8_t>& values, std::int64_t rows,
                                            std::int64_t cols);
// The "quantization_config" object for the model (see above).
nlohmann::json quantization_config(const ExportModel& model);

}  // namespace compressed_tensors
}  // namespace loom::compress
