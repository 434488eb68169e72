// Unit tests of RTN quantization (core/quant), calibration statistics, magnitude / Wanda /
// n:m pruning and SmoothQuant (compress/algo). Each is checked against a plain loop or a
// hand-computed value; PyTorch parity of the Wanda, magnitude and SmoothQuant formulas is in
// tests/reference/test_wanda_reference.py.
#define BOOST_TEST_MODULE compress_quant
#include <boost/test/unit_test.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "compress/algo/input_stats.h"
#include "compress/algo/pruning.h"
#include "compress/algo/smoothquant.h"
#include "core/quant/quantized.h"
#include "tests/unit/error_of.h"

using namespace loom;
using namespace loom::compress;

namespace {

std::vector<float> random_vector(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = scale * dist(rng);
  return v;
}

// 6 rows of 688 columns (688 is no multiple of 32, 64 or 128, so every grouping has a ragged
// last group): normal, an outlier, all-positive, a zero first 128 columns, small, all zero.
std::vector<float> rtn_rows(std::int64_t cols) {
  std::vector<float> w = random_vector(static_cast<std::size_t>(6 * cols), 11);
  w[static_cast<std::size_t>(cols + 17)] = 40.0f;
  for (std::int64_t c = 0; c < cols; ++c) {
    float& positive = w[static_cast<std::size_t>(2 * cols + c)];
    positive = std::fabs(positive) + 0.25f;
    if (c < 128) w[static_cast<std::size_t>(3 * cols + c)] = 0.0f;
    w[static_cast<std::size_t>(4 * cols + c)] *= 1e-4f;
    w[static_cast<std::size_t>(5 * cols + c)] = 0.0f;
  }
  return w;
}

}  // namespace

// ---- RTN (core/quant) --------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(rtn_error_within_half_a_step_for_every_scheme) {
  const std::int64_t rows = 6, cols = 688;
  const std::vector<float> w = rtn_rows(cols);
  for (const int bits : {8, 4})
    for (const std::int64_t group : {0, 32, 64, 128})
      for (const bool symmetric : {true, false}) {
        const quant::Scheme scheme{bits, group, symmetric};
        BOOST_TEST_CONTEXT(scheme.name()) {
          const quant::QuantizedMatrix q = quant::quantize_rtn(w.data(), rows, cols, scheme);
          std::vector<float> dq(w.size());
          quant::dequantize(q, dq.data());
          std::int64_t violations = 0;
          for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; ++c) {
              const quant::GroupParams p = q.params(r, scheme.group_of(c));
              const int code = q.code(r, c);
              const float x = w[static_cast<std::size_t>(r * cols + c)];
              const float err = std::fabs(x - dq[static_cast<std::size_t>(r * cols + c)]);
              violations += code < 0 || code > scheme.max_code();
              violations += !(err <= p.scale / 2 * (1.0f + 1e-6f) + 1e-7f * std::fabs(x));
              violations += dq[static_cast<std::size_t>(r * cols + c)] != p.scale * static_cast<float>(code - p.zero);
              if (symmetric) violations += p.zero != (scheme.max_code() + 1) / 2;
            }
          BOOST_TEST(violations == 0);
          // The all-zero row and group: GPTQ's [-1, 1] range, every code at the zero point.
          const quant::GroupParams zero_group = q.params(5, 0);
          BOOST_TEST(zero_group.scale == 2.0f / static_cast<float>(scheme.max_code()));
          BOOST_TEST(q.code(5, 100) == zero_group.zero);
          BOOST_TEST(q.dequantized(3, 5) == 0.0f);
          const std::int64_t groups = scheme.groups(cols);
          BOOST_TEST(groups == (group == 0 ? 1 : (cols + group - 1) / group));
          const std::int64_t code_bytes = bits == 8 ? rows * cols : rows * ((cols + 1) / 2);
          BOOST_TEST(q.storage_bytes() == code_bytes + rows * groups * 5);
        }
      }
}

