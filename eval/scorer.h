// The model passes loom-eval makes, on one dp replica (its tp × pp ranks call each function
// together with the same batch):
//   - log-likelihood of a continuation given a context (multiple choice, perplexity windows);
//   - greedy generation (generate_until, reward);
//   - a reward model's score of context + response (reward).
//
// Rows are padded (after their tokens; attention is causal) to a bucket length: the row's
// length rounded up to a multiple of kBucket, at most the window. A row's numbers depend on
// its bucket (the attention kernel's tiling follows the padded length) but not on the batch
// size (measured: bit-identical at batch sizes 1 to 16), so a batch whose rows share one
// bucket — as the runner forms them — gives each row the numbers it gets alone. A batch of
// mixed buckets is padded to its largest. Rows longer than the window keep their last tokens
// (the continuation first, then as much context as fits).
//
// Where results live: log-likelihoods and rewards on the last pipeline stage (every tp rank
// of it); generations on every rank of the replica. Ranks: collective over the replica.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/tokenizer/tokenizer.h"
#include "train/engine.h"

namespace loom::eval {

struct LoglikRequest {
  std::vector<std::int32_t> context;       // may be empty only when continuation is not
  std::vector<std::int32_t> continuation;  // non-empty
};

inline constexpr std::int64_t kBucket = 16;
// The padded length a request runs at.
std::int64_t loglik_bucket(const LoglikRequest& request, std::int64_t window);

struct LoglikResult {
  double logp = 0;          // Σ log p(continuation tokens | context), f64 sum in token order
  std::int64_t tokens = 0;  // continuation tokens scored
};

// Rows run as micro-batches of `micro_rows` (the last padded with empty rows). Valid on the
// last pipeline stage; zeros elsewhere.
std::vector<LoglikResult> score_loglik(train::Engine& engine, const std::vector<const LoglikRequest*>& batch,
                                       std::int64_t micro_rows, std::int32_t pad_id);

struct GenerateOptions {
  std::int64_t max_new_tokens = 32;
  std::vector<std::string> until;  // stop strings: the text is cut at the first
};

// Greedy continuations of each context, decoded and cut at the first stop string (or at
// eos). Contexts longer than the window minus max_new_tokens keep their last tokens. Runs in
// groups of a fixed number of sequences (short groups filled with copies), so with contexts
// of one length — as the runner batches them — a response does not depend on its batch.
std::vector<std::string> generate_greedy(train::Engine& engine, const io::Tokenizer& tokenizer,
                                         const std::vector<const std::vector<std::int32_t>*>& contexts,
                                         const GenerateOptions& options);

// A reward model's score (scalar head at the last token) of each context + response + eos,
// one pass per padding bucket. Valid on the last pipeline stage.
std::vector<double> score_reward(train::Engine& reward_model, const io::Tokenizer& tokenizer,
                                 const std::vector<const std::vector<std::int32_t>*>& contexts,
                                 const std::vector<std::string>& responses, std::int64_t micro_rows);

}  // namespace loom::eval
