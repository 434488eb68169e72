// Progress line formatting, ETA from the moving average, and when lines are printed,
// all against an injected clock so the output is exact.
#define BOOST_TEST_MODULE record_progress
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "io/record/progress.h"

using loom::record::Progress;
using loom::record::ProgressOptions;

namespace {

struct FakeClock {
  double now = 1000.0;
  std::function<double()> function() {
    return [this] { return now; };
  }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

BOOST_AUTO_TEST_CASE(durations_and_numbers) {
  BOOST_TEST(Progress::format_duration(0) == "0s");
  BOOST_TEST(Progress::format_duration(12.4) == "12s");
  BOOST_TEST(Progress::format_duration(59.6) == "1m00s");
  BOOST_TEST(Progress::format_duration(185) == "3m05s");
  BOOST_TEST(Progress::format_duration(2 * 3600 + 7 * 60 + 20) == "2h07m");
  BOOST_TEST(Progress::format_duration(3 * 86400 + 4 * 3600 + 100) == "76h01m");
  BOOST_TEST(Progress::format_duration(5 * 86400 + 4 * 3600 + 100) == "5d04h");
  BOOST_TEST(Progress::format_duration(-1) == "?");
  BOOST_TEST(Progress::format_number(2.34567) == "2.346");
  BOOST_TEST(Progress::format_number(3e-4) == "0.0003");
  BOOST_TEST(Progress::format_number(812) == "812");
  BOOST_TEST(Progress::format_number(12034) == "12.0k");
  BOOST_TEST(Progress::format_number(3.4e6) == "3.4M");
  BOOST_TEST(Progress::format_number(std::nan("")) == "nan");
}

BOOST_AUTO_TEST_CASE(terminal_line_with_bar_and_eta) {
  FakeClock clock;
  std::ostringstream out;
  Progress progress(100, "sft", {.out = &out, .tty = true, .clock = clock.function()});
  clock.now += 4.0;  // 10 steps in 4 s: 0.4 s/step
  progress.update(10, {{"loss", 2.34567}, {"tok/s", 12034}});
  BOOST_TEST(out.str() ==
             "\rsft [##------------------]   10/100  loss 2.346  tok/s 12.0k  elapsed 4s  eta 36s"
             "\x1b[K");
  BOOST_TEST(*progress.eta_seconds() == 36.0);
  out.str("");
  clock.now += 0.05;  // faster than the redraw limit: nothing drawn
  progress.update(11, {});
  BOOST_TEST(out.str().empty());
  clock.now += 100;
  progress.update(100, {{"loss", 1.5}});
  progress.finish();
  const std::string last = out.str();
  BOOST_TEST(last.starts_with("\rsft [####################]  100/100  loss 1.5  elapsed 1m44s  eta 0s"));
  BOOST_TEST(last.ends_with("\x1b[K\n"));
  progress.finish();  // idempotent
  BOOST_TEST(out.str() == last);
}

BOOST_AUTO_TEST_CASE(eta_follows_a_moving_average_of_step_time) {
  FakeClock clock;
  std::ostringstream out;
  Progress progress(1000, "x",
                    {.out = &out, .tty = false, .clock = clock.function(), .smoothing = 0.5});
  BOOST_TEST(!progress.eta_seconds().has_value());
  clock.now += 1.0;
  progress.update(1);  // 1 s/step
  BOOST_TEST(*progress.eta_seconds() == 999.0);
  clock.now += 3.0;
  progress.update(2);  // 3 s/step: average 0.5*3 + 0.5*1 = 2
  BOOST_TEST(*progress.eta_seconds() == 998 * 2.0);
  clock.now += 4.0;
  progress.update(4);  // 2 s/step over two steps: average stays 2
  BOOST_TEST(*progress.eta_seconds() == 996 * 2.0);
}

BOOST_AUTO_TEST_CASE(plain_lines_every_n_steps_plus_first_and_last) {
  FakeClock clock;
  std::ostringstream out;
  Progress progress(30, "train",
                    {.out = &out,
                     .tty = false,
                     .plain_every_steps = 10,
                     .plain_every_seconds = 0,
                     .clock = clock.function()});
  for (int step = 1; step <= 30; ++step) {
    clock.now += 0.4;
    progress.update(step, {{"loss", 3.0 - step * 0.05}});
  }
  progress.finish();
  const std::vector<std::string> lines = lines_of(out.str());
  BOOST_TEST_REQUIRE(lines.size() == 4u);
  BOOST_TEST(lines[0] == "train step  1/30 (3%)  loss 2.95  elapsed 0s  eta 12s");
  BOOST_TEST(lines[1] == "train step 11/30 (36%)  loss 2.45  elapsed 4s  eta 8s");
  BOOST_TEST(lines[2] == "train step 21/30 (70%)  loss 1.95  elapsed 8s  eta 4s");
  BOOST_TEST(lines[3] == "train step 30/30 (100%)  loss 1.5  elapsed 12s  eta 0s");
  BOOST_TEST(out.str().find('\r') == std::string::npos);
}

BOOST_AUTO_TEST_CASE(plain_lines_by_time) {
  FakeClock clock;
  std::ostringstream out;
  Progress progress(1000, "eval",
                    {.out = &out, .tty = false, .plain_every_seconds = 10, .clock = clock.function()},
                    500);  // resumed at step 500
  for (int step = 501; step <= 540; ++step) {
    clock.now += 1.0;
    progress.update(step);
  }
  const std::vector<std::string> lines = lines_of(out.str());
  // Steps 501 (first), 511, 521, 531: every 10 s of the fake clock.
  BOOST_TEST_REQUIRE(lines.size() == 4u);
  BOOST_TEST(lines[0] == "eval step  501/1000 (50%)  elapsed 1s  eta 8m19s");
  BOOST_TEST(lines[3] == "eval step  531/1000 (53%)  elapsed 31s  eta 7m49s");
}
