// Register-blocked building blocks for the small matrix products inside CPU kernels that
// BLAS would serve badly (attention's per-head [T, T] and [T, D] products, thousands of
// calls of a few hundred kFLOP each, inside an OpenMP region).
//
// Both products keep a 4-row × (1, 2 or 4) × 16-lane block of the result in registers
// and stream the other operand once per block. Vectors are GCC vector extensions of 16
// floats: AVX-512 registers where the build targets them, pairs of AVX2 registers
// otherwise, so the code stays portable across x86 builds. Every sum runs in a fixed order
// (over the reduction index, ascending), so results depend only on the inputs.
//
// Shapes: "width" arguments must be multiples of kLanes (callers pad their scratch with
// zeros); every operand row read is inside the caller's buffers, including the up to 3
// padding rows of a 4-row block. Pure functions on caller memory; thread-safe.
#pragma once

#include <cstdint>
#include <cstring>

namespace loom::cpu::detail {

inline constexpr std::int64_t kLanes = 16;
inline constexpr std::int64_t kBlockRows = 4;

using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load_vec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store_vec(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

inline std::int64_t round_up(std::int64_t n, std::int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// out[r][j] = Σ_{d < depth} a[r * lda + d] · bt[d * ldb + j] for the 4 rows r and j < width:
// rows of `a` times a matrix stored transposed ([depth, width], e.g. keys as columns).
inline void rows_times_columns(const float* a, std::int64_t lda, const float* bt, std::int64_t ldb, std::int64_t depth,
                               std::int64_t width, float* out, std::int64_t ldo) {
  std::int64_t j = 0;
  for (; j + 2 * kLanes <= width; j += 2 * kLanes) {
    Vec acc[kBlockRows][2] = {};
    for (std::int64_t d = 0; d < depth; ++d) {
      const Vec b0 = load_vec(bt + d * ldb + j);
      const Vec b1 = load_vec(bt + d * ldb + j + kLanes);
      for (std::int64_t r = 0; r < kBlockRows; ++r) {
        const float x = a[r * lda + d];
        acc[r][0] += x * b0;
        acc[r][1] += x * b1;
      }
    }
    for (std::int64_t r = 0; r < kBlockRows; ++r) {
      store_vec(out + r * ldo + j, acc[r][0]);
      store_vec(out + r * ldo + j + kLanes, acc[r][1]);
    }
  }
  for (; j < width; j += kLanes) {
    Vec acc[kBlockRows] = {};
    for (std::int64_t d = 0; d < depth; ++d) {
      const Vec b0 = load_vec(bt + d * ldb + j);
      for (std::int64_t r = 0; r < kBlockRows; ++r) acc[r] += a[r * lda + d] * b0;
    }
    for (std::int64_t r = 0; r < kBlockRows; ++r) store_vec(out + r * ldo + j, acc[r]);
  }
}

// A 4-row block of weights read with any strides: weight (r, k) = data[r * row_stride +
// k * k_stride]. {p, ld, 1} reads rows of a row-major matrix; {p, 1, ld} reads its columns,
// i.e. the transpose, without copying it.
struct Weights {
  const float* data;
  std::int64_t row_stride;
  std::int64_t k_stride;
  float at(std::int64_t r, std::int64_t k) const { return data[r * row_stride + k * k_stride]; }
};

namespace tile {
template <int kVecs>
inline void weighted_rows_block(const Weights& w, std::int64_t begin, std::int64_t end, const float* m,
                                std::int64_t ldm, float* out, std::int64_t ldo, bool accumulate) {
  Vec acc[kBlockRows][kVecs] = {};
  for (std::int64_t k = begin; k < end; ++k) {
    Vec row[kVecs];
    for (int u = 0; u < kVecs; ++u) row[u] = load_vec(m + k * ldm + u * kLanes);
    for (std::int64_t r = 0; r < kBlockRows; ++r) {
      const float x = w.at(r, k);
      for (int u = 0; u < kVecs; ++u) acc[r][u] += x * row[u];
    }
  }
  for (std::int64_t r = 0; r < kBlockRows; ++r) {
    for (int u = 0; u < kVecs; ++u) {
      float* o = out + r * ldo + u * kLanes;
      store_vec(o, accumulate ? load_vec(o) + acc[r][u] : acc[r][u]);
    }
  }
}
}  // namespace tile

// out[r][c] (=, or += when accumulate) Σ_{begin <= k < end} w(r, k) · m[k * ldm + c] for the
// 4 rows r and c < width: weighted sums of the rows of m (probabilities times values,
// gradients times keys, or transposed score gradients times queries).
inline void weighted_rows(const Weights& w, std::int64_t begin, std::int64_t end, const float* m, std::int64_t ldm,
                          std::int64_t width, float* out, std::int64_t ldo, bool accumulate) {
  std::int64_t c = 0;
  for (; c + 4 * kLanes <= width; c += 4 * kLanes) {
    tile::weighted_rows_block<4>(w, begin, end, m + c, ldm, out + c, ldo, accumulate);
  }
  if (c + 2 * kLanes <= width) {
    tile::weighted_rows_block<2>(w, begin, end, m + c, ldm, out + c, ldo, accumulate);
    c += 2 * kLanes;
  }
  if (c < width) tile::weighted_rows_block<1>(w, begin, end, m + c, ldm, out + c, ldo, accumulate);
}

}  // namespace loom::cpu::detail
