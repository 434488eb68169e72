// Schema declarations, value parsing, YAML + override precedence, and the exact shape of
// every configuration error message.
#define BOOST_TEST_MODULE config_load
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "io/config/config.h"
#include "io/config/value.h"

namespace fs = std::filesystem;
using namespace loom::config;

namespace {

Schema test_schema() {
  Schema schema;
  schema.add_path("run_dir", "runs/default", "Directory for this run's outputs");
  schema.add_enum("model.family", "llama", {"gpt2", "llama"}, "Architecture family");
  schema.add_int("model.n_layers", 6, "Transformer blocks", {.min = 1});
  schema.add_float("model.rope.theta", 10000.0, "RoPE base frequency", {.min = 1});
  schema.add_path("data.train", required, "Training token store (HDF5)");
  schema.add_bool("data.pack", true, "Pack documents into full sequences");
  schema.add_int("train.max_steps", 1000, "Optimizer steps", {.min = 1});
  schema.add_float("train.lr", 3e-4, "Peak learning rate", {.min = 0});
  schema.add_path("train.init_from", unset, "Weights to start from");
  schema.add_string("train.note", "", "Free text stored in run.json");
  schema.add_int_list("train.eval_at", {100, 200}, "Extra steps to evaluate at", {.min = 0});
  return schema;
}

// A fresh directory per test case, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("loom-test-config-" + std::to_string(::getpid()) + "-" +
            std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return path / name;
  }
  static inline int counter = 0;
};

std::string error_of(const Schema& schema, const std::vector<fs::path>& files,
                     const std::vector<std::string>& overrides) {
  try {
    load_config(schema, files, overrides);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "(no error)";
}

const std::vector<std::string> kTrain = {"data.train=data/x.h5"};

}  // namespace

BOOST_AUTO_TEST_CASE(defaults_and_types) {
  const Config config = load_config(test_schema(), std::nullopt, kTrain);
  BOOST_TEST(config.get_path("run_dir") == fs::path("runs/default"));
  BOOST_TEST(config.get_string("model.family") == "llama");
  BOOST_TEST(config.get_int("model.n_layers") == 6);
  BOOST_TEST(config.get_float("train.lr") == 3e-4);
  BOOST_TEST(config.get_bool("data.pack") == true);
  BOOST_TEST(config.get_string("train.note") == "");
  BOOST_TEST(config.get_int_list("train.eval_at") == (std::vector<std::int64_t>{100, 200}));
  BOOST_TEST(!config.has_value("train.init_from"));
  BOOST_TEST(config.source("model.n_layers").describe() == "default");
  BOOST_TEST(config.source("data.train").describe() == "command line");
}

BOOST_AUTO_TEST_CASE(getters_reject_programming_errors) {
  const Config config = load_config(test_schema(), std::nullopt, kTrain);
  BOOST_CHECK_THROW(config.get_int("train.max_step"), std::invalid_argument);
  BOOST_CHECK_THROW(config.get_float("train.max_steps"), std::invalid_argument);
  BOOST_CHECK_THROW(config.get_path("train.init_from"), std::invalid_argument);
  try {
    config.get_float("train.max_steps");
  } catch (const std::invalid_argument& error) {
    BOOST_TEST(std::string(error.what()) ==
               "config: setting \"train.max_steps\" is int, read as float");
  }
}

