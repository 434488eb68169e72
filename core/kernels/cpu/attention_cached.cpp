// Attention over a key/value cache for the CPU backend (generation): the new tokens' k and v
// heads are appended to the cache, then each new query attends to every cached position up
// to its own. Decode steps have one query row per head, so this is a plain two-pass softmax
// over the row's scores (no tiling): the work is dominated by reading the cache once.
//
// Rows are independent and each (batch, query head) task writes only its own output rows,
// so results do not depend on the thread count.
//
// The int8 variant stores codes and per-row scales (core/quant/kv_int8.h) and dequantizes
// each cached row into a D-float buffer before the very loops the f32 kernel runs: scale · q
// is bit for bit the value kv_int8_round_trip would have left in an f32 cache, and running
// the same f32 loops keeps the summation order (a fused int8 loop could vectorise with a
// different number of partial sums and change the last bits).
//
// A bf16 qkv goes with bf16 caches and output (the CUDA backend's rule): the f32 kernel runs on
// staged copies of all three (bf16_staging.h). The int8 variant takes f32 qkv only.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/quant/kv_int8.h"

namespace loom::cpu {

using namespace detail;

namespace {

void check_cache(const char* op, const char* name, const Tensor& cache, const AttentionShape& s,
                 std::int64_t position, DType dtype = DType::F32) {
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

void check_scales(const char* op, const char* name, const Tensor& scales, const Tensor& cache) {
  require_f32(op, name, scales);
  if (scales.ndim() != 3 || scales.dim(0) != cache.dim(0) || scales.dim(1) != cache.dim(1) ||
      scales.dim(2) != cache.dim(2)) {
    fail(op, std::string(name) + " is " + scales.describe() + ", expected [batch, kv_heads, capacity] = [" +
                 std::to_string(cache.dim(0)) + ", " + std::to_string(cache.dim(1)) + ", " +
                 std::to_string(cache.dim(2)) + "] to match its cache " + cache.describe());
  }
}

// quant::dequantize_kv of one row, inlined: the row is decoded once per key per query, so
// the call and its argument checks would show in decode time. Same expression, same bits.
inline void dequantize_row(const std::int8_t* q, float scale, std::int64_t D, float* x) {
#pragma omp simd
  for (std::int64_t d = 0; d < D; ++d) x[d] = scale * static_cast<float>(q[d]);
}

// Attention of the T new queries of every (sequence, head) over cache rows [0, position + t]
// of their kv head, shared by the f32 and int8 caches: key(b, g, j, buffer) and
// value(b, g, j, buffer) return row j of kv head g of sequence b — the f32 cache's own row, or
// the int8 row decoded into `buffer` [D] — so both caches run the same arithmetic.
template <typename KeyRow, typename ValueRow>
void attend_cached(const AttentionShape& shape, std::int64_t position, const float* x, float* o, KeyRow key,
                   ValueRow value) {
  const std::int64_t B = shape.batch, T = shape.seq, D = shape.head_dim;
  const std::int64_t Hq = shape.q_heads, group = Hq / shape.kv_heads;
  const std::int64_t width = qkv_width(shape);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const std::int64_t keys = position + T;
#pragma omp parallel if(parallel : worth_parallel(B * Hq * T * keys * D))
  {
    std::vector<float> scores(static_cast<std::size_t>(keys));
    std::vector<float> acc(static_cast<std::size_t>(D));
    std::vector<float> buffer(static_cast<std::size_t>(D));
#pragma omp for collapse(2) schedule(static)
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t h = 0; h < Hq; ++h) {
        const std::int64_t g = h / group;
        for (std::int64_t t = 0; t < T; ++t) {
          const float* q = x + (b * T + t) * width + h * D;
          const std::int64_t visible = position + t + 1;
          float row_max = -INFINITY;
          for (std::int64_t j = 0; j < visible; ++j) {
            const float* k = key(b, g, j, buffer.data());
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (std::int64_t d = 0; d < D; ++d) dot += q[d] * k[d];
            scores[static_cast<std::size_t>(j)] = dot * scale;
            row_max = std::max(row_max, dot * scale);
          }
          float denom = 0.0f;
          for (std::int64_t j = 0; j < visible; ++j) {
            const float p = std::exp(scores[static_cast<std::size_t>(j)] - row_max);
            scores[static_cast<std::size_t>(j)] = p;
            denom += p;
          }
          std::fill(acc.begin(), acc.end(), 0.0f);
          float* a = acc.data();
          for (std::int64_t j = 0; j < visible; ++j) {
            const float p = scores[static_cast<std::size_t>(j)];
            const float* v = value(b, g, j, buffer.data());
#pragma omp simd
            for (std::int64_t d = 0; d < D; ++d) a[d] += p * v[d];
          }
          float* orow = o + (b * T + t) * Hq * D + h * D;
          const float inv = 1.0f / denom;
          for (std::int64_t d = 0; d < D; ++d) orow[d] = a[d] * inv;
        }
      }
    }
  }
}

}  // namespace

