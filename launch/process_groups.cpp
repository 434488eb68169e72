#include "launch/process_groups.h"

#include <stdexcept>

#include "launch/mpi_runtime.h"

namespace loom::launch {

const char* axis_name(GroupAxis axis) {
  switch (axis) {
    case GroupAxis::World: return "world";
    case GroupAxis::Tp: return "tp";
    case GroupAxis::Dp: return "dp";
    case GroupAxis::Pp: return "pp";
  }
  return "?";
}

int data_parallel_size(int world_size, ParallelLayout layout) {
  if (layout.tp < 1 || layout.pp < 1) {
    throw std::invalid_argument("parallel: tp and pp must be at least 1 (got tp=" +
                                std::to_string(layout.tp) + ", pp=" + std::to_string(layout.pp) + ")");
  }
  if (world_size < 1) {
    throw std::invalid_argument("world size must be at least 1 (got " + std::to_string(world_size) + ")");
  }
  const int model_parallel = layout.tp * layout.pp;
  if (world_size % model_parallel != 0) {
    throw std::invalid_argument("world size " + std::to_string(world_size) +
                                " is not divisible by tp*pp = " + std::to_string(model_parallel) +
                                " (tp=" + std::to_string(layout.tp) + ", pp=" +
                                std::to_string(layout.pp) +
                                "); launch a multiple of tp*pp ranks or change parallel.tp/pp");
  }
  return world_size / model_parallel;
}

RankCoordinates coordinates_of(int world_rank, int world_size, ParallelLayout layout) {
  const int dp = data_parallel_size(world_size, layout);
  if (world_rank < 0 || world_rank >= world_size) {
    throw std::invalid_argument("rank " + std::to_string(world_rank) + " is outside a world of " +
                                std::to_string(world_size));
  }
  return {world_rank % layout.tp, (world_rank / layout.tp) % dp, world_rank / (layout.tp * dp)};
}

namespace {

// The color MPI_Comm_split uses: the index of the rank's group in the *_groups listing.
int group_index(GroupAxis axis, RankCoordinates c, int dp, ParallelLayout layout) {
  switch (axis) {
    case GroupAxis::Tp: return c.pp_rank * dp + c.dp_rank;
    case GroupAxis::Dp: return c.pp_rank * layout.tp + c.tp_rank;
    case GroupAxis::Pp: return c.dp_rank * layout.tp + c.tp_rank;
    case GroupAxis::World: return 0;
  }
  return 0;
}

int rank_in_group(GroupAxis axis, RankCoordinates c) {
  switch (axis) {
    case GroupAxis::Tp: return c.tp_rank;
    case GroupAxis::Dp: return c.dp_rank;
    case GroupAxis::Pp: return c.pp_rank;
    case GroupAxis::World: return 0;
  }
  return 0;
}

std::vector<std::vector<int>> groups_along(GroupAxis axis, int world_size, ParallelLayout layout) {
  const int dp = data_parallel_size(world_size, layout);
  const int group_size = axis == GroupAxis::Tp ? layout.tp : axis == GroupAxis::Dp ? dp : layout.pp;
  std::vector<std::vector<int>> groups(world_size / group_size, std::vector<int>(group_size));
  for (int r = 0; r < world_size; ++r) {
    RankCoordinates c = coordinates_of(r, world_size, layout);
    groups[group_index(axis, c, dp, layout)][rank_in_group(axis, c)] = r;
  }
  return groups;
}

}  // namespace

std::vector<std::vector<int>> tp_groups(int world_size, ParallelLayout layout) {
  return groups_along(GroupAxis::Tp, world_size, layout);
}
std::vector<std::vector<int>> dp_groups(int world_size, ParallelLayout layout) {
  return groups_along(GroupAxis::Dp, world_size, layout);
}
std::vector<std::vector<int>> pp_groups(int world_size, ParallelLayout layout) {
  return groups_along(GroupAxis::Pp, world_size, layout);
}

struct ProcessGroups::Communicators {
  MPI_Comm world = MPI_COMM_NULL;  // a duplicate, so our traffic never mixes with the caller's
  MPI_Comm tp = MPI_COMM_NULL;
  MPI_Comm dp = MPI_COMM_NULL;
  MPI_Comm pp = MPI_COMM_NULL;

