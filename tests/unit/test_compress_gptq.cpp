// GPTQ and SparseGPT (compress/algo): the inverse-Hessian factor against its definition, the
// column-slice equivalence a tensor-parallel driver relies on (bit-identical to one call),
// thread-count independence, dead columns, and that both methods beat their Hessian-blind
// baselines (RTN, magnitude pruning) on the layer output error Σ ||X Wᵀ − X Qᵀ||².
#define BOOST_TEST_MODULE compress_gptq
#include <omp.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "compress/algo/gptq.h"
#include "compress/algo/hessian.h"
#include "compress/algo/selection.h"
#include "compress/algo/sparsegpt.h"
#include "core/quant/quantized.h"
#include "tests/unit/error_of.h"

using namespace loom;
using namespace loom::compress;
using Index = std::int64_t;

namespace {

// Calibration inputs X [tokens, n] with correlated columns (a random mixing of neighbours and
// per-column scales spread over two orders of magnitude), H = Xᵀ X in double. Columns listed
// in `dead` are all zero.
std::vector<double> hessian_of(Index tokens, Index n, unsigned seed, const std::vector<Index>& dead = {}) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> z(static_cast<std::size_t>(tokens * n)), x(z.size());
  for (double& v : z) v = normal(rng);
  std::vector<double> scale(static_cast<std::size_t>(n));
  for (Index j = 0; j < n; ++j) scale[static_cast<std::size_t>(j)] = std::exp(2.0 * (normal(rng) * 0.5));
  for (Index t = 0; t < tokens; ++t)
    for (Index j = 0; j < n; ++j) {
      double v = z[static_cast<std::size_t>(t * n + j)];
      for (Index k = 1; k <= 3 && j - k >= 0; ++k)
        v += 0.6 / static_cast<double>(k) * z[static_cast<std::size_t>(t * n + j - k)];
      x[static_cast<std::size_t>(t * n + j)] = v * scale[static_cast<std::size_t>(j)];
    }
  for (const Index d : dead)
    for (Index t = 0; t < tokens; ++t) x[static_cast<std::size_t>(t * n + d)] = 0.0;
  std::vector<double> h(static_cast<std::size_t>(n * n), 0.0);
  for (Index t = 0; t < tokens; ++t)
    for (Index i = 0; i < n; ++i) {
      const double xi = x[static_cast<std::size_t>(t * n + i)];
      for (Index j = 0; j < n; ++j)
        h[static_cast<std::size_t>(i * n + j)] += xi * x[static_cast<std::size_t>(t * n + j)];
    }
  return h;
}

std::vector<float> weights(Index rows, Index cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (float& v : w) v = normal(rng);
  return w;
}

// Σ_r (w_r − q_r)ᵀ H (w_r − q_r) = Σ ||X Wᵀ − X Qᵀ||² for H = Xᵀ X.
double output_error(const std::vector<float>& w, const std::vector<float>& q, const std::vector<double>& h, Index rows,
                    Index n) {
  double total = 0.0;
  std::vector<double> d(static_cast<std::size_t>(n));
  for (Index r = 0; r < rows; ++r) {
    for (Index j = 0; j < n; ++j)
      d[static_cast<std::size_t>(j)] = static_cast<double>(w[static_cast<std::size_t>(r * n + j)]) -
                                       static_cast<double>(q[static_cast<std::size_t>(r * n + j)]);
    for (Index i = 0; i < n; ++i) {
      double s = 0.0;
      for (Index j = 0; j < n; ++j) s += h[static_cast<std::size_t>(i * n + j)] * d[static_cast<std::size_t>(j)];
      total += d[static_cast<std::size_t>(i)] * s;
    }
  }
  return total;
}

