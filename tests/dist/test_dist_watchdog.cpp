// The watchdog under mpirun, driven by tests/dist/test_watchdog.py, which checks exit codes,
// timings, stderr and the files left in DIR. Usage: test_dist_watchdog SCENARIO DIR
//   hang     the last rank sleeps 60 s in "sleep (test)" at step 11 (its own timeout is
//            30 s, so the report we check comes from the ranks waiting for it) while the
//            others enter an all-reduce through a TimingComm marked "dp" at step 12;
//            timeout 3 s, heartbeat 0.5 s. Must end with exit code 86 well before 60 s.
//   healthy  5 steps of 0.2 s "compute" and a checked all-reduce, timeout 3 s; also checks
//            that TimingComm marks each blocking call and each Request's wait with its
//            label. Must exit 0 without a report.
//   alone    one process without mpirun stuck 30 s in "io (test)" with timeout 1 s: the
//            watchdog must end it with std::_Exit(86).
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/parallel/timing_comm.h"
#include "core/tensor.h"
#include "launch/mpi_comm.h"
#include "launch/mpi_runtime.h"
#include "launch/watchdog.h"

using namespace loom;
using namespace loom::launch;

namespace {

int g_failed = 0;

void check(bool ok, int rank, const std::string& what) {
  if (ok) return;
  ++g_failed;
  std::fprintf(stderr, "[rank %d] FAILED: %s\n", rank, what.c_str());
}

// Forwards to the watchdog and remembers the labels, to check what TimingComm marks.
class RecordingMarker final : public parallel::ActivityMarker {
 public:
  explicit RecordingMarker(Watchdog& watchdog) : watchdog_(watchdog) {}
  void begin(const char* label) noexcept override {
    labels.push_back(label);
    watchdog_.begin(label);
  }
  void end() noexcept override {
    ++ends;
    watchdog_.end();
  }
  std::vector<std::string> labels;
  int ends = 0;

 private:
  Watchdog& watchdog_;
};

void sleep_s(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

Tensor rank_values(int rank) {
  Tensor t = Tensor::empty({4}, DType::F32);
  for (int i = 0; i < 4; ++i) t.data<float>()[i] = static_cast<float>(rank * 10 + i);
  return t;
}

int hang(const MpiRuntime& mpi, const std::string& dir) {
  const int rank = mpi.world_rank(), size = mpi.world_size();
  const bool sleeper = rank == size - 1;
  Watchdog watchdog(WatchdogOptions{dir, rank, size, sleeper ? 30.0 : 3.0, 0.5});
  MpiComm world(MPI_COMM_WORLD);
  parallel::TimingComm dp(world);
  dp.mark_activity(&watchdog, "dp");
  Tensor values = rank_values(rank);
  for (int step = 10; step <= 11; ++step) {
    watchdog.set_step(step);
    dp.all_reduce_sum(values);
  }
  if (sleeper) {
    Watchdog::Activity sleeping(watchdog, "sleep (test)");
    sleep_s(60);
  } else {
    watchdog.set_step(12);
    dp.all_reduce_sum(values);
  }
  std::fprintf(stderr, "[rank %d] FAILED: the hang was not stopped\n", rank);
  return 1;
}

int healthy(const MpiRuntime& mpi, const std::string& dir) {
  const int rank = mpi.world_rank(), size = mpi.world_size();
  Watchdog watchdog(WatchdogOptions{dir, rank, size, 3.0, 0.2});
  MpiComm world(MPI_COMM_WORLD);
  parallel::TimingComm dp(world);
  RecordingMarker marker(watchdog);
  dp.mark_activity(&marker, "dp");
  for (int step = 1; step <= 5; ++step) {
    watchdog.set_step(step);
    {
      Watchdog::Activity compute(watchdog, "forward");
      sleep_s(0.2);
    }
    Tensor values = rank_values(rank);
    dp.all_reduce_sum(values);
    for (int i = 0; i < 4; ++i) {
      const float expected = static_cast<float>(10 * size * (size - 1) / 2 + size * i);
      check(values.data<float>()[i] == expected, rank, "all_reduce_sum element " + std::to_string(i));
    }
  }
  check(marker.labels.size() == 5 && marker.labels.back() == "dp all_reduce", rank,
        "5 blocking all-reduces marked \"dp all_reduce\"");
  Tensor values = rank_values(rank);
  Request request = dp.all_reduce_sum_async(values);
  request.wait();
  Tensor one = Tensor::empty({1}, DType::F32);
  dp.broadcast(one, 0);
  const std::vector<std::string> tail(marker.labels.begin() + 5, marker.labels.end());
  check(tail == std::vector<std::string>{"dp all_reduce", "dp all_reduce", "dp broadcast"}, rank,
        "post + wait of the async all-reduce and the broadcast are marked");
  check(marker.ends == static_cast<int>(marker.labels.size()), rank, "every begin has its end");
  // Every rank's heartbeat is fresh and readable once all have beaten at least twice.
  sleep_s(0.5);
  MPI_Barrier(MPI_COMM_WORLD);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (const RankHeartbeat& other : read_heartbeats(dir, size)) {
    check(other.heartbeat.has_value(), rank, "heartbeat of rank " + std::to_string(other.rank) + ": " + other.problem);
    if (other.heartbeat) {
      check(now - other.heartbeat->time < 2.0, rank, "heartbeat of rank " + std::to_string(other.rank) + " is fresh");
      check(other.heartbeat->step == 5, rank, "rank " + std::to_string(other.rank) + " reports step 5");
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return g_failed == 0 ? 0 : 1;
}

int alone(const MpiRuntime& mpi, const std::string& dir) {
  Watchdog watchdog(WatchdogOptions{dir, mpi.world_rank(), mpi.world_size(), 1.0, 0.2});
  watchdog.set_step(3);
  Watchdog::Activity io(watchdog, "io (test)");
  sleep_s(30);
  std::fprintf(stderr, "FAILED: the stuck process was not stopped\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s hang|healthy|alone DIR\n", argv[0]);
    return 2;
  }
  const std::string scenario = argv[1], dir = argv[2];
  MpiRuntime mpi(&argc, &argv);
  int code = 2;
  try {
    if (scenario == "hang") {
      code = hang(mpi, dir);
    } else if (scenario == "healthy") {
      code = healthy(mpi, dir);
    } else if (scenario == "alone") {
      code = alone(mpi, dir);
    } else {
      std::fprintf(stderr, "unknown scenario %s (expected hang, healthy or alone)\n", scenario.c_str());
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "[rank %d] FAILED: %s\n", mpi.world_rank(), error.what());
    code = 1;
  }
  return code;
}
