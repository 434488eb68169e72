// The GGML tensor encodings loom writes into GGUF files, bit-compatible with llama.cpp
// (ggml/src/ggml-common.h, ggml-quants.c):
//
//   F32   4-byte little-endian floats.
//   Q8_0  blocks of 32 values: fp16 d, then 32 int8 q;           value = d · q      (34 bytes)
//   Q4_0  blocks of 32 values: fp16 d, then 16 bytes of nibbles;  value = d · (n − 8) (18 bytes)
//         byte j holds value j in its low nibble and value j + 16 in its high nibble.
//
// The quantizers are llama.cpp's reference ones, quantize_row_q8_0_ref and
// quantize_row_q4_0_ref, so a file loom writes is byte-identical to one llama.cpp's own
// tools would write from the same f32 values:
//   Q8_0: d = max|x| / 127, q = roundf(x / d)              (|x − d·q| <= d/2 before fp16 rounding)
//   Q4_0: d = −m / 8 where m is the value of largest magnitude (sign kept),
//         n = min(15, trunc(x / d + 8.5))                  (|x − d·(n−8)| <= |d|/2, except the
//         values of magnitude |m| and sign opposite to m, clamped to n = 15: error up to |d|)
// Both multiply by 1/d computed in f32, exactly as the reference does, and store d rounded to
// fp16 (nearest, ties to even), which adds at most |q|·|d|·2^-11 to the error above.
//
// Pure functions: safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace loom::compress {

// The tensor types a loom GGUF holds.
enum class GgufType { F32, Q8_0, Q4_0 };

namespace gguf {

inline constexpr std::int64_t kBlockValues = 32;  // QK8_0 = QK4_0
inline constexpr std::size_t kQ8_0BlockBytes = 2 + 32;
inline constexpr std::size_t kQ4_0BlockBytes = 2 + 16;

// ggml's type ids (enum ggml_type) as stored in a tensor info.
std::uint32_t ggml_type_id(GgufType type);
const char* type_name(GgufType type);
// Bytes of one row of n values; throws std::invalid_argument when n is not a multiple of 32
// for a block type.
std::size_t row_bytes(GgufType type, std::int64_t n);

// IEEE binary16 bits of x, rounded to nearest with ties to even (what ggml's
// GGML_FP32_TO_FP16 does on every platform); overflow gives ±inf, NaN stays NaN.
std::uint16_t f32_to_f16_bits(float x);
float f16_bits_to_f32(std::uint16_t bits);

// n values (a multiple of 32) into n / 32 blocks at `out` (row_bytes(type, n) bytes).
void quantize_row_q8_0(const float* x, std::int64_t n, std::uint8_t* out);
void quantize_row_q4_0(const float* x, std::int64_t n, std::uint8_t* out);
void dequantize_row_q8_0(const std::uint8_t* blocks, std::int64_t n, float* out);
void dequantize_row_q4_0(const std::uint8_t* blocks, std::int64_t n, float* out);

// One row of `type` (F32 copies its bytes).
void encode_row(GgufType type, const float* x, std::int64_t n, std::uint8_t* out);

}  // namespace gguf
}  // namespace loom::compress