void CpuBackend::attention_cached_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                          Tensor& k_cache, Tensor& v_cache, Tensor& out) {
  if (is_bf16(qkv)) {
    Bf16Staging staging("attention_cached_forward");
    const Tensor qkv32 = staging.input("qkv", qkv);
    Tensor k_cache32 = staging.output("k_cache", k_cache, Bf16Staging::Use::Update);
    Tensor v_cache32 = staging.output("v_cache", v_cache, Bf16Staging::Use::Update);
    Tensor out32 = staging.output("out", out, Bf16Staging::Use::Overwrite);
    return staging.run([&] { attention_cached_forward(qkv32, shape, position, k_cache32, v_cache32, out32); });
  }
  const char* op = "attention_cached_forward";
  require_attention(op, shape, "qkv", qkv);
  check_cache(op, "k_cache", k_cache, shape, position);
  check_cache(op, "v_cache", v_cache, shape, position);
  require_numel(op, "out", out, shape.batch * shape.seq * shape.q_heads * shape.head_dim,
                "[batch, seq, q_heads * head_dim] = [" + std::to_string(shape.batch) + ", " +
                    std::to_string(shape.seq) + ", " + std::to_string(shape.q_heads * shape.head_dim) + "]");
  const std::int64_t B = shape.batch, T = shape.seq, D = shape.head_dim;
  const std::int64_t Hq = shape.q_heads, Hkv = shape.kv_heads;
  const std::int64_t capacity = k_cache.dim(2);
  const std::int64_t width = qkv_width(shape);
  const float* x = qkv.data<float>();
  float* kc = k_cache.data<float>();
  float* vc = v_cache.data<float>();
  float* o = out.data<float>();

#pragma omp parallel for collapse(2) schedule(static) if(parallel : worth_parallel(B * Hkv * T * D))
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t g = 0; g < Hkv; ++g) {
      for (std::int64_t t = 0; t < T; ++t) {
        const float* token = x + (b * T + t) * width;
        float* krow = kc + ((b * Hkv + g) * capacity + position + t) * D;
        float* vrow = vc + ((b * Hkv + g) * capacity + position + t) * D;
        std::copy(token + (Hq + g) * D, token + (Hq + g + 1) * D, krow);
        std::copy(token + (Hq + Hkv + g) * D, token + (Hq + Hkv + g + 1) * D, vrow);
      }
    }
  }

  attend_cached(
      shape, position, x, o,
      [&](std::int64_t b, std::int64_t g, std::int64_t j, float*) { return kc + ((b * Hkv + g) * capacity + j) * D; },
      [&](std::int64_t b, std::int64_t g, std::int64_t j, float*) { return vc + ((b * Hkv + g) * capacity + j) * D; });
}

void CpuBackend::attention_cached_int8_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                               Tensor& k_cache, Tensor& v_cache, Tensor& k_scales, Tensor& v_scales,
                                               Tensor& out) {
  const char* op = "attention_cached_int8_forward";
  require_attention(op, shape, "qkv", qkv);
  check_cache(op, "k_cache", k_cache, shape, position, DType::I8);
  check_cache(op, "v_cache", v_cache, shape, position, DType::I8);
  if (k_cache.dim(2) != v_cache.dim(2)) {
    fail(op, "k_cache " + k_cache.describe() + " and v_cache " + v_cache.describe() + " differ in capacity");
  }
  check_scales(op, "k_scales", k_scales, k_cache);
  check_scales(op, "v_scales", v_scales, v_cache);
  require_numel(op, "out", out, shape.batch * shape.seq * shape.q_heads * shape.head_dim,
                "[batch, seq, q_heads * head_dim] = [" + std::to_string(shape.batch) + ", " +
                    std::to_string(shape.seq) + ", " + std::to_string(shape.q_heads * shape.head_dim) + "]");
  const std::int64_t B = shape.batch, T = shape.seq, D = shape.head_dim;
  const std::int64_t Hq = shape.q_heads, Hkv = shape.kv_heads;
  const std::int64_t capacity = k_cache.dim(2);
  const std::int64_t width = qkv_width(shape);
  const float* x = qkv.data<float>();
  std::int8_t* kc = k_cache.data<std::int8_t>();
  std::int8_t* vc = v_cache.data<std::int8_t>();
  float* ks = k_scales.data<float>();
  float* vs = v_scales.data<float>();
  float* o = out.data<float>();

#pragma omp parallel for collapse(2) schedule(static) if(parallel : worth_parallel(B * Hkv * T * D))
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t g = 0; g < Hkv; ++g) {
      for (std::int64_t t = 0; t < T; ++t) {
        const float* token = x + (b * T + t) * width;
        const std::int64_t row = (b * Hkv + g) * capacity + position + t;
        quant::quantize_kv(token + (Hq + g) * D, 1, D, kc + row * D, ks + row);
        quant::quantize_kv(token + (Hq + Hkv + g) * D, 1, D, vc + row * D, vs + row);
      }
    }
  }

  attend_cached(
      shape, position, x, o,
      [&](std::int64_t b, std::int64_t g, std::int64_t j, float* buffer) {
        const std::int64_t row = (b * Hkv + g) * capacity + j;
        dequantize_row(kc + row * D, ks[row], D, buffer);
        return static_cast<const float*>(buffer);
      },
      [&](std::int64_t b, std::int64_t g, std::int64_t j, float* buffer) {
        const std::int64_t row = (b * Hkv + g) * capacity + j;
        dequantize_row(vc + row * D, vs[row], D, buffer);
        return static_cast<const float*>(buffer);
      });
}

}  // namespace loom::cpu
