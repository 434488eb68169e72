// The attention forward kernel shared by attention.cu (causal self-attention over qkv) and
// attention_cached.cu (new queries over a key/value cache): flash-attention style, one warp
// per query row, eight rows per block sharing each 32-key tile of K and V in shared memory.
//
// Per tile, lane j scores key j against its warp's query (q pre-scaled by 1/sqrt(D), as the
// CPU backend does), the warp's online softmax rescales the running sum and output, and the
// probabilities are broadcast lane to lane into the weighted sum of V, each lane owning the
// channels lane, lane + 32, lane + 64, lane + 96 (head_dim <= 128). Everything accumulates
// in f32 in a fixed order: results are bit-identical run to run.
//
// Keys are addressed as base + b * batch_stride + g * head_stride + j * row_stride, which
// covers both the packed qkv ([B, T, (Hq + 2Hkv) D]) and a cache ([B, Hkv, capacity, D]).
// Query t of a sequence sits at absolute position `position + t` and sees keys [0, position + t].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda::detail {

inline constexpr int kAttnKeyTile = 32;
inline constexpr int kAttnRowsPerBlock = 8;  // warps per block, one query row each
inline constexpr int kAttnMaxD = 128;
inline constexpr int kAttnPerLane = kAttnMaxD / 32;

struct KeyValueRows {
  std::int64_t batch_stride = 0;
  std::int64_t head_stride = 0;
  std::int64_t row_stride = 0;
};

// Grid (ceil(T / 8), Hq, B), block 256. out [B, T, Hq·D]; lse [B, Hq, T] or nullptr.
template <typename T>
__global__ void __launch_bounds__(kAttnRowsPerBlock * 32)
    attention_forward_kernel(const T* qkv, const T* keys, const T* values, KeyValueRows kv, T* out, float* lse,
                             int seq, int q_heads, int kv_heads, int head_dim, std::int64_t width,
                             std::int64_t position, float scale) {
  __shared__ float k_tile[kAttnKeyTile][kAttnMaxD + 1];  // +1: lane j reads row j without bank conflicts
  __shared__ float v_tile[kAttnKeyTile][kAttnMaxD];
  __shared__ float q_rows[kAttnRowsPerBlock][kAttnMaxD];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / (q_heads / kv_heads);
  const int D = head_dim;
  const std::int64_t first_row = static_cast<std::int64_t>(blockIdx.x) * kAttnRowsPerBlock;
  const std::int64_t t = first_row + warp;
  const bool active = t < seq;
  const T* q = qkv + (static_cast<std::int64_t>(b) * seq + t) * width + static_cast<std::int64_t>(h) * D;
  if (active) {
    for (int d = lane; d < D; d += 32) q_rows[warp][d] = scale * load(q + d);
  }
  const T* kg = keys + b * kv.batch_stride + g * kv.head_stride;
  const T* vg = values + b * kv.batch_stride + g * kv.head_stride;
  const std::int64_t last_row = first_row + kAttnRowsPerBlock - 1 < seq ? first_row + kAttnRowsPerBlock - 1 : seq - 1;
  const std::int64_t keys_end = position + last_row + 1;  // keys the block's last row sees
  const std::int64_t visible = position + t + 1;          // keys this warp's row sees

  float row_max = -INFINITY;
  float row_sum = 0.0f;
  float acc[kAttnPerLane] = {};
  for (std::int64_t j0 = 0; j0 < keys_end; j0 += kAttnKeyTile) {
    __syncthreads();  // every warp is done with the previous tile (and q_rows is written)
    for (int e = threadIdx.x; e < kAttnKeyTile * D; e += blockDim.x) {
      const int jj = e / D;
      const int d = e - jj * D;
      const std::int64_t j = j0 + jj;
      const bool inside = j < keys_end;
      k_tile[jj][d] = inside ? load(kg + j * kv.row_stride + d) : 0.0f;
      v_tile[jj][d] = inside ? load(vg + j * kv.row_stride + d) : 0.0f;
    }
    __syncthreads();
    if (!active || j0 >= visible) continue;  // warp-uniform
    const std::int64_t j = j0 + lane;
    float score = -INFINITY;
    if (j < visible) {
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) dot += q_rows[warp][d] * k_tile[lane][d];
      score = dot;
    }
    const float new_max = fmaxf(row_max, warp_max(score));  // finite: key j0 is visible
    const float p = j < visible ? expf(score - new_max) : 0.0f;
    const float rescale = expf(row_max - new_max);  // 0 on the first tile
    row_sum = row_sum * rescale + warp_sum(p);
#pragma unroll
    for (int i = 0; i < kAttnPerLane; ++i) acc[i] *= rescale;
    for (int jj = 0; jj < kAttnKeyTile; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
      for (int i = 0; i < kAttnPerLane; ++i) {
        const int c = lane + 32 * i;
        if (c < D) acc[i] += pj * v_tile[jj][c];
      }
    }
    row_max = new_max;
  }
  if (!active) return;
  const float inv_sum = 1.0f / row_sum;
  T* o = out + ((static_cast<std::int64_t>(b) * seq + t) * q_heads + h) * D;
#pragma unroll
  for (int i = 0; i < kAttnPerLane; ++i) {
    const int c = lane + 32 * i;
    if (c < D) store(o + c, acc[i] * inv_sum);
  }
  if (lse != nullptr && lane == 0) lse[(static_cast<std::int64_t>(b) * q_heads + h) * seq + t] = row_max + logf(row_sum);
}

}  // namespace loom::cuda::detail
