// Typed reads from a YAML file with errors that name file:line and the key: the job and
// pipeline readers of loom-submit (slurm/job_spec.h, slurm/pipeline.h) are built on it.
// Every failure throws JobError ("jobs/x.yaml:7: slurm.mem: expected …, got "4 GB"").
//
// Ownership: holds the file name only; nodes are borrowed. Thread safety: reentrant.
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace loom::slurm {

class YamlReader {
 public:
  explicit YamlReader(std::filesystem::path file) : file_(std::move(file)) {}

  const std::filesystem::path& file() const { return file_; }
  static int line_of(const YAML::Node& node) { return node.Mark().line + 1; }
  [[noreturn]] void fail(int line, const std::string& message) const;
  [[noreturn]] void fail(const YAML::Node& at, const std::string& message) const { fail(line_of(at), message); }

  // `node` must be a map whose keys are all in `known` or `ignored`; an unknown key names
  // the closest known one. `section` prefixes key names in messages ("slurm" → slurm.x).
  void check_map(const YAML::Node& node, const std::string& section, const std::vector<std::string>& known,
                 const std::set<std::string>& ignored = {}) const;

  // A scalar without control characters (null reads as ""). `key` names it in messages.
  std::string string(const YAML::Node& node, const std::string& key) const;
  std::int64_t integer(const YAML::Node& node, const std::string& key, std::int64_t min, std::int64_t max) const;
  bool boolean(const YAML::Node& node, const std::string& key) const;
  // A list of strings (null reads as empty).
  std::vector<std::string> string_list(const YAML::Node& node, const std::string& key) const;

 private:
  std::filesystem::path file_;
};

// "a.b" for section "a" and key "b"; "b" for the top level.
std::string dotted(const std::string& section, const std::string& key);
// A value as JSON would quote it, for messages: "x; rm -rf ~" with control characters escaped.
std::string in_quotes(const std::string& text);

}  // namespace loom::slurm