std::vector<float> columns(const std::vector<float>& w, Index rows, Index n, Index c0, Index c1) {
  std::vector<float> out(static_cast<std::size_t>(rows * (c1 - c0)));
  for (Index r = 0; r < rows; ++r) std::copy_n(w.begin() + r * n + c0, c1 - c0, out.begin() + r * (c1 - c0));
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs `method(slice, cols, col_offset, sink)` on `parts` equal column slices in order, each
// finished block of slice s applied to every later slice (what the tp driver does), and
// returns the slices put back together.
template <typename Method>
std::vector<float> run_sliced(const std::vector<float>& w, Index rows, Index n, int parts, const HessianFactor& f,
                              Method method) {
  const Index width = n / parts;
  std::vector<std::vector<float>> slices;
  for (int s = 0; s < parts; ++s) slices.push_back(columns(w, rows, n, s * width, (s + 1) * width));
  for (int s = 0; s < parts; ++s) {
    auto sink = [&](Index b0, Index b1, const float* err) {
      for (int later = s + 1; later < parts; ++later)
        apply_block_error(slices[static_cast<std::size_t>(later)].data(), rows, width, later * width, f, b0, b1, err);
    };
    method(slices[static_cast<std::size_t>(s)], width, s * width, sink, s);
  }
  std::vector<float> out(w.size());
  for (int s = 0; s < parts; ++s)
    for (Index r = 0; r < rows; ++r)
      std::copy_n(slices[static_cast<std::size_t>(s)].begin() + r * width, width, out.begin() + r * n + s * width);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(factor_is_the_upper_cholesky_of_the_damped_inverse) {
  const Index n = 96;
  const std::vector<double> h = hessian_of(400, n, 1, {7});
  for (const bool act_order : {false, true}) {
    const HessianFactor f = factor_hessian(h.data(), n, 0.01, act_order);
    BOOST_TEST(f.dead[7] == 1);
    BOOST_TEST(std::count(f.dead.begin(), f.dead.end(), 1) == 1);
    double mean_diag = 0.0;
    for (Index j = 0; j < n; ++j) mean_diag += j == 7 ? 1.0 : h[static_cast<std::size_t>(j * n + j)];
    BOOST_TEST(f.damp == 0.01 * mean_diag / static_cast<double>(n), boost::test_tools::tolerance(1e-12));
    std::vector<Index> order(static_cast<std::size_t>(n));
    for (Index p = 0; p < n; ++p)
      order[static_cast<std::size_t>(p)] = act_order ? f.perm[static_cast<std::size_t>(p)] : p;
    if (act_order)
      for (Index p = 1; p < n; ++p) {
        const Index a = order[static_cast<std::size_t>(p - 1)], b = order[static_cast<std::size_t>(p)];
        const double da = a == 7 ? 1.0 : h[static_cast<std::size_t>(a * n + a)],
                     db = b == 7 ? 1.0 : h[static_cast<std::size_t>(b * n + b)];
        BOOST_TEST(da >= db);
      }
    // (H + λI) Uᵀ U = I in processing order, and U is upper triangular with a positive diagonal.
    double worst = 0.0;
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < n; ++j) {
        double s = 0.0;
        for (Index k = 0; k < n; ++k) {
          const Index oi = order[static_cast<std::size_t>(i)], ok = order[static_cast<std::size_t>(k)];
          double hik = oi == 7 && ok == 7 ? 1.0 : h[static_cast<std::size_t>(oi * n + ok)];
          if (i == k) hik += f.damp;
          double uu = 0.0;  // (Uᵀ U)[k, j]
          for (Index t = 0; t <= std::min(k, j); ++t)
            uu += static_cast<double>(f.u[static_cast<std::size_t>(t * n + k)]) *
                  f.u[static_cast<std::size_t>(t * n + j)];
          s += hik * uu;
        }
        worst = std::max(worst, std::abs(s - (i == j ? 1.0 : 0.0)));
      }
    BOOST_TEST(worst < 1e-4);
    for (Index i = 0; i < n; ++i) {
      BOOST_TEST(f.u[static_cast<std::size_t>(i * n + i)] > 0.0f);
      for (Index j = 0; j < i; ++j) BOOST_TEST(f.u[static_cast<std::size_t>(i * n + j)] == 0.0f);
    }
  }
}

BOOST_AUTO_TEST_CASE(factor_rejects_bad_input) {
  const Index n = 8;
  std::vector<double> h(static_cast<std::size_t>(n * n), 0.0);
  for (Index j = 0; j < n; ++j) h[static_cast<std::size_t>(j * n + j)] = 1.0;
  h[1 * n + 0] = 5.0;  // |H_10| > sqrt(H_00 H_11): indefinite, and 0 damp cannot rescue it
  BOOST_TEST(error_of([&] { factor_hessian(h.data(), n, 0.0, false); }).find("not positive definite at position 1") !=
             std::string::npos);
  h[1 * n + 0] = 0.0;
  h[2 * n + 2] = -1.0;
  BOOST_TEST(error_of([&] { factor_hessian(h.data(), n, 0.01, false); }).find("H[2, 2]") != std::string::npos);
  BOOST_TEST(error_of([&] { factor_hessian(h.data(), n, -0.1, false); }).find("percdamp") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(gptq_column_slices_are_bit_identical_to_the_whole_layer) {
  const Index rows = 96, n = 512;
  const std::vector<double> h = hessian_of(700, n, 2, {3, 300});
  const HessianFactor f = factor_hessian(h.data(), n, 0.01, false);
  const std::vector<float> w0 = weights(rows, n, 3);
  for (const Index group : {Index{0}, Index{32}, Index{128}}) {
    GptqOptions options;
    options.scheme = {4, group, group != 32};
    std::vector<float> whole = w0;
    std::vector<std::pair<Index, Index>> whole_blocks;
    const quant::QuantizedMatrix q_whole =
        gptq_quantize(whole.data(), rows, n, 0, f, options,
                      [&](Index b0, Index b1, const float*) { whole_blocks.emplace_back(b0, b1); });
    BOOST_TEST(whole_blocks.size() == 4u);
    BOOST_TEST((whole_blocks.back() == std::pair<Index, Index>{384, 512}));
    std::vector<float> deq(whole.size());
    quant::dequantize(q_whole, deq.data());
    BOOST_TEST(same_bits(deq, whole));
    for (const int parts : {2, 4}) {
      const Index width = n / parts;
      std::vector<quant::QuantizedMatrix> qs(static_cast<std::size_t>(parts));
      const std::vector<float> sliced =
          run_sliced(w0, rows, n, parts, f,
                     [&](std::vector<float>& s, Index cols, Index offset, const BlockErrorSink& sink, int idx) {
                       GptqOptions o = options;
                       if (group == 0)  // per-channel parameters over the whole rows, as the driver all-reduces them
                         for (Index r = 0; r < rows; ++r) o.row_params.push_back(q_whole.params(r, 0));
                       qs[static_cast<std::size_t>(idx)] = gptq_quantize(s.data(), rows, cols, offset, f, o, sink);
                     });
      BOOST_TEST(same_bits(sliced, whole), "group " << group << ", " << parts << " slices");
      Index code_diffs = 0;
      for (int s = 0; s < parts; ++s)
        for (Index r = 0; r < rows; ++r)
          for (Index c = 0; c < width; ++c) {
            code_diffs += qs[static_cast<std::size_t>(s)].code(r, c) != q_whole.code(r, s * width + c);
            const Index g = qs[static_cast<std::size_t>(s)].scheme.group_of(c);
            const Index gw = group == 0 ? 0 : q_whole.scheme.group_of(s * width + c);
            code_diffs += qs[static_cast<std::size_t>(s)].params(r, g).scale != q_whole.params(r, gw).scale;
          }
      BOOST_TEST(code_diffs == 0);
    }
  }
}

BOOST_AUTO_TEST_CASE(sparsegpt_column_slices_are_bit_identical_to_the_whole_layer) {
  const Index rows = 96, n = 512;
  const std::vector<double> h = hessian_of(700, n, 4, {100});
  const HessianFactor f = factor_hessian(h.data(), n, 0.01, false);
  const std::vector<float> w0 = weights(rows, n, 5);
  const Selector local;
  for (const int nm : {0, 1}) {
    SparseGptOptions options;
    if (nm != 0) options.prune_n = 2, options.prune_m = 4;
    std::vector<float> whole = w0;
    const std::vector<std::uint8_t> mask_whole = sparsegpt_prune(whole.data(), rows, n, 0, f, options, local);
    for (const int parts : {2, 4}) {
      std::vector<std::uint8_t> mask(mask_whole.size());
      const std::vector<float> sliced = run_sliced(
          w0, rows, n, parts, f, [&](std::vector<float>& s, Index cols, Index offset, const BlockErrorSink& sink, int) {
            const std::vector<std::uint8_t> m = sparsegpt_prune(s.data(), rows, cols, offset, f, options, local, sink);
            for (Index r = 0; r < rows; ++r) std::copy_n(m.begin() + r * cols, cols, mask.begin() + r * n + offset);
          });
      BOOST_TEST(same_bits(sliced, whole), (nm ? "2:4, " : "50%, ") << parts << " slices");
      BOOST_TEST((mask == mask_whole));
    }
  }
}

BOOST_AUTO_TEST_CASE(results_do_not_depend_on_the_thread_count) {
  const Index rows = 40, n = 256;
  const std::vector<double> h = hessian_of(500, n, 6);
  std::vector<std::vector<float>> out;
  for (const int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    for (const bool act_order : {false, true}) {
      const HessianFactor f = factor_hessian(h.data(), n, 0.01, act_order);
      out.push_back(f.u);
      std::vector<float> w = weights(rows, n, 7);
      GptqOptions o;
      o.scheme = {4, 64, false};
      o.act_order = act_order;
      gptq_quantize(w.data(), rows, n, 0, f, o);
      out.push_back(w);
    }
  }
  omp_set_num_threads(2);
  for (std::size_t i = 4; i < out.size(); ++i) BOOST_TEST(same_bits(out[i], out[i % 4]), "output " << i);
}

BOOST_AUTO_TEST_CASE(dead_columns_are_zeroed) {
  const Index rows = 16, n = 128;
  const std::vector<double> h = hessian_of(300, n, 8, {0, 77});
  for (const bool act_order : {false, true}) {
    const HessianFactor f = factor_hessian(h.data(), n, 0.01, act_order);
    std::vector<float> w = weights(rows, n, 9);
    GptqOptions o;
    o.scheme = {4, 32, true};
    o.act_order = act_order;
    const quant::QuantizedMatrix q = gptq_quantize(w.data(), rows, n, 0, f, o);
    for (Index r = 0; r < rows; ++r)
      for (const Index c : {Index{0}, Index{77}}) {
        BOOST_TEST(w[static_cast<std::size_t>(r * n + c)] == 0.0f);
        BOOST_TEST(q.code(r, c) == q.params(r, q.scheme.group_of(c)).zero);
      }
  }
  const HessianFactor f = factor_hessian(h.data(), n, 0.01, false);
  std::vector<float> w = weights(rows, n, 9);
  const std::vector<std::uint8_t> keep = sparsegpt_prune(w.data(), rows, n, 0, f, {}, Selector{});
  for (Index r = 0; r < rows; ++r)
    for (const Index c : {Index{0}, Index{77}}) {
      BOOST_TEST(w[static_cast<std::size_t>(r * n + c)] == 0.0f);
      BOOST_TEST(keep[static_cast<std::size_t>(r * n + c)] == 0);
    }
}

BOOST_AUTO_TEST_CASE(gptq_beats_round_to_nearest) {
  const Index rows = 64, n = 256;
  const std::vector<double> h = hessian_of(1024, n, 10);
  const std::vector<float> w0 = weights(rows, n, 11);
  for (const Index group : {Index{0}, Index{128}})
    for (const bool act_order : {false, true}) {
      const quant::Scheme scheme{4, group, true};
      std::vector<float> rtn(w0.size());
      quant::dequantize(quant::quantize_rtn(w0.data(), rows, n, scheme), rtn.data());
      const HessianFactor f = factor_hessian(h.data(), n, 0.01, act_order);
      std::vector<float> w = w0;
      GptqOptions o;
      o.scheme = scheme;
      o.act_order = act_order;
      double loss = -1.0;
      const quant::QuantizedMatrix q = gptq_quantize(w.data(), rows, n, 0, f, o, {}, &loss);
      std::vector<float> deq(w.size());
      quant::dequantize(q, deq.data());
      BOOST_TEST(same_bits(deq, w));
      const double e_rtn = output_error(w0, rtn, h, rows, n), e_gptq = output_error(w0, w, h, rows, n);
      BOOST_TEST_MESSAGE("int4 g" << group << (act_order ? " act-order" : "") << ": RTN " << e_rtn << ", GPTQ "
                                  << e_gptq << ", gptq.py loss " << loss);
      BOOST_TEST(e_gptq < 0.8 * e_rtn);
      BOOST_TEST(loss > 0.0);
    }
}

BOOST_AUTO_TEST_CASE(sparsegpt_reaches_the_target_and_beats_magnitude) {
  const Index rows = 64, n = 256;
  const std::vector<double> h = hessian_of(1024, n, 12);
  const std::vector<float> w0 = weights(rows, n, 13);
  const HessianFactor f = factor_hessian(h.data(), n, 0.01, false);

  std::vector<float> w = w0;
  const std::vector<std::uint8_t> keep = sparsegpt_prune(w.data(), rows, n, 0, f, {}, Selector{});
  const auto zeros = static_cast<Index>(std::count(w.begin(), w.end(), 0.0f));
  const auto dropped = static_cast<Index>(std::count(keep.begin(), keep.end(), 0));
  BOOST_TEST(zeros >= rows * n / 2);
  BOOST_TEST(dropped == rows * n / 2 + 2);  // k + 1 per block of 128 columns (metric <= k-th smallest)
  for (std::size_t i = 0; i < w.size(); ++i)
    if (keep[i] == 0) BOOST_TEST(w[i] == 0.0f);
  // Magnitude: the same number of smallest |w| over the matrix.
  std::vector<float> magnitude = w0, sorted(w0.size());
  std::transform(w0.begin(), w0.end(), sorted.begin(), [](float v) { return std::abs(v); });
  std::nth_element(sorted.begin(), sorted.begin() + dropped - 1, sorted.end());
  const float cut = sorted[static_cast<std::size_t>(dropped - 1)];
  for (float& v : magnitude)
    if (std::abs(v) <= cut) v = 0.0f;
  const double e_sparse = output_error(w0, w, h, rows, n), e_mag = output_error(w0, magnitude, h, rows, n);
  BOOST_TEST_MESSAGE("50%: magnitude " << e_mag << ", SparseGPT " << e_sparse);
  BOOST_TEST(e_sparse < 0.7 * e_mag);

  SparseGptOptions nm;
  nm.prune_n = 2, nm.prune_m = 4;
  std::vector<float> w24 = w0;
  sparsegpt_prune(w24.data(), rows, n, 0, f, nm, Selector{});
  std::vector<float> mag24 = w0;
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < n; c += 4) {
      float* g = w24.data() + r * n + c;
      BOOST_TEST(std::count(g, g + 4, 0.0f) == 2);
      float* m = mag24.data() + r * n + c;
      int idx[4] = {0, 1, 2, 3};
      std::sort(idx, idx + 4, [&](int a, int b) { return std::abs(m[a]) < std::abs(m[b]); });
      m[idx[0]] = m[idx[1]] = 0.0f;
    }
  const double e24 = output_error(w0, w24, h, rows, n), e_mag24 = output_error(w0, mag24, h, rows, n);
  BOOST_TEST_MESSAGE("2:4: magnitude " << e_mag24 << ", SparseGPT " << e24);
  BOOST_TEST(e24 < 0.8 * e_mag24);
}

BOOST_AUTO_TEST_CASE(options_are_checked) {
  const Index rows = 4, n = 64;
  const std::vector<double> h = hessian_of(100, n, 14);
  const HessianFactor natural = factor_hessian(h.data(), n, 0.01, false);
  const HessianFactor ordered = factor_hessian(h.data(), n, 0.01, true);
  std::vector<float> w = weights(rows, n, 15);
  GptqOptions o;
  o.scheme = {4, 32, true};
  BOOST_TEST(error_of([&] { gptq_quantize(w.data(), rows, n, 0, ordered, o); }).find("act_order is false") !=
             std::string::npos);
  o.act_order = true;
  BOOST_TEST(error_of([&] {
               gptq_quantize(w.data(), rows, 32, 32, ordered, o);
             }).find("act order needs the whole layer") != std::string::npos);
  o.act_order = false;
  BOOST_TEST(error_of([&] {
               gptq_quantize(w.data(), rows, 48, 16, natural, o);
             }).find("not a multiple of group_size 32") != std::string::npos);
  BOOST_TEST(error_of([&] { gptq_quantize(w.data(), rows, 64, 32, natural, o); }).find("outside the layer's 64") !=
             std::string::npos);
  SparseGptOptions s;
  s.sparsity = 1.0;
  BOOST_TEST(error_of([&] {
               sparsegpt_prune(w.data(), rows, n, 0, natural, s, Selector{});
             }).find("sparsity must lie in (0, 1)") != std::string::npos);
  s.sparsity = 0.5, s.prune_n = 2, s.prune_m = 4, s.block_size = 30;
  BOOST_TEST(error_of([&] { sparsegpt_prune(w.data(), rows, n, 0, natural, s, Selector{}); }).find("multiples of m") !=
             std::string::npos);
  BOOST_TEST(error_of([&] { sparsegpt_prune(w.data(), rows, n, 0, ordered, {}, Selector{}); }).find("natural order") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(apply_block_error_matches_its_formula) {
  const Index rows = 5, n = 96, b0 = 32, b1 = 48;
  const std::vector<double> h = hessian_of(200, n, 16);
  std::mt19937 rng(17);
  std::normal_distribution<float> normal;
  std::vector<float> err(static_cast<std::size_t>(rows * (b1 - b0)));
  for (float& e : err) e = normal(rng);
  for (const bool act_order : {false, true}) {
    const HessianFactor f = factor_hessian(h.data(), n, 0.01, act_order);
    // Natural order: a slice [40, 96) that starts inside the block; act order: the whole layer.
    const Index offset = act_order ? 0 : 40, cols = n - offset;
    const std::vector<float> w0 = weights(rows, cols, 18);
    std::vector<float> w = w0;
    apply_block_error(w.data(), rows, cols, offset, f, b0, b1, err.data());
    double worst = 0.0;
    Index changed = 0;
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < cols; ++c) {
        Index pos = offset + c;
        if (act_order) pos = std::find(f.perm.begin(), f.perm.end(), c) - f.perm.begin();
        double want = w0[static_cast<std::size_t>(r * cols + c)];
        if (pos >= b1)
          for (Index t = b0; t < b1; ++t)
            want -= static_cast<double>(err[static_cast<std::size_t>(r * (b1 - b0) + t - b0)]) *
                    f.u[static_cast<std::size_t>(t * n + pos)];
        const float got = w[static_cast<std::size_t>(r * cols + c)];
        changed += got != w0[static_cast<std::size_t>(r * cols + c)];
        worst = std::max(worst, std::abs(static_cast<double>(got) - want));
      }
    BOOST_TEST(worst < 1e-5, "act order " << act_order << ": worst " << worst);
    BOOST_TEST(changed == rows * (n - b1));
  }
}
