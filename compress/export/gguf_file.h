// GgufFile: a writer of the GGUF container, version 3, as the published specification
// (ggml docs/gguf.md) lays it out. All integers little-endian:
//
//   u32 magic "GGUF" (bytes 47 47 55 46), u32 version = 3,
//   u64 tensor_count, u64 metadata_kv_count,
//   metadata_kv_count × { string key, u32 value_type, value }
//       string = u64 length + UTF-8 bytes (no terminator);
//       array  = u32 element type + u64 count + elements;
//       value types: UINT8 0, INT8 1, UINT16 2, INT16 3, UINT32 4, INT32 5, FLOAT32 6, BOOL 7,
//                    STRING 8, ARRAY 9, UINT64 10, INT64 11, FLOAT64 12
//   tensor_count × { string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset }
//       ne[0] is the innermost (contiguous) dimension: a row-major [rows, cols] matrix has
//       ne = {cols, rows}; offset is relative to the start of the data section and a
//       multiple of general.alignment;
//   zero padding to general.alignment (from the start of the file), then the data section:
//   each tensor's bytes, zero-padded to the alignment (gguf-py pads after the last one too).
//
// Tensors are declared with a function that produces their rows, and produced only while the
// file is written, one at a time, so a large model is never held twice in memory.
//
// The file is written as "<path>.tmp", fsynced and renamed into place; errors name the file.
// Ownership: a GgufFile owns what was added. Not thread-safe; one writer per file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "compress/export/gguf_blocks.h"

namespace loom::compress::gguf {

inline constexpr std::uint32_t kVersion = 3;
inline constexpr std::uint32_t kAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT, written as general.alignment

class GgufFile {
 public:
  // Fills `n` values (one row of the tensor's innermost dimension) for row index `row`.
  using RowSource = std::function<void(std::int64_t row, float* out)>;

  // Metadata, in the order added. Throws std::invalid_argument for a repeated key.
  void add_u32(const std::string& key, std::uint32_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string(const std::string& key, const std::string& value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_i32_array(const std::string& key, const std::vector<std::int32_t>& values);

  // A tensor of row-major `shape` (1-D or 2-D) stored as `type`: rows() rows of shape.back()
  // values each, produced by `rows` when the file is written. Throws std::invalid_argument for
  // a repeated name or a row length `type` cannot store.
  void add_tensor(const std::string& name, const std::vector<std::int64_t>& shape, GgufType type, RowSource rows);

  // Writes everything; returns the file's size in bytes. Throws std::runtime_error naming the
  // file when it cannot be written.
  std::int64_t write(const std::filesystem::path& path) const;

 private:
  struct TensorEntry {
    std::string name;
    std::vector<std::int64_t> shape;
    GgufType type;
    RowSource rows;
    std::uint64_t offset = 0;  // in the data section
    std::uint64_t bytes = 0;
  };
  void begin_kv(const std::string& key, std::uint32_t value_type);

  std::vector<std::uint8_t> kv_bytes_;
  std::uint64_t kv_count_ = 0;
  std::set<std::string> keys_;
  std::vector<TensorEntry> tensors_;
  std::set<std::string> tensor_names_;
  std::uint64_t data_bytes_ = 0;
};

}  // namespace loom::compress::gguf
