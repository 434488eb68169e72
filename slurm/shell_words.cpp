#include "slurm/shell_words.h"

#include <cctype>
#include <regex>

namespace loom::slurm {

namespace {

bool full_match(std::string_view text, const std::regex& pattern) {
  return std::regex_match(text.begin(), text.end(), pattern);
}

}  // namespace

std::string shell_quote(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

bool is_job_name(std::string_view text) {
  static const std::regex pattern("[A-Za-z0-9._-]{1,64}");
  return full_match(text, pattern);
}

bool is_slurm_name(std::string_view text, bool allow_list) {
  static const std::regex single("[A-Za-z0-9._-]+");
  static const std::regex list("[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*");
  return full_match(text, allow_list ? list : single);
}

bool is_memory(std::string_view text) {
  static const std::regex pattern("[0-9]+[KMGT]?");
  return full_match(text, pattern);
}

bool is_slurm_time(std::string_view text) {
  if (text == "UNLIMITED" || text == "INFINITE") return true;
  // minutes | minutes:seconds | hours:minutes:seconds | days-hours[:minutes[:seconds]]
  static const std::regex minutes("[0-9]+");
  static const std::regex minutes_seconds("[0-9]+:[0-5][0-9]");
  static const std::regex hours_minutes_seconds("[0-9]+:[0-5][0-9]:[0-5][0-9]");
  static const std::regex days("[0-9]+-([01]?[0-9]|2[0-3])(:[0-5][0-9](:[0-5][0-9])?)?");
  return full_match(text, minutes) || full_match(text, minutes_seconds) ||
         full_match(text, hours_minutes_seconds) || full_match(text, days);
}

bool is_sbatch_option(std::string_view text) {
  static const std::regex pattern("--[a-z][a-z0-9-]*(=[A-Za-z0-9_.:,/@%+-]*)?");
  return full_match(text, pattern);
}

bool is_module_name(std::string_view text) {
  static const std::regex pattern("[A-Za-z0-9._/+-]+");
  return full_match(text, pattern);
}

bool is_variable_name(std::string_view text) {
  static const std::regex pattern("[A-Z_][A-Z0-9_]*");
  return full_match(text, pattern);
}

bool is_override_key(std::string_view text) {
  static const std::regex pattern("[a-z0-9_.]+");
  return full_match(text, pattern);
}

bool is_sbatch_path(std::string_view text) {
  static const std::regex pattern("[A-Za-z0-9._/+@%:,=-]+");
  return full_match(text, pattern);
}

bool is_printable(std::string_view text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) return false;
  }
  return true;
}

}  // namespace loom::slurm
