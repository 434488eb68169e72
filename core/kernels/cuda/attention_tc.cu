// Tensor-core causal attention (attention_tc.h), FlashAttention-2 style, on nvcuda::wmma
// 16x16x16 bf16 fragments with f32 accumulators. Fragment layouts are opaque, so all per-row
// work (scale, causal mask, softmax, rescaling) goes through f32 strips in shared memory.
//
// Blocks are 4 warps; a tile is 64 rows (queries or keys), each warp owns 16 of them.
//  * Forward, grid (T/64, Hq, B), heaviest query tiles first: Q tile, then for every causal
//    64-key tile: K, V to smem; per warp S = Q K^T (16 x 64) into an f32 strip; lanes 2r and
//    2r+1 run row r's online softmax (log2 domain, exp2f) and rescale row r of O (f32 in smem);
//    P goes to smem as bf16 and O += P V on the tensor cores. out = O / l, lse = m + ln l.
//    On the diagonal tile warp w only touches key chunks 0..w: the rest is masked for it.
//  * Backward: delta = dout·out per row (f32, scratch), then two passes without atomics:
//    A, grid (T/64, Hkv, B): a key tile keeps dK and dV of its 64 keys in fragments and walks
//    the q heads of its group and the query tiles that see it, in order, recomputing
//    S^T = K Q^T, dP^T = V dO^T, P^T = exp(S^T scale - lse), dS^T = P^T (dP^T - delta),
//    dV += P^T dO, dK += dS^T Q; B, grid (T/64, Hq, B): a query tile walks its causal key tiles
//    and accumulates dQ += dS K. Each gradient element has one owner summing in a fixed order,
//    so results are bit-identical run to run; each is rounded to bf16 once, added into dqkv.
// Rows and keys past T are zero-filled in smem and masked, so any T >= 1 works.
#include "core/kernels/cuda/attention_tc.h"

#include <cuda_bf16.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda::detail {

namespace {

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

constexpr int kTile = 64;  // query rows per block, keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kChunks = kTile / 16;  // 16-wide wmma chunks per tile
// Strip strides: +4 floats / +8 bf16 (16 bytes) stagger the banks; wmma needs ldm % 16 bytes.
constexpr int kScoreLd = kTile + 4;
constexpr int kProbLd = kTile + 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFullMask = 0xffffffffu;

using AccFrag = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
using RowA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using RowB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using ColB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;

struct Geometry {
  int seq, q_heads, kv_heads, group;
  std::int64_t width;  // qkv elements per token, (Hq + 2 Hkv) D
  float scale;         // 1/sqrt(D)
  float scale_log2;    // scale · log2(e): probabilities go through exp2f
};

constexpr std::size_t align128(std::size_t bytes) { return (bytes + 127) / 128 * 128; }

// A [64, D] bf16 tile (row stride D + 8), a [64, 68] f32 strip, a [64, 72] bf16 strip and a
// [64, D + 4] f32 tile; every region starts 128-byte aligned (wmma wants 32).
template <int D>
struct Sizes {
  static constexpr int ld = D + 8;
  static constexpr int ld_acc = D + 4;
  static constexpr std::size_t tile = align128(sizeof(bf16) * kTile * ld);
  static constexpr std::size_t scores = align128(sizeof(float) * kTile * kScoreLd);
  static constexpr std::size_t probs = align128(sizeof(bf16) * kTile * kProbLd);
  static constexpr std::size_t acc = align128(sizeof(float) * kTile * ld_acc);
  static constexpr std::size_t rows = align128(sizeof(float) * kTile);
  static_assert(2 * tile >= acc, "two bf16 tiles must hold the f32 staging of a gradient tile");
};

// Forward: Q, K, V tiles, S strip, P strip, O accumulator.
template <int D>
constexpr std::size_t forward_smem() {
  using S = Sizes<D>;
  return 3 * S::tile + S::scores + S::probs + S::acc;
}
// Backward passes: K, V, Q, dO tiles, S and dP strips, P and dS strips, lse and delta rows.
template <int D>
constexpr std::size_t backward_smem() {
  using S = Sizes<D>;
  return 4 * S::tile + 2 * S::scores + 2 * S::probs + 2 * S::rows;
}

// dst[r][c] = src[r * stride + c] for r < rows, zeros for r in [rows, 64); c < D. 16-byte moves.
template <int D>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* __restrict__ src, std::int64_t stride, int rows) {
  constexpr int kMoves = D / 8;
  for (int i = threadIdx.x; i < kTile * kMoves; i += kThreads) {
    const int r = i / kMoves;
    const int c = (i - r * kMoves) * 8;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < rows) v = __ldg(reinterpret_cast<const uint4*>(src + r * stride + c));
    *reinterpret_cast<uint4*>(dst + r * Sizes<D>::ld + c) = v;
  }
}

