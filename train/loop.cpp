#include "train/loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "io/checkpoint/format.h"
#include "io/record/metrics_log.h"
#include "io/record/run_record.h"
#include "io/weights/model_weights.h"
#include "launch/stop_signal.h"
#include "launch/watchdog.h"
#include "train/checkpointing.h"
#include "train/run_control.h"
#include "train/setup.h"
#include "core/optim/grad_clip.h"

namespace loom::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}


// The global batch number the loader serves next: batches of the endless epoch sequence.
std::int64_t batch_number(const io::DataLoader& loader) {
  const io::LoaderState at = loader.state();
  return (at.epoch * loader.samples_per_epoch() + at.cursor) / loader.options().global_batch;
}

// Keeps the lines of a metrics file whose step is at most `step` (atomically replaced).
void keep_metrics_through(const std::filesystem::path& file, std::int64_t step) {
  if (!std::filesystem::exists(file)) return;
  std::ifstream in(file);
  std::string line, kept;
  while (std::getline(in, line)) {
    const auto json = nlohmann::json::parse(line, nullptr, false);
    if (json.is_discarded() || !json.contains("step") || json["step"].get<std::int64_t>() <= step) kept += line + "\n";
  }
  io::ckpt::write_file_atomically(file, kept);
}

}  // namespace

void for_each_validation_batch(const std::shared_ptr<const io::TokenStore>& store, const io::LoaderOptions& train,
                               const Engine& engine, std::int64_t micro_rows, std::int64_t max_batches,
                               bool whole_batches, const std::function<void(const io::Batch&)>& fn) {
  io::LoaderOptions options = train;
  options.shuffle = false;
  options.seed = 0;
  const std::int64_t global = micro_rows * engine.dp_size();
  options.global_batch = global;
  io::DataLoader loader(store, options);
  std::int64_t batches = whole_batches ? loader.samples_per_epoch() / global
                                       : (loader.samples_per_epoch() + global - 1) / global;
  if (max_batches > 0) batches = std::min(batches, max_batches * std::max<std::int64_t>(1, train.global_batch / global));
  for (std::int64_t i = 0; i < batches; ++i) fn(loader.next());
}

LoopSetup make_loop_setup(const std::string& program, const config::Config& config, Engine& primary,
                          io::DataLoader& loader, const BatchShape& shape, const TrainerInputs& inputs,
                          const Backend& backend) {
  LoopSetup setup;
  setup.program = program;
  setup.models = {{"", &primary, "model.h5"}};
  setup.loader = &loader;
  setup.max_steps = config.get_int("train.max_steps");
  setup.schedule = lr_schedule(config, setup.max_steps);
  setup.seed = static_cast<std::uint64_t>(config.get_int("train.seed"));
  setup.record = base_run_record(program, config, primary, shape, inputs.threads, backend.name(),
                                 config.get_int("data.seq_len"));
  setup.record["data"]["train"] = store_record(config, "data.train", *inputs.train);
  setup.record["data"]["train"]["samples_per_epoch"] = loader.samples_per_epoch();
  if (inputs.val) setup.record["data"]["val"] = store_record(config, "data.val", *inputs.val);
  return setup;
}

double finish_step(Engine& engine, const StepContext& context, double loss, float grad_clip, bool& finite) {
  const double norm = engine.grad_norm();
  finite = std::isfinite(loss) && std::isfinite(norm);
  context.before_update();
  if (finite) engine.optimizer_step(context.lr, optim::clip_scale(norm, grad_clip));
  return norm;
}

void sum_over_last_stages(Engine& engine, std::span<double> values) {
  if (!(engine.last_stage() && engine.groups().tp_rank() == 0)) std::fill(values.begin(), values.end(), 0.0);
  engine.all_reduce_host(values, ReduceOp::Sum);
}

