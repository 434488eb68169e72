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

// Generates for each prompt (non-empty, ids in [0, V)). The model must allow
// forward_decode (single stage, tp_size 1, LM head); max prompt length + max_new_tokens
// must fit max_seq_len.
GenerationResult generate(Transformer& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationConfig& config);

}  // namespace loom::model
