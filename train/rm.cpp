#include "train/rm.h"

#include <cmath>
#include <iostream>
#include <sstream>

#include "core/align/losses.h"
#include "core/optim/grad_clip.h"
#include "io/tokenizer/tokenizer.h"
#include "train/align_settings.h"
#include "train/device.h"
#include "train/loop.h"
#include "train/pairs.h"
#include "train/seq_work.h"
#include "train/settings.h"
#include "train/setup.h"

namespace loom::train {
namespace {

// Σ over pairs of {loss, correct, margin} and the pair count.
struct PairSums {
  double loss = 0, accuracy = 0, margin = 0, pairs = 0;
  void reduce(Engine& engine) {
    double values[4] = {loss, accuracy, margin, pairs};
    sum_over_last_stages(engine, values);
    loss = values[0], accuracy = values[1], margin = values[2], pairs = values[3];
  }
  double mean(double sum) const { return pairs > 0 ? sum / pairs : 0.0; }
};

class RmTrainer final : public Trainer {
 public:
  RmTrainer(Engine& engine, const BatchShape& shape, float margin, float grad_clip,
            std::shared_ptr<const io::TokenStore> val_store, const io::LoaderOptions& loader_options,
            std::int64_t eval_batches)
      : engine_(engine),
        shape_(shape),
        margin_(margin),
        grad_clip_(grad_clip),
        val_store_(std::move(val_store)),
        loader_options_(loader_options),
        eval_batches_(eval_batches) {}

  StepOutcome step(const io::Batch& batch, const StepContext& context) override {
    engine_.zero_grads();
    const double global_pairs = static_cast<double>(shape_.global_rows / 2);
    PairSums sums;
    ValueWork work(batch.ids, shape_.micro_rows,
                   [&](int micro, std::span<const float> values, std::span<float> dvalues) {
                     score(batch.targets, micro, values, dvalues, sums, global_pairs, context.poisoned);
                   });
    engine_.forward_backward(work, shape_.micro_batches, shape_.micro_rows, batch.ids.dim(1));
    engine_.reduce_gradients();
    sums.reduce(engine_);
    StepOutcome outcome;
    outcome.loss = sums.mean(sums.loss);
    const double norm = finish_step(engine_, context, outcome.loss, grad_clip_, outcome.finite);
    outcome.tokens = batch.ids.numel() * engine_.dp_size();
    outcome.metrics = {{"accuracy", sums.mean(sums.accuracy)}, {"reward_margin", sums.mean(sums.margin)},
                       {"grad_norm", norm}};
    outcome.progress = {{"acc", sums.mean(sums.accuracy)}};
    return outcome;
  }

  std::optional<Validation> validate() override {
    if (!val_store_) return std::nullopt;
    PairSums sums;
    for_each_validation_batch(val_store_, loader_options_, engine_, shape_.micro_rows, eval_batches_, true,
                              [&](const io::Batch& batch) {
                                ValueWork work(batch.ids, shape_.micro_rows,
                                               [&](int micro, std::span<const float> values, std::span<float>) {
                                                 score(batch.targets, micro, values, {}, sums, 1.0, false);
                                               });
                                engine_.forward_only(work, work.micro_batches(), shape_.micro_rows, batch.ids.dim(1));
                              });
    sums.reduce(engine_);
    val_accuracy_ = sums.mean(sums.accuracy);
    return Validation{sums.mean(sums.loss),
                      {{"val_loss", sums.mean(sums.loss)}, {"val_accuracy", *val_accuracy_},
                       {"val_reward_margin", sums.mean(sums.margin)}, {"val_pairs", sums.pairs}},
                      record::Progress::Field{"val_acc", *val_accuracy_},
                      "held-out accuracy " + std::to_string(*val_accuracy_).substr(0, 5) + " (" +
                          std::to_string(static_cast<std::int64_t>(sums.pairs)) + " pairs)"};
  }

  nlohmann::json results() override {
    return val_accuracy_ ? nlohmann::json{{"val_accuracy", *val_accuracy_}} : nlohmann::json::object();
  }

