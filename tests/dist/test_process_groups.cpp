// The rank -> group mapping and the launcher environment, without MPI: the 16-rank
// tp=2 pp=4 example from launch/process_groups.h group by group, layout errors, and the
// Open MPI / Slurm / PMIx / single-process environment readers.
#define BOOST_TEST_MODULE process_groups
#include <boost/test/unit_test.hpp>

#include <map>
#include <set>
#include <stdexcept>
#include <string>

#include "launch/environment.h"
#include "launch/process_groups.h"

using loom::launch::ParallelLayout;
using Groups = std::vector<std::vector<int>>;

namespace {

std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "(no exception)";
}

loom::launch::EnvLookup lookup_in(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto found = vars.find(name);
    return found == vars.end() ? nullptr : found->second.c_str();
  };
}

}  // namespace

BOOST_AUTO_TEST_CASE(sixteen_ranks_tp2_pp4_match_the_documented_groups) {
  const ParallelLayout layout{2, 4};
  BOOST_TEST(loom::launch::data_parallel_size(16, layout) == 2);
  BOOST_TEST((loom::launch::tp_groups(16, layout) ==
              Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  BOOST_TEST((loom::launch::dp_groups(16, layout) ==
              Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
  BOOST_TEST((loom::launch::pp_groups(16, layout) ==
              Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  auto c = loom::launch::coordinates_of(6, 16, layout);
  BOOST_TEST(c.tp_rank == 0);
  BOOST_TEST(c.dp_rank == 1);
  BOOST_TEST(c.pp_rank == 1);
  c = loom::launch::coordinates_of(13, 16, layout);
  BOOST_TEST(c.tp_rank == 1);
  BOOST_TEST(c.dp_rank == 0);
  BOOST_TEST(c.pp_rank == 3);
}

BOOST_AUTO_TEST_CASE(every_rank_sits_at_its_group_rank_in_every_listing) {
  for (auto [world, layout] : {std::pair{16, ParallelLayout{2, 4}}, std::pair{24, ParallelLayout{3, 2}},
                               std::pair{8, ParallelLayout{1, 1}}, std::pair{8, ParallelLayout{8, 1}},
                               std::pair{12, ParallelLayout{1, 3}}}) {
    const int dp = loom::launch::data_parallel_size(world, layout);
    auto check = [&](const Groups& groups, int group_size, auto rank_of) {
      BOOST_TEST(static_cast<int>(groups.size()) * group_size == world);
      std::set<int> seen;
      for (const auto& group : groups) {
        BOOST_TEST(static_cast<int>(group.size()) == group_size);
        for (int i = 0; i < static_cast<int>(group.size()); ++i) {
          BOOST_TEST(rank_of(loom::launch::coordinates_of(group[i], world, layout)) == i);
          seen.insert(group[i]);
        }
      }
      BOOST_TEST(static_cast<int>(seen.size()) == world);  // a partition: each rank exactly once
    };
    check(loom::launch::tp_groups(world, layout), layout.tp, [](auto c) { return c.tp_rank; });
    check(loom::launch::dp_groups(world, layout), dp, [](auto c) { return c.dp_rank; });
    check(loom::launch::pp_groups(world, layout), layout.pp, [](auto c) { return c.pp_rank; });
  }
}

BOOST_AUTO_TEST_CASE(a_layout_that_does_not_divide_the_world_is_rejected_with_the_numbers) {
  const std::string message = message_of([] { loom::launch::data_parallel_size(6, ParallelLayout{2, 2}); });
  BOOST_TEST(message.find("world size 6 is not divisible by tp*pp = 4 (tp=2, pp=2)") != std::string::npos,
             message);
  BOOST_CHECK_THROW(loom::launch::tp_groups(10, ParallelLayout{4, 1}), std::invalid_argument);
  BOOST_TEST(message_of([] { loom::launch::data_parallel_size(4, ParallelLayout{0, 1}); }).find("tp=0") !=
             std::string::npos);
  BOOST_CHECK_THROW(loom::launch::coordinates_of(16, 16, ParallelLayout{2, 4}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(environment_from_open_mpi_slurm_pmix_and_single) {
  auto env = loom::launch::read_rank_environment(lookup_in({{"OMPI_COMM_WORLD_RANK", "5"},
                                                            {"OMPI_COMM_WORLD_SIZE", "8"},
                                                            {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                                            {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                                                            {"SLURM_PROCID", "0"},
                                                            {"SLURM_NTASKS", "1"}}));
  BOOST_TEST(env.launcher == "openmpi");
  BOOST_TEST(env.world_rank == 5);
  BOOST_TEST(env.world_size == 8);
  BOOST_TEST(env.local_rank == 1);
  BOOST_TEST(env.local_size == 4);
  BOOST_TEST(loom::launch::describe(env) == "rank 5/8 (local 1/4) via openmpi");

  env = loom::launch::read_rank_environment(lookup_in({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "16"},
                                                       {"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_LOCALID", "1"},
                                                       {"SLURM_NTASKS_PER_NODE", "2(x2)"}}));
  BOOST_TEST(env.launcher == "slurm");
  BOOST_TEST(env.world_rank == 3);
  BOOST_TEST(env.world_size == 4);  // the srun step, not the whole allocation
  BOOST_TEST(env.local_rank == 1);
  BOOST_TEST(env.local_size == 2);

  env = loom::launch::read_rank_environment(lookup_in({{"PMIX_RANK", "7"}}));
  BOOST_TEST(env.launcher == "pmix");
  BOOST_TEST(env.world_rank == 7);
  BOOST_TEST(env.world_size == 0);

  env = loom::launch::read_rank_environment(lookup_in({}));
  BOOST_TEST(env.launcher == "single");
  BOOST_TEST(env.world_rank == 0);
  BOOST_TEST(env.world_size == 1);
}

BOOST_AUTO_TEST_CASE(malformed_environment_names_the_variable) {
  std::string message = message_of([] {
    loom::launch::read_rank_environment(lookup_in({{"OMPI_COMM_WORLD_RANK", "two"}, {"OMPI_COMM_WORLD_SIZE", "4"}}));
  });
  BOOST_TEST(message.find("OMPI_COMM_WORLD_RANK='two'") != std::string::npos, message);
  message = message_of([] {
    loom::launch::read_rank_environment(lookup_in({{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "4"}}));
  });
  BOOST_TEST(message.find("SLURM_PROCID=4 is not below SLURM_NTASKS=4") != std::string::npos, message);
}
