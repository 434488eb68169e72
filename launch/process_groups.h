// ProcessGroups: which ranks share a tensor-parallel (tp), data-parallel (dp) and
// pipeline-parallel (pp) group, and the MPI communicators for this rank's groups.
//
// Built once from `parallel: {tp, pp}` and the world size (dp = world / (tp * pp)) and
// passed down by value; there is no global. Copies share the same communicators, which
// are freed when the last copy goes (unless MPI is already finalised).
//
// Mapping (tp ranks adjacent, then dp, then pp), for world rank r:
//   tp_rank = r % tp,  dp_rank = (r / tp) % dp,  pp_rank = r / (tp * dp)
// Adjacent ranks usually share a node, so the chattiest collective (tp, every layer)
// stays on the fastest links; pp only sends activations between neighbouring stages.
//
// Worked example: 16 ranks, tp = 2, pp = 4, so dp = 16 / (2 * 4) = 2.
//   rank:     0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
//   tp_rank:  0  1  0  1  0  1  0  1  0  1  0  1  0  1  0  1
//   dp_rank:  0  0  1  1  0  0  1  1  0  0  1  1  0  0  1  1
//   pp_rank:  0  0  0  0  1  1  1  1  2  2  2  2  3  3  3  3
//   tp groups (8): [0,1] [2,3] [4,5] [6,7] [8,9] [10,11] [12,13] [14,15]
//   dp groups (8): [0,2] [1,3] [4,6] [5,7] [8,10] [9,11] [12,14] [13,15]
//   pp groups (4): [0,4,8,12] [1,5,9,13] [2,6,10,14] [3,7,11,15]
// Rank 6 is tp rank 0 of [6,7], dp rank 1 of [4,6], pp stage 1 of [2,6,10,14]. Within
// every group, members are listed in order of their rank in that group.
//
// Threads and ranks: build() is collective over `world` (every rank must call it with
// the same layout); the accessors are plain reads, safe from any thread. Collectives on
// the communicators follow MPI_THREAD_FUNNELED: main thread only.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

namespace loom::launch {

struct ParallelLayout {
  int tp = 1;
  int pp = 1;
};

enum class GroupAxis { World, Tp, Dp, Pp };
const char* axis_name(GroupAxis axis);  // "world", "tp", "dp", "pp"

// dp for this world size; throws std::invalid_argument when tp or pp is not positive or
// tp*pp does not divide the world size ("world size 6 is not divisible by tp*pp = 4
// (tp=2, pp=2)").
int data_parallel_size(int world_size, ParallelLayout layout);

// Where one world rank sits; pure, no MPI.
struct RankCoordinates {
  int tp_rank = 0, dp_rank = 0, pp_rank = 0;
};
RankCoordinates coordinates_of(int world_rank, int world_size, ParallelLayout layout);

// Every group of one kind, each listed in group-rank order; pure, no MPI. Same errors as
// data_parallel_size.
std::vector<std::vector<int>> tp_groups(int world_size, ParallelLayout layout);
std::vector<std::vector<int>> dp_groups(int world_size, ParallelLayout layout);
std::vector<std::vector<int>> pp_groups(int world_size, ParallelLayout layout);

class ProcessGroups {
 public:
  // Collective over `world`. Throws std::invalid_argument for a layout that does not fit
  // the world size (before any communicator is made), std::runtime_error on MPI failure.
  static ProcessGroups build(MPI_Comm world, ParallelLayout layout);

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  int tp_rank() const { return coordinates_.tp_rank; }
  int dp_rank() const { return coordinates_.dp_rank; }
  int pp_rank() const { return coordinates_.pp_rank; }
  int tp_size() const { return layout_.tp; }
  int pp_size() const { return layout_.pp; }
  int dp_size() const { return dp_size_; }
  ParallelLayout layout() const { return layout_; }

  int rank(GroupAxis axis) const;
  int size(GroupAxis axis) const;
  // This rank's communicator for the axis; valid while any copy of this object lives.
  MPI_Comm comm(GroupAxis axis) const;
  // World ranks of this rank's group for the axis, in group-rank order.
  std::vector<int> members(GroupAxis axis) const;

  // "rank 6/16: tp 0/2, dp 1/2, pp 1/4"
  std::string describe() const;

 private:
  struct Communicators;
  std::shared_ptr<Communicators> comms_;
  int world_rank_ = 0, world_size_ = 1, dp_size_ = 1;
  RankCoordinates coordinates_;
  ParallelLayout layout_;
};

}  // namespace loom::launch
