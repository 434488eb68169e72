// Quantized weight matrices: the integer-code representation every loom compression method
// produces (compress/: RTN, GPTQ, SmoothQuant) and every quantized kernel consumes
// (core/quant/quant_gemm.h), and the checkpoint / GGUF / safetensors writers store.
//
// A weight W [rows = out, cols = in] (PyTorch layout) is cut along `in` into groups of
// `group_size` columns (0: one group per row, "per channel"; the last group may be shorter
// when in is not a multiple). Each (row, group) has a scale and an integer zero point, and
// each element a code in [0, 2^bits - 1]:
//
//     w ≈ scale · (code − zero)
//
// The parameters follow GPTQ's quantizer (Frantar et al., `quant.py`), so that the PyTorch
// reference of the published algorithm is an exact oracle:
//   asymmetric: lo = min(min w, 0), hi = max(max w, 0); scale = (hi − lo) / maxq,
//               zero = round(−lo / scale)
//   symmetric:  hi = max(|min w|, max w), lo = −hi; scale = 2·hi / maxq, zero = (maxq + 1) / 2
//   (lo = hi = 0: lo = −1, hi = 1, so an all-zero group gets scale 2 / maxq, codes = zero)
//   code = clamp(round_half_even(w / scale) + zero, 0, maxq)
// so |w − dequantized| <= scale / 2 for every element. A symmetric int8 code minus 128 is a
// signed int8 in [−128, 127] (what the W8A8 kernel multiplies); int4 likewise minus 8.
//
// Storage: int8 codes one per byte, row-major [rows, cols]; int4 codes two per byte, row-major
// [rows, ceil(cols / 2)], column 2j in the low nibble and 2j+1 in the high one. scales and
// zeros are row-major [rows, groups].
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::quant {

struct Scheme {
  int bits = 8;                 // 8 or 4
  std::int64_t group_size = 0;  // 0: per output channel; else 32, 64 or 128 columns
  bool symmetric = true;

  int max_code() const { return (1 << bits) - 1; }
  std::int64_t groups(std::int64_t cols) const { return group_size == 0 ? 1 : (cols + group_size - 1) / group_size; }
  std::int64_t group_of(std::int64_t col) const { return group_size == 0 ? 0 : col / group_size; }
  // Throws std::invalid_argument naming the field when bits or group_size is not supported.
  void validate() const;
  // "int8", "int4-g128", "int4-g64-asym", ...: used in file metadata and reports.
  std::string name() const;
};

// One (row, group)'s mapping.
struct GroupParams {
  float scale = 1.0f;
  int zero = 0;
};

// GPTQ's parameters for the values w[0, n) (see above).
GroupParams find_params(const float* w, std::int64_t n, const Scheme& scheme);
// round_half_even(w / scale) + zero, clamped to [0, maxq].
int quantize_value(float w, const GroupParams& p, int max_code);
inline float dequantize_value(int code, const GroupParams& p) { return p.scale * static_cast<float>(code - p.zero); }

struct QuantizedMatrix {
  std::int64_t rows = 0, cols = 0;
  Scheme scheme;
  std::vector<std::uint8_t> codes;  // int8: [rows, cols]; int4: [rows, (cols + 1) / 2] packed
  std::vector<float> scales;        // [rows, groups]
  std::vector<std::uint8_t> zeros;  // [rows, groups]

  // Allocated and zeroed for (rows, cols, scheme).
  static QuantizedMatrix empty(std::int64_t rows, std::int64_t cols, const Scheme& scheme);
  std::int64_t groups() const { return scheme.groups(cols); }
  std::int64_t row_bytes() const { return scheme.bits == 8 ? cols : (cols + 1) / 2; }
  int code(std::int64_t r, std::int64_t c) const;
  void set_code(std::int64_t r, std::int64_t c, int code);
  GroupParams params(std::int64_t r, std::int64_t g) const {
    return {scales[static_cast<std::size_t>(r * groups() + g)], zeros[static_cast<std::size_t>(r * groups() + g)]};
  }
  void set_params(std::int64_t r, std::int64_t g, const GroupParams& p);
  float dequantized(std::int64_t r, std::int64_t c) const { return dequantize_value(code(r, c), params(r, scheme.group_of(c))); }
  // Bytes of codes + scales + zeros (what the checkpoint stores).
  std::int64_t storage_bytes() const;
};

// Round-to-nearest: each group's parameters from its own values, then every code.
// w [rows, cols] row-major f32.
QuantizedMatrix quantize_rtn(const float* w, std::int64_t rows, std::int64_t cols, const Scheme& scheme);
// out [rows, cols] row-major f32.
void dequantize(const QuantizedMatrix& q, float* out);

}  // namespace loom::quant
