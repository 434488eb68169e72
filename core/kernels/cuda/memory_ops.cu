// Memory ops of the CUDA backend: fill, copy (device, host <-> device, f32 <-> bf16), add,
// scale, sum of squares and finiteness. sum_squares adds in f64: each of a fixed number of
// blocks (a function of the element count only) sums a grid-strided share, then one block
// adds the block sums in a fixed tree, so the gradient norm is bit-identical run to run.
#include <cuda_bf16.h>

#include <cstring>
#include <vector>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kSumBlocksMax = 1024;

template <typename T>
__global__ void fill_kernel(T* x, std::int64_t n, T value) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    x[i] = value;
  }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    store(dst + i, load(src + i));
  }
}

template <typename T>
__global__ void add_kernel(T* y, const T* x, std::int64_t n, float alpha) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    store(y + i, load(y + i) + alpha * load(x + i));
  }
}

template <typename T>
__global__ void scale_kernel(T* x, std::int64_t n, float alpha) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    store(x + i, load(x + i) * alpha);
  }
}

template <typename T>
__global__ void sum_squares_blocks(const T* x, std::int64_t n, double* partial) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const double v = load(x + i);
    s += v * v;
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block of 1024 threads: partial[i] for i < count <= 1024, summed in a fixed tree.
__global__ void sum_partials(const double* partial, int count, double* out) {
  __shared__ double scratch[32];
  const double v = static_cast<int>(threadIdx.x) < count ? partial[threadIdx.x] : 0.0;
  const double total = block_sum(v, scratch);
  if (threadIdx.x == 0) *out = total;
}

__device__ __forceinline__ bool non_finite(float v) { return (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u; }
__device__ __forceinline__ bool non_finite(__nv_bfloat16 v) {
  return (__bfloat16_as_ushort(v) & 0x7f80u) == 0x7f80u;
}

// Every thread that sees a NaN or infinity stores 1: the same value, so no atomics are needed.
template <typename T>
__global__ void non_finite_kernel(const T* x, std::int64_t n, int* flag) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    if (non_finite(x[i])) *flag = 1;
  }
}

bool is_float(DType d) { return d == DType::F32 || d == DType::BF16; }

void host_convert(const Tensor& src, Tensor& dst) {
  const std::int64_t n = src.numel();
  if (src.dtype() == DType::F32) {
    const float* s = src.data<float>();
    bf16* d = dst.data<bf16>();
    for (std::int64_t i = 0; i < n; ++i) d[i] = to_bf16(s[i]);
  } else {
    const bf16* s = src.data<bf16>();
    float* d = dst.data<float>();
    for (std::int64_t i = 0; i < n; ++i) d[i] = from_bf16(s[i]);
  }
}

