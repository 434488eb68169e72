// Strict UTF-8 decoding of one code point, shared by the pre-tokenizer and the byte map.
// Invalid input (stray continuation bytes, overlong forms, surrogates, values past
// U+10FFFF, truncated sequences) is reported as a one-byte unit so callers can carry the
// raw byte through unchanged: byte-level BPE must round-trip any byte string.
//
// Thread safety: pure inline functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace loom::io::utf8 {

struct CodePoint {
  char32_t value;     // the code point; for an invalid unit, the raw byte value
  std::uint8_t size;  // bytes consumed, 1..4
  bool valid;
};

inline CodePoint decode(std::string_view text, std::size_t pos) {
  const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(text[i]); };
  const std::uint8_t lead = byte(pos);
  if (lead < 0x80) return {lead, 1, true};
  const CodePoint invalid{lead, 1, false};
  std::size_t size = 0;
  char32_t value = 0;
  char32_t min_value = 0;
  if ((lead & 0xE0) == 0xC0) {
    size = 2, value = lead & 0x1F, min_value = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    size = 3, value = lead & 0x0F, min_value = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    size = 4, value = lead & 0x07, min_value = 0x10000;
  } else {
    return invalid;
  }
  if (pos + size > text.size()) return invalid;
  for (std::size_t i = 1; i < size; ++i) {
    const std::uint8_t next = byte(pos + i);
    if ((next & 0xC0) != 0x80) return invalid;
    value = (value << 6) | (next & 0x3F);
  }
  if (value < min_value || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
    return invalid;
  }
  return {value, static_cast<std::uint8_t>(size), true};
}

}  // namespace loom::io::utf8
