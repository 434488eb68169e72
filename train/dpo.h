// loom-dpo: direct preference optimisation of a policy against a frozen reference model on
// preference pairs (train/pairs.h). Losses (core/align/losses.h): sigmoid (DPO), ipo, cdpo
// (label smoothing) and simpo (reference-free, length-normalised, margin γ), temperature
// dpo.beta. The reference model (dpo.reference, default train.init_from) runs in the
// policy's layout, forward only, once per batch: its per-sequence log-probabilities are
// computed on the same ranks that need them, so nothing extra moves. Metrics: loss, chosen
// and rejected implicit rewards, their margin and accuracy, on training and held-out pairs;
// optionally how often greedy decoding reproduces the chosen completion exactly.
#pragma once

#include "io/config/config.h"

namespace loom::train {

config::Schema dpo_schema();
int run_dpo(const config::Config& config);

}  // namespace loom::train
