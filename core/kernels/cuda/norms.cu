// LayerNorm and RMSNorm of the CUDA backend over the last dim C, forward and backward.
// Forward: one block per row, block reductions for the row statistics (f32, in a fixed
// tree). Backward: one block per chunk of kChunkRows rows writes its rows' dx directly and
// sums dweight/dbias of its rows into an f32 [chunks, C] buffer; a second kernel adds the
// chunks in order into the gradients. No atomics, so the sums are reproducible, and
// gradients are added into (+=) as the Backend contract says.
#include <cuda_bf16.h>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kChunkRows = 32;

unsigned row_grid(std::int64_t rows) { return static_cast<unsigned>(rows < 1 ? 1 : (rows > 65535 ? 65535 : rows)); }

template <typename T>
__global__ void layernorm_forward_kernel(const T* x, const T* w, const T* b, float eps, T* y, float* mean, float* rstd,
                                         std::int64_t rows, std::int64_t cols) {
  __shared__ float scratch[32];
  const float inv_c = 1.0f / static_cast<float>(cols);
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    float sum = 0.0f;
    for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += load(xr + i);
    const float mu = block_sum(sum, scratch) * inv_c;
    float sq = 0.0f;
    for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float d = load(xr + i) - mu;
      sq += d * d;
    }
    const float rs = 1.0f / sqrtf(block_sum(sq, scratch) * inv_c + eps);
    for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float v = (load(xr + i) - mu) * rs * load(w + i);
      store(yr + i, b != nullptr ? v + load(b + i) : v);
    }
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

template <typename T>
__global__ void rmsnorm_forward_kernel(const T* x, const T* w, float eps, T* y, float* rstd, std::int64_t rows,
                                       std::int64_t cols) {
  __shared__ float scratch[32];
  const float inv_c = 1.0f / static_cast<float>(cols);
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    float sq = 0.0f;
    for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float v = load(xr + i);
      sq += v * v;
    }
    const float rs = 1.0f / sqrtf(block_sum(sq, scratch) * inv_c + eps);
    for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) store(yr + i, load(xr + i) * rs * load(w + i));
    if (threadIdx.x == 0) rstd[r] = rs;
  }
}

// mean == nullptr: RMSNorm (no centring, no dbias).
template <typename T>
__global__ void norm_backward_kernel(const T* dy, const T* x, const T* w, const float* mean, const float* rstd, T* dx,
                                     float* dw_part, float* db_part, std::int64_t rows, std::int64_t cols) {
  __shared__ float scratch[32];
  const float inv_c = 1.0f / static_cast<float>(cols);
  const std::int64_t chunk = blockIdx.x;
  const std::int64_t end = (chunk + 1) * kChunkRows < rows ? (chunk + 1) * kChunkRows : rows;
  float* pw = dw_part != nullptr ? dw_part + chunk * cols : nullptr;
  float* pb = db_part != nullptr ? db_part + chunk * cols : nullptr;
  for (std::int64_t r = chunk * kChunkRows; r < end; ++r) {
    const T* dyr = dy + r * cols;
    const T* xr = x + r * cols;
    const float mu = mean != nullptr ? mean[r] : 0.0f;
    const float rs = rstd[r];
    if (dx != nullptr) {
      float dnorm_sum = 0.0f;
      float dnorm_xhat_sum = 0.0f;
      for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        const float dnorm = load(dyr + i) * load(w + i);
        dnorm_sum += dnorm;
        dnorm_xhat_sum += dnorm * (load(xr + i) - mu) * rs;
      }
      const float dnorm_mean = mean != nullptr ? block_sum(dnorm_sum, scratch) * inv_c : 0.0f;
      const float dnorm_xhat_mean = block_sum(dnorm_xhat_sum, scratch) * inv_c;
      T* dxr = dx + r * cols;
      for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        const float xhat = (load(xr + i) - mu) * rs;
        const float g = (load(dyr + i) * load(w + i) - dnorm_mean - xhat * dnorm_xhat_mean) * rs;
        store(dxr + i, load(dxr + i) + g);
      }
    }
    for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float d = load(dyr + i);
      if (pw != nullptr) pw[i] += d * (load(xr + i) - mu) * rs;
      if (pb != nullptr) pb[i] += d;
    }
  }
}

