#include "io/record/run_record.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <sstream>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <thread>

#ifndef LOOM_SOURCE_DIR
#define LOOM_SOURCE_DIR ""
#endif

namespace loom::record {
namespace {

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& path) {
  throw std::runtime_error(what + " \"" + path.string() + "\": " + std::strerror(errno));
}

void write_all(int fd, std::string_view contents, const std::filesystem::path& path) {
  while (!contents.empty()) {
    const ssize_t wrote = ::write(fd, contents.data(), contents.size());
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) fail("write_file_atomic: cannot write", path);
    contents.remove_prefix(static_cast<std::size_t>(wrote));
  }
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command and returns its stdout, or nullopt when it exits non-zero.
std::optional<std::string> command_output(const std::string& command) {
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return std::nullopt;
  std::string output;
  char buffer[256];
  while (const std::size_t got = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, got);
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return output;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("model name")) continue;
    const std::size_t colon = line.find(':');
    if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
  }
  return "unknown";
}

}  // namespace

void write_file_atomic(const std::filesystem::path& file, std::string_view contents) {
  const std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : ".";
  std::string temp_name = ".";
  temp_name += file.filename().string();
  temp_name += ".tmp." + std::to_string(::getpid());
  const std::filesystem::path temp = dir / temp_name;
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("write_file_atomic: cannot create", temp);
  try {
    write_all(fd, contents, temp);
    if (::fsync(fd) != 0) fail("write_file_atomic: cannot sync", temp);
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(temp.c_str());
    fail("write_file_atomic: cannot close", temp);
  }
  if (::rename(temp.c_str(), file.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temp.c_str());
    errno = saved;
    fail("write_file_atomic: cannot rename " + temp.string() + " to", file);
  }
  // The rename itself is durable only once the directory entry is synced.
  if (const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_run_record(const std::filesystem::path& run_dir, const nlohmann::json& record) {
  std::error_code error;
  std::filesystem::create_directories(run_dir, error);
  if (error)
    throw std::runtime_error("run record: cannot create run directory \"" + run_dir.string() +
                             "\": " + error.message());
  write_file_atomic(run_dir / "run.json",
                    record.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

nlohmann::json read_run_record(const std::filesystem::path& run_dir) {
  const std::filesystem::path file = run_dir / "run.json";
  std::ifstream in(file);
  if (!in) throw std::runtime_error("run record: cannot open \"" + file.string() + "\"");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& error) {
    throw std::runtime_error("run record: \"" + file.string() + "\" is not valid JSON: " +
                             error.what());
  }
}

std::string git_commit(const std::filesystem::path& source_dir) {
  const std::filesystem::path dir = source_dir.empty() ? LOOM_SOURCE_DIR : source_dir;
  if (dir.empty()) return "unknown";
  const std::string git = "git -C " + shell_quote(dir.string());
  const auto head = command_output(git + " rev-parse HEAD 2>/dev/null");
  if (!head || head->size() < 40) return "unknown";
  std::string commit = head->substr(0, 40);
  const auto changes = command_output(git + " status --porcelain --untracked-files=no 2>/dev/null");
  if (changes && !changes->empty()) commit += "-dirty";
  return commit;
}

nlohmann::json host_info() {
  char hostname[256] = {};
  ::gethostname(hostname, sizeof hostname - 1);
  struct utsname name {};
  ::uname(&name);
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGE_SIZE);
  return {{"hostname", hostname},
          {"cpu_cores", std::thread::hardware_concurrency()},
          {"cpu_model", cpu_model()},
          {"memory_bytes", pages > 0 && page_size > 0
                               ? static_cast<std::int64_t>(pages) * page_size
                               : std::int64_t{0}},
          {"os", std::string(name.sysname) + " " + name.release},
          {"machine", name.machine}};
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::ostringstream out;
  out << std::put_time(&utc, "%Y-%m-%dT%H:%M:%SZ");
  return out.str();
}

}  // namespace loom::record
