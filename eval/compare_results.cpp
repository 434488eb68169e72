#include "eval/compare_results.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace loom::eval {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* results_format = "loom-eval-results/1";

[[noreturn]] void fail(const fs::path& file, const std::string& key, const std::string& message) {
  throw std::runtime_error(file.string() + ": " + key + ": " + message);
}

std::string type_of(const json& value) {
  if (value.is_null()) return "null";
  if (value.is_string()) return "the string \"" + value.get<std::string>() + "\"";
  return std::string("a ") + value.type_name();
}

const json& member(const json& object, const char* name, const fs::path& file, const std::string& key) {
  if (!object.contains(name)) fail(file, key, "missing");
  return object.at(name);
}

const json& object_member(const json& object, const char* name, const fs::path& file, const std::string& key) {
  const json& value = member(object, name, file, key);
  if (!value.is_object()) fail(file, key, "expected an object, got " + type_of(value));
  return value;
}

// loom-eval writes non-finite numbers as null (JSON has none); hand-written files may spell them.
std::optional<double> number_or_special(const json& value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_null()) return std::numeric_limits<double>::quiet_NaN();
  if (value.is_string()) {
    std::string text = value.get<std::string>();
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
    if (text == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (text == "inf" || text == "+inf" || text == "infinity") return std::numeric_limits<double>::infinity();
    if (text == "-inf" || text == "-infinity") return -std::numeric_limits<double>::infinity();
  }
  return std::nullopt;
}

MetricValue read_metric(const json& metric, const fs::path& file, const std::string& key) {
  if (!metric.is_object()) fail(file, key, "expected an object {value, stderr, higher_is_better}, got " + type_of(metric));
  MetricValue out;
  const json& value = member(metric, "value", file, key + ".value");
  const std::optional<double> number = number_or_special(value);
  if (!number) fail(file, key + ".value", "expected a number, null, \"nan\" or \"inf\", got " + type_of(value));
  out.value = *number;
  if (metric.contains("stderr") && !metric.at("stderr").is_null()) {
    const json& se = metric.at("stderr");
    const std::optional<double> se_number = number_or_special(se);
    if (!se_number) fail(file, key + ".stderr", "expected a number or null, got " + type_of(se));
    if (std::isfinite(*se_number)) out.standard_error = std::abs(*se_number);
  }
  const json& higher = member(metric, "higher_is_better", file, key + ".higher_is_better");
  if (!higher.is_boolean()) fail(file, key + ".higher_is_better", "expected true or false, got " + type_of(higher));
  out.higher_is_better = higher.get<bool>();
  return out;
}

std::string escape_cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string describe_file(const ResultFile& file) {
  std::ostringstream text;
  text << '`' << file.file.string() << "`: model `" << file.model_path << '`';
  if (!file.model_kind.empty()) text << " (" << file.model_kind << ')';
  if (file.step >= 0)
    text << ", step " << file.step;
  else
    text << ", step unknown";
  text << ", " << (file.date.empty() ? std::string("date unknown") : file.date);
  return text.str();
}

std::string format_p(const MetricDelta& delta) {
  if (!delta.p_value) return "n/a";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", *delta.p_value);
  return std::string(buffer) + (delta.significant ? " *" : "");
}

std::string format_direction(const MetricDelta& delta, double baseline) {
  if (std::isnan(delta.delta) || std::isnan(baseline)) return "n/a";
  if (delta.direction > 0) return "↑ better";
  if (delta.direction < 0) return "↓ worse";
  return "= same";
}

}  // namespace

std::string file_label(std::size_t index) {
  if (index < 26) return std::string(1, static_cast<char>('A' + index));
  std::string label = std::to_string(index + 1);
  label.insert(label.begin(), 'F');
  return label;
}

std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4g", value);
  return buffer;
}

