#include "train/dpo.h"

#include <cmath>
#include <map>
#include <iostream>
#include <sstream>

#include "core/align/losses.h"
#include "core/optim/grad_clip.h"
#include "io/tokenizer/tokenizer.h"
#include "train/align_settings.h"
#include "train/device.h"
#include "train/generator.h"
#include "train/loop.h"
#include "train/pairs.h"
#include "train/rollout.h"
#include "train/seq_work.h"
#include "train/settings.h"
#include "train/setup.h"

namespace loom::train {
namespace {

struct DpoSums {
  double loss = 0, reward_chosen = 0, reward_rejected = 0, accuracy = 0, pairs = 0;
  void add(const align::PreferenceStats& stats, double n) {
    loss += stats.loss * n;
    reward_chosen += stats.reward_chosen * n;
    reward_rejected += stats.reward_rejected * n;
    accuracy += stats.accuracy * n;
    pairs += n;
  }
  void reduce(Engine& engine) {
    double values[5] = {loss, reward_chosen, reward_rejected, accuracy, pairs};
    sum_over_last_stages(engine, values);
    loss = values[0], reward_chosen = values[1], reward_rejected = values[2], accuracy = values[3], pairs = values[4];
  }
  double mean(double sum) const { return pairs > 0 ? sum / pairs : 0.0; }
  nlohmann::json json(const std::string& prefix) const {
    return {{prefix + "loss", mean(loss)},
            {prefix + "reward_chosen", mean(reward_chosen)},
            {prefix + "reward_rejected", mean(reward_rejected)},
            {prefix + "reward_margin", mean(reward_chosen - reward_rejected)},
            {prefix + "accuracy", mean(accuracy)}};
  }
};

class DpoTrainer final : public Trainer {
 public:
  DpoTrainer(Engine& policy, Engine* reference, const BatchShape& shape, align::PreferenceLoss loss, double beta,
             align::PreferenceParams params, float grad_clip, std::shared_ptr<const io::TokenStore> val_store,
             const io::LoaderOptions& loader_options, std::int64_t eval_batches, std::int64_t generate_prompts,
             std::int32_t eos)
      : policy_(policy),
        reference_(reference),
        shape_(shape),
        loss_(loss),
        beta_(beta),
        params_(params),
        grad_clip_(grad_clip),
        val_store_(std::move(val_store)),
        loader_options_(loader_options),
        eval_batches_(eval_batches),
        generate_prompts_(generate_prompts),
        eos_(eos) {}

  StepOutcome step(const io::Batch& batch, const StepContext& context) override {
    reference_logps(batch);
    policy_.zero_grads();
    const double global_pairs = static_cast<double>(shape_.global_rows / 2);
    DpoSums sums;
    TokenLogpWork work(batch.ids, batch.targets, shape_.micro_rows,
                       [&](int micro, std::span<const float> logp, std::span<float> dlogp) {
                         score(batch.targets, micro, logp, dlogp, sums, global_pairs, context.poisoned);
                       });
    policy_.forward_backward(work, shape_.micro_batches, shape_.micro_rows, batch.ids.dim(1));
    policy_.reduce_gradients();
    sums.reduce(policy_);
    StepOutcome outcome;
    outcome.loss = sums.mean(sums.loss);
    const double norm = finish_step(policy_, context, outcome.loss, grad_clip_, outcome.finite);
    outcome.tokens = batch.ids.numel() * policy_.dp_size();
    outcome.metrics = sums.json("");
    outcome.metrics.erase("loss");
    outcome.metrics["grad_norm"] = norm;
    outcome.progress = {{"acc", sums.mean(sums.accuracy)}, {"margin", sums.mean(sums.reward_chosen - sums.reward_rejected)}};
    return outcome;
  }

