// Elementwise activations of the CUDA backend: GELU (tanh approximation, as GPT-2) and
// SwiGLU (Llama's silu(gate) * up), forward and backward, with the CPU backend's formulas
// (core/kernels/cpu/activations.cpp). Grid-stride loops; backward adds into its gradients.
#include <cuda_bf16.h>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

#define LOOM_GRID_STRIDE(i, n)                                                                    \
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

template <typename T>
__global__ void gelu_forward_kernel(const T* x, T* y, std::int64_t n) {
  LOOM_GRID_STRIDE(i, n) {
    const float v = load(x + i);
    const float u = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
    store(y + i, 0.5f * v * (1.0f + tanhf(u)));
  }
}

template <typename T>
__global__ void gelu_backward_kernel(const T* dy, const T* x, T* dx, std::int64_t n) {
  LOOM_GRID_STRIDE(i, n) {
    const float v = load(x + i);
    const float u = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
    const float t = tanhf(u);
    const float du_dv = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
    const float local = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du_dv;
    store(dx + i, load(dx + i) + local * load(dy + i));
  }
}

template <typename T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, std::int64_t n) {
  LOOM_GRID_STRIDE(i, n) {
    const float g = load(gate + i);
    store(out + i, g * sigmoid(g) * load(up + i));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(const T* dout, const T* gate, const T* up, T* dgate, T* dup, std::int64_t n) {
  LOOM_GRID_STRIDE(i, n) {
    const float g = load(gate + i);
    const float sig = sigmoid(g);
    const float d = load(dout + i);
    if (dgate != nullptr) store(dgate + i, load(dgate + i) + d * load(up + i) * sig * (1.0f + g * (1.0f - sig)));
    if (dup != nullptr) store(dup + i, load(dup + i) + d * g * sig);
  }
}

#undef LOOM_GRID_STRIDE

}  // namespace

void CudaBackend::gelu_forward(const Tensor& x, Tensor& y) {
  const DType dtype = require_float("gelu_forward", "x", x);
  require_numel("gelu_forward", "y", y, dtype, x.numel(), "x " + x.describe());
  const std::int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    gelu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_>>>(ptr<T>(x), ptr<T>(y), n);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) {
  const DType dtype = require_float("gelu_backward", "x", x);
  require_numel("gelu_backward", "dy", dy, dtype, x.numel(), "x " + x.describe());
  require_numel("gelu_backward", "dx", dx, dtype, x.numel(), "x " + x.describe());
  const std::int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    gelu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_>>>(ptr<T>(dy), ptr<T>(x), ptr<T>(dx), n);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  const DType dtype = require_float("swiglu_forward", "gate", gate);
  require_numel("swiglu_forward", "up", up, dtype, gate.numel(), "gate " + gate.describe());
  require_numel("swiglu_forward", "out", out, dtype, gate.numel(), "gate " + gate.describe());
  const std::int64_t n = gate.numel();
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    swiglu_forward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_>>>(ptr<T>(gate), ptr<T>(up), ptr<T>(out), n);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor& dgate,
                                  Tensor& dup) {
  const char* op = "swiglu_backward";
  const DType dtype = require_float(op, "gate", gate);
  const std::string ctx = "gate " + gate.describe();
  const std::int64_t n = gate.numel();
  require_numel(op, "up", up, dtype, n, ctx);
  require_numel(op, "dout", dout, dtype, n, ctx);
  if (dgate.defined()) require_numel(op, "dgate", dgate, dtype, n, ctx);
  if (dup.defined()) require_numel(op, "dup", dup, dtype, n, ctx);
  if (n == 0 || (!dgate.defined() && !dup.defined())) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    swiglu_backward_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_>>>(
        ptr<T>(dout), ptr<T>(gate), ptr<T>(up), dgate.defined() ? ptr<T>(dgate) : nullptr,
        dup.defined() ? ptr<T>(dup) : nullptr, n);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