// out[c] += Σ_k partial[k * cols + c], chunks k in order.
template <typename T>
__global__ void add_chunk_partials_kernel(const float* partial, std::int64_t chunks, std::int64_t cols, T* out) {
  const std::int64_t c = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f;
  for (std::int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
  store(out + c, load(out + c) + s);
}

struct NormShape {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
};

NormShape check_norm(const char* op, const Tensor& x, const Tensor& weight, DType& dtype) {
  dtype = require_float(op, "x", x);
  const NormShape s{rows_of(x), cols_of(x)};
  require_numel(op, "weight", weight, dtype, s.cols, "the last dim of x " + x.describe());
  return s;
}

// Runs the backward kernel and folds its chunk partials into dweight/dbias.
template <typename T>
void norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const float* mean, const Tensor& rstd,
                   Tensor& dx, Tensor& dweight, Tensor* dbias, const NormShape& s, cudaStream_t stream) {
  const std::int64_t chunks = (s.rows + kChunkRows - 1) / kChunkRows;
  const bool want_db = dbias != nullptr && dbias->defined();
  Tensor dw_part, db_part;
  const auto partial_bytes = static_cast<std::size_t>(chunks * s.cols) * sizeof(float);
  if (dweight.defined()) {
    dw_part = Tensor::empty({chunks * s.cols}, DType::F32, Device::CUDA);
    LOOM_CUDA_CHECK(cudaMemsetAsync(dw_part.raw(), 0, partial_bytes, stream));
  }
  if (want_db) {
    db_part = Tensor::empty({chunks * s.cols}, DType::F32, Device::CUDA);
    LOOM_CUDA_CHECK(cudaMemsetAsync(db_part.raw(), 0, partial_bytes, stream));
  }
  norm_backward_kernel<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(
      ptr<T>(dy), ptr<T>(x), ptr<T>(weight), mean, ptr<float>(rstd), dx.defined() ? ptr<T>(dx) : nullptr,
      dweight.defined() ? ptr<float>(dw_part) : nullptr, want_db ? ptr<float>(db_part) : nullptr, s.rows, s.cols);
  LOOM_CUDA_CHECK_LAUNCH();
  const auto grid = static_cast<unsigned>((s.cols + kThreads - 1) / kThreads);
  if (dweight.defined()) {
    add_chunk_partials_kernel<<<grid, kThreads, 0, stream>>>(ptr<float>(dw_part), chunks, s.cols, ptr<T>(dweight));
    LOOM_CUDA_CHECK_LAUNCH();
  }
  if (want_db) {
    add_chunk_partials_kernel<<<grid, kThreads, 0, stream>>>(ptr<float>(db_part), chunks, s.cols, ptr<T>(*dbias));
    LOOM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void CudaBackend::layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& y,
                                    Tensor& mean, Tensor& rstd) {
  const char* op = "layernorm_forward";
  DType dtype{};
  const NormShape s = check_norm(op, x, weight, dtype);
  const std::string ctx = "x " + x.describe();
  if (bias.defined()) require_numel(op, "bias", bias, dtype, s.cols, ctx);
  require_matrix(op, "y", y, dtype, s.rows, s.cols, ctx);
  require_numel(op, "mean", mean, DType::F32, s.rows, "the rows of " + ctx);
  require_numel(op, "rstd", rstd, DType::F32, s.rows, "the rows of " + ctx);
  if (s.rows == 0 || s.cols == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    layernorm_forward_kernel<<<row_grid(s.rows), kThreads, 0, stream_>>>(
        ptr<T>(x), ptr<T>(weight), bias.defined() ? ptr<T>(bias) : nullptr, eps, ptr<T>(y), ptr<float>(mean),
        ptr<float>(rstd), s.rows, s.cols);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                     const Tensor& rstd, Tensor& dx, Tensor& dweight, Tensor& dbias) {
  const char* op = "layernorm_backward";
  DType dtype{};
  const NormShape s = check_norm(op, x, weight, dtype);
  const std::string ctx = "x " + x.describe();
  require_matrix(op, "dy", dy, dtype, s.rows, s.cols, ctx);
  require_numel(op, "mean", mean, DType::F32, s.rows, "the rows of " + ctx);
  require_numel(op, "rstd", rstd, DType::F32, s.rows, "the rows of " + ctx);
  if (dx.defined()) require_matrix(op, "dx", dx, dtype, s.rows, s.cols, ctx);
  if (dweight.defined()) require_numel(op, "dweight", dweight, dtype, s.cols, ctx);
  if (dbias.defined()) require_numel(op, "dbias", dbias, dtype, s.cols, ctx);
  if (s.rows == 0 || s.cols == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    norm_backward<decltype(tag)>(dy, x, weight, ptr<float>(mean), rstd, dx, dweight, &dbias, s, stream_);
  });
}

void CudaBackend::rmsnorm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& y, Tensor& rstd) {
  const char* op = "rmsnorm_forward";
  DType dtype{};
  const NormShape s = check_norm(op, x, weight, dtype);
  const std::string ctx = "x " + x.describe();
  require_matrix(op, "y", y, dtype, s.rows, s.cols, ctx);
  require_numel(op, "rstd", rstd, DType::F32, s.rows, "the rows of " + ctx);
  if (s.rows == 0 || s.cols == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    rmsnorm_forward_kernel<<<row_grid(s.rows), kThreads, 0, stream_>>>(ptr<T>(x), ptr<T>(weight), eps, ptr<T>(y),
                                                                        ptr<float>(rstd), s.rows, s.cols);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                   Tensor& dx, Tensor& dweight) {
  const char* op = "rmsnorm_backward";
  DType dtype{};
  const NormShape s = check_norm(op, x, weight, dtype);
  const std::string ctx = "x " + x.describe();
  require_matrix(op, "dy", dy, dtype, s.rows, s.cols, ctx);
  require_numel(op, "rstd", rstd, DType::F32, s.rows, "the rows of " + ctx);
  if (dx.defined()) require_matrix(op, "dx", dx, dtype, s.rows, s.cols, ctx);
  if (dweight.defined()) require_numel(op, "dweight", dweight, dtype, s.cols, ctx);
  if (s.rows == 0 || s.cols == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    norm_backward<decltype(tag)>(dy, x, weight, nullptr, rstd, dx, dweight, nullptr, s, stream_);
  });
}

}  // namespace loom::cuda
