// Schema: the one place a program's settings are declared — dotted key, type, default,
// doc, allowed choices and bounds. The YAML loader, the command-line parser, `--help`,
// the generated docs (schema_markdown) and the startup banner all read this declaration,
// so a setting is never described twice.
//
// Programs share groups of settings (model.*, data.*, train.*): each group is added by a
// function `void add_<group>_settings(Schema&)` and a program composes the groups it
// needs, then adjusts a default with override_default() where its needs differ.
//
// Ownership and threads: a Schema is a plain value, built once at startup; const methods
// are safe from several threads. Misdeclarations (bad key, duplicate key, default outside
// the bounds) are programming errors and throw std::invalid_argument.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace loom::config {

enum class Type { Int, Float, Bool, String, Path, Enum, IntList, StringList };

// "int", "float", "bool", "string", "path", "enum", "int list".
const char* type_name(Type type);

// A resolved value. Int → int64, Float → double, Bool → bool, String/Path/Enum → string,
// IntList → vector<int64>, StringList → vector<string>.
using Value = std::variant<std::int64_t, double, bool, std::string, std::vector<std::int64_t>, std::vector<std::string>>;

// Whether a setting without a default must be given (Required) or may stay unset (Unset).
enum class Presence { HasDefault, Required, Unset };

struct RequiredTag {};
struct UnsetTag {};
// `schema.add_path("data.train", config::required, "...")`: the run cannot start without it.
inline constexpr RequiredTag required{};
// `schema.add_path("train.init_from", config::unset, "...")`: absent unless given.
inline constexpr UnsetTag unset{};

// The default of a declared setting: a value of the setting's type, `required` or `unset`.
template <typename T>
struct Default {
  std::optional<T> value;
  Presence presence = Presence::HasDefault;

  Default(RequiredTag) : presence(Presence::Required) {}
  Default(UnsetTag) : presence(Presence::Unset) {}
  // A float literal never silently becomes an int default.
  template <typename U>
    requires std::constructible_from<T, U> &&
             (!(std::is_integral_v<T> && std::is_floating_point_v<std::remove_cvref_t<U>>))
  Default(U&& v) : value(T(std::forward<U>(v))) {}
  // `{1, 2, 3}` for int lists.
  Default(std::initializer_list<std::int64_t> list)
    requires std::same_as<T, std::vector<std::int64_t>>
      : value(T(list)) {}
};

// Inclusive bounds for int, float and int-list settings: `{.min = 1}`, `{.min = 0, .max = 1}`.
struct Bounds {
  std::optional<double> min = std::nullopt;
  std::optional<double> max = std::nullopt;
};

struct Setting {
  std::string key;  // dotted, e.g. "train.max_steps"
  Type type = Type::String;
  std::optional<Value> default_value;
  Presence presence = Presence::HasDefault;
  std::string doc;
  std::vector<std::string> choices;  // Enum only
  Bounds bounds;

  // The part of the key before the first dot ("" for a top-level key like "run_dir").
  std::string group() const;
};

class Schema {
 public:
  void add_int(std::string key, Default<std::int64_t> def, std::string doc, Bounds bounds = {});
  void add_float(std::string key, Default<double> def, std::string doc, Bounds bounds = {});
  void add_bool(std::string key, Default<bool> def, std::string doc);
  void add_string(std::string key, Default<std::string> def, std::string doc);
  // A filesystem path. Relative paths are kept as written and so resolve against the
  // working directory of the process (users run from the repository root), not against
  // the YAML file that names them.
  void add_path(std::string key, Default<std::string> def, std::string doc);
  void add_enum(std::string key, Default<std::string> def, std::vector<std::string> choices,
                std::string doc);
  void add_int_list(std::string key, Default<std::vector<std::int64_t>> def, std::string doc,
                    Bounds bounds = {});
  // Items are taken as written (trimmed); YAML lists or "a, b, c" on the command line.
  void add_string_list(std::string key, Default<std::vector<std::string>> def, std::string doc);

  // A one-line description of a group ("train" → "Optimisation loop"), shown in --help
  // and the generated docs.
  void describe_group(std::string group, std::string doc);

  // Replaces the default of an already declared setting; `text` is parsed as that
  // setting's type (as on the command line). A program uses this to tune a shared group,
  // e.g. a smaller train.lr for DPO than for SFT.
  void override_default(std::string_view key, std::string_view text);

  // nullptr when `key` is not declared.
  const Setting* find(std::string_view key) const;
  const Setting& at(std::string_view key) const;  // throws std::invalid_argument
  // True when `prefix` is the leading part of a declared key ("train" for "train.lr").
  bool is_group(std::string_view prefix) const;

  // Declaration order.
  const std::vector<Setting>& settings() const { return settings_; }
  // Groups in the order their first setting was declared ("" first when it has settings).
  std::vector<std::string> groups() const;
  std::string group_doc(std::string_view group) const;

  // The declared key closest to `unknown` (edit distance on full dotted keys, or the same
  // last component in another group); nullopt when nothing is close.
  std::optional<std::string> nearest_key(std::string_view unknown) const;

 private:
  void add(Setting setting);

  std::vector<Setting> settings_;
  std::vector<std::pair<std::string, std::string>> group_docs_;
};

}  // namespace loom::config
