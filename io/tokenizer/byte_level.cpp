#include "io/tokenizer/byte_level.h"

#include <array>

#include "io/tokenizer/utf8.h"

namespace loom::io::byte_level {
namespace {

bool shown_as_itself(int byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
         (byte >= 0xAE && byte <= 0xFF);
}

struct Tables {
  std::array<char32_t, 256> code_point{};
  std::array<std::int32_t, 256> rank{};
  std::array<std::uint8_t, 256> byte_of_rank{};
  // Shown code points all lie below U+0144, so the inverse fits a small table.
  std::array<std::int16_t, 0x144> byte_of_code_point{};

  Tables() {
    byte_of_code_point.fill(-1);
    int next_rank = 0;
    for (int b = 0; b < 256; ++b) {
      if (shown_as_itself(b)) {
        code_point[b] = static_cast<char32_t>(b);
        rank[b] = next_rank++;
      }
    }
    int remapped = 0;
    for (int b = 0; b < 256; ++b) {
      if (!shown_as_itself(b)) {
        code_point[b] = static_cast<char32_t>(256 + remapped++);
        rank[b] = next_rank++;
      }
    }
    for (int b = 0; b < 256; ++b) {
      byte_of_rank[rank[b]] = static_cast<std::uint8_t>(b);
      byte_of_code_point[code_point[b]] = static_cast<std::int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables instance;
  return instance;
}

}  // namespace

char32_t byte_to_code_point(std::uint8_t byte) { return tables().code_point[byte]; }

std::int32_t byte_rank(std::uint8_t byte) { return tables().rank[byte]; }

std::uint8_t byte_at_rank(std::int32_t rank) { return tables().byte_of_rank.at(rank); }

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode(std::string_view raw_bytes) {
  const Tables& t = tables();
  std::string out;
  out.reserve(raw_bytes.size() * 2);
  for (const char c : raw_bytes) append_utf8(t.code_point[static_cast<std::uint8_t>(c)], out);
  return out;
}

std::optional<std::string> decode(std::string_view shown) {
  const Tables& t = tables();
  std::string out;
  out.reserve(shown.size());
  for (std::size_t pos = 0; pos < shown.size();) {
    const utf8::CodePoint cp = utf8::decode(shown, pos);
    if (!cp.valid || cp.value >= t.byte_of_code_point.size()) return std::nullopt;
    const std::int16_t byte = t.byte_of_code_point[cp.value];
    if (byte < 0) return std::nullopt;
    out.push_back(static_cast<char>(byte));
    pos += cp.size;
  }
  return out;
}

}  // namespace loom::io::byte_level
