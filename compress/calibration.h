// Calibration samples for post-training compression: `samples` windows of `seq_len` tokens
// cut from a token store's text (Brown's training split by default), documents concatenated,
// at offsets drawn from a seed. The global sample list does not depend on the layout; data-
// parallel rank r takes the contiguous range [r·n/dp, (r+1)·n/dp), so statistics summed over
// the ranks in sample order are those of one process.
//
// Errors: std::runtime_error naming the store (missing, too short, a token outside the
// model's vocabulary). Thread safety: plain values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace loom::compress {

struct CalibrationSet {
  std::int64_t total = 0;        // samples over every dp rank
  std::int64_t seq_len = 0;
  std::int64_t first = 0;        // this rank's first global sample
  std::int64_t count = 0;        // this rank's samples
  std::vector<std::int32_t> tokens;  // [count, seq_len]
  std::int64_t store_tokens = 0;     // tokens in the store the windows were cut from
};

CalibrationSet load_calibration(const std::filesystem::path& store, std::int64_t samples, std::int64_t seq_len,
                                std::uint64_t seed, std::int64_t vocab_size, int dp_rank, int dp_size);

}  // namespace loom::compress
