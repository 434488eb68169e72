// The regression gate of `loom-eval compare --gate gate.yaml`: per-metric limits on how far a
// later result may fall behind the baseline, in the metric's worse direction (lower for
// higher_is_better metrics, higher for the others). Nightly jobs compare last night's results
// (baseline) with tonight's and fail the job when the gate reports a violation.
//
//   # configs/eval/gate.yaml
//   default: {max_regression: 0.02}                       # optional; gates every metric
//   metrics:
//     wordnet-definition-mc/acc: {max_regression: 0.02}   # absolute, in the metric's units
//     brown-heldout/word_perplexity: {max_regression: 5%} # relative to |baseline|
//   require_significance: false   # true: a regression fails only when p < 0.05
//
// Violations: a regression larger than allowed; a NaN value; a metric named under `metrics`
// that a later file lacks. With require_significance a regression without a p-value (a
// standard error missing) still fails, since nothing shows it to be noise. Metrics gated only
// by `default` that a later file lacks, and baselines that are not finite, are noted, not
// failed.
//
// Errors: load_gate throws std::runtime_error "<file>:<line>: …" (unknown keys, bad values);
// check_gate throws std::invalid_argument for a gate metric no result file has.
// Thread safety: reentrant.
#pragma once

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "eval/compare_results.h"

namespace loom::eval {

struct GateThreshold {
  double amount = 0.0;    // absolute units, or a fraction of |baseline| when relative
  bool relative = false;  // written as a percentage ("5%")
  int line = 0;           // in the gate file, for messages

  double allowed(double baseline) const { return relative ? amount * std::abs(baseline) : amount; }
  std::string describe() const;  // "0.02" or "5% of the baseline"
};

struct Gate {
  std::filesystem::path file;
  std::optional<GateThreshold> default_threshold;
  std::map<std::string, GateThreshold> metrics;  // "task/metric" → its own threshold
  bool require_significance = false;
};

Gate load_gate(const std::filesystem::path& file);

struct GateViolation {
  std::string key;              // "task/metric"
  std::size_t file_index = 0;   // into Comparison::files
  double baseline = 0.0;
  double value = 0.0;
  double regression = 0.0;      // in the worse direction; positive is worse
  double allowed = 0.0;
  GateThreshold threshold;
  std::optional<double> p_value;
  std::string reason;           // "regression", "missing" or "not a number"
};

struct GateReport {
  std::vector<GateViolation> violations;
  std::vector<std::string> notes;  // what was not checked, or passed only by significance
  int checked = 0;                 // (metric, later file) pairs compared against a threshold

  bool passed() const { return violations.empty(); }
};

// Checks every later file of the comparison against its baseline. `filters` (the --metrics
// selection, metric_selected) restricts the gate like the table.
GateReport check_gate(const Comparison& comparison, const Gate& gate, const std::vector<std::string>& filters);

// Human-readable lines: one per violation, the notes, and a PASSED/FAILED summary.
std::string render_gate_report(const Comparison& comparison, const Gate& gate, const GateReport& report);

}  // namespace loom::eval
