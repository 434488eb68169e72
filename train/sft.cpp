#include "train/sft.h"

#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "core/backend.h"
#include "core/kernels/gemm/gemm.h"
#include "core/optim/grad_clip.h"
#include "io/data/loader.h"
#include "io/data/token_store.h"
#include "io/record/fingerprint.h"
#include "io/record/run_record.h"
#include "io/tokenizer/tokenizer.h"
#include "io/weights/model_weights.h"
#include "train/device.h"
#include "train/engine.h"
#include "train/lm_work.h"
#include "train/loop.h"
#include "train/settings.h"
#include "train/setup.h"

namespace loom::train {
namespace {

// {Σ loss, count} of the last stages' LM work, summed over the data-parallel ranks; every
// rank gets the result (the tp ranks of a stage hold the same loss).
model::LossSum reduce_loss(Engine& engine, const model::LossSum& local) {
  double values[2] = {local.sum, static_cast<double>(local.count)};
  sum_over_last_stages(engine, values);
  return model::LossSum{values[0], static_cast<std::int64_t>(std::llround(values[1]))};
}

// Mean loss over the validation split (or its first eval.batches batches), forward only,
// the same whatever the layout (for_each_validation_batch).
model::LossSum evaluate(Engine& engine, const std::shared_ptr<const io::TokenStore>& store,
                        const io::LoaderOptions& train_options, std::int64_t micro_batch, std::int64_t max_batches) {
  model::LossSum total;
  for_each_validation_batch(store, train_options, engine, micro_batch, max_batches, false, [&](const io::Batch& batch) {
    LmWork work(batch.ids, batch.targets, micro_batch, 0.0f);
    engine.forward_only(work, work.micro_batches(), micro_batch, batch.ids.dim(1));
    total.sum += work.loss().sum;
    total.count += work.loss().count;
  });
  return reduce_loss(engine, total);
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
  add_lora_settings(schema);
  return schema;
}

namespace {

// SFT's step: the LM loss over every target token of the global batch.
class SftTrainer final : public Trainer {
 public:
  SftTrainer(Engine& engine, const BatchShape& shape, std::int64_t seq_len, float grad_clip, double flops_per_token,
             std::shared_ptr<const io::TokenStore> val_store, const io::LoaderOptions& loader_options,
             std::int64_t eval_batches)
      : engine_(engine),
        shape_(shape),
        seq_len_(seq_len),
        grad_clip_(grad_clip),
        flops_per_token_(flops_per_token),
        val_store_(std::move(val_store)),
        loader_options_(loader_options),
        eval_batches_(eval_batches) {}

  StepOutcome step(const io::Batch& batch, const StepContext& context) override {
    engine_.zero_grads();
    const auto start = std::chrono::steady_clock::now();
    // The mean is over the target tokens of the whole global batch, so each rank scales its
    // gradients by the global count and the summed gradients equal the single-process ones.
    double target_tokens[1] = {static_cast<double>(batch.target_tokens)};
    sum_over_replicas(engine_, target_tokens);
    float dloss = target_tokens[0] > 0 ? static_cast<float>(1.0 / target_tokens[0]) : 0.0f;
    if (context.poisoned) dloss = NAN;
    LmWork work(batch.ids, batch.targets, shape_.micro_rows, dloss);
    const StepTimes times = engine_.forward_backward(work, shape_.micro_batches, shape_.micro_rows, seq_len_);
    const double reduce_seconds = engine_.reduce_gradients();
    const model::LossSum loss = reduce_loss(engine_, work.loss());
    StepOutcome outcome;
    const double norm = finish_step(engine_, context, loss.mean(), grad_clip_, outcome.finite);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    outcome.loss = loss.mean();
    outcome.tokens = batch.ids.numel() * engine_.dp_size();
    outcome.metrics = {{"grad_norm", norm},
                       {"gflops", flops_per_token_ * static_cast<double>(outcome.tokens) / seconds / 1e9},
                       {"bubble", times.pipeline.bubble()},
                       {"pipeline_wait_s", times.pipeline.wait_s},
                       {"reduce_s", reduce_seconds},
                       {"buckets_overlapped", engine_.reduce_buckets_overlapped()},
                       {"buckets", engine_.reduce_buckets()}};
    return outcome;
  }

  std::optional<Validation> validate() override {
    if (!val_store_) return std::nullopt;
    const model::LossSum val = evaluate(engine_, val_store_, loader_options_, shape_.micro_rows, eval_batches_);
    val_ppl_ = std::exp(val.mean());
    return Validation{val.mean(), {{"val_loss", val.mean()}, {"val_ppl", *val_ppl_}, {"val_tokens", val.count}}, std::nullopt, {}};
  }

  nlohmann::json results() override {
    return val_ppl_ ? nlohmann::json{{"val_ppl", *val_ppl_}} : nlohmann::json::object();
  }

 private:
  Engine& engine_;
  BatchShape shape_;
  std::int64_t seq_len_;
  float grad_clip_;
  double flops_per_token_;
  std::shared_ptr<const io::TokenStore> val_store_;
  io::LoaderOptions loader_options_;
  std::int64_t eval_batches_;
  std::optional<double> val_ppl_;
};

}  // namespace

int run_sft(const config::Config& config) {
  const TrainerInputs in = load_trainer_inputs(config);
  auto backend = make_backend(config, "loom-sft");
  const EngineOptions options = engine_options(config);
  const std::unique_ptr<Engine> engine_owner = make_engine(in.model, options, *backend);
  Engine& engine = *engine_owner;
  const BatchShape shape = batch_shape(config, engine.dp_size());
  const std::int64_t seq_len = config.get_int("data.seq_len");
  engine.init_weights(static_cast<std::uint64_t>(config.get_int("train.seed")));
  if (config.has_value("train.init_from")) {
    const auto from = config.get_path("train.init_from");
    engine.load_weights(from.string());
    if (engine.leader()) std::cerr << "loom-sft: initialised from " << from.string() << "\n";
  }
  engine.make_optimizer(adamw_config(config));

  io::LoaderOptions loader_options;
  loader_options.seq_len = seq_len;
  loader_options.global_batch = shape.global_rows;
  loader_options.seed = static_cast<std::uint64_t>(config.get_int("train.seed"));
  loader_options.pack = config.get_bool("data.pack");
  loader_options.shuffle = config.get_bool("data.shuffle");
  loader_options.pad_id = in.tokenizer.eos_id();
  loader_options.dp_rank = engine.dp_rank();
  loader_options.dp_size = engine.dp_size();
  io::DataLoader loader(in.train, loader_options);

  const double flops_per_token = in.model.training_flops_per_token(seq_len);
  LoopSetup setup = make_loop_setup("loom-sft", config, engine, loader, shape, in, *backend);
  std::ostringstream data_line;
  data_line << in.train->n_tokens() << " training tokens (" << loader.samples_per_epoch() << " sequences of "
            << seq_len << " per epoch), batch " << shape.global_rows << " x " << seq_len << ", micro-batch "
            << shape.micro_rows << ", " << setup.max_steps << " steps, " << in.threads << " threads";
  setup.banner = {describe_model(in.model), data_line.str(), "layout " + engine.describe()};
  print_memory("loom-sft", engine, shape, seq_len);
  SftTrainer trainer(engine, shape, seq_len, static_cast<float>(config.get_float("train.grad_clip")), flops_per_token,
                     in.val, loader_options, config.get_int("eval.batches"));
  return run_training_loop(config, setup, trainer, *backend);
}

}  // namespace loom::train
