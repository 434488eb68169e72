// Reading loom-eval result files (docs/eval.md, format "loom-eval-results/1") and comparing
// them metric by metric against a baseline: the numbers behind `loom-eval compare`'s table,
// gate (eval/compare_gate.h) and plot (eval/plot.h).
//
// A comparison has one row per task/metric of the baseline (optionally restricted) and, per
// later file, its value, the delta against the baseline and a two-sided z test of that delta
// (z = delta / sqrt(se_base² + se_new²), p = erfc(|z| / √2)), the usual test for two
// independent estimates with known standard errors (lm-evaluation-harness, OpenCompass).
// NaN and ±inf values are carried through: they print as "nan"/"inf" and give no p-value.
//
// Errors: load_result_file throws std::runtime_error naming the file and the JSON key.
// Thread safety: reentrant; nothing is shared.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace loom::eval {

struct MetricValue {
  double value = 0.0;                  // NaN when the file holds null
  std::optional<double> standard_error;  // absent when the file holds null or nothing
  bool higher_is_better = true;
};

struct ResultFile {
  std::filesystem::path file;
  std::string model_path;
  std::string model_kind;   // "checkpoint" or "weights"
  std::int64_t step = -1;   // -1: unknown
  std::string date;         // run.date as written (UTC ISO-8601), "" when absent
  std::map<std::string, MetricValue> metrics;  // "task/metric" → value
};

// Throws std::runtime_error "<file>: <key>: expected …" for a missing file, bad JSON, a wrong
// format tag or a malformed field.
ResultFile load_result_file(const std::filesystem::path& file);

// Seconds since 1970-01-01 UTC of an ISO-8601 date such as 2026-11-21T19:30:00Z (fractional
// seconds and a ±HH:MM offset are accepted). Throws std::invalid_argument on another form.
double parse_iso8601_seconds(const std::string& date);

// The delta of one later file's metric against the baseline's.
struct MetricDelta {
  bool present = false;               // false: the later file lacks the metric
  double value = 0.0;
  std::optional<double> standard_error;
  double delta = 0.0;                 // value - baseline
  std::optional<double> p_value;      // absent when a standard error is missing or a value is not finite
  bool significant = false;           // p < significance_level
  int direction = 0;                  // +1 better, -1 worse, 0 same or not comparable
};

struct ComparisonRow {
  std::string key;                    // "task/metric"
  MetricValue baseline;
  std::vector<MetricDelta> deltas;    // one per later file, in command-line order
};

struct Comparison {
  std::vector<ResultFile> files;      // files[0] is the baseline
  std::vector<ComparisonRow> rows;
  // Metrics of later files that the baseline lacks: key → indices of the files holding it.
  std::map<std::string, std::vector<std::size_t>> not_in_baseline;
};

inline constexpr double significance_level = 0.05;

// Two-sided p-value of delta against a normal with the combined standard error; absent when
// either standard error is missing or a number is not finite. With both errors zero, a zero
// delta gives 1 and any other 0 (both values are exact).
std::optional<double> two_sided_p_value(double delta, std::optional<double> se_a, std::optional<double> se_b);

// Whether `key` ("task/metric") is selected by `filters`: empty selects all; an entry selects
// its exact task/metric, or every metric of a task when it names just the task.
bool metric_selected(const std::string& key, const std::vector<std::string>& filters);

// Builds the comparison of files[1..] against files[0] (at least two files), restricted to
// `filters` (metric_selected). Throws std::invalid_argument when a filter matches no file.
Comparison compare_results(std::vector<ResultFile> files, const std::vector<std::string>& filters);

// The markdown report: header lines naming each file (model path, step, date) and the table.
std::string render_markdown(const Comparison& comparison);

// The letter naming file `index` in the report: A (the baseline), B, …, Z, then F27, F28, ….
std::string file_label(std::size_t index);

// Number formatting shared by the table and the gate messages: %.4g, "nan", "inf", "-inf".
std::string format_number(double value);

}  // namespace loom::eval
