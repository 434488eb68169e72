// Weight-only (W8A16, W4A16) kernels: the fused dequantising GEMV for decode-sized batches and
// the dequantise-then-sgemm path for larger ones. Layout: quant_kernels.h.
//
// Every path dequantises a weight as dequantize_value does, scale · (code − zero) rounded once,
// so results differ from x · dequant(W)ᵀ only in summation order. dequantize_rows walks a row
// group by group in vector chunks (groups are multiples of 32 columns, so no chunk straddles
// two); the AVX-512 GEMV has its own unrolled loop because it is the decode hot path.
// GCC 12 warns about the intrinsics' own _mm512_undefined_* placeholders (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/kernels/gemm/gemm.h"
#include "core/quant/quant_kernels.h"

namespace loom::quant {
namespace {

const std::uint8_t* row_codes(const QuantizedLinearData& d, std::int64_t n) {
  return d.codes.data() + n * d.packed_row_bytes;
}

int code_at(const QuantizedLinearData& d, const std::uint8_t* row, std::int64_t c) {
  if (d.bits == 8) return row[c];
  const std::uint8_t byte = row[(c / 32) * 16 + c % 16];
  return (c % 32) < 16 ? byte & 0x0F : byte >> 4;
}

float plain_weight(const QuantizedLinearData& d, std::int64_t n, const std::uint8_t* row, std::int64_t c) {
  const std::size_t g = static_cast<std::size_t>(n * d.groups + c / d.group_width);
  return d.scales[g] * static_cast<float>(code_at(d, row, c) - d.zeros[g]);
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
__mmask16 mask16(std::int64_t len) {
  if (len <= 0) return 0;
  return len >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << len) - 1u);
}

// consume(c0, weights, mask) for each 16-column chunk of row n, group by group (so the group's
// scale and zero are broadcast once, with no division per chunk).
template <typename Consume>
inline void walk_row_avx512(const QuantizedLinearData& d, std::int64_t n, Consume&& consume) {
  const std::uint8_t* row = row_codes(d, n);
  const __m512i low_nibble = _mm512_set1_epi32(0x0F);
  for (std::int64_t g = 0; g < d.groups; ++g) {
    const std::int64_t begin = g * d.group_width, end = std::min(d.cols, begin + d.group_width);
    const __m512i zero = _mm512_set1_epi32(d.zeros[static_cast<std::size_t>(n * d.groups + g)]);
    const __m512 scale = _mm512_set1_ps(d.scales[static_cast<std::size_t>(n * d.groups + g)]);
    const auto dequant = [&](__m512i codes) {
      return _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(codes, zero)));
    };
    if (d.bits == 8) {
      for (std::int64_t c0 = begin; c0 < end; c0 += 16) {
        const __mmask16 mask = mask16(end - c0);
        consume(c0, dequant(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, row + c0))), mask);
      }
      continue;
    }
    for (std::int64_t c0 = begin; c0 < end; c0 += 32) {
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c0 / 2)));
      consume(c0, dequant(_mm512_and_si512(bytes, low_nibble)), mask16(end - c0));
      if (c0 + 16 < end) consume(c0 + 16, dequant(_mm512_srli_epi32(bytes, 4)), mask16(end - c0 - 16));
    }
  }
}
#endif

#if defined(__AVX2__)
__m256i mask8(std::int64_t len) {
  alignas(32) static const std::int32_t ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  const __m256i lanes = _mm256_load_si256(reinterpret_cast<const __m256i*>(ramp));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<std::int64_t>(len, 8))), lanes);
}

template <typename Consume>
inline void walk_row_avx2(const QuantizedLinearData& d, std::int64_t n, Consume&& consume) {
  const std::uint8_t* row = row_codes(d, n);
  const __m256i low_nibble = _mm256_set1_epi32(0x0F);
  const auto load8 = [](const std::uint8_t* p, std::int64_t len) {
    std::uint64_t bytes = 0;
    std::memcpy(&bytes, p, static_cast<std::size_t>(std::min<std::int64_t>(len, 8)));
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bytes)));
  };
  for (std::int64_t g = 0; g < d.groups; ++g) {
    const std::int64_t begin = g * d.group_width, end = std::min(d.cols, begin + d.group_width);
    const __m256i zero = _mm256_set1_epi32(d.zeros[static_cast<std::size_t>(n * d.groups + g)]);
    const __m256 scale = _mm256_set1_ps(d.scales[static_cast<std::size_t>(n * d.groups + g)]);
    const auto dequant = [&](__m256i codes) {
      return _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_sub_epi32(codes, zero)));
    };
    if (d.bits == 8) {
      for (std::int64_t c0 = begin; c0 < end; c0 += 8) consume(c0, dequant(load8(row + c0, end - c0)), mask8(end - c0));
      continue;
    }
    for (std::int64_t c0 = begin; c0 < end; c0 += 32)
      for (std::int64_t half = 0; half < 2; ++half) {  // bytes 0-7 hold columns 0-7 and 16-23
        const __m256i bytes = load8(row + c0 / 2 + 8 * half, 8);
        const std::int64_t low = c0 + 8 * half, high = c0 + 16 + 8 * half;
        if (low < end) consume(low, dequant(_mm256_and_si256(bytes, low_nibble)), mask8(end - low));
        if (high < end) consume(high, dequant(_mm256_srli_epi32(bytes, 4)), mask8(end - high));
      }
  }
}

