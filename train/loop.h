// The run around every trainer's step: what loom-sft, loom-rm, loom-dpo, loom-ppo and
// loom-grpo share. A trainer supplies one optimizer step on a global batch (Trainer::step)
// and, optionally, a validation; the loop does the rest, the same way for each:
//
//   - resume (train.resume: auto | never | a step directory) of every trained model, the
//     data-loader position and the counters, before any file of the run is touched;
//   - the step loop: condemned batches skipped, debug faults, metrics.jsonl lines (every
//     train.log_every steps, the first, the last and every non-finite one), progress + ETA;
//   - step checkpoints (checkpoint.every, asynchronous), their reports in the metrics, a
//     failed save's policy (checkpoint.on_error);
//   - non-finite steps skipped, and after train.max_bad_steps in a row a rollback to the
//     last checkpoint with those batches condemned (exit 65 with nothing to roll back to);
//   - stop agreement (signals, train.max_time, the walltime) → save and exit 75/130;
//   - the watchdog's heartbeats;
//   - at the end: validation, the final save (checkpoint.at_end), run.json with results,
//     and each trained model's weights file (<run_dir>/model.h5, critic.h5, …), gathered.
//
// Sampling randomness (PPO/GRPO rollouts, LoRA dropout) must be a function of (seed, step,
// …), never of a stream that advances: the checkpoint then needs only the step to continue
// the same samples, and its rank state records {"rng": {"kind": "counter", "seed", "step"}}.
//
// Ranks: collective over the world; rank 0 alone writes files and prints.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/optim/lr_schedule.h"
#include "io/config/config.h"
#include "io/data/loader.h"
#include "io/record/progress.h"
#include "train/engine.h"

namespace loom::train {

struct StepContext {
  std::int64_t step = 0;  // steps taken before this one
  float lr = 0;           // the schedule's rate for this step
  bool poisoned = false;  // debug.nan_batches names this batch: make the loss NaN
  // Call before changing any trained parameter or optimizer state (waits for an
  // asynchronous save's snapshot); returns the seconds waited.
  std::function<double()> before_update;
};

struct StepOutcome {
  bool finite = true;     // false: the step was skipped (nothing updated)
  double loss = 0;        // the step's main loss, for the progress line and results
  std::int64_t tokens = 0;  // tokens processed by the step over all ranks
  nlohmann::json metrics = nlohmann::json::object();  // trainer-specific fields of the line
  std::vector<record::Progress::Field> progress;      // extra progress-line fields
};

struct Validation {
  double loss = 0;  // kept as val_loss in the training state and results
  nlohmann::json metrics = nlohmann::json::object();
  // The progress line's field (default: "val" = loss) and the final summary's phrase
  // (default: "validation loss X"), for trainers whose main held-out number is no loss.
  std::optional<record::Progress::Field> progress;
  std::string summary;
};

class Trainer {
 public:
  virtual ~Trainer() = default;
  // One optimizer step on this rank's rows of the global batch.
  virtual StepOutcome step(const io::Batch& batch, const StepContext& context) = 0;
  virtual std::optional<Validation> validate() { return std::nullopt; }
  // Extra fields for run.json's results.
  virtual nlohmann::json results() { return nlohmann::json::object(); }
  // State carried from step to step besides the models (saved in checkpoints), and its
  // restore on resume or rollback.
  virtual nlohmann::json state() const { return nullptr; }
  virtual void restore(const nlohmann::json&) {}
};

// A trained model: checkpointed under `prefix` (the first: ""), written to run_dir/`file`.
struct LoopModel {
  std::string prefix;
  Engine* engine = nullptr;
  std::string file = "model.h5";
};

struct LoopSetup {
  std::string program;            // "loom-rm": names the run in messages and records
  std::vector<LoopModel> models;  // the first is the primary (collectives, watchdog)
  io::DataLoader* loader = nullptr;
  std::int64_t max_steps = 0;
  optim::LrSchedule schedule;
  std::uint64_t seed = 0;
  nlohmann::json record;          // run.json so far: program, config, layout, model, data
  std::vector<std::string> banner;  // lines rank 0 prints at start
};

// Calls fn(batch) for each global batch of a validation store, in order and unshuffled:
// batches of micro_rows rows per dp rank (so the rows seen do not depend on the layout),
// at most max_batches train-sized batches of them (0: the whole store). whole_batches:
// leave out a last partial batch (pairs must not be cut); else the last wraps around.
void for_each_validation_batch(const std::shared_ptr<const io::TokenStore>& store, const io::LoaderOptions& train,
                               const Engine& engine, std::int64_t micro_rows, std::int64_t max_batches,
                               bool whole_batches, const std::function<void(const io::Batch&)>& fn);

// The common setup: program, the primary model as model.h5, loader, train.max_steps, the
// learning-rate schedule, train.seed, and run.json's base with the data stores.
struct TrainerInputs;
struct BatchShape;
LoopSetup make_loop_setup(const std::string& program, const config::Config& config, Engine& primary,
                          io::DataLoader& loader, const BatchShape& shape, const TrainerInputs& inputs,
                          const Backend& backend);

// The end of a step of one trained model: the global gradient norm, the finite check of
// `loss` and the norm, the wait for a save's snapshot, and the clipped optimizer step
// (skipped when non-finite). Returns the norm; `finite` says whether the step was taken.
double finish_step(Engine& engine, const StepContext& context, double loss, float grad_clip, bool& finite);

// Runs the loop; returns the process exit code (train/run_control.h).
int run_training_loop(const config::Config& config, LoopSetup& setup, Trainer& trainer, Backend& backend);

// {Σ, count} of values held by the last stage's tp rank 0 of each dp rank, summed over the
// world: every rank gets the result. Helper for trainers' losses and metrics.
void sum_over_last_stages(Engine& engine, std::span<double> values);
// The same where the first stage's tp rank 0 of each dp rank counts: for numbers every rank
// of a model replica holds alike (the batch's token counts, a rollout's scores).
void sum_over_replicas(Engine& engine, std::span<double> values);

}  // namespace loom::train
