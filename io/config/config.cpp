#include "io/config/config.h"

#include <algorithm>

#include "io/config/value.h"

namespace loom::config {
namespace {

bool holds_type(const Value& value, Type type) {
  switch (type) {
    case Type::Int: return std::holds_alternative<std::int64_t>(value);
    case Type::Float: return std::holds_alternative<double>(value);
    case Type::Bool: return std::holds_alternative<bool>(value);
    case Type::String:
    case Type::Path:
    case Type::Enum: return std::holds_alternative<std::string>(value);
    case Type::IntList: return std::holds_alternative<std::vector<std::int64_t>>(value);
    case Type::StringList: return std::holds_alternative<std::vector<std::string>>(value);
  }
  return false;
}

nlohmann::json to_json_value(const std::optional<Value>& value) {
  if (!value) return nullptr;
  return std::visit([](const auto& v) { return nlohmann::json(v); }, *value);
}

std::string prefix(const Source& where) {
  return where.kind == Source::Kind::Default ? std::string() : where.describe() + ": ";
}

}  // namespace

std::string Source::describe() const {
  switch (kind) {
    case Kind::Default: return "default";
    case Kind::File: return file.string() + ":" + std::to_string(line);
    case Kind::CommandLine: return "command line";
  }
  return "?";
}

Config::Config(Schema schema) : schema_(std::move(schema)) {
  for (const Setting& setting : schema_.settings())
    entries_.emplace(setting.key, Entry{setting.default_value, Source{}});
}

const Config::Entry& Config::entry(std::string_view key) const {
  const auto it = entries_.find(key);
  if (it == entries_.end()) schema_.at(key);  // throws, naming the key
  return it->second;
}

const Value& Config::typed(std::string_view key, Type expected, Type also) const {
  const Setting& setting = schema_.at(key);
  if (setting.type != expected && setting.type != also)
    throw std::invalid_argument("config: setting \"" + setting.key + "\" is " +
                                type_name(setting.type) + ", read as " + type_name(expected));
  const Entry& found = entry(key);
  if (!found.value)
    throw std::invalid_argument("config: setting \"" + setting.key +
                                "\" has no value; check has_value() first");
  return *found.value;
}

std::int64_t Config::get_int(std::string_view key) const {
  return std::get<std::int64_t>(typed(key, Type::Int, Type::Int));
}

double Config::get_float(std::string_view key) const {
  return std::get<double>(typed(key, Type::Float, Type::Float));
}

bool Config::get_bool(std::string_view key) const {
  return std::get<bool>(typed(key, Type::Bool, Type::Bool));
}

std::string Config::get_string(std::string_view key) const {
  return std::get<std::string>(typed(key, Type::String, Type::Enum));
}

std::filesystem::path Config::get_path(std::string_view key) const {
  return std::get<std::string>(typed(key, Type::Path, Type::Path));
}

std::vector<std::int64_t> Config::get_int_list(std::string_view key) const {
  return std::get<std::vector<std::int64_t>>(typed(key, Type::IntList, Type::IntList));
}

std::vector<std::string> Config::get_string_list(std::string_view key) const {
  return std::get<std::vector<std::string>>(typed(key, Type::StringList, Type::StringList));
}

bool Config::has_value(std::string_view key) const { return entry(key).value.has_value(); }

const Source& Config::source(std::string_view key) const { return entry(key).source; }

std::string Config::text(std::string_view key) const {
  const Entry& found = entry(key);
  if (!found.value) return "(unset)";
  const std::string text = format_value(*found.value);
  return text.empty() ? "\"\"" : text;
}

void Config::set(std::string_view key, std::optional<Value> value, Source where) {
  const Setting& setting = schema_.at(key);
  if (!value && setting.presence != Presence::Unset)
    throw ConfigError(prefix(where) + "setting \"" + setting.key + "\" expects " +
                      expected_form(setting) + ", got no value");
  if (value) {
    if (!holds_type(*value, setting.type))
      throw std::invalid_argument("config: set(\"" + setting.key + "\") with a value that is not " +
                                  type_name(setting.type));
    try {
      check_bounds(setting, *value);
      if (setting.type == Type::Enum) parse_value(setting, std::get<std::string>(*value));
    } catch (const ValueError& error) {
      throw ConfigError(prefix(where) + "setting \"" + setting.key + "\" " + error.what());
    }
  }
  Entry& target = entries_.find(key)->second;
  target.value = std::move(value);
  target.source = std::move(where);
}

nlohmann::json Config::to_json() const {
  nlohmann::json root = nlohmann::json::object();
  for (const Setting& setting : schema_.settings()) {
    nlohmann::json* node = &root;
    std::string_view rest = setting.key;
    for (std::size_t dot = rest.find('.'); dot != std::string_view::npos; dot = rest.find('.')) {
      node = &(*node)[std::string(rest.substr(0, dot))];
      rest.remove_prefix(dot + 1);
    }
    (*node)[std::string(rest)] = to_json_value(entry(setting.key).value);
  }
  return root;
}

std::string Config::banner() const {
  std::size_t key_width = 0, value_width = 0;
  std::vector<std::string> texts;
  for (const Setting& setting : schema_.settings()) {
    texts.push_back(text(setting.key));
    key_width = std::max(key_width, setting.key.size());
    value_width = std::max(value_width, texts.back().size());
  }
  std::string out;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const Setting& setting = schema_.settings()[i];
    std::string line = "  " + setting.key + std::string(key_width - setting.key.size(), ' ') +
                       " = " + texts[i] + std::string(value_width - texts[i].size(), ' ') +
                       "  [" + entry(setting.key).source.describe() + "]";
    out += line + "\n";
  }
  return out;
}

}  // namespace loom::config
