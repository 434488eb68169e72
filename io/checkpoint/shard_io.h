// One rank's shard of a step checkpoint: writing it (with fsync and a read-back check of
// every piece's XXH64) and reading boxes of global tensors back from the shards an index
// names (resharding: any box of any tensor, whatever layout wrote it).
//
// Threads: HDF5 is not thread-safe in Debian's build, so every function here takes
// h5::global_mutex() for its HDF5 calls; the asynchronous saver's thread and the main thread
// may call them. Ranks: nothing here communicates.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint/format.h"
#include "io/h5/h5_check.h"

namespace loom::io::ckpt {

// A box of a global tensor to save, read from `data` (box.numel() contiguous f32).
struct SavePiece {
  std::string tensor;
  Shape shape;
  Box box;
  const float* data = nullptr;
};

struct ShardWrite {
  std::filesystem::path dir;  // the checkpoint's temporary directory
  int rank = 0;
  std::int64_t step = 0;
  std::string save_id;         // the same on every rank of one save; ties shards to their save
  std::vector<SavePiece> pieces;
  nlohmann::json rank_state = nlohmann::json::object();  // small per-rank state (RNG streams)
};

struct ShardTimes {
  std::int64_t bytes = 0;
  double write_s = 0, sync_s = 0, verify_s = 0;
};

// Writes shard-<rank>.h5 (when there are pieces), fsyncs it, re-reads every piece and
// compares its XXH64, then writes shard-<rank>.json (its manifest) atomically. Throws
// std::runtime_error naming the file (and the tensor for a mismatch).
ShardTimes write_shard(const ShardWrite& shard);

// Reads the stored pieces of one checkpoint directory. Opens each shard file once.
class ShardReader {
 public:
  explicit ShardReader(std::filesystem::path dir) : dir_(std::move(dir)) {}
  // Reads the part of `piece` inside `want` into `out`, a row-major [want.rows, want.cols]
  // buffer (only the intersection is written).
  void read_into(const StoredPiece& piece, const Box& want, float* out);
  // Reads the whole piece into a reused scratch buffer and checks its XXH64; throws naming
  // the file and the tensor.
  void verify_piece(const StoredPiece& piece);
  // Checks data already read (the whole piece, e.g. straight into a model) against its XXH64.
  void check_data(const StoredPiece& piece, const float* data) const;
  // Where a piece's data starts in its file, when it is stored contiguously as f32
  // little-endian (how write_shard stores it); nullopt otherwise.
  std::optional<std::int64_t> raw_offset(const StoredPiece& piece);
  // The root attributes "step" and "save_id" of a shard file.
  std::pair<std::int64_t, std::string> shard_identity(const std::string& file);

 private:
  hid_t file(const std::string& name);
  std::filesystem::path dir_;
  std::map<std::string, h5::H5Handle> files_;
  std::unique_ptr<float[]> scratch_;
  std::int64_t scratch_size_ = 0;
};

}  // namespace loom::io::ckpt
