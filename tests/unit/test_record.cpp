// Run records: metrics.jsonl lines, atomic run.json, XXH64 fingerprints, git and host facts.
#define BOOST_TEST_MODULE record
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "io/record/fingerprint.h"
#include "io/record/metrics_log.h"
#include "io/record/run_record.h"

namespace fs = std::filesystem;
using namespace loom::record;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("loom-test-record-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static inline int counter = 0;
};

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

BOOST_AUTO_TEST_CASE(metrics_lines_are_written_immediately_and_parse) {
  TempDir dir;
  const fs::path run_dir = dir.path / "runs" / "a";
  {
    MetricsLog log(run_dir);
    BOOST_TEST(log.path() == run_dir / "metrics.jsonl");
    log.write({{"step", 1}, {"loss", 2.5}, {"lr", 3e-4}});
    // Visible to a reader before the log is closed: nothing waits in a user-space buffer.
    BOOST_TEST(slurp(log.path()) == "{\"loss\":2.5,\"lr\":0.0003,\"step\":1}\n");
    log.write({{"step", 2}, {"loss", std::nan("")}, {"note", "bad\xff utf8"}});
    BOOST_CHECK_THROW(log.write(nlohmann::json::array({1, 2})), std::invalid_argument);
  }
  {
    MetricsLog resumed(run_dir);  // appends, as a resumed run does
    resumed.write({{"step", 3}, {"loss", 2.25}});
  }
  const std::vector<nlohmann::json> records = read_metrics(run_dir / "metrics.jsonl");
  BOOST_TEST_REQUIRE(records.size() == 3u);
  BOOST_TEST(records[0]["step"].get<int>() == 1);
  BOOST_TEST(records[0]["lr"].get<double>() == 3e-4);
  BOOST_TEST(records[1]["loss"].is_null());  // NaN has no JSON form
  BOOST_TEST(records[2]["loss"].get<double>() == 2.25);
}

BOOST_AUTO_TEST_CASE(metrics_from_many_threads_never_interleave) {
  TempDir dir;
  {
    MetricsLog log(dir.path);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&log, t] {
        for (int i = 0; i < 200; ++i)
          log.write({{"thread", t}, {"i", i}, {"pad", std::string(300, 'x')}});
      });
    for (std::thread& thread : threads) thread.join();
  }
  BOOST_TEST(read_metrics(dir.path / "metrics.jsonl").size() == 800u);
}

BOOST_AUTO_TEST_CASE(torn_last_line_is_skipped_other_garbage_is_an_error) {
  TempDir dir;
  const fs::path file = dir.path / "metrics.jsonl";
  std::ofstream(file) << "{\"step\":1}\n{\"step\":2}\n{\"step\":3,\"lo";
  const auto records = read_metrics(file);
  BOOST_TEST(records.size() == 2u);
  std::ofstream(file) << "{\"step\":1}\nnot json\n";
  try {
    read_metrics(file);
    BOOST_FAIL("garbage line accepted");
  } catch (const std::runtime_error& error) {
    BOOST_TEST(std::string(error.what()).starts_with("metrics: " + file.string() + ":2: "));
  }
}

BOOST_AUTO_TEST_CASE(run_record_round_trips_and_leaves_no_temp_files) {
  TempDir dir;
  const fs::path run_dir = dir.path / "run";
  write_run_record(run_dir, {{"config", {{"train", {{"lr", 0.001}}}}}, {"step", 1}});
  write_run_record(run_dir, {{"config", {{"train", {{"lr", 0.002}}}}}, {"step", 2}});
  const nlohmann::json back = read_run_record(run_dir);
  BOOST_TEST(back["step"].get<int>() == 2);
  BOOST_TEST(back["config"]["train"]["lr"].get<double>() == 0.002);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(run_dir)) names.push_back(entry.path().filename());
  BOOST_TEST(names == std::vector<std::string>{"run.json"});
}

