#include "compress/algo/smoothquant.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace loom::compress {

namespace {

// smoothquant's clamp of the weight max and of the scales.
constexpr float kMinScale = 1e-5f;

}  // namespace

std::vector<float> column_absmax(const float* w, std::int64_t rows, std::int64_t cols) {
  if (rows < 0 || cols < 0)
    throw std::invalid_argument("column absmax: negative shape " + std::to_string(rows) + " x " + std::to_string(cols));
  std::vector<float> out(static_cast<std::size_t>(cols), 0.0f);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      out[static_cast<std::size_t>(c)] = std::max(out[static_cast<std::size_t>(c)], std::fabs(w[r * cols + c]));
  return out;
}

std::vector<float> smooth_scales(std::span<const float> act_absmax, std::span<const float> weight_absmax, double alpha) {
  if (act_absmax.size() != weight_absmax.size())
    throw std::invalid_argument("smooth scales: " + std::to_string(act_absmax.size()) + " activation maxima but " +
                                std::to_string(weight_absmax.size()) + " weight maxima");
  if (!(alpha >= 0.0 && alpha <= 1.0))
    throw std::invalid_argument("smoothquant alpha: expected a value in [0, 1], got " + std::to_string(alpha));
  std::vector<float> s(act_absmax.size());
  for (std::size_t j = 0; j < s.size(); ++j) {
    const double a = act_absmax[j], w = std::max(weight_absmax[j], kMinScale);
    if (!(a >= 0.0) || !std::isfinite(a) || !std::isfinite(w))
      throw std::invalid_argument("smooth scales: column " + std::to_string(j) + " has activation max " +
                                  std::to_string(a) + " and weight max " + std::to_string(w) +
                                  " (expected finite, activation >= 0)");
    s[j] = std::max(static_cast<float>(std::pow(a, alpha) / std::pow(w, 1.0 - alpha)), kMinScale);
  }
  return s;
}

void apply_smoothing(std::span<float> norm_weight, float* norm_bias, std::span<const float> s,
                     std::span<const SmoothedLinear> linears) {
  if (norm_weight.size() != s.size())
    throw std::invalid_argument("apply smoothing: norm weight has " + std::to_string(norm_weight.size()) +
                                " entries for " + std::to_string(s.size()) + " scales");
  const auto n = static_cast<std::int64_t>(s.size());
  for (std::int64_t j = 0; j < n; ++j) {
    norm_weight[static_cast<std::size_t>(j)] /= s[static_cast<std::size_t>(j)];
    if (norm_bias != nullptr) norm_bias[j] /= s[static_cast<std::size_t>(j)];
  }
  for (const SmoothedLinear& linear : linears)
    for (std::int64_t r = 0; r < linear.rows; ++r)
      for (std::int64_t j = 0; j < n; ++j) linear.weight[r * n + j] *= s[static_cast<std::size_t>(j)];
}

void quantize_activations_per_token(const float* x, std::int64_t tokens, std::int64_t n, std::int8_t* q,
                                    float* scales) {
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* row = x + t * n;
    float absmax = 0.0f;
    for (std::int64_t j = 0; j < n; ++j) {
      if (!std::isfinite(row[j]))
        throw std::runtime_error("per-token int8: non-finite activation " + std::to_string(row[j]) + " at token " +
                                 std::to_string(t) + ", column " + std::to_string(j));
      absmax = std::max(absmax, std::fabs(row[j]));
    }
    const float scale = absmax > 0.0f ? absmax / 127.0f : 1.0f;
    scales[t] = scale;
    for (std::int64_t j = 0; j < n; ++j)
      q[t * n + j] = static_cast<std::int8_t>(std::clamp(std::nearbyint(row[j] / scale), -127.0f, 127.0f));
  }
}

}  // namespace loom::compress
