#include "eval/compare_gate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include <yaml-cpp/yaml.h>

namespace loom::eval {
namespace fs = std::filesystem;

namespace {

class GateParser {
 public:
  explicit GateParser(const fs::path& file) : file_(file) {}

  Gate parse() {
    YAML::Node root;
    try {
      root = YAML::LoadFile(file_.string());
    } catch (const YAML::BadFile&) {
      throw std::runtime_error(file_.string() + ": cannot open the gate file (does it exist?)");
    } catch (const YAML::ParserException& error) {
      throw std::runtime_error(where(error.mark.line + 1) + ": not valid YAML: " + error.msg);
    }
    Gate gate;
    gate.file = file_;
    if (root.IsNull()) return gate;
    if (!root.IsMap())
      throw std::runtime_error(where(root.Mark().line + 1) +
                               ": expected a mapping with default, metrics and require_significance");
    for (auto it = root.begin(); it != root.end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      const int line = key.Mark().line + 1;
      const std::string name = key.Scalar();
      if (name == "default") {
        gate.default_threshold = threshold(value, "default", line);
      } else if (name == "metrics") {
        read_metrics(value, line, gate);
      } else if (name == "require_significance") {
        gate.require_significance = boolean(value, name, line);
      } else {
        throw std::runtime_error(where(line) + ": unknown key '" + name +
                                 "' (expected default, metrics or require_significance)");
      }
    }
    return gate;
  }

 private:
  std::string where(int line) const { return file_.string() + ":" + std::to_string(line); }

  static int line_of(const YAML::Node& node, int fallback) {
    const int line = node.Mark().line;
    return line >= 0 ? line + 1 : fallback;
  }

  void read_metrics(const YAML::Node& metrics, int line, Gate& gate) const {
    if (metrics.IsNull()) return;
    if (!metrics.IsMap())
      throw std::runtime_error(where(line) + ": metrics: expected a mapping of task/metric: {max_regression: …}");
    for (auto it = metrics.begin(); it != metrics.end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      const int key_line = key.Mark().line + 1;
      const std::string name = key.Scalar();
      const std::size_t slash = name.find('/');
      if (slash == std::string::npos || slash == 0 || slash + 1 == name.size())
        throw std::runtime_error(where(key_line) + ": metrics: '" + name +
                                 "' is not a task/metric name like wordnet-definition-mc/acc");
      if (gate.metrics.count(name)) throw std::runtime_error(where(key_line) + ": metrics: '" + name + "' given twice");
      gate.metrics[name] = threshold(value, "metrics." + name, key_line);
    }
  }

  GateThreshold threshold(const YAML::Node& node, const std::string& key, int line) const {
    if (!node.IsMap())
      throw std::runtime_error(where(line) + ": " + key + ": expected {max_regression: NUMBER or PERCENT%}");
    std::optional<GateThreshold> out;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node field = it->first;
      const int field_line = line_of(field, line);
      if (field.Scalar() != "max_regression")
        throw std::runtime_error(where(field_line) + ": " + key + ": unknown key '" + field.Scalar() +
                                 "' (expected max_regression)");
      out = amount(it->second, key + ".max_regression", field_line);
    }
    if (!out) throw std::runtime_error(where(line) + ": " + key + ": max_regression is missing");
    return *out;
  }

  GateThreshold amount(const YAML::Node& node, const std::string& key, int line) const {
    const std::string expected = ": expected a non-negative number (absolute) or a percentage like 5% (relative)";
    if (!node.IsScalar()) throw std::runtime_error(where(line) + ": " + key + expected);
    std::string text = node.Scalar();
    GateThreshold out;
    out.line = line;
    if (!text.empty() && text.back() == '%') {
      out.relative = true;
      text.pop_back();
    }
    std::size_t used = 0;
    double number = 0.0;
    try {
      number = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (text.empty() || used != text.size() || !std::isfinite(number) || number < 0)
      throw std::runtime_error(where(line) + ": " + key + expected + ", got '" + node.Scalar() + "'");
    out.amount = out.relative ? number / 100.0 : number;
    return out;
  }

  bool boolean(const YAML::Node& node, const std::string& key, int line) const {
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value))
      throw std::runtime_error(where(line) + ": " + key + ": expected true or false, got '" +
                               (node.IsScalar() ? node.Scalar() : std::string("a non-scalar")) + "'");
    return value;
  }

  fs::path file_;
};

std::string label(const Comparison& comparison, std::size_t index) {
  return file_label(index) + " (" + comparison.files[index].file.string() + ")";
}

