// Causal grouped-query self-attention of the CPU backend, flash-attention style: forward
// keeps one row of scores at a time and saves only the log-sum-exp of each row; backward
// recomputes each row's probabilities from q·k and that lse. Nothing [T, T] outlives a row.
//
// Reductions over the head channels (scores q·k_j, and dout·v_j in backward) run across
// keys instead: each task copies its K (and V) head transposed into [D, T] scratch, so a
// row of scores is D/4 streaming FMA passes with no horizontal sum per key. Weighted sums
// of rows (P V, dS K) take four rows per pass. Backward collects dK and dV of its kv head in
// contiguous [T, D] scratch and adds them into dqkv once at the end.
//
// Forward rows are independent, so any split over (batch, head) is deterministic.
// Backward runs one task per (batch, kv head): that task owns the dk/dv of its kv head and
// the dq of every query head in its group, and visits queries in a fixed order, so the sums
// need no atomics and do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

namespace {

// Pointers into the packed [B, T, (Hq + 2 Hkv) D] layout.
struct QkvLayout {
  std::int64_t seq, width, head_dim, q_heads, kv_heads, group, out_width;
  std::int64_t token(std::int64_t b, std::int64_t t) const { return (b * seq + t) * width; }
  std::int64_t q(std::int64_t b, std::int64_t t, std::int64_t h) const { return token(b, t) + h * head_dim; }
  std::int64_t k(std::int64_t b, std::int64_t t, std::int64_t g) const {
    return token(b, t) + (q_heads + g) * head_dim;
  }
  std::int64_t v(std::int64_t b, std::int64_t t, std::int64_t g) const {
    return token(b, t) + (q_heads + kv_heads + g) * head_dim;
  }
  std::int64_t out(std::int64_t b, std::int64_t t, std::int64_t h) const {
    return (b * seq + t) * out_width + h * head_dim;
  }
};

QkvLayout layout_of(const AttentionShape& s) {
  return QkvLayout{s.seq, qkv_width(s), s.head_dim, s.q_heads, s.kv_heads, s.q_heads / s.kv_heads,
                   s.q_heads * s.head_dim};
}

void check_outputs(const char* op, const AttentionShape& s, const char* out_name, const Tensor& out,
                   const Tensor& lse) {
  require_numel(op, out_name, out, s.batch * s.seq * s.q_heads * s.head_dim,
                "[batch, seq, q_heads * head_dim] = [" + std::to_string(s.batch) + ", " + std::to_string(s.seq) +
                    ", " + std::to_string(s.q_heads * s.head_dim) + "]");
  require_numel(op, "lse", lse, s.batch * s.q_heads * s.seq,
                "[batch, q_heads, seq] = [" + std::to_string(s.batch) + ", " + std::to_string(s.q_heads) + ", " +
                    std::to_string(s.seq) + "]");
}

// dst[d * seq + j] = src[j * stride + d]: one head of K or V for all positions, transposed.
void transpose_head(const float* src, std::int64_t stride, std::int64_t seq, std::int64_t head_dim, float* dst) {
  for (std::int64_t j = 0; j < seq; ++j) {
    for (std::int64_t d = 0; d < head_dim; ++d) dst[d * seq + j] = src[j * stride + d];
  }
}

// y[j] = Σ_d x[d] * mt[d * ld + j] for j < n, four channels per pass to save stores of y.
void scores_from_transposed(const float* x, const float* mt, std::int64_t ld, std::int64_t depth, std::int64_t n,
                            float* y) {
  std::fill(y, y + n, 0.0f);
  std::int64_t d = 0;
  for (; d + 4 <= depth; d += 4) {
    const float a0 = x[d], a1 = x[d + 1], a2 = x[d + 2], a3 = x[d + 3];
    const float* m0 = mt + d * ld;
    const float* m1 = m0 + ld;
    const float* m2 = m1 + ld;
    const float* m3 = m2 + ld;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) y[j] += a0 * m0[j] + a1 * m1[j] + a2 * m2[j] + a3 * m3[j];
  }
  for (; d < depth; ++d) axpy(x[d], mt + d * ld, y, n);
}

// acc[d] += Σ_j w[j] * rows[j * stride + d] for j < n, four rows per pass to save stores of acc.
void add_weighted_rows(const float* w, const float* rows, std::int64_t stride, std::int64_t n, std::int64_t width,
                       float* acc) {
  std::int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const float w0 = w[j], w1 = w[j + 1], w2 = w[j + 2], w3 = w[j + 3];
    const float* r0 = rows + j * stride;
    const float* r1 = r0 + stride;
    const float* r2 = r1 + stride;
    const float* r3 = r2 + stride;
#pragma omp simd
    for (std::int64_t d = 0; d < width; ++d) acc[d] += w0 * r0[d] + w1 * r1[d] + w2 * r2[d] + w3 * r3[d];
  }
  for (; j < n; ++j) axpy(w[j], rows + j * stride, acc, width);
}

// Per-thread scratch of one attention task.
struct Scratch {
  std::vector<float> kt, vt, dk, dv, scores, ds, q_scaled, acc;
  Scratch(std::int64_t seq, std::int64_t head_dim, bool backward)
      : kt(static_cast<std::size_t>(seq * head_dim)),
        vt(backward ? static_cast<std::size_t>(seq * head_dim) : 0),
        dk(backward ? static_cast<std::size_t>(seq * head_dim) : 0),
        dv(backward ? static_cast<std::size_t>(seq * head_dim) : 0),
        scores(static_cast<std::size_t>(seq)),
        ds(backward ? static_cast<std::size_t>(seq) : 0),
        q_scaled(static_cast<std::size_t>(head_dim)),
        acc(static_cast<std::size_t>(head_dim)) {}
};

}  // namespace

