// Config: the resolved settings of one run — every declared key with its typed value and
// where that value came from — and load_config(), which builds it from the schema's
// defaults, YAML files and `key=value` overrides (later wins).
//
// YAML: nested maps flatten to dotted keys (`train: {lr: 3e-4}` is `train.lr`); dotted
// keys are also accepted at any level (`train.lr: 3e-4`). A null value (`key: ~`, or a
// JSON null) leaves an `unset` setting unset. JSON is YAML, so a run's saved config.json
// (Config::to_json) can be given back to --config.
//
// Relative paths are kept as written: they resolve against the current working directory
// (loom is run from the repository root), not against the YAML file that names them.
//
// Errors: every user mistake throws ConfigError with one message that names the place
// (`configs/x.yaml:12`, `command line`), the key, what was expected and what was found:
//   configs/x.yaml:12: unknown setting "train.max_step" (did you mean "train.max_steps"?)
//   configs/x.yaml:4: setting "train.max_steps" expects an int, got "3.5"
//   config file "configs/nope.yaml" does not exist
//   configs/x.yaml:3:7: YAML syntax error: end of map not found
//   missing required setting "data.train" (...doc...): set it in the config file or as data.train=...
// Asking a Config for an undeclared key or with the wrong type is a programming error and
// throws std::invalid_argument.
//
// Ownership and threads: a Config is a plain value (it keeps its own copy of the schema);
// const methods are safe from several threads. Ranks: every rank loads the same files and
// arguments, so every rank resolves the same Config.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/config/schema.h"

namespace loom::config {

// A mistake in the user's configuration; what() is the whole message to print.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where a value came from.
struct Source {
  enum class Kind { Default, File, CommandLine };
  Kind kind = Kind::Default;
  std::filesystem::path file;  // File only: as the user named it
  int line = 0;                // File only: 1-based

  // "default", "configs/x.yaml:12", "command line".
  std::string describe() const;
};

class Config {
 public:
  explicit Config(Schema schema);  // every setting at its default

  std::int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  // String and enum settings.
  std::string get_string(std::string_view key) const;
  std::filesystem::path get_path(std::string_view key) const;
  std::vector<std::int64_t> get_int_list(std::string_view key) const;
  std::vector<std::string> get_string_list(std::string_view key) const;

  // False for an `unset` setting nobody gave a value (the typed getters throw on it).
  bool has_value(std::string_view key) const;
  const Source& source(std::string_view key) const;
  // The value as text ("(unset)" when there is none), as the banner shows it.
  std::string text(std::string_view key) const;

  // Sets a declared key; throws ConfigError naming `where` on a bad value. A null value
  // (std::nullopt) unsets an `unset` setting.
  void set(std::string_view key, std::optional<Value> value, Source where);

  // Nested object: {"train": {"lr": 0.0003, ...}, "run_dir": "runs/x"}; unset → null.
  nlohmann::json to_json() const;
  // One aligned line per setting: `  train.lr = 0.0003  [configs/x.yaml:12]`.
  std::string banner() const;

  const Schema& schema() const { return schema_; }

 private:
  struct Entry {
    std::optional<Value> value;
    Source source;
  };
  const Entry& entry(std::string_view key) const;
  const Value& typed(std::string_view key, Type expected, Type also) const;

  Schema schema_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// Defaults, then each YAML file in order, then each `key=value` override in order; then
// checks that every required setting has a value. Throws ConfigError.
Config load_config(const Schema& schema, std::span<const std::filesystem::path> yaml_files,
                   std::span<const std::string> overrides);
Config load_config(const Schema& schema, const std::optional<std::filesystem::path>& yaml_file,
                   std::span<const std::string> overrides);

// Applies one YAML file to `config` (what load_config does per file).
void apply_yaml_file(Config& config, const std::filesystem::path& file);
// Applies one `key=value` override (what load_config does per override).
void apply_override(Config& config, std::string_view assignment);
// Throws ConfigError for the first required setting without a value.
void check_required(const Config& config);

}  // namespace loom::config
