// Element-wise comparison of loom's f32 results with golden f64 values:
//   |actual - expected| <= atol + rtol * |expected|   for every element (NaN never passes).
// The result names the worst element (largest error relative to its allowance) so a
// failure message says which tensor, which element and by how much. Test-only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace loom::reference {

struct Tolerance {
  double atol = 0.0;
  double rtol = 0.0;
};

struct Comparison {
  std::string name;
  std::size_t size = 0;
  std::size_t failures = 0;    // elements outside the tolerance
  std::size_t worst_index = 0;
  double worst_actual = 0.0, worst_expected = 0.0;
  double worst_ratio = 0.0;    // |a-b| / (atol + rtol|b|) at the worst element; <= 1 passes
  double max_abs_error = 0.0;
  double max_rel_error = 0.0;  // |a-b| / (|b| + atol), over all elements

  bool ok() const { return failures == 0 && size > 0; }
  std::string describe() const {
    std::ostringstream out;
    out << name << ": " << (ok() ? "ok" : "MISMATCH") << ", " << failures << "/" << size
        << " outside tolerance; worst element " << worst_index << ": loom " << worst_actual << " vs reference "
        << worst_expected << " (" << worst_ratio << "x the allowance); max abs error " << max_abs_error
        << ", max rel error " << max_rel_error;
    return out.str();
  }
};

template <typename T>
Comparison compare_values(const std::string& name, const T* actual, const std::vector<double>& expected,
                          Tolerance tol) {
  Comparison c;
  c.name = name;
  c.size = expected.size();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double a = static_cast<double>(actual[i]);
    const double b = expected[i];
    const double error = std::fabs(a - b);
    const double allowance = tol.atol + tol.rtol * std::fabs(b);
    const double ratio = allowance > 0.0 ? error / allowance : (error > 0.0 ? INFINITY : 0.0);
    const bool bad = !(error <= allowance);  // NaN compares false: counted as a failure
    if (bad) ++c.failures;
    if (bad && std::isnan(error)) {
      if (!std::isnan(c.worst_ratio)) {
        c.worst_ratio = NAN;
        c.worst_index = i;
        c.worst_actual = a;
        c.worst_expected = b;
      }
    } else if (ratio > c.worst_ratio) {
      c.worst_ratio = ratio;
      c.worst_index = i;
      c.worst_actual = a;
      c.worst_expected = b;
    }
    if (error > c.max_abs_error) c.max_abs_error = error;
    const double rel = error / (std::fabs(b) + std::max(tol.atol, 1e-30));
    if (rel > c.max_rel_error) c.max_rel_error = rel;
  }
  return c;
}

}  // namespace loom::reference