// lse (as log2) and delta of query rows q0.. of head h into smem; rows past T get 0 (masked).
__device__ __forceinline__ void load_row_stats(float* lse2, float* delta_rows, const float* __restrict__ lse,
                                               const float* __restrict__ delta, std::int64_t head_rows, int q0,
                                               int seq) {
  const int i = static_cast<int>(threadIdx.x);
  if (i < kTile) {
    lse2[i] = q0 + i < seq ? lse[head_rows + q0 + i] * kLog2e : 0.0f;
    delta_rows[i] = q0 + i < seq ? delta[head_rows + q0 + i] : 0.0f;
  }
}

// dst[r] += alpha · staged[r] (bf16, rounded once) for the warp's 16 staged rows that exist;
// row r of dst starts at dst + (first_row + r) * stride.
template <int D>
__device__ __forceinline__ void add_rows(bf16* dst, std::int64_t stride, int first_row, int seq, const float* staged,
                                         float alpha) {
  const int lane = threadIdx.x & 31;
  for (int r = 0; r < 16 && first_row + r < seq; ++r) {
    bf16* row = dst + static_cast<std::int64_t>(first_row + r) * stride;
    const float* src = staged + r * Sizes<D>::ld_acc;
    for (int c = 2 * lane; c < D; c += 64) {
      auto* pair = reinterpret_cast<__nv_bfloat162*>(row + c);
      const float2 old = __bfloat1622float2(*pair);
      *pair = __floats2bfloat162_rn(old.x + alpha * src[c], old.y + alpha * src[c + 1]);
    }
  }
}

