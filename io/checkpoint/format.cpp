#include "io/checkpoint/format.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "io/record/fingerprint.h"

namespace loom::io::ckpt {
namespace {

std::string padded(std::int64_t value, int width) {
  char text[32];
  std::snprintf(text, sizeof text, "%0*lld", width, static_cast<long long>(value));
  return text;
}

[[noreturn]] void throw_errno(const std::string& what, const std::filesystem::path& path) {
  throw std::runtime_error(what + " " + path.string() + ": " + std::strerror(errno));
}

}  // namespace

std::string step_dir_name(std::int64_t step) { return "step-" + padded(step, 8); }
std::string shard_file_name(int rank) { return "shard-" + padded(rank, 5) + ".h5"; }
std::string manifest_file_name(int rank) { return "shard-" + padded(rank, 5) + ".json"; }

std::optional<std::int64_t> parse_step_dir(const std::string& name) {
  if (name.size() < 6 || name.rfind("step-", 0) != 0) return std::nullopt;
  std::int64_t step = 0;
  for (std::size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

Box whole_box(const Shape& shape) {
  if (shape.empty() || shape.size() > 2) {
    throw std::invalid_argument("checkpoint tensors are 1-D or 2-D, got " + shape_string(shape));
  }
  return Box{0, shape[0], 0, shape.size() == 2 ? shape[1] : 1};
}

std::optional<Box> intersect(const Box& a, const Box& b) {
  const std::int64_t r0 = std::max(a.row0, b.row0), r1 = std::min(a.row0 + a.rows, b.row0 + b.rows);
  const std::int64_t c0 = std::max(a.col0, b.col0), c1 = std::min(a.col0 + a.cols, b.col0 + b.cols);
  if (r0 >= r1 || c0 >= c1) return std::nullopt;
  return Box{r0, r1 - r0, c0, c1 - c0};
}

nlohmann::json to_json(const StoredPiece& piece) {
  return {{"tensor", piece.tensor},
          {"shape", piece.shape},
          {"box", {piece.box.row0, piece.box.rows, piece.box.col0, piece.box.cols}},
          {"file", piece.file},
          {"dataset", piece.dataset},
          {"xxh64", record::hex64(piece.xxh64)}};
}

StoredPiece piece_from_json(const nlohmann::json& json, const std::string& where) {
  try {
    StoredPiece piece;
    piece.tensor = json.at("tensor").get<std::string>();
    piece.shape = json.at("shape").get<Shape>();
    const auto box = json.at("box").get<std::vector<std::int64_t>>();
    if (box.size() != 4) throw std::runtime_error("\"box\" must have 4 entries [row0, rows, col0, cols]");
    piece.box = Box{box[0], box[1], box[2], box[3]};
    piece.file = json.at("file").get<std::string>();
    piece.dataset = json.at("dataset").get<std::string>();
    piece.xxh64 = std::stoull(json.at("xxh64").get<std::string>(), nullptr, 16);
    return piece;
  } catch (const std::exception& e) {
    throw std::runtime_error(where + ": malformed piece " + json.dump().substr(0, 200) + ": " + e.what());
  }
}

void fsync_path(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open for fsync", path);
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  if (rc != 0) throw_errno("fsync failed on", path);
}

void write_file_atomically(const std::filesystem::path& file, const std::string& text) {
  const std::filesystem::path tmp = file.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno("cannot create", tmp);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      ::close(fd);
      errno = saved;
      throw_errno("cannot write", tmp);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    throw_errno("fsync failed on", tmp);
  }
  if (::close(fd) != 0) throw_errno("cannot close", tmp);
  if (::rename(tmp.c_str(), file.c_str()) != 0) throw_errno("cannot rename " + tmp.string() + " to", file);
  fsync_path(file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path());
}

std::string read_text_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw_errno("cannot open", file);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw_errno("cannot read", file);
  return text.str();
}

std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& root) {
  std::vector<std::pair<std::int64_t, std::filesystem::path>> found;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(root, error)) {
    if (!entry.is_directory()) continue;
    if (const auto step = parse_step_dir(entry.path().filename().string())) found.emplace_back(*step, entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::filesystem::path> dirs;
  for (auto& [step, dir] : found) dirs.push_back(std::move(dir));
  return dirs;
}

}  // namespace loom::io::ckpt
