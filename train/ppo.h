// loom-ppo: PPO with a learned critic (Ouyang et al. 2022; the OpenRLHF/TRL recipe). Four
// models in the same dp × tp × pp layout: the actor (trained, checkpointed as the primary
// model), the critic (a scalar value head, trained, checkpointed under "critic/" and
// written as critic.h5), a frozen reference (KL penalty) and a frozen reward model — or
// the rule-based verifier (rollout.reward).
//
// One step = one PPO iteration: completions for the global batch of prompts
// (train/rollout.h); forward passes for the sampling log-probs, the reference log-probs,
// the values and the score; per-token rewards -kl_coef · KL (k1 or k3) plus the score on the
// last completion token; GAE(γ, λ); advantages whitened over the global batch; then
// ppo.epochs passes over ppo.mini_batches mini-batches, each an actor step (clipped
// surrogate) and a critic step (clipped value loss). The adaptive KL coefficient
// (ppo.kl_target > 0) is part of the checkpointed state.
//
// Metrics: reward (score), exact match and format (verifier), KL, kl_coef, policy and value
// loss, clip fractions, approx-KL, entropy (the sample estimate: mean -log π of the sampled
// tokens), completion length, generation tokens/s.
#pragma once

#include "io/config/config.h"

namespace loom::train {

config::Schema ppo_schema();
int run_ppo(const config::Config& config);

}  // namespace loom::train
