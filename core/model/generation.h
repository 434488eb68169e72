// Batched autoregressive generation over a Transformer with a KV cache: greedy or sampled
// (temperature, top-k, top-p) decoding, stop tokens and a new-token limit, timed.
//
// Prompts may differ in length without padding: the batch is prefilled with the shortest
// prompt's length, and each decode step feeds every sequence its next prompt token while
// it still has one (the step's sample for it is discarded) or else its last sampled token.
// All sequences therefore share one position per step and no attention mask is needed.
//
// Sampling is deterministic: the uniform draw for a token is a pure function of
// (seed, sequence id, absolute position) (a splitmix64-style counter hash), so a sequence's
// output does not depend on which other sequences share its batch or in what order.
//
// Threads: one thread drives the Transformer; generate() is not re-entrant per model.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model/transformer.h"

namespace loom::model {

struct SamplingConfig {
  // <= 0 means greedy (argmax, lowest id on ties); top_k and top_p are then ignored.
  float temperature = 1.0f;
  std::int64_t top_k = 0;  // keep the k most likely tokens; 0: all
  float top_p = 1.0f;      // keep the smallest most-likely set whose mass reaches top_p; 1: all
  std::uint64_t seed = 0;
};

struct GenerationConfig {
  std::int64_t max_new_tokens = 32;
  SamplingConfig sampling;
  // A sequence stops after emitting any of these (the stop token is kept in its output).
  std::vector<std::int32_t> stop_tokens;
  // Per-sequence ids for the sampler's counter (default: the index in the batch). Give each
  // request a stable id to make its sample independent of batching.
  std::vector<std::uint64_t> sequence_ids;
};

struct GenerationResult {
  std::vector<std::vector<std::int32_t>> tokens;  // new tokens per sequence
  std::vector<bool> stopped;                      // ended on a stop token
  std::int64_t new_tokens = 0;                    // Σ tokens[b].size()
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  double tokens_per_second = 0.0;                 // new_tokens / (prefill + decode)
};

// Picks the next token from one row of logits [V] (greedy when temperature <= 0). `uniform`
// is the draw in [0, 1) (unused when greedy). Throws std::invalid_argument on bad settings.
std::int32_t sample_token(const float* logits, std::int64_t vocab, const SamplingConfig& sampling, double uniform);

// The sampler's uniform draw in [0, 1) for (seed, sequence id, position).
double sampling_uniform(std::uint64_t seed, std::uint64_t sequence, std::int64_t position);

// The logits choose() reads, on the host: `logits` [B, T, V] itself when it is in host
// memory, else its last position of each sequence copied into `buffer` as [B, 1, V] (one
// copy per sequence and step; sampling stays on the host).
const Tensor& last_logits_on_host(Backend& backend, const Tensor& logits, Tensor& buffer);

// The host-side bookkeeping of one batched generation, shared by generate() and the
// distributed driver (train/generator.h): checks the prompts and settings, gives the
// prefill ids, and per decode step either chooses every sequence's next input from the
// logits (on the rank that holds them) or applies a choice made on another rank.
//
// A choice is one i32 tensor [2B + 1]: the next input id of each sequence (a prompt token
// while it still has one, else its new token; a finished sequence repeats its last), then
// per sequence what the step did (kIdle: fed a prompt token or already finished,
// kEmitted: a new token, kStopped: a stop token), then 1 if any sequence goes on, else 0.
class GenerationSteps {
 public:
  static constexpr std::int32_t kIdle = 0, kEmitted = 1, kStopped = 2;

  // Throws std::invalid_argument for no prompts, an empty prompt, ids outside [0, vocab),
  // negative max_new_tokens, bad sampling settings or a sequence_ids list of the wrong size.
  GenerationSteps(const std::vector<std::vector<std::int32_t>>& prompts, const GenerationConfig& config,
                  std::int64_t vocab);

  std::int64_t batch() const { return batch_; }
  std::int64_t prefill_length() const { return min_len_; }                          // the shortest prompt
  std::int64_t capacity() const { return max_len_ + config_.max_new_tokens; }  // positions a cache needs
  // Nothing to generate (max_new_tokens = 0): skip the model entirely.
  bool trivial() const { return config_.max_new_tokens == 0; }
  // [B, prefill_length()] i32: the first prefill_length() tokens of every prompt.
  Tensor prefill_ids() const;

  // logits [B, T, V] f32 of the forward whose last position per sequence was pos - 1 (so
  // pos is the position the chosen inputs will take). Makes the step's choice and applies it.
  void choose(const Tensor& logits, std::int64_t pos);
  // Applies a choice made by choose() on another rank (same prompts and config).
  void apply(const Tensor& choice);
  // The last choice [2B + 1] i32 (a receive buffer for apply()).
  Tensor& choice() { return choice_; }
  // [B, 1] i32 view of the last choice's next inputs.
  Tensor step_ids() const { return choice_.view(0, {batch_, 1}); }
  // True once no sequence goes on (after the last choice).
  bool finished() const { return finished_; }

  // The tokens and stop flags so far (timings left for the caller to fill).
  GenerationResult& result() { return result_; }

 private:
  std::vector<std::vector<std::int32_t>> prompts_;
  GenerationConfig config_;
  std::int64_t vocab_ = 0, batch_ = 0, min_len_ = 0, max_len_ = 0;
  Tensor choice_;
  std::vector<bool> done_;
  bool finished_ = false;
  GenerationResult result_;
};

// Generates for each prompt (non-empty, ids in [0, V)) on a single-stage model (any tp
// size; every tp rank then calls it with the same prompts and gets the same result). Max
// prompt length + max_new_tokens must fit max_seq_len.
GenerationResult generate(Transformer& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationConfig& config);

}  // namespace loom::model
