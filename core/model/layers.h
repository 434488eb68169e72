// Thin parameter bundles for the layer kinds a block is made of, binding a weight (and
// optional bias) with its gradient views into a ParameterSet, plus their forward/backward
// through the Backend: Linear, Norm and the LoRA adapter that may sit on a Linear. They own
// nothing: every Tensor is a view into the ParameterSet's flat buffers (or undefined when
// the layer has no bias, or its gradient is not wanted: a frozen layer).
//
// Threads: as the Backend (one caller at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/model/lora_config.h"
#include "core/model/model_config.h"
#include "core/model/parameter_set.h"

namespace loom::model {

struct Linear {
  Tensor weight, bias;    // [out, in], [out] (bias undefined when absent)
  Tensor dweight, dbias;  // same shapes, in the gradient buffer

  // Binds `<prefix>.weight` and, when the set has it, `<prefix>.bias`.
  static Linear bind(const ParameterSet& params, const std::string& prefix);

  // Set by a loom-quantize model: the forward runs the quantized kernel instead of `weight`
  // (which then holds the dequantized values, for inspection and gathering only).
  std::shared_ptr<const quant::QuantizedLinear> quantized;

  // y = x·Wᵀ (+ bias unless with_bias is false: a row-parallel slice adds it on tp rank 0 only).
  void forward(Backend& backend, const Tensor& x, Tensor& y, bool with_bias = true) const {
    const Tensor b = with_bias ? bias : Tensor();
    if (quantized) {
      backend.quantized_linear_forward(x, *quantized, b, y);
    } else {
      backend.linear_forward(x, weight, b, y);
    }
  }
  // dx += dy·W (dx may be undefined); weight/bias gradients accumulate.
  void backward(Backend& backend, const Tensor& dy, const Tensor& x, Tensor& dx) {
    backend.linear_backward(dy, x, weight, dx, dweight, dbias);
  }
  // dx = dy·W, OVERWRITING dx (a GEMM with beta = 0), so scratch gradients need no clearing
  // pass first; weight/bias gradients still accumulate.
  void backward_overwrite(Backend& backend, const Tensor& dy, const Tensor& x, Tensor& dx);
  // No weight/bias gradients from now on (LoRA freezes the base model); dx still flows.
  void freeze() { dweight = Tensor(), dbias = Tensor(); }
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
  void freeze() { dweight = Tensor(), dbias = Tensor(); }
};

// The dropout of one micro-batch's LoRA inputs: p = 0 when off (evaluation, or no dropout
// configured). key mixes the seed and the optimizer step; token0 is the global index
// (global batch row · T) of the micro-batch's first token. Forward and backward of a
// micro-batch must see the same value.
struct LoraDropout {
  float p = 0.0f;
  std::uint64_t key = 0;
  std::int64_t token0 = 0;
  bool active() const { return p > 0.0f; }
};

// A LoRA adapter on one Linear (lora_config.h): adds scale · B (A · dropout(x)) to the
// linear's output. Under tensor parallelism A and B are this rank's slices
// (parameter_layout.h): for a column-parallel target the output is this rank's rows; for a
// row-parallel one the update is a partial sum like the linear's, added before the tp sum.
struct LoraAdapter {
  Tensor a, b;    // [r, in], [out, r]
  Tensor da, db;  // same shapes, in the gradient buffer
  float scale = 0.0f;               // alpha / r
  std::uint64_t salt = 0;           // (layer, target), mixed into the dropout key
  std::int64_t in_features = 0;     // the input's global width
  std::int64_t in_offset = 0;       // global index of this slice's first input column
  bool input_split = false;         // row-parallel target: the input is a tp rank's columns

  bool defined() const { return a.defined(); }

  // Binds "<prefix>.lora_a" / ".lora_b" of `layer`'s `target`, or returns an undefined
  // adapter when the set has none.
  static LoraAdapter bind(const ParameterSet& params, const std::string& prefix, LoraTarget target,
                          std::int64_t layer, float scale);
  // Which tp slice of a row-parallel input this rank holds (for the dropout mask).
  void set_tp_rank(int tp_rank) { in_offset = input_split ? static_cast<std::int64_t>(tp_rank) * a.dim(1) : 0; }

  // x [N, in], y [N, out] (leading dims flattened): y += scale · B · u with u = A · dropout(x)
  // saved in u [N, r]; with dropout active, dropout(x) is saved in x_dropped [N, in].
  void forward(Backend& backend, const Tensor& x, Tensor& y, Tensor& u, Tensor& x_dropped,
               const LoraDropout& dropout) const;
  // dB += scale · dyᵀ u, dA += duᵀ · dropout(x) and dx += dropout'(du · A) with du = scale · dy · B
  // (dx may be undefined). du [N, r] and dx_scratch (>= N·in elements, dropout only) are scratch.
  void backward(Backend& backend, const Tensor& dy, const Tensor& x, const Tensor& u, const Tensor& x_dropped,
                Tensor& dx, Tensor& du, Tensor& dx_scratch, const LoraDropout& dropout);

 private:
  Backend::DropoutArgs dropout_args(const LoraDropout& dropout) const;
};

}  // namespace loom::model
