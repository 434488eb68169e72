#include "core/optim/grad_clip.h"

#include <cmath>

namespace loom::optim {

float clip_scale(double norm, float max_norm) {
  if (max_norm <= 0.0f) return 1.0f;
  const double coefficient = static_cast<double>(max_norm) / (norm + 1e-6);
  if (std::isnan(coefficient)) return static_cast<float>(coefficient);
  return coefficient < 1.0 ? static_cast<float>(coefficient) : 1.0f;
}

double grad_norm(Backend& backend, const Tensor& grads) { return std::sqrt(backend.sum_squares(grads)); }

ClipResult clip_grad_norm(Backend& backend, Tensor& grads, float max_norm) {
  ClipResult result;
  result.norm = grad_norm(backend, grads);
  result.scale = clip_scale(result.norm, max_norm);
  if (result.scale != 1.0f) backend.scale_inplace(grads, result.scale);
  return result;
}

}  // namespace loom::optim
