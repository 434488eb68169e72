#include "train/sft.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mpi.h>
#include <optional>
#include <sstream>
#include <thread>

#include "core/backend.h"
#include "core/kernels/gemm/gemm.h"
#include "core/model/transformer.h"
#include "core/optim/adamw.h"
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
#include "launch/mpi_comm.h"
#include "launch/mpi_runtime.h"
#include "launch/process_groups.h"
#include "launch/stop_signal.h"
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

// The data-parallel group of this run: null when there is one rank (then no collective runs
// and single-process speed is unchanged).
struct DataParallel {
  std::unique_ptr<launch::MpiComm> comm;
  int rank = 0;
  int size = 1;
  bool leader() const { return rank == 0; }
};

// In-place MPI_Allreduce of a few scalars (doubles keep loss sums and token counts exact).
void all_reduce_scalars(const DataParallel& dp, double* values, int n, MPI_Op op) {
  if (!dp.comm) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, op, dp.comm->handle()));
}

void all_reduce_loss(const DataParallel& dp, model::LossSum& loss) {
  double values[2] = {loss.sum, static_cast<double>(loss.count)};
  all_reduce_scalars(dp, values, 2, MPI_SUM);
  loss.sum = values[0];
  loss.count = static_cast<std::int64_t>(values[1]);
}

// Sums the flat gradient buffer over the ranks in buckets, so MPI's internal buffers stay
// bounded on large models.
void all_reduce_grads(const DataParallel& dp, Tensor& grads) {
  if (!dp.comm) return;
  constexpr std::int64_t kBucket = std::int64_t{16} << 20;
  for (std::int64_t offset = 0; offset < grads.numel(); offset += kBucket) {
    Tensor bucket = grads.view(offset, {std::min(kBucket, grads.numel() - offset)});
    dp.comm->all_reduce_sum(bucket);
  }
}

// Layout from parallel.tp/pp and the world size; errors name the settings.
DataParallel make_data_parallel(const config::Config& config) {
  const launch::ParallelLayout layout{static_cast<int>(config.get_int("parallel.tp")),
                                      static_cast<int>(config.get_int("parallel.pp"))};
  int world_size = 1;
  if (launch::mpi_active()) MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  try {
    launch::data_parallel_size(world_size, layout);
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError("parallel.tp = " + std::to_string(layout.tp) + ", parallel.pp = " +
                              std::to_string(layout.pp) + " do not fit " + std::to_string(world_size) +
                              " ranks: " + e.what());
  }
  if (layout.tp != 1) {
    throw config::ConfigError("parallel.tp = " + std::to_string(layout.tp) +
                              ": tensor parallelism is not wired into the trainer yet (only data parallelism: run "
                              "more ranks with tp=1, pp=1)");
  }
  if (layout.pp != 1) {
    throw config::ConfigError("parallel.pp = " + std::to_string(layout.pp) +
                              ": pipeline parallelism is not wired into the trainer yet (only data parallelism: run "
                              "more ranks with tp=1, pp=1)");
  }
  DataParallel dp;
  if (world_size == 1) return dp;
  const launch::ProcessGroups groups = launch::ProcessGroups::build(MPI_COMM_WORLD, layout);
  dp.rank = groups.dp_rank();
  dp.size = groups.dp_size();
  dp.comm = std::make_unique<launch::MpiComm>(groups, launch::GroupAxis::Dp);
  return dp;
}