  std::optional<Validation> validate() override {
    if (!val_store_) return std::nullopt;
    DpoSums sums;
    for_each_validation_batch(val_store_, loader_options_, policy_, shape_.micro_rows, eval_batches_, true,
                              [&](const io::Batch& batch) {
                                reference_logps(batch);
                                TokenLogpWork work(batch.ids, batch.targets, shape_.micro_rows,
                                                   [&](int micro, std::span<const float> logp, std::span<float>) {
                                                     score(batch.targets, micro, logp, {}, sums, 1.0, false);
                                                   });
                                policy_.forward_only(work, work.micro_batches(), shape_.micro_rows, batch.ids.dim(1));
                              });
    sums.reduce(policy_);
    val_accuracy_ = sums.mean(sums.accuracy);
    nlohmann::json metrics = sums.json("val_");
    metrics["val_pairs"] = sums.pairs;
    if (generate_prompts_ > 0) {
      const GreedyScores g = greedy_matches();
      val_greedy_ = g.exact;
      metrics["val_greedy_exact"] = g.exact;
      metrics["val_greedy_f1_chosen"] = g.f1_chosen;
      metrics["val_greedy_f1_rejected"] = g.f1_rejected;
      metrics["val_greedy_closer_to_chosen"] = g.closer_to_chosen;
      metrics["val_greedy_prompts"] = g.prompts;
    }
    std::string phrase = "held-out loss " + std::to_string(sums.mean(sums.loss)).substr(0, 6) + ", accuracy " +
                         std::to_string(*val_accuracy_).substr(0, 5) + " (" +
                         std::to_string(static_cast<std::int64_t>(sums.pairs)) + " pairs)";
    if (val_greedy_) phrase += ", greedy exact " + std::to_string(*val_greedy_).substr(0, 5);
    return Validation{sums.mean(sums.loss), metrics, record::Progress::Field{"val_acc", *val_accuracy_}, phrase};
  }

  nlohmann::json results() override {
    nlohmann::json results = nlohmann::json::object();
    if (val_accuracy_) results["val_accuracy"] = *val_accuracy_;
    if (val_greedy_) results["val_greedy_exact"] = *val_greedy_;
    return results;
  }

 private:
  // Greedy completions of the first generate_prompts_ held-out prompts (split over the dp
  // ranks): {how many equal the chosen completion token for token, prompts}.
  struct GreedyScores {
    double exact = 0, f1_chosen = 0, f1_rejected = 0, closer_to_chosen = 0, prompts = 0;
  };
  GreedyScores greedy_matches() {
    const std::int64_t pairs = std::min(generate_prompts_, val_store_->n_documents() / 2);
    std::vector<std::vector<std::int32_t>> prompts, wanted, unwanted;
    auto split = [](const io::DocumentView& doc, std::vector<std::int32_t>& prompt, std::vector<std::int32_t>& completion) {
      for (std::size_t i = 0; i < doc.tokens.size(); ++i) (doc.loss_mask[i] ? completion : prompt).push_back(doc.tokens[i]);
    };
    for (std::int64_t p = policy_.dp_rank(); p < pairs; p += policy_.dp_size()) {
      std::vector<std::int32_t> prompt, chosen, ignored, rejected;
      split(val_store_->document(2 * p), prompt, chosen);
      split(val_store_->document(2 * p + 1), ignored, rejected);
      prompts.push_back(std::move(prompt));
      wanted.push_back(std::move(chosen));
      unwanted.push_back(std::move(rejected));
    }
    // exact matches, Σ F1 to the chosen, Σ F1 to the rejected, closer to the chosen, prompts
    double counts[5] = {0, 0, 0, 0, static_cast<double>(prompts.size())};
    const std::size_t batch = static_cast<std::size_t>(std::max<std::int64_t>(1, shape_.micro_rows));
    for (std::size_t at = 0; at < prompts.size(); at += batch) {
      const std::size_t end = std::min(prompts.size(), at + batch);
      std::vector<std::vector<std::int32_t>> part(prompts.begin() + static_cast<std::ptrdiff_t>(at),
                                                  prompts.begin() + static_cast<std::ptrdiff_t>(end));
      std::int64_t longest = 0, longest_prompt = 0;
      for (std::size_t i = at; i < end; ++i) {
        longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(wanted[i].size()));
        longest_prompt = std::max<std::int64_t>(longest_prompt, static_cast<std::int64_t>(prompts[i].size()));
      }
      model::GenerationConfig config;
      config.sampling.temperature = 0.0f;
      config.max_new_tokens = std::min(longest + 1, policy_.config().max_seq_len - longest_prompt);
      config.stop_tokens = {eos_};
      const model::GenerationResult result = generate(policy_, part, config);
      for (std::size_t i = at; i < end; ++i) {
        const auto& got = result.tokens[i - at];
        const double f1_chosen = token_f1(got, wanted[i]), f1_rejected = token_f1(got, unwanted[i]);
        counts[0] += got == wanted[i] ? 1.0 : 0.0;
        counts[1] += f1_chosen;
        counts[2] += f1_rejected;
        counts[3] += f1_chosen > f1_rejected ? 1.0 : 0.0;
      }
    }
    sum_over_replicas(policy_, counts);
    const double n = std::max(1.0, counts[4]);
    return {counts[0] / n, counts[1] / n, counts[2] / n, counts[3] / n, counts[4]};
  }

