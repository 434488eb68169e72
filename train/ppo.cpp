#include "train/ppo.h"

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

struct PpoOptions {
  int epochs = 2, mini_batches = 2;
  double clip = 0.2, value_clip = 0.2, gamma = 1.0, lambda = 0.95;
  bool k3 = false, whiten = true;
  double critic_lr_scale = 1.0;  // critic lr / actor lr
  float grad_clip = 1.0f;
  std::int64_t eval_prompts = 64;
  std::int64_t micro_rows = 1;
};

struct Models {
  Engine* actor = nullptr;
  Engine* critic = nullptr;
  Engine* reference = nullptr;
  Engine* reward = nullptr;  // null: the verifier scores
};

class PpoTrainer final : public Trainer {
 public:
  PpoTrainer(Models models, const PpoOptions& options, align::AdaptiveKlController kl, bool adaptive,
             const RolloutOptions& rollout, std::shared_ptr<const io::TokenStore> prompts,
             std::shared_ptr<const io::TokenStore> val_prompts, const io::Tokenizer& tokenizer)
      : m_(models),
        options_(options),
        kl_(kl),
        adaptive_(adaptive),
        rollout_options_(rollout),
        prompts_(std::move(prompts)),
        val_prompts_(std::move(val_prompts)),
        tokenizer_(tokenizer) {}