BOOST_AUTO_TEST_CASE(rtn_asymmetric_uses_the_full_range_of_an_all_positive_row) {
  const std::vector<float> w{0.5f, 1.0f, 2.0f, 4.0f};
  const quant::QuantizedMatrix q = quant::quantize_rtn(w.data(), 1, 4, {4, 0, false});
  BOOST_TEST(q.params(0, 0).zero == 0);
  BOOST_TEST(q.params(0, 0).scale == 4.0f / 15.0f);
  BOOST_TEST(q.code(0, 3) == 15);
  BOOST_TEST(q.code(0, 0) == 2);  // 0.5 / (4/15) = 1.875
}

BOOST_AUTO_TEST_CASE(int4_packing_round_trips_every_nibble_of_odd_rows) {
  const std::int64_t rows = 3, cols = 7;
  quant::QuantizedMatrix q = quant::QuantizedMatrix::empty(rows, cols, {4, 0, true});
  BOOST_TEST(q.row_bytes() == 4);
  BOOST_TEST(q.codes.size() == 12u);
  const auto pattern = [](std::int64_t r, std::int64_t c, int pass) { return static_cast<int>((r * 7 + c * 3 + pass) % 16); };
  for (const int pass : {0, 5}) {  // the second pass overwrites every nibble
    for (std::int64_t c = cols - 1; c >= 0; --c)
      for (std::int64_t r = 0; r < rows; ++r) q.set_code(r, c, pattern(r, c, pass));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) BOOST_TEST(q.code(r, c) == pattern(r, c, pass));
  }
  BOOST_TEST((q.codes[0] & 0x0F) == pattern(0, 0, 5));
  BOOST_TEST((q.codes[0] >> 4) == pattern(0, 1, 5));
  BOOST_TEST((q.codes[3] >> 4) == 0);  // the padding nibble of an odd row stays clear
  quant::QuantizedMatrix q8 = quant::QuantizedMatrix::empty(2, 5, {8, 0, true});
  for (int v = 0; v < 256; v += 51) {
    q8.set_code(1, 4, v);
    BOOST_TEST(q8.code(1, 4) == v);
  }
  BOOST_TEST(q8.code(1, 3) == 0);
}

BOOST_AUTO_TEST_CASE(scheme_rejects_unsupported_settings) {
  BOOST_TEST(error_of([] { quant::Scheme{3, 0, true}.validate(); }).find("bits") != std::string::npos);
  BOOST_TEST(error_of([] { quant::Scheme{4, 48, true}.validate(); }).find("group_size") != std::string::npos);
  BOOST_TEST(quant::Scheme({4, 128, false}).name() == "int4-g128-asym");
}

// ---- calibration statistics --------------------------------------------------------------

