// Causal grouped-query self-attention of the CUDA backend, forward and backward.
//
// Forward is attention_forward.cuh (flash-attention style, lse [B, Hq, T] saved). Backward
// recomputes the probabilities from q·k and that lse, FlashAttention-2 style, in three
// kernels that never form [T, T]:
//  1. delta[b, h, t] = dout · out of each query row (the softmax-backward correction).
//  2. dq: one warp per query row (eight per block) walks the key tiles it sees and adds
//     scale · Σ_j dS_tj k_j into its q row of dqkv.
//  3. dk, dv: one block per (sequence, kv head, 32-key tile) walks every query head of its
//     group and every query row that sees the tile, in order, eight rows at a time, and keeps
//     the tile's dk and dv in f32 registers (each thread owns fixed (key, channel) elements).
//     One owner per kv-head gradient means the q heads sharing it are summed in a fixed
//     order, without atomics, so backward is bit-identical run to run.
// dq and dk/dv are disjoint parts of dqkv, so kernels 2 and 3 never write the same memory.
//
// bf16 with head_dim 64 or 128 goes to the tensor-core kernels instead (attention_tc.h);
// LOOM_CUDA_ATTENTION=simt in the environment keeps every call on the kernels here (for
// comparison: bench-attention).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "core/kernels/cuda/attention_forward.cuh"
#include "core/kernels/cuda/attention_tc.h"
#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = kAttnRowsPerBlock * 32;
constexpr int kOwnedPerThread = kAttnKeyTile * kAttnMaxD / kThreads;  // dk/dv elements per thread

struct Geometry {
  int seq, q_heads, kv_heads, head_dim;
  std::int64_t width;
  float scale;
};

// Grid-stride over rows r = (b * T + t) * Hq + h, one warp each.
template <typename T>
__global__ void attention_delta_kernel(const T* dout, const T* out, float* delta, std::int64_t rows, int seq,
                                       int q_heads, int head_dim) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += warps) {
    float s = 0.0f;
    for (int d = lane; d < head_dim; d += 32) s += load(dout + r * head_dim + d) * load(out + r * head_dim + d);
    s = warp_sum(s);
    if (lane == 0) {
      const std::int64_t h = r % q_heads;
      const std::int64_t bt = r / q_heads;
      const std::int64_t b = bt / seq;
      const std::int64_t t = bt % seq;
      delta[(b * q_heads + h) * seq + t] = s;
    }
  }
}

// Grid (ceil(T / 8), Hq, B), block 256.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(const T* qkv, const T* dout, const float* lse, const float* delta, T* dqkv, Geometry geo) {
  __shared__ float k_tile[kAttnKeyTile][kAttnMaxD + 1];
  __shared__ float v_tile[kAttnKeyTile][kAttnMaxD + 1];
  __shared__ float q_rows[kAttnRowsPerBlock][kAttnMaxD];
  __shared__ float do_rows[kAttnRowsPerBlock][kAttnMaxD];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / (geo.q_heads / geo.kv_heads);
  const int D = geo.head_dim;
  const int seq = geo.seq;
  const std::int64_t first_row = static_cast<std::int64_t>(blockIdx.x) * kAttnRowsPerBlock;
  const std::int64_t t = first_row + warp;
  const bool active = t < seq;
  const std::int64_t row_index = (static_cast<std::int64_t>(b) * geo.q_heads + h) * seq + t;
  const std::int64_t token = static_cast<std::int64_t>(b) * seq + t;
  float row_lse = 0.0f, row_delta = 0.0f;
  if (active) {
    const T* q = qkv + token * geo.width + static_cast<std::int64_t>(h) * D;
    const T* dO = dout + (token * geo.q_heads + h) * D;
    for (int d = lane; d < D; d += 32) {
      q_rows[warp][d] = geo.scale * load(q + d);
      do_rows[warp][d] = load(dO + d);
    }
    row_lse = lse[row_index];
    row_delta = delta[row_index];
  }
  const T* kg = qkv + static_cast<std::int64_t>(b) * seq * geo.width + static_cast<std::int64_t>(geo.q_heads + g) * D;
  const T* vg = kg + static_cast<std::int64_t>(geo.kv_heads) * D;
  const std::int64_t last_row = first_row + kAttnRowsPerBlock - 1 < seq ? first_row + kAttnRowsPerBlock - 1 : seq - 1;
  const std::int64_t keys_end = last_row + 1;
  float acc[kAttnPerLane] = {};
  for (std::int64_t j0 = 0; j0 < keys_end; j0 += kAttnKeyTile) {
    __syncthreads();
    for (int e = threadIdx.x; e < kAttnKeyTile * D; e += blockDim.x) {
      const int jj = e / D;
      const int d = e - jj * D;
      const std::int64_t j = j0 + jj;
      const bool inside = j < keys_end;
      k_tile[jj][d] = inside ? load(kg + j * geo.width + d) : 0.0f;
      v_tile[jj][d] = inside ? load(vg + j * geo.width + d) : 0.0f;
    }
    __syncthreads();
    if (!active || j0 > t) continue;  // warp-uniform
    const std::int64_t j = j0 + lane;
    float ds = 0.0f;
    if (j <= t) {
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < D; ++d) {
        s += q_rows[warp][d] * k_tile[lane][d];
        dp += do_rows[warp][d] * v_tile[lane][d];
      }
      const float p = expf(s - row_lse);
      ds = p * (dp - row_delta);
    }
    for (int jj = 0; jj < kAttnKeyTile; ++jj) {
      const float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
      for (int i = 0; i < kAttnPerLane; ++i) {
        const int c = lane + 32 * i;
        if (c < D) acc[i] += dsj * k_tile[jj][c];
      }
    }
  }
  if (!active) return;
  T* dq = dqkv + token * geo.width + static_cast<std::int64_t>(h) * D;
