// The per-rank journal that lets a killed evaluation resume without redoing finished work,
// even with another number of ranks.
//
// Each writer (one rank per data-parallel replica) appends JSON lines to
// <dir>/dp-<r>-of-<n>.jsonl: first a header {"journal": fingerprint}, then one record per
// finished request ({"task", "doc", "part", …results}). Every append is flushed and fsynced
// before the next batch starts, so a kill loses at most the batch in flight; a torn last line
// is ignored when read back. Reading takes the records of every file in the directory whose
// header carries the same fingerprint (a digest of the model, tokenizer and task settings),
// whatever layout wrote them; files of another fingerprint are left alone and counted.
//
// Threads: one. Ranks: a Journal on the writer rank of each replica; read_journals anywhere.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::eval {

class Journal {
 public:
  Journal(const std::filesystem::path& dir, int dp_rank, int dp_size, const std::string& fingerprint);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Appends the records, then flushes and fsyncs. Throws std::runtime_error naming the file.
  void append(const std::vector<nlohmann::json>& records);

 private:
  std::filesystem::path file_;
  std::FILE* out_ = nullptr;
};

struct JournalContents {
  std::vector<nlohmann::json> records;
  int files = 0;        // files read with the fingerprint
  int stale_files = 0;  // files of another fingerprint (another model or settings), ignored
  std::int64_t torn_lines = 0;
};

JournalContents read_journals(const std::filesystem::path& dir, const std::string& fingerprint);

}  // namespace loom::eval
