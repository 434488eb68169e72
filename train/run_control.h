// How a training run ends: the exit codes loom documents (docs/checkpoint-format.md,
// "Exit codes"), and the per-step agreement of all ranks on whether to stop — a signal on
// any rank, the max_time budget, or the job's walltime coming close — so that every rank
// leaves the loop at the same step and none waits forever in a collective.
//
// Threads: the main thread. Ranks: agree() is collective over the world.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "train/engine.h"

namespace loom::train {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;              // a runtime error (message on stderr)
inline constexpr int kExitConfig = 2;             // bad configuration or input, before any work
inline constexpr int kExitNonFinite = 65;         // non-finite steps and nothing to roll back to
inline constexpr int kExitCheckpointFailed = 74;  // a save failed and checkpoint.on_error = stop
inline constexpr int kExitRequeue = 75;           // checkpointed on SIGTERM/SIGUSR1/walltime: requeue me
inline constexpr int kExitInterrupted = 130;      // SIGINT (Ctrl-C), checkpointed

enum class StopReason { None, MaxSteps, MaxTime, Walltime, Signal };

struct StopDecision {
  StopReason reason = StopReason::None;
  int signal = 0;  // for StopReason::Signal
  bool stop() const { return reason != StopReason::None; }
  // "SIGTERM", "max_time", "walltime", "max_steps"
  std::string name() const;
  int exit_code() const;
};

class RunControl {
 public:
  // max_time: seconds of training (0 = none). walltime: the job's limit in seconds from now
  // (0 = from $SLURM_JOB_END_TIME or $LOOM_JOB_END_TIME, epoch seconds, if set).
  // save_before: how long before that deadline (plus one step) to stop; 0 = off.
  RunControl(double max_time, double walltime, double save_before);

  // Collective: every rank gets the same decision.
  StopDecision agree(Engine& engine, double last_step_seconds) const;
  // Seconds to the walltime deadline, if one is known.
  std::optional<double> seconds_left() const;

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_;
  double max_time_ = 0;
  double save_before_ = 0;
  std::optional<Clock::time_point> deadline_;
};

}  // namespace loom::train