void sum_over_replicas(Engine& engine, std::span<double> values) {
  if (!(engine.first_stage() && engine.groups().tp_rank() == 0)) std::fill(values.begin(), values.end(), 0.0);
  engine.all_reduce_host(values, ReduceOp::Sum);
}

int run_training_loop(const config::Config& config, LoopSetup& setup, Trainer& trainer, Backend& backend) {
  const std::string& program = setup.program;
  Engine& engine = *setup.models.at(0).engine;
  io::DataLoader& loader = *setup.loader;
  const auto run_dir = config.get_path("run_dir");
  const bool leader = engine.leader();
  const std::int64_t max_steps = setup.max_steps;
  nlohmann::json& record = setup.record;

  // Checkpoints, and resuming from one (train.resume): before any file of this run is touched,
  // so a resumed run continues its metrics instead of starting a new curve.
  const std::filesystem::path checkpoint_root =
      config.has_value("checkpoint.dir") ? config.get_path("checkpoint.dir") : run_dir / "checkpoints";
  CheckpointOptions checkpoint_options;
  checkpoint_options.root = checkpoint_root;
  checkpoint_options.retention.keep_last = static_cast<int>(config.get_int("checkpoint.keep_last"));
  checkpoint_options.retention.keep_every = config.get_int("checkpoint.keep_every");
  checkpoint_options.async = config.get_bool("checkpoint.async");
  checkpoint_options.debug_delay_s = config.get_float("debug.save_delay");
  std::vector<CheckpointedModel> checkpointed;
  for (const LoopModel& model : setup.models) checkpointed.push_back({model.prefix, model.engine});
  Checkpointer checkpointer(checkpointed, checkpoint_options,
                            {{"program", program}, {"config", config.to_json()}, {"layout", record["layout"]},
                             {"model_config", io::model_config_json(engine.config())}});
  const bool stop_on_save_error = config.get_string("checkpoint.on_error") == "stop";
  const std::int64_t checkpoint_every = config.get_int("checkpoint.every");
  TrainState state;
  bool resumed = false;
  const std::string resume = config.get_string("train.resume");
  if (resume != "never") {
    std::optional<std::filesystem::path> from;
    if (resume != "auto") from = resume;
    if (auto loaded = checkpointer.resume(from)) {
      state = *loaded;
      loader.restore(state.loader);
      trainer.restore(state.trainer);
      resumed = true;
      if (leader) {
        std::ostringstream line;  // one write: other ranks' lines must not split it
        line << program << ": resumed from " << checkpointer.last_committed()->string() << " at step " << state.step
             << " (" << state.tokens << " tokens, data epoch " << std::setprecision(4) << loader.epoch_progress()
             << ")\n";
        std::cerr << line.str();
      }
    } else if (leader && std::filesystem::exists(checkpoint_root)) {
      std::cerr << program << ": no valid checkpoint in " << checkpoint_root.string() << "; starting from step 0\n";
    }
  }
  record["resumed_from"] = resumed ? nlohmann::json(checkpointer.last_committed()->string()) : nlohmann::json();

  // Rank 0 alone writes files and speaks; the other ranks compute and stay quiet.
  std::optional<record::MetricsLog> metrics;
  if (leader) {
    if (resumed) {
      // The lines past the checkpoint's step belong to the lost part of the run: the resumed
      // run writes them again.
      keep_metrics_through(run_dir / "metrics.jsonl", state.step);
    } else if (std::filesystem::exists(run_dir / "metrics.jsonl")) {
      // A fresh run in a directory an earlier run used keeps that run's metrics beside the
      // new ones instead of mixing both curves in one file.
      std::filesystem::rename(run_dir / "metrics.jsonl", run_dir / "metrics.prev.jsonl");
      std::cerr << program << ": " << run_dir.string()
                << " held an earlier run: its metrics are now metrics.prev.jsonl\n";
    }
    record::write_run_record(run_dir, record);
    metrics.emplace(run_dir);
    std::ostringstream banner;
    for (const std::string& line : setup.banner) banner << program << ": " << line << "\n";
    banner << program << ": writing " << (run_dir / "metrics.jsonl").string() << ", checkpoints in "
           << checkpoint_root.string() << "\n";
    std::cerr << banner.str();
  }
  auto write_metrics = [&](const nlohmann::json& line) {
    if (metrics) metrics->write(line);
  };

  // Heartbeats every 10 s, or four times per timeout when that is shorter, so the report
  // reads fresh ones.
  const double watchdog_timeout = config.get_float("train.watchdog_timeout");
  launch::Watchdog watchdog(launch::WatchdogOptions{(run_dir / "heartbeats").string(), engine.groups().world_rank(),
                                                    engine.groups().world_size(), watchdog_timeout,
                                                    std::min(10.0, std::max(0.25, watchdog_timeout / 4))});
  if (watchdog.enabled()) {
    for (const LoopModel& model : setup.models) model.engine->set_activity_marker(&watchdog);
  }

  const std::int64_t eval_every = config.get_int("eval.every");
  const std::int64_t log_every = config.get_int("train.log_every");
  const std::int64_t max_bad_steps = config.get_int("train.max_bad_steps");
  const auto nan_batches = config.get_int_list("debug.nan_batches");
  const std::int64_t sleep_rank = config.get_int("debug.sleep_rank");
  const std::int64_t sleep_at_step = config.get_int("debug.sleep_at_step");
  const double sleep_seconds = config.get_float("debug.sleep_seconds");
  const RunControl control(config.get_float("train.max_time"), config.get_float("train.walltime"),
                           config.get_float("train.save_before_walltime"));
  std::optional<record::Progress> progress;
  if (leader) progress.emplace(max_steps, program.substr(program.find('-') + 1));
  if (progress && state.step > 0) progress->update(state.step, {});

  double last_loss = 0.0;
  std::vector<std::int64_t> bad_batches;  // of the current run of non-finite steps
  StopDecision stop;
  int exit_code = kExitOk;
  const auto start = Clock::now();
  std::optional<record::Progress::Field> val_field;
  std::string val_summary;
  auto validate = [&]() {
    launch::Watchdog::Activity activity(watchdog, "validation");
    const std::optional<Validation> val = trainer.validate();
    if (!val) return;
    state.val_loss = val->loss;
    val_field = val->progress.value_or(record::Progress::Field{"val", val->loss});
    val_summary = val->summary;
    nlohmann::json line = {{"step", state.step}};
    line.update(val->metrics);
    line["elapsed_s"] = seconds_since(start);
    write_metrics(line);
  };
  auto report_save = [&](const std::optional<SaveReport>& report) {
    if (!report) return true;
    nlohmann::json line = {{"step", report->step}, {"checkpoint_ok", report->ok}, {"save_stall_s", report->stall_s},
                           {"save_write_s", report->write_s}, {"save_bytes", report->bytes}};
    if (report->ok) line["checkpoint"] = report->dir.string();
    if (!report->ok) line["checkpoint_error"] = report->error;
    write_metrics(line);
    return report->ok;
  };
  auto save_now = [&]() {
    launch::Watchdog::Activity activity(watchdog, "checkpoint save");
    state.loader = loader.state();
    state.trainer = trainer.state();
    return checkpointer.save(state, {{"rng", {{"kind", "counter"}, {"seed", setup.seed}, {"step", state.step}}}});
  };

  launch::install_stop_handlers();
  if (config.get_bool("eval.at_start") && !resumed) validate();
  while (state.step < max_steps) {
    const auto step_start = Clock::now();
    watchdog.set_step(state.step);
    // Batches a rollback condemned are passed over, never trained on.
    while (std::find(state.skip_batches.begin(), state.skip_batches.end(), batch_number(loader)) !=
           state.skip_batches.end()) {
      loader.next();
    }
    const std::int64_t batch_no = batch_number(loader);
    if (sleep_rank == engine.groups().world_rank() && state.step == sleep_at_step) {
      launch::Watchdog::Activity activity(watchdog, "debug sleep");
      std::this_thread::sleep_for(std::chrono::duration<double>(sleep_seconds));
    }
    for (const LoopModel& model : setup.models) model.engine->reset_comm_seconds();
    const io::Batch batch = loader.next();
    double stall = 0;
    StepContext context;
    context.step = state.step;
    context.lr = setup.schedule.at(state.step);
    context.poisoned = std::find(nan_batches.begin(), nan_batches.end(), batch_no) != nan_batches.end();
    context.before_update = [&] {
      const double waited = checkpointer.before_update();
      stall += waited;
      return waited;
    };
    const StepOutcome outcome = trainer.step(batch, context);
    if (outcome.finite) {
      bad_batches.clear();
    } else {
      ++state.skipped_steps;
      bad_batches.push_back(batch_no);
    }
    ++state.step;
    const double step_seconds = seconds_since(step_start);
    state.tokens += outcome.tokens;
    last_loss = outcome.loss;
    const double tokens_per_s = static_cast<double>(outcome.tokens) / step_seconds;
    if (state.step % log_every == 0 || state.step == 1 || state.step == max_steps || !outcome.finite) {
      nlohmann::json line = {{"step", state.step}, {"loss", last_loss}, {"lr", context.lr}};
      line.update(outcome.metrics);
      line.update({{"tokens_per_s", tokens_per_s},
                   {"tokens", state.tokens},
                   {"epoch", loader.epoch_progress()},
                   {"batch", batch_no},
                   {"skipped_steps", state.skipped_steps},
                   {"comm_fraction", engine.comm_seconds().total() / step_seconds},
                   {"checkpoint_wait_s", stall},
                   {"step_s", step_seconds},
                   {"elapsed_s", seconds_since(start)}});
      write_metrics(line);
    }
    if (!report_save(checkpointer.poll()) && stop_on_save_error) {
      exit_code = kExitCheckpointFailed;
      break;
    }
    // Too many non-finite steps in a row: back to the last checkpoint, those batches condemned.
    if (max_bad_steps > 0 && static_cast<std::int64_t>(bad_batches.size()) >= max_bad_steps) {
      report_save(checkpointer.finish());
      const auto last = checkpointer.last_committed();
      if (!last) {
        if (leader) std::cerr << program << ": " << bad_batches.size() << " non-finite steps in a row (batches "
                              << nlohmann::json(bad_batches).dump() << ") and no checkpoint to roll back to\n";
        exit_code = kExitNonFinite;
        break;
      }
      TrainState back = *checkpointer.resume(*last);
      back.skip_batches = state.skip_batches;
      back.skip_batches.insert(back.skip_batches.end(), bad_batches.begin(), bad_batches.end());
      back.rollbacks = state.rollbacks + 1;
      back.skipped_steps = state.skipped_steps;
      if (leader) std::cerr << program << ": " << bad_batches.size() << " non-finite steps in a row at step "
                            << state.step << ": rolled back to " << last->string() << " (step " << back.step
                            << "); batches " << nlohmann::json(bad_batches).dump() << " will be skipped\n";
      write_metrics({{"step", state.step}, {"rollback_to", back.step}, {"condemned_batches", bad_batches},
                     {"rollbacks", back.rollbacks}});
      state = back;
      loader.restore(state.loader);
      trainer.restore(state.trainer);
      bad_batches.clear();
      continue;
    }
    stop = control.agree(engine, step_seconds);
    if (checkpoint_every > 0 && state.step % checkpoint_every == 0 && !stop.stop() && state.step < max_steps &&
        !report_save(save_now()) && stop_on_save_error) {
      exit_code = kExitCheckpointFailed;  // the save that this one had to finish first failed
      break;
    }
    if (eval_every > 0 && state.step % eval_every == 0 && state.step < max_steps && !stop.stop()) validate();
    std::vector<record::Progress::Field> fields = {{"loss", last_loss}};
    fields.insert(fields.end(), outcome.progress.begin(), outcome.progress.end());
    fields.push_back({"tok/s", tokens_per_s});
    if (val_field) fields.push_back(*val_field);
    if (progress) progress->update(state.step, fields);
    if (stop.stop()) break;
  }
  if (progress) progress->finish();
  if (exit_code == kExitOk && !stop.stop()) {
    stop.reason = StopReason::MaxSteps;
    validate();
  }
  // A stop request, the walltime or the end of training: the state is saved now, synchronously.
  if (exit_code == kExitOk && (stop.reason != StopReason::MaxSteps || config.get_bool("checkpoint.at_end"))) {
    const bool already = checkpointer.last_committed() &&
                         checkpointer.last_committed()->filename() == io::ckpt::step_dir_name(state.step);
    if (!already && !report_save(save_now()) && stop_on_save_error) exit_code = kExitCheckpointFailed;
  }
  if (!report_save(checkpointer.finish()) && stop_on_save_error && exit_code == kExitOk) {
    exit_code = kExitCheckpointFailed;
  }
  if (exit_code == kExitOk) exit_code = stop.exit_code();
  const double seconds = seconds_since(start);
  const std::string stopped_by = exit_code == kExitNonFinite           ? "non_finite"
                                 : exit_code == kExitCheckpointFailed ? "checkpoint_error"
                                                                      : stop.name();

  nlohmann::json results = {{"steps", state.step},
                            {"stopped_by", stopped_by},
                            {"exit_code", exit_code},
                            {"skipped_steps", state.skipped_steps},
                            {"rollbacks", state.rollbacks},
                            {"tokens", state.tokens},
                            {"seconds", seconds},
                            {"tokens_per_s", static_cast<double>(state.tokens) / seconds},
                            {"final_train_loss", last_loss},
                            {"checkpoint_stall_s", checkpointer.total_stall_s()},
                            {"finished_at", record::utc_now()}};
  if (checkpointer.last_committed()) results["checkpoint"] = checkpointer.last_committed()->string();
  if (state.val_loss) results["val_loss"] = *state.val_loss;
  results.update(trainer.results());
  // The slices of every (tp, pp) position meet on rank 0, which writes each whole model.
  std::vector<std::string> written;
  for (const LoopModel& model : setup.models) {
    const std::unique_ptr<model::Transformer> whole = model.engine->gather_whole_model(backend);
    if (!leader) continue;
    io::save_model_weights(run_dir / model.file, *whole,
                           {{"step", state.step}, {"tokens", state.tokens}, {"run_dir", run_dir.string()},
                            {"program", program}, {"results", results}});
    written.push_back(model.file);
  }
  if (!leader) return exit_code;
  record["results"] = results;
  record["weights"] = (run_dir / setup.models.at(0).file).string();
  record::write_run_record(run_dir, record);

  std::ostringstream summary;
  summary << program << ": " << state.step << " steps in " << std::fixed << std::setprecision(1) << seconds << " s ("
          << stopped_by << "), final train loss " << std::setprecision(4) << last_loss;
  if (!val_summary.empty()) summary << ", " << val_summary;
  else if (state.val_loss) summary << ", validation loss " << *state.val_loss;
  summary << "\n" << program << ": results in " << run_dir.string() << "/ (metrics.jsonl, run.json";
  for (const std::string& file : written) summary << ", " << file;
  if (checkpointer.last_committed()) summary << ", " << checkpointer.last_committed()->string();
  summary << ")\n";
  if (exit_code == kExitRequeue) summary << program << ": exit code 75: checkpointed; requeue the job to continue\n";
  std::cerr << summary.str();
  return exit_code;
}

}  // namespace loom::train
