#include "io/hf/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

namespace loom::io::hf {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; loom reads it in place");

namespace {

namespace fs = std::filesystem;

// safetensors itself refuses headers above 100 MB; a larger length means a corrupt file.
constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;

struct DTypeInfo {
  StDType dtype;
  const char* name;
  std::size_t size;
};

constexpr std::array<DTypeInfo, 15> kDTypes = {{{StDType::BOOL, "BOOL", 1},
                                                {StDType::U8, "U8", 1},
                                                {StDType::I8, "I8", 1},
                                                {StDType::I16, "I16", 2},
                                                {StDType::U16, "U16", 2},
                                                {StDType::F16, "F16", 2},
                                                {StDType::BF16, "BF16", 2},
                                                {StDType::I32, "I32", 4},
                                                {StDType::U32, "U32", 4},
                                                {StDType::F32, "F32", 4},
                                                {StDType::F64, "F64", 8},
                                                {StDType::I64, "I64", 8},
                                                {StDType::U64, "U64", 8},
                                                {StDType::F8_E4M3, "F8_E4M3", 1},
                                                {StDType::F8_E5M2, "F8_E5M2", 1}}};

const DTypeInfo& info(StDType dtype) {
  for (const auto& i : kDTypes) {
    if (i.dtype == dtype) return i;
  }
  throw std::logic_error("safetensors: dtype enum out of range");
}

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw std::runtime_error(path.string() + ": " + what);
}

std::string errno_text() { return std::strerror(errno); }

// Built with append: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string chains.
std::string byte_range(std::uint64_t begin, std::uint64_t end) {
  std::string text = "[";
  text += std::to_string(begin);
  text += ", ";
  text += std::to_string(end);
  text += ")";
  return text;
}

// One file written under "<path>.tmp" and renamed into place by commit(); removed again if
// the writer is destroyed before that.
class AtomicFile {
 public:
  explicit AtomicFile(const fs::path& path) : path_(path), tmp_(path.string() + ".tmp") {
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(tmp_, "cannot create: " + errno_text());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }

  void write(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, std::min<std::size_t>(bytes, std::size_t{1} << 30));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail(tmp_, "write failed: " + errno_text());
      p += n;
      bytes -= static_cast<std::size_t>(n);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) fail(tmp_, "fsync failed: " + errno_text());
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) fail(tmp_, "close failed: " + errno_text());
    std::error_code ec;
    fs::rename(tmp_, path_, ec);
    if (ec) {
      ::unlink(tmp_.c_str());
      fail(path_, "cannot rename " + tmp_.string() + " into place: " + ec.message());
    }
    // The rename is durable only once the directory entry is on disk.
    const fs::path dir = path_.has_parent_path() ? path_.parent_path() : fs::path(".");
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);
      ::close(dir_fd);
    }
  }

 private:
  fs::path path_;
  fs::path tmp_;
  int fd_ = -1;
};

std::uint64_t non_negative_integer(const nlohmann::json& value, const fs::path& path, const std::string& what) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  if (value.is_number_integer() && value.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(value.get<std::int64_t>());
  fail(path, what + " must be a non-negative integer, got " + value.dump());
}

}  // namespace

const char* st_dtype_name(StDType dtype) { return info(dtype).name; }
std::size_t st_dtype_size(StDType dtype) { return info(dtype).size; }

StDType parse_st_dtype(const std::string& name) {
  std::string known;
  for (const auto& i : kDTypes) {
    if (name == i.name) return i.dtype;
    known += known.empty() ? "" : ", ";
    known += i.name;
  }
  throw std::invalid_argument("unknown safetensors dtype '" + name + "'; known: " + known);
}