  // Token-overlap F1 of two token sequences (bags of tokens, SQuAD style), the stop token
  // left out.
  double token_f1(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) const {
    std::map<std::int32_t, int> counts;
    std::int64_t na = 0, nb = 0, common = 0;
    for (const std::int32_t t : a) if (t != eos_) ++counts[t], ++na;
    for (const std::int32_t t : b) {
      if (t == eos_) continue;
      ++nb;
      auto it = counts.find(t);
      if (it != counts.end() && it->second > 0) --it->second, ++common;
    }
    if (common == 0) return 0.0;
    const double precision = static_cast<double>(common) / static_cast<double>(na);
    const double recall = static_cast<double>(common) / static_cast<double>(nb);
    return 2 * precision * recall / (precision + recall);
  }

  // The reference's summed log-probability of every row of this rank's batch (last stage).
  void reference_logps(const io::Batch& batch) {
    const std::int64_t rows = batch.ids.dim(0);
    ref_sums_.assign(static_cast<std::size_t>(rows), 0.0f);
    if (reference_ == nullptr) return;
    std::vector<int> counts(static_cast<std::size_t>(rows));
    TokenLogpWork work(batch.ids, batch.targets, shape_.micro_rows,
                       [&](int micro, std::span<const float> logp, std::span<float>) {
                         const std::int64_t row0 = micro * shape_.micro_rows;
                         sum_over_targets(batch.targets, row0, shape_.micro_rows, logp,
                                          std::span<float>(ref_sums_).subspan(static_cast<std::size_t>(row0),
                                                                              static_cast<std::size_t>(shape_.micro_rows)),
                                          std::span<int>(counts).subspan(static_cast<std::size_t>(row0),
                                                                         static_cast<std::size_t>(shape_.micro_rows)));
                       });
    reference_->forward_only(work, work.micro_batches(), shape_.micro_rows, batch.ids.dim(1));
  }

  void score(const Tensor& targets, int micro, std::span<const float> logp, std::span<float> dlogp, DpoSums& sums,
             double global_pairs, bool poisoned) const {
    const std::int64_t rows = shape_.micro_rows, T = targets.dim(1), pairs = rows / 2, row0 = micro * rows;
    std::vector<float> sums_rows(static_cast<std::size_t>(rows));
    std::vector<int> counts(static_cast<std::size_t>(rows));
    sum_over_targets(targets, row0, rows, logp, sums_rows, counts);
    std::vector<float> pc(static_cast<std::size_t>(pairs)), pr(pc.size()), rc(pc.size()), rr(pc.size()),
        dc(pc.size()), dr(pc.size());
    std::vector<int> lc(pc.size()), lr(pc.size());
    for (std::int64_t p = 0; p < pairs; ++p) {
      const auto i = static_cast<std::size_t>(p), c = static_cast<std::size_t>(2 * p), r = c + 1;
      pc[i] = sums_rows[c], pr[i] = sums_rows[r];
      rc[i] = ref_sums_[static_cast<std::size_t>(row0) + c], rr[i] = ref_sums_[static_cast<std::size_t>(row0) + r];
      lc[i] = std::max(1, counts[c]), lr[i] = std::max(1, counts[r]);
    }
    const align::PreferenceStats stats =
        align::preference_loss(loss_, beta_, params_, {pc, pr, rc, rr, lc, lr}, {dc, dr});
    sums.add(stats, static_cast<double>(pairs));
    if (dlogp.empty()) return;
    // preference_loss's gradients are of this micro-batch's mean; the step's loss is the
    // global mean. Each target token of a row gets its row's ∂L/∂(Σ logp).
    const float scale = poisoned ? NAN : static_cast<float>(static_cast<double>(pairs) / global_pairs);
    const std::int32_t* t = targets.data<std::int32_t>() + row0 * T;
    for (std::int64_t row = 0; row < rows; ++row) {
      const auto pair = static_cast<std::size_t>(row / 2);
      const float g = (row % 2 == 0 ? dc[pair] : dr[pair]) * scale;
      for (std::int64_t j = 0; j < T; ++j) {
        if (t[row * T + j] >= 0) dlogp[static_cast<std::size_t>(row * T + j)] = g;
      }
    }
  }

