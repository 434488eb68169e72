// Settings of the alignment trainers (loom-rm, loom-dpo, loom-ppo, loom-grpo), beside the
// shared ones of train/settings.h, and the schema of each trainer.
#pragma once

#include "io/config/config.h"

namespace loom::train {

// run, model, data, train, eval, parallel, checkpoint: what every trainer has.
config::Schema common_trainer_schema();

void add_rm_settings(config::Schema& schema);    // rm.*
void add_dpo_settings(config::Schema& schema);   // dpo.*
void add_rollout_settings(config::Schema& schema);  // rollout.*: generation for PPO and GRPO
void add_ppo_settings(config::Schema& schema);   // ppo.*
void add_grpo_settings(config::Schema& schema);  // grpo.*

}  // namespace loom::train
