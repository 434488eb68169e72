#include "train/sft.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "core/backend.h"
#include "core/kernels/gemm/gemm.h"
#include "core/model/transformer.h"
#include "core/optim/grad_clip.h"
#include "core/optim/lr_schedule.h"
#include "io/data/loader.h"
#include "io/data/token_store.h"
#include "io/record/fingerprint.h"
#include "io/record/metrics_log.h"
#include "io/record/progress.h"
#include "io/record/run_record.h"
#include "io/tokenizer/tokenizer.h"
#include "io/weights/model_weights.h"
#include "launch/stop_signal.h"
#include "train/engine.h"
#include "train/lm_work.h"
#include "train/settings.h"
#include "train/checkpointing.h"
#include "train/run_control.h"
#include "launch/watchdog.h"
#include "io/checkpoint/format.h"

namespace loom::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::ostringstream out;
  out << std::put_time(std::gmtime(&now), "%Y-%m-%dT%H:%M:%SZ");
  return out.str();
}

std::shared_ptr<const io::TokenStore> open_store(const config::Config& config, const char* key,
                                                 std::int64_t vocab_size) {
  const auto path = config.get_path(key);
  auto store = io::TokenStore::open(path);
  if (store->info().vocab_size > vocab_size) {
    throw config::ConfigError(std::string(key) + " = " + path.string() + " was tokenized with " +
                              std::to_string(store->info().vocab_size) + " tokens but the model has " +
                              std::to_string(vocab_size) + " (data.tokenizer or model.vocab_size mismatch)");
  }
  return store;
}

// The engine's options from parallel.*; a layout error names the settings.
EngineOptions engine_options(const config::Config& config) {
  EngineOptions options;
  options.layout = launch::ParallelLayout{static_cast<int>(config.get_int("parallel.tp")),
                                          static_cast<int>(config.get_int("parallel.pp"))};
  options.schedule = parallel::parse_schedule(config.get_string("parallel.schedule"));
  options.zero1 = config.get_bool("parallel.zero1");
  options.bucket_elements = config.get_int("parallel.bucket_mb") * (std::int64_t{1} << 20) / 4;
  options.stage_layers = config.get_int_list("parallel.stage_layers");
  return options;
}

// {Σ loss, count} of the last stages' LM work, summed over the data-parallel ranks; every
// rank gets the result. One rank per (dp, stage) position contributes, the last stage's tp
// rank 0 (the tp ranks of a stage hold the same loss).
model::LossSum reduce_loss(Engine& engine, const model::LossSum& local) {
  const bool counts = engine.last_stage() && engine.groups().tp_rank() == 0;
  double values[2] = {counts ? local.sum : 0.0, counts ? static_cast<double>(local.count) : 0.0};
  engine.all_reduce_host(values, ReduceOp::Sum);
  return model::LossSum{values[0], static_cast<std::int64_t>(std::llround(values[1]))};
}

// Mean loss over the validation split (or its first eval.batches batches), forward only.
// Each data-parallel rank evaluates its rows of every global batch of micro_batch * dp
// sequences through the pipeline; the sums are then added over the ranks, so the result does
// not depend on the layout.
model::LossSum evaluate(Engine& engine, const std::shared_ptr<const io::TokenStore>& store,
                        const io::LoaderOptions& train_options, std::int64_t micro_batch, std::int64_t max_batches) {
  io::LoaderOptions options = train_options;
  options.shuffle = false;
  options.seed = 0;
  const std::int64_t global = micro_batch * engine.dp_size();
  options.global_batch = global;
  io::DataLoader loader(store, options);
  std::int64_t batches = (loader.samples_per_epoch() + global - 1) / global;
  if (max_batches > 0) batches = std::min(batches, max_batches * (train_options.global_batch / global));
  model::LossSum total;
  for (std::int64_t i = 0; i < batches; ++i) {
    const io::Batch batch = loader.next();
    LmWork work(batch.ids, batch.targets, micro_batch, 0.0f);
    engine.forward_only(work, work.micro_batches(), micro_batch, batch.ids.dim(1));
    total.sum += work.loss().sum;
    total.count += work.loss().count;
  }
  return reduce_loss(engine, total);
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

std::string mib(std::int64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (1 << 20) << " MiB";
  return out.str();
}

}  // namespace

