#include "core/model/lora_config.h"

#include <algorithm>
#include <stdexcept>

namespace loom::model {

namespace {

constexpr const char* kTargetNames[kLoraTargets] = {"attn.qkv", "attn.out", "mlp.gate", "mlp.up", "mlp.down"};

std::string valid_targets() {
  std::string list;
  for (const char* name : kTargetNames) list += (list.empty() ? "" : ", ") + std::string(name);
  return list;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

const char* lora_target_name(LoraTarget target) { return kTargetNames[static_cast<int>(target)]; }

LoraTarget parse_lora_target(const std::string& text) {
  for (int i = 0; i < kLoraTargets; ++i) {
    if (text == kTargetNames[i]) return static_cast<LoraTarget>(i);
  }
  throw std::invalid_argument("LoRA target '" + text + "' is not a linear of a block; valid targets: " +
                              valid_targets());
}

bool lora_column_parallel(LoraTarget target) {
  return target == LoraTarget::Qkv || target == LoraTarget::Gate || target == LoraTarget::Up;
}

bool LoraConfig::has(LoraTarget target) const {
  if (!enabled()) return false;
  const std::string name = lora_target_name(target);
  return std::find(targets.begin(), targets.end(), name) != targets.end();
}

void LoraConfig::validate() const {
  if (rank < 0) throw std::invalid_argument("lora.rank must be >= 0 (0 = off), got " + std::to_string(rank));
  if (!(alpha > 0.0f)) throw std::invalid_argument("lora.alpha must be positive, got " + std::to_string(alpha));
  if (!(dropout >= 0.0f && dropout < 1.0f)) {
    throw std::invalid_argument("lora.dropout must be in [0, 1), got " + std::to_string(dropout));
  }
  for (std::size_t i = 0; i < targets.size(); ++i) {
    try {
      parse_lora_target(targets[i]);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("lora.targets: ") + e.what());
    }
    if (std::find(targets.begin(), targets.begin() + static_cast<std::ptrdiff_t>(i), targets[i]) !=
        targets.begin() + static_cast<std::ptrdiff_t>(i)) {
      throw std::invalid_argument("lora.targets names '" + targets[i] + "' twice");
    }
  }
  if (enabled() && targets.empty()) {
    throw std::invalid_argument("lora.targets is empty but lora.rank = " + std::to_string(rank) +
                                "; name at least one of " + valid_targets());
  }
}

bool is_lora_parameter(const std::string& name) { return ends_with(name, ".lora_a") || ends_with(name, ".lora_b"); }

}  // namespace loom::model
