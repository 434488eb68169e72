// Text generated from a Schema: a program's --help and the Markdown settings reference
// (docs/config.md). Both read only the declarations, so they cannot drift from the code.
//
// Pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "io/config/schema.h"

namespace loom::config {

// What --help and --version say about a program besides its settings.
struct ProgramInfo {
  std::string name = {};              // "loom-sft"
  std::string summary = {};           // one line: what the program does
  std::vector<std::string> examples = {};  // whole command lines, shown under "Examples:"
  // Bare words the program accepts besides key=value (a subcommand such as "inspect"):
  // the name shown in the usage line ("COMMAND") and how many are allowed. 0 = none.
  std::string positional_name = {};
  std::size_t max_positionals = 0;
  std::string version = {};  // empty: loom's own version
};

// loom's version ("0.1.0"), from the CMake project.
std::string loom_version();

// Usage, examples, options, then every setting grouped by its first key component, each
// with type, default and doc (wrapped to 100 columns).
std::string help_text(const Schema& schema, const ProgramInfo& info);

// A Markdown page: `# title`, then one table per group (setting, type, default, meaning).
std::string schema_markdown(const Schema& schema, std::string_view title);

// "required", "(unset)", "\"\"" for an empty string, else the formatted value.
std::string default_text(const Setting& setting);

}  // namespace loom::config
