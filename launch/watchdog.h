// Watchdog: per-rank heartbeats and a hang detector. A rank stuck in a collective or in I/O
// beyond a timeout makes the job say which ranks were behind and where, then end with
// kWatchdogExitCode instead of hanging until the scheduler's wall-clock limit.
//
// The main thread marks what it is doing: begin("dp all_reduce") / end(), the RAII
// Activity, or through a TimingComm (core/parallel/timing_comm.h) that marks every
// collective; set_step() records the training step. Marking is a few atomic stores of a
// string literal's pointer and a timestamp, cheap enough for every collective call.
// Between marked activities the rank is in "compute", whose clock restarts at each end():
// any marked transition counts as progress, so the timeout measures time WITHOUT progress
// and must sit well above the longest step, checkpoint save or evaluation.
//
// A thread writes, every heartbeat_s, <dir>/rank-NNNNN.json (a temporary file, then an
// atomic rename):
//   {"rank":1,"host":"n17","pid":4242,"step":11,"activity":"forward",
//    "activity_seconds":40.2,"time":1718000000.5}
// (time: seconds since the Unix epoch when written). Files, not MPI: the main thread may be
// stuck inside MPI, which runs MPI_THREAD_FUNNELED, and the run directory is on a shared
// filesystem on clusters. When the current activity has lasted longer than timeout_s, the
// thread reads every rank's heartbeat and prints ONE line to stderr, e.g.
//   loom: watchdog: rank 0 (host n01, pid 77) stuck for 31 s in "dp all_reduce" at step 12;
//   ranks behind: rank 1 (host n17, pid 4242) at step 11 in "forward" for 40 s; rank 3: no
//   heartbeat for 35 s (last: step 11 in "recv") [...]
// listing every rank at another step, in another activity or with a heartbeat older than
// 3 * heartbeat_s + 1 s (at most 32; the rest are counted). It appends the same line to
// <dir>/watchdog-report.txt and ends the job with exit code 86: MPI_Abort(MPI_COMM_WORLD,
// 86) when MPI is active and world_size > 1 (Open MPI's mpirun then exits with 86), else
// std::_Exit(86). MPI_Abort from this helper thread is outside MPI_THREAD_FUNNELED's
// letter; Open MPI 4 honours it (tests/dist/test_watchdog.py checks), and it is the only
// way to stop ranks blocked in a collective. Every rank whose activity times out reports;
// a rank that finds a report written since its own activity began prints a short line
// pointing to it instead of reading all heartbeats again.
//
// Ownership and lifetime: create after MpiRuntime and destroy before it, on the main thread.
// The destructor stops the thread promptly and leaves a last heartbeat with activity
// "stopped". timeout_s == 0 disables everything (no thread, no files).
// Threads: begin/end/set_step and Activity from the main thread only (one writer); the
// watchdog's own thread only reads them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/parallel/timing_comm.h"

namespace loom::launch {

// The exit code of a job the watchdog ended, for scripts and requeue logic to test.
inline constexpr int kWatchdogExitCode = 86;

struct WatchdogOptions {
  std::string dir;  // heartbeat directory, created if missing; shared by all ranks
  int world_rank = 0;
  int world_size = 1;
  double timeout_s = 0;     // seconds without progress before the job is ended; 0 disables
  double heartbeat_s = 10;  // seconds between heartbeat files (also the detection latency)
};

// One rank's heartbeat file.
struct Heartbeat {
  int rank = 0;
  std::string host;
  long pid = 0;
  std::int64_t step = 0;
  std::string activity;
  double activity_seconds = 0;  // how long `activity` had lasted when written
  double time = 0;              // seconds since the Unix epoch when written
};

// "<dir>/rank-00003.json"
std::string heartbeat_path(const std::string& dir, int rank);
// One line of JSON with the fields above.
std::string heartbeat_json(const Heartbeat& heartbeat);
// Throws std::runtime_error naming `where` (the file) and the missing or mistyped key.
Heartbeat parse_heartbeat(const std::string& text, const std::string& where);

// What one rank's heartbeat file held: the heartbeat, or why there is none
// ("no heartbeat file", a parse error).
struct RankHeartbeat {
  int rank = 0;
  std::optional<Heartbeat> heartbeat;
  std::string problem;
};
// Reads the heartbeat of every rank 0 .. world_size-1 in `dir`; never throws for a missing
// or bad file (that is reported in `problem`).
std::vector<RankHeartbeat> read_heartbeats(const std::string& dir, int world_size);

// The report line (without newline) for `self`, stuck in its activity for `stuck_s`, given
// every rank's heartbeat (self's own entry is skipped), the wall time `now` (Unix seconds)
// and the age past which a heartbeat counts as stale.
std::string watchdog_report(const Heartbeat& self, double stuck_s, const std::vector<RankHeartbeat>& ranks,
                            double now, double stale_s);

class Watchdog final : public parallel::ActivityMarker {
 public:
  // Throws std::invalid_argument for a negative timeout, a non-positive heartbeat or an
  // empty dir, and std::runtime_error when the directory or the first heartbeat cannot be
  // written (naming the path).
  explicit Watchdog(WatchdogOptions options);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  bool enabled() const { return options_.timeout_s > 0; }
  const WatchdogOptions& options() const { return options_; }

  // `activity` must be a string literal (or otherwise live for the whole program).
  void begin(const char* activity) noexcept override;
  void end() noexcept override;
  void set_step(std::int64_t step) noexcept { step_.store(step, std::memory_order_relaxed); }

  // begin() on construction, end() on destruction.
  class Activity {
   public:
    Activity(Watchdog& watchdog, const char* activity) : watchdog_(watchdog) { watchdog_.begin(activity); }
    ~Activity() { watchdog_.end(); }
    Activity(const Activity&) = delete;
    Activity& operator=(const Activity&) = delete;

   private:
    Watchdog& watchdog_;
  };

 private:
  struct Current {
    const char* activity;
    std::int64_t since_ns;  // steady clock
  };
  void publish(const char* activity) noexcept;
  Current current() const noexcept;
  Heartbeat snapshot() const;
  void write_heartbeat(const Heartbeat& heartbeat);
  void run();
  [[noreturn]] void fire(const Heartbeat& self);

  WatchdogOptions options_;
  std::string host_;
  long pid_ = 0;

  // Written by the main thread only: a seqlock over (activity, since_ns) so the watchdog
  // thread never pairs one activity with another's start time.
  std::atomic<std::uint64_t> sequence_{0};
  std::atomic<const char*> activity_{nullptr};
  std::atomic<std::int64_t> since_ns_{0};
  std::atomic<std::int64_t> step_{0};
  static constexpr int kMaxDepth = 16;
  const char* stack_[kMaxDepth] = {};  // main thread only; stack_[0] is "compute"
  int depth_ = 0;                      // may exceed kMaxDepth; deeper levels share the top

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool warned_write_ = false;  // watchdog thread only
  std::thread thread_;
};

}  // namespace loom::launch
