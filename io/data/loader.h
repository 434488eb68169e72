// The stateful, deterministic data loader: turns a token store into batches of
// [rows, seq_len] input ids and shifted targets, in a global sample order that depends on
// (seed, epoch) only.
//
// Order. Each epoch permutes the store's documents (Fisher–Yates driven by a counter-based
// RNG of (seed, epoch, i); identity when shuffle = false). Samples are numbered within the
// epoch:
//   pack = true   the permuted documents (each already ending in eos) are concatenated and
//                 sample k is the window of seq_len + 1 tokens starting at k·seq_len, so
//                 every token but the first is a target exactly once; the tail that does
//                 not fill a window is dropped. ids = w[0:seq_len], targets = w[1:], a
//                 target is -1 where its token's loss mask is 0.
//   pack = false  sample k is one document truncated to seq_len + 1 tokens, padded with
//                 pad_id (targets -1). With group = g > 1 documents move in blocks of g
//                 consecutive documents (preference stores: chosen, rejected), so a block's
//                 rows stay adjacent and on one rank.
// Global batch n covers samples [n·global_batch, (n+1)·global_batch) of the endless
// sequence epoch 0, epoch 1, … (a batch may straddle two epochs). Data-parallel rank r of
// dp_size gets rows [r·b, (r+1)·b), b = global_batch / dp_size.
//
// State. LoaderState is one global cursor (sample index in the epoch) + epoch + seed, so a
// run resumed with another dp_size continues at exactly the same global sample. It also
// records the store fingerprint and samples per epoch so a resume on changed data or a
// changed seq_len fails loudly instead of silently drifting.
//
// Ownership/threads: the loader shares the immutable store; one loader per rank, used
// from one thread. Each rank computes only its rows; ranks never communicate.
#pragma once

#include "core/tensor.h"
#include "io/data/token_store.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace loom::io {

struct LoaderOptions {
  std::int64_t seq_len = 0;
  std::int64_t global_batch = 0;  // rows over all dp ranks; a multiple of dp_size (and group)
  std::uint64_t seed = 0;
  int dp_rank = 0;
  int dp_size = 1;
  bool pack = true;
  bool shuffle = true;
  std::int64_t group = 1;         // pack = false only: documents kept together (2 for preference)
  std::int32_t pad_id = 0;        // input id of padding positions (their targets are -1)
};

struct LoaderState {
  std::uint64_t seed = 0;
  std::int64_t epoch = 0;
  std::int64_t cursor = 0;                // next sample index within the epoch
  std::uint64_t store_fingerprint = 0;    // 0 = not checked on restore
  std::int64_t samples_per_epoch = 0;     // 0 = not checked on restore
};
// {"seed": 7, "epoch": 1, "cursor": 96, "store_fingerprint": "0x…", "samples_per_epoch": 1234}
void to_json(nlohmann::json& out, const LoaderState& state);
// Throws std::runtime_error naming the missing or mistyped key.
void from_json(const nlohmann::json& in, LoaderState& state);

struct Batch {
  Tensor ids;                   // [global_batch/dp_size, seq_len] i32
  Tensor targets;               // [global_batch/dp_size, seq_len] i32, -1 = no loss
  std::int64_t target_tokens = 0;          // targets >= 0 in this rank's rows
  std::vector<std::int64_t> documents;     // [rows] store document of the row's first token
};

class DataLoader {
 public:
  // Throws std::invalid_argument for inconsistent options (naming the option) and when
  // the store is too small for one sample.
  DataLoader(std::shared_ptr<const TokenStore> store, LoaderOptions options);

  // This rank's rows of the next global batch; advances the state by global_batch samples.
  Batch next();

  LoaderState state() const;
  // Continues from `state` (its seed replaces options.seed). Throws std::runtime_error when
  // the state was taken on other data or another samples_per_epoch, or is out of range.
  void restore(const LoaderState& state);

  std::int64_t samples_per_epoch() const { return samples_per_epoch_; }
  // Epochs completed, fractional: epoch + cursor / samples_per_epoch.
  double epoch_progress() const;
  const LoaderOptions& options() const { return options_; }

 private:
  struct EpochOrder {
    std::vector<std::int64_t> documents;  // store documents in epoch order
    std::vector<std::int64_t> starts;     // pack: token offset of each in the epoch stream (+ total)
  };
  const EpochOrder& order(std::int64_t epoch);
  void fill_packed_row(const EpochOrder& order, std::int64_t sample, std::int32_t* ids, std::int32_t* targets,
                       std::int64_t& document);
  void fill_document_row(const EpochOrder& order, std::int64_t sample, std::int32_t* ids, std::int32_t* targets,
                         std::int64_t& document);

  std::shared_ptr<const TokenStore> store_;
  LoaderOptions options_;
  std::int64_t samples_per_epoch_ = 0;
  std::uint64_t seed_ = 0;
  std::int64_t epoch_ = 0;
  std::int64_t cursor_ = 0;
  std::map<std::int64_t, EpochOrder> orders_;  // at most the two epochs a batch can touch
};

// The permutation of [0, n) for (seed, epoch): Fisher–Yates from i = n-1 down to 1 with
// j = floor(r_i · (i+1) / 2^64), r_i = mix64(mix64(mix64(seed) ^ epoch) + i).
std::vector<std::int64_t> epoch_permutation(std::int64_t n, std::uint64_t seed, std::int64_t epoch);

}  // namespace loom::io
