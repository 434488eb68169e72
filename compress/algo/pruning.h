// Magnitude and Wanda pruning masks, unstructured and n:m (2:4), for one linear layer's
// weight W [rows = out, cols = in] (PyTorch layout), possibly a tensor-parallel slice of it.
//
// The rules are those of the Wanda repository (Sun et al. 2023, `lib/prune.py`), so that
// its PyTorch code is an exact oracle (tests/reference/test_wanda_reference.py):
//   magnitude   layer-wide threshold t = the floor(numel · sparsity)-th smallest |W| (0-based);
//               every |W_ij| <= t is pruned (`prune_magnitude`: ties at t go too, so one more
//               than floor(numel · sparsity) at least). sparsity 0 leaves the layer dense.
//   Wanda       metric |W_ij| · ‖X_j‖ with ‖X_j‖² = Σ x_j² over the calibration tokens; in
//               each output row the k = floor(row width · sparsity) smallest are pruned, ties
//               broken by the lower column (`prune_wanda` sorts each row stably): exactly k.
//   n:m         in each group of m consecutive columns of a row, the n smallest of the metric
//               (|W| for magnitude, Wanda's for Wanda) are pruned, ties to the lower column.
//
// Tensor parallelism: a column-parallel layer (qkv, gate, up) splits rows, a row-parallel
// one (out, down) splits columns. The magnitude threshold and Wanda's per-row rank are found
// by the Selector over every rank's values (compress/algo/selection.h), given the global
// counts, so each rank gets its slice of the whole layer's mask. n:m groups never straddle a
// slice (the driver checks that the slice width is a multiple of m, so offsets are too).
//
// Masks are keep-masks, uint8 [rows, cols] row-major, 1 = kept, 0 = pruned.
//
// Thread safety: pure functions; a Selector over MPI makes the calls collective over its
// group (every rank calls the same function with the same global counts).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "compress/algo/selection.h"

namespace loom::compress {

// |W| [rows, cols]. Throws on a non-finite weight (a NaN has no rank).
std::vector<float> magnitude_metric(const float* w, std::int64_t rows, std::int64_t cols);
// |W_ij| · sqrt(sq_sum_j) in float, sq_sum [cols] (this slice's Σ x_j²). Throws on a
// non-finite weight or a negative or non-finite sq_sum.
std::vector<float> wanda_metric(const float* w, std::int64_t rows, std::int64_t cols, std::span<const double> sq_sum);

// Layer-wide magnitude pruning. w: this rank's [rows, cols]; global_numel: the whole layer's
// element count (rows · cols on one rank). sparsity in [0, 1).
std::vector<std::uint8_t> magnitude_mask(const float* w, std::int64_t rows, std::int64_t cols,
                                         std::int64_t global_numel, double sparsity, const Selector& selector);

// Per-row Wanda pruning. w [rows, cols] holds global columns [col_offset, col_offset + cols)
// of rows that are row_width_global wide; sq_sum [cols] is Σ x² of those columns.
std::vector<std::uint8_t> wanda_mask(const float* w, std::int64_t rows, std::int64_t cols, std::int64_t col_offset,
                                     std::int64_t row_width_global, std::span<const double> sq_sum, double sparsity,
                                     const Selector& selector);

// n:m pruning of a metric [rows, cols] (>= 0, not NaN): in each group of m columns the n
// smallest are pruned. Needs cols % m == 0 and 0 <= n < m.
std::vector<std::uint8_t> nm_mask(const float* metric, std::int64_t rows, std::int64_t cols, int n, int m);

// Zeroes w[i] wherever mask[i] == 0 (count elements); returns how many it zeroed.
std::int64_t apply_mask(float* w, const std::uint8_t* mask, std::int64_t count);
// Fraction of pruned entries (0 for an empty mask).
double sparsity_of(std::span<const std::uint8_t> mask);

}  // namespace loom::compress
