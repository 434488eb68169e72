#include "train/sft.h"

#include <chrono>
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
  // Rank 0 alone writes files and speaks; the other ranks compute and stay quiet.
  std::optional<record::MetricsLog> metrics;
  if (leader) {
    // A fresh run (no resume yet) in a directory an earlier run used keeps that run's metrics
    // beside the new ones instead of mixing both curves in one file.
    if (std::filesystem::exists(run_dir / "metrics.jsonl")) {
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
            << "loom-sft: writing " << (run_dir / "metrics.jsonl").string() << "\n";
  // Memory per rank, on every rank of a small world (each line says which), else rank 0's.
  if (leader || engine.groups().world_size() <= 8) {
    std::ostringstream line;
    line << "loom-sft: memory of " << engine.groups().describe() << ": parameters " << mib(memory.parameters)
         << ", gradients " << mib(memory.gradients) << ", optimizer " << mib(memory.optimizer) << ", activations "
         << mib(memory.activations) << ", total " << mib(memory.total()) << "\n";
    std::cerr << line.str();
  }

  const std::int64_t eval_every = config.get_int("eval.every");
  const std::int64_t eval_batches = config.get_int("eval.batches");
  const std::int64_t log_every = config.get_int("train.log_every");
  const double max_time = config.get_float("train.max_time");
  std::optional<record::Progress> progress;
  if (leader) progress.emplace(max_steps, "sft");

  std::optional<double> last_val_loss;
  double last_loss = 0.0;
  std::int64_t step = 0, skipped_steps = 0, tokens_seen = 0;
  std::string stopped_by = "max_steps";
  int stop_signal = 0;
  const auto start = Clock::now();
  auto validate = [&]() {
    if (!val_store) return;
    const model::LossSum val = evaluate(engine, val_store, loader_options, micro_batch, eval_batches);
    last_val_loss = val.mean();
    write_metrics({{"step", step}, {"val_loss", *last_val_loss}, {"val_ppl", std::exp(*last_val_loss)},
                   {"val_tokens", val.count}, {"elapsed_s", seconds_since(start)}});
  };

  launch::install_stop_handlers();
  if (config.get_bool("eval.at_start")) validate();
  while (step < max_steps) {
    const auto step_start = Clock::now();
    engine.zero_grads();
    engine.reset_comm_seconds();
    const io::Batch batch = loader.next();
    // The mean is over the target tokens of the whole global batch, so each rank scales its
    // gradients by the global count and the summed gradients equal the single-process ones.
    double target_tokens[1] = {engine.groups().tp_rank() == 0 && engine.first_stage()
                                   ? static_cast<double>(batch.target_tokens) : 0.0};
    engine.all_reduce_host(target_tokens, ReduceOp::Sum);
    const float dloss = target_tokens[0] > 0 ? static_cast<float>(1.0 / target_tokens[0]) : 0.0f;
    LmWork work(batch.ids, batch.targets, micro_batch, dloss);
    const StepTimes times = engine.forward_backward(work, micro_batches, micro_batch, seq_len);
    const double reduce_seconds = engine.reduce_gradients();
    const model::LossSum loss = reduce_loss(engine, work.loss());
    const double norm = engine.grad_norm();
    const float lr = schedule.at(step);
    const bool finite = std::isfinite(loss.mean()) && std::isfinite(norm);
    if (finite) {
      engine.optimizer_step(lr, optim::clip_scale(norm, grad_clip));
    } else {
      ++skipped_steps;
    }
    ++step;
    const double step_seconds = seconds_since(step_start);
    const std::int64_t step_tokens = batch.ids.numel() * dp_size;
    tokens_seen += step_tokens;
    last_loss = loss.mean();
    const double tokens_per_s = static_cast<double>(step_tokens) / step_seconds;
    if (step % log_every == 0 || step == 1 || step == max_steps) {
      write_metrics({{"step", step},
                     {"loss", last_loss},
                     {"lr", lr},
                     {"grad_norm", norm},
                     {"tokens_per_s", tokens_per_s},
                     {"gflops", flops_per_token * static_cast<double>(step_tokens) / step_seconds / 1e9},
                     {"tokens", tokens_seen},
                     {"epoch", loader.epoch_progress()},
                     {"skipped_steps", skipped_steps},
                     {"bubble", times.pipeline.bubble()},
                     {"pipeline_wait_s", times.pipeline.wait_s},
                     {"reduce_s", reduce_seconds},
                     {"comm_fraction", engine.comm_seconds().total() / step_seconds},
                     {"buckets_overlapped", engine.reduce_buckets_overlapped()},
                     {"buckets", engine.reduce_buckets()},
                     {"elapsed_s", seconds_since(start)}});
    }
    // Ranks must agree on stopping, or the ones that go on wait forever in a collective.
    double stop[2] = {max_time > 0 && seconds_since(start) >= max_time ? 1.0 : 0.0,
                      static_cast<double>(launch::stop_requested())};
    engine.all_reduce_host(stop, ReduceOp::Max);
    const bool out_of_time = stop[0] != 0;
    stop_signal = static_cast<int>(stop[1]);
    if (eval_every > 0 && step % eval_every == 0 && step < max_steps && !out_of_time) validate();
    std::vector<record::Progress::Field> fields = {{"loss", last_loss}, {"tok/s", tokens_per_s}};
    if (last_val_loss) fields.push_back({"val", *last_val_loss});
    if (progress) progress->update(step, fields);
    if (out_of_time) {
      stopped_by = "max_time";
      break;
    }
    if (stop_signal != 0) {
      stopped_by = launch::signal_name(stop_signal);
      break;
    }
  }
  if (progress) progress->finish();
  if (stop_signal == 0) validate();  // a stop request wants the weights saved now
  const double seconds = seconds_since(start);

  nlohmann::json results = {{"steps", step},
                            {"stopped_by", stopped_by},
                            {"skipped_steps", skipped_steps},
                            {"tokens", tokens_seen},
                            {"seconds", seconds},
                            {"tokens_per_s", static_cast<double>(tokens_seen) / seconds},
                            {"final_train_loss", last_loss},
                            {"finished_at", utc_now()}};
  if (last_val_loss) {
    results["val_loss"] = *last_val_loss;
    results["val_ppl"] = std::exp(*last_val_loss);
  }
  const auto weights = run_dir / "model.h5";
  // The slices of every (tp, pp) position meet on rank 0, which writes the whole model.
  const std::unique_ptr<model::Transformer> whole = engine.gather_whole_model(*backend);
  if (!leader) return stop_signal != 0 ? 128 + stop_signal : 0;
  io::save_model_weights(weights, *whole, {{"step", step}, {"tokens", tokens_seen}, {"run_dir", run_dir.string()},
                                          {"results", results}});
  record["results"] = results;
  record["weights"] = weights.string();
  record::write_run_record(run_dir, record);

  std::cerr << "loom-sft: " << step << " steps in " << std::fixed << std::setprecision(1) << seconds << " s ("
            << stopped_by << "), final train loss " << std::setprecision(4) << last_loss;
  if (last_val_loss) {
    std::cerr << ", validation loss " << *last_val_loss << " (perplexity " << std::setprecision(2)
              << std::exp(*last_val_loss) << ")";
  }
  std::cerr << "\nloom-sft: results in " << run_dir.string() << "/ (metrics.jsonl, run.json, model.h5)\n";
  // Stopped by a signal: the weights are saved, and the exit status still says the run
  // did not finish (128 + signal, as a shell reports a killed command).
  return stop_signal != 0 ? 128 + stop_signal : 0;
}

}  // namespace loom::train