float f16_bits_to_f32(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t out = 0;
  if (exponent == 0x1f) {
    out = sign | 0x7f800000u | (mantissa << 13);  // inf, nan (payload kept)
  } else if (exponent != 0) {
    out = sign | ((exponent + 112u) << 23) | (mantissa << 13);  // rebias 15 → 127
  } else if (mantissa == 0) {
    out = sign;  // ±0
  } else {
    // Subnormal half: shift the leading one into the implicit position.
    std::uint32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    out = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(out);
}

float bf16_bits_to_f32(std::uint16_t bits) { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "cannot open safetensors file: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, "cannot stat: " + errno_text());
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    void* map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      ::close(fd);
      fail(path, "cannot map: " + errno_text());
    }
    mapping_ = static_cast<const std::uint8_t*>(map);
  }
  ::close(fd);
  try {
    parse_header();
  } catch (...) {
    release();
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() { release(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      data_start_(other.data_start_),
      entries_(std::move(other.entries_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    size_ = std::exchange(other.size_, 0);
    data_start_ = other.data_start_;
    entries_ = std::move(other.entries_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

void SafetensorsFile::release() {
  if (mapping_ != nullptr) ::munmap(const_cast<std::uint8_t*>(mapping_), size_);
  mapping_ = nullptr;
  size_ = 0;
}

void SafetensorsFile::parse_header() {
  if (size_ < 8) {
    fail(path_, "truncated safetensors file: " + std::to_string(size_) +
                    " bytes, but the format starts with an 8-byte header length");
  }
  std::uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, mapping_, 8);
  if (header_bytes > kMaxHeaderBytes) {
    fail(path_, "header length " + std::to_string(header_bytes) + " is implausible (safetensors allows at most " +
                    std::to_string(kMaxHeaderBytes) + "); not a safetensors file?");
  }
  if (header_bytes > size_ - 8) {
    fail(path_, "truncated safetensors file: the header claims " + std::to_string(header_bytes) +
                    " bytes but only " + std::to_string(size_ - 8) + " follow the length field");
  }
  data_start_ = 8 + static_cast<std::size_t>(header_bytes);
  const std::uint64_t data_bytes = size_ - data_start_;
  const auto* text = reinterpret_cast<const char*>(mapping_ + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_bytes);
  } catch (const nlohmann::json::exception& e) {
    fail(path_, std::string("safetensors header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path_, "safetensors header must be a JSON object, got " + std::string(header.type_name()));

  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(path_, "__metadata__ must be an object of strings");
      for (const auto& [key, text_value] : value.items()) {
        if (!text_value.is_string()) fail(path_, "__metadata__." + key + " must be a string, got " + text_value.dump());
        metadata_[key] = text_value.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!value.is_object()) fail(path_, where + ": entry must be an object with dtype, shape and data_offsets");
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(key)) fail(path_, where + ": missing \"" + key + "\"");
    }
    SafetensorsEntry entry;
    entry.name = name;
    if (!value["dtype"].is_string()) fail(path_, where + ": dtype must be a string, got " + value["dtype"].dump());
    try {
      entry.dtype = parse_st_dtype(value["dtype"].get<std::string>());
    } catch (const std::invalid_argument& e) {
      fail(path_, where + ": " + e.what());
    }
    if (!value["shape"].is_array()) fail(path_, where + ": shape must be an array, got " + value["shape"].dump());
    std::uint64_t bytes = st_dtype_size(entry.dtype);
    for (const auto& d : value["shape"]) {
      const std::uint64_t extent = non_negative_integer(d, path_, where + ": shape entry");
      if (extent > static_cast<std::uint64_t>(INT64_MAX) || __builtin_mul_overflow(bytes, extent, &bytes)) {
        fail(path_, where + ": shape " + value["shape"].dump() + " is too large");
      }
      entry.shape.push_back(static_cast<std::int64_t>(extent));
    }
    const nlohmann::json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2) {
      fail(path_, where + ": data_offsets must be [begin, end], got " + offsets.dump());
    }
    entry.begin = non_negative_integer(offsets[0], path_, where + ": data_offsets begin");
    entry.end = non_negative_integer(offsets[1], path_, where + ": data_offsets end");
    if (entry.end < entry.begin) fail(path_, where + ": data_offsets " + offsets.dump() + " end before they begin");
    if (entry.end > data_bytes) {
      fail(path_, where + ": data_offsets " + offsets.dump() + " run past the end of the data (" +
                      std::to_string(data_bytes) + " bytes): truncated file or bad offsets");
    }
    if (entry.end - entry.begin != bytes) {
      fail(path_, where + ": data_offsets " + offsets.dump() + " hold " + std::to_string(entry.end - entry.begin) +
                      " bytes, but " + value["dtype"].get<std::string>() + " " + shape_string(entry.shape) + " needs " +
                      std::to_string(bytes));
    }
    entries_.push_back(std::move(entry));
  }

  std::sort(entries_.begin(), entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : entries_) {
    if (e.begin < covered) {
      fail(path_, "tensors '" + previous->name + "' " + byte_range(previous->begin, previous->end) + " and '" + e.name +
                      "' " + byte_range(e.begin, e.end) + " overlap (bad data_offsets)");
    }
    if (e.begin > covered) {
      fail(path_, "data bytes " + byte_range(covered, e.begin) + " before tensor '" + e.name +
                      "' belong to no tensor (bad data_offsets)");
    }
    covered = e.end;
    previous = &e;
  }
  if (covered != data_bytes) {
    fail(path_, "data bytes " + byte_range(covered, data_bytes) +
                    " after the last tensor belong to no tensor (bad data_offsets or trailing garbage)");
  }
  for (std::size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const std::uint8_t> SafetensorsFile::raw_bytes(const SafetensorsEntry& entry) const {
  return {mapping_ + data_start_ + entry.begin, static_cast<std::size_t>(entry.end - entry.begin)};
}

Tensor SafetensorsFile::read_f32(const std::string& name) const {
  const SafetensorsEntry* entry = find(name);
  if (entry == nullptr) fail(path_, "has no tensor '" + name + "'");
  Tensor out = Tensor::empty(entry->shape, DType::F32);
  float* dst = out.data<float>();
  const std::uint8_t* src = raw_bytes(*entry).data();
  const auto n = static_cast<std::size_t>(out.numel());
  switch (entry->dtype) {
    case StDType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case StDType::F64:
      for (std::size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      break;
    case StDType::F16:
    case StDType::BF16: {
      const bool half = entry->dtype == StDType::F16;
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = half ? f16_bits_to_f32(bits) : bf16_bits_to_f32(bits);
      }
      break;
    }
    default:
      fail(path_, "tensor '" + name + "' has dtype " + st_dtype_name(entry->dtype) +
                      "; loom reads F32, F16, BF16 and F64 tensors as weights");
  }
  return out;
}

void write_safetensors(const fs::path& path, std::span<const SafetensorsTensor> tensors,
                       const std::map<std::string, std::string>& metadata, StDType dtype) {
  if (dtype != StDType::F32 && dtype != StDType::BF16) {
    throw std::invalid_argument(std::string("write_safetensors: dtype ") + st_dtype_name(dtype) +
                                " is not supported; loom writes F32 or BF16");
  }
  const std::size_t element = st_dtype_size(dtype);
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const SafetensorsTensor& t : tensors) {
    if (t.name == "__metadata__" || header.contains(t.name)) {
      throw std::invalid_argument(path.string() + ": tensor name '" + t.name + "' is reserved or used twice");
    }
    if (t.tensor.dtype() != DType::F32 || t.tensor.device() != Device::CPU) {
      throw std::invalid_argument(path.string() + ": tensor '" + t.name + "' must be f32 on the CPU, is " +
                                  t.tensor.describe());
    }
    const std::uint64_t bytes = static_cast<std::uint64_t>(t.tensor.numel()) * element;
    header[t.name] = {{"dtype", st_dtype_name(dtype)}, {"shape", t.tensor.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t header_bytes = text.size();

  AtomicFile file(path);
  file.write(&header_bytes, 8);
  file.write(text.data(), text.size());
  std::vector<std::uint16_t> chunk;
  for (const SafetensorsTensor& t : tensors) {
    const float* values = t.tensor.data<float>();
    const auto n = static_cast<std::size_t>(t.tensor.numel());
    if (dtype == StDType::F32) {
      file.write(values, n * sizeof(float));
      continue;
    }
    constexpr std::size_t kChunk = std::size_t{1} << 20;
    for (std::size_t start = 0; start < n; start += kChunk) {
      const std::size_t count = std::min(kChunk, n - start);
      chunk.resize(count);
      for (std::size_t i = 0; i < count; ++i) chunk[i] = to_bf16(values[start + i]).bits;
      file.write(chunk.data(), count * 2);
    }
  }
  file.commit();
}

void write_safetensors_raw(const fs::path& path, std::span<const SafetensorsRawTensor> tensors,
                           const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const SafetensorsRawTensor& t : tensors) {
    if (t.name == "__metadata__" || header.contains(t.name)) {
      throw std::invalid_argument(path.string() + ": tensor name '" + t.name + "' is reserved or used twice");
    }
    const std::uint64_t bytes = static_cast<std::uint64_t>(shape_numel(t.shape)) * st_dtype_size(t.dtype);
    if (bytes != t.bytes.size()) {
      throw std::invalid_argument(path.string() + ": tensor '" + t.name + "' (" + st_dtype_name(t.dtype) + " " +
                                  shape_string(t.shape) + ") needs " + std::to_string(bytes) + " bytes, got " +
                                  std::to_string(t.bytes.size()));
    }
    header[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t header_bytes = text.size();

  AtomicFile file(path);
  file.write(&header_bytes, 8);
  file.write(text.data(), text.size());
  for (const SafetensorsRawTensor& t : tensors) file.write(t.bytes.data(), t.bytes.size());
  file.commit();
}

void write_file_atomically(const fs::path& path, std::string_view content) {
  AtomicFile file(path);
  file.write(content.data(), content.size());
  file.commit();
}

}  // namespace loom::io::hf
