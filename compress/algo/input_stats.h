// Calibration statistics of one linear layer's input, identical bit for bit however the
// calibration samples are split over data-parallel ranks.
//
// GPTQ and SparseGPT need Σ x xᵀ over the calibration tokens, Wanda needs Σ x_j² and
// SmoothQuant max |x_j|. loom-quantize's dp ranks each run some calibration samples and
// all-reduce these; a 1-rank and a 4-rank run must write the same checkpoint. A max is exact
// in any order, but a floating sum is not associative, so the sums are taken in two phases:
//
//   1. observe_absmax(x) for every sample; the driver all-reduces absmax() with MPI_MAX and
//      observed_tokens() with MPI_SUM.
//   2. begin_sums(global absmax, global tokens) fixes one fixed-point scale per entry from the
//      bound |Σ x_i x_j| <= absmax_i · absmax_j · tokens, which every rank computes alike.
//      add_sample(x) then takes each sample's (sequence's) sums in double with a fixed loop
//      order, rounds each to an int64 at that scale and adds it to int64 accumulators. The
//      driver all-reduces fixed_xtx() and fixed_sq() with MPI_SUM (integers: any order gives
//      the same result) and calls finish().
//
// Entry (i, j) is held as round(Σ x_i x_j · 2^(g_i + g_j + g_T)) with absmax_i · 2^g_i in
// [0.5, 1) and tokens · 2^(g_T − 62) < 1, so every partial and total sum stays below 2^62
// (half the int64 range) and one unit is at most 2^−59 of the entry's bound: far finer than
// the float32 activations the sums come from. A value larger than the agreed absmax (a
// driver that passed different data to the two phases) is reported, never silently wrapped.
//
// Ownership and safety: the accumulator owns its vectors; the driver may write into the
// fixed vectors (the in-place all-reduce) between the last add_sample and finish. One object
// per thread; add_sample uses OpenMP inside, and each entry's arithmetic does not depend on
// the thread count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace loom::compress {

// Statistics of a linear layer's input columns over calibration tokens.
struct InputStats {
  std::int64_t n = 0, tokens = 0;
  std::vector<float> absmax;   // [n] max |x_j|            (SmoothQuant)
  std::vector<double> sq_sum;  // [n] Σ x_j²               (Wanda: ‖X_j‖ = sqrt)
  std::vector<double> xtx;     // [n, n] Σ x xᵀ (GPTQ, SparseGPT); empty when not wanted
};

class InputStatsAccumulator {
 public:
  // n: the layer's input width on this rank; want_xtx: also Σ x xᵀ (n² int64s).
  InputStatsAccumulator(std::int64_t n, bool want_xtx);

  std::int64_t width() const { return n_; }
  bool wants_xtx() const { return want_xtx_; }

  // Phase 1. x [tokens, n] row-major. Throws on a non-finite value.
  void observe_absmax(const float* x, std::int64_t tokens);
  // This rank's running max |x_j| and token count: the driver reduces them over dp
  // (MPI_MAX, MPI_SUM) and passes the results to begin_sums.
  const std::vector<float>& absmax() const { return absmax_; }
  std::int64_t observed_tokens() const { return observed_tokens_; }

  // Phase 2. Zeroes the fixed-point sums and fixes their scales. global_absmax [n].
  void begin_sums(std::span<const float> global_absmax, std::int64_t global_tokens);
  // One calibration sample (sequence), x [tokens, n] row-major. Throws when called before
  // begin_sums, when |x_j| exceeds the agreed absmax_j, or when the tokens added so far
  // exceed global_tokens (either would break the overflow bound).
  void add_sample(const float* x, std::int64_t tokens);

  // The int64 accumulators for the driver's in-place MPI_SUM over dp: [n, n] (only the upper
  // triangle j >= i is summed, the lower stays 0 and finish() mirrors it; empty unless
  // want_xtx) and [n].
  std::vector<std::int64_t>& fixed_xtx() { return fixed_xtx_; }
  std::vector<std::int64_t>& fixed_sq() { return fixed_sq_; }

  // The statistics (absmax and tokens are the global values given to begin_sums).
  InputStats finish() const;

 private:
  std::int64_t n_;
  bool want_xtx_;
  std::vector<float> absmax_;
  std::int64_t observed_tokens_ = 0;

  bool summing_ = false;
  std::vector<float> global_absmax_;
  std::int64_t global_tokens_ = 0, added_tokens_ = 0;
  std::vector<int> column_exponent_;  // g_j: absmax_j · 2^g_j in [0.5, 1), 0 for a zero column
  int token_exponent_ = 0;            // g_T = 62 − e with tokens < 2^e
  std::vector<std::int64_t> fixed_xtx_, fixed_sq_;
  std::vector<double> transposed_;  // the current sample, x_tj · 2^g_j, [n rounded up, tokens]
};

}  // namespace loom::compress
