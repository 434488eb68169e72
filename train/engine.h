// Engine: one rank's part of a model trained under any dp × tp × pp layout, shared by every
// trainer (SFT today; reward model, DPO, PPO, GRPO next). It owns the process groups and
// their communicators, the model shard (its pipeline stage's layers, its tensor-parallel
// slice), the pipeline schedule, the data-parallel gradient reduction (bucketed and
// overlapped with the backward pass, or ZeRO-1) and the optimizer, and hides all of them
// behind a step API:
//
//   engine.zero_grads();
//   engine.forward_backward(work, micro_batches, micro_rows, seq);   // the schedule
//   engine.reduce_gradients();                                        // dp, tp, tied
//   double norm = engine.grad_norm();                                 // over all groups
//   engine.optimizer_step(lr, clip_scale(norm, max_norm));
//
// A trainer supplies what is specific to it through parallel::StageWork (the first stage's
// token ids, the last stage's head and loss); an LM loss is in lm_work.h.
//
// LoRA (options.lora.rank > 0): the model's trainable range (Transformer::trainable_range)
// is the adapters alone; the optimizer state, the dp reduction (buckets or ZeRO-1 shards)
// and the gradient norm cover only it, the adapters' replicated halves are summed over tp,
// and the frozen base weights are still initialised, loaded and checkpointed.
// gather_whole_model() returns the MERGED model (W + alpha/r · B·A, no adapter entries).
//
// Reductions. Gradients are summed over dp (the trainer scales its loss by the global token
// count, so the sum is the global mean's gradient); replicated kv heads are summed over tp;
// a tied embedding's two copies (first and last stage) exchange and add their gradients.
// Every reduction has a fixed order, so repeated runs in one layout are bit-identical.
//
// Errors before any work: the layout against the world size, heads/kv heads/d_ff/vocabulary
// against tp, layers against stages (or the stage_layers override), each thrown as
// std::invalid_argument naming the setting, identically on every rank.
//
// Devices. On a GPU backend (backend.device() == Device::CUDA) the tp, dp and pp groups
// communicate over NCCL on the backend's stream (launch/nccl_comm.h), so every tensor reaching
// a Comm stays in device memory; the world communicator stays MPI for host scalars. Weights
// files are read and written on the host: load_weights reads into host memory and copies
// this rank's slices up, gather_whole_model assembles the whole model on the host.
//
// Ownership: holds its Backend by reference. Threads: the main thread (MPI_THREAD_FUNNELED).
// Ranks: the constructor and every step method are collective over the world.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/model/transformer.h"
#include "core/optim/adamw.h"
#include "core/parallel/grad_reducer.h"
#include "core/parallel/pipeline.h"
#include "core/parallel/timing_comm.h"
#include "launch/mpi_comm.h"
#include "launch/process_groups.h"

namespace loom::train {

struct EngineOptions {
  launch::ParallelLayout layout;
  parallel::Schedule schedule = parallel::Schedule::OneFOneB;
  bool zero1 = false;
  std::int64_t bucket_elements = std::int64_t{4} << 20;  // 16 MiB of f32 gradients
  std::vector<std::int64_t> stage_layers;                // empty: balanced
  model::HeadKind head = model::HeadKind::LM;
  // LoRA adapters (rank 0: off). On: only the adapters train; the optimizer, the dp
  // reduction, ZeRO-1 and the gradient norm cover just their contiguous range.
  model::LoraConfig lora;
  // train.precision: f32, or bf16 (bf16 weights, activations and gradients over f32 master
  // weights and optimizer state; ParameterSet).
  DType precision = DType::F32;
};

// Layers per pipeline stage: the override when given (must have pp entries >= 1 summing to
// n_layers), else the contiguous split that minimises the busiest stage's forward FLOPs,
// counting the LM head on the last stage (so small models with large vocabularies give the
// last stage fewer layers). Throws std::invalid_argument.
std::vector<std::int64_t> stage_layer_counts(const model::ModelConfig& config, int pp,
                                             const std::vector<std::int64_t>& override);

// Bytes per rank, reported at start-up.
struct MemoryReport {
  std::int64_t parameters = 0, gradients = 0, optimizer = 0, activations = 0;
  std::int64_t total() const { return parameters + gradients + optimizer + activations; }
};

struct StepTimes {
  parallel::PipelineTimes pipeline;
};

class Engine {
 public:
  Engine(const model::ModelConfig& config, const EngineOptions& options, Backend& backend);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  model::Transformer& model() { return *model_; }
  const launch::ProcessGroups& groups() const { return groups_; }
  const EngineOptions& options() const { return options_; }
  const parallel::PpGroup& pp_group() const { return pp_; }
  bool first_stage() const { return pp_.first(); }
  bool last_stage() const { return pp_.last(); }
  bool leader() const { return groups_.world_rank() == 0; }
  int dp_rank() const { return groups_.dp_rank(); }
  int dp_size() const { return groups_.dp_size(); }
  Comm& world() { return *world_comm_; }
  Backend& backend() { return backend_; }

  // Layout-independent init: every layout starts from the same global weights.
  void init_weights(std::uint64_t seed);
  // Loads this rank's slice from a whole-model weights file (io/weights), on every rank.
  void load_weights(const std::string& file);
  // This rank's slice of every parameter from a whole model (same config and head).
  void load_from(const model::Transformer& whole);
  // The whole model assembled on world rank 0 (nullptr elsewhere), for saving; with LoRA the
  // adapters merged into their weights (a plain model). Collective. Built with `backend`
  // when that is a CPU backend, else on a host backend of the engine's own (the result is
  // always in host memory, ready for io/weights).
  std::unique_ptr<model::Transformer> gather_whole_model(Backend& backend);

