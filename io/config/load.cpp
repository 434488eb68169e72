// load_config and its steps: YAML files and command-line overrides applied to a Config.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

// yaml-cpp 0.7's node headers trip GCC 12's dangling-pointer analysis (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#include <yaml-cpp/yaml.h>
#pragma GCC diagnostic pop

#include "io/config/config.h"
#include "io/config/value.h"

namespace loom::config {
namespace {

std::string in_quotes(std::string_view text) { return "\"" + std::string(text) + "\""; }

std::string unknown_setting(const Schema& schema, const std::string& where, std::string_view key) {
  std::string message = where + ": unknown setting " + in_quotes(key);
  if (const auto nearest = schema.nearest_key(key)) message += " (did you mean " + in_quotes(*nearest) + "?)";
  return message;
}

// "train" written as a value: name the group and one of its keys as an example.
std::string group_written_as_value(const Schema& schema, const std::string& where,
                                   std::string_view group, std::string_view how) {
  std::string example;
  for (const Setting& setting : schema.settings()) {
    if (setting.key.starts_with(std::string(group) + ".")) {
      example = setting.key;
      break;
    }
  }
  return where + ": " + in_quotes(group) + " is a group of settings, not a setting; " +
         std::string(how) + " (e.g. " + example + ")";
}

const char* node_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "no value";
    default: return "a scalar";
  }
}

class YamlApplier {
 public:
  YamlApplier(Config& config, const std::filesystem::path& file) : config_(config), file_(file) {}

  void walk(const YAML::Node& map, const std::string& prefix) {
    for (auto it = map.begin(); it != map.end(); ++it) {
      // Copies: yaml-cpp's iterator hands out a temporary pair, so references would dangle.
      const YAML::Node key_node = it->first;
      const YAML::Node value = it->second;
      const int line = key_node.Mark().line + 1;
      if (!key_node.IsScalar())
        throw ConfigError(where(line) + ": expected a setting name as the key, found " +
                          node_kind(key_node));
      const std::string key = prefix.empty() ? key_node.Scalar() : prefix + "." + key_node.Scalar();
      apply(key, value, line);
    }
  }

 private:
  std::string where(int line) const { return file_.string() + ":" + std::to_string(line); }

  void apply(const std::string& key, const YAML::Node& value, int line) {
    const Schema& schema = config_.schema();
    const Setting* setting = schema.find(key);
    if (!setting) {
      // Unknown maps are walked too, so "trian: {lr: 1}" reports "trian.lr" with a suggestion.
      if (value.IsMap()) return walk(value, key);
      if (schema.is_group(key))
        throw ConfigError(group_written_as_value(schema, where(line), key, "write its keys under it"));
      throw ConfigError(unknown_setting(schema, where(line), key));
    }
    if (const auto [first, inserted] = seen_.emplace(key, line); !inserted)
      throw ConfigError(where(line) + ": setting " + in_quotes(key) + " is set twice in this file " +
                        "(first at line " + std::to_string(first->second) + ")");
    const Source source{Source::Kind::File, file_, line};
    try {
      config_.set(key, parse(*setting, value), source);
    } catch (const ValueError& error) {
      throw ConfigError(where(line) + ": setting " + in_quotes(key) + " " + error.what());
    }
  }

  std::optional<Value> parse(const Setting& setting, const YAML::Node& value) const {
    if (value.IsNull()) return std::nullopt;  // Config::set decides whether that is allowed
    if (value.IsScalar()) return parse_value(setting, value.Scalar());
    if (value.IsSequence() && (setting.type == Type::IntList || setting.type == Type::StringList)) {
      std::vector<std::string> items;
      for (const YAML::Node& item : value) {
        if (!item.IsScalar())
          throw ValueError("expects " + expected_form(setting) + ", got " + node_kind(item) +
                           " as a list element");
        items.push_back(item.Scalar());
      }
      if (setting.type == Type::StringList) return Value(std::move(items));
      return parse_int_list(setting, items);
    }
    throw ValueError("expects " + expected_form(setting) + ", got " + node_kind(value));
  }