namespace {

struct Sample {
  std::int64_t tokens;
  std::vector<float> x;
};

std::vector<Sample> calibration_samples(std::int64_t n, int count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Sample> samples;
  for (int s = 0; s < count; ++s) {
    const std::int64_t tokens = 1 + static_cast<std::int64_t>(rng() % 24);
    std::vector<float> x = random_vector(static_cast<std::size_t>(tokens * n), seed * 100 + s, s % 5 == 0 ? 300.0f : 1.0f);
    for (std::int64_t t = 0; t < tokens; ++t) {
      x[static_cast<std::size_t>(t * n + 3)] = 0.0f;        // a dead column
      x[static_cast<std::size_t>(t * n + 7)] *= 1e-3f;      // a quiet one
    }
    samples.push_back({tokens, std::move(x)});
  }
  return samples;
}

// Samples [begin, end) into `parts` accumulators as dp ranks would, then the reductions.
InputStats accumulate(const std::vector<Sample>& samples, std::int64_t n, const std::vector<int>& splits) {
  std::vector<InputStatsAccumulator> ranks;
  for (std::size_t r = 0; r + 1 < splits.size(); ++r) ranks.emplace_back(n, true);
  for (std::size_t r = 0; r < ranks.size(); ++r)
    for (int s = splits[r]; s < splits[r + 1]; ++s) ranks[r].observe_absmax(samples[s].x.data(), samples[s].tokens);
  std::vector<float> absmax(static_cast<std::size_t>(n), 0.0f);
  std::int64_t tokens = 0;
  for (const auto& rank : ranks) {
    for (std::int64_t j = 0; j < n; ++j) absmax[j] = std::max(absmax[j], rank.absmax()[j]);
    tokens += rank.observed_tokens();
  }
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    ranks[r].begin_sums(absmax, tokens);
    for (int s = splits[r]; s < splits[r + 1]; ++s) ranks[r].add_sample(samples[s].x.data(), samples[s].tokens);
  }
  for (std::size_t r = 1; r < ranks.size(); ++r) {
    for (std::size_t i = 0; i < ranks[0].fixed_xtx().size(); ++i) ranks[0].fixed_xtx()[i] += ranks[r].fixed_xtx()[i];
    for (std::size_t i = 0; i < ranks[0].fixed_sq().size(); ++i) ranks[0].fixed_sq()[i] += ranks[r].fixed_sq()[i];
  }
  return ranks[0].finish();
}

template <typename T>
bool bit_identical(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace

BOOST_AUTO_TEST_CASE(input_stats_identical_bit_for_bit_across_dp_splits) {
  for (const std::int64_t n : {37, 530}) {  // a ragged row block; several column tiles
    BOOST_TEST_CONTEXT("n = " << n) {
      const std::vector<Sample> samples = calibration_samples(n, 32, static_cast<std::uint32_t>(n));
      const InputStats whole = accumulate(samples, n, {0, 32});
      for (const auto& split : {std::vector<int>{0, 3, 32}, std::vector<int>{0, 16, 32}, std::vector<int>{0, 5, 6, 20, 32}}) {
        const InputStats part = accumulate(samples, n, split);
        BOOST_TEST(part.tokens == whole.tokens);
        BOOST_TEST(bit_identical(part.absmax, whole.absmax));
        BOOST_TEST(bit_identical(part.sq_sum, whole.sq_sum));
        BOOST_TEST(bit_identical(part.xtx, whole.xtx));
      }
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      const InputStats serial = accumulate(samples, n, {0, 32});
      omp_set_num_threads(threads);
      BOOST_TEST(bit_identical(serial.xtx, whole.xtx));

      // Against a plain double sum: the fixed point loses nothing a float32 input can show.
      std::vector<double> xtx(static_cast<std::size_t>(n * n), 0.0);
      std::int64_t tokens = 0;
      for (const Sample& s : samples) {
        tokens += s.tokens;
        for (std::int64_t t = 0; t < s.tokens; ++t)
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t j = 0; j < n; ++j)
              xtx[i * n + j] += static_cast<double>(s.x[t * n + i]) * static_cast<double>(s.x[t * n + j]);
      }
      BOOST_TEST(whole.tokens == tokens);
      std::int64_t violations = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        violations += !(std::fabs(whole.sq_sum[i] - xtx[i * n + i]) <= 1e-9 * xtx[i * n + i]);
        for (std::int64_t j = 0; j < n; ++j) {
          const double bound = 1e-9 * std::sqrt(xtx[i * n + i] * xtx[j * n + j]);
          violations += !(std::fabs(whole.xtx[i * n + j] - xtx[i * n + j]) <= bound);
          violations += whole.xtx[i * n + j] != whole.xtx[j * n + i];
        }
      }
      BOOST_TEST(violations == 0);
      BOOST_TEST(whole.sq_sum[3] == 0.0);
      BOOST_TEST(whole.sq_sum[7] > 0.0);
      BOOST_TEST(whole.sq_sum[5] == whole.xtx[5 * n + 5]);
    }
  }
}

