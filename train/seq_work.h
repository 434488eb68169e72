// Pipeline StageWork for the alignment trainers: the last stage hands a trainer callback the
// per-token quantities of each micro-batch, and the callback returns their gradients.
//
//   TokenLogpWork (LM head): logp[t] = log p(targets[t] | ids[..t]) over the whole
//     vocabulary (0 where targets[t] < 0); the callback writes dlogp[t] = ∂L/∂logp[t] when
//     training (dlogp is empty in a forward-only pass). DPO, PPO's actor and GRPO use it.
//   ValueWork (scalar head): values[t] of every position; the callback writes dvalues[t].
//     The reward model and PPO's critic use it.
//
// Arrays are [micro_rows, T] row-major; `micro` says which rows of this rank's batch
// (rows micro·micro_rows …). The callback runs on the last stage only (every tp rank of it,
// with identical inputs), so what it computes lives there; sum_over_last_stages
// (train/loop.h) collects numbers from it.
//
// Ownership: keeps the batch tensors (shared storage) for the step. Threads: one.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/parallel/pipeline.h"
#include "core/transfer.h"
#include "train/engine.h"

namespace loom::train {

class RowsWork : public parallel::StageWork {
 public:
  RowsWork(Tensor ids, Tensor targets, std::int64_t micro_rows)
      : ids_(std::move(ids)), targets_(std::move(targets)), micro_rows_(micro_rows) {}
  int micro_batches() const { return static_cast<int>(ids_.dim(0) / micro_rows_); }
  std::int64_t micro_rows() const { return micro_rows_; }
  std::int64_t seq() const { return ids_.dim(1); }
  Tensor input_ids(int micro) override { return rows(ids_, micro); }

 protected:
  Tensor rows(const Tensor& t, int micro) const {
    return t.slice_rows(static_cast<std::int64_t>(micro) * micro_rows_, static_cast<std::int64_t>(micro + 1) * micro_rows_);
  }
  Tensor ids_, targets_;
  std::int64_t micro_rows_;
};

class TokenLogpWork final : public RowsWork {
 public:
  // (micro, logp, dlogp): dlogp is empty when the pass is forward-only.
  using Callback = std::function<void(int, std::span<const float>, std::span<float>)>;

  TokenLogpWork(Tensor ids, Tensor targets, std::int64_t micro_rows, Callback callback)
      : RowsWork(std::move(ids), std::move(targets), micro_rows), callback_(std::move(callback)) {}

  const Tensor& head_forward_backward(model::Transformer& model, const Tensor& hidden, int micro, int slot) override {
    const std::int64_t n = forward(model, hidden, micro, slot);
    std::vector<float> dlogp(static_cast<std::size_t>(n), 0.0f);
    callback_(micro, logp_, dlogp);
    // loss_t = -logp_t, so ∂L/∂loss_t = -∂L/∂logp_t.
    for (std::int64_t i = 0; i < n; ++i) dloss_.data<float>()[i] = -dlogp[static_cast<std::size_t>(i)];
    return model.lm_head_backward(to_backend(model.backend(), dloss_, dloss_device_), slot);
  }
  void head_forward(model::Transformer& model, const Tensor& hidden, int micro, int slot) override {
    forward(model, hidden, micro, slot);
    callback_(micro, logp_, {});
  }

 private:
  std::int64_t forward(model::Transformer& model, const Tensor& hidden, int micro, int slot) {
    model.lm_head_forward(hidden, rows(targets_, micro), slot);
    const Tensor device_losses = model.lm_token_losses();
    const Tensor& losses = to_host(model.backend(), device_losses, losses_host_);
    const std::int64_t n = losses.numel();
    logp_.resize(static_cast<std::size_t>(n));
    const float* l = losses.data<float>();
    for (std::int64_t i = 0; i < n; ++i) logp_[static_cast<std::size_t>(i)] = -l[i];
    if (!dloss_.defined() || dloss_.numel() != n) dloss_ = Tensor::empty({n}, DType::F32);
    return n;
  }

  Callback callback_;
  std::vector<float> logp_;
  Tensor dloss_;                       // host; dloss_device_ its copy on a GPU backend
  Tensor dloss_device_, losses_host_;  // unused on the CPU backend
};

class ValueWork final : public RowsWork {
 public:
  // (micro, values, dvalues): dvalues is empty when the pass is forward-only.
  using Callback = std::function<void(int, std::span<const float>, std::span<float>)>;

  ValueWork(Tensor ids, std::int64_t micro_rows, Callback callback)
      : RowsWork(ids, ids, micro_rows), callback_(std::move(callback)) {}

  const Tensor& head_forward_backward(model::Transformer& model, const Tensor& hidden, int micro, int slot) override {
    const Tensor& values = to_host(model.backend(), model.scalar_head_forward(hidden, slot), values_host_);
    const std::int64_t n = values.numel();
    if (!dvalues_.defined() || dvalues_.numel() != n) dvalues_ = Tensor::empty({values.dim(0), values.dim(1)}, DType::F32);
    float* d = dvalues_.data<float>();
    std::fill(d, d + n, 0.0f);
    callback_(micro, std::span<const float>(values.data<float>(), static_cast<std::size_t>(n)),
              std::span<float>(d, static_cast<std::size_t>(n)));
    return model.scalar_head_backward(to_backend(model.backend(), dvalues_, dvalues_device_), slot);
  }
  void head_forward(model::Transformer& model, const Tensor& hidden, int micro, int slot) override {
    const Tensor& values = to_host(model.backend(), model.scalar_head_forward(hidden, slot), values_host_);
    callback_(micro, std::span<const float>(values.data<float>(), static_cast<std::size_t>(values.numel())), {});
  }

 private:
  Callback callback_;
  Tensor dvalues_;                        // host; dvalues_device_ its copy on a GPU backend
  Tensor dvalues_device_, values_host_;  // unused on the CPU backend
};

// Forward-only passes of a (frozen or sampling-time) model over rows ids [rows, T] in
// micro-batches of micro_rows: the per-token log-probs of `targets`, or the values, as one
// [rows · T] array, filled on the last stage (zeros elsewhere). Collective over the replica.
inline std::vector<float> token_logps(Engine& engine, const Tensor& ids, const Tensor& targets,
                                      std::int64_t micro_rows) {
  std::vector<float> out(static_cast<std::size_t>(ids.numel()), 0.0f);
  TokenLogpWork work(ids, targets, micro_rows, [&](int micro, std::span<const float> logp, std::span<float>) {
    std::copy(logp.begin(), logp.end(), out.begin() + static_cast<std::ptrdiff_t>(micro * micro_rows * ids.dim(1)));
  });
  engine.forward_only(work, work.micro_batches(), micro_rows, ids.dim(1));
  return out;
}

inline std::vector<float> token_values(Engine& engine, const Tensor& ids, std::int64_t micro_rows) {
  std::vector<float> out(static_cast<std::size_t>(ids.numel()), 0.0f);
  ValueWork work(ids, micro_rows, [&](int micro, std::span<const float> values, std::span<float>) {
    std::copy(values.begin(), values.end(), out.begin() + static_cast<std::ptrdiff_t>(micro * micro_rows * ids.dim(1)));
  });
  engine.forward_only(work, work.micro_batches(), micro_rows, ids.dim(1));
  return out;
}

}  // namespace loom::train
