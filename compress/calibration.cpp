#include "compress/calibration.h"

#include <stdexcept>
#include <string>

#include "core/mix64.h"
#include "io/data/token_store.h"

namespace loom::compress {

CalibrationSet load_calibration(const std::filesystem::path& store_path, std::int64_t samples, std::int64_t seq_len,
                                std::uint64_t seed, std::int64_t vocab_size, int dp_rank, int dp_size) {
  const auto store = io::TokenStore::open(store_path);
  std::vector<std::int32_t> text;
  text.reserve(static_cast<std::size_t>(store->n_tokens()));
  for (std::int64_t d = 0; d < store->n_documents(); ++d) {
    const auto doc = store->document(d);
    text.insert(text.end(), doc.tokens.begin(), doc.tokens.end());
  }
  const std::int64_t n = static_cast<std::int64_t>(text.size());
  if (n < seq_len) {
    throw std::runtime_error(store_path.string() + ": " + std::to_string(n) + " tokens, fewer than one calibration "
                             "window of " + std::to_string(seq_len));
  }
  if (samples < dp_size) {
    throw std::runtime_error("calibration.samples = " + std::to_string(samples) + " is fewer than the " +
                             std::to_string(dp_size) + " data-parallel ranks");
  }
  CalibrationSet set;
  set.total = samples, set.seq_len = seq_len, set.store_tokens = n;
  set.first = samples * dp_rank / dp_size;
  set.count = samples * (dp_rank + 1) / dp_size - set.first;
  set.tokens.resize(static_cast<std::size_t>(set.count * seq_len));
  const std::uint64_t starts = static_cast<std::uint64_t>(n - seq_len + 1);
  for (std::int64_t i = 0; i < set.count; ++i) {
    const std::uint64_t g = static_cast<std::uint64_t>(set.first + i);
    const std::int64_t start = static_cast<std::int64_t>(mix64(seed ^ mix64(g + 0x5eed)) % starts);
    for (std::int64_t t = 0; t < seq_len; ++t) {
      const std::int32_t id = text[static_cast<std::size_t>(start + t)];
      if (id < 0 || id >= vocab_size) {
        throw std::runtime_error(store_path.string() + ": token id " + std::to_string(id) + " at position " +
                                 std::to_string(start + t) + " is outside the model's vocabulary of " +
                                 std::to_string(vocab_size));
      }
      set.tokens[static_cast<std::size_t>(i * seq_len + t)] = id;
    }
  }
  return set;
}

}  // namespace loom::compress
