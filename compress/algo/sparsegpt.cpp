#include "compress/algo/sparsegpt.h"

#include <algorithm>
#include <cmath>
#include <span>
#include <stdexcept>
#include <string>

namespace loom::compress {
namespace {

using Index = std::int64_t;

void check_options(Index cols, Index col_offset, const HessianFactor& f, const SparseGptOptions& o) {
  if (!f.perm.empty())
    throw std::invalid_argument(
        "sparsegpt_prune: the HessianFactor was built with act order; SparseGPT "
        "processes columns in natural order (build it with act_order = false)");
  if (o.block_size <= 0)
    throw std::invalid_argument("sparsegpt_prune: block_size must be positive, got " + std::to_string(o.block_size));
  if (o.global_rows < 0)
    throw std::invalid_argument("sparsegpt_prune: global_rows must be >= 0, got " + std::to_string(o.global_rows));
  if (o.prune_n == 0 && o.prune_m == 0) {
    if (!(o.sparsity > 0.0 && o.sparsity < 1.0))
      throw std::invalid_argument("sparsegpt_prune: sparsity must lie in (0, 1), got " + std::to_string(o.sparsity));
    return;
  }
  const std::string nm = std::to_string(o.prune_n) + ":" + std::to_string(o.prune_m);
  if (o.prune_n <= 0 || o.prune_m <= o.prune_n)
    throw std::invalid_argument("sparsegpt_prune: n:m pruning needs 0 < n < m, got " + nm);
  if (o.block_size % o.prune_m != 0 || col_offset % o.prune_m != 0 || cols % o.prune_m != 0)
    throw std::invalid_argument("sparsegpt_prune: " + nm + " pruning needs block_size (" +
                                std::to_string(o.block_size) + "), col_offset (" + std::to_string(col_offset) +
                                ") and cols (" + std::to_string(cols) + ") to be multiples of m");
}

// Marks, among the m metrics starting at `metric`, the n smallest (ties: lower column first).
void mark_n_smallest(const float* metric, int n, int m, std::uint8_t* pruned) {
  int order[64];
  for (int k = 0; k < m; ++k) order[k] = k;
  std::partial_sort(order, order + n, order + m,
                    [&](int a, int b) { return metric[a] < metric[b] || (metric[a] == metric[b] && a < b); });
  for (int k = 0; k < n; ++k) pruned[order[k]] = 1;
}

}  // namespace

std::vector<std::uint8_t> sparsegpt_prune(float* w, std::int64_t rows, std::int64_t cols, std::int64_t col_offset,
                                          const HessianFactor& f, const SparseGptOptions& options,
                                          const Selector& selector, const BlockErrorSink& sink, double* loss) {
  detail::check_slice("sparsegpt_prune", rows, cols, col_offset, f);
  check_options(cols, col_offset, f, options);
  if (options.prune_m > 64)
    throw std::invalid_argument("sparsegpt_prune: m = " + std::to_string(options.prune_m) + " above the supported 64");
  const bool structured = options.prune_m > 0;
  const int n = options.prune_n, m = options.prune_m;
  const Index global_rows = options.global_rows > 0 ? options.global_rows : rows;

  for (Index c = 0; c < cols; ++c)
    if (f.dead[static_cast<std::size_t>(col_offset + c)] != 0)
      for (Index r = 0; r < rows; ++r) w[r * cols + c] = 0.0f;

  std::vector<std::uint8_t> keep(static_cast<std::size_t>(rows * cols), 1);
  const Index block = options.block_size;
  const Index max_count = std::min(block, cols);
  std::vector<float> err(static_cast<std::size_t>(rows * max_count));
  std::vector<float> metric(structured ? 0 : static_cast<std::size_t>(rows * max_count));
  std::vector<double> row_loss(static_cast<std::size_t>(rows), 0.0);
  for (Index j0 = 0; j0 < cols; j0 += block) {
    const Index j1 = std::min(cols, j0 + block), count = j1 - j0;
    const Index b0 = col_offset + j0, b1 = col_offset + j1;
    float threshold = 0.0f;
    if (!structured) {
#pragma omp parallel for schedule(static)
      for (Index r = 0; r < rows; ++r)
        for (Index i = 0; i < count; ++i) {
          const float v = w[r * cols + j0 + i], d = f.diagonal(b0 + i);
          metric[static_cast<std::size_t>(r * count + i)] = v * v / (d * d);
        }
      const auto k = static_cast<Index>(std::floor(static_cast<double>(global_rows * count) * options.sparsity));
      threshold =
          selector.kth_smallest(std::span<const float>(metric.data(), static_cast<std::size_t>(rows * count)), k);
    }
#pragma omp parallel
    {
      std::vector<float> w1(static_cast<std::size_t>(count)), nm_metric(static_cast<std::size_t>(std::max(m, 1)));
      std::vector<std::uint8_t> pruned(static_cast<std::size_t>(count));
#pragma omp for schedule(static)
      for (Index r = 0; r < rows; ++r) {
        float* wr = w + r * cols;
        std::copy(wr + j0, wr + j1, w1.begin());
        for (Index i = 0; i < count; ++i)
          pruned[static_cast<std::size_t>(i)] =
              structured ? 0 : static_cast<std::uint8_t>(metric[static_cast<std::size_t>(r * count + i)] <= threshold);
        double lost = 0.0;
        for (Index i = 0; i < count; ++i) {
          const Index p = b0 + i;
          if (structured && i % m == 0) {
            for (int k = 0; k < m; ++k) {
              const float v = w1[static_cast<std::size_t>(i + k)], d = f.diagonal(p + k);
              nm_metric[static_cast<std::size_t>(k)] = v * v / (d * d);
            }
            mark_n_smallest(nm_metric.data(), n, m, pruned.data() + i);
          }
          const bool drop = pruned[static_cast<std::size_t>(i)] != 0;
          const float d = f.diagonal(p);
          const float diff = drop ? w1[static_cast<std::size_t>(i)] : 0.0f;
          lost += static_cast<double>(diff * diff / (d * d));
          const float e = diff / d;
          // A kept weight has no error; skipping its (zero) update changes no value.
          if (drop) {
            const float* up = f.u.data() + p * f.n + b0;
            for (Index k = i + 1; k < count; ++k) w1[static_cast<std::size_t>(k)] -= e * up[k];
            w1[static_cast<std::size_t>(i)] = 0.0f;
            keep[static_cast<std::size_t>(r * cols + j0 + i)] = 0;
          }
          err[static_cast<std::size_t>(r * count + i)] = e;
        }
        std::copy(w1.begin(), w1.end(), wr + j0);
        row_loss[static_cast<std::size_t>(r)] += lost;
      }
    }
    if (sink) sink(b0, b1, err.data());
    detail::apply_block_error_positions(w, rows, cols, cols, col_offset, f, b0, b1, err.data());
  }
  if (loss != nullptr) {
    double total = 0.0;
    for (const double l : row_loss) total += l;
    *loss = total / 2.0;
  }
  return keep;
}

}  // namespace loom::compress