template <typename S, typename D>
void launch_convert(const void* src, void* dst, std::int64_t n, cudaStream_t stream) {
  convert_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<const S*>(src), static_cast<D*>(dst), n);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaBackend::fill(Tensor& x, float value) {
  if (!x.defined() || x.device() != Device::CUDA) fail("fill", "x must be a cuda tensor, got " + describe(x));
  const std::int64_t n = x.numel();
  if (n == 0) return;
  const unsigned grid = grid_for(n, kThreads);
  if (x.dtype() == DType::F32) {
    fill_kernel<<<grid, kThreads, 0, stream_>>>(ptr<float>(x), n, value);
  } else if (x.dtype() == DType::BF16) {
    fill_kernel<<<grid, kThreads, 0, stream_>>>(ptr<__nv_bfloat16>(x), n, __float2bfloat16_rn(value));
  } else if (x.dtype() == DType::I32) {
    fill_kernel<<<grid, kThreads, 0, stream_>>>(ptr<std::int32_t>(x), n, static_cast<std::int32_t>(value));
  } else {
    fail("fill", "x must be f32, bf16 or i32, got " + x.describe());
  }
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::copy(const Tensor& src, Tensor& dst) {
  const bool same_dtype = src.defined() && dst.defined() && src.dtype() == dst.dtype();
  if (!src.defined() || !dst.defined() || src.numel() != dst.numel() ||
      (!same_dtype && !(is_float(src.dtype()) && is_float(dst.dtype())))) {
    fail("copy", "src " + describe(src) + " and dst " + describe(dst) +
                     " must have the same number of elements and one dtype (or be f32/bf16, converted)");
  }
  const std::int64_t n = src.numel();
  if (n == 0) return;
  const bool src_host = src.device() == Device::CPU;
  const bool dst_host = dst.device() == Device::CPU;
  if (same_dtype) {
    if (src.raw() == dst.raw()) return;
    const auto bytes = src.nbytes();
    if (src_host && dst_host) {
      std::memmove(dst.raw(), src.raw(), bytes);
      return;
    }
    const auto* from = static_cast<const char*>(src.raw());
    const auto* to = static_cast<const char*>(dst.raw());
    if (!src_host && !dst_host && from < to + bytes && to < from + bytes) {  // overlapping device views
      Tensor staging = Tensor::empty(src.shape(), src.dtype(), Device::CUDA);
      copy(src, staging);
      copy(staging, dst);
      return;
    }
    LOOM_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), bytes, cudaMemcpyDefault, stream_));
    // The host side must be readable (dst) or reusable (src) when copy returns.
    if (src_host || dst_host) LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  if (src_host && dst_host) {
    host_convert(src, dst);
    return;
  }
  if (src_host) {  // upload as is, convert on the device
    Tensor staging = Tensor::empty(src.shape(), src.dtype(), Device::CUDA);
    copy(src, staging);
    copy(staging, dst);
    return;
  }
  if (dst_host) {  // convert on the device, then download
    Tensor staging = Tensor::empty(dst.shape(), dst.dtype(), Device::CUDA);
    copy(src, staging);
    copy(staging, dst);
    return;
  }
  const auto* from = static_cast<const char*>(src.raw());
  const auto* to = static_cast<const char*>(dst.raw());
  if (from < to + dst.nbytes() && to < from + src.nbytes()) {  // overlapping views: convert a copy
    Tensor staging = Tensor::empty(src.shape(), src.dtype(), Device::CUDA);
    copy(src, staging);
    copy(staging, dst);
    return;
  }
  if (src.dtype() == DType::F32) {
    launch_convert<float, __nv_bfloat16>(src.raw(), dst.raw(), n, stream_);
  } else {
    launch_convert<__nv_bfloat16, float>(src.raw(), dst.raw(), n, stream_);
  }
}

void CudaBackend::add_inplace(Tensor& y, const Tensor& x, float alpha) {
  const DType dtype = require_float("add_inplace", "y", y);
  require_numel("add_inplace", "x", x, dtype, y.numel(), "y " + y.describe());
  const std::int64_t n = y.numel();
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    add_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_>>>(ptr<T>(y), ptr<T>(x), n, alpha);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::scale_inplace(Tensor& x, float alpha) {
  const DType dtype = require_float("scale_inplace", "x", x);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_>>>(ptr<T>(x), n, alpha);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

double CudaBackend::sum_squares(const Tensor& x) {
  const DType dtype = require_float("sum_squares", "x", x);
  const std::int64_t n = x.numel();
  if (n == 0) return 0.0;
  std::int64_t blocks = (n + 8 * kThreads - 1) / (8 * kThreads);
  if (blocks > kSumBlocksMax) blocks = kSumBlocksMax;
  // f64 scratch in an f32 tensor: blocks partial sums plus the total (allocations are 256-byte aligned).
  Tensor scratch = Tensor::empty({2 * (blocks + 1)}, DType::F32, Device::CUDA);
  auto* partial = static_cast<double*>(scratch.raw());
  double* total = partial + blocks;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    sum_squares_blocks<<<static_cast<unsigned>(blocks), kThreads, 0, stream_>>>(ptr<T>(x), n, partial);
  });
  LOOM_CUDA_CHECK_LAUNCH();
  sum_partials<<<1, 1024, 0, stream_>>>(partial, static_cast<int>(blocks), total);
  LOOM_CUDA_CHECK_LAUNCH();
  double result = 0.0;
  LOOM_CUDA_CHECK(cudaMemcpyAsync(&result, total, sizeof(double), cudaMemcpyDeviceToHost, stream_));
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return result;
}

bool CudaBackend::all_finite(const Tensor& x) {
  const DType dtype = require_float("all_finite", "x", x);
  const std::int64_t n = x.numel();
  if (n == 0) return true;
  Tensor flag_tensor = Tensor::empty({1}, DType::I32, Device::CUDA);
  int* flag = ptr<int>(flag_tensor);
  LOOM_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), stream_));
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    non_finite_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_>>>(ptr<T>(x), n, flag);
  });
  LOOM_CUDA_CHECK_LAUNCH();
  int result = 0;
  LOOM_CUDA_CHECK(cudaMemcpyAsync(&result, flag, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return result == 0;
}

}  // namespace loom::cuda
