#include "eval/scorer.h"

#include <algorithm>
#include <stdexcept>

#include "eval/task.h"
#include "train/generator.h"
#include "train/seq_work.h"

namespace loom::eval {
namespace {

// The batch's rows rounded up to whole micro-batches.
constexpr std::int64_t kMinTokens = 64;
constexpr std::size_t kGenerationRows = 8;

// A row of `length` tokens padded to a multiple of kBucket, at most the window.
std::int64_t bucket_length(std::int64_t length, std::int64_t window) {
  return std::min(window, (std::max<std::int64_t>(length, 1) + kBucket - 1) / kBucket * kBucket);
}

std::int64_t padded_rows(std::size_t rows, std::int64_t micro_rows) {
  const auto r = static_cast<std::int64_t>(rows);
  return (r + micro_rows - 1) / micro_rows * micro_rows;
}

}  // namespace

std::int64_t loglik_bucket(const LoglikRequest& request, std::int64_t window) {
  return bucket_length(static_cast<std::int64_t>(request.context.size() + request.continuation.size()) - 1, window);
}

std::vector<LoglikResult> score_loglik(train::Engine& engine, const std::vector<const LoglikRequest*>& batch,
                                       std::int64_t micro_rows, std::int32_t pad_id) {
  const std::int64_t window = engine.config().max_seq_len;
  // Each row: (context + continuation) without its last token as input, the continuation
  // as targets; cut from the left to the window.
  std::int64_t T = 1;
  for (const LoglikRequest* r : batch) {
    if (r->continuation.empty() || r->context.empty()) throw std::invalid_argument("score_loglik: empty context or continuation");
    T = std::max(T, loglik_bucket(*r, window));
  }
  micro_rows = std::max<std::int64_t>(1, std::min<std::int64_t>(micro_rows, static_cast<std::int64_t>(batch.size())));
  // Every micro-batch spans at least kMinTokens positions (empty rows fill it up): OpenBLAS
  // takes another summation order for GEMMs of very few rows (measured: a single 16-token
  // row differed in its last bits from the same row among others).
  micro_rows = std::max(micro_rows, (kMinTokens + T - 1) / T);
  const std::int64_t rows = padded_rows(batch.size(), micro_rows);
  Tensor ids = Tensor::empty({rows, T}, DType::I32), targets = Tensor::empty({rows, T}, DType::I32);
  std::int32_t* id = ids.data<std::int32_t>();
  std::int32_t* target = targets.data<std::int32_t>();
  std::fill(id, id + rows * T, pad_id);
  std::fill(target, target + rows * T, -1);
  std::vector<LoglikResult> results(batch.size());
  for (std::size_t b = 0; b < batch.size(); ++b) {
    const LoglikRequest& r = *batch[b];
    std::vector<std::int32_t> full(r.context);
    full.insert(full.end(), r.continuation.begin(), r.continuation.end());
    const auto n = static_cast<std::int64_t>(full.size()) - 1;  // inputs
    const std::int64_t drop = std::max<std::int64_t>(0, n - window);
    const auto first_target = static_cast<std::int64_t>(r.context.size()) - 1;  // input index predicting continuation[0]
    for (std::int64_t j = drop; j < n; ++j) {
      const std::int64_t at = static_cast<std::int64_t>(b) * T + (j - drop);
      id[at] = full[static_cast<std::size_t>(j)];
      if (j >= first_target) {
        target[at] = full[static_cast<std::size_t>(j + 1)];
        ++results[b].tokens;
      }
    }
  }
  train::TokenLogpWork work(ids, targets, micro_rows, [&](int micro, std::span<const float> logp, std::span<float>) {
    for (std::int64_t m = 0; m < micro_rows; ++m) {
      const std::int64_t row = static_cast<std::int64_t>(micro) * micro_rows + m;
      if (row >= static_cast<std::int64_t>(batch.size())) break;
      double sum = 0;
      for (std::int64_t j = 0; j < T; ++j) {
        if (target[row * T + j] >= 0) sum += static_cast<double>(logp[static_cast<std::size_t>(m * T + j)]);
      }
      results[static_cast<std::size_t>(row)].logp = sum;
    }
  });
  engine.forward_only(work, static_cast<int>(rows / micro_rows), micro_rows, T);
  if (!engine.last_stage()) {
    for (LoglikResult& r : results) r = LoglikResult{};
  }
  return results;
}

std::vector<std::string> generate_greedy(train::Engine& engine, const io::Tokenizer& tokenizer,
                                         const std::vector<const std::vector<std::int32_t>*>& contexts,
                                         const GenerateOptions& options) {
  const std::int64_t keep = engine.config().max_seq_len - options.max_new_tokens;
  if (keep < 1) {
    throw std::invalid_argument("max_new_tokens " + std::to_string(options.max_new_tokens) +
                                " leaves no room for a prompt in the model's window of " +
                                std::to_string(engine.config().max_seq_len));
  }
  std::vector<std::vector<std::int32_t>> prompts;
  prompts.reserve(contexts.size());
  for (const auto* c : contexts) {
    const auto n = static_cast<std::int64_t>(c->size());
    prompts.emplace_back(c->begin() + std::max<std::int64_t>(0, n - keep), c->end());
  }
  // Always kGenerationRows sequences (copies of the first fill up a short batch): a decode
  // step's GEMMs have one row per sequence, and their summation order may change with the row
  // count, so a fixed count keeps a response independent of its batch.
  const std::size_t real = prompts.size();
  const std::size_t padded = (real + kGenerationRows - 1) / kGenerationRows * kGenerationRows;
  while (prompts.size() < padded) prompts.push_back(prompts.front());
  model::GenerationConfig config;
  config.max_new_tokens = options.max_new_tokens;
  config.sampling.temperature = 0.0f;
  config.stop_tokens = {tokenizer.eos_id()};
  model::GenerationResult result;
  for (std::size_t at = 0; at < padded; at += kGenerationRows) {
    const std::vector<std::vector<std::int32_t>> part(prompts.begin() + static_cast<std::ptrdiff_t>(at),
                                                      prompts.begin() + static_cast<std::ptrdiff_t>(at + kGenerationRows));
    model::GenerationResult r = train::generate(engine, part, config);
    result.tokens.insert(result.tokens.end(), r.tokens.begin(), r.tokens.end());
    result.stopped.insert(result.stopped.end(), r.stopped.begin(), r.stopped.end());
  }
  result.tokens.resize(real);
  result.stopped.resize(real);
  std::vector<std::string> texts;
  texts.reserve(contexts.size());
  for (std::size_t b = 0; b < contexts.size(); ++b) {
    std::vector<std::int32_t> tokens = result.tokens[b];
    if (result.stopped[b] && !tokens.empty()) tokens.pop_back();
    texts.push_back(cut_at_stop(tokenizer.decode(tokens), options.until));
  }
  return texts;
}

std::vector<double> score_reward(train::Engine& reward_model, const io::Tokenizer& tokenizer,
                                 const std::vector<const std::vector<std::int32_t>*>& contexts,
                                 const std::vector<std::string>& responses, std::int64_t micro_rows) {
  const std::int64_t window = reward_model.config().max_seq_len;
  std::vector<std::vector<std::int32_t>> sequences;
  for (std::size_t b = 0; b < contexts.size(); ++b) {
    std::vector<std::int32_t> s = *contexts[b];
    const std::vector<std::int32_t> response = tokenizer.encode(responses[b]);
    s.insert(s.end(), response.begin(), response.end());
    s.push_back(tokenizer.eos_id());
    if (static_cast<std::int64_t>(s.size()) > window) s.erase(s.begin(), s.end() - window);
    sequences.push_back(std::move(s));
  }
  const auto bucket_of = [&](const std::vector<std::int32_t>& s) {
    return bucket_length(static_cast<std::int64_t>(s.size()), window);
  };
  // Responses differ in length: one pass per padding bucket, so a score never depends on the
  // other responses of the batch (as for log-likelihoods).
  std::vector<double> scores(contexts.size(), 0.0);
  std::vector<std::int64_t> buckets;
  for (const auto& s : sequences) buckets.push_back(bucket_of(s));
  std::sort(buckets.begin(), buckets.end());
  buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
  for (const std::int64_t T : buckets) {
    std::vector<std::size_t> members;
    for (std::size_t b = 0; b < sequences.size(); ++b) {
      if (bucket_of(sequences[b]) == T) members.push_back(b);
    }
    std::int64_t micro = std::max<std::int64_t>(1, std::min<std::int64_t>(micro_rows, static_cast<std::int64_t>(members.size())));
    micro = std::max(micro, (kMinTokens + T - 1) / T);
    const std::int64_t rows = padded_rows(members.size(), micro);
    Tensor ids = Tensor::empty({rows, T}, DType::I32);
    std::int32_t* id = ids.data<std::int32_t>();
    std::fill(id, id + rows * T, tokenizer.eos_id());
    for (std::size_t m = 0; m < members.size(); ++m) {
      const auto& s = sequences[members[m]];
      std::copy(s.begin(), s.end(), id + static_cast<std::int64_t>(m) * T);
    }
    train::ValueWork work(ids, micro, [&](int part, std::span<const float> values, std::span<float>) {
      for (std::int64_t m = 0; m < micro; ++m) {
        const std::int64_t row = static_cast<std::int64_t>(part) * micro + m;
        if (row >= static_cast<std::int64_t>(members.size())) break;
        const std::size_t b = members[static_cast<std::size_t>(row)];
        const auto last = static_cast<std::int64_t>(sequences[b].size()) - 1;
        scores[b] = values[static_cast<std::size_t>(m * T + last)];
      }
    });
    reward_model.forward_only(work, static_cast<int>(rows / micro), micro, T);
  }
  return scores;
}

}  // namespace loom::eval