// Grid (ceil(T / 64), Hq, B), block 128, forward_smem<D>() bytes of dynamic smem.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_forward_tc_kernel(const bf16* __restrict__ qkv, bf16* __restrict__ out, float* __restrict__ lse,
                                Geometry geo) {
  using S = Sizes<D>;
  constexpr int ld = S::ld;
  constexpr int ld_acc = S::ld_acc;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_tile = reinterpret_cast<bf16*>(smem);
  bf16* k_tile = reinterpret_cast<bf16*>(smem + S::tile);
  bf16* v_tile = reinterpret_cast<bf16*>(smem + 2 * S::tile);
  float* s_strip = reinterpret_cast<float*>(smem + 3 * S::tile);
  bf16* p_strip = reinterpret_cast<bf16*>(smem + 3 * S::tile + S::scores);
  float* o_acc = reinterpret_cast<float*>(smem + 3 * S::tile + S::scores + S::probs);

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / geo.group;
  const int q0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kTile;  // the longest causal rows start first
  const std::int64_t seq_base = static_cast<std::int64_t>(b) * geo.seq;
  const bf16* k_base = qkv + seq_base * geo.width + static_cast<std::int64_t>(geo.q_heads + g) * D;
  const bf16* v_base = k_base + static_cast<std::int64_t>(geo.kv_heads) * D;

  load_tile<D>(q_tile, qkv + (seq_base + q0) * geo.width + static_cast<std::int64_t>(h) * D, geo.width,
               min(kTile, geo.seq - q0));
  for (int i = threadIdx.x; i < kTile * ld_acc; i += kThreads) o_acc[i] = 0.0f;
  __syncthreads();
  RowA q_frag[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wmma::load_matrix_sync(q_frag[kk], q_tile + warp * 16 * ld + kk * 16, ld);

  // Lanes 2r and 2r+1 own row r of the warp's 16: keys and channels of parity `half`.
  const int row = lane >> 1;
  const int half = lane & 1;
  const int t = q0 + warp * 16 + row;
  float* s_row = s_strip + (warp * 16 + row) * kScoreLd;
  bf16* p_row = p_strip + (warp * 16 + row) * kProbLd;
  float* o_row = o_acc + (warp * 16 + row) * ld_acc;
  float row_max = -INFINITY;  // log2 domain
  float row_sum = 0.0f;

  for (int j0 = 0; j0 <= q0; j0 += kTile) {
    // On the diagonal tile the warp's rows see key chunks 0..warp only.
    const int chunks = j0 == q0 ? warp + 1 : kChunks;
    __syncthreads();  // every warp is done with the previous K and V
    const int keys = min(kTile, geo.seq - j0);
    load_tile<D>(k_tile, k_base + static_cast<std::int64_t>(j0) * geo.width, geo.width, keys);
    load_tile<D>(v_tile, v_base + static_cast<std::int64_t>(j0) * geo.width, geo.width, keys);
    __syncthreads();

    for (int c = 0; c < chunks; ++c) {
      AccFrag s_frag;
      wmma::fill_fragment(s_frag, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        ColB k_frag;  // K^T: element (d, key) at k_tile[key * ld + d]
        wmma::load_matrix_sync(k_frag, k_tile + c * 16 * ld + kk * 16, ld);
        wmma::mma_sync(s_frag, q_frag[kk], k_frag, s_frag);
      }
      wmma::store_matrix_sync(s_strip + warp * 16 * kScoreLd + c * 16, s_frag, kScoreLd, wmma::mem_row_major);
    }
    __syncwarp();

    // Masked entries use a select: chunks this warp skipped hold stale values.
    float scores[kTile / 2];
    float tile_max = -INFINITY;
#pragma unroll
    for (int i = 0; i < kTile / 2; ++i) {
      const int jj = 2 * i + half;
      scores[i] = j0 + jj <= t ? s_row[jj] * geo.scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, scores[i]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
    const float new_max = fmaxf(row_max, tile_max);  // finite: key j0 is visible to every row
    const float rescale = exp2f(row_max - new_max);  // 0 on the first tile
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kTile / 2; ++i) {
      const float p = exp2f(scores[i] - new_max);  // exp2(-inf) = 0 for masked keys
      sum += p;
      p_row[2 * i + half] = __float2bfloat16_rn(p);
    }
    sum += __shfl_xor_sync(kFullMask, sum, 1);
    row_sum = row_sum * rescale + sum;
    row_max = new_max;
    for (int c = half; c < D; c += 2) o_row[c] *= rescale;
    __syncwarp();

    // Unrolled with guards, so that p_frag stays in registers.
    RowA p_frag[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      if (c < chunks) wmma::load_matrix_sync(p_frag[c], p_strip + warp * 16 * kProbLd + c * 16, kProbLd);
    }
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      float* o_ptr = o_acc + warp * 16 * ld_acc + n * 16;
      AccFrag o_frag;
      wmma::load_matrix_sync(o_frag, o_ptr, ld_acc, wmma::mem_row_major);
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        if (c >= chunks) continue;
        RowB v_frag;
        wmma::load_matrix_sync(v_frag, v_tile + c * 16 * ld + n * 16, ld);
        wmma::mma_sync(o_frag, p_frag[c], v_frag, o_frag);
      }
      wmma::store_matrix_sync(o_ptr, o_frag, ld_acc, wmma::mem_row_major);
    }
    __syncwarp();
  }

  if (half == 0 && t < geo.seq) {
    lse[(static_cast<std::int64_t>(b) * geo.q_heads + h) * geo.seq + t] = (row_max + log2f(row_sum)) * kLn2;
  }
  const float inv_sum = 1.0f / row_sum;
  for (int r = 0; r < 16; ++r) {
    const float inv = __shfl_sync(kFullMask, inv_sum, 2 * r);
    const int tr = q0 + warp * 16 + r;
    if (tr >= geo.seq) break;  // warp-uniform
    const float* src = o_acc + (warp * 16 + r) * ld_acc;
    bf16* dst = out + ((seq_base + tr) * geo.q_heads + h) * D;
    for (int c = 2 * lane; c < D; c += 64) {
      *reinterpret_cast<__nv_bfloat162*>(dst + c) = __floats2bfloat162_rn(src[c] * inv, src[c + 1] * inv);
    }
  }
}

