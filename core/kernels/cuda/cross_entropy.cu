// Softmax cross-entropy of the CUDA backend over logits [N, V] (f32 or bf16; losses, lse,
// stats and dloss f32), and its vocab-parallel form (stats per shard, a combine over all
// shards' stats, a backward), with the CPU backend's semantics (core/kernels/cpu/
// cross_entropy.cpp).
//
// One block per row. Each thread keeps an online softmax (running max, running sum rescaled
// when the max grows) over its strided share of the row, read once; the block then combines
// the threads' (max, sum) pairs in a fixed tree. Backward recomputes that lse and writes the
// gradient in one more pass; when dlogits aliases logits the row is overwritten with its
// gradient (every element is read and then written by the same thread, after the reduction
// barrier). Targets are not range-checked on the host (that would need a synchronisation):
// a target >= V gives a NaN loss and a NaN gradient row, which all_finite reports.
#include <cuda_bf16.h>

#include <cmath>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;

unsigned row_grid(std::int64_t rows) { return static_cast<unsigned>(rows < 1 ? 1 : (rows > 65535 ? 65535 : rows)); }

struct MaxSum {
  float max;
  float sum;
};

// The row's max and Σ exp(x - max) over the whole block (every thread gets them).
template <typename T>
__device__ MaxSum row_max_sum(const T* row, std::int64_t v, float* scratch) {
  float m = -INFINITY;
  float s = 0.0f;
  for (std::int64_t i = threadIdx.x; i < v; i += blockDim.x) {
    const float x = load(row + i);
    if (x > m) {
      s = s * expf(m - x) + 1.0f;
      m = x;
    } else if (x != -INFINITY) {
      s += expf(x - m);
    }
  }
  const float block_m = block_max(m, scratch);
  const float scaled = m == -INFINITY ? 0.0f : s * expf(m - block_m);
  return MaxSum{block_m, block_sum(scaled, scratch)};
}

template <typename T>
__global__ void ce_forward_kernel(const T* logits, const std::int32_t* targets, float* losses, std::int64_t rows,
                                  std::int64_t v) {
  __shared__ float scratch[32];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const std::int32_t target = targets[r];
    if (target < 0) {
      if (threadIdx.x == 0) losses[r] = 0.0f;
      continue;
    }
    const T* row = logits + r * v;
    const MaxSum ms = row_max_sum(row, v, scratch);
    if (threadIdx.x == 0) losses[r] = target < v ? ms.max + logf(ms.sum) - load(row + target) : NAN;
  }
}

// dlogits (=|+=) dloss · (exp(x - lse) - onehot(target - vocab_offset)); lse from `lse` when
// given, else recomputed from the row.
template <typename T>
__global__ void ce_backward_kernel(const T* logits, const std::int32_t* targets, const float* lse, const float* dloss,
                                   T* dlogits, std::int64_t rows, std::int64_t v, std::int64_t vocab_offset,
                                   bool overwrite, bool full_vocab) {
  __shared__ float scratch[32];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = logits + r * v;
    T* drow = dlogits + r * v;
    const std::int32_t target = targets[r];
    if (target < 0) {
      if (overwrite) {
        for (std::int64_t i = threadIdx.x; i < v; i += blockDim.x) store(drow + i, 0.0f);
      }
      continue;
    }
    float row_lse;
    if (lse != nullptr) {
      row_lse = lse[r];
    } else {
      const MaxSum ms = row_max_sum(row, v, scratch);
      row_lse = ms.max + logf(ms.sum);
    }
    const std::int64_t local = static_cast<std::int64_t>(target) - vocab_offset;
    const float g = dloss[r];
    const float bad = full_vocab && local >= v ? NAN : 0.0f;
    for (std::int64_t i = threadIdx.x; i < v; i += blockDim.x) {
      float d = g * expf(load(row + i) - row_lse) + bad;
      if (i == local) d -= g;
      store(drow + i, overwrite ? d : load(drow + i) + d);
    }
  }
}

template <typename T>
__global__ void ce_shard_stats_kernel(const T* logits, const std::int32_t* targets, float* stats, std::int64_t rows,
                                      std::int64_t v, std::int64_t vocab_offset) {
  __shared__ float scratch[32];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = logits + r * v;
    const MaxSum ms = row_max_sum(row, v, scratch);
    if (threadIdx.x == 0) {
      const std::int32_t target = targets[r];
      const std::int64_t local = static_cast<std::int64_t>(target) - vocab_offset;
      stats[3 * r] = ms.max;
      stats[3 * r + 1] = ms.sum;
      stats[3 * r + 2] = target >= 0 && local >= 0 && local < v ? load(row + local) : 0.0f;
    }
  }
}

// One thread per row; shards in a fixed order, f64 sums as the CPU backend.
__global__ void ce_shard_combine_kernel(const float* stats, const std::int32_t* targets, float* lse, float* losses,
                                        std::int64_t rows, std::int64_t shards) {
  const std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  float max = -INFINITY;
  for (std::int64_t s = 0; s < shards; ++s) max = fmaxf(max, stats[(s * rows + r) * 3]);
  double sum = 0.0;
  float target_logit = 0.0f;
  for (std::int64_t s = 0; s < shards; ++s) {
    const float* st = stats + (s * rows + r) * 3;
    sum += static_cast<double>(st[1]) * exp(static_cast<double>(st[0]) - static_cast<double>(max));
    target_logit += st[2];
  }
  lse[r] = max + static_cast<float>(log(sum));
  losses[r] = targets[r] < 0 ? 0.0f : lse[r] - target_logit;
}

