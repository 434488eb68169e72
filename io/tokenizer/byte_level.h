// GPT-2's byte ↔ unicode map: every byte 0..255 is shown as one printable code point so
// that vocabularies (encoder.json, tokenizer.json) can be written as JSON text. Printable
// Latin-1 bytes map to themselves; the other 68 bytes map to U+0100.. in byte order
// (space 0x20 → 'Ġ' U+0120, newline 0x0A → 'Ċ' U+010A).
//
// Thread safety: pure functions over constant tables.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace loom::io::byte_level {

// The code point GPT-2 uses to display `byte`.
char32_t byte_to_code_point(std::uint8_t byte);

// Position of `byte` in GPT-2's byte order, which is also its id in GPT-2's vocabulary
// (printable bytes first: '!' is 0, ..., then the remapped ones: 0x00 is 188).
std::int32_t byte_rank(std::uint8_t byte);
// Inverse of byte_rank.
std::uint8_t byte_at_rank(std::int32_t rank);

// Raw bytes → the UTF-8 text of their displayed code points ("hi there" → "hiĠthere").
std::string encode(std::string_view raw_bytes);

// Displayed UTF-8 text → raw bytes; nullopt when `shown` contains invalid UTF-8 or a code
// point that is not the image of some byte.
std::optional<std::string> decode(std::string_view shown);

// Appends the UTF-8 encoding of `code_point` to `out`.
void append_utf8(char32_t code_point, std::string& out);

}  // namespace loom::io::byte_level
