// Rule-based verifiers for tasks with checkable answers (arithmetic.h), used as PPO/GRPO
// rewards and evaluation scores. Each returns a score in [0, 1]; today every score is 0 or 1.
//
// first_integer(response): the first integer the response holds, as canonical decimal
//   (no '+', no leading zeros, "-0" → "0"): the first run of ASCII digits, with a '-' in
//   front when the '-' directly precedes the digits and follows no letter or digit
//   ("-7" → -7, "3-4" → 3). A run followed by '.' and a digit is a decimal, not an integer,
//   so "42.5" holds none and "42." holds 42. Digits are not joined across spaces or commas:
//   "4 2" → 4, "1,000" → 1. Empty when there is no integer.
//
// exact_match(response, answer): the answer is trimmed of whitespace. When it is an integer
//   ("-?[0-9]+"), the score is 1 iff first_integer(response) equals it numerically, so
//   " 42\n", "42." and "A: 42" match "42". Otherwise the response's first line, trimmed,
//   must equal the answer exactly.
//
// format_ok(response, answer): 1 iff an answer stands alone on the first line, written the
//   way `answer` is: after leading spaces/tabs the first line is exactly "-?[0-9]+" or, when
//   the answer is written digit by digit ("4 2", arithmetic.h's spaced_digits), exactly
//   "-?[0-9]( [0-9])*" (trailing spaces, tabs and '\r' allowed), and everything after the
//   first '\n' is whitespace. For answer "42": " 42\n" and "-7" pass; "42.", "4 2",
//   "The answer is 42", "\n42" and "42\nQ: 1 + 1 = ?" fail. For answer "4 2": " 4 2\n" and
//   "-1 3" pass; "42" and "4  2" fail. The value is not checked (exact_match does that).
//
// Thread safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace loom::io {

std::optional<std::string> first_integer(std::string_view response);

double exact_match(std::string_view response, std::string_view answer);

double format_ok(std::string_view response, std::string_view answer);

}  // namespace loom::io