float horizontal_sum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_movehdup_ps(sum2)));
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
// The fused GEMV, unrolled by hand: the row goes in 32-column blocks (one int4 block, two int8
// chunks; groups are whole blocks), codes become c − zero exactly by the 2^23 trick (OR the code
// into the mantissa of 2^23, subtract 2^23 + zero) and are scaled once, as dequantize_value
// does. Each token keeps U independent accumulators, because with few tokens the FMA latency,
// not the dequantisation, would otherwise bound the loop.
template <int T>
void gemv_row_avx512(const QuantizedLinearData& d, std::int64_t n, const float* x, float* sums) {
  constexpr int U = T >= 2 ? 2 : 4;
  constexpr int kBlocks = U / 2;  // blocks per unrolled step
  const std::int64_t K = d.cols;
  const std::uint8_t* row = row_codes(d, n);
  const __m512i two23_bits = _mm512_set1_epi32(0x4B000000);
  const __m512i low_nibble = _mm512_set1_epi32(0x0F);
  std::int64_t g = -1, group_end = 0;
  __m512 scale = _mm512_setzero_ps(), offset = _mm512_setzero_ps();
  // Dequantised columns [c0, c0 + 16) and [c0 + 16, c0 + 32); a partial block reads codes only below K.
  const auto block = [&](std::int64_t c0, bool partial, __m512& lo, __m512& hi) {
    if (c0 >= group_end) {
      ++g;
      group_end = std::min(K, group_end + d.group_width);
      const std::size_t at = static_cast<std::size_t>(n * d.groups + g);
      scale = _mm512_set1_ps(d.scales[at]);
      offset = _mm512_set1_ps(8388608.0f + static_cast<float>(d.zeros[at]));
    }
    __m512i lo_codes, hi_codes;
    if (d.bits == 8 && partial) {
      lo_codes = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask16(K - c0), row + c0));
      hi_codes = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask16(K - c0 - 16), row + c0 + 16));
    } else if (d.bits == 8) {
      lo_codes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c0)));
      hi_codes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c0 + 16)));
    } else {
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c0 / 2)));
      lo_codes = _mm512_and_si512(bytes, low_nibble);
      hi_codes = _mm512_srli_epi32(bytes, 4);
    }
    lo = _mm512_mul_ps(scale, _mm512_sub_ps(_mm512_castsi512_ps(_mm512_or_si512(lo_codes, two23_bits)), offset));
    hi = _mm512_mul_ps(scale, _mm512_sub_ps(_mm512_castsi512_ps(_mm512_or_si512(hi_codes, two23_bits)), offset));
  };
  __m512 acc[T][U];
  for (int t = 0; t < T; ++t)
    for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
  std::int64_t c0 = 0;
  for (; c0 + 32 * kBlocks <= K; c0 += 32 * kBlocks)
    for (int b = 0; b < kBlocks; ++b) {
      const std::int64_t cb = c0 + 32 * b;
      __m512 lo, hi;
      block(cb, false, lo, hi);
      for (int t = 0; t < T; ++t) {
        acc[t][2 * b] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x + t * K + cb), acc[t][2 * b]);
        acc[t][2 * b + 1] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + t * K + cb + 16), acc[t][2 * b + 1]);
      }
    }
  for (; c0 < K; c0 += 32) {
    __m512 lo, hi;
    block(c0, true, lo, hi);
    const __mmask16 lo_mask = mask16(K - c0), hi_mask = mask16(K - c0 - 16);
    for (int t = 0; t < T; ++t) {
      acc[t][0] = _mm512_fmadd_ps(lo, _mm512_maskz_loadu_ps(lo_mask, x + t * K + c0), acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(hi, _mm512_maskz_loadu_ps(hi_mask, x + t * K + c0 + 16), acc[t][1]);
    }
  }
  for (int t = 0; t < T; ++t) {
    __m512 total = acc[t][0];
    for (int u = 1; u < U; ++u) total = _mm512_add_ps(total, acc[t][u]);
    sums[t] = _mm512_reduce_add_ps(total);
  }
}
#endif

// One output row for T tokens; T is a template parameter so the accumulators stay in registers.
template <int T>
void gemv_row(const QuantizedLinearData& d, [[maybe_unused]] Isa isa, std::int64_t n, const float* x, float* sums) {
  const std::int64_t K = d.cols;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if (isa == Isa::Avx512) {
    gemv_row_avx512<T>(d, n, x, sums);
    return;
  }
#endif
#if defined(__AVX2__)
  if (isa == Isa::Avx2) {
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    walk_row_avx2(d, n, [&](std::int64_t c0, __m256 w, __m256i mask) {
      for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(w, _mm256_maskload_ps(x + t * K + c0, mask), acc[t]);
    });
    for (int t = 0; t < T; ++t) sums[t] = horizontal_sum(acc[t]);
    return;
  }
#endif
  const std::uint8_t* row = row_codes(d, n);
  for (int t = 0; t < T; ++t) sums[t] = 0.0f;
  for (std::int64_t c = 0; c < K; ++c) {
    const float w = plain_weight(d, n, row, c);
    for (int t = 0; t < T; ++t) sums[t] += w * x[t * K + c];
  }
}

