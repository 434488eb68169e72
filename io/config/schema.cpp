#include "io/config/schema.h"

#include <algorithm>
#include <stdexcept>

#include "io/config/value.h"

namespace loom::config {
namespace {

// Lower-case words of [a-z0-9_] joined by single dots: "train.max_steps", "model.rope.theta".
bool valid_key(std::string_view key) {
  if (key.empty() || key.front() == '.' || key.back() == '.') return false;
  char previous = 0;
  for (char c : key) {
    const bool word = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!word && c != '.') return false;
    if (c == '.' && previous == '.') return false;
    previous = c;
  }
  return true;
}

bool starts_group(std::string_view key, std::string_view prefix) {
  return key.size() > prefix.size() && key.starts_with(prefix) && key[prefix.size()] == '.';
}

std::string_view last_component(std::string_view key) {
  const std::size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}

template <typename T>
Setting make(std::string key, Type type, const Default<T>& def, std::string doc) {
  Setting setting;
  setting.key = std::move(key);
  setting.type = type;
  setting.presence = def.presence;
  if (def.value) setting.default_value = Value(*def.value);
  setting.doc = std::move(doc);
  return setting;
}

}  // namespace

const char* type_name(Type type) {
  switch (type) {
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::Bool: return "bool";
    case Type::String: return "string";
    case Type::Path: return "path";
    case Type::Enum: return "enum";
    case Type::IntList: return "int list";
    case Type::StringList: return "string list";
  }
  return "?";
}

std::string Setting::group() const {
  const std::size_t dot = key.find('.');
  return dot == std::string::npos ? std::string() : key.substr(0, dot);
}

void Schema::add_int(std::string key, Default<std::int64_t> def, std::string doc, Bounds bounds) {
  Setting setting = make(std::move(key), Type::Int, def, std::move(doc));
  setting.bounds = bounds;
  add(std::move(setting));
}

void Schema::add_float(std::string key, Default<double> def, std::string doc, Bounds bounds) {
  Setting setting = make(std::move(key), Type::Float, def, std::move(doc));
  setting.bounds = bounds;
  add(std::move(setting));
}

void Schema::add_bool(std::string key, Default<bool> def, std::string doc) {
  add(make(std::move(key), Type::Bool, def, std::move(doc)));
}

void Schema::add_string(std::string key, Default<std::string> def, std::string doc) {
  add(make(std::move(key), Type::String, def, std::move(doc)));
}

void Schema::add_path(std::string key, Default<std::string> def, std::string doc) {
  add(make(std::move(key), Type::Path, def, std::move(doc)));
}

void Schema::add_enum(std::string key, Default<std::string> def, std::vector<std::string> choices,
                      std::string doc) {
  Setting setting = make(std::move(key), Type::Enum, def, std::move(doc));
  if (choices.empty())
    throw std::invalid_argument("schema: enum setting \"" + setting.key + "\" has no choices");
  setting.choices = std::move(choices);
  add(std::move(setting));
}

void Schema::add_int_list(std::string key, Default<std::vector<std::int64_t>> def, std::string doc,
                          Bounds bounds) {
  Setting setting = make(std::move(key), Type::IntList, def, std::move(doc));
  setting.bounds = bounds;
  add(std::move(setting));
}

void Schema::add_string_list(std::string key, Default<std::vector<std::string>> def, std::string doc) {
  add(make(std::move(key), Type::StringList, def, std::move(doc)));
}

void Schema::add(Setting setting) {
  const std::string& key = setting.key;
  if (!valid_key(key))
    throw std::invalid_argument("schema: \"" + key +
                                "\" is not a valid setting key (dotted lower-case words of "
                                "[a-z0-9_], e.g. train.max_steps)");
  if (find(key))
    throw std::invalid_argument("schema: setting \"" + key + "\" is declared twice");
  // A key that is also a group could not be written as a nested YAML map.
  for (const Setting& other : settings_) {
    if (starts_group(other.key, key) || starts_group(key, other.key))
      throw std::invalid_argument("schema: setting \"" + key + "\" clashes with \"" + other.key +
                                  "\" (a key cannot also be a group of keys)");
  }
  if (setting.doc.empty())
    throw std::invalid_argument("schema: setting \"" + key + "\" has no doc string");
  if (setting.default_value) {
    try {
      if (setting.type == Type::Enum)
        parse_value(setting, std::get<std::string>(*setting.default_value));
      check_bounds(setting, *setting.default_value);
    } catch (const ValueError& error) {
      throw std::invalid_argument("schema: default of \"" + key + "\" " + error.what());
    }
  }
  settings_.push_back(std::move(setting));
}

void Schema::describe_group(std::string group, std::string doc) {
  for (auto& [name, text] : group_docs_) {
    if (name == group) {
      text = std::move(doc);
      return;
    }
  }
  group_docs_.emplace_back(std::move(group), std::move(doc));
}

void Schema::override_default(std::string_view key, std::string_view text) {
  for (Setting& setting : settings_) {
    if (setting.key != key) continue;
    try {
      setting.default_value = parse_value(setting, text);
    } catch (const ValueError& error) {
      throw std::invalid_argument("schema: new default of \"" + setting.key + "\" " +
                                  error.what());
    }
    setting.presence = Presence::HasDefault;
    return;
  }
  throw std::invalid_argument("schema: override_default of undeclared setting \"" +
                              std::string(key) + "\"");
}

const Setting* Schema::find(std::string_view key) const {
  for (const Setting& setting : settings_)
    if (setting.key == key) return &setting;
  return nullptr;
}

const Setting& Schema::at(std::string_view key) const {
  if (const Setting* setting = find(key)) return *setting;
  throw std::invalid_argument("config: setting \"" + std::string(key) +
                              "\" is not declared in this program's schema");
}

bool Schema::is_group(std::string_view prefix) const {
  return std::any_of(settings_.begin(), settings_.end(),
                     [&](const Setting& s) { return starts_group(s.key, prefix); });
}

std::vector<std::string> Schema::groups() const {
  std::vector<std::string> out;
  bool has_top_level = false;
  for (const Setting& setting : settings_) {
    const std::string group = setting.group();
    if (group.empty()) has_top_level = true;
    else if (std::find(out.begin(), out.end(), group) == out.end()) out.push_back(group);
  }
  if (has_top_level) out.insert(out.begin(), std::string());
  return out;
}

std::string Schema::group_doc(std::string_view group) const {
  for (const auto& [name, text] : group_docs_)
    if (name == group) return text;
  return "";
}

std::optional<std::string> Schema::nearest_key(std::string_view unknown) const {
  const std::size_t limit = unknown.size() <= 3 ? 1 : std::max<std::size_t>(2, unknown.size() / 4);
  const Setting* best = nullptr;
  std::size_t best_distance = limit + 1;
  for (const Setting& setting : settings_) {
    const std::size_t distance = edit_distance(unknown, setting.key);
    if (distance < best_distance) {
      best = &setting;
      best_distance = distance;
    }
  }
  if (best) return best->key;
  // "max_steps" or "optim.lr": the right name in the wrong (or no) group.
  for (const Setting& setting : settings_)
    if (last_component(setting.key) == last_component(unknown)) return setting.key;
  return std::nullopt;
}

}  // namespace loom::config
