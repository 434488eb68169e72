// W8A8 kernel: per-token int8 activations times the panel-packed signed weights (quant_kernels.h)
// with exact int32 dot products, then y = fma(scale_m · scale_n, dot, bias) exactly as
// reference_forward computes it.
//
// AVX-512 VNNI: vpdpbusd multiplies unsigned by signed bytes, so activations are stored as
// q + 128 and the prepared compensation 128 · Σ_k w is subtracted from each dot; a 4-row × 64-
// column tile keeps 16 accumulators in registers. AVX2 widens both operands to int16 and uses
// vpmaddwd (vpmaddubsw would saturate); plain loops run anywhere.
// GCC 12 warns about the intrinsics' own _mm512_undefined_* placeholders (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/quant/quant_kernels.h"

namespace loom::quant {
namespace {

constexpr std::int64_t P = QuantizedLinearData::kPanelRows;
constexpr std::int64_t kRowsPerTile = 4;
// Token rows per unit of parallel work: their quantised activations (rows × cols bytes) and a
// weight panel (64 × cols bytes) stay in L2 while the tile loop runs.
constexpr std::int64_t kRowsPerChunk = 64;
constexpr std::int64_t kBlockK4 = 64;

bool shifted_activations(Isa isa) { return isa == Isa::Avx512; }

// Row m's scale and its codes into a [Kp] bytes: q, or q + 128 (as u8) for VNNI; padding codes 0.
float quantize_row(const float* x, std::int64_t K, std::int64_t Kp, Isa isa, std::uint8_t* a) {
  const std::uint8_t shift = shifted_activations(isa) ? 0x80 : 0x00;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  if (isa == Isa::Avx512) {
    __m512 amax_v = _mm512_setzero_ps();
    for (std::int64_t k = 0; k < K; k += 16) {
      const __mmask16 mask = K - k >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (K - k)) - 1u);
      amax_v = _mm512_max_ps(amax_v, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, x + k)));
    }
    const float amax = _mm512_reduce_max_ps(amax_v);
    const float scale = amax == 0.0f ? 1.0f : amax / 127.0f;
    const __m512 scale_v = _mm512_set1_ps(scale), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    const __m128i shift_v = _mm_set1_epi8(static_cast<char>(shift));
    for (std::int64_t k = 0; k < K; k += 16) {
      const __mmask16 mask = K - k >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (K - k)) - 1u);
      const __m512 ratio = _mm512_div_ps(_mm512_maskz_loadu_ps(mask, x + k), scale_v);
      const __m512 q = _mm512_max_ps(lo, _mm512_min_ps(hi, _mm512_roundscale_ps(ratio, _MM_FROUND_TO_NEAREST_INT |
                                                                                          _MM_FROUND_NO_EXC)));
      const __m128i bytes = _mm_xor_si128(_mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)), shift_v);
      _mm_mask_storeu_epi8(a + k, mask, bytes);
    }
    std::memset(a + K, shift, static_cast<std::size_t>(Kp - K));
    return scale;
  }
#endif
  float amax = 0.0f;
  for (std::int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
  const float scale = amax == 0.0f ? 1.0f : amax / 127.0f;
  for (std::int64_t k = 0; k < K; ++k) {
    const int q = static_cast<int>(std::clamp(std::nearbyint(x[k] / scale), -127.0f, 127.0f));
    a[k] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q)) ^ shift;
  }
  std::memset(a + K, shift, static_cast<std::size_t>(Kp - K));
  return scale;
}

// y[n] for the panel's columns [n0, n0 + 64) ∩ [0, N) from corrected int32 dots.
void epilogue(const QuantizedLinearData& d, std::int64_t n0, const std::int32_t* dots, float scale_m,
              const float* bias, float* y_row) {
  const std::int64_t n1 = std::min(d.rows, n0 + P);
  for (std::int64_t n = n0; n < n1; ++n)
    y_row[n] = std::fma(scale_m * d.row_scales[static_cast<std::size_t>(n)], static_cast<float>(dots[n - n0]),
                        bias ? bias[n] : 0.0f);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
// R token rows × the panel's 64 columns over k4 steps [k_begin, k_end). The dots carry over
// between K blocks in `partial` [R, 64] i32; the last block applies the epilogue.
template <int R>
void tile_vnni(const QuantizedLinearData& d, const std::uint8_t* a, std::int64_t lda, std::int64_t p,
               std::int64_t k_begin, std::int64_t k_end, std::int32_t* partial, const float* scales_m,
               const float* bias, float* y, std::int64_t ldy) {
  const std::int8_t* panel = d.packed.data() + p * d.k4 * P * 4;
  __m512i acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j)
      acc[r][j] = k_begin == 0 ? _mm512_setzero_si512() : _mm512_loadu_si512(partial + r * P + 16 * j);
  for (std::int64_t k = k_begin; k < k_end; ++k) {
    const std::int8_t* b = panel + k * P * 4;
    __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64);
    __m512i b2 = _mm512_loadu_si512(b + 128), b3 = _mm512_loadu_si512(b + 192);
    // Keeps the four weight vectors in registers: folded into each vpdpbusd as memory operands
    // (GCC's choice otherwise) they are loaded R times, and loads, not vpdpbusd, bound the loop.
    asm("" : "+v"(b0), "+v"(b1), "+v"(b2), "+v"(b3));
    for (int r = 0; r < R; ++r) {
      std::int32_t four;
      std::memcpy(&four, a + r * lda + 4 * k, 4);
      const __m512i av = _mm512_set1_epi32(four);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
      acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], av, b2);
      acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], av, b3);
    }
  }
  if (k_end < d.k4) {
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 4; ++j) _mm512_storeu_si512(partial + r * P + 16 * j, acc[r][j]);
    return;
  }
  for (int j = 0; j < 4; ++j) {
    const std::int64_t n0 = p * P + 16 * j;
    if (n0 >= d.rows) break;
    const __mmask16 mask = d.rows - n0 >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (d.rows - n0)) - 1u);
    const __m512i comp = _mm512_loadu_si512(d.compensation.data() + n0);
    const __m512 scale_n = _mm512_loadu_ps(d.row_scales.data() + n0);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) {
      const __m512 dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][j], comp));
      const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(scales_m[r]), scale_n);
      _mm512_mask_storeu_ps(y + r * ldy + n0, mask, _mm512_fmadd_ps(scale, dot, b));
    }
  }
}
#endif

