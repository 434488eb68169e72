// Learning-rate schedule: linear warmup from max_lr/warmup_steps to max_lr, then a decay
// to min_lr over the remaining steps (cosine, linear, or none), min_lr after that.
//
//   step < warmup:            max_lr · (step + 1) / warmup          (never 0 on step 0)
//   warmup <= step <= total:  r = (step - warmup) / (total - warmup)
//                             cosine: min + ½(1 + cos πr)(max − min)
//                             linear: max − r(max − min)
//                             constant: max
//   step > total:             min_lr (constant: max_lr)
//
// `step` is the 0-based optimizer step about to be taken. A plain value: thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace loom::optim {

enum class DecayKind { Cosine, Linear, Constant };

const char* decay_kind_name(DecayKind kind);
// "cosine", "linear" or "constant"; throws std::invalid_argument naming the accepted values.
DecayKind parse_decay_kind(const std::string& text);

struct LrSchedule {
  float max_lr = 6e-4f;
  float min_lr = 6e-5f;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;  // warmup included
  DecayKind decay = DecayKind::Cosine;

  // Throws std::invalid_argument naming the field that is out of range.
  void validate() const;
  float at(std::int64_t step) const;
};

}  // namespace loom::optim
