// Stable 64-bit fingerprints for data files and token stores: streaming XXH64 (seed 0, the
// one hash loom uses everywhere, io/record/fingerprint.h) over bytes, so a fingerprint
// written today is reproduced by any later loom build, by `xxhsum -H64` and by Python's
// xxhash module (docs/data-format.md gives the definition). Not a cryptographic hash; it detects
// accidental change (a flipped bit, a different input file), not tampering.
//
// Thread safety: Fingerprint is a plain value; the free functions are reentrant.
#pragma once

#include "core/mix64.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "io/record/fingerprint.h"

namespace loom::io {

class Fingerprint {
 public:
  void add_bytes(const void* data, std::size_t size);
  void add(std::string_view text) { add_bytes(text.data(), text.size()); }
  // Adds the value's little-endian bytes (loom runs on little-endian machines only).
  void add_u64(std::uint64_t value) { add_bytes(&value, sizeof value); }
  template <typename T> void add_span(std::span<const T> values) {
    add_bytes(values.data(), values.size_bytes());
  }
  std::uint64_t value() const { return hash_.digest(); }

 private:
  record::Xxh64 hash_;
};

// Fingerprint of a file's bytes, or of a directory's regular files (sorted by name, each
// contributing its name and bytes). Throws std::runtime_error naming the path it cannot read.
std::uint64_t fingerprint_path(const std::filesystem::path& path);

// "0x" followed by 16 lower-case hex digits, and back (throws std::invalid_argument).
std::string fingerprint_hex(std::uint64_t value);
std::uint64_t parse_fingerprint_hex(std::string_view text);

// mix64 (core/mix64.h), for the io code that hashes and splits.
using loom::mix64;

}  // namespace loom::io