// delta[b, h, t] = dout · out of each query row. Grid-stride, one warp per row of out.
template <int D>
__global__ void attention_delta_tc_kernel(const bf16* __restrict__ dout, const bf16* __restrict__ out,
                                          float* __restrict__ delta, std::int64_t rows, int seq, int q_heads) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
       r += warps) {
    float s = 0.0f;
    for (int c = 2 * lane; c < D; c += 64) {
      const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dout + r * D + c));
      const float2 y = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(out + r * D + c));
      s += x.x * y.x + x.y * y.y;
    }
    s = warp_sum(s);
    if (lane == 0) {
      const std::int64_t h = r % q_heads;
      const std::int64_t bt = r / q_heads;
      delta[((bt / seq) * q_heads + h) * seq + bt % seq] = s;
    }
  }
}

// The backward passes' shared memory, carved the same way by both.
template <int D>
struct BackwardTiles {
  bf16 *k, *v, *q, *dout;
  float *s, *dp;     // [64, 68]: S (or S^T) and dP (or dP^T) strips
  bf16 *p, *ds;      // [64, 72]: P^T and dS^T (pass A) or dS (pass B)
  float *lse2, *delta;
  __device__ explicit BackwardTiles(unsigned char* smem) {
    using S = Sizes<D>;
    k = reinterpret_cast<bf16*>(smem);
    v = reinterpret_cast<bf16*>(smem + S::tile);
    q = reinterpret_cast<bf16*>(smem + 2 * S::tile);
    dout = reinterpret_cast<bf16*>(smem + 3 * S::tile);
    unsigned char* rest = smem + 4 * S::tile;
    s = reinterpret_cast<float*>(rest);
    dp = reinterpret_cast<float*>(rest + S::scores);
    p = reinterpret_cast<bf16*>(rest + 2 * S::scores);
    ds = reinterpret_cast<bf16*>(rest + 2 * S::scores + S::probs);
    lse2 = reinterpret_cast<float*>(rest + 2 * S::scores + 2 * S::probs);
    delta = reinterpret_cast<float*>(rest + 2 * S::scores + 2 * S::probs + S::rows);
  }
};

