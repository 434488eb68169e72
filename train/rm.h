// loom-rm: a reward model — the backbone with a scalar head read at the last token —
// trained with the Bradley–Terry loss -log σ(r_chosen - r_rejected - rm.margin) on
// preference pairs (train/pairs.h), usually starting from an SFT model's weights
// (train.init_from: the LM head is dropped, the score head starts from its init). Metrics:
// loss, accuracy (r_chosen > r_rejected) and mean reward margin, on training batches and on
// held-out pairs (data.val). Every other behaviour is the shared loop's (train/loop.h).
#pragma once

#include "io/config/config.h"

namespace loom::train {

config::Schema rm_schema();
int run_rm(const config::Config& config);

}  // namespace loom::train
