// SmoothQuant (Xiao et al. 2023): migrate activation outliers into the weights before W8A8
// quantization, and the per-token int8 quantization of activations that W8A8 multiplies.
//
// For an input shared by several linears (qkv after the attention norm, gate and up after
// the MLP norm), column j of the input is divided by s_j and column j of every such linear's
// weight multiplied by it, with
//
//     s_j = max(1e-5, max|X_j|^α / max(1e-5, max|W_:,j|)^(1−α))
//
// exactly as smoothquant's `smooth_ln_fcs` (its weight max is taken over every linear fed by
// the input and clamped at 1e-5, and so is s; the activation max is not clamped there, so a
// column that was always 0 gets s = 1e-5). The division is folded into the preceding norm's
// weight (and bias, for LayerNorm), so the network computes the same function up to float
// rounding. Under tensor parallelism the driver takes the weight max over tp ranks (the
// column-parallel linears split rows) before calling smooth_scales.
//
// Thread safety: pure functions on caller-owned arrays.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace loom::compress {

// max over rows of |W_ij| for each column j of w [rows, cols]; fold several linears (or tp
// ranks) with an elementwise max.
std::vector<float> column_absmax(const float* w, std::int64_t rows, std::int64_t cols);

// s [n] from act_absmax [n] and weight_absmax [n] (see above). alpha in [0, 1].
std::vector<float> smooth_scales(std::span<const float> act_absmax, std::span<const float> weight_absmax, double alpha);

// One linear fed by the smoothed input: weight [rows, n] row-major, modified in place.
struct SmoothedLinear {
  float* weight;
  std::int64_t rows;
};

// norm_weight [n] and norm_bias [n] (nullptr for RMSNorm) /= s; every linear's column j *= s_j.
void apply_smoothing(std::span<float> norm_weight, float* norm_bias, std::span<const float> s,
                     std::span<const SmoothedLinear> linears);

// Symmetric per-token int8: for each row of x [tokens, n], scale = max|x_row| / 127 (1 for an
// all-zero row) and q = clamp(round_half_even(x / scale), −127, 127). q [tokens, n],
// scales [tokens]. Throws on a non-finite activation.
void quantize_activations_per_token(const float* x, std::int64_t tokens, std::int64_t n, std::int8_t* q,
                                    float* scales);

}  // namespace loom::compress
