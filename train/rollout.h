// Rollouts for the policy-gradient trainers (loom-ppo, loom-grpo): completions sampled from
// the policy for prompts of a "prompt" token store, scored by the rule-based verifier
// (io/data/verifier.h: exact match of the store's answer, plus a format bonus), and laid
// out as training rows [rows, T]: the prompt, then the completion, then padding; targets
// are the completion's tokens only (the stop token included when one was emitted).
//
// Sampling is a pure function of (train.seed, step, prompt document, sample index): the
// generator's counter-based draws (core/model/generation.h) get seed mix64(seed ^ step)
// and sequence id document · group + g. A resumed run therefore draws exactly the samples
// the uninterrupted run drew, whatever the layout, with only the step in the checkpoint.
//
// Ranks: every rank of one model replica (the tp × pp ranks of a dp rank) calls with the
// same documents and gets the same rollout; different dp ranks roll out their own prompts.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/model/generation.h"
#include "io/config/config.h"
#include "io/data/token_store.h"
#include "io/tokenizer/tokenizer.h"
#include "io/data/loader.h"
#include "train/engine.h"
#include "train/loop.h"

namespace loom::train {

struct RolloutOptions {
  std::int64_t seq_len = 0;  // T of the training rows: longest prompt + max_new_tokens must fit
  model::GenerationConfig generation;  // sampling; its seed is the run's seed
  double format_weight = 0.1;          // reward = exact_match + format_weight · format_ok
};

// rollout.* and data.seq_len; stop token: the tokenizer's eos.
RolloutOptions rollout_options(const config::Config& config, const io::Tokenizer& tokenizer);

struct Rollout {
  std::int64_t rows = 0, seq = 0;
  Tensor ids, targets;                       // [rows, T] i32; targets -1 outside the completion
  std::vector<std::uint8_t> mask;            // [rows · T]: 1 where targets >= 0
  std::vector<std::int64_t> last;            // per row: position of its last token (reward read there)
  std::vector<float> exact, format, reward;  // per row: verifier scores and the reward
  std::vector<std::int64_t> completion_tokens;  // per row
  std::vector<std::string> completions;      // decoded, stop token dropped
  double generate_seconds = 0;
  std::int64_t new_tokens = 0;
  std::int64_t completion_tokens_total() const;
};

// Samples `group` completions for each of `documents` (consecutive rows per prompt) at
// `step`. greedy: temperature 0 (evaluation). Throws std::invalid_argument when a prompt
// plus max_new_tokens does not fit seq_len (naming the document).
Rollout make_rollout(Engine& policy, const io::TokenStore& prompts, const io::Tokenizer& tokenizer,
                     std::span<const std::int64_t> documents, int group, const RolloutOptions& options,
                     std::int64_t step, bool greedy = false);

// Completions of the first `count` prompts of `store` (0: all), split over the dp ranks:
// greedy {mean reward, exact-match rate, format rate, mean completion length}, and the
// policy's own sampling (the rollout temperature, `samples` per prompt, a fixed seed, so
// every validation draws alike) {mean reward, exact-match rate} — the RL objective on
// held-out prompts. Equal on every rank.
struct HeldOutScores {
  double reward = 0, exact_match = 0, format = 0, length = 0, prompts = 0;
  double sampled_reward = 0, sampled_exact_match = 0;
};
HeldOutScores held_out_scores(Engine& policy, const io::TokenStore& store, const io::Tokenizer& tokenizer,
                              const RolloutOptions& options, std::int64_t count, std::int64_t batch);

// The validation of a policy-gradient trainer: the held-out scores as metrics, progress
// field and summary phrase; and run.json's results from the last of them.
Validation held_out_validation(const HeldOutScores& scores);
nlohmann::json held_out_results(const std::optional<HeldOutScores>& scores);

// Loader options for prompts: `prompts` per global batch, one row each, no packing.
io::LoaderOptions prompt_loader_options(const config::Config& config, const Engine& engine, std::int64_t prompts,
                                        std::int32_t pad_id);


}  // namespace loom::train
