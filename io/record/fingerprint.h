// Content fingerprints for run records: which data file, tokenizer or checkpoint a run
// used, as a 64-bit XXH64 hash (seed 0, the same value `xxhsum -H64` prints) in 16 lower-
// case hex digits. Fast enough to hash multi-GB token stores at startup (several GB/s);
// not a cryptographic hash.
//
// Pure functions and a small streaming hasher value; safe from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace loom::record {

// Streaming XXH64: update() any number of times, then digest().
class Xxh64 {
 public:
  explicit Xxh64(std::uint64_t seed = 0);
  void update(const void* data, std::size_t size);
  std::uint64_t digest() const;

 private:
  std::uint64_t seed_;
  std::array<std::uint64_t, 4> lanes_;
  std::array<unsigned char, 32> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;
};

std::uint64_t xxh64(std::string_view bytes, std::uint64_t seed = 0);

// 16 lower-case hex digits.
std::string hex64(std::uint64_t value);

// XXH64 of a file's bytes as hex64. Throws std::runtime_error naming the file when it
// cannot be opened or read.
std::string file_fingerprint(const std::filesystem::path& file);

}  // namespace loom::record