  Communicators() = default;
  Communicators(const Communicators&) = delete;
  Communicators& operator=(const Communicators&) = delete;
  ~Communicators() {
    if (!mpi_active()) return;  // MPI_Finalize already released them
    for (MPI_Comm* comm : {&tp, &dp, &pp, &world}) {
      if (*comm != MPI_COMM_NULL) MPI_Comm_free(comm);
    }
  }
};

ProcessGroups ProcessGroups::build(MPI_Comm world, ParallelLayout layout) {
  if (!mpi_active()) {
    throw std::runtime_error("ProcessGroups::build: MPI is not initialised; create an MpiRuntime first");
  }
  ProcessGroups groups;
  MPI_CHECK(MPI_Comm_rank(world, &groups.world_rank_));
  MPI_CHECK(MPI_Comm_size(world, &groups.world_size_));
  groups.dp_size_ = data_parallel_size(groups.world_size_, layout);
  groups.layout_ = layout;
  groups.coordinates_ = coordinates_of(groups.world_rank_, groups.world_size_, layout);
  auto comms = std::make_shared<Communicators>();
  MPI_CHECK(MPI_Comm_dup(world, &comms->world));
  MPI_CHECK(MPI_Comm_set_errhandler(comms->world, MPI_ERRORS_RETURN));
  const RankCoordinates c = groups.coordinates_;
  for (auto [axis, target] : {std::pair{GroupAxis::Tp, &comms->tp}, std::pair{GroupAxis::Dp, &comms->dp},
                              std::pair{GroupAxis::Pp, &comms->pp}}) {
    MPI_CHECK(MPI_Comm_split(comms->world, group_index(axis, c, groups.dp_size_, layout),
                             rank_in_group(axis, c), target));
  }
  groups.comms_ = std::move(comms);
  return groups;
}

int ProcessGroups::rank(GroupAxis axis) const {
  return axis == GroupAxis::World ? world_rank_ : rank_in_group(axis, coordinates_);
}

int ProcessGroups::size(GroupAxis axis) const {
  switch (axis) {
    case GroupAxis::World: return world_size_;
    case GroupAxis::Tp: return layout_.tp;
    case GroupAxis::Dp: return dp_size_;
    case GroupAxis::Pp: return layout_.pp;
  }
  return 1;
}

MPI_Comm ProcessGroups::comm(GroupAxis axis) const {
  if (!comms_) throw std::logic_error("ProcessGroups: default-constructed; use ProcessGroups::build");
  switch (axis) {
    case GroupAxis::World: return comms_->world;
    case GroupAxis::Tp: return comms_->tp;
    case GroupAxis::Dp: return comms_->dp;
    case GroupAxis::Pp: return comms_->pp;
  }
  return MPI_COMM_NULL;
}

std::vector<int> ProcessGroups::members(GroupAxis axis) const {
  if (axis == GroupAxis::World) {
    std::vector<int> all(world_size_);
    for (int r = 0; r < world_size_; ++r) all[r] = r;
    return all;
  }
  return groups_along(axis, world_size_, layout_)[group_index(axis, coordinates_, dp_size_, layout_)];
}

std::string ProcessGroups::describe() const {
  auto part = [&](GroupAxis axis) {
    return std::string(axis_name(axis)) + " " + std::to_string(rank(axis)) + "/" + std::to_string(size(axis));
  };
  return "rank " + std::to_string(world_rank_) + "/" + std::to_string(world_size_) + ": " +
         part(GroupAxis::Tp) + ", " + part(GroupAxis::Dp) + ", " + part(GroupAxis::Pp);
}

}  // namespace loom::launch
