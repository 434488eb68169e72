// MetricsLog: a run's metrics as JSON Lines, `<run_dir>/metrics.jsonl`, one object per
// line ({"step": 10, "loss": 2.31, "lr": 0.0003, ...}). Each line is handed to the kernel
// with a single write() on an O_APPEND descriptor as soon as it is logged, so a crash or a
// kill loses nothing already written (a power failure may; there is no fsync per line).
// Non-finite floats are written as null (JSON has no NaN).
//
// Ownership: the log owns its file descriptor. Threads: write() may be called from several
// threads; lines never interleave. Ranks: one writer per file — usually rank 0 only.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::record {

class MetricsLog {
 public:
  // Creates `run_dir` if needed and opens `run_dir/file_name` for appending (an existing
  // file is continued, e.g. on resume). Throws std::runtime_error naming the path.
  explicit MetricsLog(const std::filesystem::path& run_dir,
                      const std::string& file_name = "metrics.jsonl");
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends `record` (a JSON object) as one line. Throws std::invalid_argument for a
  // non-object and std::runtime_error when the write fails (disk full, ...).
  void write(const nlohmann::json& record);

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::mutex mutex_;
};

// Reads a metrics file back, one object per line. A last line without its newline (a
// crash mid-write) is skipped; any other unparseable line throws std::runtime_error naming
// the file and line.
std::vector<nlohmann::json> read_metrics(const std::filesystem::path& file);

}  // namespace loom::record
