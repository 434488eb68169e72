#include "compress/export/gguf_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace loom::compress::gguf {
namespace {

namespace fs = std::filesystem;

enum ValueType : std::uint32_t { kUint32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7, kString = 8, kArray = 9 };

template <typename T> void put(std::vector<std::uint8_t>& out, T value) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

void put_string(std::vector<std::uint8_t>& out, const std::string& text) {
  put<std::uint64_t>(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
}

std::uint64_t aligned(std::uint64_t offset) { return (offset + kAlignment - 1) / kAlignment * kAlignment; }

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw std::runtime_error(path.string() + ": " + what + " (" + std::strerror(errno) + ")");
}

// "<path>.tmp" written through a file descriptor, fsynced and renamed over `path` by commit();
// removed if abandoned.
class TempFile {
 public:
  explicit TempFile(const fs::path& path) : path_(path), tmp_(path.string() + ".tmp") {
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(tmp_, "cannot create the GGUF file");
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  void write(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, bytes);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail(tmp_, "write failed (disk full?)");
      p += n, bytes -= static_cast<std::size_t>(n), written_ += static_cast<std::uint64_t>(n);
    }
  }
  void pad_to_alignment() {
    static const std::uint8_t zeros[kAlignment] = {};
    write(zeros, aligned(written_) - written_);
  }
  std::uint64_t written() const { return written_; }
  void commit() {
    if (::fsync(fd_) != 0) fail(tmp_, "fsync failed");
    if (::close(std::exchange(fd_, -1)) != 0) fail(tmp_, "close failed");
    std::error_code ec;
    fs::rename(tmp_, path_, ec);
    if (ec) {
      ::unlink(tmp_.c_str());
      throw std::runtime_error(path_.string() + ": cannot rename " + tmp_.string() + " into place: " + ec.message());
    }
  }

 private:
  fs::path path_, tmp_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
};

}  // namespace

void GgufFile::begin_kv(const std::string& key, std::uint32_t value_type) {
  if (!keys_.insert(key).second) throw std::invalid_argument("GGUF metadata key '" + key + "' added twice");
  put_string(kv_bytes_, key);
  put<std::uint32_t>(kv_bytes_, value_type);
  ++kv_count_;
}

void GgufFile::add_u32(const std::string& key, std::uint32_t value) {
  begin_kv(key, kUint32);
  put(kv_bytes_, value);
}

void GgufFile::add_f32(const std::string& key, float value) {
  begin_kv(key, kFloat32);
  put(kv_bytes_, value);
}

void GgufFile::add_bool(const std::string& key, bool value) {
  begin_kv(key, kBool);
  put<std::uint8_t>(kv_bytes_, value ? 1 : 0);
}

void GgufFile::add_string(const std::string& key, const std::string& value) {
  begin_kv(key, kString);
  put_string(kv_bytes_, value);
}

void GgufFile::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  begin_kv(key, kArray);
  put<std::uint32_t>(kv_bytes_, kString);
  put<std::uint64_t>(kv_bytes_, values.size());
  for (const std::string& v : values) put_string(kv_bytes_, v);
}

void GgufFile::add_i32_array(const std::string& key, const std::vector<std::int32_t>& values) {
  begin_kv(key, kArray);
  put<std::uint32_t>(kv_bytes_, kInt32);
  put<std::uint64_t>(kv_bytes_, values.size());
  for (const std::int32_t v : values) put(kv_bytes_, v);
}

void GgufFile::add_tensor(const std::string& name, const std::vector<std::int64_t>& shape, GgufType type,
                          RowSource rows) {
  if (!tensor_names_.insert(name).second) throw std::invalid_argument("GGUF tensor '" + name + "' added twice");
  if (shape.empty() || shape.size() > 2) {
    throw std::invalid_argument("GGUF tensor '" + name + "': loom writes 1-D and 2-D tensors, got " +
                                std::to_string(shape.size()) + " dimensions");
  }
  const std::int64_t row_count = shape.size() == 2 ? shape[0] : 1;
  std::uint64_t bytes = 0;
  try {
    bytes = row_bytes(type, shape.back()) * static_cast<std::uint64_t>(row_count);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("GGUF tensor '" + name + "': " + e.what());
  }
  data_bytes_ = aligned(data_bytes_);
  tensors_.push_back(TensorEntry{name, shape, type, std::move(rows), data_bytes_, bytes});
  data_bytes_ += bytes;
}

std::int64_t GgufFile::write(const fs::path& path) const {
  std::vector<std::uint8_t> head;
  head.insert(head.end(), {'G', 'G', 'U', 'F'});
  put<std::uint32_t>(head, kVersion);
  put<std::uint64_t>(head, tensors_.size());
  put<std::uint64_t>(head, kv_count_);
  head.insert(head.end(), kv_bytes_.begin(), kv_bytes_.end());
  for (const TensorEntry& t : tensors_) {
    put_string(head, t.name);
    put<std::uint32_t>(head, static_cast<std::uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put<std::uint64_t>(head, static_cast<std::uint64_t>(*d));
    put<std::uint32_t>(head, ggml_type_id(t.type));
    put<std::uint64_t>(head, t.offset);
  }

  TempFile file(path);
  file.write(head.data(), head.size());
  file.pad_to_alignment();
  const std::uint64_t data_start = file.written();
  std::vector<float> row;
  std::vector<std::uint8_t> encoded;
  for (const TensorEntry& t : tensors_) {
    if (file.written() - data_start != t.offset) {
      throw std::logic_error("GGUF writer: tensor '" + t.name + "' would not land at its declared offset");
    }
    const std::int64_t n = t.shape.back();
    const std::int64_t row_count = t.shape.size() == 2 ? t.shape[0] : 1;
    row.resize(static_cast<std::size_t>(n));
    encoded.resize(row_bytes(t.type, n));
    for (std::int64_t r = 0; r < row_count; ++r) {
      t.rows(r, row.data());
      encode_row(t.type, row.data(), n, encoded.data());
      file.write(encoded.data(), encoded.size());
    }
    file.pad_to_alignment();
  }
  const auto size = static_cast<std::int64_t>(file.written());
  file.commit();
  return size;
}

}  // namespace loom::compress::gguf
