// AdamW over a ParameterSet's flat buffers (torch.optim.AdamW semantics, decoupled weight
// decay), with two groups: parameters flagged `decay` get the configured weight decay,
// norms and biases get none.
//
// State: the first and second moments are flat f32 buffers with the same layout as the
// parameters, restricted to a contiguous element range [begin, end) of the flat buffer
// (the whole buffer by default). ZeRO-1 gives each data-parallel rank one range; the
// update only touches that range and the caller all-gathers the parameters after.
// Consecutive entries of the same group are merged into spans, so a step is a handful of
// Backend::adamw_update calls, not one per tensor (padding between entries is zero in
// values and gradients and stays zero under the update).
//
// Mixed precision: the update reads the compute-dtype (bf16) gradients and writes the f32
// master values, then rounds its range of them into the model's compute copy.
//
// Ownership: holds a reference to the ParameterSet (which must outlive it) and owns the
// moment buffers. Threads: one owner thread. Ranks: nothing here communicates.
#pragma once

#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/model/parameter_set.h"

namespace loom::optim {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;

  // Throws std::invalid_argument naming the field that is out of range.
  void validate() const;
};

class AdamW {
 public:
  AdamW(model::ParameterSet& params, const AdamWConfig& config, Backend& backend);
  AdamW(model::ParameterSet& params, const AdamWConfig& config, Backend& backend, std::int64_t begin,
        std::int64_t end);

  // One update at learning rate lr. Gradients are multiplied by grad_scale on the fly (a
  // clipping scale, 1/accumulation count): no separate pass over them.
  void step(float lr, float grad_scale = 1.0f);

  std::int64_t steps_taken() const { return steps_; }
  // For resuming from a checkpoint (bias correction depends on it).
  void set_steps_taken(std::int64_t steps) { steps_ = steps; }

  std::int64_t range_begin() const { return begin_; }
  std::int64_t range_end() const { return end_; }
  Tensor& exp_avg() { return m_; }     // [end - begin] f32
  Tensor& exp_avg_sq() { return v_; }  // [end - begin] f32
  const AdamWConfig& config() const { return config_; }

 private:
  struct Span {
    std::int64_t begin = 0, end = 0;  // in flat-buffer elements
    bool decay = false;
  };

  model::ParameterSet& params_;
  AdamWConfig config_;
  Backend& backend_;
  std::int64_t begin_ = 0, end_ = 0;
  std::vector<Span> spans_;
  Tensor m_, v_;
  std::int64_t steps_ = 0;
};

}  // namespace loom::optim
