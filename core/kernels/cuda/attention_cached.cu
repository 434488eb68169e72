// Attention over a key/value cache for the CUDA backend (generation): the new tokens' k and v
// heads are written into the caches, then each new query attends to every cached position up
// to its own with the forward kernel of attention_forward.cuh reading keys from the cache
// ([B, Hkv, capacity, D], the qkv's dtype). Rows are independent and each output row has one
// writer, so results are deterministic. The int8 cache keeps the base class's throwing default.
#include <cuda_bf16.h>

#include <cmath>

#include "core/kernels/cuda/attention_forward.cuh"
#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = kAttnRowsPerBlock * 32;

// One thread per (b, g, t, d): cache[b, g, position + t, d] = the new token's k (and v) head.
template <typename T>
__global__ void append_cache_kernel(const T* qkv, T* k_cache, T* v_cache, std::int64_t batch, std::int64_t seq,
                                    std::int64_t q_heads, std::int64_t kv_heads, std::int64_t head_dim,
                                    std::int64_t capacity, std::int64_t position) {
  const std::int64_t width = (q_heads + 2 * kv_heads) * head_dim;
  const std::int64_t n = batch * kv_heads * seq * head_dim;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t d = e % head_dim;
    const std::int64_t t = (e / head_dim) % seq;
    const std::int64_t g = (e / (head_dim * seq)) % kv_heads;
    const std::int64_t b = e / (head_dim * seq * kv_heads);
    const T* token = qkv + (b * seq + t) * width;
    const std::int64_t row = ((b * kv_heads + g) * capacity + position + t) * head_dim;
    k_cache[row + d] = token[(q_heads + g) * head_dim + d];
    v_cache[row + d] = token[(q_heads + kv_heads + g) * head_dim + d];
  }
}

void check_cache(const char* op, const char* name, const Tensor& cache, DType dtype, const AttentionShape& s,
                 std::int64_t position) {
  require(op, name, cache, dtype);
  if (cache.ndim() != 4 || cache.dim(0) != s.batch || cache.dim(1) != s.kv_heads || cache.dim(3) != s.head_dim) {
    fail(op, std::string(name) + " is " + cache.describe() + ", expected [batch, kv_heads, capacity, head_dim] = [" +
                 std::to_string(s.batch) + ", " + std::to_string(s.kv_heads) + ", capacity, " +
                 std::to_string(s.head_dim) + "]");
  }
  if (position < 0 || position + s.seq > cache.dim(2)) {
    fail(op, "positions [" + std::to_string(position) + ", " + std::to_string(position + s.seq) + ") do not fit " +
                 name + " capacity " + std::to_string(cache.dim(2)));
  }
}

}  // namespace

void CudaBackend::attention_cached_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                           Tensor& k_cache, Tensor& v_cache, Tensor& out) {
  const char* op = "attention_cached_forward";
  const DType dtype = require_attention(op, shape, "qkv", qkv);
  check_cache(op, "k_cache", k_cache, dtype, shape, position);
  check_cache(op, "v_cache", v_cache, dtype, shape, position);
  if (k_cache.dim(2) != v_cache.dim(2)) {
    fail(op, "k_cache " + k_cache.describe() + " and v_cache " + v_cache.describe() + " differ in capacity");
  }
  require_numel(op, "out", out, dtype, shape.batch * shape.seq * shape.q_heads * shape.head_dim,
                "[batch, seq, q_heads * head_dim] = [" + std::to_string(shape.batch) + ", " +
                    std::to_string(shape.seq) + ", " + std::to_string(shape.q_heads * shape.head_dim) + "]");
  if (shape.batch > 65535 || shape.q_heads > 65535) {
    fail(op, "batch and q_heads must be at most 65535 (the CUDA grid)");
  }
  const std::int64_t capacity = k_cache.dim(2);
  const std::int64_t D = shape.head_dim;
  const KeyValueRows rows{shape.kv_heads * capacity * D, capacity * D, D};
  const dim3 grid(static_cast<unsigned>((shape.seq + kAttnRowsPerBlock - 1) / kAttnRowsPerBlock),
                  static_cast<unsigned>(shape.q_heads), static_cast<unsigned>(shape.batch));
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = shape.batch * shape.kv_heads * shape.seq * D;
    append_cache_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream_>>>(
        ptr<T>(qkv), ptr<T>(k_cache), ptr<T>(v_cache), shape.batch, shape.seq, shape.q_heads, shape.kv_heads, D,
        capacity, position);
    LOOM_CUDA_CHECK_LAUNCH();
    attention_forward_kernel<T><<<grid, kThreads, 0, stream_>>>(
        ptr<T>(qkv), ptr<T>(k_cache), ptr<T>(v_cache), rows, ptr<T>(out), nullptr, static_cast<int>(shape.seq),
        static_cast<int>(shape.q_heads), static_cast<int>(shape.kv_heads), static_cast<int>(D), qkv_width(shape),
        position, scale);
    LOOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace loom::cuda
