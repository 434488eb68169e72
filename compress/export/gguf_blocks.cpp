#include "compress/export/gguf_blocks.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "io/hf/safetensors.h"

// llama.cpp compiles its reference quantizers as ISO C, where x·id + 8.5 is two roundings;
// loom builds GNU C++ with -march=native, where GCC would fuse them into one FMA and move an
// occasional Q4_0 code by one. Keep the two roundings so files match llama.cpp's byte for byte.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace loom::compress::gguf {

std::uint32_t ggml_type_id(GgufType type) {
  switch (type) {
    case GgufType::F32: return 0;   // GGML_TYPE_F32
    case GgufType::Q4_0: return 2;  // GGML_TYPE_Q4_0
    case GgufType::Q8_0: return 8;  // GGML_TYPE_Q8_0
  }
  throw std::logic_error("ggml_type_id: unknown GgufType");
}

const char* type_name(GgufType type) {
  switch (type) {
    case GgufType::F32: return "F32";
    case GgufType::Q4_0: return "Q4_0";
    case GgufType::Q8_0: return "Q8_0";
  }
  return "?";
}

std::size_t row_bytes(GgufType type, std::int64_t n) {
  if (type == GgufType::F32) return static_cast<std::size_t>(n) * sizeof(float);
  if (n % kBlockValues != 0) {
    throw std::invalid_argument(std::string("GGUF ") + type_name(type) + ": a row of " + std::to_string(n) +
                                " values is not a multiple of the 32-value block");
  }
  const auto blocks = static_cast<std::size_t>(n / kBlockValues);
  return blocks * (type == GgufType::Q8_0 ? kQ8_0BlockBytes : kQ4_0BlockBytes);
}

std::uint16_t f32_to_f16_bits(float x) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) return sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN, inf
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds past the largest half, 65504
  if (magnitude < 0x38800000u) {
    // Below 2^-14: a subnormal half, counted in units of 2^-24. The f32 value is
    // mantissa · 2^(exponent − 150), i.e. mantissa >> (126 − exponent) units.
    if (magnitude <= 0x33000000u) return sign;  // <= 2^-25: zero (2^-25 itself ties to the even 0)
    const std::uint32_t exponent = magnitude >> 23;
    const std::uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;  // 14 .. 24
    std::uint32_t units = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (units & 1u) != 0)) ++units;  // may carry into the smallest normal
    return static_cast<std::uint16_t>(sign | units);
  }
  // Normal: rebias the exponent (127 → 15) and round the 23-bit mantissa to 10 bits; a carry out
  // of the mantissa correctly increments the exponent.
  std::uint32_t half_bits = ((magnitude >> 23) - 112u) << 10 | (magnitude & 0x7fffffu) >> 13;
  const std::uint32_t rest = magnitude & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half_bits & 1u) != 0)) ++half_bits;
  return static_cast<std::uint16_t>(sign | half_bits);
}

float f16_bits_to_f32(std::uint16_t bits) { return io::hf::f16_bits_to_f32(bits); }

namespace {

void store_f16(std::uint8_t* out, float d) {
  const std::uint16_t bits = f32_to_f16_bits(d);
  std::memcpy(out, &bits, 2);
}

float load_f16(const std::uint8_t* in) {
  std::uint16_t bits = 0;
  std::memcpy(&bits, in, 2);
  return f16_bits_to_f32(bits);
}

}  // namespace

void quantize_row_q8_0(const float* x, std::int64_t n, std::uint8_t* out) {
  row_bytes(GgufType::Q8_0, n);
  for (std::int64_t b = 0; b < n / kBlockValues; ++b, out += kQ8_0BlockBytes) {
    const float* v = x + b * kBlockValues;
    float amax = 0.0f;
    for (std::int64_t j = 0; j < kBlockValues; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(out, d);
    for (std::int64_t j = 0; j < kBlockValues; ++j) {
      out[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::roundf(v[j] * id)));
    }
  }
}

void quantize_row_q4_0(const float* x, std::int64_t n, std::uint8_t* out) {
  row_bytes(GgufType::Q4_0, n);
  constexpr std::int64_t kHalf = kBlockValues / 2;
  for (std::int64_t b = 0; b < n / kBlockValues; ++b, out += kQ4_0BlockBytes) {
    const float* v = x + b * kBlockValues;
    float amax = 0.0f, max = 0.0f;  // the first value of largest magnitude, with its sign
    for (std::int64_t j = 0; j < kBlockValues; ++j) {
      if (amax < std::fabs(v[j])) amax = std::fabs(v[j]), max = v[j];
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(out, d);
    for (std::int64_t j = 0; j < kHalf; ++j) {
      // The reference truncates through int8_t; x·id + 8.5 lies in [0.5, 16.5], so this is
      // floor, i.e. round-half-up of x·id + 8.
      const auto low = static_cast<std::uint8_t>(std::min<int>(15, static_cast<std::int8_t>(v[j] * id + 8.5f)));
      const auto high =
          static_cast<std::uint8_t>(std::min<int>(15, static_cast<std::int8_t>(v[kHalf + j] * id + 8.5f)));
      out[2 + j] = static_cast<std::uint8_t>(low | high << 4);
    }
  }
}

void dequantize_row_q8_0(const std::uint8_t* blocks, std::int64_t n, float* out) {
  row_bytes(GgufType::Q8_0, n);
  for (std::int64_t b = 0; b < n / kBlockValues; ++b, blocks += kQ8_0BlockBytes) {
    const float d = load_f16(blocks);
    for (std::int64_t j = 0; j < kBlockValues; ++j) {
      out[b * kBlockValues + j] = d * static_cast<float>(static_cast<std::int8_t>(blocks[2 + j]));
    }
  }
}

void dequantize_row_q4_0(const std::uint8_t* blocks, std::int64_t n, float* out) {
  row_bytes(GgufType::Q4_0, n);
  constexpr std::int64_t kHalf = kBlockValues / 2;
  for (std::int64_t b = 0; b < n / kBlockValues; ++b, blocks += kQ4_0BlockBytes) {
    const float d = load_f16(blocks);
    for (std::int64_t j = 0; j < kHalf; ++j) {
      out[b * kBlockValues + j] = d * static_cast<float>((blocks[2 + j] & 0x0F) - 8);
      out[b * kBlockValues + kHalf + j] = d * static_cast<float>((blocks[2 + j] >> 4) - 8);
    }
  }
}

void encode_row(GgufType type, const float* x, std::int64_t n, std::uint8_t* out) {
  switch (type) {
    case GgufType::F32: std::memcpy(out, x, static_cast<std::size_t>(n) * sizeof(float)); return;
    case GgufType::Q8_0: quantize_row_q8_0(x, n, out); return;
    case GgufType::Q4_0: quantize_row_q4_0(x, n, out); return;
  }
}

}  // namespace loom::compress::gguf
