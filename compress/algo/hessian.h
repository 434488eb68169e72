// The inverse-Hessian factor that GPTQ and SparseGPT share, and the lazy block update that
// carries one finished block's errors to the columns after it.
//
// Both methods (Frantar et al. 2022, Frantar & Alistarh 2023) read one linear layer's input
// statistics H = Σ x xᵀ [n, n] and process the weight's n input columns in order, each time
// spreading the error of the column just rounded or pruned over the columns not yet done. The
// weights of that spread are the rows of U, the upper Cholesky factor of (H + λI)⁻¹, taken in
// processing order (natural, or "act order": descending diag H). `factor_hessian` computes it
// once per layer, as the published code does, in double, and stores it in f32.
//
// `apply_block_error` is the one place the update of columns after a block is computed. Its
// arithmetic gives each W[r, c] the same bits whichever columns are being updated (a fixed loop
// over the block's positions per element, no shape-dependent GEMM blocking), which is what lets
// a tensor-parallel driver split a row-parallel layer into column slices: the rank owning the
// earlier columns hands each finished block's errors (a BlockErrorSink) to the ranks owning the
// later ones, which apply them to their slices and end bit-identical to a single-process run.
//
// Ownership: HessianFactor is a plain value. Thread safety: pure functions; apply_block_error
// runs OpenMP over rows only, so results do not depend on the thread count. No MPI here.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace loom::compress {

struct HessianFactor {
  std::int64_t n = 0;              // input columns
  std::vector<std::int64_t> perm;  // act order: perm[p] = original column processed at position p; empty = natural
  std::vector<std::uint8_t> dead;  // [n] by original column: 1 where H_jj == 0 (its weights are zeroed)
  std::vector<float> u;            // [n, n] row-major, in processing order: upper Cholesky factor of (H + λI)⁻¹
  double damp = 0.0;               // λ = percdamp · mean(diag H) (after dead columns get H_jj = 1)

  // U[p, p]: the published code's d for the column processed at position p.
  float diagonal(std::int64_t p) const { return u[static_cast<std::size_t>(p * n + p)]; }
};

// h [n, n] row-major, symmetric: Σ x xᵀ over the calibration tokens (any positive scale).
// Dead columns get H_jj = 1; act_order sorts by diag H descending (stable: ties keep column
// order); λ = percdamp · mean(diag H) is added; then U = cholesky(cholesky_inverse(cholesky(H)),
// upper). Throws std::invalid_argument for n <= 0, percdamp < 0 or an asymmetric / non-finite h,
// std::runtime_error naming the column when H + λI is not positive definite.
HessianFactor factor_hessian(const double* h, std::int64_t n, double percdamp, bool act_order);

// Scaled errors (w − q) / U[p, p] of one finished block of processing positions [b0, b1):
// err [rows, b1 − b0] row-major.
using BlockErrorSink = std::function<void(std::int64_t b0, std::int64_t b1, const float* err)>;

// W[r, c] −= Σ_{t=b0}^{b1−1} err[r, t − b0] · U[t, pos(c)] for every local column c with
// pos(c) >= b1 (columns at earlier positions are left alone). w [rows, cols] row-major holds
// the original columns [col_offset, col_offset + cols) of the layer. With act order (f.perm
// non-empty) w must be the whole layer in natural column order (col_offset 0, cols f.n).
void apply_block_error(float* w, std::int64_t rows, std::int64_t cols, std::int64_t col_offset, const HessianFactor& f,
                       std::int64_t b0, std::int64_t b1, const float* err);

namespace detail {
// Checks shared by GPTQ and SparseGPT on (w slice, factor); `who` names the caller in messages.
void check_slice(const char* who, std::int64_t rows, std::int64_t cols, std::int64_t col_offset,
                 const HessianFactor& f);
// acc[p − p0] = Σ_{t=b0}^{b1−1} err_row[t − b0] · U[t, p] for p in [p0, p1): the per-element
// arithmetic every update path uses (see apply_block_error).
void block_error_row(const float* err_row, const HessianFactor& f, std::int64_t b0, std::int64_t b1, std::int64_t p0,
                     std::int64_t p1, float* acc);
// apply_block_error on a working copy whose column j sits at processing position p0 + j
// (ld = its row stride, width = its columns).
void apply_block_error_positions(float* w, std::int64_t rows, std::int64_t ld, std::int64_t width, std::int64_t p0,
                                 const HessianFactor& f, std::int64_t b0, std::int64_t b1, const float* err);
}  // namespace detail

}  // namespace loom::compress
