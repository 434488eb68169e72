// Preference pairs as the reward-model and DPO trainers see them: a store of kind
// "preference" (loom-prep: document 2i = prompt + chosen, 2i+1 = prompt + rejected, the
// completion's tokens marked as targets) read by a DataLoader that keeps each pair's two
// rows adjacent (group 2, no packing), so row 2k is a chosen completion and row 2k+1 its
// rejected one, in every micro-batch, on every rank.
//
// Threads: plain functions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "io/data/loader.h"
#include "train/engine.h"
#include "train/setup.h"

namespace loom::train {

// Loader options for pairs: pack off, group 2, data.shuffle, train.seed, pad = eos.
io::LoaderOptions pair_loader_options(const config::Config& config, const Engine& engine, const BatchShape& shape,
                                      std::int32_t pad_id);

// "93353 training pairs, batch 16 pairs x 64 tokens, micro-batch 16 pairs, 200 steps, 2 threads"
std::string describe_pairs(const TrainerInputs& inputs, const BatchShape& shape, std::int64_t steps,
                           const config::Config& config);

// Per row of targets [rows, T]: the position whose hidden state has read the whole
// sequence, the last token (one past the last target, or T - 1 when the row was cut).
std::vector<std::int64_t> last_token_positions(const Tensor& targets);

// Per row: Σ of per-token values where targets >= 0, and the number of such tokens.
void sum_over_targets(const Tensor& targets, std::int64_t row0, std::int64_t rows, std::span<const float> per_token,
                      std::span<float> sums, std::span<int> counts);


}  // namespace loom::train