template <int T>
void gemv_tokens(const QuantizedLinearData& d, Isa isa, const float* x, const float* bias, float* y) {
  const std::int64_t N = d.rows;
#pragma omp parallel for schedule(static)
  for (std::int64_t n = 0; n < N; ++n) {
    float sums[T];
    gemv_row<T>(d, isa, n, x, sums);
    const float b = bias ? bias[n] : 0.0f;
    for (int t = 0; t < T; ++t) y[t * N + n] = sums[t] + b;
  }
}

}  // namespace

void dequantize_rows(const QuantizedLinearData& d, [[maybe_unused]] Isa isa, std::int64_t r0, std::int64_t r1,
                     float* out) {
  const std::int64_t K = d.cols;
  // On the calling thread: OpenMP workers left spinning after a parallel region here take the
  // cores from the SGEMM's own threads that run next (measured: loom-eval 3.5x slower on 2
  // cores), and dequantizing costs 1/tokens of the GEMM that follows.
  for (std::int64_t n = r0; n < r1; ++n) {
    float* dst = out + (n - r0) * K;
#if defined(__AVX512F__) && defined(__AVX512BW__)
    if (isa == Isa::Avx512) {
      walk_row_avx512(d, n, [&](std::int64_t c0, __m512 w, __mmask16 mask) {
        _mm512_mask_storeu_ps(dst + c0, mask, w);
      });
      continue;
    }
#endif
#if defined(__AVX2__)
    if (isa == Isa::Avx2) {
      walk_row_avx2(d, n, [&](std::int64_t c0, __m256 w, __m256i mask) { _mm256_maskstore_ps(dst + c0, mask, w); });
      continue;
    }
#endif
    const std::uint8_t* row = row_codes(d, n);
    for (std::int64_t c = 0; c < K; ++c) dst[c] = plain_weight(d, n, row, c);
  }
}

void fused_gemv(const QuantizedLinearData& d, Isa isa, const float* x, std::int64_t tokens, const float* bias,
                float* y) {
  const std::int64_t K = d.cols, N = d.rows;
  // Chunks of at most 8 tokens on AVX-512 (32 registers) and 4 elsewhere (AVX2 has 16): the
  // accumulators, the weight vector and the x loads then fit without spilling. Each chunk
  // re-reads the codes, from cache.
  const std::int64_t chunk = isa == Isa::Avx512 ? 8 : 4;
  for (std::int64_t t0 = 0; t0 < tokens; t0 += chunk) {
    const float* xt = x + t0 * K;
    float* yt = y + t0 * N;
    switch (std::min(chunk, tokens - t0)) {
      case 1: gemv_tokens<1>(d, isa, xt, bias, yt); break;
      case 2: gemv_tokens<2>(d, isa, xt, bias, yt); break;
      case 3: gemv_tokens<3>(d, isa, xt, bias, yt); break;
      case 4: gemv_tokens<4>(d, isa, xt, bias, yt); break;
      case 5: gemv_tokens<5>(d, isa, xt, bias, yt); break;
      case 6: gemv_tokens<6>(d, isa, xt, bias, yt); break;
      case 7: gemv_tokens<7>(d, isa, xt, bias, yt); break;
      default: gemv_tokens<8>(d, isa, xt, bias, yt); break;
    }
  }
}

void dequantized_sgemm(const QuantizedLinearData& d, Isa isa, const float* x, std::int64_t tokens,
                       const float* bias, float* y) {
  const std::int64_t K = d.cols, N = d.rows;
  // Measured (bench-quant-gemm): one sgemm over the whole dequantised matrix beats L2-sized
  // panels at every token count, because sgemm on skinny panels (16 tokens × 80 rows × 3072)
  // runs far below its rate on the whole. Panels only bound the scratch for very large layers.
  constexpr std::int64_t kMaxScratchFloats = std::int64_t{1} << 22;  // 16 MiB
  const std::int64_t panel = std::min(N, std::max<std::int64_t>(64, kMaxScratchFloats / K));
  std::vector<float> weights(static_cast<std::size_t>(panel * K));
  for (std::int64_t r0 = 0; r0 < N; r0 += panel) {
    const std::int64_t r1 = std::min(N, r0 + panel);
    dequantize_rows(d, isa, r0, r1, weights.data());
    cpu::sgemm(false, true, tokens, r1 - r0, K, 1.0f, x, K, weights.data(), K, 0.0f, y + r0, N);
  }
  if (bias == nullptr) return;
  for (std::int64_t m = 0; m < tokens; ++m)
    for (std::int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
}

}  // namespace loom::quant
