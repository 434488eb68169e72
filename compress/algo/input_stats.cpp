#include "compress/algo/input_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace loom::compress {

namespace {

// Σ x xᵀ is computed in blocks of 4 rows by 16 columns whose sums stay in vector registers
// while the sample's tokens stream past (8 AVX-512 registers; GCC splits them for AVX2).
constexpr std::int64_t kRowBlock = 4;
constexpr std::int64_t kColumnTile = 16;
using Vec8 = double __attribute__((vector_size(64)));

// Headroom: every fixed-point partial and total sum is below 2^62.
constexpr int kFixedBits = 62;

std::int64_t to_fixed(double value, double scale) { return static_cast<std::int64_t>(std::nearbyint(value * scale)); }

std::string position(std::int64_t t, std::int64_t j) {
  return "token " + std::to_string(t) + ", column " + std::to_string(j);
}

}  // namespace

InputStatsAccumulator::InputStatsAccumulator(std::int64_t n, bool want_xtx) : n_(n), want_xtx_(want_xtx) {
  if (n <= 0) throw std::invalid_argument("input statistics: width must be positive, got " + std::to_string(n));
  absmax_.assign(static_cast<std::size_t>(n), 0.0f);
}

void InputStatsAccumulator::observe_absmax(const float* x, std::int64_t tokens) {
  if (tokens < 0) throw std::invalid_argument("input statistics: negative token count " + std::to_string(tokens));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < n_; ++j) {
      const float v = x[t * n_ + j];
      if (!std::isfinite(v))
        throw std::runtime_error("input statistics: non-finite activation " + std::to_string(v) + " at " +
                                 position(t, j) + " of a calibration sample");
      absmax_[static_cast<std::size_t>(j)] = std::max(absmax_[static_cast<std::size_t>(j)], std::fabs(v));
    }
  observed_tokens_ += tokens;
}

void InputStatsAccumulator::begin_sums(std::span<const float> global_absmax, std::int64_t global_tokens) {
  if (static_cast<std::int64_t>(global_absmax.size()) != n_)
    throw std::invalid_argument("input statistics: begin_sums got " + std::to_string(global_absmax.size()) +
                                " absmax values for width " + std::to_string(n_));
  if (global_tokens <= 0)
    throw std::invalid_argument("input statistics: begin_sums needs a positive global token count, got " +
                                std::to_string(global_tokens) + " (no calibration tokens reached this layer?)");
  global_absmax_.assign(global_absmax.begin(), global_absmax.end());
  column_exponent_.assign(static_cast<std::size_t>(n_), 0);
  for (std::int64_t j = 0; j < n_; ++j) {
    const float a = global_absmax_[static_cast<std::size_t>(j)];
    if (!(a >= 0.0f) || !std::isfinite(a))
      throw std::invalid_argument("input statistics: global absmax of column " + std::to_string(j) +
                                  " must be finite and >= 0, got " + std::to_string(a));
    if (a > 0.0f) {
      int e = 0;
      std::frexp(static_cast<double>(a), &e);
      column_exponent_[static_cast<std::size_t>(j)] = -e;
    }
  }
  int e = 0;
  std::frexp(static_cast<double>(global_tokens), &e);
  token_exponent_ = kFixedBits - e;
  global_tokens_ = global_tokens;
  added_tokens_ = 0;
  fixed_sq_.assign(static_cast<std::size_t>(n_), 0);
  fixed_xtx_.assign(want_xtx_ ? static_cast<std::size_t>(n_ * n_) : 0, 0);
  summing_ = true;
}

