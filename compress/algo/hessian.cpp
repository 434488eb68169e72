#include "compress/algo/hessian.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace loom::compress {
namespace {

using Index = std::int64_t;

// Eight interleaved partial sums: the compiler may not reorder a floating-point reduction, but
// it vectorises independent lanes; the order is fixed by len alone, so results stay deterministic.
double dot(const double* a, const double* b, Index len) {
  constexpr Index kLanes = 8;
  double lane[kLanes] = {};
  Index k = 0;
  for (; k + kLanes <= len; k += kLanes)
    for (Index l = 0; l < kLanes; ++l) lane[l] += a[k + l] * b[k + l];
  double s = 0.0;
  for (; k < len; ++k) s += a[k] * b[k];
  for (Index l = 0; l < kLanes; ++l) s += lane[l];
  return s;
}

// In place: the lower triangle of a [n, n] becomes L with L Lᵀ = A (the strict upper triangle is
// not read). Left-looking in panels of kPanel columns: the panel's diagonal block is factored
// serially, then every row below it, independently, subtracts the earlier columns' contribution
// and solves for its panel entries — one parallel region per panel, and each row streamed once
// per panel rather than once per column. Each entry's arithmetic does not depend on the threads.
void cholesky_lower(double* a, Index n, const char* what) {
  constexpr Index kPanel = 64;
  auto update_and_solve_row = [a, n](Index i, Index j0, Index j1) {
    double* ai = a + i * n;
    for (Index j = j0; j < std::min(i, j1); ++j) {
      const double* aj = a + j * n;
      ai[j] = (ai[j] - dot(ai, aj, j0) - dot(ai + j0, aj + j0, j - j0)) / aj[j];
    }
  };
  for (Index j0 = 0; j0 < n; j0 += kPanel) {
    const Index j1 = std::min(n, j0 + kPanel);
    for (Index j = j0; j < j1; ++j) {
      update_and_solve_row(j, j0, j1);
      double* aj = a + j * n;
      const double pivot = aj[j] - dot(aj, aj, j0) - dot(aj + j0, aj + j0, j - j0);
      if (!(pivot > 0.0) || !std::isfinite(pivot))
        throw std::runtime_error(std::string("factor_hessian: ") + what + " is not positive definite at position " +
                                 std::to_string(j) + " (pivot " + std::to_string(pivot) +
                                 "); raise percdamp or check the calibration statistics");
      aj[j] = std::sqrt(pivot);
    }
#pragma omp parallel for schedule(static)
    for (Index i = j1; i < n; ++i) update_and_solve_row(i, j0, j1);
  }
}

// x [n, n]: lower triangle = L⁻¹ for the lower-triangular l (its strict upper triangle is set
// to 0). Column j of the inverse solves L x = e_j on its own.
void invert_lower(const double* l, double* x, Index n) {
  std::fill(x, x + n * n, 0.0);
#pragma omp parallel
  {
    std::vector<double> col(static_cast<std::size_t>(n));
#pragma omp for schedule(dynamic, 16)
    for (Index j = 0; j < n; ++j) {
      col[static_cast<std::size_t>(j)] = 1.0 / l[j * n + j];
      for (Index i = j + 1; i < n; ++i)
        col[static_cast<std::size_t>(i)] = -dot(l + i * n + j, col.data() + j, i - j) / l[i * n + i];
      for (Index i = j; i < n; ++i) x[i * n + j] = col[static_cast<std::size_t>(i)];
    }
  }
}

// Lower triangle of out = Xᵀ X for the lower-triangular x (cholesky_inverse: (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹).
void gram_of_lower(const double* x, double* out, Index n) {
#pragma omp parallel for schedule(dynamic, 16)
  for (Index i = 0; i < n; ++i) {
    double* oi = out + i * n;
    std::fill(oi, oi + i + 1, 0.0);
    for (Index k = i; k < n; ++k) {
      const double* xk = x + k * n;
      const double s = xk[i];
      for (Index j = 0; j <= i; ++j) oi[j] += s * xk[j];
    }
  }
}

}  // namespace

HessianFactor factor_hessian(const double* h, std::int64_t n, double percdamp, bool act_order) {
  if (n <= 0) throw std::invalid_argument("factor_hessian: n must be positive, got " + std::to_string(n));
  if (!(percdamp >= 0.0) || !std::isfinite(percdamp))
    throw std::invalid_argument("factor_hessian: percdamp must be finite and >= 0, got " + std::to_string(percdamp));
  const auto sz = static_cast<std::size_t>(n);
  HessianFactor f;
  f.n = n;
  f.dead.assign(sz, 0);
  // Only the lower triangle of h is read (as torch.linalg.cholesky does).
  auto h_at = [&](Index i, Index j) { return i >= j ? h[i * n + j] : h[j * n + i]; };
  std::vector<double> diag(sz);
  for (Index j = 0; j < n; ++j) {
    diag[static_cast<std::size_t>(j)] = h[j * n + j];
    if (!std::isfinite(diag[static_cast<std::size_t>(j)]) || diag[static_cast<std::size_t>(j)] < 0.0)
      throw std::invalid_argument("factor_hessian: H[" + std::to_string(j) + ", " + std::to_string(j) +
                                  "] = " + std::to_string(diag[static_cast<std::size_t>(j)]) +
                                  "; expected a finite, non-negative Σ x²");
    if (diag[static_cast<std::size_t>(j)] == 0.0)
      f.dead[static_cast<std::size_t>(j)] = 1, diag[static_cast<std::size_t>(j)] = 1.0;
  }
  std::vector<Index> order(sz);
  std::iota(order.begin(), order.end(), Index{0});
  if (act_order) {
    std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) {
      return diag[static_cast<std::size_t>(a)] > diag[static_cast<std::size_t>(b)];
    });
    f.perm = order;
  }
  std::vector<double> a(sz * sz), x(sz * sz);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j <= i; ++j) {
      const Index oi = order[static_cast<std::size_t>(i)], oj = order[static_cast<std::size_t>(j)];
      const double v = i == j ? diag[static_cast<std::size_t>(oi)] : h_at(oi, oj);
      if (!std::isfinite(v))
        throw std::invalid_argument("factor_hessian: H[" + std::to_string(oi) + ", " + std::to_string(oj) +
                                    "] is not finite");
      a[static_cast<std::size_t>(i * n + j)] = v;
    }
  f.damp = percdamp * std::accumulate(diag.begin(), diag.end(), 0.0) / static_cast<double>(n);
  for (Index j = 0; j < n; ++j) a[static_cast<std::size_t>(j * n + j)] += f.damp;

  cholesky_lower(a.data(), n, "H + damp·I");
  invert_lower(a.data(), x.data(), n);
  gram_of_lower(x.data(), a.data(), n);
  cholesky_lower(a.data(), n, "(H + damp·I)^-1");
  f.u.assign(sz * sz, 0.0f);
  for (Index i = 0; i < n; ++i)
    for (Index j = i; j < n; ++j)
      f.u[static_cast<std::size_t>(i * n + j)] = static_cast<float>(a[static_cast<std::size_t>(j * n + i)]);
  return f;
}

