// Shared pieces of the CPU kernels: argument checks, vectorisable math, fixed row chunks.
//
// Checks are cheap (shape, dtype, device; never a pass over the data) and throw
// std::invalid_argument naming the op and every tensor involved. The math functions are
// written branch-free so GCC vectorises loops that call them under `#pragma omp simd`;
// glibc's expf/tanhf would keep those loops scalar unless the build used -ffast-math.
// Row chunks depend only on the row count, never on the thread count, so reductions that
// combine per-chunk partial sums in chunk order give the same bits on any thread count.
#pragma once

#include <bit>
#include <cstdint>
#include <string>

#include "core/backend.h"
#include "core/tensor.h"

namespace loom::cpu::detail {

[[noreturn]] void fail(const char* op, const std::string& message);

// "[4, 64, 768] f32 cpu", or "undefined" for a default-constructed tensor.
std::string describe(const Tensor& t);

// t is defined, on the CPU and of the given dtype.
void require(const char* op, const char* name, const Tensor& t, DType dtype);
inline void require_f32(const char* op, const char* name, const Tensor& t) { require(op, name, t, DType::F32); }
inline void require_i32(const char* op, const char* name, const Tensor& t) { require(op, name, t, DType::I32); }

// Columns are the last dimension; rows are every leading dimension flattened.
inline std::int64_t cols_of(const Tensor& t) { return t.ndim() == 0 ? 1 : t.dim(-1); }
inline std::int64_t rows_of(const Tensor& t) {
  const std::int64_t c = cols_of(t);
  return c == 0 ? 0 : t.numel() / c;
}

// t is an f32 tensor of `rows` rows of `cols` (leading dims flattened); `context` says
// where those numbers come from, e.g. "x [8, 768] f32 cpu".
void require_matrix(const char* op, const char* name, const Tensor& t, std::int64_t rows, std::int64_t cols,
                    const std::string& context);
// t is an f32 tensor of exactly `numel` elements, any shape.
void require_numel(const char* op, const char* name, const Tensor& t, std::int64_t numel,
                   const std::string& context);

// The geometry is positive, q_heads is a multiple of kv_heads, and qkv (named qkv_name) is
// an f32 [B, T, (Hq + 2 Hkv) D] tensor.
void require_attention(const char* op, const AttentionShape& shape, const char* qkv_name, const Tensor& qkv);
inline std::int64_t qkv_width(const AttentionShape& s) { return (s.q_heads + 2 * s.kv_heads) * s.head_dim; }

// ---- when to use more than one thread -----------------------------------------------------
// Ops whose work (elements touched, roughly) is below this run on the calling thread, via
// `if(parallel : worth_parallel(work))`. A parallel region costs a fork and a join: about a
// microsecond while the OpenMP pool is spinning, but a whole scheduler time slice whenever
// another process holds one of the cores, which dominates small models on a shared machine.
// No op's result depends on its thread count, so this changes timing only.
inline constexpr std::int64_t kParallelMinWork = std::int64_t{1} << 15;
inline bool worth_parallel(std::int64_t work) { return work >= kParallelMinWork; }

// ---- fixed row chunks ------------------------------------------------------------------
struct RowChunks {
  std::int64_t rows = 0;
  std::int64_t per_chunk = 1;
  std::int64_t count = 0;
  std::int64_t begin(std::int64_t k) const { return k * per_chunk; }
  std::int64_t end(std::int64_t k) const { return (k + 1) * per_chunk < rows ? (k + 1) * per_chunk : rows; }
};
// At least 8 rows per chunk and at most 64 chunks: enough chunks to keep threads busy,
// few enough that the [count, C] partial buffers stay small.
inline RowChunks row_chunks(std::int64_t rows) {
  RowChunks chunks;
  chunks.rows = rows;
  const std::int64_t by_count = (rows + 63) / 64;
  chunks.per_chunk = by_count > 8 ? by_count : 8;
  chunks.count = (rows + chunks.per_chunk - 1) / chunks.per_chunk;
  return chunks;
}

// out[c] += Σ_k partials[k * cols + c], k in order (partials: [count, cols]).
void add_chunk_partials(const float* partials, std::int64_t count, std::int64_t cols, float* out);

// ---- vectorisable math -----------------------------------------------------------------
// exp(x) within 2 ulp for x in [-87, 88]; 0 below, +inf above, NaN stays NaN.
// Range reduction x = n ln2 + r (Cody-Waite), then the Cephes degree-6 polynomial for
// exp(r) and 2^n assembled in the exponent bits.
#pragma omp declare simd notinbranch
inline float fast_exp(float x) {
  constexpr float kLow = -87.0f;
  constexpr float kHigh = 88.0f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < kLow ? kLow : x;
  xc = xc > kHigh ? kHigh : xc;
  const float shifted = xc * kLog2e + kRoundMagic;
  const float n = shifted - kRoundMagic;
  const std::int32_t n_int = std::bit_cast<std::int32_t>(shifted) - std::bit_cast<std::int32_t>(kRoundMagic);
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float exp_r = p * (r * r) + r + 1.0f;
  const float two_n = std::bit_cast<float>((n_int + 127) << 23);
  const float y = exp_r * two_n;
  return x < kLow ? 0.0f : (x > kHigh ? __builtin_inff() : y);
}

// tanh through exp: tanh(u) = 1 - 2 / (exp(2u) + 1). Absolute error ~1e-7, which is what
// GELU needs (it multiplies by 0.5 x (1 + tanh)).
#pragma omp declare simd notinbranch
inline float fast_tanh(float u) { return 1.0f - 2.0f / (fast_exp(2.0f * u) + 1.0f); }

#pragma omp declare simd notinbranch
inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

inline float dot(const float* a, const float* b, std::int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (std::int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y[i] += alpha * x[i]
inline void axpy(float alpha, const float* x, float* y, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace loom::cpu::detail