void InputStatsAccumulator::add_sample(const float* x, std::int64_t tokens) {
  if (!summing_) throw std::logic_error("input statistics: add_sample before begin_sums");
  if (tokens < 0) throw std::invalid_argument("input statistics: negative token count " + std::to_string(tokens));
  if (added_tokens_ + tokens > global_tokens_)
    throw std::runtime_error("input statistics: " + std::to_string(added_tokens_ + tokens) +
                             " tokens added, more than the " + std::to_string(global_tokens_) +
                             " given to begin_sums (the two calibration passes saw different data)");
  if (tokens == 0) return;

  // Scaling by a power of two is exact, and so is the product of two scaled float32 values
  // in double (24 + 24 significant bits): each entry's only rounding is its sum over tokens,
  // always taken in token order from 0, whatever the blocking, vector width or thread.
  const std::int64_t n = n_, padded = (n + kRowBlock - 1) / kRowBlock * kRowBlock;
  std::vector<double> column_scale(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j)
    column_scale[static_cast<std::size_t>(j)] = std::ldexp(1.0, column_exponent_[static_cast<std::size_t>(j)]);
  std::vector<double> sq(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < n; ++j) {
      const float v = x[t * n + j];
      if (!(std::fabs(v) <= global_absmax_[static_cast<std::size_t>(j)]))
        throw std::runtime_error("input statistics: |x| = " + std::to_string(std::fabs(v)) + " at " + position(t, j) +
                                 " exceeds the global absmax " +
                                 std::to_string(global_absmax_[static_cast<std::size_t>(j)]) +
                                 " given to begin_sums (the two calibration passes saw different data)");
      const double scaled = static_cast<double>(v) * column_scale[static_cast<std::size_t>(j)];
      sq[static_cast<std::size_t>(j)] += scaled * scaled;
    }
  added_tokens_ += tokens;
  const double token_scale = std::ldexp(1.0, token_exponent_);
  for (std::int64_t j = 0; j < n; ++j)
    fixed_sq_[static_cast<std::size_t>(j)] += to_fixed(sq[static_cast<std::size_t>(j)], token_scale);
  if (!want_xtx_) return;

  // The sample transposed, [padded, tokens], rows past n zero: row i is column i of x.
  transposed_.assign(static_cast<std::size_t>(padded * tokens), 0.0);
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < n; ++j)
      transposed_[static_cast<std::size_t>(j * tokens + t)] =
          static_cast<double>(x[t * n + j]) * column_scale[static_cast<std::size_t>(j)];
  const double* xt = transposed_.data();
  std::int64_t* fixed = fixed_xtx_.data();
  const std::int64_t column_tiles = (n + kColumnTile - 1) / kColumnTile;
#pragma omp parallel
  {
    // One tile of kColumnTile columns packed [tokens, kColumnTile], and the kRowBlock x
    // kColumnTile block of sums, small enough to live in registers.
    std::vector<double> tile(static_cast<std::size_t>(tokens * kColumnTile));
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t jt = 0; jt < column_tiles; ++jt) {
      const std::int64_t j0 = jt * kColumnTile, width = std::min(kColumnTile, n - j0);
      for (std::int64_t t = 0; t < tokens; ++t)
        for (std::int64_t c = 0; c < kColumnTile; ++c)
          tile[static_cast<std::size_t>(t * kColumnTile + c)] = c < width ? xt[(j0 + c) * tokens + t] : 0.0;
      for (std::int64_t i0 = 0; i0 < std::min(n, j0 + width); i0 += kRowBlock) {
        const double* a0 = xt + i0 * tokens;
        const double* a1 = a0 + tokens;
        const double* a2 = a1 + tokens;
        const double* a3 = a2 + tokens;
        Vec8 s00{}, s01{}, s10{}, s11{}, s20{}, s21{}, s30{}, s31{};
        for (std::int64_t t = 0; t < tokens; ++t) {
          Vec8 p0, p1;
          std::memcpy(&p0, tile.data() + t * kColumnTile, sizeof p0);
          std::memcpy(&p1, tile.data() + t * kColumnTile + 8, sizeof p1);
          s00 += a0[t] * p0, s01 += a0[t] * p1;
          s10 += a1[t] * p0, s11 += a1[t] * p1;
          s20 += a2[t] * p0, s21 += a2[t] * p1;
          s30 += a3[t] * p0, s31 += a3[t] * p1;
        }
        const Vec8 sums[kRowBlock][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31}};
        for (std::int64_t r = 0; r < kRowBlock && i0 + r < n; ++r)
          for (std::int64_t c = std::max<std::int64_t>(0, i0 + r - j0); c < width; ++c)
            fixed[(i0 + r) * n + j0 + c] += to_fixed(sums[r][c / 8][c % 8], token_scale);
      }
    }
  }
}

InputStats InputStatsAccumulator::finish() const {
  if (!summing_) throw std::logic_error("input statistics: finish before begin_sums");
  InputStats stats;
  stats.n = n_;
  stats.tokens = global_tokens_;
  stats.absmax = global_absmax_;
  stats.sq_sum.resize(static_cast<std::size_t>(n_));
  const auto g = [&](std::int64_t j) { return column_exponent_[static_cast<std::size_t>(j)]; };
  for (std::int64_t j = 0; j < n_; ++j)
    stats.sq_sum[static_cast<std::size_t>(j)] =
        std::ldexp(static_cast<double>(fixed_sq_[static_cast<std::size_t>(j)]), -(2 * g(j) + token_exponent_));
  if (want_xtx_) {
    stats.xtx.resize(static_cast<std::size_t>(n_ * n_));
    for (std::int64_t i = 0; i < n_; ++i)
      for (std::int64_t j = i; j < n_; ++j) {
        const double v = std::ldexp(static_cast<double>(fixed_xtx_[static_cast<std::size_t>(i * n_ + j)]),
                                    -(g(i) + g(j) + token_exponent_));
        stats.xtx[static_cast<std::size_t>(i * n_ + j)] = v;
        stats.xtx[static_cast<std::size_t>(j * n_ + i)] = v;
      }
  }
  return stats;
}

}  // namespace loom::compress
