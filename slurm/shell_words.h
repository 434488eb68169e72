// Quoting and the value formats loom-submit accepts, shared by the job reader (slurm/job_spec.h)
// and the renderer (slurm/render.h). Every string a job file puts into a rendered script goes
// through one of two doors: shell_quote() for words the batch shell reads, or one of the
// is_*() patterns for values that must stand unquoted (#SBATCH lines, which sbatch parses
// itself, and numbers). Nothing else reaches a script.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace loom::slurm {

// 'text' with each ' written as '\'' — one shell word whatever the text holds (newlines,
// $(…), backticks, quotes). A single-quoted word has no expansion in any POSIX shell.
std::string shell_quote(std::string_view text);

// Job names: [A-Za-z0-9._-]{1,64}.
bool is_job_name(std::string_view text);
// Partition, account and QOS names: [A-Za-z0-9._-]+ (partitions also a comma-separated list).
bool is_slurm_name(std::string_view text, bool allow_list);
// Memory: ^[0-9]+[KMGT]?$ (sbatch --mem).
bool is_memory(std::string_view text);
// The time formats sbatch --time accepts: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (minutes and
// seconds below 60, hours below 24 when days are given), or UNLIMITED/INFINITE.
bool is_slurm_time(std::string_view text);
// One extra sbatch option: ^--[a-z][a-z0-9-]*(=[A-Za-z0-9_.:,/@%+-]*)?$
bool is_sbatch_option(std::string_view text);
// Environment-module names: [A-Za-z0-9._/+-]+
bool is_module_name(std::string_view text);
// Environment variable names: [A-Z_][A-Z0-9_]*
bool is_variable_name(std::string_view text);
// Override keys: [a-z0-9_.]+
bool is_override_key(std::string_view text);
// A path sbatch may read from an #SBATCH line as it is: [A-Za-z0-9._/+@%:,=-]+
bool is_sbatch_path(std::string_view text);
// No control characters (newline, NUL, escape …): a value may hold anything else, quoted.
bool is_printable(std::string_view text);

}  // namespace loom::slurm
