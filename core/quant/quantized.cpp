#include "core/quant/quantized.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace loom::quant {

void Scheme::validate() const {
  if (bits != 8 && bits != 4)
    throw std::invalid_argument("quantization bits: expected 8 or 4, got " + std::to_string(bits));
  if (group_size != 0 && group_size != 32 && group_size != 64 && group_size != 128)
    throw std::invalid_argument("quantization group_size: expected 0 (per channel), 32, 64 or 128, got " +
                                std::to_string(group_size));
}

std::string Scheme::name() const {
  std::string s = "int" + std::to_string(bits);
  if (group_size > 0) s += "-g" + std::to_string(group_size);
  if (!symmetric) s += "-asym";
  return s;
}

GroupParams find_params(const float* w, std::int64_t n, const Scheme& scheme) {
  float lo = 0.0f, hi = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) lo = std::min(lo, w[i]), hi = std::max(hi, w[i]);
  // GPTQ's symmetric quantizer keeps lo = 0 for an all-positive group, which clips its
  // upper half; loom always mirrors, so the scale / 2 error bound holds for every group.
  if (scheme.symmetric) hi = std::max(-lo, hi), lo = -hi;
  if (lo == 0.0f && hi == 0.0f) lo = -1.0f, hi = 1.0f;
  const int maxq = scheme.max_code();
  GroupParams p;
  p.scale = (hi - lo) / static_cast<float>(maxq);
  p.zero = scheme.symmetric ? (maxq + 1) / 2 : static_cast<int>(std::nearbyint(-lo / p.scale));
  return p;
}

int quantize_value(float w, const GroupParams& p, int max_code) {
  const float code = std::nearbyint(w / p.scale) + static_cast<float>(p.zero);
  return static_cast<int>(std::clamp(code, 0.0f, static_cast<float>(max_code)));
}

QuantizedMatrix QuantizedMatrix::empty(std::int64_t rows, std::int64_t cols, const Scheme& scheme) {
  scheme.validate();
  if (rows <= 0 || cols <= 0)
    throw std::invalid_argument("quantized matrix: rows and cols must be positive, got " + std::to_string(rows) +
                                " x " + std::to_string(cols));
  QuantizedMatrix q;
  q.rows = rows, q.cols = cols, q.scheme = scheme;
  q.codes.assign(static_cast<std::size_t>(rows * q.row_bytes()), 0);
  q.scales.assign(static_cast<std::size_t>(rows * q.groups()), 0.0f);
  q.zeros.assign(static_cast<std::size_t>(rows * q.groups()), 0);
  return q;
}

int QuantizedMatrix::code(std::int64_t r, std::int64_t c) const {
  if (scheme.bits == 8) return codes[static_cast<std::size_t>(r * cols + c)];
  const std::uint8_t byte = codes[static_cast<std::size_t>(r * row_bytes() + c / 2)];
  return (c & 1) != 0 ? byte >> 4 : byte & 0x0F;
}

void QuantizedMatrix::set_code(std::int64_t r, std::int64_t c, int code) {
  if (scheme.bits == 8) {
    codes[static_cast<std::size_t>(r * cols + c)] = static_cast<std::uint8_t>(code);
    return;
  }
  std::uint8_t& byte = codes[static_cast<std::size_t>(r * row_bytes() + c / 2)];
  byte = (c & 1) != 0 ? static_cast<std::uint8_t>((byte & 0x0F) | (code << 4))
                      : static_cast<std::uint8_t>((byte & 0xF0) | (code & 0x0F));
}

void QuantizedMatrix::set_params(std::int64_t r, std::int64_t g, const GroupParams& p) {
  scales[static_cast<std::size_t>(r * groups() + g)] = p.scale;
  zeros[static_cast<std::size_t>(r * groups() + g)] = static_cast<std::uint8_t>(p.zero);
}

std::int64_t QuantizedMatrix::storage_bytes() const {
  return static_cast<std::int64_t>(codes.size() + scales.size() * sizeof(float) + zeros.size());
}

QuantizedMatrix quantize_rtn(const float* w, std::int64_t rows, std::int64_t cols, const Scheme& scheme) {
  QuantizedMatrix q = QuantizedMatrix::empty(rows, cols, scheme);
  const std::int64_t width = scheme.group_size == 0 ? cols : scheme.group_size;
  const int maxq = scheme.max_code();
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (std::int64_t g = 0; g < q.groups(); ++g) {
      const std::int64_t c0 = g * width, c1 = std::min(cols, c0 + width);
      const GroupParams p = find_params(row + c0, c1 - c0, scheme);
      q.set_params(r, g, p);
      for (std::int64_t c = c0; c < c1; ++c) q.set_code(r, c, quantize_value(row[c], p, maxq));
    }
  }
  return q;
}

void dequantize(const QuantizedMatrix& q, float* out) {
  for (std::int64_t r = 0; r < q.rows; ++r)
    for (std::int64_t c = 0; c < q.cols; ++c) out[r * q.cols + c] = q.dequantized(r, c);
}

}  // namespace loom::quant
