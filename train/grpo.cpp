#include "train/grpo.h"

#include <cmath>
#include <iostream>
#include <sstream>

#include "core/align/rl.h"
#include "core/optim/grad_clip.h"
#include "train/align_settings.h"
#include "train/device.h"
#include "train/loop.h"
#include "train/rollout.h"
#include "train/seq_work.h"
#include "train/settings.h"
#include "train/setup.h"

namespace loom::train {
namespace {

struct GrpoOptions {
  int group = 8;
  double clip = 0.2, beta = 0.04, eps = 1e-4;
  float grad_clip = 1.0f;
  std::int64_t eval_prompts = 64;
};

class GrpoTrainer final : public Trainer {
 public:
  GrpoTrainer(Engine& policy, Engine* reference, const BatchShape& shape, const GrpoOptions& options,
              const RolloutOptions& rollout, std::shared_ptr<const io::TokenStore> prompts,
              std::shared_ptr<const io::TokenStore> val_prompts, const io::Tokenizer& tokenizer)
      : policy_(policy),
        reference_(reference),
        shape_(shape),
        options_(options),
        rollout_options_(rollout),
        prompts_(std::move(prompts)),
        val_prompts_(std::move(val_prompts)),
        tokenizer_(tokenizer) {}

  StepOutcome step(const io::Batch& batch, const StepContext& context) override {
    const Rollout r = make_rollout(policy_, *prompts_, tokenizer_, batch.documents, options_.group, rollout_options_,
                                   context.step);
    const std::size_t rows = static_cast<std::size_t>(r.rows), T = static_cast<std::size_t>(r.seq);
    std::vector<float> advantages(rows);
    align::grpo_advantages(r.reward, static_cast<std::size_t>(options_.group), options_.eps, advantages);
    // The loss is a token mean over every completion token of the global batch.
    double counts[1] = {static_cast<double>(r.completion_tokens_total())};
    sum_over_replicas(policy_, counts);
    const double global_tokens = std::max(1.0, counts[0]);

    const std::vector<float> ref_logp = reference_ != nullptr
                                            ? token_logps(*reference_, r.ids, r.targets, shape_.micro_rows)
                                            : std::vector<float>(rows * T, 0.0f);
    policy_.zero_grads();
    double sums[3] = {0, 0, 0};  // Σ loss·n, kl·n, clipped·n over micro-batches
    TokenLogpWork work(r.ids, r.targets, shape_.micro_rows,
                       [&](int micro, std::span<const float> logp, std::span<float> dlogp) {
                         const std::size_t row0 = static_cast<std::size_t>(micro * shape_.micro_rows);
                         const std::size_t n_rows = static_cast<std::size_t>(shape_.micro_rows);
                         const auto mask = std::span<const std::uint8_t>(r.mask).subspan(row0 * T, n_rows * T);
                         double n = 0;
                         for (const std::uint8_t m : mask) n += m;
                         if (n == 0) return;
                         // One update per rollout: the sampling policy is the current one, so
                         // logp_old = logp (ratio 1, as TRL's GRPO with num_iterations = 1).
                         const align::GrpoLossStats stats = align::grpo_loss(
                             logp, logp, std::span<const float>(ref_logp).subspan(row0 * T, n_rows * T),
                             std::span<const float>(advantages).subspan(row0, n_rows), mask, options_.clip,
                             reference_ != nullptr ? options_.beta : 0.0, dlogp);
                         const float scale = context.poisoned ? NAN : static_cast<float>(n / global_tokens);
                         for (float& d : dlogp) d *= scale;
                         sums[0] += stats.loss * n, sums[1] += stats.kl * n, sums[2] += stats.clip_fraction * n;
                       });
    policy_.forward_backward(work, shape_.micro_batches, shape_.micro_rows, r.seq);
    policy_.reduce_gradients();
    sum_over_last_stages(policy_, sums);
    StepOutcome outcome;
    outcome.loss = sums[0] / global_tokens;
    const double norm = finish_step(policy_, context, outcome.loss, options_.grad_clip, outcome.finite);

    double stats[6] = {0, 0, 0, 0, static_cast<double>(r.rows), 0};
    for (std::size_t i = 0; i < rows; ++i) {
      stats[0] += r.reward[i], stats[1] += r.exact[i], stats[2] += r.format[i];
      stats[3] += static_cast<double>(r.completion_tokens[i]);
    }
    stats[5] = r.generate_seconds;
    sum_over_replicas(policy_, stats);
    const double samples = std::max(1.0, stats[4]);
    outcome.tokens = static_cast<std::int64_t>(counts[0]);
    outcome.metrics = {{"reward", stats[0] / samples},
                       {"exact_match", stats[1] / samples},
                       {"format", stats[2] / samples},
                       {"completion_length", stats[3] / samples},
                       {"kl", reference_ != nullptr ? sums[1] / global_tokens : 0.0},
                       {"clip_fraction", sums[2] / global_tokens},
                       {"grad_norm", norm},
                       {"generate_tokens_per_s", counts[0] / std::max(1e-9, stats[5] / policy_.dp_size())}};
    outcome.progress = {{"reward", stats[0] / samples}, {"em", stats[1] / samples}};
    return outcome;
  }

