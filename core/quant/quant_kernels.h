// Internal to core/quant: the repacked weight a QuantizedLinear holds and the kernels that read
// it (quant_weight_only.cpp, quant_int8_gemm.cpp). Not for use outside core/quant.
//
// Weight-only layout (ActivationMode::Float), per output row n:
//   int8: the codes as stored, [rows, cols].
//   int4: blocks of 32 columns, 16 bytes each; byte j of block b holds column 32b + j in the low
//         nibble and column 32b + 16 + j in the high one (so one 16-byte load widens into two
//         consecutive 16-column vectors); the last block is zero-padded. [rows, ceil(cols/32)·16].
//   scales [rows, groups] f32, zeros [rows, groups] u8; group boundaries are multiples of 32, so
//   no 16- or 8-wide vector chunk straddles two groups.
// W8A8 layout (ActivationMode::Int8): signed weights code − 128 in panels of 64 output rows,
//   [panels][k4 = ceil(cols/4)][64 rows][4 consecutive columns] bytes (the operand order of
//   AVX-512 VNNI vpdpbusd), zero-padded in both directions; compensation[n] = 128 · Σ_k w[n, k]
//   undoes the +128 shift that makes activations unsigned for vpdpbusd.
//
// Threads: the kernels open their own OpenMP regions; call from one thread at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "core/quant/quant_gemm.h"

namespace loom::quant {

struct QuantizedLinearData {
  ActivationMode mode = ActivationMode::Float;
  std::int64_t rows = 0, cols = 0;

  // Weight-only.
  int bits = 8;
  std::int64_t group_width = 0;  // columns per group (cols for per-channel)
  std::int64_t groups = 0;
  std::int64_t packed_row_bytes = 0;
  std::vector<std::uint8_t> codes;
  std::vector<float> scales;
  std::vector<std::uint8_t> zeros;

  // W8A8.
  static constexpr std::int64_t kPanelRows = 64;
  std::int64_t k4 = 0, panels = 0;
  std::vector<std::int8_t> packed;
  std::vector<std::int32_t> compensation;  // [panels · 64]
  std::vector<float> row_scales;           // [panels · 64], 0 for padding rows

  std::int64_t padded_cols() const { return 4 * k4; }
};

// Weight-only: rows [r0, r1) of dequant(W) into out [r1 − r0, cols].
void dequantize_rows(const QuantizedLinearData& d, Isa isa, std::int64_t r0, std::int64_t r1, float* out);
// Weight-only, tokens <= kFusedGemvMaxTokens: y = x · dequant(W)ᵀ (+ bias) straight from the codes.
void fused_gemv(const QuantizedLinearData& d, Isa isa, const float* x, std::int64_t tokens, const float* bias,
                float* y);
// Weight-only, any token count: dequantised panels times loom::cpu::sgemm.
void dequantized_sgemm(const QuantizedLinearData& d, Isa isa, const float* x, std::int64_t tokens,
                       const float* bias, float* y);
// W8A8.
void int8_gemm(const QuantizedLinearData& d, Isa isa, const float* x, std::int64_t tokens, const float* bias,
               float* y);

}  // namespace loom::quant
