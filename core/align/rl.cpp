#include "core/align/rl.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/align/numerics.h"

namespace loom::align {

namespace {

std::size_t count_unmasked(const char* fn, std::span<const std::uint8_t> mask) {
  std::size_t n = 0;
  for (std::uint8_t m : mask) n += m != 0;
  if (n == 0) throw std::invalid_argument(std::string(fn) + ": mask has no unmasked token, nothing to average over");
  return n;
}

void require_clip(const char* fn, double clip_eps) {
  if (!(clip_eps > 0) || !std::isfinite(clip_eps))
    throw std::invalid_argument(std::string(fn) + ": clip_eps must be finite and > 0, got " + std::to_string(clip_eps));
}

// Gradient spans may be empty (caller does not want them); otherwise they must match.
void require_optional(const char* fn, const char* name, std::span<float> s, std::size_t n) {
  if (!s.empty()) detail::require_size(fn, name, s, n, "same as the log-probs, or empty to skip");
}

// The clipped surrogate of one token: max(-A ρ, -A clip(ρ)), its derivative w.r.t. log ρ,
// and whether the clipped term was the one taken.
struct Surrogate {
  double loss, d_logratio;
  bool clipped;
};

Surrogate clipped_surrogate(double log_ratio, double advantage, double clip_eps) {
  const double ratio = std::exp(log_ratio);
  const double unclipped = -advantage * ratio;
  const double clipped = -advantage * std::clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps);
  if (clipped > unclipped) return {clipped, 0.0, true};
  return {unclipped, unclipped, false};
}

}  // namespace

void gae(std::span<const float> rewards, std::span<const float> values, std::span<const std::uint8_t> mask,
         std::size_t seq_len, double gamma, double lambda, std::span<float> advantages, std::span<float> returns) {
  const char* fn = "gae";
  if (seq_len == 0) throw std::invalid_argument("gae: seq_len must be > 0");
  detail::require_nonempty(fn, "rewards", rewards.size());
  if (rewards.size() % seq_len != 0)
    throw std::invalid_argument("gae: rewards has " + std::to_string(rewards.size()) +
                                " elements, not a multiple of seq_len " + std::to_string(seq_len));
  const std::size_t b = rewards.size() / seq_len;
  const bool bootstrap = values.size() == b * (seq_len + 1);
  if (!bootstrap) detail::require_size(fn, "values", values, b * seq_len, "[B, T] or [B, T+1] with a bootstrap column");
  detail::require_size(fn, "mask", mask, b * seq_len, "[B, T] like rewards");
  detail::require_size(fn, "advantages", advantages, b * seq_len, "[B, T] like rewards");
  detail::require_size(fn, "returns", returns, b * seq_len, "[B, T] like rewards");
  if (!(gamma >= 0 && gamma <= 1)) throw std::invalid_argument("gae: gamma must be in [0, 1], got " + std::to_string(gamma));
  if (!(lambda >= 0 && lambda <= 1))
    throw std::invalid_argument("gae: lambda must be in [0, 1], got " + std::to_string(lambda));

  const std::size_t value_stride = bootstrap ? seq_len + 1 : seq_len;
  for (std::size_t row = 0; row < b; ++row) {
    const float* r = rewards.data() + row * seq_len;
    const float* v = values.data() + row * value_stride;
    const std::uint8_t* m = mask.data() + row * seq_len;
    float* adv = advantages.data() + row * seq_len;
    float* ret = returns.data() + row * seq_len;
    double next_value = bootstrap ? v[seq_len] : 0.0;
    double next_advantage = 0;
    for (std::size_t t = seq_len; t-- > 0;) {
      if (m[t] == 0) {
        adv[t] = 0;
        ret[t] = 0;
        continue;
      }
      const double delta = r[t] + gamma * next_value - v[t];
      next_advantage = delta + gamma * lambda * next_advantage;
      next_value = v[t];
      adv[t] = static_cast<float>(next_advantage);
      ret[t] = static_cast<float>(next_advantage + v[t]);
    }
  }
}

void whiten(std::span<float> advantages, std::span<const std::uint8_t> mask, double eps) {
  detail::require_size("whiten", "mask", mask, advantages.size(), "one per advantage");
  if (!(eps >= 0)) throw std::invalid_argument("whiten: eps must be >= 0, got " + std::to_string(eps));
  const std::size_t n = count_unmasked("whiten", mask);
  if (n < 2) throw std::invalid_argument("whiten: needs at least 2 unmasked advantages for an unbiased variance, got 1");
  double sum = 0;
  for (std::size_t i = 0; i < advantages.size(); ++i)
    if (mask[i]) sum += advantages[i];
  const double mean = sum / static_cast<double>(n);
  double squares = 0;
  for (std::size_t i = 0; i < advantages.size(); ++i)
    if (mask[i]) squares += (advantages[i] - mean) * (advantages[i] - mean);
  const double scale = 1.0 / std::sqrt(squares / static_cast<double>(n - 1) + eps);
  for (std::size_t i = 0; i < advantages.size(); ++i)
    advantages[i] = mask[i] ? static_cast<float>((advantages[i] - mean) * scale) : 0.0f;
}

