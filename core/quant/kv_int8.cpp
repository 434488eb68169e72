#include "core/quant/kv_int8.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace loom::quant {
namespace {

void check_shape(const char* function, std::int64_t rows, std::int64_t head_dim) {
  if (rows < 0 || head_dim <= 0)
    throw std::invalid_argument(std::string(function) + ": expected rows >= 0 and head_dim > 0, got rows " +
                                std::to_string(rows) + ", head_dim " + std::to_string(head_dim));
}

float row_scale(const float* x, std::int64_t n) {
  float amax = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax == 0.0f ? 1.0f : amax / 127.0f;
}

std::int8_t quantize_element(float x, float scale) {
  return static_cast<std::int8_t>(std::clamp(std::nearbyint(x / scale), -127.0f, 127.0f));
}

}  // namespace

void quantize_kv(const float* x, std::int64_t rows, std::int64_t head_dim, std::int8_t* q, float* scales) {
  check_shape("quantize_kv", rows, head_dim);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * head_dim;
    const float scale = row_scale(row, head_dim);
    scales[r] = scale;
    for (std::int64_t i = 0; i < head_dim; ++i) q[r * head_dim + i] = quantize_element(row[i], scale);
  }
}

void dequantize_kv(const std::int8_t* q, const float* scales, std::int64_t rows, std::int64_t head_dim, float* x) {
  check_shape("dequantize_kv", rows, head_dim);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < head_dim; ++i)
      x[r * head_dim + i] = scales[r] * static_cast<float>(q[r * head_dim + i]);
}

void fake_quantize_kv_inplace(float* x, std::int64_t rows, std::int64_t head_dim) {
  check_shape("fake_quantize_kv_inplace", rows, head_dim);
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = x + r * head_dim;
    const float scale = row_scale(row, head_dim);
    for (std::int64_t i = 0; i < head_dim; ++i) row[i] = scale * static_cast<float>(quantize_element(row[i], scale));
  }
}

}  // namespace loom::quant