#pragma unroll
  for (int i = 0; i < kAttnPerLane; ++i) {
    const int c = lane + 32 * i;
    if (c < D) store(dq + c, load(dq + c) + geo.scale * acc[i]);
  }
}

// Grid (ceil(T / 32), Hkv, B), block 256.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(const T* qkv, const T* dout, const float* lse, const float* delta, T* dqkv, Geometry geo) {
  __shared__ float k_tile[kAttnKeyTile][kAttnMaxD + 1];
  __shared__ float v_tile[kAttnKeyTile][kAttnMaxD + 1];
  __shared__ float q_rows[kAttnRowsPerBlock][kAttnMaxD];
  __shared__ float do_rows[kAttnRowsPerBlock][kAttnMaxD];
  __shared__ float p_block[kAttnRowsPerBlock][kAttnKeyTile];
  __shared__ float ds_block[kAttnRowsPerBlock][kAttnKeyTile];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.z;
  const int g = blockIdx.y;
  const int D = geo.head_dim;
  const int seq = geo.seq;
  const int group = geo.q_heads / geo.kv_heads;
  const std::int64_t j0 = static_cast<std::int64_t>(blockIdx.x) * kAttnKeyTile;
  const std::int64_t seq_base = static_cast<std::int64_t>(b) * seq;
  const std::int64_t k_offset = static_cast<std::int64_t>(geo.q_heads + g) * D;
  const std::int64_t v_offset = static_cast<std::int64_t>(geo.q_heads + geo.kv_heads + g) * D;
  for (int e = threadIdx.x; e < kAttnKeyTile * D; e += blockDim.x) {
    const int jj = e / D;
    const int d = e - jj * D;
    const std::int64_t j = j0 + jj;
    const bool inside = j < seq;
    k_tile[jj][d] = inside ? load(qkv + (seq_base + j) * geo.width + k_offset + d) : 0.0f;
    v_tile[jj][d] = inside ? load(qkv + (seq_base + j) * geo.width + v_offset + d) : 0.0f;
  }
  float dk[kOwnedPerThread] = {};
  float dv[kOwnedPerThread] = {};
  const int owned = kAttnKeyTile * D;
  for (int h = g * group; h < (g + 1) * group; ++h) {
    for (std::int64_t t0 = j0; t0 < seq; t0 += kAttnRowsPerBlock) {
      __syncthreads();  // the tile is loaded / the previous rows are consumed
      const std::int64_t t = t0 + warp;
      const bool row_ok = t < seq;
      const std::int64_t token = seq_base + t;
      for (int d = lane; d < D; d += 32) {
        q_rows[warp][d] = row_ok ? geo.scale * load(qkv + token * geo.width + static_cast<std::int64_t>(h) * D + d) : 0.0f;
        do_rows[warp][d] = row_ok ? load(dout + (token * geo.q_heads + h) * D + d) : 0.0f;
      }
      __syncwarp();
      const std::int64_t j = j0 + lane;
      float p = 0.0f, ds = 0.0f;
      if (row_ok && j < seq && j <= t) {
        const std::int64_t row_index = (static_cast<std::int64_t>(b) * geo.q_heads + h) * seq + t;
        float s = 0.0f, dp = 0.0f;
        for (int d = 0; d < D; ++d) {
          s += q_rows[warp][d] * k_tile[lane][d];
          dp += do_rows[warp][d] * v_tile[lane][d];
        }
        p = expf(s - lse[row_index]);
        ds = p * (dp - delta[row_index]);
      }
      p_block[warp][lane] = p;
      ds_block[warp][lane] = ds;
      __syncthreads();
#pragma unroll
      for (int i = 0; i < kOwnedPerThread; ++i) {
        const int e = threadIdx.x + kThreads * i;
        if (e < owned) {
          const int jj = e / D;
          const int c = e - jj * D;
          for (int w = 0; w < kAttnRowsPerBlock; ++w) {
            dv[i] += p_block[w][jj] * do_rows[w][c];
            dk[i] += ds_block[w][jj] * q_rows[w][c];
          }
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kOwnedPerThread; ++i) {
    const int e = threadIdx.x + kThreads * i;
    if (e >= owned) continue;
    const int jj = e / D;
    const int c = e - jj * D;
    const std::int64_t j = j0 + jj;
    if (j >= seq) continue;
    T* dk_row = dqkv + (seq_base + j) * geo.width + k_offset;
    T* dv_row = dqkv + (seq_base + j) * geo.width + v_offset;
    store(dk_row + c, load(dk_row + c) + dk[i]);
    store(dv_row + c, load(dv_row + c) + dv[i]);
  }
}

void check_outputs(const char* op, const AttentionShape& s, const char* out_name, const Tensor& out, DType dtype,
                   const Tensor& lse) {
  require_numel(op, out_name, out, dtype, s.batch * s.seq * s.q_heads * s.head_dim,
                "[batch, seq, q_heads * head_dim] = [" + std::to_string(s.batch) + ", " + std::to_string(s.seq) +
                    ", " + std::to_string(s.q_heads * s.head_dim) + "]");
  require_numel(op, "lse", lse, DType::F32, s.batch * s.q_heads * s.seq,
                "[batch, q_heads, seq] = [" + std::to_string(s.batch) + ", " + std::to_string(s.q_heads) + ", " +
                    std::to_string(s.seq) + "]");
}

void check_grid(const char* op, const AttentionShape& s) {
  if (s.batch > 65535 || s.q_heads > 65535 || s.seq > (std::int64_t{1} << 30)) {
    fail(op, "batch " + std::to_string(s.batch) + ", q_heads " + std::to_string(s.q_heads) + " or seq " +
                 std::to_string(s.seq) + " exceeds the CUDA grid (batch and heads at most 65535)");
  }
}

// The tensor-core kernels take bf16 with head_dim 64 or 128 and 16-byte aligned tensors.
bool use_tensor_cores(DType dtype, const AttentionShape& s, std::initializer_list<const void*> tensors) {
  static const bool simt_only = [] {
    const char* choice = std::getenv("LOOM_CUDA_ATTENTION");
    return choice != nullptr && std::string(choice) == "simt";
  }();
  if (simt_only || !tensor_core_attention(dtype, s)) return false;
  for (const void* p : tensors) {
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

}  // namespace

void CudaBackend::attention_forward(const Tensor& qkv, const AttentionShape& shape, Tensor& out, Tensor& lse) {
  const char* op = "attention_forward";
  const DType dtype = require_attention(op, shape, "qkv", qkv);
  check_outputs(op, shape, "out", out, dtype, lse);
  check_grid(op, shape);
  if (use_tensor_cores(dtype, shape, {qkv.raw(), out.raw()})) {
    attention_forward_tc(ptr<__nv_bfloat16>(qkv), shape, ptr<__nv_bfloat16>(out), ptr<float>(lse), stream_);
    return;
  }
  const std::int64_t width = qkv_width(shape);
  const KeyValueRows rows{shape.seq * width, shape.head_dim, width};
  const dim3 grid(static_cast<unsigned>((shape.seq + kAttnRowsPerBlock - 1) / kAttnRowsPerBlock),
                  static_cast<unsigned>(shape.q_heads), static_cast<unsigned>(shape.batch));
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* base = ptr<T>(qkv);
    attention_forward_kernel<T><<<grid, kThreads, 0, stream_>>>(
        base, base + shape.q_heads * shape.head_dim, base + (shape.q_heads + shape.kv_heads) * shape.head_dim, rows,
        ptr<T>(out), ptr<float>(lse), static_cast<int>(shape.seq), static_cast<int>(shape.q_heads),
        static_cast<int>(shape.kv_heads), static_cast<int>(shape.head_dim), width, 0, scale);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                     const AttentionShape& shape, Tensor& dqkv) {
  const char* op = "attention_backward";
  const DType dtype = require_attention(op, shape, "qkv", qkv);
  require_attention(op, shape, "dqkv", dqkv);
  require(op, "dqkv", dqkv, dtype);
  check_outputs(op, shape, "out", out, dtype, lse);
  require_numel(op, "dout", dout, dtype, out.numel(), "out " + out.describe());
  check_grid(op, shape);
  if (use_tensor_cores(dtype, shape, {dout.raw(), qkv.raw(), out.raw(), dqkv.raw()})) {
    // Freed in stream order after the kernels that use it, like `delta` below.
    Tensor scratch = Tensor::empty({attention_backward_tc_scratch(shape)}, DType::F32, Device::CUDA);
    attention_backward_tc(ptr<__nv_bfloat16>(dout), ptr<__nv_bfloat16>(qkv), ptr<__nv_bfloat16>(out), ptr<float>(lse),
                          shape, ptr<__nv_bfloat16>(dqkv), ptr<float>(scratch), stream_);
    return;
  }
  const Geometry geo{static_cast<int>(shape.seq), static_cast<int>(shape.q_heads), static_cast<int>(shape.kv_heads),
                     static_cast<int>(shape.head_dim), qkv_width(shape),
                     1.0f / std::sqrt(static_cast<float>(shape.head_dim))};
  const std::int64_t rows = shape.batch * shape.seq * shape.q_heads;
  Tensor delta = Tensor::empty({rows}, DType::F32, Device::CUDA);
  const dim3 dq_grid(static_cast<unsigned>((shape.seq + kAttnRowsPerBlock - 1) / kAttnRowsPerBlock),
                     static_cast<unsigned>(shape.q_heads), static_cast<unsigned>(shape.batch));
  const dim3 dkdv_grid(static_cast<unsigned>((shape.seq + kAttnKeyTile - 1) / kAttnKeyTile),
                       static_cast<unsigned>(shape.kv_heads), static_cast<unsigned>(shape.batch));
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    const unsigned delta_blocks = grid_for(rows, kAttnRowsPerBlock);
    attention_delta_kernel<T><<<delta_blocks, kThreads, 0, stream_>>>(ptr<T>(dout), ptr<T>(out), ptr<float>(delta),
                                                                      rows, geo.seq, geo.q_heads, geo.head_dim);
    LOOM_CUDA_CHECK_LAUNCH();
    attention_dq_kernel<T><<<dq_grid, kThreads, 0, stream_>>>(ptr<T>(qkv), ptr<T>(dout), ptr<float>(lse),
                                                              ptr<float>(delta), ptr<T>(dqkv), geo);
    LOOM_CUDA_CHECK_LAUNCH();
    attention_dkdv_kernel<T><<<dkdv_grid, kThreads, 0, stream_>>>(ptr<T>(qkv), ptr<T>(dout), ptr<float>(lse),
                                                                  ptr<float>(delta), ptr<T>(dqkv), geo);
    LOOM_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace loom::cuda
