#include "io/config/command_line.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "io/config/value.h"

namespace loom::config {
namespace {

constexpr std::string_view kOptions[] = {"--config", "--print-config", "--help-markdown",
                                         "--version", "--help"};

std::string in_quotes(std::string_view text) { return "\"" + std::string(text) + "\""; }

std::string unknown_option(std::string_view arg) {
  std::string message = "command line: unknown option " + in_quotes(arg);
  const std::string_view name = arg.substr(0, arg.find('='));
  if (const Nearest best = nearest(name, kOptions); best.distance < 3) {
    return message + " (did you mean " + in_quotes(best.name) + "?)";
  }
  return message + " (options: --config FILE, --print-config, --help-markdown, --version, "
                   "--help; settings are given as key=value)";
}

bool is_rank_zero() { return launcher_rank().value_or(0) == 0; }

// Ranks in the job from the launcher's environment; 1 when none says.
long launcher_world_size() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}) {
    if (const char* value = std::getenv(variable); value && *value) {
      char* end = nullptr;
      const long size = std::strtol(value, &end, 10);
      if (*end == '\0' && size > 0) return size;
    }
  }
  return 1;
}

int guarded(const std::string& name, const std::function<int()>& body) {
  try {
    return body();
  } catch (const ConfigError& error) {
    if (is_rank_zero())
      std::cerr << name << ": error: " << error.what() << "\n"
                << name << ": run " << name << " --help for every setting and its type\n";
    return 2;
  } catch (const std::exception& error) {
    std::string rank;
    // A single process (also an MPI singleton, which sets OMPI_COMM_WORLD_RANK=0) gets no prefix.
    if (const auto r = launcher_rank(); r && launcher_world_size() > 1) rank = "[rank " + std::to_string(*r) + "] ";
    // One write: Open MPI forwards a rank's stderr and its MPI_Abort banner on different
    // channels, so a line written in pieces can come out split around the banner.
    std::cerr << (rank + name + ": error: " + error.what() + "\n");
    return 1;
  }
}

}  // namespace

std::optional<int> launcher_rank() {
  for (const char* variable : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* value = std::getenv(variable); value && *value) {
      char* end = nullptr;
      const long rank = std::strtol(value, &end, 10);
      if (*end == '\0' && rank >= 0) return static_cast<int>(rank);
    }
  }
  return std::nullopt;
}

CommandLine parse_command_line(int argc, const char* const* argv, const Schema& schema,
                               const ProgramInfo& info, std::ostream& out) {
  CommandLine cli{Config(schema), {}, {}, {}, std::nullopt};
  bool help = false, markdown = false, version = false, print_config = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      help = true;
    } else if (arg == "--help-markdown") {
      markdown = true;
    } else if (arg == "--version") {
      version = true;
    } else if (arg == "--print-config") {
      print_config = true;
    } else if (arg == "--config") {
      if (i + 1 >= argc || std::string_view(argv[i + 1]).starts_with("-"))
        throw ConfigError("command line: --config needs a file name (--config FILE.yaml)");
      cli.config_files.emplace_back(argv[++i]);
    } else if (arg.starts_with("--config=")) {
      cli.config_files.emplace_back(std::string(arg.substr(9)));
    } else if (arg.starts_with("-")) {
      const std::size_t equals = arg.find('=');
      const std::size_t start = std::min(arg.find_first_not_of('-'), arg.size());
      const std::string_view key = arg.substr(0, equals).substr(std::min(start, equals));
      if (equals != std::string_view::npos && schema.find(key))
        throw ConfigError("command line: unknown option " + in_quotes(arg.substr(0, equals)) +
                          " (settings are written without dashes: " + std::string(key) +
                          std::string(arg.substr(equals)) + ")");
      throw ConfigError(unknown_option(arg));
    } else if (arg.find('=') != std::string_view::npos) {
      cli.overrides.emplace_back(arg);
    } else if (cli.positionals.size() < info.max_positionals) {
      cli.positionals.emplace_back(arg);
    } else {
      throw ConfigError("command line: unexpected argument " + in_quotes(arg) +
                        " (settings are given as key=value; see --help)");
    }
  }
  const bool speak = is_rank_zero();
  if (help || markdown || version) {
    if (speak && help) out << help_text(schema, info);
    else if (speak && markdown) out << schema_markdown(schema, info.name + " settings");
    else if (speak) out << info.name << " " << (info.version.empty() ? loom_version() : info.version) << "\n";
    cli.exit_code = 0;
    return cli;
  }
  cli.config = load_config(schema, cli.config_files, cli.overrides);
  if (print_config) {
    if (speak) out << cli.config.banner();
    cli.exit_code = 0;
  }
  return cli;
}

int run_main(int argc, char** argv, const std::function<int()>& body) {
  const std::string name =
      argc > 0 ? std::filesystem::path(argv[0]).filename().string() : std::string("loom");
  return guarded(name, body);
}

int run_main(int argc, char** argv, const Schema& schema, const ProgramInfo& info,
             const std::function<int(const CommandLine&)>& body) {
  return guarded(info.name, [&] {
    const CommandLine cli = parse_command_line(argc, argv, schema, info);
    return cli.exit_code ? *cli.exit_code : body(cli);
  });
}

std::vector<std::string> flags_as_overrides(int argc, char** argv, const std::vector<std::string>& flags) {
  const std::vector<std::string> args(argv, argv + argc);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    bool rewritten = false;
    for (const std::string& flag : flags) {
      const std::string key = flag.substr(2);
      if (args[i] == flag && i + 1 < args.size()) {
        out.push_back(key + "=" + args[++i]);
        rewritten = true;
      } else if (args[i].rfind(flag + "=", 0) == 0) {
        out.push_back(key + "=" + args[i].substr(flag.size() + 1));
        rewritten = true;
      }
      if (rewritten) break;
    }
    if (!rewritten) out.push_back(args[i]);
  }
  return out;
}

}  // namespace loom::config
