#include "launch/environment.h"

#include <cstdlib>
#include <stdexcept>

namespace loom::launch {
namespace {

int parse_count(const char* name, const char* text) {
  std::string value(text);
  std::size_t used = 0;
  long parsed = -1;
  try {
    parsed = std::stol(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (value.empty() || used != value.size() || parsed < 0 || parsed > 1 << 30) {
    throw std::invalid_argument("environment variable " + std::string(name) + "='" + value +
                                "' is not a non-negative integer; the launcher set it, so "
                                "check how the job was started");
  }
  return static_cast<int>(parsed);
}

// The value of `name` as an int, or `fallback` when it is unset.
int read_int(const EnvLookup& lookup, const char* name, int fallback) {
  const char* text = lookup(name);
  return text ? parse_count(name, text) : fallback;
}

void check_rank_below_size(const RankEnvironment& env, const char* rank_var, const char* size_var) {
  if (env.world_size > 0 && env.world_rank >= env.world_size) {
    throw std::invalid_argument(std::string("environment: ") + rank_var + "=" +
                                std::to_string(env.world_rank) + " is not below " + size_var +
                                "=" + std::to_string(env.world_size));
  }
  if (env.local_size > 0 && env.local_rank >= env.local_size) {
    throw std::invalid_argument("environment (" + env.launcher + "): local rank " +
                                std::to_string(env.local_rank) + " is not below local size " +
                                std::to_string(env.local_size));
  }
}

}  // namespace

RankEnvironment read_rank_environment(const EnvLookup& lookup) {
  RankEnvironment env;
  if (lookup("OMPI_COMM_WORLD_RANK")) {
    env.launcher = "openmpi";
    env.world_rank = read_int(lookup, "OMPI_COMM_WORLD_RANK", 0);
    env.world_size = read_int(lookup, "OMPI_COMM_WORLD_SIZE", 0);
    env.local_rank = read_int(lookup, "OMPI_COMM_WORLD_LOCAL_RANK", 0);
    env.local_size = read_int(lookup, "OMPI_COMM_WORLD_LOCAL_SIZE", 0);
    check_rank_below_size(env, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE");
  } else if (lookup("SLURM_PROCID") && (lookup("SLURM_STEP_NUM_TASKS") || lookup("SLURM_NTASKS"))) {
    // SLURM_STEP_NUM_TASKS describes this srun step; SLURM_NTASKS (the whole allocation)
    // is the fallback for older Slurm versions.
    const char* size_var = lookup("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
    env.launcher = "slurm";
    env.world_rank = read_int(lookup, "SLURM_PROCID", 0);
    env.world_size = read_int(lookup, size_var, 0);
    env.local_rank = read_int(lookup, "SLURM_LOCALID", 0);
    env.local_size = 0;
    if (const char* per_node = lookup("SLURM_NTASKS_PER_NODE")) {
      std::string text(per_node);  // "4" or "4(x2)": the count before any repetition mark
      std::size_t paren = text.find('(');
      env.local_size = parse_count("SLURM_NTASKS_PER_NODE", text.substr(0, paren).c_str());
    }
    check_rank_below_size(env, "SLURM_PROCID", size_var);
  } else if (lookup("PMIX_RANK")) {
    env.launcher = "pmix";
    env.world_rank = read_int(lookup, "PMIX_RANK", 0);
    env.world_size = 0;
    env.local_rank = 0;
    env.local_size = 0;
  }
  return env;
}

RankEnvironment read_rank_environment() {
  return read_rank_environment([](const char* name) -> const char* { return std::getenv(name); });
}

std::string describe(const RankEnvironment& env) {
  auto count = [](int n) { return n > 0 ? std::to_string(n) : std::string("?"); };
  return "rank " + std::to_string(env.world_rank) + "/" + count(env.world_size) + " (local " +
         std::to_string(env.local_rank) + "/" + count(env.local_size) + ") via " + env.launcher;
}

}  // namespace loom::launch
