// GEMM-shaped ops of the CPU backend: matmul and the linear layer, forward and backward.
// All matrix products go through loom::cpu::sgemm (core/kernels/gemm); the bias add and
// the bias gradient are the only loops here. The bias gradient is summed per column block
// over all rows in row order, so it needs no per-thread partials and no atomics.
// bf16 operands run the same f32 code on staged copies (bf16_staging.h).
#include <algorithm>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/kernels/gemm/gemm.h"

namespace loom::cpu {

using namespace detail;

namespace {

constexpr std::int64_t kColumnBlock = 64;

// out[j] += Σ_n dy[n, j] for j < cols.
void add_column_sums(const float* dy, std::int64_t rows, std::int64_t cols, float* out) {
  const std::int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(rows * cols))
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t begin = b * kColumnBlock;
    const std::int64_t width = std::min(kColumnBlock, cols - begin);
    float acc[kColumnBlock] = {};
    for (std::int64_t n = 0; n < rows; ++n) {
      const float* row = dy + n * cols + begin;
#pragma omp simd
      for (std::int64_t j = 0; j < width; ++j) acc[j] += row[j];
    }
    for (std::int64_t j = 0; j < width; ++j) out[begin + j] += acc[j];
  }
}

// c = alpha * op(a) @ op(b) + beta * c with the degenerate sizes BLAS rejects handled here.
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    const std::int64_t total = m * n;
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(total))
    for (std::int64_t i = 0; i < total; ++i) c[i] = beta == 0.0f ? 0.0f : beta * c[i];
    return;
  }
  sgemm(trans_a, trans_b, m, n, k, alpha, a, std::max<std::int64_t>(lda, 1), b, std::max<std::int64_t>(ldb, 1),
        beta, c, n);
}

}  // namespace

void CpuBackend::matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
                        float beta) {
  if (is_bf16(a)) {
    Bf16Staging staging("matmul");
    const Tensor a32 = staging.input("a", a);
    const Tensor b32 = staging.input("b", b);
    Tensor c32 = staging.output("c", c, beta == 0.0f ? Bf16Staging::Use::Overwrite : Bf16Staging::Use::Update);
    return staging.run([&] { matmul(a32, trans_a, b32, trans_b, c32, alpha, beta); });
  }
  require_f32("matmul", "a", a);
  require_f32("matmul", "b", b);
  require_f32("matmul", "c", c);
  const std::int64_t m = trans_a ? cols_of(a) : rows_of(a);
  const std::int64_t k = trans_a ? rows_of(a) : cols_of(a);
  const std::int64_t k_b = trans_b ? cols_of(b) : rows_of(b);
  const std::int64_t n = trans_b ? rows_of(b) : cols_of(b);
  if (k != k_b || rows_of(c) != m || cols_of(c) != n) {
    fail("matmul", std::string("op(a) @ op(b) does not fit c: a ") + a.describe() + (trans_a ? " (transposed)" : "") +
                       ", b " + b.describe() + (trans_b ? " (transposed)" : "") + ", c " + c.describe());
  }
  gemm(trans_a, trans_b, m, n, k, alpha, a.data<float>(), cols_of(a), b.data<float>(), cols_of(b), beta,
       c.data<float>());
}

void CpuBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  if (is_bf16(x)) {
    Bf16Staging staging("linear_forward");
    const Tensor x32 = staging.input("x", x);
    const Tensor w32 = staging.input("w", w);
    const Tensor bias32 = staging.optional_input("bias", bias);
    Tensor y32 = staging.output("y", y, Bf16Staging::Use::Overwrite);
    return staging.run([&] { linear_forward(x32, w32, bias32, y32); });
  }
  require_f32("linear_forward", "x", x);
  require_f32("linear_forward", "w", w);
  const std::int64_t rows = rows_of(x);
  const std::int64_t in = cols_of(x);
  const std::int64_t out = rows_of(w);
  if (cols_of(w) != in) {
    fail("linear_forward", "w " + w.describe() + " must be [out, in] with in = " + std::to_string(in) +
                               " from x " + x.describe());
  }
  require_matrix("linear_forward", "y", y, rows, out, "x " + x.describe() + " and w " + w.describe());
  if (bias.defined()) require_numel("linear_forward", "bias", bias, out, "w " + w.describe());

  float* yp = y.data<float>();
  gemm(false, true, rows, out, in, 1.0f, x.data<float>(), in, w.data<float>(), in, 0.0f, yp);
  if (!bias.defined()) return;
  const float* bp = bias.data<float>();
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(rows * out))
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = yp + r * out;
#pragma omp simd
    for (std::int64_t j = 0; j < out; ++j) row[j] += bp[j];
  }
}

void CpuBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                                 Tensor& dbias) {
  if (is_bf16(x)) {
    Bf16Staging staging("linear_backward");
    const Tensor x32 = staging.input("x", x);
    const Tensor w32 = staging.input("w", w);
    const Tensor dy32 = staging.input("dy", dy);
    Tensor dx32 = staging.optional_output("dx", dx, Bf16Staging::Use::Update);
    Tensor dw32 = staging.optional_output("dw", dw, Bf16Staging::Use::Update);
    Tensor dbias32 = staging.optional_output("dbias", dbias, Bf16Staging::Use::Update);
    return staging.run([&] { linear_backward(dy32, x32, w32, dx32, dw32, dbias32); });
  }
  const char* op = "linear_backward";
  require_f32(op, "x", x);
  require_f32(op, "w", w);
  const std::int64_t rows = rows_of(x);
  const std::int64_t in = cols_of(x);
  const std::int64_t out = rows_of(w);
  if (cols_of(w) != in) fail(op, "w " + w.describe() + " must be [out, in] to match x " + x.describe());
  const std::string context = "x " + x.describe() + " and w " + w.describe();
  require_matrix(op, "dy", dy, rows, out, context);
  if (dx.defined()) require_matrix(op, "dx", dx, rows, in, "x " + x.describe());
  if (dw.defined()) require_matrix(op, "dw", dw, out, in, "w " + w.describe());
  if (dbias.defined()) require_numel(op, "dbias", dbias, out, "w " + w.describe());

  const float* dyp = dy.data<float>();
  if (dx.defined()) gemm(false, false, rows, in, out, 1.0f, dyp, out, w.data<float>(), in, 1.0f, dx.data<float>());
  if (dw.defined()) gemm(true, false, out, in, rows, 1.0f, dyp, out, x.data<float>(), in, 1.0f, dw.data<float>());
  if (dbias.defined()) add_column_sums(dyp, rows, out, dbias.data<float>());
}

}  // namespace loom::cpu