#if defined(__AVX2__)
// One token row against one panel; a half panel (32 columns) at a time keeps 8 accumulators.
void row_avx2(const QuantizedLinearData& d, const std::uint8_t* a, std::int64_t p, std::int32_t* dots) {
  const std::int8_t* panel = d.packed.data() + p * d.k4 * P * 4;
  for (std::int64_t half = 0; half < 2; ++half) {
    __m256i acc[8];
    for (__m256i& v : acc) v = _mm256_setzero_si256();
    for (std::int64_t k = 0; k < d.k4; ++k) {
      std::int32_t four;
      std::memcpy(&four, a + 4 * k, 4);
      const __m256i av = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(four)));
      const std::int8_t* b = panel + k * P * 4 + half * 128;
      for (int g = 0; g < 4; ++g) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 * g));
        const __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w));
        const __m256i hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1));
        acc[2 * g] = _mm256_add_epi32(acc[2 * g], _mm256_madd_epi16(lo, av));
        acc[2 * g + 1] = _mm256_add_epi32(acc[2 * g + 1], _mm256_madd_epi16(hi, av));
      }
    }
    // Each accumulator holds two partial sums per column: pair them up, then restore column order.
    for (int g = 0; g < 4; ++g) {
      const __m256i sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2 * g], acc[2 * g + 1]), 0xD8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dots + half * 32 + 8 * g), sums);
    }
  }
}
#endif

void row_plain(const QuantizedLinearData& d, const std::uint8_t* a, std::int64_t p, std::int32_t* dots) {
  const std::int8_t* panel = d.packed.data() + p * d.k4 * P * 4;
  for (std::int64_t j = 0; j < P; ++j) {
    std::int32_t dot = 0;
    for (std::int64_t k = 0; k < d.k4; ++k)
      for (std::int64_t i = 0; i < 4; ++i)
        dot += static_cast<std::int8_t>(a[4 * k + i]) * panel[(k * P + j) * 4 + i];
    dots[j] = dot;
  }
}

// Token rows [m0, m1) against panel p.
void rows_against_panel(const QuantizedLinearData& d, [[maybe_unused]] Isa isa, const std::uint8_t* a,
                        const float* scales_m, std::int64_t m0, std::int64_t m1, std::int64_t p, const float* bias,
                        float* y) {
  const std::int64_t Kp = d.padded_cols(), N = d.rows;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  if (isa == Isa::Avx512) {
    // K blocks of kBlockK4 · 4 columns keep the panel's block (64 × 256 bytes) in L1 while
    // every tile of the chunk passes over it.
    alignas(64) std::int32_t partial[kRowsPerChunk * P];
    for (std::int64_t k0 = 0; k0 < d.k4; k0 += kBlockK4) {
      const std::int64_t k1 = std::min(d.k4, k0 + kBlockK4);
      for (std::int64_t m = m0; m < m1; m += kRowsPerTile) {
        const std::uint8_t* am = a + m * Kp;
        float* ym = y + m * N;
        std::int32_t* pm = partial + (m - m0) * P;
        switch (std::min(kRowsPerTile, m1 - m)) {
          case 1: tile_vnni<1>(d, am, Kp, p, k0, k1, pm, scales_m + m, bias, ym, N); break;
          case 2: tile_vnni<2>(d, am, Kp, p, k0, k1, pm, scales_m + m, bias, ym, N); break;
          case 3: tile_vnni<3>(d, am, Kp, p, k0, k1, pm, scales_m + m, bias, ym, N); break;
          default: tile_vnni<4>(d, am, Kp, p, k0, k1, pm, scales_m + m, bias, ym, N); break;
        }
      }
    }
    return;
  }
#endif
  std::int32_t dots[P];
  for (std::int64_t m = m0; m < m1; ++m) {
#if defined(__AVX2__)
    if (isa == Isa::Avx2)
      row_avx2(d, a + m * Kp, p, dots);
    else
#endif
      row_plain(d, a + m * Kp, p, dots);
    epilogue(d, p * P, dots, scales_m[m], bias, y + m * N);
  }
}

}  // namespace

void int8_gemm(const QuantizedLinearData& d, Isa isa, const float* x, std::int64_t tokens, const float* bias,
               float* y) {
  const std::int64_t K = d.cols, Kp = d.padded_cols();
  std::vector<std::uint8_t> a(static_cast<std::size_t>(tokens * Kp));
  std::vector<float> scales_m(static_cast<std::size_t>(tokens));
#pragma omp parallel for schedule(static)
  for (std::int64_t m = 0; m < tokens; ++m) scales_m[m] = quantize_row(x + m * K, K, Kp, isa, a.data() + m * Kp);

  const std::int64_t chunks = (tokens + kRowsPerChunk - 1) / kRowsPerChunk;
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c)
    for (std::int64_t p = 0; p < d.panels; ++p) {
      const std::int64_t m0 = c * kRowsPerChunk, m1 = std::min(tokens, m0 + kRowsPerChunk);
      rows_against_panel(d, isa, a.data(), scales_m.data(), m0, m1, p, bias, y);
    }
}

}  // namespace loom::quant