// Mean loss over the validation split (or its first eval.batches batches), forward only.
// Each data-parallel rank evaluates its rows of every global batch of micro_batch * dp.size
// sequences; the sums are then added over the ranks, so the result does not depend on dp.
model::LossSum evaluate(model::Transformer& model, const std::shared_ptr<const io::TokenStore>& store,
                        const io::LoaderOptions& train_options, std::int64_t micro_batch, std::int64_t max_batches,
                        const DataParallel& dp) {
  io::LoaderOptions options = train_options;
  options.shuffle = false;
  options.seed = 0;
  const std::int64_t global = micro_batch * dp.size;
  options.global_batch = global;
  io::DataLoader loader(store, options);
  std::int64_t batches = (loader.samples_per_epoch() + global - 1) / global;
  if (max_batches > 0) batches = std::min(batches, max_batches * (train_options.global_batch / global));
  model::LossSum total;
  for (std::int64_t i = 0; i < batches; ++i) {
    const io::Batch batch = loader.next();
    const model::LossSum part = model.forward_lm(batch.ids, batch.targets);
    total.sum += part.sum;
    total.count += part.count;
  }
  all_reduce_loss(dp, total);
  return total;
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
  const DataParallel dp = make_data_parallel(config);
  const bool leader = dp.leader();

  const io::Tokenizer tokenizer = io::Tokenizer::load(config.get_path("data.tokenizer"));
  const model::ModelConfig model_config = model_config_from(config, tokenizer.vocab_size());
  const auto train_store = open_store(config, "data.train", model_config.vocab_size);
  std::shared_ptr<const io::TokenStore> val_store;
  if (config.has_value("data.val")) val_store = open_store(config, "data.val", model_config.vocab_size);

  const std::int64_t batch_size = config.get_int("train.batch_size");
  std::int64_t micro_batch = config.get_int("train.micro_batch_size");
  if (batch_size % dp.size != 0) {
    throw config::ConfigError("train.batch_size = " + std::to_string(batch_size) + " does not divide over " +
                              std::to_string(dp.size) + " data-parallel ranks (it is the global batch)");
  }
  if (micro_batch == 0) micro_batch = batch_size / dp.size;
  if (batch_size % (dp.size * micro_batch) != 0) {
    throw config::ConfigError("train.batch_size = " + std::to_string(batch_size) +
                              " is not a multiple of data-parallel ranks x train.micro_batch_size = " +
                              std::to_string(dp.size) + " x " + std::to_string(micro_batch) +
                              " (each rank runs batch_size / ranks sequences in micro-batches)");
  }
  const std::int64_t seq_len = config.get_int("data.seq_len");
  const std::int64_t max_steps = config.get_int("train.max_steps");
  const std::uint64_t seed = static_cast<std::uint64_t>(config.get_int("train.seed"));

  auto backend = make_cpu_backend();
  model::Transformer model(model_config, model::ShardSpec::whole(model_config), model::HeadKind::LM, *backend);
  model.init_weights(seed);
  if (config.has_value("train.init_from")) {
    const auto from = config.get_path("train.init_from");
    io::load_model_weights(from, model);
    if (leader) std::cerr << "loom-sft: initialised from " << from.string() << "\n";
  }

  optim::AdamWConfig adamw_config;
  adamw_config.beta1 = static_cast<float>(config.get_float("train.beta1"));
  adamw_config.beta2 = static_cast<float>(config.get_float("train.beta2"));
  adamw_config.eps = static_cast<float>(config.get_float("train.eps"));
  adamw_config.weight_decay = static_cast<float>(config.get_float("train.weight_decay"));
  optim::AdamW optimizer(model.params(), adamw_config, *backend);
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
  loader_options.dp_rank = dp.rank;
  loader_options.dp_size = dp.size;
  io::DataLoader loader(train_store, loader_options);

  const double flops_per_token = model_config.training_flops_per_token(seq_len);
  nlohmann::json record = {
      {"program", "loom-sft"},
      {"config", config.to_json()},
      {"git_commit", record::git_commit()},
      {"host", record::host_info()},
      {"started_at", utc_now()},
      {"layout", {{"world_size", dp.size}, {"dp", dp.size}, {"tp", 1}, {"pp", 1}, {"threads", threads},
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
            << ", micro-batch " << micro_batch << ", " << max_steps << " steps, " << threads << " threads, "
            << dp.size << " data-parallel rank" << (dp.size == 1 ? "" : "s") << "\n"
            << "loom-sft: writing " << (run_dir / "metrics.jsonl").string() << "\n";

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
    const model::LossSum val = evaluate(model, val_store, loader_options, micro_batch, eval_batches, dp);
    last_val_loss = val.mean();
    write_metrics({{"step", step}, {"val_loss", *last_val_loss}, {"val_ppl", std::exp(*last_val_loss)},
                   {"val_tokens", val.count}, {"elapsed_s", seconds_since(start)}});
  };

  launch::install_stop_handlers();
  if (config.get_bool("eval.at_start")) validate();
  while (step < max_steps) {
    const auto step_start = Clock::now();
    model.zero_grads();
    const io::Batch batch = loader.next();
    model::LossSum loss;
    // The mean is over the target tokens of the whole global batch, so each rank scales its
    // gradients by the global count and the summed gradients equal the single-process ones.
    double target_tokens = static_cast<double>(batch.target_tokens);
    all_reduce_scalars(dp, &target_tokens, 1, MPI_SUM);
    const float dloss = target_tokens > 0 ? static_cast<float>(1.0 / target_tokens) : 0.0f;
    for (std::int64_t row = 0; row < batch.ids.dim(0); row += micro_batch) {
      const Tensor ids = batch.ids.slice_rows(row, row + micro_batch);
      const Tensor targets = batch.targets.slice_rows(row, row + micro_batch);
      const model::LossSum part = model.forward_lm(ids, targets);
      loss.sum += part.sum;
      loss.count += part.count;
      model.backward_lm(dloss);
    }
    all_reduce_grads(dp, model.params().grads());
    all_reduce_loss(dp, loss);
    const double norm = optim::grad_norm(*backend, model.params().grads());
    const float lr = schedule.at(step);
    const bool finite = std::isfinite(loss.mean()) && std::isfinite(norm);
    if (finite) {
      optimizer.step(lr, optim::clip_scale(norm, grad_clip));
    } else {
      ++skipped_steps;
    }
    ++step;
    const double step_seconds = seconds_since(step_start);
    const std::int64_t step_tokens = batch.ids.numel() * dp.size;
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
                     {"elapsed_s", seconds_since(start)}});
    }
    // Ranks must agree on stopping, or the ones that go on wait forever in a collective.
    double stop[2] = {max_time > 0 && seconds_since(start) >= max_time ? 1.0 : 0.0,
                      static_cast<double>(launch::stop_requested())};
    all_reduce_scalars(dp, stop, 2, MPI_MAX);
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
  // Parameters are identical on every rank (same reduced gradients, same updates).
  if (!leader) return stop_signal != 0 ? 128 + stop_signal : 0;
  io::save_model_weights(weights, model, {{"step", step}, {"tokens", tokens_seen}, {"run_dir", run_dir.string()},
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
