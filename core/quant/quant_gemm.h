// Quantized linear layers on the CPU: y[tokens, out] = x[tokens, in] · Wᵀ + bias with W a
// QuantizedMatrix (core/quant/quantized.h), as loom-eval and generation run them.
//
// Two modes:
//   Float (W8A16, W4A16): weight-only. Activations stay f32; W is dequantised on the fly. For
//     decode-sized batches (tokens <= kFusedGemvMaxTokens) a fused GEMV reads the packed codes
//     directly (4-bit weights are read at half the bytes of 8-bit ones); for more tokens W is
//     dequantised to f32 (in panels of at most 16 MiB) and multiplied by loom::cpu::sgemm.
//     Each weight is dequantised exactly as dequantize_value does (scale · (code − zero) in one
//     float rounding), so the result differs from x · dequant(W)ᵀ only by summation order.
//   Int8 (W8A8): per-token int8 activations times signed int8 weights (code − 128) with exact
//     int32 dot products (AVX-512 VNNI, an exact AVX2 int16 path, or plain loops), then
//     y = scale_token · scale_row · dot + bias. Needs bits 8, symmetric, per-channel weights.
//     loom's own kernel, not oneDNN's int8 matmul: bench-quant-gemm measures both, and they are
//     within ~10-20% while loom's keeps the exactness and the epilogue under its control.
//
// Every fast path has reference_forward (plain loops) as its oracle; forward_using runs a
// chosen instruction set so tests cover each compiled one.
//
// Ownership and threads: prepare copies what it needs out of the QuantizedMatrix (repacked for
// the kernels); the result is immutable and may be shared. forward is const but parallelises
// with OpenMP (and sgemm) inside: call it from one thread at a time, never from inside a
// parallel region. It allocates its scratch per call.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/quant/quantized.h"

namespace loom::quant {

enum class ActivationMode {
  Float,  // W8A16, W4A16: weight-only, dequantising
  Int8,   // W8A8
};

// The instruction sets a kernel can be built for. compiled_isas() lists those this build has
// (Plain always), best last; forward uses the best.
enum class Isa { Plain, Avx2, Avx512 };
std::vector<Isa> compiled_isas();
const char* isa_name(Isa isa);

// Weight-only batches of at most this many tokens take the fused GEMV; larger ones dequantise
// W and call sgemm (measured: the GEMV wins up to 8 tokens, sgemm from 16; bench-quant-gemm).
inline constexpr std::int64_t kFusedGemvMaxTokens = 8;

struct QuantizedLinearData;  // the repacked weight (quant_kernels.h)

class QuantizedLinear {
 public:
  // Weight-only: any QuantizedMatrix (8 or 4 bits, any group size incl. a ragged last group,
  // symmetric or not). Int8: requires bits 8, symmetric, group_size 0; otherwise throws
  // std::invalid_argument naming what is wrong. Also throws when codes/scales/zeros do not have
  // the sizes rows/cols/scheme imply.
  static std::shared_ptr<const QuantizedLinear> prepare(const QuantizedMatrix& w, ActivationMode mode);

  std::int64_t in_features() const;
  std::int64_t out_features() const;
  ActivationMode mode() const;

  // x [tokens, in], y [tokens, out] row-major f32; bias [out] or nullptr. Overwrites y.
  void forward(const float* x, std::int64_t tokens, const float* bias, float* y) const;
  // The same with a chosen instruction set (one of compiled_isas(), else std::invalid_argument).
  void forward_using(Isa isa, const float* x, std::int64_t tokens, const float* bias, float* y) const;

  // Bytes the prepared weight holds (codes, scales, zeros and precomputed sums).
  std::int64_t bytes() const;

  ~QuantizedLinear();
  QuantizedLinear(const QuantizedLinear&) = delete;
  QuantizedLinear& operator=(const QuantizedLinear&) = delete;

 private:
  explicit QuantizedLinear(std::unique_ptr<QuantizedLinearData> data);
  std::unique_ptr<QuantizedLinearData> data_;
};

// Plain loops, the reference every fast path is tested against:
//   Float: y = x · dequant(W)ᵀ + b, accumulated in double.
//   Int8:  per token m, scale_m = max|x_m| / 127 (1 for an all-zero row),
//          q = round_half_even(x / scale_m) clamped to ±127; weights code − 128 with the row's
//          scale; y = scale_m · scale_n · Σ q·w (int32) + b.
// Throws like prepare for a matrix the mode cannot take.
void reference_forward(const QuantizedMatrix& w, ActivationMode mode, const float* x, std::int64_t tokens,
                       const float* bias, float* y);

}  // namespace loom::quant
