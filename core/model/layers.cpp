#include "core/model/layers.h"

#include "core/mix64.h"

namespace loom::model {

Linear Linear::bind(const ParameterSet& params, const std::string& prefix) {
  Linear l;
  l.weight = params.compute_value(prefix + ".weight");
  l.dweight = params.grad(prefix + ".weight");
  if (const ParameterEntry* b = params.find(prefix + ".bias")) {
    l.bias = params.compute_value(*b);
    l.dbias = params.grad(*b);
  }
  return l;
}

void Linear::backward_overwrite(Backend& backend, const Tensor& dy, const Tensor& x, Tensor& dx) {
  backend.matmul(dy, false, weight, false, dx, 1.0f, 0.0f);
  Tensor no_dx;
  backend.linear_backward(dy, x, weight, no_dx, dweight, dbias);
}

namespace {

// [N, width]: the leading dims flattened (matmul takes 2-D operands).
Tensor as_matrix(const Tensor& t) {
  const std::int64_t width = t.dim(t.ndim() - 1);
  return t.reshape({t.numel() / width, width});
}

}  // namespace

LoraAdapter LoraAdapter::bind(const ParameterSet& params, const std::string& prefix, LoraTarget target,
                              std::int64_t layer, float scale) {
  LoraAdapter l;
  const ParameterEntry* a = params.find(prefix + ".lora_a");
  if (a == nullptr) return l;
  l.a = params.compute_value(*a);
  l.da = params.grad(*a);
  l.b = params.compute_value(prefix + ".lora_b");
  l.db = params.grad(prefix + ".lora_b");
  l.scale = scale;
  l.salt = mix64(static_cast<std::uint64_t>(layer) * kLoraTargets + static_cast<std::uint64_t>(target) + 1);
  l.in_features = a->global_shape[1];
  // A row-parallel target's input is a tp rank's column slice, like A's columns.
  l.input_split = a->split == TpSplit::Cols;
  return l;
}

Backend::DropoutArgs LoraAdapter::dropout_args(const LoraDropout& dropout) const {
  Backend::DropoutArgs args;
  args.p = dropout.p;
  args.key = mix64(dropout.key ^ salt);
  args.token0 = dropout.token0;
  args.features = in_features;
  args.feature0 = in_offset;
  return args;
}

void LoraAdapter::forward(Backend& backend, const Tensor& x, Tensor& y, Tensor& u, Tensor& x_dropped,
                          const LoraDropout& dropout) const {
  Tensor input = as_matrix(x);
  if (dropout.active()) {
    Tensor dropped = as_matrix(x_dropped);
    backend.dropout_forward(input, dropped, dropout_args(dropout));
    input = dropped;
  }
  backend.matmul(input, false, a, true, u, 1.0f, 0.0f);
  Tensor out = as_matrix(y);
  backend.matmul(u, false, b, true, out, scale, 1.0f);
}

void LoraAdapter::backward(Backend& backend, const Tensor& dy, const Tensor& x, const Tensor& u,
                           const Tensor& x_dropped, Tensor& dx, Tensor& du, Tensor& dx_scratch,
                           const LoraDropout& dropout) {
  const Tensor grad_out = as_matrix(dy);
  const Tensor input = as_matrix(dropout.active() ? x_dropped : x);
  const std::int64_t rows = input.dim(0), in = input.dim(1);
  backend.matmul(grad_out, true, u, false, db, scale, 1.0f);
  backend.matmul(grad_out, false, b, false, du, scale, 0.0f);
  backend.matmul(du, true, input, false, da, 1.0f, 1.0f);
  if (!dx.defined()) return;
  Tensor grad_in = as_matrix(dx);
  if (!dropout.active()) {
    backend.matmul(du, false, a, false, grad_in, 1.0f, 1.0f);
    return;
  }
  Tensor scratch = dx_scratch.view(0, {rows, in});
  backend.matmul(du, false, a, false, scratch, 1.0f, 0.0f);
  backend.dropout_forward(scratch, grad_in, dropout_args(dropout), /*accumulate=*/true);
}

Norm Norm::bind(const ParameterSet& params, const std::string& prefix, const ModelConfig& config) {
  Norm n;
  n.family = config.family;
  n.eps = config.norm_eps;
  n.weight = params.compute_value(prefix + ".weight");
  n.dweight = params.grad(prefix + ".weight");
  if (config.family == Family::GPT2) {
    n.bias = params.compute_value(prefix + ".bias");
    n.dbias = params.grad(prefix + ".bias");
  }
  return n;
}

void Norm::forward(Backend& backend, const Tensor& x, Tensor& y, Tensor& mean, Tensor& rstd) const {
  if (family == Family::GPT2) {
    backend.layernorm_forward(x, weight, bias, eps, y, mean, rstd);
  } else {
    backend.rmsnorm_forward(x, weight, eps, y, rstd);
  }
}

void Norm::backward(Backend& backend, const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                    Tensor& dx) {
  if (family == Family::GPT2) {
    backend.layernorm_backward(dy, x, weight, mean, rstd, dx, dweight, dbias);
  } else {
    backend.rmsnorm_backward(dy, x, weight, rstd, dx, dweight);
  }
}

}  // namespace loom::model
