// Committing, verifying, pruning and reading step checkpoints (format.h). The writer side is
// collective only through files: every rank writes its shard into the save's temporary
// directory (shard_io.h), the trainer agrees that all shards are written, and world rank 0
// calls commit_checkpoint, which merges the manifests into index.json, writes view.h5,
// fsyncs, and publishes the step by one atomic rename, then updates `latest` and prunes.
//
// Threads: functions take h5::global_mutex() around HDF5 calls. Ranks: commit_checkpoint and
// prune on rank 0 only; verify and CheckpointReader on any rank (read-only).
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint/format.h"
#include "io/checkpoint/shard_io.h"

namespace loom::io::ckpt {

struct Retention {
  int keep_last = 3;            // newest committed checkpoints kept (>= 1)
  std::int64_t keep_every = 0;  // also keep steps that are multiples of this forever (0: none)
};

struct CommitRequest {
  std::filesystem::path root;     // the checkpoints directory
  std::filesystem::path tmp_dir;  // where the shards were written
  std::int64_t step = 0;
  int world_size = 1;
  std::string save_id;
  // Merged into index.json: "state" (counters, loader, schedule), "config", "layout",
  // "model_config" (also written as view.h5's root attribute "model_config").
  nlohmann::json meta = nlohmann::json::object();
};

// The temporary directory of a save: "<root>/step-00000120.tmp-<save_id>".
std::filesystem::path temporary_dir(const std::filesystem::path& root, std::int64_t step, const std::string& save_id);

// Returns the committed directory. Throws std::runtime_error naming the file at fault (a
// missing manifest, a manifest of another save, pieces that do not tile a tensor); the
// temporary directory is then left for the caller to remove and the previous checkpoint
// stays the newest.
std::filesystem::path commit_checkpoint(const CommitRequest& request, const Retention& retention);

// Deletes committed checkpoints that the retention policy drops (never the newest) and
// temporary directories of saves that never committed. Returns the paths removed.
std::vector<std::filesystem::path> prune(const std::filesystem::path& root, const Retention& retention,
                                         bool remove_temporaries);

// Reads and checks index.json (format name and version). Throws std::runtime_error naming it.
nlohmann::json read_index(const std::filesystem::path& dir);

// Problems found in a checkpoint directory, each naming the file and, for data, the tensor:
// a missing or unreadable index, a missing or truncated shard, a shard of another save or
// step, a piece whose XXH64 differs. Checks the shards whose position in the index is
// congruent to `part` modulo `parts` (ranks split the work); an empty list means valid.
std::vector<std::string> verify_checkpoint(const std::filesystem::path& dir, int part = 0, int parts = 1);

// One box of a global tensor to read into `out` ([box.rows, box.cols] row-major).
struct ReadRequest {
  std::string tensor;
  Box box;
  float* out = nullptr;
};

// Reads boxes of global tensors from a committed checkpoint, whatever layout wrote it.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::filesystem::path& dir);
  const nlohmann::json& index() const { return index_; }
  const std::filesystem::path& dir() const { return dir_; }
  bool has(const std::string& tensor) const { return pieces_.count(tensor) != 0; }
  Shape shape(const std::string& tensor) const;
  // Fills `out` ([box.rows, box.cols] row-major) from every piece overlapping `box`; throws
  // std::runtime_error naming the tensor when the pieces do not cover the box. A box that is
  // exactly one stored piece (a resume in the layout that saved) is checked against its XXH64
  // as it is read, so it needs no second read to verify.
  void read(const std::string& tensor, const Box& box, float* out);
  // Many reads at once: boxes that are exactly one stored piece are read straight from the
  // shard file at the dataset's offset (contiguous f32 little-endian, as loom writes it) by
  // several threads and checked against their XXH64; the rest go through read().
  void read_all(const std::vector<ReadRequest>& requests);
  // After the reads: the verify_checkpoint problems of this part's shards (part, parts as
  // there), reading only the pieces that read() did not already check.
  std::vector<std::string> verify_rest(int part, int parts);
  std::vector<std::string> tensors() const;

 private:
  std::filesystem::path dir_;
  nlohmann::json index_;
  std::map<std::string, std::vector<StoredPiece>> pieces_;
  std::set<std::pair<std::string, std::string>> checked_;  // (file, dataset) verified by read()
  ShardReader shards_;
};

}  // namespace loom::io::ckpt
