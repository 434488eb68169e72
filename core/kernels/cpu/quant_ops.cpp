// The CPU backend's quantized ops: linear layers through core/quant/quant_gemm.h and the
// int8 KV round trip through core/quant/kv_int8.h. Both take f32 tensors only (no bf16
// staging: the quantized paths are evaluation and generation of f32 models).
#include <stdexcept>
#include <string>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/quant/kv_int8.h"
#include "core/quant/quant_gemm.h"

namespace loom::cpu {

void CpuBackend::quantized_linear_forward(const Tensor& x, const quant::QuantizedLinear& w, const Tensor& bias,
                                          Tensor& y) {
  const char* op = "quantized_linear_forward";
  detail::require_f32(op, "x", x);
  detail::require_f32(op, "y", y);
  if (bias.defined()) detail::require_f32(op, "bias", bias);
  const std::int64_t in = w.in_features(), out = w.out_features();
  if (x.numel() % in != 0 || x.dim(x.ndim() - 1) != in || y.numel() != x.numel() / in * out) {
    throw std::invalid_argument("quantized_linear_forward: x " + x.describe() + " and y " + y.describe() +
                                " do not fit a [" + std::to_string(out) + ", " + std::to_string(in) + "] weight");
  }
  if (bias.defined() && bias.numel() != out) {
    throw std::invalid_argument("quantized_linear_forward: bias " + bias.describe() + " for " + std::to_string(out) +
                                " outputs");
  }
  w.forward(x.data<float>(), x.numel() / in, bias.defined() ? bias.data<float>() : nullptr, y.data<float>());
}

void CpuBackend::kv_int8_round_trip(Tensor& qkv, const AttentionShape& shape) {
  detail::require_f32("kv_int8_round_trip", "qkv", qkv);
  const std::int64_t D = shape.head_dim, Hq = shape.q_heads, Hkv = shape.kv_heads;
  const std::int64_t width = (Hq + 2 * Hkv) * D, tokens = shape.batch * shape.seq;
  if (qkv.numel() != tokens * width) {
    throw std::invalid_argument("kv_int8_round_trip: qkv " + qkv.describe() + " does not match " +
                                std::to_string(tokens) + " tokens of width " + std::to_string(width));
  }
  float* base = qkv.data<float>();
#pragma omp parallel for schedule(static)
  for (std::int64_t t = 0; t < tokens; ++t) quant::fake_quantize_kv_inplace(base + t * width + Hq * D, 2 * Hkv, D);
}

}  // namespace loom::cpu