  std::optional<Validation> validate() override {
    if (!val_prompts_) return std::nullopt;
    val_ = held_out_scores(policy_, *val_prompts_, tokenizer_, rollout_options_, options_.eval_prompts, shape_.micro_rows);
    return held_out_validation(*val_);
  }

  nlohmann::json results() override { return held_out_results(val_); }


 private:
  Engine& policy_;
  Engine* reference_;
  BatchShape shape_;
  GrpoOptions options_;
  RolloutOptions rollout_options_;
  std::shared_ptr<const io::TokenStore> prompts_, val_prompts_;
  const io::Tokenizer& tokenizer_;
  std::optional<HeldOutScores> val_;
};

}  // namespace

config::Schema grpo_schema() {
  config::Schema schema = common_trainer_schema();
  add_lora_settings(schema);
  add_rollout_settings(schema);
  add_grpo_settings(schema);
  return schema;
}

int run_grpo(const config::Config& config) {
  const std::string program = "loom-grpo";
  const TrainerInputs in = load_trainer_inputs(config, "prompt");
  if (config.get_string("rollout.reward") != "verifier") {
    throw config::ConfigError("rollout.reward = " + config.get_string("rollout.reward") +
                              ": loom-grpo scores completions with the verifier (use loom-ppo for a reward model)");
  }
  GrpoOptions options;
  options.group = static_cast<int>(config.get_int("grpo.group_size"));
  options.clip = config.get_float("grpo.clip");
  options.beta = config.get_float("grpo.beta");
  options.eps = config.get_float("grpo.eps");
  options.grad_clip = static_cast<float>(config.get_float("train.grad_clip"));
  options.eval_prompts = config.get_int("rollout.eval_prompts");
  const std::optional<std::filesystem::path> reference_path = path_or(config, "rollout.reference", "train.init_from");
  if (options.beta > 0 && !reference_path) {
    throw config::ConfigError("grpo.beta = " + std::to_string(options.beta) +
                              " needs a reference model: set rollout.reference or train.init_from (or grpo.beta=0)");
  }

  auto backend = make_backend(config, "loom-grpo");
  const EngineOptions engine_opts = engine_options(config);
  const std::unique_ptr<Engine> policy_owner = make_engine(in.model, engine_opts, *backend);
  Engine& policy = *policy_owner;
  const BatchShape shape = batch_shape(config, policy.dp_size(), options.group);
  policy.init_weights(static_cast<std::uint64_t>(config.get_int("train.seed")));
  if (config.has_value("train.init_from")) policy.load_weights(config.get_path("train.init_from").string());
  policy.make_optimizer(adamw_config(config));
  std::unique_ptr<Engine> reference;
  if (options.beta > 0) reference = make_frozen_engine(in.model, engine_opts, *backend, *reference_path);
  io::DataLoader loader(in.train, prompt_loader_options(config, policy, shape.global_rows / options.group,
                                                        in.tokenizer.eos_id()));

  LoopSetup setup = make_loop_setup(program, config, policy, loader, shape, in, *backend);
  if (reference_path) setup.record["reference"] = reference_path->string();
  std::ostringstream data_line;
  data_line << in.train->n_documents() << " training prompts, " << shape.global_rows / options.group
            << " prompts x " << options.group << " completions per step (up to "
            << config.get_int("rollout.max_new_tokens") << " tokens), " << setup.max_steps << " steps, " << in.threads
            << " threads";
  setup.banner = {describe_model(in.model), data_line.str(), "layout " + policy.describe()};
  print_memory(program, policy, shape, config.get_int("data.seq_len"));
  GrpoTrainer trainer(policy, reference.get(), shape, options, rollout_options(config, in.tokenizer), in.train,
                      in.val, in.tokenizer);
  return run_training_loop(config, setup, trainer, *backend);
}

}  // namespace loom::train
