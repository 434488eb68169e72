// loom::cpu::sgemm and both GEMM backends against a plain double-accumulating loop: all four
// transpose combinations, alpha/beta, odd sizes, leading dimensions wider than the rows, and
// the argument checks.
#define BOOST_TEST_MODULE gemm
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/kernels/gemm/gemm.h"
#include "core/kernels/gemm/gemm_backends.h"
#include "core/kernels/gemm/gemm_shapes.h"

namespace {

using GemmCall = std::function<void(bool, bool, std::int64_t, std::int64_t, std::int64_t, float,
                                    const float*, std::int64_t, const float*, std::int64_t, float,
                                    float*, std::int64_t)>;

struct Backend {
  std::string name;
  GemmCall gemm;
};

std::vector<Backend> backends() {
  std::vector<Backend> all = {{"loom::cpu::sgemm", loom::cpu::sgemm}};
#if defined(LOOM_TEST_OPENBLAS)
  all.push_back({"openblas", loom::cpu::gemm_backend::openblas_sgemm});
#endif
#if defined(LOOM_TEST_ONEDNN)
  all.push_back({"onednn_sgemm", loom::cpu::gemm_backend::onednn_sgemm});
  all.push_back({"onednn_matmul", loom::cpu::gemm_backend::onednn_matmul});
  all.push_back({"onednn_hybrid", loom::cpu::gemm_backend::onednn_hybrid});
#endif
  return all;
}

// Row-major C = alpha * op(A) op(B) + beta * C in double, reading only the in-row elements.
void reference_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                    const std::vector<float>& a, std::int64_t lda, const std::vector<float>& b,
                    std::int64_t ldb, float beta, std::vector<float>& c, std::int64_t ldc) {
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double a_ip = trans_a ? a[p * lda + i] : a[i * lda + p];
        const double b_pj = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        sum += a_ip * b_pj;
      }
      const double old = beta == 0.0f ? 0.0 : static_cast<double>(beta) * c[i * ldc + j];
      c[i * ldc + j] = static_cast<float>(alpha * sum + old);
    }
  }
}

std::vector<float> random_values(std::size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> values(count);
  for (float& v : values) v = uniform(rng);
  return values;
}

struct Case {
  bool trans_a, trans_b;
  std::int64_t m, n, k;
  float alpha, beta;
  std::int64_t pad;  // extra elements per row beyond the stored width
};

void check_case(const Backend& backend, const Case& cs, std::mt19937& rng) {
  const std::int64_t lda = (cs.trans_a ? cs.m : cs.k) + cs.pad;
  const std::int64_t ldb = (cs.trans_b ? cs.k : cs.n) + cs.pad;
  const std::int64_t ldc = cs.n + cs.pad;
  const std::vector<float> a = random_values((cs.trans_a ? cs.k : cs.m) * lda, rng);
  const std::vector<float> b = random_values((cs.trans_b ? cs.n : cs.k) * ldb, rng);
  std::vector<float> c = random_values(cs.m * ldc, rng);
  if (cs.beta == 0.0f) {  // beta == 0 must overwrite, even NaN
    for (float& v : c) v = std::nanf("");
  }
  std::vector<float> expected = c;
  reference_gemm(cs.trans_a, cs.trans_b, cs.m, cs.n, cs.k, cs.alpha, a, lda, b, ldb, cs.beta, expected, ldc);
  backend.gemm(cs.trans_a, cs.trans_b, cs.m, cs.n, cs.k, cs.alpha, a.data(), lda, b.data(), ldb, cs.beta,
               c.data(), ldc);

  const std::string label = backend.name + " ta=" + std::to_string(cs.trans_a) + " tb=" +
                            std::to_string(cs.trans_b) + " m=" + std::to_string(cs.m) + " n=" +
                            std::to_string(cs.n) + " k=" + std::to_string(cs.k) + " alpha=" +
                            std::to_string(cs.alpha) + " beta=" + std::to_string(cs.beta) +
                            " pad=" + std::to_string(cs.pad);
  // Inputs in [-1, 1]: a float32 dot product of length k errs by about sqrt(k) * 2^-24 * k.
  const double atol = 1e-5 * (1.0 + static_cast<double>(cs.k));
  int bad = 0;
  for (std::int64_t i = 0; i < cs.m; ++i) {
    for (std::int64_t j = 0; j < ldc; ++j) {
      const float got = c[i * ldc + j];
      const float want = expected[i * ldc + j];
      if (j >= cs.n) {  // padding past the row must be untouched (NaN stays NaN)
        if (!(got == want || (std::isnan(got) && std::isnan(want)))) ++bad;
      } else if (!(std::abs(static_cast<double>(got) - want) <= atol + 1e-5 * std::abs(want))) {
        if (bad++ < 3)
          BOOST_TEST_MESSAGE(label << " C[" << i << "," << j << "] = " << got << ", expected " << want);
      }
    }
  }
  BOOST_TEST(bad == 0, label << ": " << bad << " elements wrong");
}

}  // namespace

