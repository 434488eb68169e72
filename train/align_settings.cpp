#include "train/align_settings.h"

#include <string>

#include "train/settings.h"

namespace loom::train {

config::Schema common_trainer_schema() {
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

void add_rm_settings(config::Schema& schema) {
  schema.describe_group("rm", "Reward model: Bradley-Terry loss on (chosen, rejected) pairs");
  schema.add_float("rm.margin", 0.0,
                   "Margin m of the loss -log sigmoid(r_chosen - r_rejected - m): the chosen reward must beat the "
                   "rejected one by m");
}

void add_dpo_settings(config::Schema& schema) {
  schema.describe_group("dpo", "Direct preference optimisation against a frozen reference model");
  schema.add_enum("dpo.loss", std::string("sigmoid"), {"sigmoid", "ipo", "cdpo", "simpo"},
                  "sigmoid = DPO; ipo = IPO; cdpo = DPO with label smoothing; simpo = SimPO (reference-free, "
                  "length-normalised, margin dpo.simpo_gamma)");
  schema.add_float("dpo.beta", 0.1, "Temperature beta of the implicit reward beta * log(pi / pi_ref)", {.min = 1e-6});
  schema.add_float("dpo.label_smoothing", 0.0, "cdpo's label smoothing epsilon (0 to 0.5)", {.min = 0, .max = 0.5});
  schema.add_float("dpo.simpo_gamma", 0.5, "simpo's target reward margin gamma", {.min = 0});
  schema.add_path("dpo.reference", config::unset,
                  "Weights of the frozen reference model; unset = train.init_from (the policy's start)");
  schema.add_int("dpo.generate_prompts", 0,
                 "At each validation, greedy-generate completions for this many held-out prompts and report how "
                 "often they equal the chosen completion exactly, their token F1 to the chosen and to the rejected "
                 "completion, and how often they are closer to the chosen; 0 = off", {.min = 0});
}

void add_rollout_settings(config::Schema& schema) {
  schema.describe_group("rollout", "Sampling of completions for PPO and GRPO");
  schema.add_int("rollout.max_new_tokens", 8, "Longest completion in tokens", {.min = 1});
  schema.add_float("rollout.temperature", 1.0, "Sampling temperature (0 = greedy)", {.min = 0});
  schema.add_int("rollout.top_k", 0, "Sample among the k most likely tokens; 0 = all", {.min = 0});
  schema.add_float("rollout.top_p", 1.0, "Nucleus sampling mass; 1 = all", {.min = 0, .max = 1});
  schema.add_enum("rollout.reward", std::string("verifier"), {"verifier", "model"},
                  "verifier = exact match of the answer (+ format bonus); model = a reward model's score");
  schema.add_path("rollout.reward_model", config::unset, "Weights of the reward model (a loom-rm run's model.h5)");
  schema.add_float("rollout.format_weight", 0.1,
                   "Verifier reward: exact_match + format_weight * (the completion starts with a number)", {.min = 0});
  schema.add_path("rollout.reference", config::unset,
                  "Weights of the frozen reference model for the KL penalty; unset = train.init_from");
  schema.add_int("rollout.eval_prompts", 64, "Held-out prompts greedy-decoded at each validation (0 = all)",
                 {.min = 0});
}

void add_ppo_settings(config::Schema& schema) {
  schema.describe_group("ppo", "PPO: actor, critic (value head), frozen reference and reward");
  schema.add_int("ppo.epochs", 2, "Passes over each rollout batch", {.min = 1});
  schema.add_int("ppo.mini_batches", 2, "Mini-batches (optimizer steps) per pass", {.min = 1});
  schema.add_float("ppo.clip", 0.2, "Policy ratio clip epsilon", {.min = 0});
  schema.add_float("ppo.value_clip", 0.2, "Value clip epsilon", {.min = 0});
  schema.add_float("ppo.gamma", 1.0, "Discount gamma of GAE", {.min = 0, .max = 1});
  schema.add_float("ppo.lambda", 0.95, "GAE lambda", {.min = 0, .max = 1});
  schema.add_float("ppo.kl_coef", 0.05, "Per-token KL penalty coefficient (initial, if adaptive)", {.min = 0});
  schema.add_enum("ppo.kl_estimator", std::string("k1"), {"k1", "k3"}, "Per-token KL estimator of the penalty");
  schema.add_float("ppo.kl_target", 0.0, "Adaptive KL controller's target KL; 0 = fixed coefficient", {.min = 0});
  schema.add_float("ppo.kl_horizon", 10000.0, "Adaptive KL controller's horizon", {.min = 1});
  schema.add_bool("ppo.whiten_advantages", true, "Whiten advantages over the rollout batch");
  schema.add_float("ppo.critic_lr", 0.0, "Critic learning rate; 0 = train.lr", {.min = 0});
  schema.add_path("ppo.critic_init", config::unset,
                  "Critic's start: a scalar-head model (loom-rm's model.h5); unset = rollout.reward_model, else the "
                  "actor's backbone with a zero value head");
}

void add_grpo_settings(config::Schema& schema) {
  schema.describe_group("grpo", "GRPO: group-normalised advantages, no critic");
  schema.add_int("grpo.group_size", 8, "Completions sampled per prompt (G)", {.min = 2});
  schema.add_float("grpo.clip", 0.2, "Policy ratio clip epsilon", {.min = 0});
  schema.add_float("grpo.beta", 0.04, "Coefficient of the k3 KL to the reference; 0 = no reference model", {.min = 0});
  schema.add_float("grpo.eps", 1e-4, "Added to the group's reward std", {.min = 0});
}

}  // namespace loom::train