BOOST_AUTO_TEST_CASE(input_stats_refuses_data_the_two_passes_did_not_agree_on) {
  InputStatsAccumulator acc(2, false);
  const std::vector<float> x{1.0f, -2.0f, 0.5f, 1.5f};
  BOOST_TEST(error_of([&] { acc.add_sample(x.data(), 2); }).find("before begin_sums") != std::string::npos);
  acc.observe_absmax(x.data(), 2);
  BOOST_TEST(acc.absmax() == std::vector<float>({1.0f, 2.0f}));
  BOOST_TEST(acc.observed_tokens() == 2);
  acc.begin_sums(acc.absmax(), 2);
  const std::vector<float> larger{1.0f, -2.5f};
  BOOST_TEST(error_of([&] { acc.add_sample(larger.data(), 1); }).find("exceeds the global absmax") != std::string::npos);
  acc.add_sample(x.data(), 2);
  BOOST_TEST(error_of([&] { acc.add_sample(x.data(), 1); }).find("more than the 2") != std::string::npos);
  const InputStats s = acc.finish();
  BOOST_TEST(s.sq_sum == std::vector<double>({1.25, 6.25}));
  BOOST_TEST(s.xtx.empty());
  const std::vector<float> nan{1.0f, std::nanf("")};
  BOOST_TEST(error_of([&] { InputStatsAccumulator(2, true).observe_absmax(nan.data(), 1); }).find("column 1") !=
             std::string::npos);
}

// ---- pruning -----------------------------------------------------------------------------

namespace {

// The rows or columns a tensor-parallel peer holds, for a Selector that sees both slices the
// way the MPI one sees every rank of its group.
class TwoSliceSelector : public Selector {
 public:
  TwoSliceSelector(std::vector<float> peer_values, std::vector<std::uint64_t> peer_keys, std::int64_t peer_cols)
      : peer_values_(std::move(peer_values)), peer_keys_(std::move(peer_keys)), peer_cols_(peer_cols) {}
  float kth_smallest(std::span<const float> values, std::int64_t k) const override {
    std::vector<float> all(values.begin(), values.end());
    all.insert(all.end(), peer_values_.begin(), peer_values_.end());
    return Selector::kth_smallest(all, k);
  }
  void kth_smallest_per_row(std::span<const std::uint64_t> keys, std::int64_t rows, std::int64_t k,
                            std::uint64_t* out) const override {
    const auto cols = static_cast<std::int64_t>(keys.size()) / rows;
    std::vector<std::uint64_t> all;
    for (std::int64_t r = 0; r < rows; ++r) {
      all.insert(all.end(), keys.begin() + r * cols, keys.begin() + (r + 1) * cols);
      all.insert(all.end(), peer_keys_.begin() + r * peer_cols_, peer_keys_.begin() + (r + 1) * peer_cols_);
    }
    Selector::kth_smallest_per_row(all, rows, k, out);
  }

 private:
  std::vector<float> peer_values_;
  std::vector<std::uint64_t> peer_keys_;
  std::int64_t peer_cols_;
};

std::vector<float> columns_of(const std::vector<float>& m, std::int64_t rows, std::int64_t cols, std::int64_t c0,
                              std::int64_t c1) {
  std::vector<float> out;
  for (std::int64_t r = 0; r < rows; ++r) out.insert(out.end(), m.begin() + r * cols + c0, m.begin() + r * cols + c1);
  return out;
}

// Wanda's rule written out: per row, a stable sort of the metric, the first k pruned.
std::vector<std::uint8_t> wanda_by_sorting(const std::vector<float>& metric, std::int64_t rows, std::int64_t cols,
                                           std::int64_t k) {
  std::vector<std::uint8_t> keep(metric.size(), 1);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(cols));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::int64_t a, std::int64_t b) { return metric[r * cols + a] < metric[r * cols + b]; });
    for (std::int64_t i = 0; i < k; ++i) keep[r * cols + order[i]] = 0;
  }
  return keep;
}

}  // namespace

