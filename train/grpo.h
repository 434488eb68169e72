// loom-grpo: group relative policy optimisation (Shao et al. 2024) on prompts with
// verifiable answers. Per step, for each prompt of the global batch (train.batch_size
// prompts), grpo.group_size completions are sampled from the current policy
// (train/rollout.h), rewarded by the verifier, and given group-normalised advantages;
// one gradient step then minimises the clipped surrogate plus β · k3 KL to a frozen
// reference model (core/align/rl.h grpo_loss), a token mean over every completion token of
// the global batch. The reference (rollout.reference, default train.init_from) runs in the
// policy's layout, forward only. Held-out prompts (data.val) are greedy-decoded at each
// validation: mean reward and exact-match rate.
#pragma once

#include "io/config/config.h"

namespace loom::train {

config::Schema grpo_schema();
int run_grpo(const config::Config& config);

}  // namespace loom::train