BOOST_AUTO_TEST_CASE(all_transposes_alpha_beta_odd_sizes_and_padded_leading_dims) {
  loom::cpu::set_gemm_threads(2);
  std::mt19937 rng(20240521);
  const std::vector<Case> shapes = {
      {false, false, 1, 1, 1, 1.0f, 0.0f, 0},   {false, false, 7, 5, 3, 1.0f, 0.0f, 0},
      {false, false, 33, 17, 65, 1.0f, 0.0f, 3}, {false, false, 129, 67, 31, 0.5f, 1.0f, 5},
      {false, false, 64, 300, 257, -1.5f, 0.25f, 1}, {false, false, 3, 1025, 11, 1.0f, 0.0f, 16},
  };
  for (const Backend& backend : backends()) {
    for (const Case& base : shapes) {
      for (bool trans_a : {false, true}) {
        for (bool trans_b : {false, true}) {
          Case cs = base;
          cs.trans_a = trans_a;
          cs.trans_b = trans_b;
          check_case(backend, cs, rng);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(training_step_shapes_match_the_reference_on_a_sample) {
  // One GEMM of each kind (forward, input grad, weight grad) at a real model width, checked in
  // full: these take the libraries' blocked multi-threaded paths that the small cases miss.
  // Changing the thread count in between must not reuse work splits made for the old count.
  std::mt19937 rng(7);
  for (int threads : {2, 1, 2}) {
    loom::cpu::set_gemm_threads(threads);
    for (const Backend& backend : backends()) {
      check_case(backend, {false, true, 96, 688, 256, 1.0f, 0.0f, 0}, rng);
      check_case(backend, {false, false, 96, 256, 688, 1.0f, 0.0f, 0}, rng);
      check_case(backend, {true, false, 688, 256, 96, 1.0f, 1.0f, 0}, rng);
    }
  }
}

BOOST_AUTO_TEST_CASE(empty_reduction_scales_c_by_beta) {
  const std::vector<float> expected = {0.5f, 1.0f, 1.5f, 2.0f, 2.5f, 3.0f};
  for (const Backend& backend : backends()) {
    std::vector<float> c = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    const float unused = 0.0f;
    backend.gemm(false, false, 2, 3, 0, 1.0f, &unused, 1, &unused, 3, 0.5f, c.data(), 3);
    BOOST_TEST_CONTEXT(backend.name) { BOOST_TEST(c == expected, boost::test_tools::per_element()); }
  }
  std::vector<float> c = expected;
  loom::cpu::sgemm(true, true, 0, 3, 4, 1.0f, nullptr, 1, nullptr, 4, 0.0f, c.data(), 3);
  BOOST_TEST(c == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bad_arguments_throw_naming_the_argument) {
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 0.0f);
  auto message_of = [&](auto&& call) -> std::string {
    try {
      call();
    } catch (const std::invalid_argument& error) {
      return error.what();
    }
    return "";
  };
  using loom::cpu::sgemm;
  BOOST_TEST(message_of([&] { sgemm(false, false, 4, 4, 4, 1, a.data(), 3, b.data(), 4, 0, c.data(), 4); })
                 .find("lda=3") != std::string::npos);
  BOOST_TEST(message_of([&] { sgemm(true, false, 4, 2, 4, 1, a.data(), 2, b.data(), 2, 0, c.data(), 2); })
                 .find("lda=2") != std::string::npos);
  BOOST_TEST(message_of([&] { sgemm(false, true, 4, 4, 5, 1, a.data(), 5, b.data(), 4, 0, c.data(), 4); })
                 .find("ldb=4") != std::string::npos);
  BOOST_TEST(message_of([&] { sgemm(false, false, 4, 4, 4, 1, a.data(), 4, b.data(), 4, 0, c.data(), 2); })
                 .find("ldc=2") != std::string::npos);
  BOOST_TEST(message_of([&] { sgemm(false, false, -1, 4, 4, 1, a.data(), 4, b.data(), 4, 0, c.data(), 4); })
                 .find("non-negative") != std::string::npos);
  BOOST_CHECK_THROW(loom::cpu::set_gemm_threads(0), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(training_step_gemm_list_counts_flops) {
  const auto shapes = loom::cpu::training_step_gemms(loom::cpu::gpt2_124m_gemm_dims());
  BOOST_TEST(shapes.size() == 15u);  // 5 linear layers × (forward, input grad, weight grad)
  double step_flops = 0.0;
  for (const auto& s : shapes) step_flops += s.count * s.flops();
  // 6 · rows · (12 · 12·C² + C·V) for GPT-2 124M's matmul weights at rows = 256.
  const double expected = 6.0 * 256 * (12.0 * 12 * 768 * 768 + 768.0 * 50257);
  BOOST_TEST(step_flops == expected, boost::test_tools::tolerance(1e-12));
  const auto llama = loom::cpu::training_step_gemms(loom::cpu::tiny_llama_gemm_dims());
  BOOST_TEST(llama.size() == 15u);
  BOOST_TEST(llama[6].name == "gate_up.forward");
  BOOST_TEST(llama[6].count == 8);
}

BOOST_AUTO_TEST_CASE(measure_sgemm_gflops_reports_a_plausible_rate) {
  const double gflops = loom::cpu::measure_sgemm_gflops(2);
  BOOST_TEST_MESSAGE("measured SGEMM: " << gflops << " GFLOP/s with 2 threads (" << loom::cpu::gemm_library()
                                        << ": " << loom::cpu::gemm_library_details() << ")");
  // Even a loaded 2-core machine sustains well over 1 GFLOP/s; anything above the AVX-512 peak of
  // a large server (~10 TFLOP/s) would mean the timing or flop count is wrong.
  BOOST_TEST(gflops > 1.0);
  BOOST_TEST(gflops < 10000.0);
}
