#include "io/data/verifier.h"

namespace loom::io {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// "-?[0-9]+" exactly.
bool is_integer(std::string_view text) {
  if (!text.empty() && text.front() == '-') text.remove_prefix(1);
  if (text.empty()) return false;
  for (char c : text) {
    if (!is_digit(c)) return false;
  }
  return true;
}

// "-?[0-9]( [0-9])*": an integer written digit by digit (arithmetic.h's spaced_digits).
bool is_spaced_integer(std::string_view text) {
  if (!text.empty() && text.front() == '-') text.remove_prefix(1);
  if (text.empty() || text.size() % 2 == 0) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i % 2 == 0 ? !is_digit(text[i]) : text[i] != ' ') return false;
  }
  return true;
}

// Canonical form of an integer matching "-?[0-9]+".
std::string canonical(std::string_view integer) {
  const bool negative = integer.front() == '-';
  if (negative) integer.remove_prefix(1);
  while (integer.size() > 1 && integer.front() == '0') integer.remove_prefix(1);
  std::string out;
  if (negative && integer != "0") out += '-';
  out.append(integer);
  return out;
}

}  // namespace

std::optional<std::string> first_integer(std::string_view response) {
  std::size_t i = 0;
  while (i < response.size() && !is_digit(response[i])) ++i;
  if (i == response.size()) return std::nullopt;
  std::size_t begin = i;
  while (i < response.size() && is_digit(response[i])) ++i;
  const std::size_t end = i;
  if (end + 1 < response.size() && response[end] == '.' && is_digit(response[end + 1])) {
    // A decimal: the integer, if any, comes after its fractional digits.
    std::size_t next = end + 1;
    while (next < response.size() && is_digit(response[next])) ++next;
    return first_integer(response.substr(next));
  }
  if (begin > 0 && response[begin - 1] == '-' && (begin < 2 || !is_alnum(response[begin - 2]))) --begin;
  return canonical(response.substr(begin, end - begin));
}

double exact_match(std::string_view response, std::string_view answer) {
  answer = trim(answer);
  if (is_integer(answer)) {
    const auto found = first_integer(response);
    return found && *found == canonical(answer) ? 1.0 : 0.0;
  }
  const std::size_t newline = response.find('\n', response.find_first_not_of(" \t\r"));
  return trim(response.substr(0, newline)) == answer ? 1.0 : 0.0;
}

double format_ok(std::string_view response, std::string_view answer) {
  const std::size_t newline = response.find('\n');
  std::string_view first_line = response.substr(0, newline);
  while (!first_line.empty() && (first_line.front() == ' ' || first_line.front() == '\t')) first_line.remove_prefix(1);
  while (!first_line.empty() && (first_line.back() == ' ' || first_line.back() == '\t' || first_line.back() == '\r')) {
    first_line.remove_suffix(1);
  }
  // Digit by digit when the answer is written so (a one-digit answer is both forms).
  const bool spaced = is_spaced_integer(trim(answer)) && !is_integer(trim(answer));
  if (spaced ? !is_spaced_integer(first_line) : !is_integer(first_line)) return 0.0;
  if (newline == std::string_view::npos) return 1.0;
  return trim(response.substr(newline + 1)).empty() ? 1.0 : 0.0;
}

}  // namespace loom::io
