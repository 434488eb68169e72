#include "io/tokenizer/pretokenize.h"

#include <unicode/uchar.h>

#include <array>

#include "io/tokenizer/utf8.h"

namespace loom::io {
namespace {

// ECMAScript \s: WhiteSpace (TAB, VT, FF, ZWNBSP U+FEFF, any Zs) and LineTerminator (LF, CR,
// U+2028, U+2029). Unlike Unicode White_Space it excludes U+0085 and includes U+FEFF.
bool is_js_space(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0xFEFF:
    case 0x2028:
    case 0x2029:
      return true;
    default:
      return cp > 0x7F && u_charType(static_cast<UChar32>(cp)) == U_SPACE_SEPARATOR;
  }
}

CharClass classify_slow(char32_t cp) {
  if (is_js_space(cp)) return CharClass::kSpace;
  const std::uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(cp));
  if (mask & U_GC_L_MASK) return CharClass::kLetter;
  if (mask & U_GC_N_MASK) return CharClass::kNumber;
  return CharClass::kOther;
}

const std::array<CharClass, 128>& ascii_classes() {
  static const std::array<CharClass, 128> table = [] {
    std::array<CharClass, 128> t{};
    for (char32_t c = 0; c < 128; ++c) t[c] = classify_slow(c);
    return t;
  }();
  return table;
}

struct Unit {
  CharClass cls;
  std::size_t size;
};

Unit unit_at(std::string_view text, std::size_t pos) {
  const auto lead = static_cast<std::uint8_t>(text[pos]);
  if (lead < 0x80) return {ascii_classes()[lead], 1};
  const utf8::CodePoint cp = utf8::decode(text, pos);
  if (!cp.valid) return {CharClass::kOther, 1};
  return {classify_slow(cp.value), cp.size};
}

std::size_t run_end(std::string_view text, std::size_t pos, CharClass cls) {
  while (pos < text.size()) {
    const Unit u = unit_at(text, pos);
    if (u.cls != cls) break;
    pos += u.size;
  }
  return pos;
}

// Length of a contraction ('s 't 're 've 'm 'll 'd) at `pos`, or 0.
std::size_t contraction_length(std::string_view text, std::size_t pos) {
  if (text[pos] != '\'' || pos + 1 >= text.size()) return 0;
  const char a = text[pos + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 >= text.size()) return 0;
  const char b = text[pos + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

}  // namespace

CharClass classify_code_point(char32_t code_point) {
  return code_point < 128 ? ascii_classes()[code_point] : classify_slow(code_point);
}

std::size_t next_pretoken_end(std::string_view text, std::size_t pos) {
  if (const std::size_t n = contraction_length(text, pos)) return pos + n;
  const Unit first = unit_at(text, pos);
  // ` ?\p{L}+`, ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+`: a single ASCII space may lead a run.
  if (text[pos] == ' ' && pos + 1 < text.size()) {
    const Unit second = unit_at(text, pos + 1);
    if (second.cls != CharClass::kSpace) return run_end(text, pos + 1, second.cls);
  }
  if (first.cls != CharClass::kSpace) return run_end(text, pos, first.cls);
  // `\s+(?!\S)|\s+`: a whitespace run keeps its last character for the next piece when a
  // non-space follows, unless that character is the whole run.
  std::size_t end = pos;
  std::size_t last_start = pos;
  std::size_t count = 0;
  while (end < text.size()) {
    const Unit u = unit_at(text, end);
    if (u.cls != CharClass::kSpace) break;
    last_start = end;
    end += u.size;
    ++count;
  }
  if (end == text.size() || count == 1) return end;
  return last_start;
}

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t end = next_pretoken_end(text, pos);
    pieces.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return pieces;
}

}  // namespace loom::io