ResultFile load_result_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open the result file (does it exist?)");
  json root;
  try {
    root = json::parse(in);
  } catch (const json::parse_error& error) {
    throw std::runtime_error(file.string() + ": not valid JSON: " + error.what());
  }
  if (!root.is_object()) fail(file, "(top level)", "expected an object, got " + type_of(root));
  const json& format = member(root, "format", file, "format");
  if (!format.is_string() || format.get<std::string>() != results_format)
    fail(file, "format", std::string("expected \"") + results_format + "\", got " + type_of(format));

  ResultFile out;
  out.file = file;
  const json& model = object_member(root, "model", file, "model");
  const json& path = member(model, "path", file, "model.path");
  if (!path.is_string()) fail(file, "model.path", "expected a string, got " + type_of(path));
  out.model_path = path.get<std::string>();
  if (model.contains("kind") && model.at("kind").is_string()) out.model_kind = model.at("kind").get<std::string>();
  if (model.contains("step") && !model.at("step").is_null()) {
    const json& step = model.at("step");
    if (!step.is_number_integer()) fail(file, "model.step", "expected an integer, got " + type_of(step));
    out.step = step.get<std::int64_t>();
  }
  const json& run = object_member(root, "run", file, "run");
  if (run.contains("date") && !run.at("date").is_null()) {
    const json& date = run.at("date");
    if (!date.is_string()) fail(file, "run.date", "expected an ISO-8601 string, got " + type_of(date));
    out.date = date.get<std::string>();
  }

  const json& tasks = object_member(root, "tasks", file, "tasks");
  for (const auto& [task, body] : tasks.items()) {
    const std::string task_key = "tasks." + task;
    if (!body.is_object()) fail(file, task_key, "expected an object, got " + type_of(body));
    const json& metrics = object_member(body, "metrics", file, task_key + ".metrics");
    for (const auto& [metric, value] : metrics.items())
      out.metrics[task + "/" + metric] = read_metric(value, file, task_key + ".metrics." + metric);
  }
  return out;
}

double parse_iso8601_seconds(const std::string& date) {
  std::tm parts{};
  int consumed = 0;
  if (std::sscanf(date.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &parts.tm_year, &parts.tm_mon, &parts.tm_mday,
                  &parts.tm_hour, &parts.tm_min, &parts.tm_sec, &consumed) != 6 ||
      consumed == 0)
    throw std::invalid_argument("\"" + date + "\" is not an ISO-8601 date like 2026-11-21T19:30:00Z");
  parts.tm_year -= 1900;
  parts.tm_mon -= 1;
  double seconds = static_cast<double>(timegm(&parts));
  std::string rest = date.substr(static_cast<std::size_t>(consumed));
  if (!rest.empty() && rest[0] == '.') {
    std::size_t end = 1;
    while (end < rest.size() && std::isdigit(static_cast<unsigned char>(rest[end]))) ++end;
    seconds += std::stod("0" + rest.substr(0, end));
    rest = rest.substr(end);
  }
  int offset_hours = 0, offset_minutes = 0;
  if (rest == "Z" || rest.empty()) return seconds;
  if ((rest[0] == '+' || rest[0] == '-') && std::sscanf(rest.c_str() + 1, "%2d:%2d", &offset_hours, &offset_minutes) == 2) {
    const double offset = offset_hours * 3600.0 + offset_minutes * 60.0;
    return rest[0] == '+' ? seconds - offset : seconds + offset;
  }
  throw std::invalid_argument("\"" + date + "\" has an unreadable time zone (expected Z or ±HH:MM)");
}

std::optional<double> two_sided_p_value(double delta, std::optional<double> se_a, std::optional<double> se_b) {
  if (!se_a || !se_b || !std::isfinite(delta)) return std::nullopt;
  const double se = std::sqrt(*se_a * *se_a + *se_b * *se_b);
  if (se == 0.0) return delta == 0.0 ? 1.0 : 0.0;
  return std::erfc(std::abs(delta / se) / std::sqrt(2.0));
}

bool metric_selected(const std::string& key, const std::vector<std::string>& filters) {
  if (filters.empty()) return true;
  const std::string task = key.substr(0, key.find('/'));
  return std::any_of(filters.begin(), filters.end(),
                     [&](const std::string& filter) { return filter == key || filter == task; });
}