std::string percent_of(double part, double whole) {
  if (whole == 0.0 || !std::isfinite(part)) return "";
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, " (%.3g%%)", 100.0 * part / std::abs(whole));
  return buffer;
}

}  // namespace

std::string GateThreshold::describe() const {
  if (!relative) return format_number(amount);
  return format_number(amount * 100.0) + "% of the baseline";
}

Gate load_gate(const fs::path& file) { return GateParser(file).parse(); }

GateReport check_gate(const Comparison& comparison, const Gate& gate, const std::vector<std::string>& filters) {
  GateReport report;
  const ResultFile& baseline = comparison.files.front();
  for (const auto& [key, threshold] : gate.metrics) {
    if (!metric_selected(key, filters)) continue;
    const bool anywhere = std::any_of(comparison.files.begin(), comparison.files.end(),
                                      [&](const ResultFile& file) { return file.metrics.count(key) > 0; });
    if (!anywhere)
      throw std::invalid_argument(gate.file.string() + ":" + std::to_string(threshold.line) + ": metrics: '" + key +
                                  "' is in no result file (names are task/metric as in the results' tasks.*.metrics)");
    if (!baseline.metrics.count(key))
      report.notes.push_back(key + ": not in the baseline " + label(comparison, 0) + "; not checked");
  }
  for (const ComparisonRow& row : comparison.rows) {
    const auto own = gate.metrics.find(row.key);
    const bool explicit_gate = own != gate.metrics.end();
    if (!explicit_gate && !gate.default_threshold) continue;
    const GateThreshold threshold = explicit_gate ? own->second : *gate.default_threshold;
    for (std::size_t i = 0; i < row.deltas.size(); ++i) {
      const MetricDelta& delta = row.deltas[i];
      const std::size_t file_index = i + 1;
      GateViolation violation{row.key, file_index, row.baseline.value, delta.value, 0.0,
                              threshold.allowed(row.baseline.value), threshold, delta.p_value, "regression"};
      if (!delta.present) {
        if (explicit_gate) {
          violation.reason = "missing";
          report.violations.push_back(violation);
        } else {
          report.notes.push_back(row.key + ": not in " + label(comparison, file_index) + "; not checked");
        }
        continue;
      }
      if (std::isnan(row.baseline.value)) {
        report.notes.push_back(row.key + ": the baseline is nan; " + label(comparison, file_index) + " not checked");
        continue;
      }
      ++report.checked;
      if (std::isnan(delta.value)) {
        violation.reason = "not a number";
        report.violations.push_back(violation);
        continue;
      }
      violation.regression = row.baseline.higher_is_better ? row.baseline.value - delta.value
                                                           : delta.value - row.baseline.value;
      if (!(violation.regression > violation.allowed)) continue;
      if (gate.require_significance && delta.p_value && !delta.significant) {
        report.notes.push_back(row.key + ": " + label(comparison, file_index) + " regressed by " +
                               format_number(violation.regression) + ", past the allowed " +
                               format_number(violation.allowed) + ", but not significantly (p " +
                               format_number(*delta.p_value) + "); passed");
        continue;
      }
      report.violations.push_back(violation);
    }
  }
  return report;
}

std::string render_gate_report(const Comparison& comparison, const Gate& gate, const GateReport& report) {
  std::ostringstream out;
  for (const GateViolation& v : report.violations) {
    out << "GATE VIOLATION " << v.key << ": " << label(comparison, v.file_index) << " vs baseline "
        << label(comparison, 0) << ": ";
    if (v.reason == "missing") {
      out << "the metric is missing (the gate names it at " << gate.file.string() << ":" << v.threshold.line << ")\n";
      continue;
    }
    out << "baseline " << format_number(v.baseline) << ", new " << format_number(v.value);
    if (v.reason == "not a number") {
      out << ", the new value is not a number\n";
      continue;
    }
    out << ", regression " << format_number(v.regression) << percent_of(v.regression, v.baseline) << " > allowed "
        << format_number(v.allowed) << " (" << v.threshold.describe() << ", " << gate.file.string() << ":"
        << v.threshold.line << ")";
    out << ", p " << (v.p_value ? format_number(*v.p_value) : std::string("n/a")) << '\n';
  }
  for (const std::string& note : report.notes) out << "gate note: " << note << '\n';
  out << "gate " << (report.passed() ? "PASSED" : "FAILED") << ": " << report.violations.size()
      << " violation(s), " << report.checked << " metric comparison(s) checked against " << gate.file.string()
      << (gate.require_significance ? " (only significant regressions fail)" : "") << '\n';
  return out.str();
}

}  // namespace loom::eval
