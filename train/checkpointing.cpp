#include "train/checkpointing.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <random>
#include <sstream>

#include "io/record/fingerprint.h"
#include "io/weights/model_weights.h"
#include "train/checkpoint_staging.h"

namespace loom::train {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

io::ckpt::Box to_box(const model::SliceBox& box) { return io::ckpt::Box{box.row0, box.rows, box.col0, box.cols}; }

const char* const kMoments[2] = {"optim/exp_avg/", "optim/exp_avg_sq/"};

// The boxes of entry `e` inside the flat-buffer range [begin, end), or nothing.
std::vector<model::SliceBox> boxes_in_range(const model::ParameterEntry& e, std::int64_t begin, std::int64_t end,
                                            int tp_rank, int tp_size) {
  const std::int64_t lo = std::max(begin, e.offset), hi = std::min(end, e.offset + e.numel);
  if (lo >= hi) return {};
  return model::slice_boxes(e, tp_rank, tp_size, lo - e.offset, hi - e.offset);
}

// Where a load writes each buffer it fills: the buffer itself in host memory, else a host
// copy of it (taken first, so elements no request covers keep their values) that upload()
// copies back to the device after the reads.
class ReadTargets {
 public:
  explicit ReadTargets(Backend& backend) : backend_(backend) {}
  float* base(Tensor t) {
    if (t.device() == Device::CPU) return t.data<float>();
    for (auto& [device, host] : mirrors_) {
      if (device.raw() == t.raw()) return host.data<float>();
    }
    Tensor host = Tensor::empty(t.shape(), DType::F32, Device::CPU);
    backend_.copy(t, host);
    mirrors_.emplace_back(t, host);
    return host.data<float>();
  }
  void upload() {
    for (auto& [device, host] : mirrors_) backend_.copy(host, device);
  }

 private:
  Backend& backend_;
  std::vector<std::pair<Tensor, Tensor>> mirrors_;  // (device buffer, its host copy)
};

}  // namespace

nlohmann::json to_json(const TrainState& state) {
  nlohmann::json loader;
  io::to_json(loader, state.loader);
  nlohmann::json json = {{"step", state.step},          {"tokens", state.tokens},
                         {"skipped_steps", state.skipped_steps}, {"rollbacks", state.rollbacks},
                         {"loader", loader},            {"skip_batches", state.skip_batches}};
  if (state.val_loss) json["val_loss"] = *state.val_loss;
  if (!state.trainer.is_null()) json["trainer"] = state.trainer;
  return json;
}

TrainState train_state_from_json(const nlohmann::json& json, const std::string& where) {
  try {
    TrainState state;
    state.step = json.at("step").get<std::int64_t>();
    state.tokens = json.at("tokens").get<std::int64_t>();
    state.skipped_steps = json.at("skipped_steps").get<std::int64_t>();
    state.rollbacks = json.value("rollbacks", std::int64_t{0});
    io::from_json(json.at("loader"), state.loader);
    state.skip_batches = json.value("skip_batches", std::vector<std::int64_t>{});
    if (json.contains("val_loss")) state.val_loss = json["val_loss"].get<double>();
    if (json.contains("trainer")) state.trainer = json["trainer"];
    return state;
  } catch (const std::exception& e) {
    throw std::runtime_error(where + ": training state is incomplete: " + e.what());
  }
}

Checkpointer::Checkpointer(std::vector<CheckpointedModel> models, CheckpointOptions options, nlohmann::json meta)
    : models_(std::move(models)), engine_(*models_.at(0).engine), options_(std::move(options)), meta_(std::move(meta)) {
  for (std::size_t i = 1; i < models_.size(); ++i) {
    if (models_[i].prefix.empty()) throw std::invalid_argument("Checkpointer: every model but the first needs a prefix");
    meta_["model_configs"][models_[i].prefix] = io::model_config_json(models_[i].engine->config());
  }
  // One id per run, the same on every rank, ties each shard to its save.
  double id[1] = {0.0};
  if (engine_.leader()) id[0] = static_cast<double>(std::random_device{}() & 0x7fffffffu);
  engine_.all_reduce_host(id, ReduceOp::Sum);
  run_id_ = static_cast<std::uint32_t>(id[0]);
  staging_ = make_device_staging(engine_.backend());
  if (options_.async && !staging_) {
    // The snapshot buffer is allocated and touched now, not in the first save's stall.
    std::int64_t total = 0;
    for (const auto& piece : owned_pieces()) total += piece.box.numel();
    snapshot_.assign(static_cast<std::size_t>(total), 0.0f);
  }
}

