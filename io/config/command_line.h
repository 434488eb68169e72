// The command line every loom program shares:
//   PROGRAM [--config FILE.yaml]... [key=value]... [--print-config] [--help-markdown]
//           [--version] [-h|--help]
// and run_main(), which turns any error escaping a program into one line on stderr and an
// exit status (2 for a configuration mistake, 1 for anything else).
//
//   int main(int argc, char** argv) {
//     loom::config::Schema schema;
//     add_model_settings(schema);
//     add_train_settings(schema);
//     const loom::config::ProgramInfo info{"loom-sft", "supervised fine-tuning", {...}};
//     return loom::config::run_main(argc, argv, schema, info,
//                                   [](const loom::config::CommandLine& cli) {
//                                     std::cerr << cli.config.banner();
//                                     return train(cli.config);
//                                   });
//   }
//
// Ranks: under mpirun/srun every rank parses the same arguments and gets the same result.
// Help, --print-config output and configuration errors are printed by rank 0 only (the
// rank is read from OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK or SLURM_PROCID); other
// errors are printed by every rank, prefixed with "[rank N]".
#pragma once

#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "io/config/config.h"
#include "io/config/help.h"

namespace loom::config {

struct CommandLine {
  Config config;  // resolved; the schema's defaults when exit_code is set
  std::vector<std::filesystem::path> config_files;
  std::vector<std::string> overrides;
  std::vector<std::string> positionals;  // at most ProgramInfo::max_positionals
  // Set when --help, --help-markdown, --version or --print-config was answered (on `out`):
  // the program should return it without doing its work.
  std::optional<int> exit_code;
};

// Parses the arguments and resolves the config (load_config). Answers --help,
// --help-markdown, --version and --print-config by writing to `out` and setting exit_code.
// Throws ConfigError for an unknown option, a missing --config argument, a stray word, or
// any load_config error.
CommandLine parse_command_line(int argc, const char* const* argv, const Schema& schema,
                               const ProgramInfo& info, std::ostream& out = std::cout);

// Runs `body`, catching what escapes it: ConfigError → "NAME: error: MESSAGE" and 2;
// any other std::exception → "NAME: error: MESSAGE" and 1. NAME is argv[0]'s file name.
int run_main(int argc, char** argv, const std::function<int()>& body);

// parse_command_line, then `body` unless exit_code was set, under run_main's error handling.
int run_main(int argc, char** argv, const Schema& schema, const ProgramInfo& info,
             const std::function<int(const CommandLine&)>& body);

// This process's rank from the launcher's environment; nullopt when not launched by one.
std::optional<int> launcher_rank();

// `--flag VALUE` and `--flag=VALUE` for each of `flags` (e.g. "--model") rewritten as the
// override `flag=VALUE`; every other argument unchanged. argv[0] is kept.
std::vector<std::string> flags_as_overrides(int argc, char** argv, const std::vector<std::string>& flags);

}  // namespace loom::config
