// The shared command line (--config, key=value, --help, --print-config, --version), the
// generated help and Markdown, and run_main's messages and exit codes.
#define BOOST_TEST_MODULE config_cli
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "io/config/command_line.h"

namespace fs = std::filesystem;
using namespace loom::config;

namespace {

Schema sft_schema() {
  Schema schema;
  schema.add_path("run_dir", "runs/default", "Directory for this run's outputs");
  schema.describe_group("model", "Transformer shape");
  schema.add_enum("model.family", "llama", {"gpt2", "llama"}, "Architecture family");
  schema.add_int("model.n_layers", 6, "Transformer blocks", {.min = 1, .max = 256});
  schema.describe_group("train", "Optimisation loop");
  schema.add_int("train.max_steps", 1000, "Optimizer steps", {.min = 1});
  schema.add_float("train.lr", 3e-4, "Peak learning rate | after warmup");
  schema.add_path("data.train", required, "Training token store (HDF5)");
  schema.add_path("train.init_from", unset, "Weights to start from");
  return schema;
}

const ProgramInfo kInfo{"loom-sft",
                        "supervised fine-tuning",
                        {"loom-sft --config configs/tiny-brown.yaml train.max_steps=30"},
                        "",
                        0,
                        ""};

// argv as main() receives it.
struct Args {
  std::vector<std::string> words;
  std::vector<char*> pointers;
  explicit Args(std::vector<std::string> list) : words(std::move(list)) {
    for (std::string& word : words) pointers.push_back(word.data());
    pointers.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(words.size()); }
  char** argv() { return pointers.data(); }
};

CommandLine parse(std::vector<std::string> words, std::ostream& out, const ProgramInfo& info = kInfo) {
  Args args(std::move(words));
  return parse_command_line(args.argc(), args.argv(), sft_schema(), info, out);
}

std::string parse_error(std::vector<std::string> words, const ProgramInfo& info = kInfo) {
  std::ostringstream out;
  try {
    parse(std::move(words), out, info);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "(no error)";
}

// Captures std::cerr for the lifetime of the object.
struct CaptureStderr {
  std::ostringstream text;
  std::streambuf* saved = std::cerr.rdbuf(text.rdbuf());
  ~CaptureStderr() { std::cerr.rdbuf(saved); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(config_file_and_overrides) {
  const fs::path yaml = fs::temp_directory_path() / ("loom-cli-" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(yaml) << "train:\n  max_steps: 50\ndata:\n  train: data/x.h5\n";
  std::ostringstream out;
  const CommandLine cli = parse({"loom-sft", "--config", yaml.string(), "train.max_steps=30",
                                 "run_dir=runs/smoke"},
                                out);
  BOOST_TEST(!cli.exit_code.has_value());
  BOOST_TEST(cli.config.get_int("train.max_steps") == 30);
  BOOST_TEST(cli.config.get_path("run_dir") == fs::path("runs/smoke"));
  BOOST_TEST(cli.config.get_path("data.train") == fs::path("data/x.h5"));
  BOOST_TEST(cli.config_files.size() == 1u);
  BOOST_TEST(cli.overrides.size() == 2u);
  BOOST_TEST(out.str().empty());
  const CommandLine equals_form = parse({"loom-sft", "--config=" + yaml.string()}, out);
  BOOST_TEST(equals_form.config.get_int("train.max_steps") == 50);
  fs::remove(yaml);
}

BOOST_AUTO_TEST_CASE(help_lists_every_setting_type_default_and_doc) {
  std::ostringstream out;
  // --help works even when a required setting is missing.
  const CommandLine cli = parse({"loom-sft", "--help"}, out);
  BOOST_TEST(cli.exit_code.value_or(-1) == 0);
  const std::string help = out.str();
  BOOST_TEST(help.starts_with("loom-sft " + loom_version() + " — supervised fine-tuning\n"));
  BOOST_TEST(help.find("Usage: loom-sft [--config FILE.yaml] [key=value ...]") != std::string::npos);
  BOOST_TEST(help.find("  loom-sft --config configs/tiny-brown.yaml train.max_steps=30\n") !=
             std::string::npos);
  const Schema schema = sft_schema();
  for (const Setting& setting : schema.settings()) {
    BOOST_TEST(help.find(setting.key) != std::string::npos, setting.key);
    BOOST_TEST(help.find(setting.doc) != std::string::npos, setting.doc);
  }
  BOOST_TEST(help.find("\ntrain — Optimisation loop\n") != std::string::npos);
  BOOST_TEST(help.find("\n(top level)\n") != std::string::npos);
  BOOST_TEST(help.find("  model.n_layers   int    6             Transformer blocks [1 <= x <= 256]\n") !=
                 std::string::npos,
             help);
  BOOST_TEST(help.find("  data.train       path   required      Training token store (HDF5)\n") !=
                 std::string::npos,
             help);
  BOOST_TEST(help.find("Architecture family (one of: gpt2, llama)") != std::string::npos);
  BOOST_TEST(help.find("  train.init_from  path   (unset)       Weights to start from\n") != std::string::npos);
  std::ostringstream short_out;
  BOOST_TEST(parse({"loom-sft", "-h"}, short_out).exit_code.value_or(-1) == 0);
  BOOST_TEST(short_out.str() == help);
}

BOOST_AUTO_TEST_CASE(version_and_print_config) {
  std::ostringstream version;
  BOOST_TEST(parse({"loom-sft", "--version"}, version).exit_code.value_or(-1) == 0);
  BOOST_TEST(version.str() == "loom-sft " + loom_version() + "\n");
  BOOST_TEST(loom_version() != "unknown");
  std::ostringstream banner;
  const CommandLine cli =
      parse({"loom-sft", "--print-config", "data.train=d.h5", "train.lr=0.01"}, banner);
  BOOST_TEST(cli.exit_code.value_or(-1) == 0);
  BOOST_TEST(banner.str() == cli.config.banner());
  BOOST_TEST(banner.str().find("  train.lr        = 0.01          [command line]\n") != std::string::npos, banner.str());
  // --print-config still reports a broken config.
  BOOST_TEST(parse_error({"loom-sft", "--print-config"}).starts_with("missing required setting"));
}

BOOST_AUTO_TEST_CASE(bad_arguments_are_clear_errors) {
  BOOST_TEST(parse_error({"loom-sft", "--confg", "x.yaml"}) ==
             "command line: unknown option \"--confg\" (did you mean \"--config\"?)");
  BOOST_TEST(parse_error({"loom-sft", "--frobnicate"}) ==
             "command line: unknown option \"--frobnicate\" (options: --config FILE, "
             "--print-config, --help-markdown, --version, --help; settings are given as key=value)");
  BOOST_TEST(parse_error({"loom-sft", "--config"}) ==
             "command line: --config needs a file name (--config FILE.yaml)");
  BOOST_TEST(parse_error({"loom-sft", "train"}) ==
             "command line: unexpected argument \"train\" (settings are given as key=value; see "
             "--help)");
  BOOST_TEST(parse_error({"loom-sft", "--train.max_steps=3"}) ==
             "command line: unknown option \"--train.max_steps\" (settings are written without "
             "dashes: train.max_steps=3)");
  BOOST_TEST(parse_error({"loom-sft", "data.train=x", "train.max_step=3"}) ==
             "command line: unknown setting \"train.max_step\" (did you mean \"train.max_steps\"?)");
  BOOST_TEST(parse_error({"loom-sft", "--config", "no/such/file.yaml"}) ==
             "config file \"no/such/file.yaml\" does not exist");
}

BOOST_AUTO_TEST_CASE(positionals_only_where_declared) {
  ProgramInfo info = kInfo;
  info.name = "loom-ckpt";
  info.positional_name = "COMMAND";
  info.max_positionals = 1;
  std::ostringstream out;
  const CommandLine cli = parse({"loom-ckpt", "inspect", "data.train=x"}, out, info);
  BOOST_TEST(cli.positionals == std::vector<std::string>{"inspect"});
  BOOST_TEST(parse_error({"loom-ckpt", "inspect", "extra", "data.train=x"}, info) ==
             "command line: unexpected argument \"extra\" (settings are given as key=value; see "
             "--help)");
  std::ostringstream help;
  parse({"loom-ckpt", "--help"}, help, info);
  BOOST_TEST(help.str().find("Usage: loom-ckpt COMMAND [--config") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(markdown_has_a_table_row_per_setting) {
  const std::string md = schema_markdown(sft_schema(), "loom-sft settings");
  BOOST_TEST(md.starts_with("# loom-sft settings\n"));
  BOOST_TEST(md.find("\n## Top level\n") != std::string::npos);
  BOOST_TEST(md.find("\n## `train` — Optimisation loop\n") != std::string::npos);
  BOOST_TEST(md.find("| `train.max_steps` | int | `1000` | Optimizer steps [x >= 1] |\n") !=
                 std::string::npos,
             md);
  BOOST_TEST(md.find("| `data.train` | path | required | Training token store (HDF5) |\n") !=
                 std::string::npos,
             md);
  BOOST_TEST(md.find("Peak learning rate \\| after warmup") != std::string::npos);
  std::size_t rows = 0;
  for (std::size_t at = md.find("\n| `"); at != std::string::npos; at = md.find("\n| `", at + 1))
    ++rows;
  BOOST_TEST(rows == sft_schema().settings().size());
  std::ostringstream out;
  BOOST_TEST(parse({"loom-sft", "--help-markdown"}, out).exit_code.value_or(-1) == 0);
  BOOST_TEST(out.str() == md);
}

BOOST_AUTO_TEST_CASE(run_main_exit_codes_and_messages) {
  ::unsetenv("OMPI_COMM_WORLD_RANK");
  ::unsetenv("PMIX_RANK");
  ::unsetenv("PMI_RANK");
  ::unsetenv("SLURM_PROCID");
  {
    CaptureStderr err;
    Args args({"loom-sft", "train.max_steps=abc"});
    const int code = run_main(args.argc(), args.argv(), sft_schema(), kInfo,
                              [](const CommandLine&) { return 0; });
    BOOST_TEST(code == 2);
    BOOST_TEST(err.text.str() ==
               "loom-sft: error: command line: setting \"train.max_steps\" expects an int, got "
               "\"abc\"\nloom-sft: run loom-sft --help for every setting and its type\n");
  }
  {
    CaptureStderr err;
    Args args({"/opt/loom/bin/loom-eval"});
    const int code = run_main(args.argc(), args.argv(),
                              []() -> int { throw std::runtime_error("shard 3 is corrupt"); });
    BOOST_TEST(code == 1);
    BOOST_TEST(err.text.str() == "loom-eval: error: shard 3 is corrupt\n");
  }
  {
    Args args({"loom-sft", "data.train=x", "train.max_steps=7"});
    std::int64_t seen = 0;
    const int code = run_main(args.argc(), args.argv(), sft_schema(), kInfo,
                              [&](const CommandLine& cli) {
                                seen = cli.config.get_int("train.max_steps");
                                return 5;
                              });
    BOOST_TEST(code == 5);
    BOOST_TEST(seen == 7);
  }
  {
    CaptureStderr err;
    ::setenv("OMPI_COMM_WORLD_RANK", "3", 1);
    ::setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    Args args({"loom-sft", "bogus=1"});
    BOOST_TEST(run_main(args.argc(), args.argv(), sft_schema(), kInfo,
                        [](const CommandLine&) { return 0; }) == 2);
    BOOST_TEST(err.text.str().empty());  // rank 0 alone reports config errors
    Args runtime({"loom-sft"});
    BOOST_TEST(run_main(runtime.argc(), runtime.argv(),
                        []() -> int { throw std::runtime_error("out of memory"); }) == 1);
    BOOST_TEST(err.text.str() == "[rank 3] loom-sft: error: out of memory\n");
    ::unsetenv("OMPI_COMM_WORLD_RANK");
    ::unsetenv("OMPI_COMM_WORLD_SIZE");
  }
  {
    // An MPI singleton (a plain process that called MPI_Init) has rank 0 of 1: no prefix.
    CaptureStderr err;
    ::setenv("OMPI_COMM_WORLD_RANK", "0", 1);
    ::setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
    Args runtime({"loom-sft"});
    BOOST_TEST(run_main(runtime.argc(), runtime.argv(),
                        []() -> int { throw std::runtime_error("out of memory"); }) == 1);
    BOOST_TEST(err.text.str() == "loom-sft: error: out of memory\n");
    ::unsetenv("OMPI_COMM_WORLD_RANK");
    ::unsetenv("OMPI_COMM_WORLD_SIZE");
  }
}
