// Progress: the one status line of a long loop (training steps, evaluation batches).
// On a terminal it redraws a single line in place:
//   sft [######--------------]  30/100  loss 2.346  tok/s 12.0k  elapsed 12s  eta 28s
// and when stderr is a file (a Slurm log) it prints plain lines instead, every
// `plain_every_steps` steps or `plain_every_seconds` seconds, plus the first and last:
//   sft step  30/100 (30%)  loss 2.346  tok/s 12.0k  elapsed 12s  eta 28s
// The ETA is the remaining steps times an exponential moving average of the time per step,
// so it follows a run that speeds up or slows down without jumping at every step.
//
// Ownership: Progress writes to a stream it does not own (std::cerr by default).
// Threads: one thread calls update(). Ranks: create it on rank 0 only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace loom::record {

struct ProgressOptions {
  std::ostream* out = nullptr;            // nullptr: std::cerr
  std::optional<bool> tty;                // nullopt: isatty(stderr)
  std::int64_t plain_every_steps = 0;     // 0: by time only
  double plain_every_seconds = 30.0;      // 0: by steps only
  double redraw_seconds = 0.1;            // terminal redraw rate limit
  std::function<double()> clock;          // seconds, monotonic; empty: steady_clock
  int bar_width = 20;
  double smoothing = 0.1;                 // weight of the newest step time in the average
  std::string unit = "step";              // what is counted, in plain lines ("tokens" for an evaluation)
};

class Progress {
 public:
  struct Field {
    std::string name;
    double value;
  };

  // `start_step`: the step a resumed run starts from (ETA counts only steps done here).
  Progress(std::int64_t total_steps, std::string label, ProgressOptions options = {},
           std::int64_t start_step = 0);
  ~Progress();  // ends the terminal line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Reports that `step` (1-based count of finished steps) is done, with extra fields.
  void update(std::int64_t step, const std::vector<Field>& fields = {});
  // Ends the terminal line so later output starts on a fresh one; idempotent.
  void finish();

  // Seconds left, from the moving average; nullopt before the first timed step.
  std::optional<double> eta_seconds() const;
  // The status line for `step` as update() would write it (without \r or newline).
  std::string render(std::int64_t step, const std::vector<Field>& fields) const;

  // "12s", "3m05s", "2h07m", "3d04h"; "?" for a negative or non-finite value.
  static std::string format_duration(double seconds);
  // Compact numbers for fields: "2.346", "0.0003", "812", "12.0k", "3.4M".
  static std::string format_number(double value);

 private:
  double now() const;

  std::int64_t total_;
  std::string label_;
  ProgressOptions options_;
  std::ostream* out_;
  bool tty_;
  double start_time_;
  std::int64_t last_step_;
  double last_time_;
  std::optional<double> seconds_per_step_;
  double elapsed_ = 0;
  std::optional<double> last_output_time_;
  std::int64_t last_output_step_ = 0;
  bool line_open_ = false;
};

}  // namespace loom::record