BOOST_AUTO_TEST_CASE(schema_rejects_bad_declarations) {
  Schema schema;
  schema.add_int("train.steps", 1, "Steps");
  BOOST_CHECK_THROW(schema.add_int("train.steps", 2, "again"), std::invalid_argument);
  BOOST_CHECK_THROW(schema.add_int("train", 2, "a group used as a key"), std::invalid_argument);
  BOOST_CHECK_THROW(schema.add_int("Train.Steps", 2, "upper case"), std::invalid_argument);
  BOOST_CHECK_THROW(schema.add_int("train..x", 2, "empty component"), std::invalid_argument);
  BOOST_CHECK_THROW(schema.add_int("train.y", 0, "below min", {.min = 1}), std::invalid_argument);
  BOOST_CHECK_THROW(schema.add_enum("train.opt", "adam", {"adamw", "sgd"}, "bad default"),
                    std::invalid_argument);
  BOOST_CHECK_THROW(schema.add_int("train.z", 1, ""), std::invalid_argument);
  schema.override_default("train.steps", "7");
  BOOST_TEST(std::get<std::int64_t>(*schema.at("train.steps").default_value) == 7);
  BOOST_CHECK_THROW(schema.override_default("train.steps", "x"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(value_parsing_by_type) {
  const Schema schema = test_schema();
  const Setting& steps = schema.at("train.max_steps");
  BOOST_TEST(std::get<std::int64_t>(parse_value(steps, "30")) == 30);
  BOOST_TEST(std::get<std::int64_t>(parse_value(steps, "+30")) == 30);
  BOOST_CHECK_THROW(parse_value(steps, "3.5"), ValueError);
  BOOST_CHECK_THROW(parse_value(steps, "1e3"), ValueError);
  BOOST_CHECK_THROW(parse_value(steps, "12abc"), ValueError);
  BOOST_CHECK_THROW(parse_value(steps, "99999999999999999999"), ValueError);
  const Setting& lr = schema.at("train.lr");
  BOOST_TEST(std::get<double>(parse_value(lr, "3e-4")) == 3e-4);
  BOOST_TEST(std::get<double>(parse_value(lr, "1")) == 1.0);
  BOOST_CHECK_THROW(parse_value(lr, "nan"), ValueError);
  BOOST_CHECK_THROW(parse_value(lr, "fast"), ValueError);
  const Setting& pack = schema.at("data.pack");
  for (const char* yes : {"true", "True", "1", "yes", "on"})
    BOOST_TEST(std::get<bool>(parse_value(pack, yes)) == true);
  for (const char* no : {"false", "FALSE", "0", "no", "off"})
    BOOST_TEST(std::get<bool>(parse_value(pack, no)) == false);
  BOOST_CHECK_THROW(parse_value(pack, "maybe"), ValueError);
  const Setting& eval_at = schema.at("train.eval_at");
  using List = std::vector<std::int64_t>;
  BOOST_TEST(std::get<List>(parse_value(eval_at, "1,2,3")) == (List{1, 2, 3}));
  BOOST_TEST(std::get<List>(parse_value(eval_at, "[4, 5]")) == (List{4, 5}));
  BOOST_TEST(std::get<List>(parse_value(eval_at, "[]")).empty());
  BOOST_CHECK_THROW(parse_value(eval_at, "1,,2"), ValueError);
  BOOST_CHECK_THROW(parse_value(eval_at, "1,2,"), ValueError);
  BOOST_CHECK_THROW(parse_value(eval_at, "1,-2"), ValueError);  // min 0
  BOOST_TEST(format_value(Value(3e-4)) == "0.0003");
  BOOST_TEST(format_value(Value(2.0)) == "2.0");
  BOOST_TEST(format_value(Value(List{1, 2})) == "[1, 2]");
}

BOOST_AUTO_TEST_CASE(precedence_default_yaml_override) {
  TempDir dir;
  const fs::path yaml = dir.write("a.yaml",
                                  "run_dir: runs/a\n"
                                  "model:\n"
                                  "  n_layers: 4\n"
                                  "  rope:\n"
                                  "    theta: 500000\n"
                                  "train.lr: 1e-3\n"
                                  "data:\n"
                                  "  train: data/a.h5\n"
                                  "  pack: no\n"
                                  "train:\n"
                                  "  eval_at: [5, 10, 15]\n"
                                  "  init_from: runs/base/model.h5\n");
  const std::vector<std::string> overrides = {"model.n_layers=8", "model.n_layers=9",
                                              "train.init_from="};
  const Config config = load_config(test_schema(), yaml, overrides);
  BOOST_TEST(config.get_int("model.n_layers") == 9);
  BOOST_TEST(config.source("model.n_layers").describe() == "command line");
  BOOST_TEST(config.get_float("model.rope.theta") == 500000.0);
  BOOST_TEST(config.source("model.rope.theta").describe() == yaml.string() + ":5");
  BOOST_TEST(config.get_float("train.lr") == 1e-3);
  BOOST_TEST(config.source("train.lr").describe() == yaml.string() + ":6");
  BOOST_TEST(config.get_path("data.train") == fs::path("data/a.h5"));
  BOOST_TEST(config.get_bool("data.pack") == false);
  BOOST_TEST(config.get_int_list("train.eval_at") == (std::vector<std::int64_t>{5, 10, 15}));
  BOOST_TEST(!config.has_value("train.init_from"));  // cleared by "train.init_from="
  BOOST_TEST(config.get_int("train.max_steps") == 1000);
  BOOST_TEST(config.source("train.max_steps").describe() == "default");
}

BOOST_AUTO_TEST_CASE(string_lists_from_yaml_and_command_line) {
  TempDir dir;
  Schema schema = test_schema();
  schema.add_string_list("eval.tasks", std::vector<std::string>{"a.yaml"}, "Task files");
  BOOST_TEST(load_config(schema, std::nullopt, kTrain).get_string_list("eval.tasks") == (std::vector<std::string>{"a.yaml"}));
  const fs::path yaml = dir.write("s.yaml", "eval:\n  tasks:\n    - configs/x.yaml\n    - \"y z.yaml\"\n");
  BOOST_TEST(load_config(schema, yaml, kTrain).get_string_list("eval.tasks") ==
             (std::vector<std::string>{"configs/x.yaml", "y z.yaml"}));
  std::vector<std::string> overrides = kTrain;
  overrides.push_back("eval.tasks=[p.yaml, q.yaml]");
  const Config config = load_config(schema, std::nullopt, overrides);
  BOOST_TEST(config.get_string_list("eval.tasks") == (std::vector<std::string>{"p.yaml", "q.yaml"}));
  BOOST_TEST(config.text("eval.tasks") == "[p.yaml, q.yaml]");
  overrides.back() = "eval.tasks=p.yaml,,q.yaml";
  BOOST_CHECK_THROW(load_config(schema, std::nullopt, overrides), ConfigError);
  const fs::path nested = dir.write("n.yaml", "eval:\n  tasks:\n    - [a, b]\n");
  BOOST_CHECK_THROW(load_config(schema, nested, kTrain), ConfigError);
}

BOOST_AUTO_TEST_CASE(later_files_win_and_empty_file_sets_nothing) {
  TempDir dir;
  const fs::path base = dir.write("base.yaml", "train:\n  max_steps: 10\n  lr: 0.1\n");
  const fs::path exp = dir.write("exp.yaml", "train:\n  max_steps: 20\n");
  const fs::path empty = dir.write("empty.yaml", "# nothing here\n");
  const std::vector<fs::path> files = {base, exp, empty};
  const Config config = load_config(test_schema(), files, kTrain);
  BOOST_TEST(config.get_int("train.max_steps") == 20);
  BOOST_TEST(config.get_float("train.lr") == 0.1);
  BOOST_TEST(config.source("train.lr").describe() == base.string() + ":3");
}

BOOST_AUTO_TEST_CASE(unknown_key_in_yaml_suggests_nearest) {
  TempDir dir;
  const fs::path yaml = dir.write("x.yaml", "data:\n  train: a.h5\ntrain:\n  max_step: 30\n");
  BOOST_TEST(error_of(test_schema(), {yaml}, {}) ==
             yaml.string() + ":4: unknown setting \"train.max_step\" (did you mean "
                             "\"train.max_steps\"?)");
  const fs::path typo_group = dir.write("y.yaml", "trian:\n  lr: 0.1\n");
  BOOST_TEST(error_of(test_schema(), {typo_group}, kTrain) ==
             typo_group.string() + ":2: unknown setting \"trian.lr\" (did you mean \"train.lr\"?)");
  const fs::path far = dir.write("z.yaml", "completely_unrelated: 1\n");
  BOOST_TEST(error_of(test_schema(), {far}, kTrain) ==
             far.string() + ":1: unknown setting \"completely_unrelated\"");
}

BOOST_AUTO_TEST_CASE(unknown_key_on_command_line) {
  BOOST_TEST(error_of(test_schema(), {}, {"model.n_layer=3"}) ==
             "command line: unknown setting \"model.n_layer\" (did you mean \"model.n_layers\"?)");
  BOOST_TEST(error_of(test_schema(), {}, {"max_steps=3"}) ==
             "command line: unknown setting \"max_steps\" (did you mean \"train.max_steps\"?)");
  BOOST_TEST(error_of(test_schema(), {}, {"train=3"}) ==
             "command line: \"train\" is a group of settings, not a setting; set its keys one by "
             "one (e.g. train.max_steps)");
  BOOST_TEST(error_of(test_schema(), {}, {"--train.lr=3"}) ==
             "command line: unknown option \"--train.lr\" (settings are written without dashes: "
             "train.lr=3)");
}

BOOST_AUTO_TEST_CASE(wrong_type_names_file_line_key_expected_and_text) {
  TempDir dir;
  const fs::path yaml = dir.write("t.yaml", "data:\n  train: a.h5\ntrain:\n  max_steps: 3.5\n");
  BOOST_TEST(error_of(test_schema(), {yaml}, {}) ==
             yaml.string() + ":4: setting \"train.max_steps\" expects an int, got \"3.5\"");
  const fs::path map = dir.write("m.yaml", "model:\n  n_layers:\n    deep: 1\n");
  BOOST_TEST(error_of(test_schema(), {map}, kTrain) ==
             map.string() + ":2: setting \"model.n_layers\" expects an int, got a map");
  const fs::path list = dir.write("l.yaml", "train:\n  eval_at: [1, x]\n");
  BOOST_TEST(error_of(test_schema(), {list}, kTrain) ==
             list.string() + ":2: setting \"train.eval_at\" expects a list of ints (1,2,3 or "
                             "[1, 2, 3]), got element \"x\"");
  const fs::path null_required = dir.write("n.yaml", "model:\n  n_layers: ~\n");
  BOOST_TEST(error_of(test_schema(), {null_required}, kTrain) ==
             null_required.string() + ":2: setting \"model.n_layers\" expects an int, got no value");
  const fs::path group = dir.write("g.yaml", "train: 5\n");
  BOOST_TEST(error_of(test_schema(), {group}, kTrain) ==
             group.string() + ":1: \"train\" is a group of settings, not a setting; write its "
                              "keys under it (e.g. train.max_steps)");
  BOOST_TEST(error_of(test_schema(), {}, {"data.train=a", "train.max_steps=3.5"}) ==
             "command line: setting \"train.max_steps\" expects an int, got \"3.5\"");
  BOOST_TEST(error_of(test_schema(), {}, {"data.train=a", "model.family=gpt3"}) ==
             "command line: setting \"model.family\" expects one of {gpt2, llama}, got \"gpt3\" "
             "(did you mean \"gpt2\"?)");
  BOOST_TEST(error_of(test_schema(), {}, {"data.train=a", "model.family=transformer"}) ==
             "command line: setting \"model.family\" expects one of {gpt2, llama}, got "
             "\"transformer\"");
  BOOST_TEST(error_of(test_schema(), {}, {"data.train=a", "data.pack=maybe"}) ==
             "command line: setting \"data.pack\" expects a bool (true/false), got \"maybe\"");
  BOOST_TEST(error_of(test_schema(), {}, {"data.train=a", "model.n_layers=0"}) ==
             "command line: setting \"model.n_layers\" must satisfy x >= 1, got 0");
  BOOST_TEST(error_of(test_schema(), {}, {"data.train=a", "train.lr=-0.5"}) ==
             "command line: setting \"train.lr\" must satisfy x >= 0, got -0.5");
  BOOST_TEST(error_of(test_schema(), {}, {"data.train="}) ==
             "command line: setting \"data.train\" expects a path, got an empty value");
}

BOOST_AUTO_TEST_CASE(missing_file_syntax_error_duplicates_and_required) {
  TempDir dir;
  const fs::path missing = dir.path / "nope.yaml";
  BOOST_TEST(error_of(test_schema(), {missing}, kTrain) ==
             "config file \"" + missing.string() + "\" does not exist");
  BOOST_TEST(error_of(test_schema(), {dir.path}, kTrain) ==
             "config file \"" + dir.path.string() + "\" is a directory, expected a YAML file");
  const fs::path broken = dir.write("broken.yaml", "train:\n  lr: [1, 2\n  max_steps: 3\n");
  const std::string syntax = error_of(test_schema(), {broken}, kTrain);
  BOOST_TEST(syntax.starts_with(broken.string() + ":"), syntax);
  BOOST_TEST(syntax.find(": YAML syntax error: ") != std::string::npos, syntax);
  const fs::path tabs = dir.write("tabs.yaml", "train:\n  lr: 1\n bad: : :\n");
  const std::string bad_indent = error_of(test_schema(), {tabs}, kTrain);
  BOOST_TEST(bad_indent.starts_with(tabs.string() + ":3:"), bad_indent);
  const fs::path twice = dir.write("twice.yaml", "train.lr: 0.1\ntrain:\n  lr: 0.2\n");
  BOOST_TEST(error_of(test_schema(), {twice}, kTrain) ==
             twice.string() + ":3: setting \"train.lr\" is set twice in this file (first at line 1)");
  const fs::path list_root = dir.write("list.yaml", "- a\n- b\n");
  BOOST_TEST(error_of(test_schema(), {list_root}, kTrain) ==
             list_root.string() + ":1: expected a map of settings at the top level, found a list");
  BOOST_TEST(error_of(test_schema(), {}, {}) ==
             "missing required setting \"data.train\" (Training token store (HDF5)): set it in the "
             "config file or on the command line as data.train=...");
}

BOOST_AUTO_TEST_CASE(json_is_nested_and_reads_back_as_yaml) {
  TempDir dir;
  const std::vector<std::string> overrides = {"data.train=data/b.h5", "train.lr=0.002",
                                              "train.eval_at=7,8", "model.rope.theta=20000"};
  const Config config = load_config(test_schema(), std::nullopt, overrides);
  const nlohmann::json json = config.to_json();
  BOOST_TEST(json["train"]["lr"].get<double>() == 0.002);
  BOOST_TEST(json["model"]["rope"]["theta"].get<double>() == 20000.0);
  BOOST_TEST(json["model"]["n_layers"].get<int>() == 6);
  BOOST_TEST(json["run_dir"].get<std::string>() == "runs/default");
  BOOST_TEST(json["train"]["init_from"].is_null());
  BOOST_TEST(json["train"]["eval_at"] == nlohmann::json::array({7, 8}));
  const fs::path saved = dir.write("config.json", json.dump(2));
  const Config again = load_config(test_schema(), saved, {});
  BOOST_TEST(again.to_json() == json);
  BOOST_TEST(again.source("train.lr").describe().starts_with(saved.string() + ":"));
}

BOOST_AUTO_TEST_CASE(banner_is_aligned_with_sources) {
  TempDir dir;
  const fs::path yaml = dir.write("b.yaml", "data:\n  train: data/c.h5\n");
  const std::vector<std::string> overrides = {"train.max_steps=30"};
  const Config config = load_config(test_schema(), yaml, overrides);
  const std::string banner = config.banner();
  BOOST_TEST(banner.find("  train.max_steps  = 30            [command line]\n") !=
                 std::string::npos,
             banner);
  BOOST_TEST(banner.find("  data.train       = data/c.h5     [" + yaml.string() + ":2]\n") !=
                 std::string::npos,
             banner);
  BOOST_TEST(banner.find("  train.init_from  = (unset)       [default]\n") !=
                 std::string::npos,
             banner);
  BOOST_TEST(banner.find("  train.note       = \"\"            [default]\n") != std::string::npos);
  std::size_t lines = 0;
  for (char c : banner) lines += c == '\n';
  BOOST_TEST(lines == test_schema().settings().size());
}
