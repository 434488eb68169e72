// Counter-based dropout of the CUDA backend (see Backend::dropout_forward): each element's
// keep bit is mix64 (core/mix64.h, the very function the CPU backend calls) of its global
// (token, feature) index, so the GPU draws the same mask as the CPU for any layout.
#include <cuda_bf16.h>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"
#include "core/mix64.h"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void dropout_kernel(const T* x, T* y, std::int64_t rows, std::int64_t cols, std::uint64_t key,
                               std::int64_t token0, std::int64_t features, std::int64_t feature0,
                               std::uint64_t threshold, float keep_scale, bool accumulate) {
  const std::int64_t n = rows * cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / cols;
    const std::int64_t j = i % cols;
    const std::uint64_t base = key + static_cast<std::uint64_t>((token0 + r) * features + feature0);
    const bool keep = (mix64(base + static_cast<std::uint64_t>(j)) >> 11) >= threshold;
    const float v = keep ? load(x + i) * keep_scale : 0.0f;
    store(y + i, accumulate ? load(y + i) + v : v);
  }
}

}  // namespace

void CudaBackend::dropout_forward(const Tensor& x, Tensor& y, const DropoutArgs& args, bool accumulate) {
  const char* op = "dropout_forward";
  const DType dtype = require_float(op, "x", x);
  require_numel(op, "y", y, dtype, x.numel(), "x " + x.describe());
  if (!(args.p >= 0.0f && args.p < 1.0f)) fail(op, "p must be in [0, 1), got " + std::to_string(args.p));
  const std::int64_t rows = rows_of(x), cols = cols_of(x);
  if (args.features < args.feature0 + cols) {
    fail(op, "features " + std::to_string(args.features) + " cannot hold columns [" + std::to_string(args.feature0) +
                 ", " + std::to_string(args.feature0 + cols) + ")");
  }
  if (rows * cols == 0) return;
  const float keep_scale = 1.0f / (1.0f - args.p);
  // keep when u >= p, u = bits / 2^53: compare the 53-bit integer against p · 2^53 (as the CPU).
  const auto threshold = static_cast<std::uint64_t>(static_cast<double>(args.p) * 9007199254740992.0);
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    dropout_kernel<<<grid_for(rows * cols, kThreads), kThreads, 0, stream_>>>(
        ptr<T>(x), ptr<T>(y), rows, cols, args.key, args.token0, args.features, args.feature0, threshold, keep_scale,
        accumulate);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