Checkpointer::~Checkpointer() {
  if (saver_.joinable()) saver_.join();
}

std::vector<io::ckpt::SavePiece> Checkpointer::owned_pieces() {
  std::vector<io::ckpt::SavePiece> pieces;
  for (const CheckpointedModel& model : models_) {
    Engine& engine = *model.engine;
    const auto& groups = engine.groups();
    const int tp_rank = groups.tp_rank(), tp_size = groups.tp_size();
    model::ParameterSet& params = engine.model().params();
    // The live buffer on the CPU (the saver snapshots it), else its pinned staging copy.
    std::vector<std::pair<const void*, const float*>> staged;
    auto host_base = [&](const Tensor& t) -> const float* {
      if (!staging_) return t.data<float>();
      for (const auto& [device, host] : staged) {
        if (device == t.raw()) return host;
      }
      staged.emplace_back(t.raw(), staging_->stage(t));
      return staged.back().second;
    };
    auto add = [&](const std::string& tensor, const model::ParameterEntry& e, const std::vector<model::SliceBox>& boxes,
                   const float* base) {
      for (const model::SliceBox& box : boxes) {
        if (box.tp_owner) {
          pieces.push_back({model.prefix + tensor + e.name, e.global_shape, to_box(box), base + box.local_offset});
        }
      }
    };
    for (const model::ParameterEntry& e : params.entries()) {
      if (groups.dp_rank() != 0 || engine.tied_replica(e.name)) continue;
      add("model/", e, model::slice_boxes(e, tp_rank, tp_size, 0, e.numel), host_base(params.values()) + e.offset);
    }
    for (const Engine::OptimizerPart& part : engine.optimizer_parts()) {
      if (!part.dp_unique && groups.dp_rank() != 0) continue;
      optim::AdamW& opt = *part.optimizer;
      const std::int64_t begin = opt.range_begin(), end = opt.range_end();
      for (const model::ParameterEntry& e : params.entries()) {
        if (engine.tied_replica(e.name)) continue;
        const auto boxes = boxes_in_range(e, begin, end, tp_rank, tp_size);
        if (boxes.empty()) continue;
        // Box offsets are within the entry; the moments start at the range's first element.
        const std::int64_t shift = e.offset - begin;
        add(kMoments[0], e, boxes, host_base(opt.exp_avg()) + shift);
        add(kMoments[1], e, boxes, host_base(opt.exp_avg_sq()) + shift);
      }
    }
  }
  return pieces;
}

void Checkpointer::check_model(const io::ckpt::CheckpointReader& reader, const CheckpointedModel& model) const {
  const nlohmann::json& index = reader.index();
  const nlohmann::json ours = io::model_config_json(model.engine->config());
  const std::string what = model.prefix.empty() ? "model" : "model " + model.prefix;
  const nlohmann::json* stored = nullptr;
  if (model.prefix.empty() && index.contains("model_config")) stored = &index["model_config"];
  if (!model.prefix.empty() && index.contains("model_configs") && index["model_configs"].contains(model.prefix)) {
    stored = &index["model_configs"][model.prefix];
  }
  if (stored == nullptr || !stored->is_object()) {
    throw std::runtime_error(reader.dir().string() + ": the checkpoint records no config of " + what +
                             " to check against (was it written by another trainer?)");
  }
  if (*stored != ours) {
    for (const auto& [key, value] : ours.items()) {
      if (stored->value(key, nlohmann::json()) != value) {
        throw std::runtime_error(reader.dir().string() + ": the checkpoint's " + what + " has " + key + " = " +
                                 stored->value(key, nlohmann::json()).dump() + " but this run's has " + value.dump() +
                                 " (model.* settings must match the checkpoint)");
      }
    }
  }
}

