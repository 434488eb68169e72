// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_ semantics).
//
// The norm is taken over a flat gradient buffer with Backend::sum_squares (f64 accumulate).
// Distributed callers sum the squares over ranks themselves and use clip_scale(); the scale
// can be applied in place (clip_grad_norm) or folded into AdamW's grad_scale to save a pass.
//
// Threads: as the Backend. Ranks: nothing here communicates.
#pragma once

#include "core/backend.h"

namespace loom::optim {

struct ClipResult {
  double norm = 0.0;   // the norm BEFORE clipping
  float scale = 1.0f;  // what the gradients were (or should be) multiplied by
};

// min(1, max_norm / (norm + 1e-6)) as PyTorch computes it; 1 when max_norm <= 0 (clipping
// off). A NaN norm gives a NaN scale and an infinite one 0: callers check the norm and skip
// the step rather than trust either.
float clip_scale(double norm, float max_norm);

double grad_norm(Backend& backend, const Tensor& grads);

// Computes the norm of `grads`, scales them in place when the norm exceeds max_norm.
ClipResult clip_grad_norm(Backend& backend, Tensor& grads, float max_norm);

}  // namespace loom::optim
