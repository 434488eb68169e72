// Where this process sits in the job, read from the launcher's environment before (or
// without) MPI: Open MPI's mpirun (OMPI_COMM_WORLD_*), Slurm's srun (SLURM_PROCID, ...),
// a bare PMIx launcher (PMIX_RANK), or else a plain single process. Used to name log files
// and pick a local GPU before MPI_Init, and by MpiRuntime to catch a launcher/MPI mismatch
// (an mpirun from another MPI starts N copies that each think they are rank 0 of 1).
//
// Threads and ranks: pure functions of the environment; safe from any thread as long as
// nobody calls setenv concurrently.
#pragma once

#include <functional>
#include <string>

namespace loom::launch {

struct RankEnvironment {
  int world_rank = 0;
  int world_size = 1;  // 0 when the launcher does not say (PMIx alone); MPI knows it
  int local_rank = 0;  // rank among the processes on this node
  int local_size = 1;  // 0 when the launcher does not say
  // "openmpi", "slurm", "pmix" or "single"; MpiRuntime reports "mpi" for an unrecognised
  // launcher that started more than one rank.
  std::string launcher = "single";
};

// Looks a variable up; returns nullptr when it is not set.
using EnvLookup = std::function<const char*(const char*)>;

// Precedence: Open MPI, then Slurm (srun step variables), then PMIx, then single process.
// Throws std::invalid_argument naming the variable when a value is not a non-negative
// integer, or when rank >= size.
RankEnvironment read_rank_environment(const EnvLookup& lookup);
RankEnvironment read_rank_environment();  // from the process environment

// "rank 3/16 (local 1/4) via openmpi"
std::string describe(const RankEnvironment& env);

}  // namespace loom::launch
