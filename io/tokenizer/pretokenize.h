// GPT-2 pre-tokenisation: splits UTF-8 text into the pieces that
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// matches, with the character classes of JavaScript's Unicode regexes (the `u` flag), as
// used by the gpt-3-encoder reference: \s is ECMAScript WhiteSpace + LineTerminator, \p{L}
// and \p{N} are the Unicode general categories L* and N* (from ICU). A hand-written
// matcher: std::regex has no \p{..} and would be far slower. Checked against node 20 over
// every code point: the classes agree except on characters that Unicode assigned after the
// version of the system ICU (Debian 12: ICU 72 = Unicode 15.0), which ICU still calls
// unassigned ("other").
//
// Bytes that are not valid UTF-8 count as one character of the "other" class each, so any
// byte string is split into pieces that concatenate back to it.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace loom::io {

enum class CharClass : std::uint8_t { kLetter, kNumber, kSpace, kOther };

// Class of one code point under the JavaScript regex semantics above.
CharClass classify_code_point(char32_t code_point);

// End (byte offset, exclusive) of the pre-token that starts at byte `pos` < text.size().
std::size_t next_pretoken_end(std::string_view text, std::size_t pos);

// All pre-tokens of `text`, in order; they tile `text` exactly.
std::vector<std::string_view> pretokenize(std::string_view text);

}  // namespace loom::io
