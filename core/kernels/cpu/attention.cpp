// Causal grouped-query self-attention of the CPU backend, flash-attention style: forward
// keeps one 4-row block of scores at a time and saves only the log-sum-exp of each row;
// backward recomputes the probabilities block by block from q·k and that lse. Nothing
// [T, T] is kept: the largest scratch is one block of 64 query rows × T keys.
//
// Each task copies its heads into padded scratch (K and V transposed to [D, T] for the
// score products, row copies with channels padded to 16 for the weighted sums) and runs
// the register-blocked products of tile_kernels.h: 4 query rows × 32 keys of scores per
// pass over the channels, and 4 rows × 64 channels of weighted sums per pass over the keys.
// Backward forms dS for a block of 64 query rows, then dQ of those rows (dS·K) and their
// share of dK (dSᵀ·Q) and dV (Pᵀ·dO), reading the block's columns as weights.
//
// Forward rows are independent, so any split over (batch, head) is deterministic.
// Backward runs one task per (batch, kv head): that task owns the dk/dv of its kv head and
// the dq of every query head in its group, and visits queries in a fixed order, so the sums
// need no atomics and do not depend on the thread count.
// bf16 qkv, out and gradients run this code on staged f32 copies (bf16_staging.h); lse is
// always f32.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/kernels/cpu/tile_kernels.h"

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

constexpr std::int64_t kQueryBlock = 64;  // backward: query rows per dS block (a multiple of 4)

std::vector<float> zeros(std::int64_t n) { return std::vector<float>(static_cast<std::size_t>(n), 0.0f); }

// Padded sizes of one head: keys to a multiple of 16 (score columns), channels to a multiple
// of 16 (weighted-sum columns), rows to a multiple of 4 (row blocks).
struct Padded {
  std::int64_t keys, channels, rows;
  static Padded of(std::int64_t seq, std::int64_t head_dim) {
    return Padded{round_up(seq, kLanes), round_up(head_dim, kLanes), round_up(seq, kBlockRows)};
  }
};

// dst[d * ld + j] = src[j * stride + d] for j < seq, d < head_dim: one head, transposed.
void copy_transposed(const float* src, std::int64_t stride, std::int64_t seq, std::int64_t head_dim, float* dst,
                     std::int64_t ld) {
  for (std::int64_t j = 0; j < seq; ++j) {
    for (std::int64_t d = 0; d < head_dim; ++d) dst[d * ld + j] = src[j * stride + d];
  }
}

// dst[j * ld + d] = alpha * src[j * stride + d] for j < seq, d < head_dim: one head's rows.
void copy_rows(const float* src, std::int64_t stride, std::int64_t seq, std::int64_t head_dim, float alpha, float* dst,
               std::int64_t ld) {
  for (std::int64_t j = 0; j < seq; ++j) {
    for (std::int64_t d = 0; d < head_dim; ++d) dst[j * ld + d] = alpha * src[j * stride + d];
  }
}

// Per-thread scratch of forward tasks. Padding stays zero: every task writes the same
// in-range elements.
struct ForwardScratch {
  std::vector<float> kt;      // [D, keys]     keys of the head, transposed
  std::vector<float> v;       // [T, channels] values
  std::vector<float> q;       // [rows, D]     queries times the softmax scale
  std::vector<float> scores;  // [4, keys]     scores, then probabilities, of one row block
  std::vector<float> out;     // [4, channels] unnormalised output rows
  ForwardScratch(std::int64_t T, std::int64_t D, const Padded& p)
      : kt(zeros(D * p.keys)), v(zeros(T * p.channels)), q(zeros(p.rows * D)), scores(zeros(kBlockRows * p.keys)),
        out(zeros(kBlockRows * p.channels)) {}
};

// Per-thread scratch of backward tasks.
struct BackwardScratch {
  std::vector<float> kt, vt;     // [D, keys]      keys and values, transposed
  std::vector<float> k;          // [T, channels]  keys as rows
  std::vector<float> q, dout;    // [rows, channels] scaled queries and output gradients of one head
  std::vector<float> dk, dv;     // [rows, channels] gradients of the kv head, summed over its group
  std::vector<float> p, ds;      // [kQueryBlock, keys] probabilities and score gradients of a block
  std::vector<float> dq;         // [4, channels]
  std::vector<float> correction; // [T] dout·out per query row
  BackwardScratch(std::int64_t T, std::int64_t D, const Padded& p)
      : kt(zeros(D * p.keys)), vt(zeros(D * p.keys)), k(zeros(T * p.channels)), q(zeros(p.rows * p.channels)),
        dout(zeros(p.rows * p.channels)), dk(zeros(p.rows * p.channels)), dv(zeros(p.rows * p.channels)),
        p(zeros(kQueryBlock * p.keys)), ds(zeros(kQueryBlock * p.keys)), dq(zeros(kBlockRows * p.channels)),
        correction(zeros(T)) {}
};

}  // namespace