Comparison compare_results(std::vector<ResultFile> files, const std::vector<std::string>& filters) {
  if (files.size() < 2) throw std::invalid_argument("compare needs a baseline and at least one more result file");
  for (const std::string& filter : filters) {
    const bool found = std::any_of(files.begin(), files.end(), [&](const ResultFile& file) {
      return std::any_of(file.metrics.begin(), file.metrics.end(),
                         [&](const auto& entry) { return metric_selected(entry.first, {filter}); });
    });
    if (!found) throw std::invalid_argument("--metrics " + filter + ": no result file has this task/metric");
  }
  Comparison out;
  const ResultFile& baseline = files.front();
  for (const auto& [key, base] : baseline.metrics) {
    if (!metric_selected(key, filters)) continue;
    ComparisonRow row{key, base, {}};
    for (std::size_t i = 1; i < files.size(); ++i) {
      MetricDelta delta;
      const auto found = files[i].metrics.find(key);
      if (found != files[i].metrics.end()) {
        delta.present = true;
        delta.value = found->second.value;
        delta.standard_error = found->second.standard_error;
        delta.delta = delta.value - base.value;
        delta.p_value = two_sided_p_value(delta.delta, base.standard_error, delta.standard_error);
        delta.significant = delta.p_value && *delta.p_value < significance_level;
        const double oriented = base.higher_is_better ? delta.delta : -delta.delta;
        delta.direction = std::isnan(oriented) || oriented == 0.0 ? 0 : (oriented > 0 ? 1 : -1);
      }
      row.deltas.push_back(delta);
    }
    out.rows.push_back(std::move(row));
  }
  for (std::size_t i = 1; i < files.size(); ++i)
    for (const auto& entry : files[i].metrics)
      if (metric_selected(entry.first, filters) && !baseline.metrics.count(entry.first))
        out.not_in_baseline[entry.first].push_back(i);
  out.files = std::move(files);
  return out;
}

std::string render_markdown(const Comparison& comparison) {
  std::ostringstream out;
  const auto& files = comparison.files;
  out << "Baseline " << file_label(0) << ": " << escape_cell(describe_file(files[0])) << "  \n";
  for (std::size_t i = 1; i < files.size(); ++i)
    out << file_label(i) << ": " << escape_cell(describe_file(files[i])) << (i + 1 < files.size() ? "  \n" : "\n");
  out << "\n| task/metric | " << file_label(0) << " (baseline) |";
  for (std::size_t i = 1; i < files.size(); ++i) {
    const std::string l = file_label(i);
    out << ' ' << l << " | Δ " << l << " | p " << l << " | " << l << " vs " << file_label(0) << " |";
  }
  out << "\n|---|---:|";
  for (std::size_t i = 1; i < files.size(); ++i) out << "---:|---:|---:|---|";
  out << '\n';
  for (const ComparisonRow& row : comparison.rows) {
    out << "| " << escape_cell(row.key) << " | " << format_number(row.baseline.value);
    if (row.baseline.standard_error) out << " ± " << format_number(*row.baseline.standard_error);
    out << " |";
    for (const MetricDelta& delta : row.deltas) {
      if (!delta.present) {
        out << " — | — | — | — |";
        continue;
      }
      const std::string sign = delta.delta > 0 ? "+" : "";
      out << ' ' << format_number(delta.value) << " | " << sign << format_number(delta.delta) << " | "
          << format_p(delta) << " | " << format_direction(delta, row.baseline.value) << " |";
    }
    out << '\n';
  }
  if (comparison.rows.empty()) out << "| (no metric of the baseline selected) | |\n";
  out << "\np: two-sided z test of Δ against sqrt(se_base² + se_new²); * p < " << significance_level
      << "; n/a: a standard error is missing or a value is not finite; —: the file lacks the metric.\n";
  if (!comparison.not_in_baseline.empty()) {
    out << "\nNot in the baseline (not compared):";
    for (const auto& [key, holders] : comparison.not_in_baseline) {
      out << ' ' << escape_cell(key) << " (";
      for (std::size_t j = 0; j < holders.size(); ++j) out << (j ? ", " : "") << file_label(holders[j]);
      out << ')';
    }
    out << '\n';
  }
  return out.str();
}

}  // namespace loom::eval
