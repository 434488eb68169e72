// The watchdog without MPI: heartbeat files written, read back and parsed (with errors that
// name the file and key), the report's choice of ranks behind (lower step, other activity,
// stale or missing heartbeat, capped list), and a live Watchdog's heartbeats following
// begin/end/set_step, nesting and the final "stopped". The hang itself (report + exit 86
// under mpirun) is tests/dist/test_watchdog.py.
#define BOOST_TEST_MODULE watchdog
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "launch/watchdog.h"

using namespace loom::launch;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("loom-watchdog-" + std::to_string(::getpid()) + "-" + name)) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

Heartbeat beat(int rank, std::int64_t step, const std::string& activity, double activity_seconds, double time) {
  return Heartbeat{rank, "node" + std::to_string(rank), 1000 + rank, step, activity, activity_seconds, time};
}

RankHeartbeat entry(const Heartbeat& heartbeat) { return RankHeartbeat{heartbeat.rank, heartbeat, ""}; }

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// Polls the rank's heartbeat file until `accept` holds (or 5 s pass); returns the last read.
template <typename Accept>
Heartbeat wait_for_heartbeat(const std::string& dir, int rank, Accept accept) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::optional<Heartbeat> last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto ranks = read_heartbeats(dir, rank + 1);
    last = ranks[static_cast<std::size_t>(rank)].heartbeat;
    if (last && accept(*last)) return *last;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  BOOST_FAIL("no heartbeat of rank " << rank << " in " << dir << " met the condition within 5 s");
  return *last;
}

}  // namespace

BOOST_AUTO_TEST_CASE(heartbeat_json_round_trips) {
  const Heartbeat written{3, "n17", 4242, 11, "dp all_reduce \"quoted\"", 40.25, 1718000000.5};
  const std::string text = heartbeat_json(written);
  BOOST_TEST(text.find("\"rank\":3") != std::string::npos);
  BOOST_TEST(text.find('\n') == std::string::npos);
  const Heartbeat read = parse_heartbeat(text, "rank-00003.json");
  BOOST_TEST(read.rank == 3);
  BOOST_TEST(read.host == "n17");
  BOOST_TEST(read.pid == 4242);
  BOOST_TEST(read.step == 11);
  BOOST_TEST(read.activity == written.activity);
  BOOST_TEST(read.activity_seconds == 40.25);
  BOOST_TEST(read.time == 1718000000.5);
  BOOST_TEST(heartbeat_path("/run/hb", 3) == "/run/hb/rank-00003.json");
}