BOOST_AUTO_TEST_CASE(magnitude_prunes_every_weight_up_to_the_kth_smallest) {
  const std::int64_t rows = 16, cols = 32;
  std::vector<float> w = random_vector(rows * cols, 5);
  const Selector local;
  std::vector<float> sorted = magnitude_metric(w.data(), rows, cols);
  std::sort(sorted.begin(), sorted.end());
  auto keep = magnitude_mask(w.data(), rows, cols, rows * cols, 0.5, local);
  BOOST_TEST(std::count(keep.begin(), keep.end(), 0) == 257);  // sorted[256] and everything below
  for (std::size_t i = 0; i < w.size(); ++i) BOOST_TEST(keep[i] == (std::fabs(w[i]) > sorted[256] ? 1 : 0));
  for (std::size_t i = 0; i < 300; ++i) w[i * 512 / 300] = 0.0f;  // ties at the threshold all go
  keep = magnitude_mask(w.data(), rows, cols, rows * cols, 0.5, local);
  BOOST_TEST(std::count(keep.begin(), keep.end(), 0) == 300);
  BOOST_TEST(sparsity_of(keep) == 300.0 / 512.0);
  keep = magnitude_mask(w.data(), rows, cols, rows * cols, 0.0, local);
  BOOST_TEST(std::count(keep.begin(), keep.end(), 0) == 0);
  BOOST_TEST(error_of([&] { magnitude_mask(w.data(), rows, cols, rows * cols, 1.0, local); }).find("[0, 1)") !=
             std::string::npos);

  // Split by columns over two tp ranks: each gets its part of the whole layer's mask.
  const std::vector<float> full = random_vector(rows * cols, 6);
  const auto whole = magnitude_mask(full.data(), rows, cols, rows * cols, 0.3, local);
  const auto left = columns_of(full, rows, cols, 0, 8), right = columns_of(full, rows, cols, 8, 32);
  const TwoSliceSelector sees_right(magnitude_metric(right.data(), rows, 24), {}, 0);
  const auto left_keep = magnitude_mask(left.data(), rows, 8, rows * cols, 0.3, sees_right);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < 8; ++c) BOOST_TEST(left_keep[r * 8 + c] == whole[r * cols + c]);
}

