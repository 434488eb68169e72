#include "core/align/losses.h"

#include <stdexcept>
#include <string>

#include "core/align/numerics.h"

namespace loom::align {

using detail::log_sigmoid;
using detail::sigmoid;

RmStats rm_loss(std::span<const float> r_chosen, std::span<const float> r_rejected, float margin,
                std::span<float> d_chosen, std::span<float> d_rejected) {
  const std::size_t b = r_chosen.size();
  detail::require_nonempty("rm_loss", "r_chosen", b);
  detail::require_size("rm_loss", "r_rejected", r_rejected, b, "one per r_chosen");
  detail::require_size("rm_loss", "d_chosen", d_chosen, b, "one per r_chosen");
  detail::require_size("rm_loss", "d_rejected", d_rejected, b, "one per r_chosen");
  if (!std::isfinite(margin)) throw std::invalid_argument("rm_loss: margin must be finite");

  const double inv_b = 1.0 / static_cast<double>(b);
  double loss = 0, correct = 0, margin_sum = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const double diff = static_cast<double>(r_chosen[i]) - static_cast<double>(r_rejected[i]);
    const double z = diff - margin;
    loss -= log_sigmoid(z);
    correct += r_chosen[i] > r_rejected[i] ? 1.0 : 0.0;
    margin_sum += diff;
    const double g = -sigmoid(-z) * inv_b;
    d_chosen[i] = static_cast<float>(g);
    d_rejected[i] = static_cast<float>(-g);
  }
  return {loss * inv_b, correct * inv_b, margin_sum * inv_b};
}

PreferenceLoss parse_preference_loss(std::string_view name) {
  if (name == "sigmoid") return PreferenceLoss::sigmoid;
  if (name == "ipo") return PreferenceLoss::ipo;
  if (name == "cdpo") return PreferenceLoss::cdpo;
  if (name == "simpo") return PreferenceLoss::simpo;
  throw std::invalid_argument("unknown preference loss '" + std::string(name) +
                              "', expected one of: sigmoid, ipo, cdpo, simpo");
}

std::string_view preference_loss_name(PreferenceLoss kind) {
  switch (kind) {
    case PreferenceLoss::sigmoid: return "sigmoid";
    case PreferenceLoss::ipo: return "ipo";
    case PreferenceLoss::cdpo: return "cdpo";
    case PreferenceLoss::simpo: return "simpo";
  }
  throw std::invalid_argument("preference_loss_name: not a PreferenceLoss value");
}

namespace {

void check_preference_arguments(PreferenceLoss kind, double beta, const PreferenceParams& params,
                                const PreferenceInputs& in, const PreferenceGrads& grads) {
  const char* fn = "preference_loss";
  const std::size_t b = in.policy_chosen.size();
  detail::require_nonempty(fn, "policy_chosen", b);
  detail::require_positive(fn, "beta", beta);
  if (!std::isfinite(beta)) throw std::invalid_argument("preference_loss: beta must be finite");
  detail::require_size(fn, "policy_rejected", in.policy_rejected, b, "one per pair");
  detail::require_size(fn, "grads.policy_chosen", grads.policy_chosen, b, "one per pair");
  detail::require_size(fn, "grads.policy_rejected", grads.policy_rejected, b, "one per pair");
  if (kind == PreferenceLoss::simpo) {
    detail::require_size(fn, "length_chosen", in.length_chosen, b, "one per pair, needed by simpo");
    detail::require_size(fn, "length_rejected", in.length_rejected, b, "one per pair, needed by simpo");
    for (std::size_t i = 0; i < b; ++i) {
      if (in.length_chosen[i] <= 0 || in.length_rejected[i] <= 0)
        throw std::invalid_argument("preference_loss: length_chosen/length_rejected of pair " + std::to_string(i) +
                                    " must be > 0 tokens, got " + std::to_string(in.length_chosen[i]) + "/" +
                                    std::to_string(in.length_rejected[i]));
    }
    if (!std::isfinite(params.simpo_gamma)) throw std::invalid_argument("preference_loss: simpo_gamma must be finite");
  } else {
    detail::require_size(fn, "reference_chosen", in.reference_chosen, b, "one per pair");
    detail::require_size(fn, "reference_rejected", in.reference_rejected, b, "one per pair");
  }
  if (kind == PreferenceLoss::cdpo && !(params.label_smoothing >= 0 && params.label_smoothing <= 0.5))
    throw std::invalid_argument("preference_loss: label_smoothing must be in [0, 0.5] for cdpo, got " +
                                std::to_string(params.label_smoothing));
}

}  // namespace

PreferenceStats preference_loss(PreferenceLoss kind, double beta, const PreferenceParams& params,
                                const PreferenceInputs& in, const PreferenceGrads& grads) {
  check_preference_arguments(kind, beta, params, in, grads);
  const std::size_t b = in.policy_chosen.size();
  const double inv_b = 1.0 / static_cast<double>(b);
  const double eps = params.label_smoothing;

  PreferenceStats stats;
  double correct = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const double pc = in.policy_chosen[i], pr = in.policy_rejected[i];
    double reward_c = 0, reward_r = 0, loss = 0, d_pc = 0, d_pr = 0;
    if (kind == PreferenceLoss::simpo) {
      const double lc = in.length_chosen[i], lr = in.length_rejected[i];
      reward_c = beta * pc / lc;
      reward_r = beta * pr / lr;
      const double z = reward_c - reward_r - params.simpo_gamma;
      loss = -log_sigmoid(z);
      const double dz = -sigmoid(-z);
      d_pc = dz * beta / lc;
      d_pr = -dz * beta / lr;
    } else {
      const double chosen_ratio = pc - static_cast<double>(in.reference_chosen[i]);
      const double rejected_ratio = pr - static_cast<double>(in.reference_rejected[i]);
      reward_c = beta * chosen_ratio;
      reward_r = beta * rejected_ratio;
      const double h = chosen_ratio - rejected_ratio;
      double dh = 0;
      switch (kind) {
        case PreferenceLoss::sigmoid:
          loss = -log_sigmoid(beta * h);
          dh = -beta * sigmoid(-beta * h);
          break;
        case PreferenceLoss::ipo: {
          const double residual = h - 1.0 / (2.0 * beta);
          loss = residual * residual;
          dh = 2.0 * residual;
          break;
        }
        case PreferenceLoss::cdpo:
          loss = -(1.0 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h);
          dh = -beta * ((1.0 - eps) * sigmoid(-beta * h) - eps * sigmoid(beta * h));
          break;
        case PreferenceLoss::simpo: break;  // handled above
      }
      d_pc = dh;
      d_pr = -dh;
    }
    stats.loss += loss;
    stats.reward_chosen += reward_c;
    stats.reward_rejected += reward_r;
    stats.reward_margin += reward_c - reward_r;
    correct += reward_c > reward_r ? 1.0 : 0.0;
    grads.policy_chosen[i] = static_cast<float>(d_pc * inv_b);
    grads.policy_rejected[i] = static_cast<float>(d_pr * inv_b);
  }
  stats.loss *= inv_b;
  stats.reward_chosen *= inv_b;
  stats.reward_rejected *= inv_b;
  stats.reward_margin *= inv_b;
  stats.accuracy = correct * inv_b;
  return stats;
}

}  // namespace loom::align
