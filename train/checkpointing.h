// Step checkpoints of an Engine (io/checkpoint, docs/checkpoint-format.md): what each rank
// saves, the asynchronous shard saver, the agreement that every shard is written before
// world rank 0 commits, and resume — also into another (dp, tp, pp) layout.
//
// What a rank saves. Parameters and AdamW moments are saved as boxes of the global tensors
// (core/model/parameter_layout.h slice_boxes), each box by exactly one rank: data-parallel
// rank 0 for replicated state, every dp rank for its ZeRO-1 shard, the lowest tp rank for
// tp-replicated tensors and kv heads, the first stage for a tied embedding. Loading reads
// every box a rank needs from whichever shards hold it, so any layout resumes any other.
//
// Asynchronous saving. save() records pointers into the live buffers and starts a thread
// that first copies them (the snapshot) and then writes, fsyncs and verifies the shard.
// On a GPU backend save() instead enqueues device-to-host copies into pinned buffers on a
// side stream (train/checkpoint_staging.h) and the thread waits for them: they are the
// snapshot. Loading reads into host copies of the device buffers and copies them up.
// Parameters and moments only change in the optimizer step, so the trainer calls
// before_update() there: it waits for the snapshot only if the copy is still running.
// The stall of a save is the time the main thread waited (save + before_update + any wait
// for the previous save); a synchronous save stalls for the whole write.
//
// Ownership: references the Engine. Threads: the main thread calls everything; one saver
// thread per rank. Ranks: save, poll, finish and resume are collective over the world.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint/checkpoint.h"
#include "io/data/loader.h"
#include "train/checkpoint_staging.h"
#include "train/engine.h"

namespace loom::train {

// The counters and positions a checkpoint carries besides tensors.
struct TrainState {
  std::int64_t step = 0;           // optimizer steps taken (and attempted: skipped ones count)
  std::int64_t tokens = 0;
  std::int64_t skipped_steps = 0;  // steps skipped for a non-finite loss or gradient norm
  std::int64_t rollbacks = 0;
  io::LoaderState loader;
  std::vector<std::int64_t> skip_batches;  // global batch numbers never to train on (rolled back)
  std::optional<double> val_loss;
  nlohmann::json trainer;  // what a trainer keeps across steps (PPO's adaptive KL coefficient)
};
nlohmann::json to_json(const TrainState& state);
TrainState train_state_from_json(const nlohmann::json& json, const std::string& where);

struct CheckpointOptions {
  std::filesystem::path root;  // the checkpoints directory
  io::ckpt::Retention retention;
  bool async = true;
  // Fault injection for tests (debug.save_delay): each save waits this long with its
  // temporary directory created and nothing written, so a kill can land mid-save for sure.
  double debug_delay_s = 0;
};

// Per-save numbers, reported in metrics.jsonl and run.json.
struct SaveReport {
  std::int64_t step = 0;
  std::filesystem::path dir;
  double stall_s = 0;    // main thread blocked by this save
  double write_s = 0;    // copy + write + fsync + verify of this rank's shard (a synchronous save's stall)
  double copy_s = 0, hdf5_write_s = 0, fsync_s = 0, verify_s = 0, commit_s = 0;  // its parts (commit: rank 0)
  std::int64_t bytes = 0;  // all ranks' shards
  bool ok = false;
  std::string error;       // when !ok: the first failure (rank and message)
};

// One trained model of a checkpoint. A trainer with several (PPO: actor and critic) gives
// each a prefix: its tensors are stored as "<prefix>model/…" and "<prefix>optim/…", and its
// model config under index.json's "model_configs"/<prefix>. The first model's prefix is ""
// (the SFT layout); all engines span the same world.
struct CheckpointedModel {
  std::string prefix;
  Engine* engine = nullptr;
};

// The parameters of the model under `prefix` ("" or e.g. "critic/") of a committed
// checkpoint into the engine, whatever layout wrote it (no optimizer state): for evaluation.
// Throws std::runtime_error naming the checkpoint and a tensor it lacks. Any rank.
void load_checkpoint_parameters(io::ckpt::CheckpointReader& reader, Engine& engine, const std::string& prefix = "");

class Checkpointer {
 public:
  // `meta` goes into every index.json: "config", "layout", "model_config", "program".
  Checkpointer(Engine& engine, CheckpointOptions options, nlohmann::json meta)
      : Checkpointer(std::vector<CheckpointedModel>{{"", &engine}}, std::move(options), std::move(meta)) {}
  // Several models; meta's "model_configs" is filled in here for the prefixed ones.
  Checkpointer(std::vector<CheckpointedModel> models, CheckpointOptions options, nlohmann::json meta);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Starts saving the engine's current parameters and optimizer state with `state`. A save
  // still in flight is finished (committed) first; its report is returned. Collective.
  std::optional<SaveReport> save(const TrainState& state, const nlohmann::json& rank_state = nlohmann::json::object());
  // Before the parameters or moments change. Returns the seconds waited.
  double before_update();
  // At a step boundary: when every rank's shard is written, rank 0 commits. Returns the
  // report of a save that completed (committed or failed) in this call. Collective.
  std::optional<SaveReport> poll();
  // Waits for a save in flight and commits it. Collective.
  std::optional<SaveReport> finish();

  // The newest committed checkpoint under the root whose shards verify (every rank checks a
  // share), or the given directory; loads it into the engine and returns its state. Invalid
  // ones are reported on stderr (file, tensor) and skipped. nullopt when there is none.
  // Collective. Throws std::runtime_error when `dir` is given and does not verify.
  std::optional<TrainState> resume(const std::optional<std::filesystem::path>& dir = std::nullopt);
  std::optional<std::filesystem::path> last_committed() const { return last_committed_; }

  double total_stall_s() const { return total_stall_s_; }

 private:
  std::vector<io::ckpt::SavePiece> owned_pieces();
  // Throws std::runtime_error naming the first model.* field that differs from the checkpoint's.
  void check_model(const io::ckpt::CheckpointReader& reader, const CheckpointedModel& model) const;
  void load(io::ckpt::CheckpointReader& reader, const CheckpointedModel& model);
  void run_saver();
  std::optional<SaveReport> complete();

  std::vector<CheckpointedModel> models_;
  Engine& engine_;  // the first model's: its world runs the collectives
  CheckpointOptions options_;
  nlohmann::json meta_;
  std::uint32_t run_id_ = 0;
  std::optional<std::filesystem::path> last_committed_;
  double total_stall_s_ = 0;

  // The save in flight.
  bool pending_ = false;
  io::ckpt::ShardWrite shard_;
  nlohmann::json pending_state_;
  SaveReport report_;
  std::vector<float> snapshot_;
  std::unique_ptr<DeviceStaging> staging_;  // GPU backend only: pinned host copies
  std::thread saver_;
  std::mutex mutex_;
  std::condition_variable snapshot_cv_;
  bool snapshot_done_ = false;
  std::atomic<int> saver_state_{0};  // 0 running, 1 done, 2 failed
  std::string saver_error_;
  io::ckpt::ShardTimes saver_times_;
  double saver_copy_s_ = 0;
};

}  // namespace loom::train
