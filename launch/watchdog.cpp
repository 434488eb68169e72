#include "launch/watchdog.h"

#include <fcntl.h>
#include <mpi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "launch/mpi_runtime.h"

namespace loom::launch {
namespace {

constexpr const char* kIdleActivity = "compute";
constexpr const char* kStoppedActivity = "stopped";
constexpr std::size_t kMaxListedRanks = 32;

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// "3.2" below ten seconds, "31" above: enough to tell a hang from a slow step.
std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, seconds < 10 ? "%.1f" : "%.0f", std::max(seconds, 0.0));
  return text;
}

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

std::string who(const Heartbeat& heartbeat) {
  return "rank " + std::to_string(heartbeat.rank) + " (host " + heartbeat.host + ", pid " +
         std::to_string(heartbeat.pid) + ")";
}

// Writes all of `text` with one write() so that lines of ranks sharing a file or a terminal
// do not interleave; O_APPEND makes each append atomic on a local filesystem.
bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Seconds since the Unix epoch of the file's last modification, or nullopt if it is absent.
std::optional<double> modified_at(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  return static_cast<double>(info.st_mtim.tv_sec) + static_cast<double>(info.st_mtim.tv_nsec) * 1e-9;
}

// Reads the whole file into `text`; returns 0 or the errno of the failure.
int read_file(const std::string& path, std::string& text) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int problem = errno;
      ::close(fd);
      return problem;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return 0;
}

template <typename T>
T required(const nlohmann::json& object, const char* key, const std::string& where, const char* expected) {
  auto found = object.find(key);
  bool ok = found != object.end();
  if (ok) {
    if constexpr (std::is_same_v<T, std::string>) {
      ok = found->is_string();
    } else if constexpr (std::is_integral_v<T>) {
      ok = found->is_number_integer();
    } else {
      ok = found->is_number();
    }
  }
  if (!ok) {
    throw std::runtime_error(where + ": heartbeat key \"" + key + "\" " +
                             (found == object.end() ? "missing" : "mistyped") + " (expected " + expected + ")");
  }
  return found->get<T>();
}

}  // namespace

std::string heartbeat_path(const std::string& dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank-%05d.json", rank);
  return (std::filesystem::path(dir) / name).string();
}

std::string heartbeat_json(const Heartbeat& heartbeat) {
  nlohmann::json object = {{"rank", heartbeat.rank},         {"host", heartbeat.host},
                           {"pid", heartbeat.pid},           {"step", heartbeat.step},
                           {"activity", heartbeat.activity}, {"activity_seconds", heartbeat.activity_seconds},
                           {"time", heartbeat.time}};
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Heartbeat parse_heartbeat(const std::string& text, const std::string& where) {
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& error) {
    throw std::runtime_error(where + ": not a heartbeat (invalid JSON: " + error.what() + ")");
  }
  if (!object.is_object()) throw std::runtime_error(where + ": not a heartbeat (expected a JSON object)");
  Heartbeat heartbeat;
  heartbeat.rank = required<int>(object, "rank", where, "an integer");
  heartbeat.host = required<std::string>(object, "host", where, "a string");
  heartbeat.pid = required<long>(object, "pid", where, "an integer");
  heartbeat.step = required<std::int64_t>(object, "step", where, "an integer");
  heartbeat.activity = required<std::string>(object, "activity", where, "a string");
  heartbeat.activity_seconds = required<double>(object, "activity_seconds", where, "a number");
  heartbeat.time = required<double>(object, "time", where, "a number (Unix seconds)");
  return heartbeat;
}

std::vector<RankHeartbeat> read_heartbeats(const std::string& dir, int world_size) {
  std::vector<RankHeartbeat> ranks(static_cast<std::size_t>(std::max(world_size, 0)));
  for (int rank = 0; rank < world_size; ++rank) {
    RankHeartbeat& entry = ranks[static_cast<std::size_t>(rank)];
    entry.rank = rank;
    const std::string path = heartbeat_path(dir, rank);
    std::string text;
    if (const int problem = read_file(path, text); problem != 0) {
      entry.problem = problem == ENOENT ? "no heartbeat file" : "cannot read " + path + ": " + std::strerror(problem);
      continue;
    }
    try {
      entry.heartbeat = parse_heartbeat(text, path);
      if (entry.heartbeat->rank != rank) {
        entry.problem = path + " holds rank " + std::to_string(entry.heartbeat->rank);
        entry.heartbeat.reset();
      }
    } catch (const std::runtime_error& error) {
      entry.problem = error.what();
    }
  }
  return ranks;
}