namespace {

std::vector<io::ckpt::ReadRequest> parameter_reads(Engine& engine, const std::string& prefix, ReadTargets& targets) {
  const auto& groups = engine.groups();
  model::ParameterSet& params = engine.model().params();
  std::vector<io::ckpt::ReadRequest> requests;
  float* values = targets.base(params.values());
  for (const model::ParameterEntry& e : params.entries()) {
    float* base = values + e.offset;
    for (const model::SliceBox& box : model::slice_boxes(e, groups.tp_rank(), groups.tp_size(), 0, e.numel)) {
      requests.push_back({prefix + "model/" + e.name, to_box(box), base + box.local_offset});
    }
  }
  return requests;
}

}  // namespace

void load_checkpoint_parameters(io::ckpt::CheckpointReader& reader, Engine& engine, const std::string& prefix) {
  ReadTargets targets(engine.backend());
  const std::vector<io::ckpt::ReadRequest> requests = parameter_reads(engine, prefix, targets);
  for (const auto& request : requests) {
    if (!reader.has(request.tensor)) {
      throw std::runtime_error(reader.dir().string() + ": the checkpoint has no tensor " + request.tensor +
                               " (a model of another architecture, head or LoRA setting?)");
    }
  }
  reader.read_all(requests);
  targets.upload();
  engine.model().params().refresh_compute_values(engine.backend());
}

void Checkpointer::load(io::ckpt::CheckpointReader& reader, const CheckpointedModel& model) {
  Engine& engine = *model.engine;
  const nlohmann::json& state = reader.index().at("state");
  const auto& groups = engine.groups();
  const int tp_rank = groups.tp_rank(), tp_size = groups.tp_size();
  model::ParameterSet& params = engine.model().params();
  ReadTargets targets(engine.backend());
  std::vector<io::ckpt::ReadRequest> requests = parameter_reads(engine, model.prefix, targets);
  const std::int64_t optimizer_steps =
      model.prefix.empty() ? state.value("optimizer_steps", std::int64_t{0})
                           : state.at("optimizer_steps_by_model").at(model.prefix).get<std::int64_t>();
  for (const Engine::OptimizerPart& part : engine.optimizer_parts()) {
    optim::AdamW& opt = *part.optimizer;
    const std::int64_t begin = opt.range_begin(), end = opt.range_end();
    for (const model::ParameterEntry& e : params.entries()) {
      const auto boxes = boxes_in_range(e, begin, end, tp_rank, tp_size);
      const std::int64_t shift = e.offset - begin;
      for (const model::SliceBox& box : boxes) {
        requests.push_back({model.prefix + kMoments[0] + e.name, to_box(box),
                            targets.base(opt.exp_avg()) + shift + box.local_offset});
        requests.push_back({model.prefix + kMoments[1] + e.name, to_box(box),
                            targets.base(opt.exp_avg_sq()) + shift + box.local_offset});
      }
    }
  }
  reader.read_all(requests);
  targets.upload();
  params.refresh_compute_values(engine.backend());
  for (const Engine::OptimizerPart& part : engine.optimizer_parts()) part.optimizer->set_steps_taken(optimizer_steps);
}

void Checkpointer::run_saver() {
  const auto start = Clock::now();
  // A background save yields the cores to training: it only needs to finish before the next.
  if (options_.async) setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 10);
  try {
    std::filesystem::create_directories(shard_.dir);
    if (options_.debug_delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(options_.debug_delay_s));
    if (staging_) {
      staging_->wait();  // the pinned copies are the snapshot
    } else if (options_.async) {
      std::int64_t total = 0;
      for (const auto& piece : shard_.pieces) total += piece.box.numel();
      if (static_cast<std::int64_t>(snapshot_.size()) < total) snapshot_.resize(static_cast<std::size_t>(total));
      float* at = snapshot_.data();
      for (auto& piece : shard_.pieces) {
        std::memcpy(at, piece.data, static_cast<std::size_t>(piece.box.numel()) * sizeof(float));
        piece.data = at;
        at += piece.box.numel();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      snapshot_done_ = true;
    }
    snapshot_cv_.notify_all();
    saver_copy_s_ = since(start);
    saver_times_ = io::ckpt::write_shard(shard_);
    saver_state_ = 1;
  } catch (const std::exception& e) {
    saver_error_ = e.what();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      snapshot_done_ = true;
    }
    snapshot_cv_.notify_all();
    saver_state_ = 2;
  }
}

