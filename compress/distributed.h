// The MPI pieces of distributed compression: reductions of calibration statistics over the
// data-parallel group, the k-smallest selection over a tensor-parallel group (so a split layer
// gets the mask of the whole one), the column all-gather of a row-parallel layer's input, and
// the hand-off of GPTQ / SparseGPT block errors along the tp ranks of a row-parallel layer.
//
// Every function is collective over its communicator (all its ranks call it, in the same
// order); a communicator of one rank makes each a local no-op. Threads: the MPI thread.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <span>
#include <vector>

#include "compress/algo/selection.h"

namespace loom::compress {

void all_reduce_max(std::span<float> values, MPI_Comm comm);
void all_reduce_min(std::span<float> values, MPI_Comm comm);
void all_reduce_sum(std::span<std::int64_t> values, MPI_Comm comm);
std::int64_t all_reduce_sum(std::int64_t value, MPI_Comm comm);

// x [rows, cols] on each of the group's ranks -> [rows, cols · size], rank r's columns at
// [r·cols, (r+1)·cols) (a row-parallel layer's input, whole).
std::vector<float> all_gather_columns(const float* x, std::int64_t rows, std::int64_t cols, MPI_Comm comm);

// Exact k-th smallest over the ranks of `comm` by bisection on the bit patterns, with the
// counts all-reduced each round: 32 rounds for floats, 64 for keys. Values must be >= 0.
class MpiSelector final : public Selector {
 public:
  explicit MpiSelector(MPI_Comm comm) : comm_(comm) {}
  float kth_smallest(std::span<const float> values, std::int64_t k) const override;
  void kth_smallest_per_row(std::span<const std::uint64_t> keys, std::int64_t rows, std::int64_t k,
                            std::uint64_t* out) const override;

 private:
  MPI_Comm comm_;
};

// Sends `data` to every rank of comm above `from` (the ranks whose column slices come later).
void send_to_later_ranks(std::span<const float> data, MPI_Comm comm, int tag);
void receive_from(std::span<float> data, int from, MPI_Comm comm, int tag);

}  // namespace loom::compress