std::string watchdog_report(const Heartbeat& self, double stuck_s, const std::vector<RankHeartbeat>& ranks, double now,
                            double stale_s) {
  std::vector<std::string> behind;
  for (const RankHeartbeat& entry : ranks) {
    if (entry.rank == self.rank) continue;
    if (!entry.heartbeat) {
      behind.push_back("rank " + std::to_string(entry.rank) + ": " + entry.problem);
      continue;
    }
    const Heartbeat& other = *entry.heartbeat;
    const double age = now - other.time;
    if (age > stale_s) {
      behind.push_back(who(other) + ": no heartbeat for " + seconds_text(age) + " s (last: step " +
                       std::to_string(other.step) + " in " + quoted(other.activity) + ")");
    } else if (other.step != self.step || other.activity != self.activity) {
      behind.push_back(who(other) + " at step " + std::to_string(other.step) + " in " + quoted(other.activity) +
                       " for " + seconds_text(other.activity_seconds + std::max(age, 0.0)) + " s");
    }
  }
  std::string report = "loom: watchdog: " + who(self) + " stuck for " + seconds_text(stuck_s) + " s in " +
                       quoted(self.activity) + " at step " + std::to_string(self.step) + "; ranks behind: ";
  if (behind.empty() && ranks.size() <= 1) {
    report += "none (the only rank)";
  } else if (behind.empty()) {
    report += "none, all " + std::to_string(ranks.size()) + " ranks are at step " + std::to_string(self.step) + " in " +
              quoted(self.activity);
  }
  for (std::size_t i = 0; i < behind.size() && i < kMaxListedRanks; ++i) {
    report += (i ? "; " : "") + behind[i];
  }
  if (behind.size() > kMaxListedRanks) {
    report += "; and " + std::to_string(behind.size() - kMaxListedRanks) + " more ranks";
  }
  return report;
}

Watchdog::Watchdog(WatchdogOptions options) : options_(std::move(options)) {
  stack_[0] = kIdleActivity;
  publish(kIdleActivity);
  if (!(options_.timeout_s >= 0) || !std::isfinite(options_.timeout_s)) {
    throw std::invalid_argument("watchdog: timeout_s must be a finite number >= 0 (0 disables), got " +
                                std::to_string(options_.timeout_s));
  }
  if (!enabled()) return;
  if (!(options_.heartbeat_s > 0) || !std::isfinite(options_.heartbeat_s)) {
    throw std::invalid_argument("watchdog: heartbeat_s must be a finite number > 0, got " +
                                std::to_string(options_.heartbeat_s));
  }
  if (options_.dir.empty()) throw std::invalid_argument("watchdog: the heartbeat directory is empty");
  if (options_.world_size < 1 || options_.world_rank < 0 || options_.world_rank >= options_.world_size) {
    throw std::invalid_argument("watchdog: rank " + std::to_string(options_.world_rank) + " is not within a world of " +
                                std::to_string(options_.world_size));
  }
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  host_ = host;
  pid_ = static_cast<long>(::getpid());
  std::error_code error;
  std::filesystem::create_directories(options_.dir, error);
  if (error) {
    throw std::runtime_error("watchdog: cannot create the heartbeat directory " + options_.dir + ": " +
                             error.message());
  }
  write_heartbeat(snapshot());
  thread_ = std::thread(&Watchdog::run, this);
}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  Heartbeat last = snapshot();
  last.activity = kStoppedActivity;
  last.activity_seconds = 0;
  try {
    write_heartbeat(last);
  } catch (const std::runtime_error&) {
    // A destructor cannot report; the heartbeat only goes stale, which the next report says.
  }
}

