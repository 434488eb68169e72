// Reading and writing the safetensors format, the tensor file of Hugging Face models:
//
//   [8 bytes]  N, the header length, unsigned little-endian
//   [N bytes]  JSON: {"<tensor>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//                     ..., "__metadata__": {"<key>": "<string>", ...}}
//              (the writer pads it with spaces so the data starts on an 8-byte boundary)
//   [rest]     the tensors' bytes, row-major little-endian; data_offsets are relative to the
//              start of this part and must tile it exactly (no gaps, no overlaps).
//
// SafetensorsFile maps a file read-only and validates the whole header on open (JSON,
// dtypes, shapes, offsets against the file size), so a truncated or corrupt file is refused
// before any tensor is read; every error names the file and, where one is at fault, the
// tensor. Tensors of dtype F32, F16, BF16 and F64 are read as f32; other dtypes are listed
// but refused when read. write_safetensors writes f32 or bf16 to "<file>.tmp", fsyncs it and
// renames it into place.
//
// Ownership: a SafetensorsFile owns its mapping (move-only); tensors it returns are copies.
// Threads: reads from one open file are safe from several threads. No MPI.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace loom::io::hf {

// The safetensors dtypes loom knows the element size of.
enum class StDType : std::uint8_t { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 };

const char* st_dtype_name(StDType dtype);
std::size_t st_dtype_size(StDType dtype);
// Throws std::invalid_argument listing the known names.
StDType parse_st_dtype(const std::string& name);

// IEEE half and bfloat16 bit patterns to f32 (exact: both widen without rounding).
float f16_bits_to_f32(std::uint16_t bits);
float bf16_bits_to_f32(std::uint16_t bits);

struct SafetensorsEntry {
  std::string name;
  StDType dtype = StDType::F32;
  Shape shape;
  std::uint64_t begin = 0;  // byte offsets into the data part, [begin, end)
  std::uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws std::runtime_error "<path>: <what>" on any defect.
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Tensors in data order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const SafetensorsEntry* find(const std::string& name) const;

  // The tensor as a fresh f32 CPU tensor of its shape. Throws std::runtime_error naming the
  // file and tensor when it is absent or of a dtype that is not a float type.
  Tensor read_f32(const std::string& name) const;
  // The stored bytes of a tensor, whatever its dtype (valid while the file is open).
  std::span<const std::uint8_t> raw_bytes(const SafetensorsEntry& entry) const;

 private:
  void parse_header();
  void release();

  std::filesystem::path path_;
  const std::uint8_t* mapping_ = nullptr;
  std::size_t size_ = 0;
  std::size_t data_start_ = 0;  // 8 + header length
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct SafetensorsTensor {
  std::string name;
  Tensor tensor;  // f32, CPU, contiguous
};

// Writes `tensors` in the given order as `dtype` (F32, or BF16 rounded to nearest even) with
// the string `metadata`. Throws std::invalid_argument for another dtype, a non-f32 tensor or
// a duplicate name, std::runtime_error naming the file when writing fails.
void write_safetensors(const std::filesystem::path& path, std::span<const SafetensorsTensor> tensors,
                       const std::map<std::string, std::string>& metadata, StDType dtype = StDType::F32);

// A tensor already in its stored form (integer codes, packed words, scales): `bytes` is
// numel(shape) · st_dtype_size(dtype) little-endian bytes owned by the caller, which keeps them
// alive during the call. Quantized exports (compress/export) write int8 / int32 / int64 this way.
struct SafetensorsRawTensor {
  std::string name;
  StDType dtype = StDType::F32;
  Shape shape;
  std::span<const std::uint8_t> bytes;
};

// Writes `tensors` in the given order, any dtype, with the string `metadata` (atomically, as
// write_safetensors). Throws std::invalid_argument naming the tensor when its byte count does not
// match its shape and dtype or its name is reserved or repeated.
void write_safetensors_raw(const std::filesystem::path& path, std::span<const SafetensorsRawTensor> tensors,
                           const std::map<std::string, std::string>& metadata);

// Writes `content` to "<path>.tmp", fsyncs it, renames it over `path` and fsyncs the folder
// (config.json and index files go through this too).
void write_file_atomically(const std::filesystem::path& path, std::string_view content);

}  // namespace loom::io::hf