std::optional<SaveReport> Checkpointer::save(const TrainState& state, const nlohmann::json& rank_state) {
  const auto start = Clock::now();  // waiting here for the previous save is this save's stall
  std::optional<SaveReport> previous;
  if (pending_) previous = finish();
  const std::string save_id = record::hex64(run_id_).substr(8) + "-" + std::to_string(state.step);
  if (staging_) staging_->begin();
  shard_ = io::ckpt::ShardWrite{io::ckpt::temporary_dir(options_.root, state.step, save_id),
                                engine_.groups().world_rank(), state.step, save_id, owned_pieces(), rank_state};
  if (staging_) staging_->end();
  pending_state_ = to_json(state);
  for (const CheckpointedModel& model : models_) {
    const auto parts = model.engine->optimizer_parts();
    const std::int64_t steps = parts.empty() ? 0 : parts.front().optimizer->steps_taken();
    if (model.prefix.empty()) {
      pending_state_["optimizer_steps"] = steps;
    } else {
      pending_state_["optimizer_steps_by_model"][model.prefix] = steps;
    }
  }
  report_ = SaveReport{};
  report_.step = state.step;
  report_.stall_s = since(start);
  snapshot_done_ = false;
  saver_state_ = 0;
  saver_error_.clear();
  saver_times_ = {};
  pending_ = true;
  if (options_.async) {
    saver_ = std::thread([this] { run_saver(); });
  } else {
    run_saver();
  }
  report_.stall_s = since(start);
  return previous;
}

double Checkpointer::before_update() {
  if (!pending_ || !options_.async) return 0.0;
  const auto start = Clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  snapshot_cv_.wait(lock, [this] { return snapshot_done_; });
  const double waited = since(start);
  report_.stall_s += waited;
  return waited;
}

std::optional<SaveReport> Checkpointer::poll() {
  if (!pending_) return std::nullopt;
  double flags[1] = {saver_state_ == 0 ? 1.0 : 0.0};
  engine_.all_reduce_host(flags, ReduceOp::Max);
  if (flags[0] != 0) return std::nullopt;
  return complete();
}

std::optional<SaveReport> Checkpointer::finish() {
  if (!pending_) return std::nullopt;
  if (saver_.joinable()) saver_.join();
  return complete();
}

