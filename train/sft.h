// The SFT / pre-training loop behind loom-sft: loss on every token of raw text (a store of
// kind "text") or on completions only (kind "sft": the store's loss mask says which tokens
// are targets). Runs under any dp x tp x pp layout of an MPI launch (train/engine.h):
// train.batch_size is the global batch, each data-parallel rank runs its rows in
// micro-batches through the pipeline, gradients and losses are summed over the groups, and
// rank 0 alone writes files and prints.
//
// Per step: the data loader's next global batch, split into micro-batches whose gradients
// accumulate; the mean loss over all target tokens of the step; global-norm clipping folded
// into AdamW's gradient scale; a learning rate from the warmup + decay schedule. Writes
// <run_dir>/metrics.jsonl (every train.log_every steps and at each validation),
// <run_dir>/run.json (at start, then again with the results at the end) and
// <run_dir>/model.h5 (the final weights).
#pragma once

#include "io/config/config.h"

namespace loom::train {

config::Schema sft_schema();

// Runs the loop; returns the process exit code. Throws config::ConfigError for bad settings
// and std::runtime_error for bad files, each naming the setting or file.
int run_sft(const config::Config& config);

}  // namespace loom::train
