// Selection of the k smallest among values that may be spread over tensor-parallel ranks.
//
// Pruning decides which weights to drop by ranking a metric: over a whole matrix
// (magnitude), over a block of columns and every row (SparseGPT), or within each output row
// (Wanda). Under tensor parallelism a rank holds only some rows or some columns of that
// set, so the ranking must look at every rank's values without gathering the weights. The
// methods take a Selector: the default here sees one process's values; the MPI one
// (compress/distributed_selector.h) finds the same answer over a tp group by bisection with
// all-reduced counts, so a split layer gets exactly the mask of the whole one.
//
// Thread safety: const methods; the MPI selector is collective (every rank of its group calls
// the same method in the same order).
#pragma once

#include <cstdint>
#include <span>

namespace loom::compress {

class Selector {
 public:
  virtual ~Selector() = default;
  // The k-th smallest (0-based) of the union of every rank's `values`; 0 <= k < total count.
  virtual float kth_smallest(std::span<const float> values, std::int64_t k) const;
  // keys [rows, cols] row-major: for each row r, out[r] = the k-th smallest (0-based) key of
  // that row over every rank's columns (0 <= k < the row's total width).
  virtual void kth_smallest_per_row(std::span<const std::uint64_t> keys, std::int64_t rows, std::int64_t k,
                                    std::uint64_t* out) const;
};

// A non-negative metric and its global column as one totally ordered key: ties in the metric
// break by column (the lower column ranks smaller), like a stable sort. metric >= 0 and not
// NaN, so its bit pattern orders like its value.
std::uint64_t metric_key(float metric, std::int64_t global_column);

}  // namespace loom::compress
