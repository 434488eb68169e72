// Internal helpers shared by losses.cpp and rl.cpp: numerically stable logistic functions in
// f64 and the argument checks whose messages name the offending argument. Not part of the
// public API; header-only, pure functions, thread-safe.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

namespace loom::align::detail {

// σ(x) without overflow for large |x|.
inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// log σ(x) = -softplus(-x), accurate for large |x| (log1p keeps small tails exact).
inline double log_sigmoid(double x) { return std::fmin(x, 0.0) - std::log1p(std::exp(-std::fabs(x))); }

template <typename T>
void require_size(const char* function, const char* name, std::span<T> s, std::size_t expected,
                  const char* expected_what) {
  if (s.size() != expected)
    throw std::invalid_argument(std::string(function) + ": " + name + " has " + std::to_string(s.size()) +
                                " elements, expected " + std::to_string(expected) + " (" + expected_what + ")");
}

inline void require_positive(const char* function, const char* name, double value) {
  if (!(value > 0))
    throw std::invalid_argument(std::string(function) + ": " + name + " must be > 0, got " + std::to_string(value));
}

inline void require_nonempty(const char* function, const char* name, std::size_t size) {
  if (size == 0) throw std::invalid_argument(std::string(function) + ": " + name + " is empty, expected at least one element");
}

}  // namespace loom::align::detail
