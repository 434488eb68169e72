#include "slurm/yaml_reader.h"

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "io/config/value.h"
#include "slurm/job_spec.h"
#include "slurm/shell_words.h"

namespace loom::slurm {

namespace {

std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return in_quotes(node.Scalar());
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  return "nothing";
}

}  // namespace

std::string dotted(const std::string& section, const std::string& key) {
  return section.empty() ? key : section + "." + key;
}

std::string in_quotes(const std::string& text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void YamlReader::fail(int line, const std::string& message) const {
  throw JobError(file_.string() + ":" + std::to_string(line) + ": " + message);
}

void YamlReader::check_map(const YAML::Node& node, const std::string& section, const std::vector<std::string>& known,
                           const std::set<std::string>& ignored) const {
  if (!node.IsMap()) {
    fail(node, (section.empty() ? std::string("the file") : section) + " must be a map of keys, got " + describe(node));
  }
  for (const auto& entry : node) {
    const std::string key = entry.first.Scalar();
    if (ignored.contains(key) || std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::vector<std::string> candidates = known;
    candidates.insert(candidates.end(), ignored.begin(), ignored.end());
    const config::Nearest closest = config::nearest(key, candidates);
    std::string hint;
    if (closest.distance <= std::max<std::size_t>(2, key.size() / 2)) {
      hint = " (did you mean " + in_quotes(dotted(section, closest.name)) + "?)";
    } else {
      for (const std::string& candidate : known) hint += (hint.empty() ? " (known keys: " : ", ") + candidate;
      hint += ")";
    }
    fail(entry.first, "unknown key " + in_quotes(dotted(section, key)) + hint);
  }
}

std::string YamlReader::string(const YAML::Node& node, const std::string& key) const {
  if (node.IsNull()) return "";
  if (!node.IsScalar()) fail(node, key + ": expected a string, got " + describe(node));
  const std::string& text = node.Scalar();
  if (!is_printable(text)) {
    fail(node, key + ": control characters (newline, tab, escape …) are not allowed, got " + in_quotes(text));
  }
  return text;
}

std::int64_t YamlReader::integer(const YAML::Node& node, const std::string& key, std::int64_t min,
                                 std::int64_t max) const {
  std::int64_t value = 0;
  if (!node.IsScalar() || !YAML::convert<std::int64_t>::decode(node, value)) {
    fail(node, key + ": expected an integer, got " + describe(node));
  }
  if (value < min || value > max) {
    fail(node, key + ": expected " + std::to_string(min) + " <= x <= " + std::to_string(max) + ", got " +
                   std::to_string(value));
  }
  return value;
}

bool YamlReader::boolean(const YAML::Node& node, const std::string& key) const {
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    fail(node, key + ": expected true or false, got " + describe(node));
  }
  return value;
}

std::vector<std::string> YamlReader::string_list(const YAML::Node& node, const std::string& key) const {
  std::vector<std::string> out;
  if (node.IsNull()) return out;
  if (!node.IsSequence()) fail(node, key + ": expected a list of strings, got " + describe(node));
  for (std::size_t i = 0; i < node.size(); ++i) out.push_back(string(node[i], key + "[" + std::to_string(i) + "]"));
  return out;
}

}  // namespace loom::slurm