// Pass A: dK, dV. Grid (ceil(T / 64), Hkv, B), block 128, backward_smem<D>() bytes.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_tc_kernel(const bf16* __restrict__ qkv, const bf16* __restrict__ dout,
                             const float* __restrict__ lse, const float* __restrict__ delta,
                             bf16* __restrict__ dqkv, Geometry geo) {
  using S = Sizes<D>;
  constexpr int ld = S::ld;
  extern __shared__ __align__(128) unsigned char smem[];
  const BackwardTiles<D> tiles(smem);
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.z;
  const int g = blockIdx.y;
  const int j0 = static_cast<int>(blockIdx.x) * kTile;  // the key tiles that see the most queries start first
  const std::int64_t seq_base = static_cast<std::int64_t>(b) * geo.seq;
  const std::int64_t k_offset = static_cast<std::int64_t>(geo.q_heads + g) * D;
  const std::int64_t v_offset = static_cast<std::int64_t>(geo.q_heads + geo.kv_heads + g) * D;
  const std::int64_t out_stride = static_cast<std::int64_t>(geo.q_heads) * D;
  const int keys = min(kTile, geo.seq - j0);
  load_tile<D>(tiles.k, qkv + (seq_base + j0) * geo.width + k_offset, geo.width, keys);
  load_tile<D>(tiles.v, qkv + (seq_base + j0) * geo.width + v_offset, geo.width, keys);

  AccFrag dk[D / 16], dv[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) {
    wmma::fill_fragment(dk[n], 0.0f);
    wmma::fill_fragment(dv[n], 0.0f);
  }
  const bf16* k_rows = tiles.k + warp * 16 * ld;  // the warp's 16 keys
  const bf16* v_rows = tiles.v + warp * 16 * ld;
  for (int h = g * geo.group; h < (g + 1) * geo.group; ++h) {
    const std::int64_t head_rows = (static_cast<std::int64_t>(b) * geo.q_heads + h) * geo.seq;
    for (int q0 = j0; q0 < geo.seq; q0 += kTile) {
      // On the diagonal tile query chunks before the warp's own keys see none of them.
      const int first = q0 == j0 ? warp : 0;
      __syncthreads();  // every warp is done with the previous Q, dO and row stats
      const int queries = min(kTile, geo.seq - q0);
      load_tile<D>(tiles.q, qkv + (seq_base + q0) * geo.width + static_cast<std::int64_t>(h) * D, geo.width, queries);
      load_tile<D>(tiles.dout, dout + (seq_base + q0) * out_stride + static_cast<std::int64_t>(h) * D, out_stride,
                   queries);
      load_row_stats(tiles.lse2, tiles.delta, lse, delta, head_rows, q0, geo.seq);
      __syncthreads();

      for (int c = first; c < kChunks; ++c) {
        AccFrag s_frag, dp_frag;
        wmma::fill_fragment(s_frag, 0.0f);
        wmma::fill_fragment(dp_frag, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          RowA a;
          ColB bt;  // Q^T and dO^T: element (d, query) at tile[query * ld + d]
          wmma::load_matrix_sync(a, k_rows + kk * 16, ld);
          wmma::load_matrix_sync(bt, tiles.q + c * 16 * ld + kk * 16, ld);
          wmma::mma_sync(s_frag, a, bt, s_frag);
          wmma::load_matrix_sync(a, v_rows + kk * 16, ld);
          wmma::load_matrix_sync(bt, tiles.dout + c * 16 * ld + kk * 16, ld);
          wmma::mma_sync(dp_frag, a, bt, dp_frag);
        }
        wmma::store_matrix_sync(tiles.s + warp * 16 * kScoreLd + c * 16, s_frag, kScoreLd, wmma::mem_row_major);
        wmma::store_matrix_sync(tiles.dp + warp * 16 * kScoreLd + c * 16, dp_frag, kScoreLd, wmma::mem_row_major);
      }
      __syncwarp();

      // Element (r, col) of the warp's 16 x 64 strip: key j0 + 16 warp + r, query q0 + col.
#pragma unroll 4
      for (int i = 0; i < 2 * 16; ++i) {
        const int r = i >> 1;
        const int col = lane + 32 * (i & 1);
        const int j = j0 + warp * 16 + r;
        const int t = q0 + col;
        const int at = (warp * 16 + r) * kScoreLd + col;
        float p = 0.0f, ds = 0.0f;
        if (j <= t && t < geo.seq) {
          p = exp2f(tiles.s[at] * geo.scale_log2 - tiles.lse2[col]);
          ds = p * (tiles.dp[at] - tiles.delta[col]);
        }
        tiles.p[(warp * 16 + r) * kProbLd + col] = __float2bfloat16_rn(p);
        tiles.ds[(warp * 16 + r) * kProbLd + col] = __float2bfloat16_rn(ds);
      }
      __syncwarp();

      for (int c = first; c < kChunks; ++c) {
        RowA p_frag, ds_frag;
        wmma::load_matrix_sync(p_frag, tiles.p + warp * 16 * kProbLd + c * 16, kProbLd);
        wmma::load_matrix_sync(ds_frag, tiles.ds + warp * 16 * kProbLd + c * 16, kProbLd);
#pragma unroll
        for (int n = 0; n < D / 16; ++n) {
          RowB rows;  // dO and Q: element (query, d) at tile[query * ld + d]
          wmma::load_matrix_sync(rows, tiles.dout + c * 16 * ld + n * 16, ld);
          wmma::mma_sync(dv[n], p_frag, rows, dv[n]);
          wmma::load_matrix_sync(rows, tiles.q + c * 16 * ld + n * 16, ld);
          wmma::mma_sync(dk[n], ds_frag, rows, dk[n]);
        }
      }
    }
  }

  // Stage through the Q and dO tiles (free once every warp is past its last product).
  __syncthreads();
  float* staged = reinterpret_cast<float*>(tiles.q) + warp * 16 * S::ld_acc;
  bf16* key_rows = dqkv + seq_base * geo.width;
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::store_matrix_sync(staged + n * 16, dk[n], S::ld_acc, wmma::mem_row_major);
  __syncwarp();
  add_rows<D>(key_rows + k_offset, geo.width, j0 + warp * 16, geo.seq, staged, geo.scale);
  __syncwarp();
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::store_matrix_sync(staged + n * 16, dv[n], S::ld_acc, wmma::mem_row_major);
  __syncwarp();
  add_rows<D>(key_rows + v_offset, geo.width, j0 + warp * 16, geo.seq, staged, 1.0f);
}

