// AdamW of the CUDA backend: one fused elementwise pass over param, grad, m, v with the CPU
// backend's formula (core/kernels/cpu/adamw.cpp; PyTorch torch.optim.AdamW semantics).
// param, m, v are f32 (master weights and optimizer state); grad is f32 or bf16. The bias
// corrections are computed once per call on the host in f64.
#include <cuda_bf16.h>

#include <cmath>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;

template <typename G>
__global__ void adamw_kernel(float* param, const G* grad, float* m, float* v, std::int64_t n, float lr, float b1,
                             float b2, float eps, float wd, float gscale, float inv_bias1, float inv_bias2) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float g = load(grad + i) * gscale;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float m_hat = mi * inv_bias1;
    const float v_hat = vi * inv_bias2;
    const float p = param[i];
    param[i] = p - lr * (m_hat / (sqrtf(v_hat) + eps) + wd * p);
  }
}

}  // namespace

void CudaBackend::adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWArgs& args) {
  const char* op = "adamw_update";
  require(op, "param", param, DType::F32);
  const std::int64_t n = param.numel();
  const std::string ctx = "param " + param.describe();
  const DType grad_dtype = require_float(op, "grad", grad);
  require_numel(op, "grad", grad, grad_dtype, n, ctx);
  require_numel(op, "m", m, DType::F32, n, ctx);
  require_numel(op, "v", v, DType::F32, n, ctx);
  if (args.step < 1) fail(op, "step counts from 1, got " + std::to_string(args.step));
  if (n == 0) return;
  const double step = static_cast<double>(args.step);
  const float inv_bias1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(args.beta1), step)));
  const float inv_bias2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(args.beta2), step)));
  dispatch_float(grad_dtype, [&](auto tag) {
    using G = decltype(tag);
    adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_>>>(
        ptr<float>(param), ptr<G>(grad), ptr<float>(m), ptr<float>(v), n, args.lr, args.beta1, args.beta2, args.eps,
        args.weight_decay, args.grad_scale, inv_bias1, inv_bias2);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