PolicyLossStats ppo_policy_loss(std::span<const float> logp_new, std::span<const float> logp_old,
                                std::span<const float> advantages, std::span<const std::uint8_t> mask,
                                double clip_eps, std::span<float> d_logp_new) {
  const char* fn = "ppo_policy_loss";
  const std::size_t size = logp_new.size();
  detail::require_size(fn, "logp_old", logp_old, size, "one per logp_new token");
  detail::require_size(fn, "advantages", advantages, size, "one per logp_new token");
  detail::require_size(fn, "mask", mask, size, "one per logp_new token");
  require_optional(fn, "d_logp_new", d_logp_new, size);
  require_clip(fn, clip_eps);
  const double inv_n = 1.0 / static_cast<double>(count_unmasked(fn, mask));

  PolicyLossStats stats;
  for (std::size_t i = 0; i < size; ++i) {
    if (!mask[i]) {
      if (!d_logp_new.empty()) d_logp_new[i] = 0;
      continue;
    }
    const double log_ratio = static_cast<double>(logp_new[i]) - static_cast<double>(logp_old[i]);
    const Surrogate s = clipped_surrogate(log_ratio, advantages[i], clip_eps);
    stats.loss += s.loss;
    stats.clip_fraction += s.clipped ? 1.0 : 0.0;
    stats.approx_kl += std::expm1(log_ratio) - log_ratio;
    if (!d_logp_new.empty()) d_logp_new[i] = static_cast<float>(s.d_logratio * inv_n);
  }
  stats.loss *= inv_n;
  stats.clip_fraction *= inv_n;
  stats.approx_kl *= inv_n;
  return stats;
}

ValueLossStats ppo_value_loss(std::span<const float> values_new, std::span<const float> values_old,
                              std::span<const float> returns, std::span<const std::uint8_t> mask, double clip_eps,
                              std::span<float> d_values) {
  const char* fn = "ppo_value_loss";
  const std::size_t size = values_new.size();
  detail::require_size(fn, "values_old", values_old, size, "one per values_new token");
  detail::require_size(fn, "returns", returns, size, "one per values_new token");
  detail::require_size(fn, "mask", mask, size, "one per values_new token");
  require_optional(fn, "d_values", d_values, size);
  require_clip(fn, clip_eps);
  const double inv_n = 1.0 / static_cast<double>(count_unmasked(fn, mask));

  ValueLossStats stats;
  for (std::size_t i = 0; i < size; ++i) {
    if (!mask[i]) {
      if (!d_values.empty()) d_values[i] = 0;
      continue;
    }
    const double v = values_new[i], v_old = values_old[i], ret = returns[i];
    const double step = v - v_old;
    const double v_clipped = v_old + std::clamp(step, -clip_eps, clip_eps);
    const double err = v - ret, err_clipped = v_clipped - ret;
    double grad = 0;
    if (err_clipped * err_clipped > err * err) {
      stats.loss += 0.5 * err_clipped * err_clipped;
      stats.clip_fraction += 1.0;
      grad = std::fabs(step) <= clip_eps ? err_clipped : 0.0;
    } else {
      stats.loss += 0.5 * err * err;
      grad = err;
    }
    if (!d_values.empty()) d_values[i] = static_cast<float>(grad * inv_n);
  }
  stats.loss *= inv_n;
  stats.clip_fraction *= inv_n;
  return stats;
}

namespace {

template <typename Estimator>
void kl_estimate(const char* fn, std::span<const float> logp, std::span<const float> logp_ref, std::span<float> kl,
                 std::span<float> d_logp, Estimator estimator) {
  detail::require_size(fn, "logp_ref", logp_ref, logp.size(), "one per logp token");
  detail::require_size(fn, "kl", kl, logp.size(), "one per logp token");
  require_optional(fn, "d_logp", d_logp, logp.size());
  for (std::size_t i = 0; i < logp.size(); ++i) {
    double value = 0, grad = 0;
    estimator(static_cast<double>(logp_ref[i]) - static_cast<double>(logp[i]), value, grad);
    kl[i] = static_cast<float>(value);
    if (!d_logp.empty()) d_logp[i] = static_cast<float>(grad);
  }
}

// k3 and its derivative w.r.t. logp, in terms of x = logp_ref - logp.
void k3_of(double x, double& value, double& grad) {
  value = std::expm1(x) - x;
  grad = -std::expm1(x);
}

}  // namespace

void kl_k1(std::span<const float> logp, std::span<const float> logp_ref, std::span<float> kl,
           std::span<float> d_logp) {
  kl_estimate("kl_k1", logp, logp_ref, kl, d_logp, [](double x, double& value, double& grad) {
    value = -x;
    grad = 1.0;
  });
}