// Pass B: dQ. Grid (ceil(T / 64), Hq, B), block 128, backward_smem<D>() bytes.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_dq_tc_kernel(const bf16* __restrict__ qkv, const bf16* __restrict__ dout, const float* __restrict__ lse,
                           const float* __restrict__ delta, bf16* __restrict__ dqkv, Geometry geo) {
  using S = Sizes<D>;
  constexpr int ld = S::ld;
  extern __shared__ __align__(128) unsigned char smem[];
  const BackwardTiles<D> tiles(smem);
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int g = h / geo.group;
  const int q0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kTile;  // the longest causal rows start first
  const std::int64_t seq_base = static_cast<std::int64_t>(b) * geo.seq;
  const std::int64_t out_stride = static_cast<std::int64_t>(geo.q_heads) * D;
  const bf16* k_base = qkv + seq_base * geo.width + static_cast<std::int64_t>(geo.q_heads + g) * D;
  const bf16* v_base = k_base + static_cast<std::int64_t>(geo.kv_heads) * D;
  const int queries = min(kTile, geo.seq - q0);
  load_tile<D>(tiles.q, qkv + (seq_base + q0) * geo.width + static_cast<std::int64_t>(h) * D, geo.width, queries);
  load_tile<D>(tiles.dout, dout + (seq_base + q0) * out_stride + static_cast<std::int64_t>(h) * D, out_stride,
               queries);
  load_row_stats(tiles.lse2, tiles.delta, lse, delta, (static_cast<std::int64_t>(b) * geo.q_heads + h) * geo.seq,
                 q0, geo.seq);
  __syncthreads();
  RowA q_frag[D / 16], do_frag[D / 16];
  AccFrag dq[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wmma::load_matrix_sync(q_frag[kk], tiles.q + warp * 16 * ld + kk * 16, ld);
    wmma::load_matrix_sync(do_frag[kk], tiles.dout + warp * 16 * ld + kk * 16, ld);
    wmma::fill_fragment(dq[kk], 0.0f);
  }

  for (int j0 = 0; j0 <= q0; j0 += kTile) {
    const int chunks = j0 == q0 ? warp + 1 : kChunks;
    __syncthreads();  // every warp is done with the previous K and V
    const int keys = min(kTile, geo.seq - j0);
    load_tile<D>(tiles.k, k_base + static_cast<std::int64_t>(j0) * geo.width, geo.width, keys);
    load_tile<D>(tiles.v, v_base + static_cast<std::int64_t>(j0) * geo.width, geo.width, keys);
    __syncthreads();

    for (int c = 0; c < chunks; ++c) {
      AccFrag s_frag, dp_frag;
      wmma::fill_fragment(s_frag, 0.0f);
      wmma::fill_fragment(dp_frag, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        ColB bt;  // K^T and V^T: element (d, key) at tile[key * ld + d]
        wmma::load_matrix_sync(bt, tiles.k + c * 16 * ld + kk * 16, ld);
        wmma::mma_sync(s_frag, q_frag[kk], bt, s_frag);
        wmma::load_matrix_sync(bt, tiles.v + c * 16 * ld + kk * 16, ld);
        wmma::mma_sync(dp_frag, do_frag[kk], bt, dp_frag);
      }
      wmma::store_matrix_sync(tiles.s + warp * 16 * kScoreLd + c * 16, s_frag, kScoreLd, wmma::mem_row_major);
      wmma::store_matrix_sync(tiles.dp + warp * 16 * kScoreLd + c * 16, dp_frag, kScoreLd, wmma::mem_row_major);
    }
    __syncwarp();

    // Element (r, col) of the warp's 16 x 64 strip: query q0 + 16 warp + r, key j0 + col.
#pragma unroll 4
    for (int i = 0; i < 2 * 16; ++i) {
      const int r = i >> 1;
      const int col = lane + 32 * (i & 1);
      const int t = q0 + warp * 16 + r;
      const int at = (warp * 16 + r) * kScoreLd + col;
      float ds = 0.0f;
      if (j0 + col <= t && t < geo.seq) {
        const float p = exp2f(tiles.s[at] * geo.scale_log2 - tiles.lse2[warp * 16 + r]);
        ds = p * (tiles.dp[at] - tiles.delta[warp * 16 + r]);
      }
      tiles.ds[(warp * 16 + r) * kProbLd + col] = __float2bfloat16_rn(ds);
    }
    __syncwarp();

    for (int c = 0; c < chunks; ++c) {
      RowA ds_frag;
      wmma::load_matrix_sync(ds_frag, tiles.ds + warp * 16 * kProbLd + c * 16, kProbLd);
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        RowB k_frag;  // K: element (key, d) at k[key * ld + d]
        wmma::load_matrix_sync(k_frag, tiles.k + c * 16 * ld + n * 16, ld);
        wmma::mma_sync(dq[n], ds_frag, k_frag, dq[n]);
      }
    }
  }

  // Stage through the K and V tiles (free once every warp is past its last product).
  __syncthreads();
  float* staged = reinterpret_cast<float*>(tiles.k) + warp * 16 * S::ld_acc;
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::store_matrix_sync(staged + n * 16, dq[n], S::ld_acc, wmma::mem_row_major);
  __syncwarp();
  add_rows<D>(dqkv + seq_base * geo.width + static_cast<std::int64_t>(h) * D, geo.width, q0 + warp * 16, geo.seq,
              staged, geo.scale);
}