namespace detail {

void check_slice(const char* who, std::int64_t rows, std::int64_t cols, std::int64_t col_offset,
                 const HessianFactor& f) {
  const std::string name(who);
  if (rows <= 0 || cols <= 0)
    throw std::invalid_argument(name + ": rows and cols must be positive, got " + std::to_string(rows) + " x " +
                                std::to_string(cols));
  if (f.n <= 0 || f.u.size() != static_cast<std::size_t>(f.n * f.n) || f.dead.size() != static_cast<std::size_t>(f.n))
    throw std::invalid_argument(name + ": the HessianFactor is empty or inconsistent (n = " + std::to_string(f.n) +
                                "); build it with factor_hessian");
  if (col_offset < 0 || col_offset + cols > f.n)
    throw std::invalid_argument(name + ": columns [" + std::to_string(col_offset) + ", " +
                                std::to_string(col_offset + cols) + ") lie outside the layer's " + std::to_string(f.n) +
                                " input columns");
  if (!f.perm.empty() && (col_offset != 0 || cols != f.n))
    throw std::invalid_argument(name + ": act order needs the whole layer (col_offset 0, cols " + std::to_string(f.n) +
                                "), got columns [" + std::to_string(col_offset) + ", " +
                                std::to_string(col_offset + cols) + ")");
}

void block_error_row(const float* err_row, const HessianFactor& f, std::int64_t b0, std::int64_t b1, std::int64_t p0,
                     std::int64_t p1, float* acc) {
  const Index width = p1 - p0;
  std::fill(acc, acc + width, 0.0f);
  for (Index t = b0; t < b1; ++t) {
    const float e = err_row[t - b0];
    const float* ut = f.u.data() + t * f.n + p0;
    for (Index j = 0; j < width; ++j) acc[j] += e * ut[j];
  }
}

void apply_block_error_positions(float* w, std::int64_t rows, std::int64_t ld, std::int64_t width, std::int64_t p0,
                                 const HessianFactor& f, std::int64_t b0, std::int64_t b1, const float* err) {
  // Tiles of positions keep the U rows they read in cache across the block's positions.
  constexpr Index kTile = 512;
  const Index first = std::max<Index>(0, b1 - p0);
  if (first >= width) return;
#pragma omp parallel
  {
    std::vector<float> acc(kTile);
#pragma omp for schedule(static)
    for (Index r = 0; r < rows; ++r) {
      float* wr = w + r * ld;
      for (Index j0 = first; j0 < width; j0 += kTile) {
        const Index j1 = std::min(width, j0 + kTile);
        block_error_row(err + r * (b1 - b0), f, b0, b1, p0 + j0, p0 + j1, acc.data());
        for (Index j = j0; j < j1; ++j) wr[j] -= acc[static_cast<std::size_t>(j - j0)];
      }
    }
  }
}

}  // namespace detail

void apply_block_error(float* w, std::int64_t rows, std::int64_t cols, std::int64_t col_offset, const HessianFactor& f,
                       std::int64_t b0, std::int64_t b1, const float* err) {
  detail::check_slice("apply_block_error", rows, cols, col_offset, f);
  if (b0 < 0 || b1 < b0 || b1 > f.n)
    throw std::invalid_argument("apply_block_error: block [" + std::to_string(b0) + ", " + std::to_string(b1) +
                                ") outside [0, " + std::to_string(f.n) + "]");
  if (f.perm.empty()) {
    detail::apply_block_error_positions(w, rows, cols, cols, col_offset, f, b0, b1, err);
    return;
  }
  // Act order: the positions after the block map to scattered natural columns.
  const Index width = f.n - b1;
  if (width <= 0) return;
#pragma omp parallel
  {
    std::vector<float> acc(static_cast<std::size_t>(width));
#pragma omp for schedule(static)
    for (Index r = 0; r < rows; ++r) {
      detail::block_error_row(err + r * (b1 - b0), f, b0, b1, b1, f.n, acc.data());
      float* wr = w + r * cols;
      for (Index p = b1; p < f.n; ++p) wr[f.perm[static_cast<std::size_t>(p)]] -= acc[static_cast<std::size_t>(p - b1)];
    }
  }
}

}  // namespace loom::compress
