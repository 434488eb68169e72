#include "core/model/layers.h"

namespace loom::model {

Linear Linear::bind(const ParameterSet& params, const std::string& prefix) {
  Linear l;
  l.weight = params.value(prefix + ".weight");
  l.dweight = params.grad(prefix + ".weight");
  if (const ParameterEntry* b = params.find(prefix + ".bias")) {
    l.bias = params.value(*b);
    l.dbias = params.grad(*b);
  }
  return l;
}

void Linear::backward_overwrite(Backend& backend, const Tensor& dy, const Tensor& x, Tensor& dx) {
  backend.matmul(dy, false, weight, false, dx, 1.0f, 0.0f);
  Tensor no_dx;
  backend.linear_backward(dy, x, weight, no_dx, dweight, dbias);
}

Norm Norm::bind(const ParameterSet& params, const std::string& prefix, const ModelConfig& config) {
  Norm n;
  n.family = config.family;
  n.eps = config.norm_eps;
  n.weight = params.value(prefix + ".weight");
  n.dweight = params.grad(prefix + ".weight");
  if (config.family == Family::GPT2) {
    n.bias = params.value(prefix + ".bias");
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