BOOST_AUTO_TEST_CASE(parse_errors_name_the_file_and_key) {
  auto message_of = [](const std::string& text) {
    try {
      parse_heartbeat(text, "dir/rank-00001.json");
    } catch (const std::runtime_error& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  const std::string missing =
      message_of(R"({"rank":1,"host":"h","pid":2,"activity":"a","activity_seconds":1,"time":2})");
  BOOST_TEST(missing == "dir/rank-00001.json: heartbeat key \"step\" missing (expected an integer)");
  const std::string mistyped =
      message_of(R"({"rank":1,"host":"h","pid":2,"step":"7","activity":"a","activity_seconds":1,"time":2})");
  BOOST_TEST(mistyped == "dir/rank-00001.json: heartbeat key \"step\" mistyped (expected an integer)");
  BOOST_TEST(message_of("{\"rank\":1,").find("dir/rank-00001.json: not a heartbeat (invalid JSON") == 0);
  BOOST_TEST(message_of("[1, 2]") == "dir/rank-00001.json: not a heartbeat (expected a JSON object)");
}

BOOST_AUTO_TEST_CASE(read_heartbeats_reports_missing_bad_and_misplaced_files) {
  TempDir dir("read");
  fs::create_directories(dir.path);
  write_text(heartbeat_path(dir.path, 0), heartbeat_json(beat(0, 5, "forward", 1.5, 100.0)));
  write_text(heartbeat_path(dir.path, 1), "{not json");
  write_text(heartbeat_path(dir.path, 3), heartbeat_json(beat(2, 5, "forward", 1.5, 100.0)));
  const auto ranks = read_heartbeats(dir.path, 4);
  BOOST_TEST_REQUIRE(ranks.size() == 4u);
  BOOST_TEST(ranks[0].heartbeat.has_value());
  BOOST_TEST(ranks[0].heartbeat->step == 5);
  BOOST_TEST(!ranks[1].heartbeat.has_value());
  BOOST_TEST(ranks[1].problem.find("not a heartbeat (invalid JSON") != std::string::npos);
  BOOST_TEST(ranks[2].problem == "no heartbeat file");
  BOOST_TEST(!ranks[3].heartbeat.has_value());
  BOOST_TEST(ranks[3].problem == heartbeat_path(dir.path, 3) + " holds rank 2");
}

BOOST_AUTO_TEST_CASE(report_names_ranks_behind_and_skips_ranks_waiting_alike) {
  const double now = 5000.0;
  const Heartbeat self = beat(0, 12, "dp all_reduce", 31.2, now);
  const std::vector<RankHeartbeat> ranks = {
      entry(self),
      entry(beat(1, 11, "forward", 38.0, now - 2.0)),        // lower step, other activity: 40 s now
      entry(beat(2, 12, "dp all_reduce", 30.0, now - 1.0)),  // waiting with us: not listed
      entry(beat(3, 12, "dp all_reduce", 2.0, now - 35.0)),  // stale
      RankHeartbeat{4, std::nullopt, "no heartbeat file"},
      entry(beat(5, 12, "checkpoint write", 3.0, now)),  // same step, other activity
  };
  const std::string report = watchdog_report(self, 31.2, ranks, now, 2.5);
  BOOST_TEST(report ==
             "loom: watchdog: rank 0 (host node0, pid 1000) stuck for 31 s in \"dp all_reduce\" at step 12; "
             "ranks behind: rank 1 (host node1, pid 1001) at step 11 in \"forward\" for 40 s; "
             "rank 3 (host node3, pid 1003): no heartbeat for 35 s (last: step 12 in \"dp all_reduce\"); "
             "rank 4: no heartbeat file; "
             "rank 5 (host node5, pid 1005) at step 12 in \"checkpoint write\" for 3.0 s");
}

BOOST_AUTO_TEST_CASE(report_says_none_when_every_rank_waits_alike_and_caps_long_lists) {
  const double now = 100.0;
  const Heartbeat self = beat(0, 7, "tp all_gather", 4.0, now);
  std::vector<RankHeartbeat> same = {entry(self), entry(beat(1, 7, "tp all_gather", 4.1, now))};
  BOOST_TEST(watchdog_report(self, 4.0, same, now, 2.0) ==
             "loom: watchdog: rank 0 (host node0, pid 1000) stuck for 4.0 s in \"tp all_gather\" at step 7; "
             "ranks behind: none, all 2 ranks are at step 7 in \"tp all_gather\"");
  BOOST_TEST(watchdog_report(self, 4.0, {entry(self)}, now, 2.0).ends_with("ranks behind: none (the only rank)"));

  std::vector<RankHeartbeat> many = {entry(self)};
  for (int rank = 1; rank <= 40; ++rank) many.push_back(RankHeartbeat{rank, std::nullopt, "no heartbeat file"});
  const std::string report = watchdog_report(self, 4.0, many, now, 2.0);
  BOOST_TEST(report.find("rank 32: no heartbeat file; and 8 more ranks") != std::string::npos);
  BOOST_TEST(report.find("rank 33:") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(live_heartbeats_follow_activities_steps_and_stop) {
  TempDir dir("live");
  const std::string path = dir.path.string();
  {
    Watchdog watchdog(WatchdogOptions{path, 2, 3, 100.0, 0.05});
    BOOST_TEST(watchdog.enabled());
    const Heartbeat first = wait_for_heartbeat(path, 2, [](const Heartbeat&) { return true; });
    BOOST_TEST(first.activity == "compute");
    BOOST_TEST(first.pid == static_cast<long>(::getpid()));
    BOOST_TEST(first.rank == 2);

    watchdog.set_step(41);
    watchdog.begin("io (test)");
    const Heartbeat io = wait_for_heartbeat(
        path, 2, [](const Heartbeat& h) { return h.activity == "io (test)" && h.activity_seconds >= 0.2; });
    BOOST_TEST(io.step == 41);
    BOOST_TEST(io.activity_seconds < 5.0);
    BOOST_TEST(
        std::abs(io.time - std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()) <
        5.0);
    {
      Watchdog::Activity inner(watchdog, "pp recv");
      wait_for_heartbeat(path, 2, [](const Heartbeat& h) { return h.activity == "pp recv"; });
    }
    // end() of the inner activity returns to the outer one, with its clock restarted.
    const Heartbeat back = wait_for_heartbeat(path, 2, [](const Heartbeat& h) { return h.activity == "io (test)"; });
    BOOST_TEST(back.activity_seconds < io.activity_seconds + 1.0);
    watchdog.end();
    watchdog.end();  // unbalanced: ignored, stays in "compute"
    wait_for_heartbeat(path, 2, [](const Heartbeat& h) { return h.activity == "compute"; });
  }
  const auto ranks = read_heartbeats(path, 3);
  BOOST_TEST_REQUIRE(ranks[2].heartbeat.has_value());
  BOOST_TEST(ranks[2].heartbeat->activity == "stopped");
  BOOST_TEST(ranks[2].heartbeat->step == 41);
  BOOST_TEST(!fs::exists(heartbeat_path(path, 2) + ".tmp"));
  BOOST_TEST(!fs::exists(dir.path / "watchdog-report.txt"));
}

BOOST_AUTO_TEST_CASE(nesting_deeper_than_the_stack_still_unwinds_to_compute) {
  TempDir dir("deep");
  const std::string path = dir.path.string();
  Watchdog watchdog(WatchdogOptions{path, 0, 1, 100.0, 0.02});
  const char* labels[] = {"a", "b", "c"};
  for (int i = 0; i < 40; ++i) watchdog.begin(labels[i % 3]);
  const Heartbeat deep = wait_for_heartbeat(path, 0, [](const Heartbeat& h) { return h.activity != "compute"; });
  BOOST_TEST(deep.activity == "a");  // the 40th begin
  for (int i = 0; i < 40; ++i) watchdog.end();
  const Heartbeat top = wait_for_heartbeat(path, 0, [](const Heartbeat& h) { return h.activity != "a"; });
  BOOST_TEST(top.activity == "compute");
}

BOOST_AUTO_TEST_CASE(zero_timeout_disables_and_bad_options_throw) {
  TempDir dir("options");
  {
    Watchdog off(WatchdogOptions{dir.path.string(), 0, 1, 0.0, 0.01});
    BOOST_TEST(!off.enabled());
    off.begin("anything");
    off.end();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  BOOST_TEST(!fs::exists(dir.path));
  BOOST_CHECK_THROW(Watchdog(WatchdogOptions{dir.path.string(), 0, 1, -1.0, 1.0}), std::invalid_argument);
  BOOST_CHECK_THROW(Watchdog(WatchdogOptions{dir.path.string(), 0, 1, 10.0, 0.0}), std::invalid_argument);
  BOOST_CHECK_THROW(Watchdog(WatchdogOptions{"", 0, 1, 10.0, 1.0}), std::invalid_argument);
  BOOST_CHECK_THROW(Watchdog(WatchdogOptions{dir.path.string(), 2, 2, 10.0, 1.0}), std::invalid_argument);
  // A directory that cannot be created (its parent is a file) names the path.
  fs::create_directories(dir.path);
  write_text((dir.path / "file").string(), "x");
  try {
    Watchdog(WatchdogOptions{(dir.path / "file" / "hb").string(), 0, 1, 10.0, 1.0});
    BOOST_FAIL("expected std::runtime_error");
  } catch (const std::runtime_error& error) {
    BOOST_TEST(std::string(error.what())
                   .find("cannot create the heartbeat directory " + (dir.path / "file" / "hb").string()) !=
               std::string::npos);
  }
}