config::Schema sft_schema() {
  config::Schema schema;
  add_run_settings(schema);
  add_model_settings(schema);
  add_data_settings(schema);
  add_train_settings(schema);
  add_eval_settings(schema);
  add_parallel_settings(schema);
  add_checkpoint_settings(schema);
  return schema;
}

int run_sft(const config::Config& config) {
  const auto run_dir = config.get_path("run_dir");
  const int threads = config.get_int("train.threads") > 0 ? static_cast<int>(config.get_int("train.threads"))
                                                           : static_cast<int>(std::thread::hardware_concurrency());
  cpu::set_gemm_threads(threads);
  const EngineOptions options = engine_options(config);

  const io::Tokenizer tokenizer = io::Tokenizer::load(config.get_path("data.tokenizer"));
  const model::ModelConfig model_config = model_config_from(config, tokenizer.vocab_size());
  const auto train_store = open_store(config, "data.train", model_config.vocab_size);
  std::shared_ptr<const io::TokenStore> val_store;
  if (config.has_value("data.val")) val_store = open_store(config, "data.val", model_config.vocab_size);

  auto backend = make_cpu_backend();
  std::unique_ptr<Engine> engine_owner;
  try {
    engine_owner = std::make_unique<Engine>(model_config, options, *backend);
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(e.what());
  }
  Engine& engine = *engine_owner;
  const bool leader = engine.leader();
  const std::int64_t dp_size = engine.dp_size();

  const std::int64_t batch_size = config.get_int("train.batch_size");
  std::int64_t micro_batch = config.get_int("train.micro_batch_size");
  if (batch_size % dp_size != 0) {
    throw config::ConfigError("train.batch_size = " + std::to_string(batch_size) + " does not divide over " +
                              std::to_string(dp_size) + " data-parallel ranks (it is the global batch)");
  }
  if (micro_batch == 0) micro_batch = batch_size / dp_size;
  if (batch_size % (dp_size * micro_batch) != 0) {
    throw config::ConfigError("train.batch_size = " + std::to_string(batch_size) +
                              " is not a multiple of data-parallel ranks x train.micro_batch_size = " +
                              std::to_string(dp_size) + " x " + std::to_string(micro_batch) +
                              " (each rank runs batch_size / ranks sequences in micro-batches)");
  }
  const int micro_batches = static_cast<int>(batch_size / (dp_size * micro_batch));
  const std::int64_t seq_len = config.get_int("data.seq_len");
  const std::int64_t max_steps = config.get_int("train.max_steps");
  const std::uint64_t seed = static_cast<std::uint64_t>(config.get_int("train.seed"));

  engine.init_weights(seed);
  if (config.has_value("train.init_from")) {
    const auto from = config.get_path("train.init_from");
    engine.load_weights(from.string());
    if (leader) std::cerr << "loom-sft: initialised from " << from.string() << "\n";
  }

  optim::AdamWConfig adamw_config;
  adamw_config.beta1 = static_cast<float>(config.get_float("train.beta1"));
  adamw_config.beta2 = static_cast<float>(config.get_float("train.beta2"));
  adamw_config.eps = static_cast<float>(config.get_float("train.eps"));
  adamw_config.weight_decay = static_cast<float>(config.get_float("train.weight_decay"));
  engine.make_optimizer(adamw_config);
  optim::LrSchedule schedule;
  schedule.max_lr = static_cast<float>(config.get_float("train.lr"));
  schedule.min_lr = static_cast<float>(config.get_float("train.min_lr"));
  // A short run (a smoke test with train.max_steps=30) keeps the config's warmup length
  // rather than failing: warmup is cut to the run.
  schedule.warmup_steps = std::min(config.get_int("train.warmup_steps"), max_steps);
  schedule.total_steps = max_steps;
  schedule.decay = optim::parse_decay_kind(config.get_string("train.schedule"));
  try {
    schedule.validate();
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(std::string("invalid train.* schedule settings: ") + e.what());
  }
  const float grad_clip = static_cast<float>(config.get_float("train.grad_clip"));

  io::LoaderOptions loader_options;
  loader_options.seq_len = seq_len;
  loader_options.global_batch = batch_size;
  loader_options.seed = seed;
  loader_options.pack = config.get_bool("data.pack");
  loader_options.shuffle = config.get_bool("data.shuffle");
  loader_options.pad_id = tokenizer.eos_id();
  loader_options.dp_rank = engine.dp_rank();
  loader_options.dp_size = static_cast<int>(dp_size);
  io::DataLoader loader(train_store, loader_options);

  const double flops_per_token = model_config.training_flops_per_token(seq_len);
  nlohmann::json record = {
      {"program", "loom-sft"},
      {"config", config.to_json()},
      {"git_commit", record::git_commit()},
      {"host", record::host_info()},
      {"started_at", utc_now()},
      {"layout", {{"world_size", engine.groups().world_size()}, {"dp", dp_size}, {"tp", engine.groups().tp_size()},
                  {"pp", engine.groups().pp_size()}, {"schedule", parallel::schedule_name(options.schedule)},
                  {"zero1", options.zero1}, {"micro_batches", micro_batches}, {"threads", threads},
                  {"backend", backend->name()}, {"gemm", cpu::gemm_library()}}},
      {"model", {{"config", io::model_config_json(model_config)},
                 {"parameters", model_config.parameter_count()},
                 {"training_flops_per_token", flops_per_token}}},
      {"data", {{"tokenizer", config.get_path("data.tokenizer").string()},
                {"train", {{"path", config.get_path("data.train").string()},
                           {"fingerprint", record::hex64(train_store->fingerprint())},
                           {"documents", train_store->n_documents()},
                           {"tokens", train_store->n_tokens()},
                           {"kind", train_store->info().kind},
                           {"samples_per_epoch", loader.samples_per_epoch()}}}}}};
  if (val_store) {
    record["data"]["val"] = {{"path", config.get_path("data.val").string()},
                             {"fingerprint", record::hex64(val_store->fingerprint())},
                             {"documents", val_store->n_documents()},
                             {"tokens", val_store->n_tokens()}};
  }
  const MemoryReport memory = engine.memory(micro_batches, micro_batch, seq_len);
  record["layout"]["memory_bytes_rank0"] = {{"parameters", memory.parameters}, {"gradients", memory.gradients},
                                            {"optimizer", memory.optimizer}, {"activations", memory.activations}};
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
  Checkpointer checkpointer(engine, checkpoint_options,
                            {{"program", "loom-sft"}, {"config", config.to_json()}, {"layout", record["layout"]},
                             {"model_config", io::model_config_json(model_config)}});
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
      resumed = true;
      if (leader) {
        std::ostringstream line;  // one write: other ranks' lines must not split it
        line << "loom-sft: resumed from " << checkpointer.last_committed()->string() << " at step " << state.step
             << " (" << state.tokens << " tokens, data epoch " << std::setprecision(4) << loader.epoch_progress()
             << ")\n";
        std::cerr << line.str();
      }
    } else if (leader && std::filesystem::exists(checkpoint_root)) {
      std::cerr << "loom-sft: no valid checkpoint in " << checkpoint_root.string() << "; starting from step 0\n";
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
      std::cerr << "loom-sft: " << run_dir.string()
                << " held an earlier run: its metrics are now metrics.prev.jsonl\n";
    }
    record::write_run_record(run_dir, record);
    metrics.emplace(run_dir);
  }
  auto write_metrics = [&](const nlohmann::json& line) {
    if (metrics) metrics->write(line);
  };

  if (leader) std::cerr << "loom-sft: " << model::family_name(model_config.family) << " model, "
            << model_config.parameter_count() << " parameters, " << model_config.n_layers << " layers, d_model "
            << model_config.d_model << ", vocab " << model_config.vocab_size << "\n"
            << "loom-sft: " << train_store->n_tokens() << " training tokens (" << loader.samples_per_epoch()
            << " sequences of " << seq_len << " per epoch), batch " << batch_size << " x " << seq_len
            << ", micro-batch " << micro_batch << ", " << max_steps << " steps, " << threads << " threads\n"
            << "loom-sft: layout " << engine.describe() << "\n"
            << "loom-sft: writing " << (run_dir / "metrics.jsonl").string() << ", checkpoints in "
            << checkpoint_root.string() << "\n";
  // Memory per rank, on every rank of a small world (each line says which), else rank 0's.
  if (leader || engine.groups().world_size() <= 8) {
    std::ostringstream line;
    line << "loom-sft: memory of " << engine.groups().describe() << ": parameters " << mib(memory.parameters)
         << ", gradients " << mib(memory.gradients) << ", optimizer " << mib(memory.optimizer) << ", activations "
         << mib(memory.activations) << ", total " << mib(memory.total()) << "\n";
    std::cerr << line.str();
  }

  // Heartbeats every 10 s, or four times per timeout when that is shorter, so the report
  // reads fresh ones.
  const double watchdog_timeout = config.get_float("train.watchdog_timeout");
  launch::Watchdog watchdog(launch::WatchdogOptions{(run_dir / "heartbeats").string(), engine.groups().world_rank(),
                                                    engine.groups().world_size(), watchdog_timeout,
                                                    std::min(10.0, std::max(0.25, watchdog_timeout / 4))});
  if (watchdog.enabled()) engine.set_activity_marker(&watchdog);

  const std::int64_t eval_every = config.get_int("eval.every");
  const std::int64_t eval_batches = config.get_int("eval.batches");
  const std::int64_t log_every = config.get_int("train.log_every");
  const std::int64_t max_bad_steps = config.get_int("train.max_bad_steps");
  const auto nan_batches = config.get_int_list("debug.nan_batches");
  const std::int64_t sleep_rank = config.get_int("debug.sleep_rank");
  const std::int64_t sleep_at_step = config.get_int("debug.sleep_at_step");
  const double sleep_seconds = config.get_float("debug.sleep_seconds");
  const RunControl control(config.get_float("train.max_time"), config.get_float("train.walltime"),
                           config.get_float("train.save_before_walltime"));
  std::optional<record::Progress> progress;
  if (leader) progress.emplace(max_steps, "sft");
  if (progress && state.step > 0) progress->update(state.step, {});

  double last_loss = 0.0;
  std::vector<std::int64_t> bad_batches;  // of the current run of non-finite steps
  StopDecision stop;
  int exit_code = kExitOk;
  const auto start = Clock::now();
  auto validate = [&]() {
    if (!val_store) return;
    launch::Watchdog::Activity activity(watchdog, "validation");
    const model::LossSum val = evaluate(engine, val_store, loader_options, micro_batch, eval_batches);
    state.val_loss = val.mean();
    write_metrics({{"step", state.step}, {"val_loss", *state.val_loss}, {"val_ppl", std::exp(*state.val_loss)},
                   {"val_tokens", val.count}, {"elapsed_s", seconds_since(start)}});
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
    return checkpointer.save(state, {{"rng", {{"kind", "counter"}, {"seed", seed}, {"step", state.step}}}});
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
    engine.zero_grads();
    engine.reset_comm_seconds();
    const io::Batch batch = loader.next();
    // The mean is over the target tokens of the whole global batch, so each rank scales its
    // gradients by the global count and the summed gradients equal the single-process ones.
    double target_tokens[1] = {engine.groups().tp_rank() == 0 && engine.first_stage()
                                   ? static_cast<double>(batch.target_tokens) : 0.0};
    engine.all_reduce_host(target_tokens, ReduceOp::Sum);
    float dloss = target_tokens[0] > 0 ? static_cast<float>(1.0 / target_tokens[0]) : 0.0f;
    if (std::find(nan_batches.begin(), nan_batches.end(), batch_no) != nan_batches.end()) dloss = NAN;
    LmWork work(batch.ids, batch.targets, micro_batch, dloss);
    const StepTimes times = engine.forward_backward(work, micro_batches, micro_batch, seq_len);
    const double reduce_seconds = engine.reduce_gradients();
    const model::LossSum loss = reduce_loss(engine, work.loss());
    const double norm = engine.grad_norm();
    const float lr = schedule.at(state.step);
    const bool finite = std::isfinite(loss.mean()) && std::isfinite(norm);
    const double stall = checkpointer.before_update();
    if (finite) {
      engine.optimizer_step(lr, optim::clip_scale(norm, grad_clip));
      bad_batches.clear();
    } else {
      ++state.skipped_steps;
      bad_batches.push_back(batch_no);
    }
    ++state.step;
    const double step_seconds = seconds_since(step_start);
    const std::int64_t step_tokens = batch.ids.numel() * dp_size;
    state.tokens += step_tokens;
    last_loss = loss.mean();
    const double tokens_per_s = static_cast<double>(step_tokens) / step_seconds;
    if (state.step % log_every == 0 || state.step == 1 || state.step == max_steps || !finite) {
      write_metrics({{"step", state.step},
                     {"loss", last_loss},
                     {"lr", lr},
                     {"grad_norm", norm},
                     {"tokens_per_s", tokens_per_s},
                     {"gflops", flops_per_token * static_cast<double>(step_tokens) / step_seconds / 1e9},
                     {"tokens", state.tokens},
                     {"epoch", loader.epoch_progress()},
                     {"batch", batch_no},
                     {"skipped_steps", state.skipped_steps},
                     {"bubble", times.pipeline.bubble()},
                     {"pipeline_wait_s", times.pipeline.wait_s},
                     {"reduce_s", reduce_seconds},
                     {"comm_fraction", engine.comm_seconds().total() / step_seconds},
                     {"buckets_overlapped", engine.reduce_buckets_overlapped()},
                     {"buckets", engine.reduce_buckets()},
                     {"checkpoint_wait_s", stall},
                     {"elapsed_s", seconds_since(start)}});
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
        if (leader) std::cerr << "loom-sft: " << bad_batches.size() << " non-finite steps in a row (batches "
                              << nlohmann::json(bad_batches).dump() << ") and no checkpoint to roll back to\n";
        exit_code = kExitNonFinite;
        break;
      }
      TrainState back = *checkpointer.resume(*last);
      back.skip_batches = state.skip_batches;
      back.skip_batches.insert(back.skip_batches.end(), bad_batches.begin(), bad_batches.end());
      back.rollbacks = state.rollbacks + 1;
      back.skipped_steps = state.skipped_steps;
      if (leader) std::cerr << "loom-sft: " << bad_batches.size() << " non-finite steps in a row at step " << state.step
                            << ": rolled back to " << last->string() << " (step " << back.step
                            << "); batches " << nlohmann::json(bad_batches).dump() << " will be skipped\n";
      write_metrics({{"step", state.step}, {"rollback_to", back.step}, {"condemned_batches", bad_batches},
                     {"rollbacks", back.rollbacks}});
      state = back;
      loader.restore(state.loader);
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
    std::vector<record::Progress::Field> fields = {{"loss", last_loss}, {"tok/s", tokens_per_s}};
    if (state.val_loss) fields.push_back({"val", *state.val_loss});
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
                            {"finished_at", utc_now()}};
  if (checkpointer.last_committed()) results["checkpoint"] = checkpointer.last_committed()->string();
  if (state.val_loss) {
    results["val_loss"] = *state.val_loss;
    results["val_ppl"] = std::exp(*state.val_loss);
  }
  const auto weights = run_dir / "model.h5";
  // The slices of every (tp, pp) position meet on rank 0, which writes the whole model.
  const std::unique_ptr<model::Transformer> whole = engine.gather_whole_model(*backend);
  if (!leader) return exit_code;
  io::save_model_weights(weights, *whole, {{"step", state.step}, {"tokens", state.tokens}, {"run_dir", run_dir.string()},
                                          {"results", results}});
  record["results"] = results;
  record["weights"] = weights.string();
  record::write_run_record(run_dir, record);

  std::cerr << "loom-sft: " << state.step << " steps in " << std::fixed << std::setprecision(1) << seconds << " s ("
            << stopped_by << "), final train loss " << std::setprecision(4) << last_loss;
  if (state.val_loss) {
    std::cerr << ", validation loss " << *state.val_loss << " (perplexity " << std::setprecision(2)
              << std::exp(*state.val_loss) << ")";
  }
  std::cerr << "\nloom-sft: results in " << run_dir.string() << "/ (metrics.jsonl, run.json, model.h5"
            << (checkpointer.last_committed() ? ", " + checkpointer.last_committed()->string() : std::string()) << ")\n";
  if (exit_code == kExitRequeue) std::cerr << "loom-sft: exit code 75: checkpointed; requeue the job to continue\n";
  return exit_code;
}

}  // namespace loom::train
