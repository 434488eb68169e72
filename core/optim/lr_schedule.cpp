#include "core/optim/lr_schedule.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace loom::optim {

const char* decay_kind_name(DecayKind kind) {
  switch (kind) {
    case DecayKind::Cosine: return "cosine";
    case DecayKind::Linear: return "linear";
    case DecayKind::Constant: return "constant";
  }
  return "?";
}

DecayKind parse_decay_kind(const std::string& text) {
  if (text == "cosine") return DecayKind::Cosine;
  if (text == "linear") return DecayKind::Linear;
  if (text == "constant") return DecayKind::Constant;
  throw std::invalid_argument("lr decay '" + text + "' is not known; expected 'cosine', 'linear' or 'constant'");
}

void LrSchedule::validate() const {
  auto fail = [](const std::string& what) { throw std::invalid_argument("lr schedule: " + what); };
  if (!(max_lr >= 0.0f) || !std::isfinite(max_lr)) fail("max_lr must be a finite number >= 0");
  if (!(min_lr >= 0.0f) || min_lr > max_lr) fail("min_lr must lie in [0, max_lr]");
  if (warmup_steps < 0) fail("warmup_steps must be >= 0, got " + std::to_string(warmup_steps));
  if (total_steps < 1) fail("total_steps must be >= 1, got " + std::to_string(total_steps));
  if (warmup_steps > total_steps) {
    fail("warmup_steps (" + std::to_string(warmup_steps) + ") exceeds total_steps (" +
         std::to_string(total_steps) + ")");
  }
}

float LrSchedule::at(std::int64_t step) const {
  if (step < warmup_steps) {
    return max_lr * static_cast<float>(static_cast<double>(step + 1) / static_cast<double>(warmup_steps));
  }
  if (decay == DecayKind::Constant) return max_lr;
  if (step > total_steps || total_steps == warmup_steps) return min_lr;
  const double ratio =
      static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
  const double span = static_cast<double>(max_lr) - static_cast<double>(min_lr);
  if (decay == DecayKind::Linear) return static_cast<float>(static_cast<double>(max_lr) - ratio * span);
  return static_cast<float>(static_cast<double>(min_lr) + 0.5 * (1.0 + std::cos(std::numbers::pi * ratio)) * span);
}

}  // namespace loom::optim