 private:
  // The pairs of one micro-batch: rewards at each row's last token, the loss, and (training)
  // the gradient of the global mean at those positions.
  void score(const Tensor& targets, int micro, std::span<const float> values, std::span<float> dvalues,
             PairSums& sums, double global_pairs, bool poisoned) const {
    const std::int64_t rows = shape_.micro_rows, T = targets.dim(1), pairs = rows / 2;
    const Tensor micro_targets = targets.slice_rows(micro * rows, (micro + 1) * rows);
    const std::vector<std::int64_t> last = last_token_positions(micro_targets);
    std::vector<float> chosen(static_cast<std::size_t>(pairs)), rejected(chosen.size()), d_chosen(chosen.size()),
        d_rejected(chosen.size());
    for (std::int64_t p = 0; p < pairs; ++p) {
      chosen[static_cast<std::size_t>(p)] = values[static_cast<std::size_t>(2 * p * T + last[2 * p])];
      rejected[static_cast<std::size_t>(p)] = values[static_cast<std::size_t>((2 * p + 1) * T + last[2 * p + 1])];
    }
    const align::RmStats stats = align::rm_loss(chosen, rejected, margin_, d_chosen, d_rejected);
    sums.loss += stats.loss * static_cast<double>(pairs);
    sums.accuracy += stats.accuracy * static_cast<double>(pairs);
    sums.margin += stats.mean_margin * static_cast<double>(pairs);
    sums.pairs += static_cast<double>(pairs);
    if (dvalues.empty()) return;
    // rm_loss's gradients are of this micro-batch's mean; the step's loss is the global mean.
    const float scale = poisoned ? NAN : static_cast<float>(static_cast<double>(pairs) / global_pairs);
    for (std::int64_t p = 0; p < pairs; ++p) {
      dvalues[static_cast<std::size_t>(2 * p * T + last[2 * p])] = d_chosen[static_cast<std::size_t>(p)] * scale;
      dvalues[static_cast<std::size_t>((2 * p + 1) * T + last[2 * p + 1])] = d_rejected[static_cast<std::size_t>(p)] * scale;
    }
  }

  Engine& engine_;
  BatchShape shape_;
  float margin_;
  float grad_clip_;
  std::shared_ptr<const io::TokenStore> val_store_;
  io::LoaderOptions loader_options_;
  std::int64_t eval_batches_;
  std::optional<double> val_accuracy_;
};

}  // namespace

config::Schema rm_schema() {
  config::Schema schema = common_trainer_schema();
  add_rm_settings(schema);
  return schema;
}

int run_rm(const config::Config& config) {
  const std::string program = "loom-rm";
  const TrainerInputs in = load_trainer_inputs(config, "preference");
  auto backend = make_backend(config, "loom-rm");
  const std::unique_ptr<Engine> engine_owner =
      make_engine(in.model, engine_options(config, model::HeadKind::Scalar), *backend);
  Engine& engine = *engine_owner;
  const BatchShape shape = batch_shape(config, engine.dp_size(), 2);
  engine.init_weights(static_cast<std::uint64_t>(config.get_int("train.seed")));
  if (config.has_value("train.init_from")) {
    engine.load_weights(config.get_path("train.init_from").string());
    if (engine.leader()) {
      std::cerr << program << ": backbone from " << config.get_path("train.init_from").string()
                << " (the score head starts from its init)\n";
    }
  }
  engine.make_optimizer(adamw_config(config));
  const io::LoaderOptions loader_options = pair_loader_options(config, engine, shape, in.tokenizer.eos_id());
  io::DataLoader loader(in.train, loader_options);

  LoopSetup setup = make_loop_setup(program, config, engine, loader, shape, in, *backend);
  setup.banner = {describe_model(in.model, model::HeadKind::Scalar), describe_pairs(in, shape, setup.max_steps, config),
                  "layout " + engine.describe()};
  print_memory(program, engine, shape, config.get_int("data.seq_len"));
  RmTrainer trainer(engine, shape, static_cast<float>(config.get_float("rm.margin")),
                    static_cast<float>(config.get_float("train.grad_clip")), in.val, loader_options,
                    config.get_int("eval.batches"));
  return run_training_loop(config, setup, trainer, *backend);
}

}  // namespace loom::train