// cudaFuncSetAttribute once per (kernel, device): the dynamic shared memory these kernels
// use exceeds the default 48 KiB limit.
void allow_shared_memory(const void* kernel, std::size_t bytes) {
  static std::mutex mutex;
  static std::set<std::pair<const void*, int>> configured;
  int device = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  if (configured.count({kernel, device}) != 0) return;
  LOOM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  configured.insert({kernel, device});
}

// bf16 tensors move in 16-byte pieces; f32 ones (lse, scratch) only need their own alignment.
void check_call(const char* op, const AttentionShape& shape, std::initializer_list<const void*> bf16_pointers,
                std::initializer_list<const void*> f32_pointers) {
  if (!tensor_core_attention(DType::BF16, shape)) {
    throw std::invalid_argument(std::string(op) + ": shape (batch " + std::to_string(shape.batch) + ", seq " +
                                std::to_string(shape.seq) + ", q_heads " + std::to_string(shape.q_heads) +
                                ", kv_heads " + std::to_string(shape.kv_heads) + ", head_dim " +
                                std::to_string(shape.head_dim) +
                                ") is not a tensor-core shape (head_dim 64 or 128, q_heads a multiple of kv_heads); "
                                "use the SIMT attention kernels");
  }
  for (const void* p : bf16_pointers) {
    if (p == nullptr || reinterpret_cast<std::uintptr_t>(p) % 16 != 0) {
      throw std::invalid_argument(std::string(op) + ": bf16 pointers must be device memory aligned to 16 bytes");
    }
  }
  for (const void* p : f32_pointers) {
    if (p == nullptr || reinterpret_cast<std::uintptr_t>(p) % alignof(float) != 0) {
      throw std::invalid_argument(std::string(op) + ": lse and scratch must be f32-aligned device memory");
    }
  }
}

Geometry geometry_of(const AttentionShape& s) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  return Geometry{static_cast<int>(s.seq),       static_cast<int>(s.q_heads),
                  static_cast<int>(s.kv_heads),  static_cast<int>(s.q_heads / s.kv_heads),
                  (s.q_heads + 2 * s.kv_heads) * s.head_dim, scale, scale * kLog2e};
}

