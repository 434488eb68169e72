// Run records: `<run_dir>/run.json`, what a run was — resolved config, code version, data
// fingerprints, layout, host — written atomically so a reader never sees half a file,
// and the helpers that gather those facts.
//
//   nlohmann::json run = {{"config", config.to_json()},
//                         {"git_commit", loom::record::git_commit()},
//                         {"host", loom::record::host_info()},
//                         {"data", {{"train", loom::record::file_fingerprint(train_file)}}}};
//   loom::record::write_run_record(run_dir, run);
//
// Threads: the functions are reentrant. Ranks: call them on one rank (rank 0); git_commit
// starts a `git` child process, so call it once at startup, not in the training loop.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace loom::record {

// Writes `contents` to `file` through a temporary file in the same directory, fsync, then
// rename over `file` and fsync of the directory: afterwards `file` holds either the old or
// the new contents, never a mix. Throws std::runtime_error naming the path.
void write_file_atomic(const std::filesystem::path& file, std::string_view contents);

// `<run_dir>/run.json` (pretty-printed), atomically; creates run_dir if needed.
void write_run_record(const std::filesystem::path& run_dir, const nlohmann::json& record);

// Reads `<run_dir>/run.json`; throws std::runtime_error naming the file.
nlohmann::json read_run_record(const std::filesystem::path& run_dir);

// The commit of the source tree: `git rev-parse HEAD` run in `source_dir` (by default the
// tree this library was built from, the LOOM_SOURCE_DIR define), with "-dirty" appended
// when tracked files have uncommitted changes; "unknown" when git or the repository is
// not there (an installed binary on a compute node).
std::string git_commit(const std::filesystem::path& source_dir = {});

// The current time in UTC, "2026-11-21T15:58:27Z".
std::string utc_now();

// {"hostname", "cpu_cores", "cpu_model", "memory_bytes", "os", "machine"}.
nlohmann::json host_info();

}  // namespace loom::record
