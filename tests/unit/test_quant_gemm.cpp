// Quantized linear layers (core/quant/quant_gemm.h) on every compiled instruction set against
// reference_forward, over the brief's table: shapes (256→768), (688→256) (a ragged last group),
// (256→4096), plus (256→688) and (100→37) for partial panels and blocks; tokens 1, 3, 8 (fused
// GEMV) and 17, 64, 200 (dequantise + sgemm); int8/int4, groups 0/32/128, symmetric and
// asymmetric; with and without bias. The W8A8 reference itself is checked on a hand-worked
// example (round-half-even ties, a zero row), and the int8 KV cache on its error bound and on
// fake quantisation matching the real round trip bit for bit.
#define BOOST_TEST_MODULE quant_gemm
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/kernels/gemm/gemm.h"
#include "core/quant/kv_int8.h"
#include "core/quant/quant_gemm.h"

namespace {

using loom::quant::ActivationMode;
using loom::quant::Isa;
using loom::quant::QuantizedLinear;
using loom::quant::QuantizedMatrix;
using loom::quant::Scheme;

const std::vector<std::int64_t> kTokens = {1, 3, 8, 17, 64, 200};
constexpr std::int64_t kMaxTokens = 200;

struct Shape {
  std::int64_t in, out;
};
// (256→688) and (100→37) leave a partial 64-row W8A8 panel; 100 columns end in a 4-column group.
const std::vector<Shape> kShapes = {{256, 768}, {688, 256}, {256, 4096}, {256, 688}, {100, 37}};

std::vector<float> normal_values(std::size_t n, unsigned seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Activations with a few outliers (as real ones have) and one all-zero token (row 1).
std::vector<float> activations(std::int64_t tokens, std::int64_t in, unsigned seed) {
  std::vector<float> x = normal_values(static_cast<std::size_t>(tokens * in), seed, 1.0f);
  for (std::size_t i = 0; i < x.size(); i += 97) x[i] *= 8.0f;
  if (tokens > 1) std::fill(x.begin() + in, x.begin() + 2 * in, 0.0f);
  return x;
}

QuantizedMatrix random_weight(const Shape& shape, const Scheme& scheme, unsigned seed) {
  std::vector<float> w = normal_values(static_cast<std::size_t>(shape.out * shape.in), seed, 0.05f);
  // Shift some rows so asymmetric zero points leave the middle of the range.
  for (std::int64_t r = 0; r < shape.out; r += 3)
    for (std::int64_t c = 0; c < shape.in; ++c) w[r * shape.in + c] += 0.04f;
  return loom::quant::quantize_rtn(w.data(), shape.out, shape.in, scheme);
}

// Σ_k |x[m, k]| · |dequant(W)[n, k]|, the scale of the weight-only tolerance (only a scale, so
// sgemm's float accumulation is accurate enough and keeps the test fast).
std::vector<double> magnitudes(const QuantizedMatrix& w, const std::vector<float>& x, std::int64_t tokens) {
  std::vector<float> dense(static_cast<std::size_t>(w.rows * w.cols));
  loom::quant::dequantize(w, dense.data());
  for (float& v : dense) v = std::fabs(v);
  std::vector<float> abs_x(x.begin(), x.begin() + tokens * w.cols);
  for (float& v : abs_x) v = std::fabs(v);
  std::vector<float> mag(static_cast<std::size_t>(tokens * w.rows));
  loom::cpu::sgemm(false, true, tokens, w.rows, w.cols, 1.0f, abs_x.data(), w.cols, dense.data(), w.cols, 0.0f,
                   mag.data(), w.rows);
  return {mag.begin(), mag.end()};
}

std::string label(const Shape& s, const Scheme& scheme, Isa isa, std::int64_t tokens, bool bias) {
  return std::to_string(s.in) + "->" + std::to_string(s.out) + " " + scheme.name() + " " +
         loom::quant::isa_name(isa) + " tokens " + std::to_string(tokens) + (bias ? " bias" : " no-bias");
}

}  // namespace

BOOST_AUTO_TEST_CASE(weight_only_matches_reference_on_every_isa) {
  const std::vector<Scheme> schemes = {
      {8, 0, true}, {8, 0, false}, {8, 32, true}, {8, 128, false},
      {4, 0, true}, {4, 32, false}, {4, 128, true}, {4, 128, false},
  };
  unsigned seed = 1;
  for (const Shape& shape : kShapes) {
    const std::vector<float> x = activations(kMaxTokens, shape.in, seed++);
    const std::vector<float> bias = normal_values(static_cast<std::size_t>(shape.out), seed++, 0.5f);
    for (const Scheme& scheme : schemes) {
      const QuantizedMatrix w = random_weight(shape, scheme, seed++);
      const auto linear = QuantizedLinear::prepare(w, ActivationMode::Float);
      BOOST_TEST(linear->in_features() == shape.in);
      BOOST_TEST(linear->out_features() == shape.out);
      const std::vector<double> mag = magnitudes(w, x, kMaxTokens);
      for (bool with_bias : {false, true}) {
        // With bias, the token counts up to 17 (both paths) keep the double-loop reference short.
        const std::int64_t reference_tokens = with_bias ? 17 : kMaxTokens;
        const float* b = with_bias ? bias.data() : nullptr;
        std::vector<float> expected(static_cast<std::size_t>(reference_tokens * shape.out));
        loom::quant::reference_forward(w, ActivationMode::Float, x.data(), reference_tokens, b, expected.data());
        for (Isa isa : loom::quant::compiled_isas())
          for (std::int64_t tokens : kTokens) {
            if (tokens > reference_tokens) continue;
            std::vector<float> y(static_cast<std::size_t>(tokens * shape.out), std::nanf(""));
            linear->forward_using(isa, x.data(), tokens, b, y.data());
            std::int64_t bad = 0;
            double worst = 0.0;
            for (std::size_t i = 0; i < y.size(); ++i) {
              const double err = std::fabs(static_cast<double>(y[i]) - expected[i]);
              const double tol = 1e-5 * mag[i] + 1e-6 * (with_bias ? std::fabs(bias[i % shape.out]) : 0.0) + 1e-30;
              if (!(err <= tol)) ++bad;
              worst = std::max(worst, err / tol);
            }
            BOOST_TEST(bad == 0, label(shape, scheme, isa, tokens, with_bias)
                                     << ": " << bad << " outputs off, worst error/tolerance " << worst);
          }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(w8a8_matches_reference_on_every_isa) {
  const Scheme scheme{8, 0, true};
  unsigned seed = 100;
  for (const Shape& shape : kShapes) {
    const std::vector<float> x = activations(kMaxTokens, shape.in, seed++);
    const std::vector<float> bias = normal_values(static_cast<std::size_t>(shape.out), seed++, 0.5f);
    const QuantizedMatrix w = random_weight(shape, scheme, seed++);
    const auto linear = QuantizedLinear::prepare(w, ActivationMode::Int8);
    BOOST_TEST((linear->mode() == ActivationMode::Int8));
    const std::vector<double> mag = magnitudes(w, x, kMaxTokens);
    for (bool with_bias : {false, true}) {
      const float* b = with_bias ? bias.data() : nullptr;
      std::vector<float> expected(static_cast<std::size_t>(kMaxTokens * shape.out));
      loom::quant::reference_forward(w, ActivationMode::Int8, x.data(), kMaxTokens, b, expected.data());
      // The int8 result approximates the float one within activation-quantisation error (the
      // outliers make the activation scale coarse: about 2% of sum |x||w| at worst here).
      std::vector<float> dense(expected.size());
      loom::quant::reference_forward(w, ActivationMode::Float, x.data(), kMaxTokens, b, dense.data());
      double worst_vs_float = 0.0;
      for (std::size_t i = 0; i < dense.size(); ++i)
        worst_vs_float = std::max(worst_vs_float, std::fabs(expected[i] - dense[i]) / (mag[i] + 1e-30));
      BOOST_TEST(worst_vs_float < 0.05, "W8A8 vs float, worst error relative to sum |x||w|: " << worst_vs_float);
      for (Isa isa : loom::quant::compiled_isas())
        for (std::int64_t tokens : kTokens) {
          std::vector<float> y(static_cast<std::size_t>(tokens * shape.out), std::nanf(""));
          linear->forward_using(isa, x.data(), tokens, b, y.data());
          std::int64_t bad = 0;
          for (std::size_t i = 0; i < y.size(); ++i)
            if (!(std::fabs(y[i] - expected[i]) <= 1e-6f * std::fabs(expected[i]))) ++bad;
          BOOST_TEST(bad == 0, label(shape, scheme, isa, tokens, with_bias) << ": " << bad << " outputs differ");
        }
    }
  }
}

// x = [127, 2.5, -0.5, 1.5] has max 127, so its scale is exactly 1 and the ties show rounding
// half to even: q = [127, 2, 0, 2]. Row 0: w = [1, 0, -1, 2] · 0.5 → dot 131 → 65.5;
// row 1: w = [10, -3, 127, -128] · 0.25 → dot 1270 − 6 − 256 = 1008 → 252. A zero token gives 0.
BOOST_AUTO_TEST_CASE(w8a8_reference_worked_example) {
  QuantizedMatrix w = QuantizedMatrix::empty(2, 4, Scheme{8, 0, true});
  const int codes[2][4] = {{129, 128, 127, 130}, {138, 125, 255, 0}};
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 4; ++c) w.set_code(r, c, codes[r][c]);
  w.set_params(0, 0, {0.5f, 128});
  w.set_params(1, 0, {0.25f, 128});
  const std::vector<float> x = {127.0f, 2.5f, -0.5f, 1.5f, 0.0f, 0.0f, 0.0f, 0.0f};
  const std::vector<float> bias = {1.0f, -2.0f};
  std::vector<float> y(4);
  loom::quant::reference_forward(w, ActivationMode::Int8, x.data(), 2, bias.data(), y.data());
  BOOST_TEST(y == std::vector<float>({66.5f, 250.0f, 1.0f, -2.0f}), boost::test_tools::per_element());
  const auto linear = QuantizedLinear::prepare(w, ActivationMode::Int8);
  for (Isa isa : loom::quant::compiled_isas()) {
    std::vector<float> fast(4, std::nanf(""));
    linear->forward_using(isa, x.data(), 2, bias.data(), fast.data());
    BOOST_TEST(fast == y, boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(int8_activations_reject_unsupported_weights) {
  const std::vector<float> w = normal_values(64 * 96, 7, 0.1f);
  const auto message_of = [&](const Scheme& scheme) {
    try {
      QuantizedLinear::prepare(loom::quant::quantize_rtn(w.data(), 64, 96, scheme), ActivationMode::Int8);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  BOOST_TEST(message_of({4, 0, true}).find("bits 4") != std::string::npos, message_of({4, 0, true}));
  BOOST_TEST(message_of({8, 0, false}).find("asymmetric") != std::string::npos, message_of({8, 0, false}));
  BOOST_TEST(message_of({8, 32, true}).find("group_size 32") != std::string::npos, message_of({8, 32, true}));
  // Weight-only takes all three.
  for (const Scheme& s : {Scheme{4, 0, true}, Scheme{8, 0, false}, Scheme{8, 32, true}})
    BOOST_CHECK_NO_THROW(
        QuantizedLinear::prepare(loom::quant::quantize_rtn(w.data(), 64, 96, s), ActivationMode::Float));
  QuantizedMatrix truncated = loom::quant::quantize_rtn(w.data(), 64, 96, Scheme{8, 0, true});
  truncated.codes.pop_back();
  BOOST_CHECK_THROW(QuantizedLinear::prepare(truncated, ActivationMode::Float), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(prepared_bytes) {
  const std::vector<float> w = normal_values(256 * 688, 9, 0.1f);
  const auto bytes_of = [&](const Scheme& s, ActivationMode mode) {
    return QuantizedLinear::prepare(loom::quant::quantize_rtn(w.data(), 256, 688, s), mode)->bytes();
  };
  // int4: ceil(688 / 32) = 22 blocks of 16 bytes per row; a f32 scale and a u8 zero per group.
  BOOST_TEST(bytes_of({4, 128, true}, ActivationMode::Float) == 256 * (22 * 16 + 6 * 5));
  BOOST_TEST(bytes_of({8, 32, false}, ActivationMode::Float) == 256 * (688 + 22 * 5));
  // W8A8: 4 panels of 64 rows × 688 columns, compensation and scale per row.
  BOOST_TEST(bytes_of({8, 0, true}, ActivationMode::Int8) == 256 * 688 + 256 * 8);
}

BOOST_AUTO_TEST_CASE(kv_int8_error_bound_and_fake_quantization) {
  for (std::int64_t head_dim : {64, 80}) {
    const std::int64_t rows = 37;
    std::vector<float> x = normal_values(static_cast<std::size_t>(rows * head_dim), 11, 2.0f);
    std::fill(x.begin() + 3 * head_dim, x.begin() + 4 * head_dim, 0.0f);  // a zero row
    std::vector<std::int8_t> q(x.size());
    std::vector<float> scales(rows), back(x.size());
    loom::quant::quantize_kv(x.data(), rows, head_dim, q.data(), scales.data());
    loom::quant::dequantize_kv(q.data(), scales.data(), rows, head_dim, back.data());
    BOOST_TEST(scales[3] == 1.0f);
    for (std::int64_t r = 0; r < rows; ++r) {
      int max_code = 0;
      for (std::int64_t i = 0; i < head_dim; ++i) {
        const std::size_t at = static_cast<std::size_t>(r * head_dim + i);
        max_code = std::max(max_code, std::abs(static_cast<int>(q[at])));
        BOOST_TEST(std::fabs(x[at] - back[at]) <= scales[r] * 0.5f * (1.0f + 1e-6f), "row " << r << " col " << i);
      }
      BOOST_TEST(max_code == (r == 3 ? 0 : 127));
    }
    std::vector<float> fake = x;
    loom::quant::fake_quantize_kv_inplace(fake.data(), rows, head_dim);
    BOOST_TEST(fake == back, boost::test_tools::per_element());
  }
  // Scale exactly 1: ties round half to even.
  const std::vector<float> ties = {127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -127.0f};
  std::vector<std::int8_t> q(6);
  float scale = 0.0f;
  loom::quant::quantize_kv(ties.data(), 1, 6, q.data(), &scale);
  BOOST_TEST(scale == 1.0f);
  BOOST_TEST(q == std::vector<std::int8_t>({127, 0, 2, 2, -2, -127}), boost::test_tools::per_element());
  BOOST_CHECK_THROW(loom::quant::quantize_kv(ties.data(), 1, 0, q.data(), &scale), std::invalid_argument);
}
