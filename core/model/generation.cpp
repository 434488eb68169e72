#include "core/model/generation.h"

#include "core/mix64.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace loom::model {

namespace {

std::int32_t argmax(const float* logits, std::int64_t vocab) {
  std::int64_t best = 0;
  for (std::int64_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<std::int32_t>(best);
}

void check_sampling(const SamplingConfig& s) {
  if (s.temperature <= 0.0f) return;
  if (!std::isfinite(s.temperature)) throw std::invalid_argument("sampling: temperature must be finite");
  if (s.top_k < 0) throw std::invalid_argument("sampling: top_k must be >= 0, got " + std::to_string(s.top_k));
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {
    throw std::invalid_argument("sampling: top_p must be in (0, 1], got " + std::to_string(s.top_p));
  }
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

double sampling_uniform(std::uint64_t seed, std::uint64_t sequence, std::int64_t position) {
  const std::uint64_t h = mix64(mix64(mix64(seed) ^ sequence) ^ static_cast<std::uint64_t>(position));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

std::int32_t sample_token(const float* logits, std::int64_t vocab, const SamplingConfig& sampling, double uniform) {
  if (vocab <= 0) throw std::invalid_argument("sample_token: vocabulary size must be positive");
  check_sampling(sampling);
  if (sampling.temperature <= 0.0f) return argmax(logits, vocab);

  // Probabilities in f64 relative to the row max; order by probability, then id, so the
  // kept set and the cumulative walk are fully determined.
  const double inv_t = 1.0 / static_cast<double>(sampling.temperature);
  const double top = static_cast<double>(logits[argmax(logits, vocab)]);
  std::vector<double> p(static_cast<std::size_t>(vocab));
  for (std::int64_t i = 0; i < vocab; ++i) p[static_cast<std::size_t>(i)] = std::exp((logits[i] - top) * inv_t);
  std::vector<std::int32_t> order(static_cast<std::size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    const double pa = p[static_cast<std::size_t>(a)], pb = p[static_cast<std::size_t>(b)];
    return pa != pb ? pa > pb : a < b;
  });

  std::size_t keep = order.size();
  if (sampling.top_k > 0) keep = std::min(keep, static_cast<std::size_t>(sampling.top_k));
  if (sampling.top_p < 1.0f) {
    double total = 0.0;
    for (std::size_t i = 0; i < keep; ++i) total += p[static_cast<std::size_t>(order[i])];
    double cumulative = 0.0;
    for (std::size_t i = 0; i < keep; ++i) {
      cumulative += p[static_cast<std::size_t>(order[i])];
      if (cumulative >= static_cast<double>(sampling.top_p) * total) {
        keep = i + 1;
        break;
      }
    }
  }
  double mass = 0.0;
  for (std::size_t i = 0; i < keep; ++i) mass += p[static_cast<std::size_t>(order[i])];
  const double target = uniform * mass;
  double cumulative = 0.0;
  for (std::size_t i = 0; i < keep; ++i) {
    cumulative += p[static_cast<std::size_t>(order[i])];
    if (target < cumulative) return order[i];
  }
  return order[keep - 1];
}

GenerationResult generate(Transformer& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationConfig& config) {
  check_sampling(config.sampling);
  const auto B = static_cast<std::int64_t>(prompts.size());
  if (B == 0) throw std::invalid_argument("generate: no prompts");
  if (config.max_new_tokens < 0) {
    throw std::invalid_argument("generate: max_new_tokens must be >= 0, got " + std::to_string(config.max_new_tokens));
  }
  if (!config.sequence_ids.empty() && static_cast<std::int64_t>(config.sequence_ids.size()) != B) {
    throw std::invalid_argument("generate: " + std::to_string(config.sequence_ids.size()) + " sequence ids for " +
                                std::to_string(B) + " prompts");
  }
  const std::int64_t V = model.config().vocab_size;
  std::int64_t min_len = 0, max_len = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& prompt = prompts[static_cast<std::size_t>(b)];
    if (prompt.empty()) throw std::invalid_argument("generate: prompt " + std::to_string(b) + " is empty");
    for (std::int32_t id : prompt) {
      if (id < 0 || id >= V) {
        throw std::invalid_argument("generate: prompt " + std::to_string(b) + " holds token " + std::to_string(id) +
                                    " outside the vocabulary [0, " + std::to_string(V) + ")");
      }
    }
    const auto len = static_cast<std::int64_t>(prompt.size());
    min_len = b == 0 ? len : std::min(min_len, len);
    max_len = std::max(max_len, len);
  }

  GenerationResult result;
  result.tokens.assign(static_cast<std::size_t>(B), {});
  result.stopped.assign(static_cast<std::size_t>(B), false);
  if (config.max_new_tokens == 0) return result;

  KvCache cache = model.make_kv_cache(B, max_len + config.max_new_tokens);
  Tensor ids = Tensor::empty({B, min_len}, DType::I32);
  for (std::int64_t b = 0; b < B; ++b) {
    std::copy_n(prompts[static_cast<std::size_t>(b)].begin(), min_len, ids.data<std::int32_t>() + b * min_len);
  }
  const auto t0 = Clock::now();
  const Tensor* logits = &model.forward_decode(ids, cache, 0);
  result.prefill_seconds = seconds_since(t0);

  const auto t1 = Clock::now();
  std::vector<bool> done(static_cast<std::size_t>(B), false);
  Tensor step_ids = Tensor::empty({B, 1}, DType::I32);
  std::int32_t* step = step_ids.data<std::int32_t>();
  for (std::int64_t pos = min_len;; ++pos) {
    const std::int64_t T = logits->dim(1);
    bool any_left = false;
    for (std::int64_t b = 0; b < B; ++b) {
      const auto bi = static_cast<std::size_t>(b);
      const auto& prompt = prompts[bi];
      if (pos < static_cast<std::int64_t>(prompt.size())) {
        step[b] = prompt[static_cast<std::size_t>(pos)];
        any_left = true;
        continue;
      }
      if (done[bi]) continue;  // keeps feeding its last token; its logits are ignored
      const float* row = logits->data<float>() + (b * T + T - 1) * V;
      const std::uint64_t id = config.sequence_ids.empty() ? static_cast<std::uint64_t>(b) : config.sequence_ids[bi];
      const std::int32_t token = sample_token(row, V, config.sampling, sampling_uniform(config.sampling.seed, id, pos));
      result.tokens[bi].push_back(token);
      step[b] = token;
      if (std::find(config.stop_tokens.begin(), config.stop_tokens.end(), token) != config.stop_tokens.end()) {
        result.stopped[bi] = true;
        done[bi] = true;
      } else if (static_cast<std::int64_t>(result.tokens[bi].size()) >= config.max_new_tokens) {
        done[bi] = true;
      }
      any_left = any_left || !done[bi];
    }
    if (!any_left) break;
    logits = &model.forward_decode(step_ids, cache, pos);
  }
  result.decode_seconds = seconds_since(t1);

  for (const auto& tokens : result.tokens) result.new_tokens += static_cast<std::int64_t>(tokens.size());
  const double total = result.prefill_seconds + result.decode_seconds;
  result.tokens_per_second = total > 0.0 ? static_cast<double>(result.new_tokens) / total : 0.0;
  return result;
}

}  // namespace loom::model