  StepOutcome step(const io::Batch& batch, const StepContext& context) override {
    // Mini-batch k of the global batch is its rows i with i mod mini_batches = k, whatever the
    // dp layout: each rank holds a contiguous run of rows whose length divides by mini_batches,
    // so its rows l with l mod mini_batches = k are exactly its share. The rollout lists them
    // mini-batch by mini-batch, so each mini-batch below is a contiguous block of rows.
    std::vector<std::int64_t> documents;
    for (int k = 0; k < options_.mini_batches; ++k) {
      for (std::size_t l = static_cast<std::size_t>(k); l < batch.documents.size();
           l += static_cast<std::size_t>(options_.mini_batches)) {
        documents.push_back(batch.documents[l]);
      }
    }
    const Rollout r = make_rollout(*m_.actor, *prompts_, tokenizer_, documents, 1, rollout_options_, context.step);
    const std::size_t rows = static_cast<std::size_t>(r.rows), T = static_cast<std::size_t>(r.seq);
    const std::int64_t micro = options_.micro_rows;
    // Frozen passes (last stage): sampling and reference log-probs, values, scores.
    const std::vector<float> old_logp = token_logps(*m_.actor, r.ids, r.targets, micro);
    const std::vector<float> ref_logp = token_logps(*m_.reference, r.ids, r.targets, micro);
    const std::vector<float> values = token_values(*m_.critic, r.ids, micro);
    std::vector<float> score = r.reward;
    if (m_.reward != nullptr) {
      const std::vector<float> rm_values = token_values(*m_.reward, r.ids, micro);
      for (std::size_t i = 0; i < rows; ++i) score[i] = rm_values[i * T + static_cast<std::size_t>(r.last[i])];
    }
    // Per-token rewards: -kl_coef · KL on every completion token, plus the score on the last.
    std::vector<float> kl(rows * T, 0.0f), rewards(rows * T, 0.0f);
    if (options_.k3) align::kl_k3(old_logp, ref_logp, kl, {});
    else align::kl_k1(old_logp, ref_logp, kl, {});
    double kl_sum = 0, entropy_sum = 0;
    for (std::size_t i = 0; i < rows * T; ++i) {
      if (r.mask[i] == 0) continue;
      rewards[i] = static_cast<float>(-kl_.value() * kl[i]);
      kl_sum += kl[i];
      entropy_sum -= old_logp[i];
    }
    for (std::size_t i = 0; i < rows; ++i) {
      if (r.completion_tokens[i] > 0) rewards[i * T + static_cast<std::size_t>(r.last[i]) - 1] += score[i];
    }
    std::vector<float> advantages(rows * T, 0.0f), returns(rows * T, 0.0f);
    align::gae(rewards, values, r.mask, T, options_.gamma, options_.lambda, advantages, returns);
    double token_stats[4] = {0, 0, 0, kl_sum};  // Σa, Σa², n (last stage), Σkl
    for (std::size_t i = 0; i < rows * T; ++i) {
      if (r.mask[i] == 0) continue;
      token_stats[0] += advantages[i], token_stats[1] += static_cast<double>(advantages[i]) * advantages[i];
      token_stats[2] += 1;
    }
    double entropy[1] = {entropy_sum};
    sum_over_last_stages(*m_.actor, token_stats);
    sum_over_last_stages(*m_.actor, entropy);
    const double n_tokens = std::max(1.0, token_stats[2]);
    if (options_.whiten && token_stats[2] > 1) {
      // Over the global batch (TRL's masked_whiten with the unbiased variance), so every
      // layout whitens the same way.
      const double mean = token_stats[0] / token_stats[2];
      const double var = (token_stats[1] - token_stats[2] * mean * mean) / (token_stats[2] - 1);
      const double inv = 1.0 / std::sqrt(std::max(var, 0.0) + 1e-8);
      for (std::size_t i = 0; i < rows * T; ++i) {
        advantages[i] = r.mask[i] ? static_cast<float>((advantages[i] - mean) * inv) : 0.0f;
      }
    }

    double sums[6] = {0, 0, 0, 0, 0, 0};  // policy loss·n, clip·n, approx_kl·n, value loss·n, value clip·n, updates
    bool finite = true;
    double last_norm = 0;
    const std::int64_t mb_rows = r.rows / options_.mini_batches;
    bool waited = false;
    for (int epoch = 0; epoch < options_.epochs; ++epoch) {
      for (int mb = 0; mb < options_.mini_batches; ++mb) {
        const std::int64_t row0 = mb * mb_rows;
        const Tensor ids = r.ids.slice_rows(row0, row0 + mb_rows), targets = r.targets.slice_rows(row0, row0 + mb_rows);
        const auto span_of = [&](const auto& v, int i) {
          return std::span(v).subspan(static_cast<std::size_t>((row0 + i * micro) * r.seq), static_cast<std::size_t>(micro * r.seq));
        };
        double count[1] = {0};
        for (std::size_t i = static_cast<std::size_t>(row0) * T; i < static_cast<std::size_t>(row0 + mb_rows) * T; ++i) count[0] += r.mask[i];
        sum_over_replicas(*m_.actor, count);
        const double global = std::max(1.0, count[0]);
        auto local_weight = [&](std::span<const std::uint8_t> mask) {
          double n = 0;
          for (const std::uint8_t m : mask) n += m;
          return n;
        };
        // Actor: the clipped surrogate.
        m_.actor->zero_grads();
        TokenLogpWork actor_work(ids, targets, micro, [&](int i, std::span<const float> logp, std::span<float> dlogp) {
          const auto mask = span_of(r.mask, i);
          const double n = local_weight(mask);
          if (n == 0) return;
          const align::PolicyLossStats s = align::ppo_policy_loss(logp, span_of(old_logp, i), span_of(advantages, i),
                                                                  mask, options_.clip, dlogp);
          const float scale = context.poisoned ? NAN : static_cast<float>(n / global);
          for (float& d : dlogp) d *= scale;
          sums[0] += s.loss * n, sums[1] += s.clip_fraction * n, sums[2] += s.approx_kl * n;
        });
        m_.actor->forward_backward(actor_work, static_cast<int>(mb_rows / micro), micro, r.seq);
        m_.actor->reduce_gradients();
        const double actor_norm = m_.actor->grad_norm();
        // Critic: the clipped value loss.
        m_.critic->zero_grads();
        ValueWork critic_work(ids, micro, [&](int i, std::span<const float> v, std::span<float> dv) {
          const auto mask = span_of(r.mask, i);
          const double n = local_weight(mask);
          if (n == 0) return;
          const align::ValueLossStats s =
              align::ppo_value_loss(v, span_of(values, i), span_of(returns, i), mask, options_.value_clip, dv);
          const float scale = context.poisoned ? NAN : static_cast<float>(n / global);
          for (float& d : dv) d *= scale;
          sums[3] += s.loss * n, sums[4] += s.clip_fraction * n;
        });
        m_.critic->forward_backward(critic_work, static_cast<int>(mb_rows / micro), micro, r.seq);
        m_.critic->reduce_gradients();
        const double critic_norm = m_.critic->grad_norm();
        if (!waited) {
          context.before_update();
          waited = true;
        }
        finite = finite && std::isfinite(actor_norm) && std::isfinite(critic_norm);
        if (finite) {
          m_.actor->optimizer_step(context.lr, optim::clip_scale(actor_norm, options_.grad_clip));
          m_.critic->optimizer_step(static_cast<float>(context.lr * options_.critic_lr_scale),
                                    optim::clip_scale(critic_norm, options_.grad_clip));
        }
        last_norm = actor_norm;
      }
    }
    sum_over_last_stages(*m_.actor, std::span<double>(sums, 5));
    const double updates_tokens = n_tokens * options_.epochs;
    const double mean_kl = token_stats[3] / n_tokens;
    if (adaptive_ && finite) kl_.update(mean_kl, r.rows * m_.actor->dp_size());

    double stats[6] = {0, 0, 0, 0, static_cast<double>(r.rows), r.generate_seconds};
    for (std::size_t i = 0; i < rows; ++i) {
      stats[1] += r.exact[i], stats[2] += r.format[i], stats[3] += static_cast<double>(r.completion_tokens[i]);
    }
    sum_over_replicas(*m_.actor, stats);
    double score_sum[1] = {0};
    for (std::size_t i = 0; i < rows; ++i) score_sum[0] += score[i];
    // The verifier's score is on every rank, the reward model's on the last stage.
    if (m_.reward != nullptr) sum_over_last_stages(*m_.actor, score_sum);
    else sum_over_replicas(*m_.actor, score_sum);
    const double samples = std::max(1.0, stats[4]);
    StepOutcome outcome;
    outcome.loss = sums[0] / updates_tokens;
    outcome.finite = finite && std::isfinite(outcome.loss);
    outcome.tokens = static_cast<std::int64_t>(token_stats[2]);
    outcome.metrics = {{"reward", score_sum[0] / samples},
                       {"exact_match", stats[1] / samples},
                       {"format", stats[2] / samples},
                       {"completion_length", stats[3] / samples},
                       {"kl", mean_kl},
                       {"kl_coef", kl_.value()},
                       {"policy_loss", sums[0] / updates_tokens},
                       {"clip_fraction", sums[1] / updates_tokens},
                       {"approx_kl", sums[2] / updates_tokens},
                       {"value_loss", sums[3] / updates_tokens},
                       {"value_clip_fraction", sums[4] / updates_tokens},
                       {"entropy", entropy[0] / n_tokens},
                       {"grad_norm", last_norm},
                       {"generate_tokens_per_s", token_stats[2] / std::max(1e-9, stats[5] / m_.actor->dp_size())}};
    outcome.progress = {{"reward", score_sum[0] / samples}, {"kl", mean_kl}};
    return outcome;
  }