  Config& config_;
  const std::filesystem::path& file_;
  std::map<std::string, int> seen_;
};

std::string read_config_file(const std::filesystem::path& file) {
  std::error_code error;
  if (!std::filesystem::exists(file, error))
    throw ConfigError("config file " + in_quotes(file.string()) + " does not exist");
  if (std::filesystem::is_directory(file, error))
    throw ConfigError("config file " + in_quotes(file.string()) + " is a directory, expected a YAML file");
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in)
    throw ConfigError("config file " + in_quotes(file.string()) + " cannot be read: " +
                      std::strerror(errno));
  return text.str();
}

}  // namespace

void apply_yaml_file(Config& config, const std::filesystem::path& file) {
  const std::string text = read_config_file(file);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& error) {
    throw ConfigError(file.string() + ":" + std::to_string(error.mark.line + 1) + ":" +
                      std::to_string(error.mark.column + 1) + ": YAML syntax error: " + error.msg);
  }
  if (root.IsNull()) return;  // an empty file sets nothing
  if (!root.IsMap())
    throw ConfigError(file.string() + ":" + std::to_string(root.Mark().line + 1) +
                      ": expected a map of settings at the top level, found " + node_kind(root));
  YamlApplier(config, file).walk(root, "");
}

void apply_override(Config& config, std::string_view assignment) {
  const std::string where = "command line";
  const std::size_t equals = assignment.find('=');
  if (equals == std::string_view::npos || equals == 0)
    throw ConfigError(where + ": " + in_quotes(assignment) +
                      " is not a setting; settings are given as key=value");
  const std::string key(assignment.substr(0, equals));
  const std::string_view text = assignment.substr(equals + 1);
  const Schema& schema = config.schema();
  const Setting* setting = schema.find(key);
  if (!setting) {
    const std::size_t name_start = key.find_first_not_of('-');
    if (name_start > 0 && name_start != std::string::npos && schema.find(key.substr(name_start)))
      throw ConfigError(where + ": unknown option " + in_quotes(key) +
                        " (settings are written without dashes: " + key.substr(name_start) + "=" +
                        std::string(text) + ")");
    if (schema.is_group(key))
      throw ConfigError(group_written_as_value(schema, where, key, "set its keys one by one"));
    throw ConfigError(unknown_setting(schema, where, key));
  }
  const Source source{Source::Kind::CommandLine, {}, 0};
  // "key=" clears an optional setting; for a string it is the empty string.
  if (text.empty() && setting->presence == Presence::Unset && setting->type != Type::String)
    return config.set(key, std::nullopt, source);
  try {
    config.set(key, parse_value(*setting, text), source);
  } catch (const ValueError& error) {
    throw ConfigError(where + ": setting " + in_quotes(key) + " " + error.what());
  }
}

void check_required(const Config& config) {
  for (const Setting& setting : config.schema().settings()) {
    if (setting.presence == Presence::Required && !config.has_value(setting.key))
      throw ConfigError("missing required setting " + in_quotes(setting.key) + " (" + setting.doc +
                        "): set it in the config file or on the command line as " + setting.key +
                        "=...");
  }
}

Config load_config(const Schema& schema, std::span<const std::filesystem::path> yaml_files,
                   std::span<const std::string> overrides) {
  Config config(schema);
  for (const std::filesystem::path& file : yaml_files) apply_yaml_file(config, file);
  for (const std::string& assignment : overrides) apply_override(config, assignment);
  check_required(config);
  return config;
}

Config load_config(const Schema& schema, const std::optional<std::filesystem::path>& yaml_file,
                   std::span<const std::string> overrides) {
  std::vector<std::filesystem::path> files;
  if (yaml_file) files.push_back(*yaml_file);
  return load_config(schema, files, overrides);
}

}  // namespace loom::config
