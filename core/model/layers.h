// Thin parameter bundles for the two layer kinds a block is made of, binding a weight (and
// optional bias) with its gradient views into a ParameterSet, plus their forward/backward
// through the Backend. They own nothing: every Tensor is a view into the ParameterSet's
// flat buffers (or undefined when the layer has no bias).
//
// Threads: as the Backend (one caller at a time).
#pragma once

#include <string>

#include "core/backend.h"
#include "core/model/model_config.h"
#include "core/model/parameter_set.h"

namespace loom::model {

struct Linear {
  Tensor weight, bias;    // [out, in], [out] (bias undefined when absent)
  Tensor dweight, dbias;  // same shapes, in the gradient buffer

  // Binds `<prefix>.weight` and, when the set has it, `<prefix>.bias`.
  static Linear bind(const ParameterSet& params, const std::string& prefix);

  void forward(Backend& backend, const Tensor& x, Tensor& y) const { backend.linear_forward(x, weight, bias, y); }
  // dx += dy·W (dx may be undefined); weight/bias gradients accumulate.
  void backward(Backend& backend, const Tensor& dy, const Tensor& x, Tensor& dx) {
    backend.linear_backward(dy, x, weight, dx, dweight, dbias);
  }
  // dx = dy·W, OVERWRITING dx (a GEMM with beta = 0), so scratch gradients need no clearing
  // pass first; weight/bias gradients still accumulate.
  void backward_overwrite(Backend& backend, const Tensor& dy, const Tensor& x, Tensor& dx);
};

// LayerNorm (GPT-2: weight and bias) or RMSNorm (Llama: weight only), by family.
struct Norm {
  Family family = Family::GPT2;
  float eps = 1e-5f;
  Tensor weight, bias;    // [C]
  Tensor dweight, dbias;  // [C]

  static Norm bind(const ParameterSet& params, const std::string& prefix, const ModelConfig& config);

  // y = norm(x); mean is only written for LayerNorm (undefined is fine for RMSNorm).
  void forward(Backend& backend, const Tensor& x, Tensor& y, Tensor& mean, Tensor& rstd) const;
  // dx += ∂L/∂x; weight/bias gradients accumulate.
  void backward(Backend& backend, const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                Tensor& dx);
};

}  // namespace loom::model