void CpuBackend::attention_forward(const Tensor& qkv, const AttentionShape& shape, Tensor& out, Tensor& lse) {
  if (is_bf16(qkv)) {
    Bf16Staging staging("attention_forward");
    const Tensor qkv32 = staging.input("qkv", qkv);
    Tensor out32 = staging.output("out", out, Bf16Staging::Use::Overwrite);
    return staging.run([&] { attention_forward(qkv32, shape, out32, lse); });
  }
  const char* op = "attention_forward";
  require_attention(op, shape, "qkv", qkv);
  check_outputs(op, shape, "out", out, lse);
  const QkvLayout L = layout_of(shape);
  const float* x = qkv.data<float>();
  float* outp = out.data<float>();
  float* lsep = lse.data<float>();
  const std::int64_t T = shape.seq;
  const std::int64_t D = shape.head_dim;
  const Padded P = Padded::of(T, D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
#pragma omp parallel if(parallel : worth_parallel(shape.batch * shape.q_heads * T * T * D))
  {
    ForwardScratch scratch(T, D, P);
    float* kt = scratch.kt.data();
    float* v = scratch.v.data();
    float* q = scratch.q.data();
    float* s = scratch.scores.data();
    float* o = scratch.out.data();
#pragma omp for collapse(2) schedule(static)
    for (std::int64_t b = 0; b < shape.batch; ++b) {
      for (std::int64_t h = 0; h < shape.q_heads; ++h) {
        const std::int64_t g = h / L.group;
        copy_transposed(x + L.k(b, 0, g), L.width, T, D, kt, P.keys);
        copy_rows(x + L.v(b, 0, g), L.width, T, D, 1.0f, v, P.channels);
        copy_rows(x + L.q(b, 0, h), L.width, T, D, scale, q, D);
        for (std::int64_t t0 = 0; t0 < T; t0 += kBlockRows) {
          const std::int64_t n = std::min(T, t0 + kBlockRows);  // keys the block's last row sees
          rows_times_columns(q + t0 * D, D, kt, P.keys, D, round_up(n, kLanes), s, P.keys);
          float inv_sum[kBlockRows] = {};
          for (std::int64_t r = 0; r < kBlockRows && t0 + r < T; ++r) {
            float* row = s + r * P.keys;
            const std::int64_t visible = t0 + r + 1;  // causal: keys 0..t
            float max_score = -__builtin_inff();
#pragma omp simd reduction(max : max_score)
            for (std::int64_t j = 0; j < visible; ++j) max_score = std::max(max_score, row[j]);
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (std::int64_t j = 0; j < visible; ++j) {
              row[j] = fast_exp(row[j] - max_score);
              sum += row[j];
            }
            std::fill(row + visible, row + n, 0.0f);
            inv_sum[r] = 1.0f / sum;
            lsep[(b * shape.q_heads + h) * T + t0 + r] = max_score + std::log(sum);
          }
          weighted_rows(Weights{s, P.keys, 1}, 0, n, v, P.channels, P.channels, o, P.channels, false);
          for (std::int64_t r = 0; r < kBlockRows && t0 + r < T; ++r) {
            float* dst = outp + L.out(b, t0 + r, h);
            const float* src = o + r * P.channels;
#pragma omp simd
            for (std::int64_t d = 0; d < D; ++d) dst[d] = src[d] * inv_sum[r];
          }
        }
      }
    }
  }
}

void CpuBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                                    const AttentionShape& shape, Tensor& dqkv) {
  if (is_bf16(qkv)) {
    Bf16Staging staging("attention_backward");
    const Tensor qkv32 = staging.input("qkv", qkv);
    const Tensor out32 = staging.input("out", out);
    const Tensor dout32 = staging.input("dout", dout);
    Tensor dqkv32 = staging.output("dqkv", dqkv, Bf16Staging::Use::Update);
    return staging.run([&] { attention_backward(dout32, qkv32, out32, lse, shape, dqkv32); });
  }
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
  const Padded P = Padded::of(T, D);
  const std::int64_t C = P.channels;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
#pragma omp parallel if(parallel : worth_parallel(shape.batch * shape.q_heads * T * T * D))
  {
    BackwardScratch scratch(T, D, P);
    float* kt = scratch.kt.data();
    float* vt = scratch.vt.data();
    float* k = scratch.k.data();
    float* q = scratch.q.data();
    float* dO = scratch.dout.data();
    float* dk = scratch.dk.data();
    float* dv = scratch.dv.data();
    float* p = scratch.p.data();
    float* ds = scratch.ds.data();
    float* dq = scratch.dq.data();
    float* correction = scratch.correction.data();
#pragma omp for collapse(2) schedule(static)
    for (std::int64_t b = 0; b < shape.batch; ++b) {
      for (std::int64_t g = 0; g < shape.kv_heads; ++g) {
        copy_transposed(x + L.k(b, 0, g), L.width, T, D, kt, P.keys);
        copy_transposed(x + L.v(b, 0, g), L.width, T, D, vt, P.keys);
        copy_rows(x + L.k(b, 0, g), L.width, T, D, 1.0f, k, C);
        std::fill(scratch.dk.begin(), scratch.dk.end(), 0.0f);
        std::fill(scratch.dv.begin(), scratch.dv.end(), 0.0f);
        for (std::int64_t h = g * L.group; h < (g + 1) * L.group; ++h) {
          copy_rows(x + L.q(b, 0, h), L.width, T, D, scale, q, C);
          copy_rows(doutp + L.out(b, 0, h), L.out_width, T, D, 1.0f, dO, C);
          // Σ_j p_j dp_j equals dout·out, the softmax-backward correction term.
          for (std::int64_t t = 0; t < T; ++t) correction[t] = dot(doutp + L.out(b, t, h), outp + L.out(b, t, h), D);
          const float* row_lse = lsep + (b * shape.q_heads + h) * T;
          for (std::int64_t i0 = 0; i0 < T; i0 += kQueryBlock) {
            const std::int64_t rows = std::min(kQueryBlock, T - i0);
            const std::int64_t n = i0 + rows;  // keys the block's last row sees
            const std::int64_t width = round_up(n, kLanes);
            const std::int64_t block_rows = round_up(rows, kBlockRows);
            for (std::int64_t r = 0; r < block_rows; r += kBlockRows) {
              rows_times_columns(q + (i0 + r) * C, C, kt, P.keys, D, width, p + r * P.keys, P.keys);
              rows_times_columns(dO + (i0 + r) * C, C, vt, P.keys, D, width, ds + r * P.keys, P.keys);
            }
            for (std::int64_t r = 0; r < block_rows; ++r) {
              const std::int64_t t = i0 + r;
              float* prow = p + r * P.keys;
              float* dsrow = ds + r * P.keys;
              if (r >= rows) {  // padding rows: keep them finite and out of every sum
                std::fill(prow, prow + width, 0.0f);
                std::fill(dsrow, dsrow + width, 0.0f);
                continue;
              }
              const float m = row_lse[t];
              const float c = correction[t];
#pragma omp simd
              for (std::int64_t j = 0; j < width; ++j) {
                const float pj = j <= t ? fast_exp(prow[j] - m) : 0.0f;
                prow[j] = pj;
                dsrow[j] = pj * (dsrow[j] - c);
              }
            }
            for (std::int64_t r = 0; r < block_rows; r += kBlockRows) {
              weighted_rows(Weights{ds + r * P.keys, P.keys, 1}, 0, n, k, C, C, dq, C, false);
              for (std::int64_t u = 0; u < kBlockRows && r + u < rows; ++u) {
                axpy(scale, dq + u * C, dx + L.q(b, i0 + r + u, h), D);
              }
            }
            // dK = dSᵀ·Q and dV = Pᵀ·dO read the block's columns in place. Keys j0..j0+3 get
            // nothing from queries before j0 (causal), so those are skipped.
            for (std::int64_t j0 = 0; j0 < n; j0 += kBlockRows) {
              const std::int64_t first = std::max<std::int64_t>(0, j0 - i0);
              weighted_rows(Weights{ds + j0, 1, P.keys}, first, rows, q + i0 * C, C, C, dk + j0 * C, C, true);
              weighted_rows(Weights{p + j0, 1, P.keys}, first, rows, dO + i0 * C, C, C, dv + j0 * C, C, true);
            }
          }
        }
        for (std::int64_t j = 0; j < T; ++j) {
          axpy(1.0f, dk + j * C, dx + L.k(b, j, g), D);
          axpy(1.0f, dv + j * C, dx + L.v(b, j, g), D);
        }
      }
    }
  }
}

}  // namespace loom::cpu
