#include "io/record/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace loom::record {

MetricsLog::MetricsLog(const std::filesystem::path& run_dir, const std::string& file_name)
    : path_(run_dir / file_name) {
  std::error_code error;
  std::filesystem::create_directories(run_dir, error);
  if (error)
    throw std::runtime_error("metrics log: cannot create run directory \"" + run_dir.string() +
                             "\": " + error.message());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error("metrics log: cannot open \"" + path_.string() +
                             "\" for appending: " + std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!record.is_object())
    throw std::invalid_argument("metrics log: a record must be a JSON object, got " +
                                std::string(record.type_name()));
  // Invalid UTF-8 in a string field is replaced rather than failing a training run.
  const std::string line =
      record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::lock_guard lock(mutex_);
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t wrote = ::write(fd_, line.data() + done, line.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0)
      throw std::runtime_error("metrics log: write to \"" + path_.string() +
                               "\" failed: " + std::strerror(errno));
    done += static_cast<std::size_t>(wrote);
  }
}

std::vector<nlohmann::json> read_metrics(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("metrics: cannot open \"" + file.string() + "\"");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::vector<nlohmann::json> records;
  std::size_t start = 0;
  for (int line = 1; start < text.size(); ++line) {
    const std::size_t end = text.find('\n', start);
    if (end == std::string::npos) break;  // torn last line from a crash mid-write
    const std::string_view body(text.data() + start, end - start);
    start = end + 1;
    if (body.empty()) continue;
    try {
      records.push_back(nlohmann::json::parse(body));
    } catch (const nlohmann::json::parse_error& error) {
      throw std::runtime_error("metrics: " + file.string() + ":" + std::to_string(line) +
                               ": not a JSON object: " + error.what());
    }
  }
  return records;
}

}  // namespace loom::record
