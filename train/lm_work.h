// LmWork: the language-modelling loss as pipeline StageWork, shared by pre-training, SFT and
// evaluation. The batch [rows, T] this data-parallel rank runs is cut into micro-batches of
// micro_rows; the first stage embeds their ids, the last stage runs the (vocab-parallel) LM
// head and cross-entropy and, when training, its backward with the gradient scale dloss per
// counted token (1 / the global batch's target tokens gives the global mean).
//
// Ownership: keeps the batch tensors (shared storage) for the step. Threads: one.
#pragma once

#include <cstdint>

#include "core/parallel/pipeline.h"

namespace loom::train {

class LmWork final : public parallel::StageWork {
 public:
  LmWork(Tensor ids, Tensor targets, std::int64_t micro_rows, float dloss)
      : ids_(std::move(ids)), targets_(std::move(targets)), micro_rows_(micro_rows), dloss_(dloss) {}

  int micro_batches() const { return static_cast<int>(ids_.dim(0) / micro_rows_); }

  Tensor input_ids(int micro) override { return rows(ids_, micro); }
  const Tensor& head_forward_backward(model::Transformer& model, const Tensor& hidden, int micro, int slot) override {
    head_forward(model, hidden, micro, slot);
    return model.lm_head_backward(dloss_, slot);
  }
  void head_forward(model::Transformer& model, const Tensor& hidden, int micro, int slot) override {
    const model::LossSum part = model.lm_head_forward(hidden, rows(targets_, micro), slot);
    loss_.sum += part.sum;
    loss_.count += part.count;
  }

  // Σ loss and counted tokens over this rank's micro-batches (non-zero on the last stage only).
  const model::LossSum& loss() const { return loss_; }

 private:
  Tensor rows(const Tensor& t, int micro) const {
    return t.slice_rows(static_cast<std::int64_t>(micro) * micro_rows_, static_cast<std::int64_t>(micro + 1) * micro_rows_);
  }

  Tensor ids_, targets_;
  std::int64_t micro_rows_;
  float dloss_;
  model::LossSum loss_;
};

}  // namespace loom::train