void kl_k3(std::span<const float> logp, std::span<const float> logp_ref, std::span<float> kl,
           std::span<float> d_logp) {
  kl_estimate("kl_k3", logp, logp_ref, kl, d_logp, k3_of);
}

AdaptiveKlController::AdaptiveKlController(double init_coef, double target, double horizon)
    : coef_(init_coef), target_(target), horizon_(horizon) {
  if (!(init_coef >= 0))
    throw std::invalid_argument("AdaptiveKlController: init_coef must be >= 0, got " + std::to_string(init_coef));
  detail::require_positive("AdaptiveKlController", "target", target);
  detail::require_positive("AdaptiveKlController", "horizon", horizon);
}

void AdaptiveKlController::update(double kl, std::int64_t n_steps) {
  if (!std::isfinite(kl)) throw std::invalid_argument("AdaptiveKlController::update: kl must be finite");
  if (n_steps < 0)
    throw std::invalid_argument("AdaptiveKlController::update: n_steps must be >= 0, got " + std::to_string(n_steps));
  const double proportional_error = std::clamp(kl / target_ - 1.0, -0.2, 0.2);
  coef_ *= 1.0 + proportional_error * static_cast<double>(n_steps) / horizon_;
}

void grpo_advantages(std::span<const float> rewards, std::size_t group_size, double eps,
                     std::span<float> advantages) {
  const char* fn = "grpo_advantages";
  detail::require_nonempty(fn, "rewards", rewards.size());
  if (group_size == 0 || rewards.size() % group_size != 0)
    throw std::invalid_argument("grpo_advantages: group_size " + std::to_string(group_size) +
                                " must be > 0 and divide the number of rewards " + std::to_string(rewards.size()));
  detail::require_size(fn, "advantages", advantages, rewards.size(), "one per reward");
  if (!(eps >= 0)) throw std::invalid_argument("grpo_advantages: eps must be >= 0, got " + std::to_string(eps));
  for (std::size_t start = 0; start < rewards.size(); start += group_size) {
    double sum = 0;
    for (std::size_t i = start; i < start + group_size; ++i) sum += rewards[i];
    const double mean = sum / static_cast<double>(group_size);
    double squares = 0;
    for (std::size_t i = start; i < start + group_size; ++i) squares += (rewards[i] - mean) * (rewards[i] - mean);
    const double denom = std::sqrt(squares / static_cast<double>(group_size)) + eps;
    for (std::size_t i = start; i < start + group_size; ++i) {
      const double centred = rewards[i] - mean;
      // A group of equal rewards carries no signal; eps = 0 would make it 0/0.
      advantages[i] = static_cast<float>(centred == 0 ? 0.0 : centred / denom);
    }
  }
}

GrpoLossStats grpo_loss(std::span<const float> logp_new, std::span<const float> logp_old,
                        std::span<const float> logp_ref, std::span<const float> seq_advantages,
                        std::span<const std::uint8_t> mask, double clip_eps, double beta,
                        std::span<float> d_logp_new) {
  const char* fn = "grpo_loss";
  const std::size_t size = logp_new.size();
  detail::require_nonempty(fn, "seq_advantages", seq_advantages.size());
  if (size % seq_advantages.size() != 0)
    throw std::invalid_argument("grpo_loss: logp_new has " + std::to_string(size) +
                                " elements, not a multiple of the " + std::to_string(seq_advantages.size()) +
                                " sequences in seq_advantages");
  const std::size_t seq_len = size / seq_advantages.size();
  detail::require_size(fn, "logp_old", logp_old, size, "one per logp_new token");
  detail::require_size(fn, "logp_ref", logp_ref, size, "one per logp_new token");
  detail::require_size(fn, "mask", mask, size, "one per logp_new token");
  require_optional(fn, "d_logp_new", d_logp_new, size);
  require_clip(fn, clip_eps);
  if (!(beta >= 0) || !std::isfinite(beta))
    throw std::invalid_argument("grpo_loss: beta must be finite and >= 0, got " + std::to_string(beta));
  const double inv_n = 1.0 / static_cast<double>(count_unmasked(fn, mask));

  GrpoLossStats stats;
  for (std::size_t i = 0; i < size; ++i) {
    if (!mask[i]) {
      if (!d_logp_new.empty()) d_logp_new[i] = 0;
      continue;
    }
    const double logp = logp_new[i];
    const Surrogate s = clipped_surrogate(logp - logp_old[i], seq_advantages[i / seq_len], clip_eps);
    double kl = 0, d_kl = 0;
    k3_of(static_cast<double>(logp_ref[i]) - logp, kl, d_kl);
    stats.loss += s.loss + beta * kl;
    stats.kl += kl;
    stats.clip_fraction += s.clipped ? 1.0 : 0.0;
    if (!d_logp_new.empty()) d_logp_new[i] = static_cast<float>((s.d_logratio + beta * d_kl) * inv_n);
  }
  stats.loss *= inv_n;
  stats.kl *= inv_n;
  stats.clip_fraction *= inv_n;
  return stats;
}

}  // namespace loom::align
