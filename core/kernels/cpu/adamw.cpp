// AdamW of the CPU backend: one fused, vectorised, parallel pass over param, grad, m, v
// (PyTorch torch.optim.AdamW semantics; formula in core/backend.h). The bias corrections
// are computed once per call in f64; the per-element work is f32.
// param, m and v are always f32; a bf16 grad is read through a staged f32 copy
// (bf16_staging.h).
#include <cmath>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

void CpuBackend::adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWArgs& args) {
  if (is_bf16(grad)) {
    Bf16Staging staging("adamw_update");
    const Tensor grad32 = staging.input("grad", grad);
    return staging.run([&] { adamw_update(param, grad32, m, v, args); });
  }
  const char* op = "adamw_update";
  require_f32(op, "param", param);
  const std::int64_t n = param.numel();
  const std::string ctx = "param " + param.describe();
  require_numel(op, "grad", grad, n, ctx);
  require_numel(op, "m", m, n, ctx);
  require_numel(op, "v", v, n, ctx);
  if (args.step < 1) fail(op, "step counts from 1, got " + std::to_string(args.step));

  const double step = static_cast<double>(args.step);
  const float inv_bias1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(args.beta1), step)));
  const float inv_bias2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(args.beta2), step)));
  const float lr = args.lr;
  const float b1 = args.beta1;
  const float b2 = args.beta2;
  const float eps = args.eps;
  const float wd = args.weight_decay;
  const float gscale = args.grad_scale;
  float* pp = param.data<float>();
  const float* gp = grad.data<float>();
  float* mp = m.data<float>();
  float* vp = v.data<float>();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gp[i] * gscale;
    const float mi = b1 * mp[i] + (1.0f - b1) * g;
    const float vi = b2 * vp[i] + (1.0f - b2) * g * g;
    mp[i] = mi;
    vp[i] = vi;
    const float m_hat = mi * inv_bias1;
    const float v_hat = vi * inv_bias2;
    pp[i] -= lr * (m_hat / (std::sqrt(v_hat) + eps) + wd * pp[i]);
  }
}

}  // namespace loom::cpu
