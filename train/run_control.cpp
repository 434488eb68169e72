#include "train/run_control.h"

#include <csignal>
#include <cstdlib>
#include <ctime>
#include <string>

#include "launch/stop_signal.h"

namespace loom::train {

std::string StopDecision::name() const {
  switch (reason) {
    case StopReason::None: return "none";
    case StopReason::MaxSteps: return "max_steps";
    case StopReason::MaxTime: return "max_time";
    case StopReason::Walltime: return "walltime";
    case StopReason::Signal: return launch::signal_name(signal);
  }
  return "none";
}

int StopDecision::exit_code() const {
  if (reason == StopReason::Walltime) return kExitRequeue;
  if (reason == StopReason::Signal) return signal == SIGINT ? kExitInterrupted : kExitRequeue;
  return kExitOk;
}

RunControl::RunControl(double max_time, double walltime, double save_before)
    : start_(Clock::now()), max_time_(max_time), save_before_(save_before) {
  if (walltime > 0) {
    deadline_ = start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(walltime));
    return;
  }
  for (const char* name : {"LOOM_JOB_END_TIME", "SLURM_JOB_END_TIME"}) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') continue;
    const double end = std::strtod(value, nullptr);
    if (end <= 0) continue;
    const double left = end - static_cast<double>(std::time(nullptr));
    deadline_ = start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(left));
    return;
  }
}

std::optional<double> RunControl::seconds_left() const {
  if (!deadline_) return std::nullopt;
  return std::chrono::duration<double>(*deadline_ - Clock::now()).count();
}

StopDecision RunControl::agree(Engine& engine, double last_step_seconds) const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const auto left = seconds_left();
  double flags[3] = {max_time_ > 0 && elapsed >= max_time_ ? 1.0 : 0.0,
                     save_before_ > 0 && left && *left <= save_before_ + last_step_seconds ? 1.0 : 0.0,
                     static_cast<double>(launch::stop_requested())};
  engine.all_reduce_host(flags, ReduceOp::Max);
  StopDecision decision;
  if (flags[2] != 0) {
    decision.reason = StopReason::Signal;
    decision.signal = static_cast<int>(flags[2]);
  } else if (flags[1] != 0) {
    decision.reason = StopReason::Walltime;
  } else if (flags[0] != 0) {
    decision.reason = StopReason::MaxTime;
  }
  return decision;
}

}  // namespace loom::train
