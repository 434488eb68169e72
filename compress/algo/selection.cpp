#include "compress/algo/selection.h"

#include <algorithm>
#include <bit>
#include <stdexcept>
#include <string>
#include <vector>

namespace loom::compress {

float Selector::kth_smallest(std::span<const float> values, std::int64_t k) const {
  if (k < 0 || k >= static_cast<std::int64_t>(values.size()))
    throw std::invalid_argument("kth_smallest: k = " + std::to_string(k) + " outside [0, " +
                                std::to_string(values.size()) + ")");
  std::vector<float> copy(values.begin(), values.end());
  std::nth_element(copy.begin(), copy.begin() + k, copy.end());
  return copy[static_cast<std::size_t>(k)];
}

void Selector::kth_smallest_per_row(std::span<const std::uint64_t> keys, std::int64_t rows, std::int64_t k,
                                    std::uint64_t* out) const {
  const std::int64_t cols = rows > 0 ? static_cast<std::int64_t>(keys.size()) / rows : 0;
  if (k < 0 || k >= cols)
    throw std::invalid_argument("kth_smallest_per_row: k = " + std::to_string(k) + " outside [0, " +
                                std::to_string(cols) + ")");
  std::vector<std::uint64_t> row(static_cast<std::size_t>(cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    std::copy_n(keys.begin() + r * cols, cols, row.begin());
    std::nth_element(row.begin(), row.begin() + k, row.end());
    out[r] = row[static_cast<std::size_t>(k)];
  }
}

std::uint64_t metric_key(float metric, std::int64_t global_column) {
  return static_cast<std::uint64_t>(std::bit_cast<std::uint32_t>(metric)) << 32 |
         static_cast<std::uint32_t>(global_column);
}

}  // namespace loom::compress