  std::optional<Validation> validate() override {
    if (!val_prompts_) return std::nullopt;
    val_ = held_out_scores(*m_.actor, *val_prompts_, tokenizer_, rollout_options_, options_.eval_prompts, options_.micro_rows * 4);
    return held_out_validation(*val_);
  }

  nlohmann::json results() override { return held_out_results(val_); }


  nlohmann::json state() const override { return {{"kl_coef", kl_.value()}}; }
  void restore(const nlohmann::json& state) override {
    if (state.is_object() && state.contains("kl_coef")) kl_.set_value(state["kl_coef"].get<double>());
  }

 private:
  Models m_;
  PpoOptions options_;
  align::AdaptiveKlController kl_;
  bool adaptive_;
  RolloutOptions rollout_options_;
  std::shared_ptr<const io::TokenStore> prompts_, val_prompts_;
  const io::Tokenizer& tokenizer_;
  std::optional<HeldOutScores> val_;
};

}  // namespace

config::Schema ppo_schema() {
  config::Schema schema = common_trainer_schema();
  add_lora_settings(schema);
  add_rollout_settings(schema);
  add_ppo_settings(schema);
  return schema;
}

int run_ppo(const config::Config& config) {
  const std::string program = "loom-ppo";
  const TrainerInputs in = load_trainer_inputs(config, "prompt");
  const std::optional<std::filesystem::path> init = path_or(config, "train.init_from", "rollout.reference");
  if (!init) {
    throw config::ConfigError("loom-ppo needs a starting policy: set train.init_from (the SFT model's model.h5)");
  }
  const bool use_rm = config.get_string("rollout.reward") == "model";
  if (use_rm && !config.has_value("rollout.reward_model")) {
    throw config::ConfigError("rollout.reward = model needs rollout.reward_model (a loom-rm run's model.h5)");
  }
  PpoOptions options;
  options.epochs = static_cast<int>(config.get_int("ppo.epochs"));
  options.mini_batches = static_cast<int>(config.get_int("ppo.mini_batches"));
  options.clip = config.get_float("ppo.clip");
  options.value_clip = config.get_float("ppo.value_clip");
  options.gamma = config.get_float("ppo.gamma");
  options.lambda = config.get_float("ppo.lambda");
  options.k3 = config.get_string("ppo.kl_estimator") == "k3";
  options.whiten = config.get_bool("ppo.whiten_advantages");
  options.grad_clip = static_cast<float>(config.get_float("train.grad_clip"));
  options.eval_prompts = config.get_int("rollout.eval_prompts");
  const double lr = config.get_float("train.lr");
  options.critic_lr_scale = config.get_float("ppo.critic_lr") > 0 && lr > 0 ? config.get_float("ppo.critic_lr") / lr : 1.0;

  auto backend = make_backend(config, "loom-ppo");
  const EngineOptions actor_options = engine_options(config);
  const std::unique_ptr<Engine> actor = make_engine(in.model, actor_options, *backend);
  const BatchShape shape = batch_shape(config, actor->dp_size(), 1);
  if (shape.rank_rows % options.mini_batches != 0 || (shape.rank_rows / options.mini_batches) % shape.micro_rows != 0) {
    throw config::ConfigError("train.batch_size / data-parallel ranks = " + std::to_string(shape.rank_rows) +
                              " prompts must split into ppo.mini_batches = " + std::to_string(options.mini_batches) +
                              " mini-batches of whole micro-batches (train.micro_batch_size = " +
                              std::to_string(shape.micro_rows) + ")");
  }
  options.micro_rows = config.get_int("train.micro_batch_size") > 0 ? shape.micro_rows
                                                                       : shape.rank_rows / options.mini_batches;
  const std::uint64_t seed = static_cast<std::uint64_t>(config.get_int("train.seed"));
  actor->init_weights(seed);
  actor->load_weights(init->string());
  actor->make_optimizer(adamw_config(config));
  // The critic trains in full: under LoRA its value head would be frozen at its init.
  EngineOptions critic_options = engine_options(config, model::HeadKind::Scalar);
  critic_options.lora = {};
  const std::unique_ptr<Engine> critic = make_engine(in.model, critic_options, *backend);
  critic->init_weights(seed + 1);
  const std::filesystem::path critic_init = config.has_value("ppo.critic_init") ? config.get_path("ppo.critic_init")
                                            : use_rm ? config.get_path("rollout.reward_model")
                                                     : *init;
  critic->load_weights(critic_init.string());
  critic->make_optimizer(adamw_config(config));
  const std::filesystem::path reference_path = path_or(config, "rollout.reference", "train.init_from").value();
  const std::unique_ptr<Engine> reference = make_frozen_engine(in.model, actor_options, *backend, reference_path);
  std::unique_ptr<Engine> reward;
  if (use_rm) reward = make_frozen_engine(in.model, critic_options, *backend, config.get_path("rollout.reward_model"));
  io::DataLoader loader(in.train, prompt_loader_options(config, *actor, shape.global_rows, in.tokenizer.eos_id()));

  LoopSetup setup = make_loop_setup(program, config, *actor, loader, shape, in, *backend);
  setup.models.push_back({"critic/", critic.get(), "critic.h5"});
  setup.record["reference"] = reference_path.string();
  setup.record["critic_init"] = critic_init.string();
  setup.record["reward"] = use_rm ? config.get_path("rollout.reward_model").string() : std::string("verifier");
  std::ostringstream data_line, models_line;
  data_line << in.train->n_documents() << " training prompts, " << shape.global_rows << " prompts per step (up to "
            << config.get_int("rollout.max_new_tokens") << " new tokens), " << options.epochs << " epochs x "
            << options.mini_batches << " mini-batches, " << setup.max_steps << " steps, " << in.threads << " threads";
  models_line << "actor from " << init->string() << ", critic from " << critic_init.string() << ", reference "
              << reference_path.string() << ", reward "
              << (use_rm ? config.get_path("rollout.reward_model").string() : std::string("verifier"));
  setup.banner = {describe_model(in.model), data_line.str(), models_line.str(), "layout " + actor->describe()};
  print_memory(program, *actor, shape, config.get_int("data.seq_len"));
  const double kl_target = config.get_float("ppo.kl_target");
  align::AdaptiveKlController kl(config.get_float("ppo.kl_coef"), kl_target > 0 ? kl_target : 1.0,
                                 config.get_float("ppo.kl_horizon"));
  PpoTrainer trainer({actor.get(), critic.get(), reference.get(), reward.get()}, options, kl, kl_target > 0,
                     rollout_options(config, in.tokenizer), in.train, in.val, in.tokenizer);
  return run_training_loop(config, setup, trainer, *backend);
}

}  // namespace loom::train