unsigned tiles_of(std::int64_t seq) { return static_cast<unsigned>((seq + kTile - 1) / kTile); }

template <int D>
void forward(const bf16* qkv, const AttentionShape& shape, bf16* out, float* lse, cudaStream_t stream) {
  constexpr std::size_t bytes = forward_smem<D>();
  allow_shared_memory(reinterpret_cast<const void*>(&attention_forward_tc_kernel<D>), bytes);
  const dim3 grid(tiles_of(shape.seq), static_cast<unsigned>(shape.q_heads), static_cast<unsigned>(shape.batch));
  attention_forward_tc_kernel<D><<<grid, kThreads, bytes, stream>>>(qkv, out, lse, geometry_of(shape));
  LOOM_CUDA_CHECK_LAUNCH();
}

template <int D>
void backward(const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, const AttentionShape& shape,
              bf16* dqkv, float* delta, cudaStream_t stream) {
  const Geometry geo = geometry_of(shape);
  const std::int64_t rows = shape.batch * shape.seq * shape.q_heads;
  attention_delta_tc_kernel<D><<<grid_for(rows, kWarps), kThreads, 0, stream>>>(dout, out, delta, rows, geo.seq,
                                                                                 geo.q_heads);
  LOOM_CUDA_CHECK_LAUNCH();
  constexpr std::size_t bytes = backward_smem<D>();
  allow_shared_memory(reinterpret_cast<const void*>(&attention_dkdv_tc_kernel<D>), bytes);
  allow_shared_memory(reinterpret_cast<const void*>(&attention_dq_tc_kernel<D>), bytes);
  const dim3 kv_grid(tiles_of(shape.seq), static_cast<unsigned>(shape.kv_heads), static_cast<unsigned>(shape.batch));
  attention_dkdv_tc_kernel<D><<<kv_grid, kThreads, bytes, stream>>>(qkv, dout, lse, delta, dqkv, geo);
  LOOM_CUDA_CHECK_LAUNCH();
  const dim3 q_grid(tiles_of(shape.seq), static_cast<unsigned>(shape.q_heads), static_cast<unsigned>(shape.batch));
  attention_dq_tc_kernel<D><<<q_grid, kThreads, bytes, stream>>>(qkv, dout, lse, delta, dqkv, geo);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool tensor_core_attention(DType dtype, const AttentionShape& shape) {
  constexpr std::int64_t kMaxGrid = 65535;
  return dtype == DType::BF16 && (shape.head_dim == 64 || shape.head_dim == 128) && shape.batch >= 1 &&
         shape.seq >= 1 && shape.kv_heads >= 1 && shape.q_heads >= shape.kv_heads &&
         shape.q_heads % shape.kv_heads == 0 && shape.batch <= kMaxGrid && shape.q_heads <= kMaxGrid &&
         shape.seq <= (std::int64_t{1} << 30);
}

void attention_forward_tc(const __nv_bfloat16* qkv, const AttentionShape& shape, __nv_bfloat16* out, float* lse,
                          cudaStream_t stream) {
  check_call("attention_forward_tc", shape, {qkv, out}, {lse});
  if (shape.head_dim == 64) {
    forward<64>(qkv, shape, out, lse, stream);
  } else {
    forward<128>(qkv, shape, out, lse, stream);
  }
}

void attention_backward_tc(const __nv_bfloat16* dout, const __nv_bfloat16* qkv, const __nv_bfloat16* out,
                           const float* lse, const AttentionShape& shape, __nv_bfloat16* dqkv, float* scratch,
                           cudaStream_t stream) {
  check_call("attention_backward_tc", shape, {dout, qkv, out, dqkv}, {lse, scratch});
  if (shape.head_dim == 64) {
    backward<64>(dout, qkv, out, lse, shape, dqkv, scratch, stream);
  } else {
    backward<128>(dout, qkv, out, lse, shape, dqkv, scratch, stream);
  }
}

std::int64_t attention_backward_tc_scratch(const AttentionShape& shape) {
  return shape.batch * shape.q_heads * shape.seq;
}

}  // namespace loom::cuda::detail