  Engine& policy_;
  Engine* reference_;
  BatchShape shape_;
  align::PreferenceLoss loss_;
  double beta_;
  align::PreferenceParams params_;
  float grad_clip_;
  std::shared_ptr<const io::TokenStore> val_store_;
  io::LoaderOptions loader_options_;
  std::int64_t eval_batches_;
  std::int64_t generate_prompts_;
  std::int32_t eos_;
  std::vector<float> ref_sums_;
  std::optional<double> val_accuracy_, val_greedy_;
};

}  // namespace

config::Schema dpo_schema() {
  config::Schema schema = common_trainer_schema();
  add_lora_settings(schema);
  add_dpo_settings(schema);
  return schema;
}

int run_dpo(const config::Config& config) {
  const std::string program = "loom-dpo";
  const TrainerInputs in = load_trainer_inputs(config, "preference");
  const align::PreferenceLoss loss = align::parse_preference_loss(config.get_string("dpo.loss"));
  const bool needs_reference = loss != align::PreferenceLoss::simpo;
  const std::optional<std::filesystem::path> reference_path = path_or(config, "dpo.reference", "train.init_from");
  if (needs_reference && !reference_path) {
    throw config::ConfigError("dpo.loss = " + config.get_string("dpo.loss") +
                              " needs a reference model: set dpo.reference or train.init_from (the SFT model)");
  }

  auto backend = make_backend(config, "loom-dpo");
  const EngineOptions options = engine_options(config);
  const std::unique_ptr<Engine> policy_owner = make_engine(in.model, options, *backend);
  Engine& policy = *policy_owner;
  const BatchShape shape = batch_shape(config, policy.dp_size(), 2);
  policy.init_weights(static_cast<std::uint64_t>(config.get_int("train.seed")));
  if (config.has_value("train.init_from")) policy.load_weights(config.get_path("train.init_from").string());
  policy.make_optimizer(adamw_config(config));
  std::unique_ptr<Engine> reference;
  if (needs_reference) reference = make_frozen_engine(in.model, options, *backend, *reference_path);
  const io::LoaderOptions loader_options = pair_loader_options(config, policy, shape, in.tokenizer.eos_id());
  io::DataLoader loader(in.train, loader_options);

  LoopSetup setup = make_loop_setup(program, config, policy, loader, shape, in, *backend);
  if (reference_path) setup.record["reference"] = reference_path->string();
  std::ostringstream loss_line;
  loss_line << "loss " << config.get_string("dpo.loss") << ", beta " << config.get_float("dpo.beta")
            << (needs_reference ? ", reference " + reference_path->string() : std::string(", no reference model"));
  setup.banner = {describe_model(in.model), describe_pairs(in, shape, setup.max_steps, config), loss_line.str(),
                  "layout " + policy.describe()};
  print_memory(program, policy, shape, config.get_int("data.seq_len"));
  align::PreferenceParams params;
  params.label_smoothing = config.get_float("dpo.label_smoothing");
  params.simpo_gamma = config.get_float("dpo.simpo_gamma");
  DpoTrainer trainer(policy, reference.get(), shape, loss, config.get_float("dpo.beta"), params,
                     static_cast<float>(config.get_float("train.grad_clip")), in.val, loader_options,
                     config.get_int("eval.batches"), config.get_int("dpo.generate_prompts"), in.tokenizer.eos_id());
  return run_training_loop(config, setup, trainer, *backend);
}

}  // namespace loom::train
