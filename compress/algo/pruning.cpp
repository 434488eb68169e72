#include "compress/algo/pruning.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace loom::compress {

namespace {

void check_shape(const char* what, std::int64_t rows, std::int64_t cols) {
  if (rows < 0 || cols < 0)
    throw std::invalid_argument(std::string(what) + ": negative shape " + std::to_string(rows) + " x " +
                                std::to_string(cols));
}

void check_sparsity(const char* what, double sparsity) {
  if (!(sparsity >= 0.0 && sparsity < 1.0))
    throw std::invalid_argument(std::string(what) + ": sparsity must be in [0, 1), got " + std::to_string(sparsity));
}

void check_weight(const char* what, float w, std::int64_t r, std::int64_t c) {
  if (!std::isfinite(w))
    throw std::runtime_error(std::string(what) + ": non-finite weight " + std::to_string(w) + " at row " +
                             std::to_string(r) + ", column " + std::to_string(c));
}

}  // namespace

std::vector<float> magnitude_metric(const float* w, std::int64_t rows, std::int64_t cols) {
  check_shape("magnitude metric", rows, cols);
  std::vector<float> metric(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      check_weight("magnitude metric", w[r * cols + c], r, c);
      metric[static_cast<std::size_t>(r * cols + c)] = std::fabs(w[r * cols + c]);
    }
  return metric;
}

std::vector<float> wanda_metric(const float* w, std::int64_t rows, std::int64_t cols, std::span<const double> sq_sum) {
  check_shape("wanda metric", rows, cols);
  if (static_cast<std::int64_t>(sq_sum.size()) != cols)
    throw std::invalid_argument("wanda metric: sq_sum has " + std::to_string(sq_sum.size()) + " entries for " +
                                std::to_string(cols) + " columns");
  std::vector<float> norm(static_cast<std::size_t>(cols));
  for (std::int64_t c = 0; c < cols; ++c) {
    const double s = sq_sum[static_cast<std::size_t>(c)];
    if (!(s >= 0.0) || !std::isfinite(s))
      throw std::invalid_argument("wanda metric: sq_sum of column " + std::to_string(c) +
                                  " must be finite and >= 0, got " + std::to_string(s));
    norm[static_cast<std::size_t>(c)] = static_cast<float>(std::sqrt(s));
  }
  std::vector<float> metric(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      check_weight("wanda metric", w[r * cols + c], r, c);
      metric[static_cast<std::size_t>(r * cols + c)] = std::fabs(w[r * cols + c]) * norm[static_cast<std::size_t>(c)];
    }
  return metric;
}

std::vector<std::uint8_t> magnitude_mask(const float* w, std::int64_t rows, std::int64_t cols,
                                         std::int64_t global_numel, double sparsity, const Selector& selector) {
  check_sparsity("magnitude pruning", sparsity);
  if (global_numel < rows * cols)
    throw std::invalid_argument("magnitude pruning: global element count " + std::to_string(global_numel) +
                                " is smaller than this slice's " + std::to_string(rows * cols));
  const std::vector<float> metric = magnitude_metric(w, rows, cols);
  std::vector<std::uint8_t> keep(metric.size(), 1);
  if (sparsity == 0.0) return keep;
  const auto k = static_cast<std::int64_t>(std::floor(static_cast<double>(global_numel) * sparsity));
  const float threshold = selector.kth_smallest(metric, k);
  for (std::size_t i = 0; i < metric.size(); ++i) keep[i] = metric[i] <= threshold ? 0 : 1;
  return keep;
}

std::vector<std::uint8_t> wanda_mask(const float* w, std::int64_t rows, std::int64_t cols, std::int64_t col_offset,
                                     std::int64_t row_width_global, std::span<const double> sq_sum, double sparsity,
                                     const Selector& selector) {
  check_sparsity("wanda pruning", sparsity);
  if (col_offset < 0 || col_offset + cols > row_width_global)
    throw std::invalid_argument("wanda pruning: columns [" + std::to_string(col_offset) + ", " +
                                std::to_string(col_offset + cols) + ") outside a row of width " +
                                std::to_string(row_width_global));
  const std::vector<float> metric = wanda_metric(w, rows, cols, sq_sum);
  std::vector<std::uint8_t> keep(metric.size(), 1);
  const auto k = static_cast<std::int64_t>(std::floor(static_cast<double>(row_width_global) * sparsity));
  if (k == 0) return keep;
  std::vector<std::uint64_t> keys(metric.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      keys[static_cast<std::size_t>(r * cols + c)] = metric_key(metric[static_cast<std::size_t>(r * cols + c)], col_offset + c);
  std::vector<std::uint64_t> last_pruned(static_cast<std::size_t>(rows));
  selector.kth_smallest_per_row(keys, rows, k - 1, last_pruned.data());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      keep[static_cast<std::size_t>(r * cols + c)] =
          keys[static_cast<std::size_t>(r * cols + c)] <= last_pruned[static_cast<std::size_t>(r)] ? 0 : 1;
  return keep;
}

std::vector<std::uint8_t> nm_mask(const float* metric, std::int64_t rows, std::int64_t cols, int n, int m) {
  check_shape("n:m pruning", rows, cols);
  if (m <= 0 || n < 0 || n >= m)
    throw std::invalid_argument("n:m pruning: need 0 <= n < m, got " + std::to_string(n) + ":" + std::to_string(m));
  if (cols % m != 0)
    throw std::invalid_argument("n:m pruning: width " + std::to_string(cols) + " is not a multiple of m = " +
                                std::to_string(m));
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(rows * cols), 1);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t g = 0; g < cols; g += m) {
      const float* group = metric + r * cols + g;
      // An entry's rank in its group is the number of entries ordered before it (smaller, or
      // equal and to its left); the n of lowest rank are pruned.
      for (int a = 0; a < m; ++a) {
        if (std::isnan(group[a]))
          throw std::invalid_argument("n:m pruning: NaN metric at row " + std::to_string(r) + ", column " +
                                      std::to_string(g + a));
        int rank = 0;
        for (int b = 0; b < m; ++b) rank += group[b] < group[a] || (group[b] == group[a] && b < a);
        if (rank < n) keep[static_cast<std::size_t>(r * cols + g + a)] = 0;
      }
    }
  return keep;
}

std::int64_t apply_mask(float* w, const std::uint8_t* mask, std::int64_t count) {
  std::int64_t zeroed = 0;
  for (std::int64_t i = 0; i < count; ++i)
    if (mask[i] == 0) w[i] = 0.0f, ++zeroed;
  return zeroed;
}

double sparsity_of(std::span<const std::uint8_t> mask) {
  if (mask.empty()) return 0.0;
  std::int64_t pruned = 0;
  for (const std::uint8_t kept : mask) pruned += kept == 0;
  return static_cast<double>(pruned) / static_cast<double>(mask.size());
}

}  // namespace loom::compress