void Watchdog::publish(const char* activity) noexcept {
  const std::uint64_t sequence = sequence_.load(std::memory_order_relaxed);
  sequence_.store(sequence + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  activity_.store(activity, std::memory_order_relaxed);
  since_ns_.store(steady_ns(), std::memory_order_relaxed);
  sequence_.store(sequence + 2, std::memory_order_release);
}

Watchdog::Current Watchdog::current() const noexcept {
  for (;;) {
    const std::uint64_t before = sequence_.load(std::memory_order_acquire);
    Current now{activity_.load(std::memory_order_relaxed), since_ns_.load(std::memory_order_relaxed)};
    std::atomic_thread_fence(std::memory_order_acquire);
    if ((before & 1) == 0 && sequence_.load(std::memory_order_relaxed) == before) return now;
    std::this_thread::yield();
  }
}

void Watchdog::begin(const char* activity) noexcept {
  ++depth_;
  if (depth_ < kMaxDepth) stack_[depth_] = activity;
  publish(activity);
}

void Watchdog::end() noexcept {
  if (depth_ == 0) return;
  --depth_;
  publish(stack_[std::min(depth_, kMaxDepth - 1)]);
}

Heartbeat Watchdog::snapshot() const {
  const Current now = current();
  Heartbeat heartbeat;
  heartbeat.rank = options_.world_rank;
  heartbeat.host = host_;
  heartbeat.pid = pid_;
  heartbeat.step = step_.load(std::memory_order_relaxed);
  heartbeat.activity = now.activity ? now.activity : kIdleActivity;
  heartbeat.activity_seconds = static_cast<double>(steady_ns() - now.since_ns) * 1e-9;
  heartbeat.time = wall_seconds();
  return heartbeat;
}

void Watchdog::write_heartbeat(const Heartbeat& heartbeat) {
  const std::string path = heartbeat_path(options_.dir, options_.world_rank);
  const std::string temporary = path + ".tmp";
  const std::string text = heartbeat_json(heartbeat) + "\n";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("watchdog: cannot write " + temporary + ": " + std::strerror(errno));
  const bool written = write_all(fd, text);
  const int saved_errno = errno;
  if (::close(fd) != 0 || !written) {
    throw std::runtime_error("watchdog: cannot write " + temporary + ": " +
                             std::strerror(written ? errno : saved_errno));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("watchdog: cannot rename " + temporary + " to " + path + ": " + std::strerror(errno));
  }
}

void Watchdog::run() {
  const auto period = std::chrono::duration<double>(options_.heartbeat_s);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, period, [this] { return stopping_; })) {
    lock.unlock();
    const Heartbeat self = snapshot();
    try {
      write_heartbeat(self);
    } catch (const std::runtime_error& error) {
      // Keep watching: the timeout still works without our own file; say it once.
      if (!warned_write_) std::fprintf(stderr, "loom: watchdog: warning: %s (will keep trying)\n", error.what());
      warned_write_ = true;
    }
    if (self.activity_seconds > options_.timeout_s) fire(self);
    lock.lock();
  }
}

void Watchdog::fire(const Heartbeat& self) {
  const std::string report_file = (std::filesystem::path(options_.dir) / "watchdog-report.txt").string();
  const std::string ending = "; ending the job with exit code " + std::to_string(kWatchdogExitCode) + " (timeout " +
                             seconds_text(options_.timeout_s) + " s, heartbeats in " + options_.dir + ")";
  const double now = wall_seconds();
  const double stuck_since = now - self.activity_seconds;
  const std::optional<double> reported_at = modified_at(report_file);
  if (reported_at && *reported_at >= stuck_since) {
    // Another rank, stuck in the same hang, has already read every heartbeat.
    write_all(STDERR_FILENO, "loom: watchdog: " + who(self) + " stuck for " + seconds_text(self.activity_seconds) +
                                 " s in " + quoted(self.activity) + " at step " + std::to_string(self.step) +
                                 "; see the report in " + report_file + ending + "\n");
  } else {
    const double stale_s = 3 * options_.heartbeat_s + 1;
    const std::string line =
        watchdog_report(self, self.activity_seconds, read_heartbeats(options_.dir, options_.world_size), now, stale_s) +
        ending + "\n";
    // stderr first: a rank that sees the file aborts the job, which may kill this one next.
    write_all(STDERR_FILENO, line);
    const int fd = ::open(report_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      write_all(fd, line);
      ::close(fd);
    }
  }
  if (options_.world_size > 1 && mpi_active()) MPI_Abort(MPI_COMM_WORLD, kWatchdogExitCode);
  std::_Exit(kWatchdogExitCode);
}

}  // namespace loom::launch
