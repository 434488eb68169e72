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

GenerationSteps::GenerationSteps(const std::vector<std::vector<std::int32_t>>& prompts, const GenerationConfig& config,
                                 std::int64_t vocab)
    : prompts_(prompts), config_(config), vocab_(vocab), batch_(static_cast<std::int64_t>(prompts.size())) {
  check_sampling(config.sampling);
  if (batch_ == 0) throw std::invalid_argument("generate: no prompts");
  if (config.max_new_tokens < 0) {
    throw std::invalid_argument("generate: max_new_tokens must be >= 0, got " + std::to_string(config.max_new_tokens));
  }
  if (!config.sequence_ids.empty() && static_cast<std::int64_t>(config.sequence_ids.size()) != batch_) {
    throw std::invalid_argument("generate: " + std::to_string(config.sequence_ids.size()) + " sequence ids for " +
                                std::to_string(batch_) + " prompts");
  }
  for (std::int64_t b = 0; b < batch_; ++b) {
    const auto& prompt = prompts[static_cast<std::size_t>(b)];
    if (prompt.empty()) throw std::invalid_argument("generate: prompt " + std::to_string(b) + " is empty");
    for (std::int32_t id : prompt) {
      if (id < 0 || id >= vocab) {
        throw std::invalid_argument("generate: prompt " + std::to_string(b) + " holds token " + std::to_string(id) +
                                    " outside the vocabulary [0, " + std::to_string(vocab) + ")");
      }
    }
    const auto len = static_cast<std::int64_t>(prompt.size());
    min_len_ = b == 0 ? len : std::min(min_len_, len);
    max_len_ = std::max(max_len_, len);
  }
  choice_ = Tensor::zeros({2 * batch_ + 1}, DType::I32);
  done_.assign(static_cast<std::size_t>(batch_), false);
  result_.tokens.assign(static_cast<std::size_t>(batch_), {});
  result_.stopped.assign(static_cast<std::size_t>(batch_), false);
  finished_ = trivial();
}

Tensor GenerationSteps::prefill_ids() const {
  Tensor ids = Tensor::empty({batch_, min_len_}, DType::I32);
  for (std::int64_t b = 0; b < batch_; ++b) {
    std::copy_n(prompts_[static_cast<std::size_t>(b)].begin(), min_len_, ids.data<std::int32_t>() + b * min_len_);
  }
  return ids;
}

void GenerationSteps::choose(const Tensor& logits, std::int64_t pos) {
  if (logits.ndim() != 3 || logits.dim(0) != batch_ || logits.dim(2) != vocab_) {
    throw std::invalid_argument("generate: logits must be [" + std::to_string(batch_) + ", T, " +
                                std::to_string(vocab_) + "], got " + logits.describe());
  }
  const std::int64_t T = logits.dim(1), B = batch_;
  std::int32_t* step = choice_.data<std::int32_t>();
  std::int32_t* event = step + B;
  bool any_left = false;
  for (std::int64_t b = 0; b < B; ++b) {
    const auto bi = static_cast<std::size_t>(b);
    const auto& prompt = prompts_[bi];
    event[b] = kIdle;
    if (pos < static_cast<std::int64_t>(prompt.size())) {
      step[b] = prompt[static_cast<std::size_t>(pos)];
      any_left = true;
      continue;
    }
    if (done_[bi]) continue;  // keeps feeding its last token; its logits are ignored
    const float* row = logits.data<float>() + (b * T + T - 1) * vocab_;
    const std::uint64_t id = config_.sequence_ids.empty() ? static_cast<std::uint64_t>(b) : config_.sequence_ids[bi];
    const std::int32_t token = sample_token(row, vocab_, config_.sampling, sampling_uniform(config_.sampling.seed, id, pos));
    step[b] = token;
    const bool stop =
        std::find(config_.stop_tokens.begin(), config_.stop_tokens.end(), token) != config_.stop_tokens.end();
    event[b] = stop ? kStopped : kEmitted;
    const bool last = stop || static_cast<std::int64_t>(result_.tokens[bi].size()) + 1 >= config_.max_new_tokens;
    any_left = any_left || !last;
  }
  step[2 * B] = any_left ? 1 : 0;
  apply(choice_);
}

void GenerationSteps::apply(const Tensor& choice) {
  const std::int64_t B = batch_;
  if (choice.numel() != 2 * B + 1 || choice.dtype() != DType::I32) {
    throw std::invalid_argument("generate: a step's choice must be [" + std::to_string(2 * B + 1) + "] i32, got " +
                                choice.describe());
  }
  if (choice.raw() != choice_.raw()) std::copy_n(choice.data<std::int32_t>(), 2 * B + 1, choice_.data<std::int32_t>());
  const std::int32_t* step = choice_.data<std::int32_t>();
  const std::int32_t* event = step + B;
  for (std::int64_t b = 0; b < B; ++b) {
    const auto bi = static_cast<std::size_t>(b);
    if (event[b] == kIdle) continue;
    result_.tokens[bi].push_back(step[b]);
    result_.new_tokens += 1;
    if (event[b] == kStopped) result_.stopped[bi] = true;
    if (event[b] == kStopped || static_cast<std::int64_t>(result_.tokens[bi].size()) >= config_.max_new_tokens) {
      done_[bi] = true;
    }
  }
  finished_ = step[2 * B] == 0;
}

const Tensor& last_logits_on_host(Backend& backend, const Tensor& logits, Tensor& buffer) {
  if (logits.device() == Device::CPU) return logits;
  if (logits.ndim() != 3) {
    throw std::invalid_argument("generate: logits must be [B, T, V], got " + logits.describe());
  }
  const std::int64_t B = logits.dim(0), T = logits.dim(1), V = logits.dim(2);
  if (!buffer.defined() || buffer.shape() != Shape{B, 1, V} || buffer.device() != Device::CPU) {
    buffer = Tensor::empty({B, 1, V}, DType::F32, Device::CPU);
  }
  for (std::int64_t b = 0; b < B; ++b) {
    Tensor row = buffer.view(b * V, {V});
    backend.copy(logits.view((b * T + T - 1) * V, {V}), row);
  }
  return buffer;
}

GenerationResult generate(Transformer& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationConfig& config) {
  GenerationSteps steps(prompts, config, model.config().vocab_size);
  if (steps.trivial()) return steps.result();

  KvCache cache = model.make_kv_cache(steps.batch(), steps.capacity());
  const auto t0 = Clock::now();
  const Tensor* logits = &model.forward_decode(steps.prefill_ids(), cache, 0);
  GenerationResult& result = steps.result();
  result.prefill_seconds = seconds_since(t0);

  const auto t1 = Clock::now();
  Tensor host_logits;
  for (std::int64_t pos = steps.prefill_length();; ++pos) {
    steps.choose(last_logits_on_host(model.backend(), *logits, host_logits), pos);
    if (steps.finished()) break;
    logits = &model.forward_decode(steps.step_ids(), cache, pos);
  }
  result.decode_seconds = seconds_since(t1);
  const double total = result.prefill_seconds + result.decode_seconds;
  result.tokens_per_second = total > 0.0 ? static_cast<double>(result.new_tokens) / total : 0.0;
  return result;
}

}  // namespace loom::model
