// Elementwise activations of the CPU backend: GELU (tanh approximation, as GPT-2) and
// SwiGLU (Llama's silu(gate) * up), forward and backward. The transcendental parts use the
// vectorisable fast_exp family from kernel_util.h so each loop is a single SIMD pass.
// bf16 tensors run these loops on staged f32 copies (bf16_staging.h).
#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

namespace {
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
}  // namespace

void CpuBackend::gelu_forward(const Tensor& x, Tensor& y) {
  if (is_bf16(x)) {
    Bf16Staging staging("gelu_forward");
    const Tensor x32 = staging.input("x", x);
    Tensor y32 = staging.output("y", y, Bf16Staging::Use::Overwrite);
    return staging.run([&] { gelu_forward(x32, y32); });
  }
  require_f32("gelu_forward", "x", x);
  require_numel("gelu_forward", "y", y, x.numel(), "x " + x.describe());
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  const std::int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = xp[i];
    const float u = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
    yp[i] = 0.5f * v * (1.0f + fast_tanh(u));
  }
}

void CpuBackend::gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) {
  if (is_bf16(x)) {
    Bf16Staging staging("gelu_backward");
    const Tensor x32 = staging.input("x", x);
    const Tensor dy32 = staging.input("dy", dy);
    Tensor dx32 = staging.output("dx", dx, Bf16Staging::Use::Update);
    return staging.run([&] { gelu_backward(dy32, x32, dx32); });
  }
  require_f32("gelu_backward", "x", x);
  require_numel("gelu_backward", "dy", dy, x.numel(), "x " + x.describe());
  require_numel("gelu_backward", "dx", dx, x.numel(), "x " + x.describe());
  const float* xp = x.data<float>();
  const float* dyp = dy.data<float>();
  float* dxp = dx.data<float>();
  const std::int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = xp[i];
    const float u = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
    const float t = fast_tanh(u);
    const float du_dv = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
    const float local = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du_dv;
    dxp[i] += local * dyp[i];
  }
}

void CpuBackend::swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  if (is_bf16(gate)) {
    Bf16Staging staging("swiglu_forward");
    const Tensor gate32 = staging.input("gate", gate);
    const Tensor up32 = staging.input("up", up);
    Tensor out32 = staging.output("out", out, Bf16Staging::Use::Overwrite);
    return staging.run([&] { swiglu_forward(gate32, up32, out32); });
  }
  require_f32("swiglu_forward", "gate", gate);
  require_numel("swiglu_forward", "up", up, gate.numel(), "gate " + gate.describe());
  require_numel("swiglu_forward", "out", out, gate.numel(), "gate " + gate.describe());
  const float* gp = gate.data<float>();
  const float* up_p = up.data<float>();
  float* outp = out.data<float>();
  const std::int64_t n = gate.numel();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gp[i];
    outp[i] = g * fast_sigmoid(g) * up_p[i];
  }
}

void CpuBackend::swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor& dgate,
                                 Tensor& dup) {
  if (is_bf16(gate)) {
    Bf16Staging staging("swiglu_backward");
    const Tensor gate32 = staging.input("gate", gate);
    const Tensor up32 = staging.input("up", up);
    const Tensor dout32 = staging.input("dout", dout);
    Tensor dgate32 = staging.optional_output("dgate", dgate, Bf16Staging::Use::Update);
    Tensor dup32 = staging.optional_output("dup", dup, Bf16Staging::Use::Update);
    return staging.run([&] { swiglu_backward(dout32, gate32, up32, dgate32, dup32); });
  }
  const char* op = "swiglu_backward";
  require_f32(op, "gate", gate);
  const std::string ctx = "gate " + gate.describe();
  const std::int64_t n = gate.numel();
  require_numel(op, "up", up, n, ctx);
  require_numel(op, "dout", dout, n, ctx);
  if (dgate.defined()) require_numel(op, "dgate", dgate, n, ctx);
  if (dup.defined()) require_numel(op, "dup", dup, n, ctx);
  const float* gp = gate.data<float>();
  const float* up_p = up.data<float>();
  const float* dop = dout.data<float>();
  if (dgate.defined()) {
    float* dgp = dgate.data<float>();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
    for (std::int64_t i = 0; i < n; ++i) {
      const float g = gp[i];
      const float sig = fast_sigmoid(g);
      dgp[i] += dop[i] * up_p[i] * sig * (1.0f + g * (1.0f - sig));
    }
  }
  if (dup.defined()) {
    float* dup_p = dup.data<float>();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
    for (std::int64_t i = 0; i < n; ++i) {
      const float g = gp[i];
      dup_p[i] += dop[i] * g * fast_sigmoid(g);
    }
  }
}

}  // namespace loom::cpu