std::int64_t check_ce_inputs(const char* op, const Tensor& logits, const Tensor& targets, DType& dtype) {
  dtype = require_float(op, "logits", logits);
  require(op, "targets", targets, DType::I32);
  const std::int64_t n = rows_of(logits);
  if (targets.numel() != n) {
    fail(op, "targets " + targets.describe() + " must have one entry per row of logits " + logits.describe());
  }
  return n;
}

// dlogits must alias logits exactly (then overwritten) or not overlap them; returns whether aliased.
bool check_alias(const char* op, const Tensor& logits, const Tensor& dlogits) {
  const auto* l = static_cast<const char*>(logits.raw());
  const auto* d = static_cast<const char*>(dlogits.raw());
  const auto bytes = logits.nbytes();
  if (l == d) return true;
  if (l < d + bytes && d < l + bytes) {
    fail(op, "dlogits " + dlogits.describe() + " partly overlaps logits " + logits.describe() +
                 "; it must alias them exactly or not at all");
  }
  return false;
}

}  // namespace

void CudaBackend::cross_entropy_forward(const Tensor& logits, const Tensor& targets, Tensor& losses) {
  const char* op = "cross_entropy_forward";
  DType dtype{};
  const std::int64_t n = check_ce_inputs(op, logits, targets, dtype);
  const std::int64_t v = cols_of(logits);
  require_numel(op, "losses", losses, DType::F32, n, "the rows of logits " + logits.describe());
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    ce_forward_kernel<<<row_grid(n), kThreads, 0, stream_>>>(ptr<T>(logits), ptr<std::int32_t>(targets),
                                                             ptr<float>(losses), n, v);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& dloss,
                                         Tensor& dlogits) {
  const char* op = "cross_entropy_backward";
  DType dtype{};
  const std::int64_t n = check_ce_inputs(op, logits, targets, dtype);
  const std::int64_t v = cols_of(logits);
  require_numel(op, "dloss", dloss, DType::F32, n, "the rows of logits " + logits.describe());
  require_matrix(op, "dlogits", dlogits, dtype, n, v, "logits " + logits.describe());
  const bool aliased = check_alias(op, logits, dlogits);
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    ce_backward_kernel<<<row_grid(n), kThreads, 0, stream_>>>(ptr<T>(logits), ptr<std::int32_t>(targets), nullptr,
                                                              ptr<float>(dloss), ptr<T>(dlogits), n, v, 0, aliased,
                                                              true);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::cross_entropy_shard_stats(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                            Tensor& stats) {
  const char* op = "cross_entropy_shard_stats";
  DType dtype{};
  const std::int64_t n = check_ce_inputs(op, logits, targets, dtype);
  const std::int64_t v = cols_of(logits);
  require_numel(op, "stats", stats, DType::F32, n * 3, "[N, 3] for the rows of logits " + logits.describe());
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    ce_shard_stats_kernel<<<row_grid(n), kThreads, 0, stream_>>>(ptr<T>(logits), ptr<std::int32_t>(targets),
                                                                 ptr<float>(stats), n, v, vocab_offset);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::cross_entropy_shard_combine(const Tensor& all_stats, const Tensor& targets, Tensor& lse,
                                              Tensor& losses) {
  const char* op = "cross_entropy_shard_combine";
  require(op, "all_stats", all_stats, DType::F32);
  require(op, "targets", targets, DType::I32);
  const std::int64_t n = targets.numel();
  if (n == 0 || all_stats.numel() % (3 * n) != 0) {
    fail(op, "all_stats " + all_stats.describe() + " must be [shards, N, 3] for targets " + targets.describe());
  }
  const std::int64_t shards = all_stats.numel() / (3 * n);
  require_numel(op, "lse", lse, DType::F32, n, "the targets " + targets.describe());
  require_numel(op, "losses", losses, DType::F32, n, "the targets " + targets.describe());
  ce_shard_combine_kernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, stream_>>>(
      ptr<float>(all_stats), ptr<std::int32_t>(targets), ptr<float>(lse), ptr<float>(losses), n, shards);
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                               const Tensor& lse, const Tensor& dloss, Tensor& dlogits) {
  const char* op = "cross_entropy_shard_backward";
  DType dtype{};
  const std::int64_t n = check_ce_inputs(op, logits, targets, dtype);
  const std::int64_t v = cols_of(logits);
  require_numel(op, "lse", lse, DType::F32, n, "the rows of logits " + logits.describe());
  require_numel(op, "dloss", dloss, DType::F32, n, "the rows of logits " + logits.describe());
  require_matrix(op, "dlogits", dlogits, dtype, n, v, "logits " + logits.describe());
  const bool aliased = check_alias(op, logits, dlogits);
  if (n == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    ce_backward_kernel<<<row_grid(n), kThreads, 0, stream_>>>(ptr<T>(logits), ptr<std::int32_t>(targets),
                                                              ptr<float>(lse), ptr<float>(dloss), ptr<T>(dlogits), n,
                                                              v, vocab_offset, aliased, false);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