BOOST_AUTO_TEST_CASE(wanda_prunes_exactly_k_per_row_ties_to_the_lower_column) {
  const std::int64_t rows = 12, cols = 40;
  std::vector<float> w = random_vector(rows * cols, 7);
  std::vector<double> sq(cols);
  for (std::int64_t c = 0; c < cols; ++c) sq[c] = 0.5 + static_cast<double>((c * 37) % 11);
  sq[4] = 0.0;                                                  // a column the data never used
  for (std::int64_t c = 0; c < cols; ++c) w[2 * cols + c] = 1.0f;  // row 2: ties by metric wherever sq ties
  for (std::int64_t c = 0; c < cols; ++c) w[5 * cols + c] = c % 2 == 0 ? 0.0f : 2.0f;  // row 5: 20 zeros
  const Selector local;
  const std::vector<float> metric = wanda_metric(w.data(), rows, cols, sq);
  BOOST_TEST(metric[3] == std::fabs(w[3]) * static_cast<float>(std::sqrt(sq[3])));
  for (const double sparsity : {0.0, 0.01, 0.3, 0.5, 0.9}) {
    const auto k = static_cast<std::int64_t>(std::floor(cols * sparsity));
    const auto keep = wanda_mask(w.data(), rows, cols, 0, cols, sq, sparsity, local);
    BOOST_TEST(keep == wanda_by_sorting(metric, rows, cols, k));
    for (std::int64_t r = 0; r < rows; ++r)
      BOOST_TEST(std::count(keep.begin() + r * cols, keep.begin() + (r + 1) * cols, 0) == k);
  }
  const auto half = wanda_mask(w.data(), rows, cols, 0, cols, sq, 0.25, local);
  for (std::int64_t c = 0; c < cols; c += 2) BOOST_TEST(half[5 * cols + c] == (c < 20 ? 0 : 1));

  // Rows split (column-parallel): each half on its own. Columns split (row-parallel): the
  // selector sees the peer's keys, and the global columns keep the tie order.
  const auto whole = wanda_mask(w.data(), rows, cols, 0, cols, sq, 0.5, local);
  const auto bottom = wanda_mask(w.data() + 6 * cols, 6, cols, 0, cols, sq, 0.5, local);
  BOOST_TEST(std::equal(bottom.begin(), bottom.end(), whole.begin() + 6 * cols));
  const std::int64_t split = 16;
  const auto left = columns_of(w, rows, cols, 0, split), right = columns_of(w, rows, cols, split, cols);
  const std::vector<double> sq_left(sq.begin(), sq.begin() + split), sq_right(sq.begin() + split, sq.end());
  const auto keys_of = [&](const std::vector<float>& part, std::int64_t width, const std::vector<double>& part_sq,
                           std::int64_t offset) {
    const std::vector<float> m = wanda_metric(part.data(), rows, width, part_sq);
    std::vector<std::uint64_t> keys;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < width; ++c) keys.push_back(metric_key(m[r * width + c], offset + c));
    return keys;
  };
  const TwoSliceSelector sees_right({}, keys_of(right, cols - split, sq_right, split), cols - split);
  const TwoSliceSelector sees_left({}, keys_of(left, split, sq_left, 0), split);
  const auto left_keep = wanda_mask(left.data(), rows, split, 0, cols, sq_left, 0.5, sees_right);
  const auto right_keep = wanda_mask(right.data(), rows, cols - split, split, cols, sq_right, 0.5, sees_left);
  std::int64_t mismatches = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      mismatches += (c < split ? left_keep[r * split + c] : right_keep[r * (cols - split) + c - split]) != whole[r * cols + c];
  BOOST_TEST(mismatches == 0);
  BOOST_TEST(error_of([&] { wanda_mask(w.data(), rows, cols, 8, cols, sq, 0.5, local); }).find("outside a row") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(nm_masks_prune_the_n_smallest_of_each_group) {
  const std::vector<float> metric{4, 1, 3, 2,  0, 0, 0, 0,  1, 0, 0, 1,  5, 5, 1, 5};
  const auto keep = nm_mask(metric.data(), 1, 16, 2, 4);
  BOOST_TEST(keep == std::vector<std::uint8_t>({1, 0, 1, 0,  0, 0, 1, 1,  1, 0, 0, 1,  0, 1, 0, 1}));
  const auto one_of_four = nm_mask(metric.data(), 2, 8, 1, 4);
  BOOST_TEST(std::count(one_of_four.begin(), one_of_four.end(), 0) == 4);
  BOOST_TEST(one_of_four[1] == 0);

  const std::int64_t rows = 32, cols = 64;
  const std::vector<float> w = random_vector(rows * cols, 9);
  const std::vector<float> mag = magnitude_metric(w.data(), rows, cols);
  const auto two_four = nm_mask(mag.data(), rows, cols, 2, 4);
  std::int64_t bad_groups = 0;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t g = 0; g < cols; g += 4) {
      float largest_pruned = 0.0f, smallest_kept = INFINITY;
      int kept = 0;
      for (std::int64_t c = g; c < g + 4; ++c) {
        if (two_four[r * cols + c]) ++kept, smallest_kept = std::min(smallest_kept, mag[r * cols + c]);
        else largest_pruned = std::max(largest_pruned, mag[r * cols + c]);
      }
      bad_groups += kept != 2 || largest_pruned > smallest_kept;
    }
  BOOST_TEST(bad_groups == 0);
  BOOST_TEST(sparsity_of(two_four) == 0.5);
  BOOST_TEST(error_of([&] { nm_mask(mag.data(), 1, 6, 2, 4); }).find("multiple of m = 4") != std::string::npos);
  BOOST_TEST(error_of([&] { nm_mask(mag.data(), 1, 8, 4, 4); }).find("0 <= n < m") != std::string::npos);

  std::vector<float> pruned = w;
  BOOST_TEST(apply_mask(pruned.data(), two_four.data(), rows * cols) == rows * cols / 2);
  for (std::size_t i = 0; i < w.size(); ++i) BOOST_TEST(pruned[i] == (two_four[i] ? w[i] : 0.0f));
}