std::optional<SaveReport> Checkpointer::complete() {
  if (saver_.joinable()) saver_.join();
  const auto& groups = engine_.groups();
  const int world = groups.world_size(), rank = groups.world_rank();
  // Which ranks failed, and the bytes written: one reduction.
  std::vector<double> values(static_cast<std::size_t>(world) + 1, 0.0);
  if (saver_state_ == 2) values[static_cast<std::size_t>(rank)] = 1.0;
  values[static_cast<std::size_t>(world)] = static_cast<double>(saver_times_.bytes);
  engine_.all_reduce_host(values, ReduceOp::Sum);
  report_.bytes = static_cast<std::int64_t>(values[static_cast<std::size_t>(world)]);
  report_.write_s = saver_copy_s_ + saver_times_.write_s + saver_times_.sync_s + saver_times_.verify_s;
  report_.copy_s = saver_copy_s_;
  report_.hdf5_write_s = saver_times_.write_s;
  report_.fsync_s = saver_times_.sync_s;
  report_.verify_s = saver_times_.verify_s;
  std::ostringstream failed;
  for (int r = 0; r < world; ++r) {
    if (values[static_cast<std::size_t>(r)] != 0) failed << (failed.tellp() > 0 ? ", " : "") << r;
  }
  std::string error;
  if (saver_state_ == 2) {
    std::cerr << ("loom: checkpoint of step " + std::to_string(report_.step) + " failed on rank " + std::to_string(rank) +
                  ": " + saver_error_ + "\n");
  }
  if (!failed.str().empty()) {
    error = "rank(s) " + failed.str() + " could not write their shard" +
            (saver_state_ == 2 ? ": " + saver_error_ : " (their messages are on stderr)");
  } else if (engine_.leader()) {
    try {
      nlohmann::json meta = meta_;
      meta["state"] = pending_state_;
      io::ckpt::CommitRequest request{options_.root, shard_.dir, report_.step, world, shard_.save_id, meta};
      const auto commit_start = Clock::now();
      report_.dir = io::ckpt::commit_checkpoint(request, options_.retention);
      report_.commit_s = since(commit_start);
    } catch (const std::exception& e) {
      error = std::string("commit failed: ") + e.what();
    }
  }
  double commit_failed[1] = {error.empty() ? 0.0 : 1.0};
  engine_.all_reduce_host(commit_failed, ReduceOp::Max);
  report_.ok = commit_failed[0] == 0;
  if (!report_.ok) {
    if (error.empty()) error = "commit failed on rank 0 (its message is on stderr)";
    report_.error = error;
    if (engine_.leader()) {
      std::error_code ignored;
      std::filesystem::remove_all(shard_.dir, ignored);
      std::cerr << ("loom: checkpoint of step " + std::to_string(report_.step) + " was not committed: " + error + "; " +
                    (last_committed_ ? last_committed_->string() + " stays the newest"
                                     : std::string("no checkpoint exists yet")) +
                    "\n");
    }
  } else {
    report_.dir = options_.root / io::ckpt::step_dir_name(report_.step);
    last_committed_ = report_.dir;
  }
  pending_ = false;
  total_stall_s_ += report_.stall_s;
  return report_;
}

std::optional<TrainState> Checkpointer::resume(const std::optional<std::filesystem::path>& dir) {
  const auto& groups = engine_.groups();
  if (engine_.leader() && !dir) {
    try {
      for (const auto& removed : io::ckpt::prune(options_.root, options_.retention, true)) {
        std::cerr << ("loom: removed " + removed.string() + " (a save that never committed)\n");
      }
    } catch (const std::exception& e) {
      std::cerr << ("loom: could not clean " + options_.root.string() + ": " + e.what() + "\n");
    }
  }
  std::vector<std::filesystem::path> candidates = dir ? std::vector<std::filesystem::path>{*dir}
                                                      : io::ckpt::list_checkpoints(options_.root);
  for (const auto& candidate : candidates) {
    // Load first, checking checksums on the way (a resume in the saving layout reads each
    // piece once), then verify what this rank's share still needs; every rank's problems are
    // counted before the checkpoint is accepted. A rejected one is overwritten by the next.
    std::vector<std::string> problems;
    std::optional<io::ckpt::CheckpointReader> reader;
    try {
      reader.emplace(candidate);
    } catch (const std::exception& e) {
      problems.push_back(e.what());
    }
    if (reader) {
      // Another model is a configuration error, not a damaged checkpoint.
      for (const CheckpointedModel& model : models_) check_model(*reader, model);
      try {
        for (const CheckpointedModel& model : models_) load(*reader, model);
      } catch (const std::exception& e) {
        problems.push_back(e.what());
      }
    }
    if (reader) {
      for (auto& problem : reader->verify_rest(groups.world_rank(), groups.world_size())) problems.push_back(std::move(problem));
    }
    for (const auto& problem : problems) std::cerr << ("loom: checkpoint problem: " + problem + "\n");
    double bad[1] = {static_cast<double>(problems.size())};
    engine_.all_reduce_host(bad, ReduceOp::Sum);
    if (bad[0] != 0) {
      if (dir) throw std::runtime_error(candidate.string() + ": checkpoint does not verify (problems above)");
      if (engine_.leader()) {
        std::cerr << ("loom: skipping " + candidate.string() + ": " + std::to_string(static_cast<long long>(bad[0])) +
                      " problem(s) (above); trying an older checkpoint\n");
      }
      continue;
    }
    last_committed_ = candidate;
    return train_state_from_json(reader->index().at("state"), (candidate / io::ckpt::kIndexFile).string());
  }
  return std::nullopt;
}

}  // namespace loom::train