BOOST_AUTO_TEST_CASE(readers_never_see_a_partial_run_record) {
  TempDir dir;
  const nlohmann::json small = {{"version", "small"}};
  const nlohmann::json big = {{"version", "big"}, {"pad", std::string(1 << 20, 'y')}};
  write_run_record(dir.path, small);
  std::atomic<bool> done = false;
  std::thread writer([&] {
    for (int i = 0; i < 40; ++i) write_run_record(dir.path, i % 2 ? small : big);
    done = true;
  });
  int reads = 0, bad = 0;
  while (!done) {
    const std::string text = slurp(dir.path / "run.json");
    const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
    if (parsed.is_discarded() || !parsed.contains("version")) ++bad;
    ++reads;
  }
  writer.join();
  BOOST_TEST(bad == 0);
  BOOST_TEST(reads > 0);
}

BOOST_AUTO_TEST_CASE(failed_run_record_write_keeps_the_old_file_and_names_the_path) {
  TempDir dir;
  // run.json as a non-empty directory: the final rename must fail.
  fs::create_directories(dir.path / "run.json" / "inside");
  try {
    write_run_record(dir.path, {{"step", 1}});
    BOOST_FAIL("rename over a directory succeeded");
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    BOOST_TEST(message.find((dir.path / "run.json").string()) != std::string::npos, message);
  }
  BOOST_TEST(fs::is_directory(dir.path / "run.json" / "inside"));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path)) ++entries;
  BOOST_TEST(entries == 1u);  // the temporary file was removed
}

BOOST_AUTO_TEST_CASE(xxh64_matches_the_reference_implementation) {
  // Values from libxxhash 0.8.1 (XXH64, seed 0).
  BOOST_TEST(hex64(xxh64("")) == "ef46db3751d8e999");
  BOOST_TEST(hex64(xxh64("a")) == "d24ec4f1a98c6e5b");
  BOOST_TEST(hex64(xxh64("abc")) == "44bc2cf5ad770999");
  BOOST_TEST(hex64(xxh64("The quick brown fox jumps over the lazy dog")) == "0b242d361fda71bc");
  std::string kib;
  for (int r = 0; r < 4; ++r)
    for (int b = 0; b < 256; ++b) kib += static_cast<char>(b);
  kib += "xyz";
  BOOST_TEST(hex64(xxh64(kib)) == "e146cb31b65bc21a");
  // Streaming in odd-sized pieces gives the one-shot value.
  Xxh64 stream;
  for (std::size_t at = 0; at < kib.size(); at += 7)
    stream.update(kib.data() + at, std::min<std::size_t>(7, kib.size() - at));
  BOOST_TEST(stream.digest() == xxh64(kib));
}

BOOST_AUTO_TEST_CASE(file_fingerprint_changes_with_one_byte) {
  TempDir dir;
  const fs::path file = dir.path / "tokens.bin";
  std::string bytes(3 * (1 << 20) + 5, '\0');  // spans several read chunks
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 % 251);
  std::ofstream(file, std::ios::binary) << bytes;
  const std::string before = file_fingerprint(file);
  BOOST_TEST(before == hex64(xxh64(bytes)));
  BOOST_TEST(before.size() == 16u);
  bytes[2 * (1 << 20) + 17] ^= 1;
  std::ofstream(file, std::ios::binary) << bytes;
  BOOST_TEST(file_fingerprint(file) != before);
  BOOST_CHECK_THROW(file_fingerprint(dir.path / "missing.bin"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(git_commit_and_host_info) {
  TempDir dir;
  BOOST_TEST(git_commit(dir.path) == "unknown");  // not a repository
  const std::string commit = git_commit();         // the tree loom was built from
  const bool unknown = commit == "unknown";
  const bool hex = commit.size() >= 40 &&
                   commit.substr(0, 40).find_first_not_of("0123456789abcdef") == std::string::npos;
  BOOST_TEST((unknown || hex), commit);
  if (hex) BOOST_TEST((commit.size() == 40 || commit.substr(40) == "-dirty"), commit);
  const nlohmann::json host = host_info();
  BOOST_TEST(!host["hostname"].get<std::string>().empty());
  BOOST_TEST(host["cpu_cores"].get<int>() >= 1);
  BOOST_TEST(host["memory_bytes"].get<std::int64_t>() > (std::int64_t{64} << 20));
  BOOST_TEST(host["os"].get<std::string>().starts_with("Linux "));
}