  void make_optimizer(const optim::AdamWConfig& config);

  void zero_grads();
  StepTimes forward_backward(parallel::StageWork& work, int micro_batches, std::int64_t micro_rows, std::int64_t seq);
  // Forward only (evaluation).
  parallel::PipelineTimes forward_only(parallel::StageWork& work, int micro_batches, std::int64_t micro_rows,
                                       std::int64_t seq);
  // Completes the gradients after forward_backward: waits for the overlapped dp buckets (or
  // reduce-scatters for ZeRO-1), sums replicated kv heads over tp and tied-embedding copies
  // over the first and last stage.
  double reduce_gradients();
  // Global gradient norm over every distinct parameter element of the whole model.
  double grad_norm();
  // Of the last reduce_gradients: dp buckets in all, and how many started during the backward.
  int reduce_buckets() const { return reducer_ ? reducer_->buckets() : 0; }
  int reduce_buckets_overlapped() const { return reducer_ ? reducer_->started_early() : 0; }
  void optimizer_step(float lr, float grad_scale);

  // For checkpoints: the optimizers over this rank's flat-buffer ranges (one, or with ZeRO-1
  // this dp rank's shard plus the shared tail), and whether each is this dp rank's alone.
  struct OptimizerPart {
    optim::AdamW* optimizer = nullptr;
    bool dp_unique = false;  // a ZeRO-1 shard: no other dp rank holds this range
  };
  std::vector<OptimizerPart> optimizer_parts();
  // The last stage's copy of a tied embedding (pp > 1): saved by the first stage only.
  bool tied_replica(const std::string& name) const {
    return tied_copies_ && !pp_.first() && name == "embed.tokens.weight";
  }
  const model::ModelConfig& config() const { return config_; }

  // A few host numbers summed (or max-ed) over the world: every rank gets the same result.
  void all_reduce_host(std::span<double> values, ReduceOp op) {
    if (marker_) marker_->begin("world all_reduce");
    world_comm_->all_reduce_host(values, op);
    if (marker_) marker_->end();
  }
  // Every collective of the engine is marked on `marker` (a hang watchdog), or none (nullptr).
  void set_activity_marker(parallel::ActivityMarker* marker);

  // Needs make_optimizer() first for the optimizer share.
  // Seconds spent in each group's communication since the last reset (every call is timed:
  // a clock read per call). pp includes waiting for the neighbour stage (the bubble).
  struct CommSeconds {
    double tp = 0, dp = 0, pp = 0;
    double total() const { return tp + dp + pp; }
  };
  CommSeconds comm_seconds() const;
  void reset_comm_seconds();

  MemoryReport memory(int micro_batches, std::int64_t micro_rows, std::int64_t seq) const;
  // "tp 2 x pp 2 x dp 2 (8 ranks), stage 1: layers 3-5, ..."
  std::string describe() const;

 private:
  void exchange_tied_embedding_grads();
  // Every parameter's slice from `whole` (LoRA adapters keep their init; keep_score_head: so
  // does a scalar head the whole model lacks).
  void copy_from_whole(const model::Transformer& whole, bool keep_score_head);
  void build_norm_ranges();
  // Replicated kv heads (and, with LoRA, the adapters' replicated halves) summed over tp.
  void sum_tp_replicas(const parallel::TpGroup& tp, model::ParameterSet& params);
  void broadcast_tied_embedding();
  // `backend_` when it computes on the CPU, else a CPU backend made on first use, for the
  // host-side copies of whole models.
  Backend& host_backend();
  // This shard's parameter values in host memory: the buffer itself on the CPU backend,
  // else a copy in host_values_.
  Tensor host_values();

  model::ModelConfig config_;
  EngineOptions options_;
  Backend& backend_;
  launch::ProcessGroups groups_;
  std::unique_ptr<launch::MpiComm> world_comm_, tp_mpi_, dp_mpi_, pp_mpi_;
  std::unique_ptr<Comm> tp_device_, dp_device_, pp_device_;  // NCCL comms on a GPU backend, else null
  std::unique_ptr<parallel::TimingComm> tp_comm_, dp_comm_, pp_comm_;  // null when the group has one rank
  parallel::PpGroup pp_;
  std::vector<std::int64_t> stages_;  // layers per pipeline stage
  model::ShardSpec shard_;
  std::unique_ptr<model::Transformer> model_;
  std::unique_ptr<parallel::GradReducer> reducer_;
  std::unique_ptr<optim::AdamW> optimizer_, tail_optimizer_;  // tail: ZeRO-1 elements past dp·shard
  std::int64_t zero_shard_ = 0;                               // ZeRO-1 elements per dp rank
  model::Transformer::GradRange trainable_;                   // what the optimizer updates
  std::uint64_t seed_ = 0;                                    // of init_weights: keys LoRA dropout
  Tensor zero_scratch_;       // [zero_shard_] f32: this rank's master values for the all-gather
  Tensor zero_grad_scratch_;  // the same for the gradient's reduce-scatter (compute dtype; zero_scratch_ in f32)
  std::unique_ptr<Backend> host_backend_;  // GPU backend only (host_backend())
  Tensor host_values_;                     // GPU backend only (host_values())
  Tensor tied_peer_grad_;  // the other stage's tied-embedding gradient
  // Flat-buffer ranges (offset, length, weight) whose squared gradients this rank adds to the
  // global norm: built at construction, rebuilt by make_optimizer() for the ZeRO-1 shard.
  std::vector<parallel::WeightedRange> norm_ranges_;
  bool tied_copies_ = false;
  parallel::ActivityMarker* marker_ = nullptr;  // pp > 1 with tied embeddings: first and last stage both hold them
};

}  // namespace loom::train
