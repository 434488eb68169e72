#include "io/data/fingerprint.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace loom::io {

void Fingerprint::add_bytes(const void* data, std::size_t size) { hash_.update(data, size); }

namespace {

void add_file(Fingerprint& fp, const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open for reading (fingerprint)");
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    fp.add_bytes(buffer.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw std::runtime_error(file.string() + ": read error while fingerprinting");
}

}  // namespace

std::uint64_t fingerprint_path(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  Fingerprint fp;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      fp.add(file.filename().string());
      add_file(fp, file);
    }
    return fp.value();
  }
  if (!fs::exists(path, ec)) throw std::runtime_error(path.string() + ": no such file (fingerprint)");
  add_file(fp, path);
  return fp.value();
}

std::string fingerprint_hex(std::uint64_t value) {
  char text[19];
  std::snprintf(text, sizeof text, "0x%016llx", static_cast<unsigned long long>(value));
  return text;
}

std::uint64_t parse_fingerprint_hex(std::string_view text) {
  if (text.size() != 18 || text.substr(0, 2) != "0x") {
    throw std::invalid_argument("fingerprint \"" + std::string(text) +
                                "\": expected 0x followed by 16 hex digits");
  }
  std::uint64_t value = 0;
  for (char c : text.substr(2)) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else throw std::invalid_argument("fingerprint \"" + std::string(text) + "\": bad hex digit");
    value = (value << 4) | static_cast<std::uint64_t>(digit);
  }
  return value;
}

}  // namespace loom::io
