// int8 KV cache: attention keys and values stored as one signed byte per element with one f32
// scale per (head, token) row of head_dim values, a quarter of the f32 cache's bytes.
//
//   scale = max|row| / 127 (1 for an all-zero row),  q = clamp(round_half_even(x / scale), ±127),
//   x̂ = scale · q,  so |x − x̂| <= scale / 2 for every element.
//
// fake_quantize_kv_inplace applies the round trip to f32 rows, bit for bit what quantize_kv then
// dequantize_kv give, so the full-sequence scoring path sees exactly what generation with an
// int8 cache sees.
//
// Buffers are the caller's: x [rows, head_dim] f32, q [rows, head_dim] int8, scales [rows].
// Thread safety: pure functions over the given buffers; they do not spawn threads, so callers
// may run them on disjoint rows from several threads.
#pragma once

#include <cstdint>

namespace loom::quant {

void quantize_kv(const float* x, std::int64_t rows, std::int64_t head_dim, std::int8_t* q, float* scales);
void dequantize_kv(const std::int8_t* q, const float* scales, std::int64_t rows, std::int64_t head_dim, float* x);
void fake_quantize_kv_inplace(float* x, std::int64_t rows, std::int64_t head_dim);

}  // namespace loom::quant
