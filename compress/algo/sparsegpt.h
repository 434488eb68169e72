// SparseGPT: one-shot pruning with Hessian-based reconstruction of the remaining weights
// (Frantar & Alistarh 2023), as the published sparsegpt.py `fasterprune` does it without
// joint quantization, on one linear layer's weight W [rows = out, cols = in] in f32.
//
// Columns are visited in natural order in blocks of `block_size`; a pruned weight's scaled
// error (w − 0) / U[p, p] is spread over the rest of its block at once and over later blocks
// lazily (apply_block_error), exactly like GPTQ. The mask:
//   unstructured  at the start of each block, metric = W² / U[p, p]² over every row and the
//                 block's columns; threshold = its k-th smallest, k = floor(count · sparsity)
//                 with count over every rank sharing the Selector; metric <= threshold is
//                 pruned (so at least k + 1 weights per block, as sparsegpt.py does);
//   n:m           per row, at every m-th column of the block, the n smallest metrics among the
//                 next m columns (on the partly updated block) are pruned; ties go to the lower
//                 column.
//
// Tensor parallelism: a column-parallel layer split by rows passes an MPI Selector (see
// compress/algo/selection.h) and SparseGptOptions::global_rows; a row-parallel layer split by
// columns runs the slices in column order like GPTQ (see gptq.h) with the local Selector, and
// ends bit-identical to the whole layer when slice widths are multiples of block_size.
//
// Thread safety: pure apart from writing w; OpenMP over rows only. The selector and the sink
// are called from the calling thread (a collective selector sees the same call sequence on
// every rank).
#pragma once

#include <cstdint>
#include <vector>

#include "compress/algo/hessian.h"
#include "compress/algo/selection.h"

namespace loom::compress {

struct SparseGptOptions {
  double sparsity = 0.5;          // unstructured: fraction pruned, in (0, 1)
  int prune_n = 0, prune_m = 0;   // n:m (2:4 = 2, 4); 0, 0 = unstructured
  double percdamp = 0.01;         // used by factor_hessian; kept here so one struct describes a run
  std::int64_t block_size = 128;  // a multiple of prune_m for n:m
  std::int64_t global_rows = 0;   // rows over every rank sharing the selector; 0 = rows
};

// SparseGPT on w [rows, cols] row-major = original columns [col_offset, col_offset + cols) of a
// layer of f.n columns (natural order: the factor must be built without act order). w ends
// pruned and updated (dead columns 0); returns the keep-mask [rows, cols] (1 = kept). sink
// (may be empty) receives every finished block's scaled errors, in order; loss (may be null)
// receives sparsegpt.py's Σ w² / U[p, p]² / 2 over the pruned weights of the slice. Throws
// std::invalid_argument for inconsistent shapes or options.
std::vector<std::uint8_t> sparsegpt_prune(float* w, std::int64_t rows, std::int64_t cols, std::int64_t col_offset,
                                          const HessianFactor& f, const SparseGptOptions& options,
                                          const Selector& selector, const BlockErrorSink& sink = {},
                                          double* loss = nullptr);

}  // namespace loom::compress
