// Device-side helpers of the CUDA kernels: f32/bf16 element access (bf16 storage, fp32
// arithmetic), the host-side dtype dispatch that instantiates a kernel for both, and
// fixed-order warp and block reductions.
//
// Reductions combine partial values in a tree whose shape depends only on the block size,
// never on timing, so every sum here is bit-identical run to run; nothing uses atomics on
// floating-point values. Included only by .cu files of loom_cuda.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/tensor.h"

namespace loom::cuda::detail {

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// Calls f(T{}) with T = float or __nv_bfloat16 for an f32 or bf16 dtype. Callers have
// checked the dtype already (require_float), so anything else is a logic error.
template <typename F>
void dispatch_float(DType dtype, F&& f) {
  if (dtype == DType::F32) {
    f(float{});
  } else {
    f(__nv_bfloat16{});
  }
}

template <typename T>
T* ptr(Tensor& t) {
  return static_cast<T*>(t.raw());
}
template <typename T>
const T* ptr(const Tensor& t) {
  return static_cast<const T*>(t.raw());
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
// `scratch` holds 32 values; the call ends with a barrier, so it may be reused at once.
template <typename V>
__device__ V block_sum(V v, V* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  V total = lane < warps ? scratch[lane] : V(0);
  total = warp_sum(total);
  __syncthreads();
  return total;
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = lane < warps ? scratch[lane] : -INFINITY;
  total = warp_max(total);
  __syncthreads();
  return total;
}

}  // namespace loom::cuda::detail
