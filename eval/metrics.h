// Task metrics from the per-request results of an evaluation, with standard errors, and the
// per-document sample records (samples/<task>.jsonl). Pure functions of their inputs: the
// journal's records, whatever order or layout produced them, give the same numbers.
//
//   perplexity       word_perplexity = exp(-Σ logp / Σ words), token_perplexity (per model
//                    token), bits_per_byte = -Σ logp / (Σ UTF-8 bytes · ln 2); standard
//                    errors by the delta method on the ratio estimator over documents
//   multiple_choice  acc (argmax of the choices' log-likelihoods is the gold one), acc_norm
//                    (the same per UTF-8 byte of the choice, lm-evaluation-harness's
//                    length-normalised accuracy); ties go to the lowest index
//   generate_until   exact_match after the task's regex extraction and normalisation
//   reward           reward (the reward model's mean score of the model's responses);
//                    with a baseline: baseline_reward and win_rate (the model's response
//                    scores higher: 1, equal: 0.5)
// Mean metrics' standard error is the sample standard deviation / sqrt(n).
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/task.h"

namespace loom::eval {

// A request's results as the journal holds them, by (document id, part).
using RequestResults = std::map<std::pair<std::int64_t, std::int64_t>, nlohmann::json>;

struct TaskScores {
  std::int64_t samples = 0;
  nlohmann::json metrics = nlohmann::json::object();  // name → {"value", "stderr", "higher_is_better"}
  std::vector<nlohmann::json> sample_records;          // one per document, in document order
};

// Throws std::runtime_error naming the task and document when a request's result is missing.
TaskScores score_task(const TaskConfig& task, const std::vector<Document>& documents, const RequestResults& results);

// Mean and its standard error (sample standard deviation / sqrt(n); nullopt for n < 2).
std::pair<double, std::optional<double>> mean_and_stderr(const std::vector<double>& values);

// Whitespace-separated words (runs of non-space characters), as lm-evaluation-harness counts them.
std::int64_t count_words(const std::string& text);

}  // namespace loom::eval
