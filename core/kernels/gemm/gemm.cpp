#include "core/kernels/gemm/gemm.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/kernels/gemm/gemm_backends.h"
#include "core/kernels/gemm/gemm_shapes.h"

namespace loom::cpu {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("loom::cpu::sgemm: " + what);
}

std::string dims_text(std::int64_t m, std::int64_t n, std::int64_t k) {
  return " (m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + ")";
}

void check_arguments(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                     const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                     const float* c, std::int64_t ldc) {
  require(m >= 0 && n >= 0 && k >= 0, "dimensions must be non-negative" + dims_text(m, n, k));
  const std::int64_t a_cols = trans_a ? m : k;
  const std::int64_t b_cols = trans_b ? k : n;
  require(lda >= std::max<std::int64_t>(1, a_cols),
          "lda=" + std::to_string(lda) + " is smaller than A's row width " + std::to_string(a_cols) +
              (trans_a ? " (A is stored transposed, [k, m])" : " (A is stored [m, k])") + dims_text(m, n, k));
  require(ldb >= std::max<std::int64_t>(1, b_cols),
          "ldb=" + std::to_string(ldb) + " is smaller than B's row width " + std::to_string(b_cols) +
              (trans_b ? " (B is stored transposed, [n, k])" : " (B is stored [k, n])") + dims_text(m, n, k));
  require(ldc >= std::max<std::int64_t>(1, n),
          "ldc=" + std::to_string(ldc) + " is smaller than C's row width n" + dims_text(m, n, k));
  if (m > 0 && n > 0) {
    require(c != nullptr, "C is null" + dims_text(m, n, k));
    if (k > 0) require(a != nullptr && b != nullptr, "A or B is null" + dims_text(m, n, k));
  }
#if !defined(LOOM_GEMM_ONEDNN)
  constexpr std::int64_t int_max = std::numeric_limits<int>::max();
  require(std::max({m, n, k, lda, ldb, ldc}) <= int_max,
          "a dimension exceeds OpenBLAS's 32-bit int interface" + dims_text(m, n, k));
#endif
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc) {
  check_arguments(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  if (m == 0 || n == 0) return;
#if defined(LOOM_GEMM_ONEDNN)
  gemm_backend::onednn_hybrid(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
  gemm_backend::openblas_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

const char* gemm_library() {
#if defined(LOOM_GEMM_ONEDNN)
  return "onednn";
#else
  return "openblas";
#endif
}

const char* gemm_library_details() {
#if defined(LOOM_GEMM_ONEDNN)
  static const std::string details =
      gemm_backend::onednn_describe() + " matmul primitive for x·Wᵀ, dnnl_sgemm otherwise";
#else
  static const std::string details = gemm_backend::openblas_describe();
#endif
  return details.c_str();
}

void set_gemm_threads(int threads) {
  if (threads < 1)
    throw std::invalid_argument("loom::cpu::set_gemm_threads: threads must be >= 1, got " +
                                std::to_string(threads));
#if defined(LOOM_GEMM_ONEDNN)
  gemm_backend::onednn_set_threads(threads);
#else
  gemm_backend::openblas_set_threads(threads);
#endif
}

double measure_sgemm_gflops(int threads) {
  set_gemm_threads(threads);
  // The per-layer GEMMs only: the lm-head ones alone would take longer than the time budget,
  // and run at the same rate.
  std::vector<GemmShape> shapes = training_step_gemms(gpt2_124m_gemm_dims());
  std::erase_if(shapes, [](const GemmShape& s) { return s.name.starts_with("lm_head"); });
  std::int64_t largest = 0;
  for (const GemmShape& s : shapes) largest = std::max({largest, s.m * s.k, s.k * s.n, s.m * s.n});
  std::vector<float> a(largest), b(largest), c(largest, 0.0f);
  for (std::int64_t i = 0; i < largest; ++i) {
    a[i] = static_cast<float>(i % 17) * 0.01f - 0.08f;
    b[i] = static_cast<float>(i % 13) * 0.01f - 0.06f;
  }
  auto run_pass = [&] {
    for (const GemmShape& s : shapes)
      sgemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, a.data(), s.trans_a ? s.m : s.k, b.data(),
            s.trans_b ? s.k : s.n, s.beta, c.data(), s.n);
  };
  double pass_flops = 0.0;
  for (const GemmShape& s : shapes) pass_flops += s.flops();

  run_pass();
  using clock = std::chrono::steady_clock;
  constexpr double budget_seconds = 0.3;
  const auto start = clock::now();
  double elapsed = 0.0;
  int passes = 0;
  do {
    run_pass();
    ++passes;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  } while (elapsed < budget_seconds);
  return passes * pass_flops / elapsed * 1e-9;
}

}  // namespace loom::cpu