// ---- SmoothQuant -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(smooth_scales_follow_smoothquant_with_its_clamps) {
  const std::vector<float> act{4.0f, 0.0f, 1.0f, 9.0f}, weight{1.0f, 2.0f, 0.0f, 0.25f};
  const std::vector<float> s = smooth_scales(act, weight, 0.5);
  BOOST_TEST(s[0] == 2.0f);
  BOOST_TEST(s[1] == 1e-5f);                                   // a dead column
  BOOST_TEST(s[2] == static_cast<float>(1.0 / std::sqrt(1e-5f)), boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(s[3] == 6.0f);
  const std::vector<float> s8 = smooth_scales(act, weight, 0.8);
  BOOST_TEST(s8[3] == static_cast<float>(std::pow(9.0, 0.8) / std::pow(0.25, 0.2)), boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(error_of([&] { smooth_scales(act, weight, 1.5); }).find("alpha") != std::string::npos);
}

namespace {

// norm(x) · Wᵀ for a LayerNorm (bias != nullptr) or an RMSNorm-style scale (bias == nullptr).
std::vector<float> norm_then_linear(const std::vector<float>& x, std::int64_t tokens, std::int64_t n,
                                    const std::vector<float>& gamma, const float* beta, const std::vector<float>& w,
                                    std::int64_t out, std::vector<float>* normed = nullptr) {
  std::vector<float> y(static_cast<std::size_t>(tokens * out)), h(static_cast<std::size_t>(n));
  if (normed) normed->assign(static_cast<std::size_t>(tokens * n), 0.0f);
  for (std::int64_t t = 0; t < tokens; ++t) {
    double mean = 0.0, sq = 0.0;
    for (std::int64_t j = 0; j < n; ++j) mean += x[t * n + j] / static_cast<double>(n);
    if (beta == nullptr) mean = 0.0;
    for (std::int64_t j = 0; j < n; ++j) sq += (x[t * n + j] - mean) * (x[t * n + j] - mean) / static_cast<double>(n);
    for (std::int64_t j = 0; j < n; ++j) {
      h[j] = static_cast<float>((x[t * n + j] - mean) / std::sqrt(sq + 1e-5)) * gamma[j] + (beta ? beta[j] : 0.0f);
      if (normed) (*normed)[t * n + j] = h[j];
    }
    for (std::int64_t o = 0; o < out; ++o) {
      double acc = 0.0;
      for (std::int64_t j = 0; j < n; ++j) acc += static_cast<double>(h[j]) * w[o * n + j];
      y[t * out + o] = static_cast<float>(acc);
    }
  }
  return y;
}

}  // namespace

BOOST_AUTO_TEST_CASE(smoothing_leaves_the_network_function_unchanged) {
  const std::int64_t tokens = 10, n = 16, out = 12;
  std::vector<float> x = random_vector(tokens * n, 21);
  for (std::int64_t t = 0; t < tokens; ++t) x[t * n + 5] *= 30.0f;  // an outlier channel
  for (const bool layer_norm : {true, false}) {
    BOOST_TEST_CONTEXT((layer_norm ? "LayerNorm" : "RMSNorm")) {
      std::vector<float> gamma = random_vector(n, 22), beta = random_vector(n, 23);
      for (float& g : gamma) g = 1.0f + 0.2f * g;
      std::vector<float> q = random_vector(out * n, 24, 0.1f), k = random_vector(out * n, 25, 0.1f);
      float* bias = layer_norm ? beta.data() : nullptr;
      std::vector<float> normed;
      const auto yq = norm_then_linear(x, tokens, n, gamma, bias, q, out, &normed);
      const auto yk = norm_then_linear(x, tokens, n, gamma, bias, k, out);
      std::vector<float> act = column_absmax(normed.data(), tokens, n), wmax = column_absmax(q.data(), out, n);
      const std::vector<float> kmax = column_absmax(k.data(), out, n);
      for (std::int64_t j = 0; j < n; ++j) wmax[j] = std::max(wmax[j], kmax[j]);
      const std::vector<float> s = smooth_scales(act, wmax, 0.5);
      const std::vector<SmoothedLinear> linears{{q.data(), out}, {k.data(), out}};
      apply_smoothing(gamma, bias, s, linears);
      std::vector<float> smoothed_normed;
      const auto yq2 = norm_then_linear(x, tokens, n, gamma, bias, q, out, &smoothed_normed);
      const auto yk2 = norm_then_linear(x, tokens, n, gamma, bias, k, out);
      for (std::size_t i = 0; i < yq.size(); ++i) {
        BOOST_TEST(std::fabs(yq2[i] - yq[i]) <= 1e-5f + 2e-5f * std::fabs(yq[i]), yq2[i] << " vs " << yq[i]);
        BOOST_TEST(std::fabs(yk2[i] - yk[i]) <= 1e-5f + 2e-5f * std::fabs(yk[i]), yk2[i] << " vs " << yk[i]);
      }
      // With α = 0.5 the outliers move half-way: each column's activation max and weight max
      // both become sqrt(act · weight).
      const std::vector<float> act2 = column_absmax(smoothed_normed.data(), tokens, n);
      std::vector<float> w2 = column_absmax(q.data(), out, n);
      const std::vector<float> k2 = column_absmax(k.data(), out, n);
      for (std::int64_t j = 0; j < n; ++j) {
        w2[j] = std::max(w2[j], k2[j]);
        BOOST_TEST(act2[j] == w2[j], boost::test_tools::tolerance(1e-4f));
        BOOST_TEST(act2[j] == std::sqrt(act[j] * wmax[j]), boost::test_tools::tolerance(1e-4f));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(per_token_int8_rounds_half_to_even_within_half_a_step) {
  const std::int64_t n = 6;
  std::vector<float> x{127.0f, -63.5f, 0.5f, 1.5f, 2.5f, -0.5f,  0, 0, 0, 0, 0, 0};
  const std::vector<float> noise = random_vector(5 * n, 31, 3.0f);
  x.insert(x.end(), noise.begin(), noise.end());
  const std::int64_t tokens = static_cast<std::int64_t>(x.size()) / n;
  std::vector<std::int8_t> q(x.size());
  std::vector<float> scales(tokens);
  quantize_activations_per_token(x.data(), tokens, n, q.data(), scales.data());
  BOOST_TEST(scales[0] == 1.0f);
  BOOST_TEST(std::vector<int>(q.begin(), q.begin() + n) == std::vector<int>({127, -64, 0, 2, 2, 0}));
  BOOST_TEST(scales[1] == 1.0f);
  BOOST_TEST(std::all_of(q.begin() + n, q.begin() + 2 * n, [](std::int8_t v) { return v == 0; }));
  for (std::int64_t t = 2; t < tokens; ++t) {
    int largest = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      BOOST_TEST(std::fabs(x[t * n + j] - q[t * n + j] * scales[t]) <= scales[t] / 2 * (1.0f + 1e-6f));
      largest = std::max(largest, std::abs(static_cast<int>(q[t * n + j])));
    }
    BOOST_TEST(largest == 127);
  }
}
