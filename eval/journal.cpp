#include "eval/journal.h"

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <unistd.h>

namespace loom::eval {
namespace fs = std::filesystem;
namespace {

// Whether `line` is a journal header ({"journal": fingerprint}) of these settings.
bool is_header_of(const std::string& line, const std::string& fingerprint) {
  const nlohmann::json header = nlohmann::json::parse(line, nullptr, false);
  return !header.is_discarded() && header.is_object() && header.value("journal", std::string()) == fingerprint;
}

}  // namespace

Journal::Journal(const fs::path& dir, int dp_rank, int dp_size, const std::string& fingerprint) {
  fs::create_directories(dir);
  file_ = dir / ("dp-" + std::to_string(dp_rank) + "-of-" + std::to_string(dp_size) + ".jsonl");
  // A file from an earlier incarnation with another fingerprint is replaced: its records could
  // never be used with these settings.
  bool fresh = !fs::exists(file_);
  if (!fresh) {
    std::ifstream in(file_);
    std::string first;
    std::getline(in, first);
    fresh = !is_header_of(first, fingerprint);
  }
  if (!fresh) {
    // Cut a torn last line (a kill mid-write) so the next record starts on a line of its own.
    std::ifstream in(file_, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t end = text.rfind('\n');
    if (end + 1 != text.size()) fs::resize_file(file_, end == std::string::npos ? 0 : end + 1);
  }
  out_ = std::fopen(file_.c_str(), fresh ? "w" : "a");
  if (out_ == nullptr) throw std::runtime_error(file_.string() + ": cannot open the journal: " + std::strerror(errno));
  if (fresh) append({nlohmann::json{{"journal", fingerprint}}});
}

Journal::~Journal() {
  if (out_ != nullptr) std::fclose(out_);
}

void Journal::append(const std::vector<nlohmann::json>& records) {
  std::string text;
  for (const nlohmann::json& r : records) text += r.dump() + "\n";
  if (std::fwrite(text.data(), 1, text.size(), out_) != text.size() || std::fflush(out_) != 0 ||
      ::fsync(::fileno(out_)) != 0) {
    throw std::runtime_error(file_.string() + ": cannot write the journal: " + std::strerror(errno));
  }
}

JournalContents read_journals(const fs::path& dir, const std::string& fingerprint) {
  JournalContents contents;
  std::error_code error;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    if (entry.is_regular_file() && entry.path().extension() == ".jsonl") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    std::ifstream in(file);
    std::string line;
    if (!std::getline(in, line)) continue;
    if (!is_header_of(line, fingerprint)) {
      ++contents.stale_files;
      continue;
    }
    ++contents.files;
    while (std::getline(in, line)) {
      nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
      // Only the last line can be torn (a kill mid-write): skipped, its request runs again.
      if (record.is_discarded()) {
        ++contents.torn_lines;
        continue;
      }
      contents.records.push_back(std::move(record));
    }
  }
  return contents;
}

}  // namespace loom::eval
