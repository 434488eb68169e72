// The sharded step-checkpoint format (docs/checkpoint-format.md, version kFormatVersion):
//
//   <root>/step-00000120/            one committed checkpoint per step
//            index.json              every tensor's global shape and its pieces (shard file,
//                                    dataset, box, XXH64), the training state, config, layout
//            shard-00003.h5          what world rank 3 alone holds (absent when it holds nothing
//                                    unique); one dataset per piece
//            shard-00003.json        rank 3's manifest (its pieces and per-rank state)
//            view.h5                 virtual datasets presenting every tensor whole
//   <root>/step-00000140.tmp-<id>/   a save in progress (never read)
//   <root>/latest                    "step-00000140\n", replaced atomically after each commit
//
// Tensors are named "model/<parameter>", "optim/exp_avg/<parameter>" and
// "optim/exp_avg_sq/<parameter>". A piece is a box of a tensor seen as 2-D [rows, cols]
// (1-D tensors as [n, 1]); the pieces of a tensor tile it exactly once.
//
// Pure value types and names: safe from any thread; nothing here does I/O except the
// filesystem helpers at the end.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.h"

namespace loom::io::ckpt {

inline constexpr int kFormatVersion = 1;
inline constexpr const char* kFormatName = "loom-checkpoint";
inline constexpr const char* kIndexFile = "index.json";
inline constexpr const char* kViewFile = "view.h5";
inline constexpr const char* kLatestFile = "latest";

std::string step_dir_name(std::int64_t step);  // "step-00000120"
std::string shard_file_name(int rank);         // "shard-00003.h5"
std::string manifest_file_name(int rank);      // "shard-00003.json"
// The step of a committed checkpoint directory name; nullopt for anything else (a .tmp save).
std::optional<std::int64_t> parse_step_dir(const std::string& name);

struct Box {
  std::int64_t row0 = 0, rows = 0, col0 = 0, cols = 0;
  std::int64_t numel() const { return rows * cols; }
  bool operator==(const Box&) const = default;
};
// [rows, cols] of a global tensor's 2-D view.
Box whole_box(const Shape& shape);
std::optional<Box> intersect(const Box& a, const Box& b);

// A piece of a global tensor as stored: which file and dataset hold it, and its checksum.
struct StoredPiece {
  std::string tensor;
  Shape shape;  // the global tensor's shape
  Box box;
  std::string file;     // shard file name within the checkpoint directory
  std::string dataset;  // path within the shard file
  std::uint64_t xxh64 = 0;
};
nlohmann::json to_json(const StoredPiece& piece);
// Throws std::runtime_error naming `where` and the missing or mistyped key.
StoredPiece piece_from_json(const nlohmann::json& json, const std::string& where);

// Filesystem helpers. Each throws std::runtime_error naming the path and errno's message.
void fsync_path(const std::filesystem::path& path);  // a file or a directory
// Writes `text` to `file` atomically: "<file>.tmp", fsync, rename, fsync of the directory.
void write_file_atomically(const std::filesystem::path& file, const std::string& text);
std::string read_text_file(const std::filesystem::path& file);

// Committed checkpoint directories under root, newest step first (empty when root is absent).
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& root);

}  // namespace loom::io::ckpt