void CpuBackend::attention_forward(const Tensor& qkv, const AttentionShape& shape, Tensor& out, Tensor& lse) {
  const char* op = "attention_forward";
  require_attention(op, shape, "qkv", qkv);
  check_outputs(op, shape, "out", out, lse);
  const QkvLayout L = layout_of(shape);
  const float* x = qkv.data<float>();
  float* outp = out.data<float>();
  float* lsep = lse.data<float>();
  const std::int64_t T = shape.seq;
  const std::int64_t D = shape.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
#pragma omp parallel
  {
    Scratch scratch(T, D, false);
    float* s = scratch.scores.data();
#pragma omp for collapse(2) schedule(static)
    for (std::int64_t b = 0; b < shape.batch; ++b) {
      for (std::int64_t h = 0; h < shape.q_heads; ++h) {
        const std::int64_t g = h / L.group;
        transpose_head(x + L.k(b, 0, g), L.width, T, D, scratch.kt.data());
        for (std::int64_t t = 0; t < T; ++t) {
          const std::int64_t n = t + 1;  // causal: keys 0..t
          const float* q = x + L.q(b, t, h);
          for (std::int64_t d = 0; d < D; ++d) scratch.q_scaled[static_cast<std::size_t>(d)] = q[d] * scale;
          scores_from_transposed(scratch.q_scaled.data(), scratch.kt.data(), T, D, n, s);
          float max_score = -__builtin_inff();
#pragma omp simd reduction(max : max_score)
          for (std::int64_t j = 0; j < n; ++j) max_score = std::max(max_score, s[j]);
          float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
          for (std::int64_t j = 0; j < n; ++j) {
            s[j] = fast_exp(s[j] - max_score);
            sum += s[j];
          }
          std::fill(scratch.acc.begin(), scratch.acc.end(), 0.0f);
          add_weighted_rows(s, x + L.v(b, 0, g), L.width, n, D, scratch.acc.data());
          const float inv_sum = 1.0f / sum;
          float* o = outp + L.out(b, t, h);
#pragma omp simd
          for (std::int64_t d = 0; d < D; ++d) o[d] = scratch.acc[static_cast<std::size_t>(d)] * inv_sum;
          lsep[(b * shape.q_heads + h) * T + t] = max_score + std::log(sum);
        }
      }
    }
  }
}

void CpuBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                    const AttentionShape& shape, Tensor& dqkv) {
  const char* op = "attention_backward";
  require_attention(op, shape, "qkv", qkv);
  require_attention(op, shape, "dqkv", dqkv);
  check_outputs(op, shape, "out", out, lse);
  require_numel(op, "dout", dout, out.numel(), "out " + out.describe());
  const QkvLayout L = layout_of(shape);
  const float* x = qkv.data<float>();
  const float* outp = out.data<float>();
  const float* doutp = dout.data<float>();
  const float* lsep = lse.data<float>();
  float* dx = dqkv.data<float>();
  const std::int64_t T = shape.seq;
  const std::int64_t D = shape.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
#pragma omp parallel
  {
    Scratch scratch(T, D, true);
    float* p = scratch.scores.data();
    float* ds = scratch.ds.data();
    float* kt = scratch.kt.data();
    float* vt = scratch.vt.data();
    float* dk = scratch.dk.data();
    float* dv = scratch.dv.data();
    float* dq = scratch.acc.data();
    const float* qs = scratch.q_scaled.data();
#pragma omp for collapse(2) schedule(static)
    for (std::int64_t b = 0; b < shape.batch; ++b) {
      for (std::int64_t g = 0; g < shape.kv_heads; ++g) {
        transpose_head(x + L.k(b, 0, g), L.width, T, D, kt);
        transpose_head(x + L.v(b, 0, g), L.width, T, D, vt);
        std::fill(scratch.dk.begin(), scratch.dk.end(), 0.0f);
        std::fill(scratch.dv.begin(), scratch.dv.end(), 0.0f);
        for (std::int64_t h = g * L.group; h < (g + 1) * L.group; ++h) {
          for (std::int64_t t = 0; t < T; ++t) {
            const std::int64_t n = t + 1;
            const float* q = x + L.q(b, t, h);
            const float* dout_t = doutp + L.out(b, t, h);
            const float row_lse = lsep[(b * shape.q_heads + h) * T + t];
            for (std::int64_t d = 0; d < D; ++d) scratch.q_scaled[static_cast<std::size_t>(d)] = q[d] * scale;
            scores_from_transposed(qs, kt, T, D, n, p);
#pragma omp simd
            for (std::int64_t j = 0; j < n; ++j) p[j] = fast_exp(p[j] - row_lse);
            scores_from_transposed(dout_t, vt, T, D, n, ds);
            // Σ_j p_j dp_j equals dout·out, the softmax-backward correction term.
            const float correction = dot(dout_t, outp + L.out(b, t, h), D);
#pragma omp simd
            for (std::int64_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - correction);
            std::fill(scratch.acc.begin(), scratch.acc.end(), 0.0f);
            add_weighted_rows(ds, x + L.k(b, 0, g), L.width, n, D, dq);
            axpy(scale, dq, dx + L.q(b, t, h), D);
            for (std::int64_t j = 0; j < n; ++j) {
              axpy(ds[j], qs, dk + j * D, D);
              axpy(p[j], dout_t, dv + j * D, D);
            }
          }
        }
        for (std::int64_t j = 0; j < T; ++j) {
          axpy(1.0f, dk + j * D, dx + L.k(b, j, g), D);
          axpy(1.0f, dv + j * D, dx + L.v(b, j, g), D);
        }
      }
    }
  }
}

}  // namespace loom::cpu
