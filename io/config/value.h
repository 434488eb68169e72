// Text ⇄ typed value for declared settings: the one parser behind command-line overrides,
// YAML scalars and Schema::override_default, and the one formatter behind the banner,
// --help and the generated docs.
//
// Pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "io/config/schema.h"

namespace loom::config {

// Thrown by the parsers below. what() is the tail of a message, written to follow
// `setting "KEY" `: e.g. `expects an int, got "3.5"` or `must be >= 1, got 0`.
class ValueError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Parses `text` as the setting's type and checks choices and bounds.
//   int:      decimal, optional sign ("3.5", "1e3" and "12abc" are rejected)
//   float:    decimal or exponent form ("3e-4", "0.5", "-1"); nan and inf are rejected
//   bool:     true/false, yes/no, on/off, 1/0 (any case)
//   string:   the text as is; path: the text as is, must not be empty
//   enum:     one of the declared choices (exact)
//   int list: "1,2,3" or "[1, 2, 3]"; "" and "[]" are the empty list
Value parse_value(const Setting& setting, std::string_view text);

// Parses the elements of a YAML sequence for an int-list setting.
Value parse_int_list(const Setting& setting, const std::vector<std::string>& items);

// Checks the declared bounds of int, float and int-list values; throws ValueError.
void check_bounds(const Setting& setting, const Value& value);

// The value as a user would write it: 3, 0.0003, true, runs/x, [1, 2, 3].
// Floats use the shortest text that reads back to the same double.
std::string format_value(const Value& value);

// "an int", "a float", "a bool (true/false)", "one of {adamw, sgd}", "a list of ints".
std::string expected_form(const Setting& setting);

// "x >= 1", "0 <= x <= 1"; "" without bounds.
std::string format_bounds(const Bounds& bounds);

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `unknown` by edit_distance (the first of equals) and its
// distance; an empty name and SIZE_MAX when there are no candidates. For "did you mean".
struct Nearest {
  std::string name;
  std::size_t distance = static_cast<std::size_t>(-1);
};
template <typename Range>
Nearest nearest(std::string_view unknown, const Range& candidates) {
  Nearest best;
  for (const auto& candidate : candidates) {
    const std::string_view name(candidate);
    if (const std::size_t d = edit_distance(unknown, name); d < best.distance) best = {std::string(name), d};
  }
  return best;
}

}  // namespace loom::config
