#include "train/engine.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "core/model/lora.h"
#include "core/transfer.h"
#include "io/weights/model_weights.h"
#include "launch/mpi_runtime.h"

#if LOOM_HAVE_NCCL
#include "core/kernels/cuda/cuda_stream.h"
#include "launch/nccl_comm.h"
#endif

namespace loom::train {
namespace {

std::string layout_text(const launch::ParallelLayout& layout) {
  return "parallel.tp = " + std::to_string(layout.tp) + ", parallel.pp = " + std::to_string(layout.pp);
}

int world_size_now() {
  int size = 1;
  if (launch::mpi_active()) MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  return size;
}

model::ShardSpec shard_for(const model::ModelConfig& config, const std::vector<std::int64_t>& stages, int pp_rank,
                           int tp_rank, int tp) {
  std::int64_t begin = 0;
  for (int s = 0; s < pp_rank; ++s) begin += stages[static_cast<std::size_t>(s)];
  return model::ShardSpec{begin, begin + stages[static_cast<std::size_t>(pp_rank)], tp_rank, tp}.resolved(config);
}

// Every check that can fail for a bad layout, before any communicator exists: identical on
// every rank, so every rank throws the same message and none waits in a collective.
std::vector<std::int64_t> checked_stages(const model::ModelConfig& config, const EngineOptions& options) {
  const int world = world_size_now();
  try {
    launch::data_parallel_size(world, options.layout);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(layout_text(options.layout) + " do not fit " + std::to_string(world) + " ranks: " +
                                e.what());
  }
  config.validate();
  std::vector<std::int64_t> stages;
  try {
    stages = stage_layer_counts(config, options.layout.pp, options.stage_layers);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("parallel.pp = " + std::to_string(options.layout.pp) + ": " + e.what());
  }
  try {
    shard_for(config, stages, 0, 0, options.layout.tp);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("parallel.tp = " + std::to_string(options.layout.tp) + " does not fit the model: " +
                                e.what());
  }
  // The adapters' own checks (targets, the family's linears) before any rank builds a shard.
  model::parameter_specs(config, model::ShardSpec::whole(config), options.head, options.lora);
  return stages;
}

// Copies between a tp slice and the whole tensor, element by element through the layout's
// global index: to_whole = true scatters the slice into the whole tensor, false gathers it.
void copy_slice(const model::ParameterEntry& e, const model::ShardSpec& spec, Tensor slice, Tensor whole,
                bool to_whole) {
  float* s = slice.data<float>();
  float* w = whole.data<float>();
  for (std::int64_t i = 0; i < e.numel; ++i) {
    const std::int64_t g = model::global_element_index(e, i, spec.tp_rank, spec.tp_size);
    if (to_whole) {
      w[g] = s[i];
    } else {
      s[i] = w[g];
    }
  }
}

}  // namespace

std::vector<std::int64_t> stage_layer_counts(const model::ModelConfig& config, int pp,
                                             const std::vector<std::int64_t>& override) {
  const std::int64_t n_layers = config.n_layers;
  if (pp < 1) throw std::invalid_argument("needs at least one pipeline stage");
  if (!override.empty()) {
    std::int64_t sum = 0;
    for (std::int64_t n : override) {
      if (n < 1) throw std::invalid_argument("parallel.stage_layers entries must be >= 1");
      sum += n;
    }
    if (static_cast<int>(override.size()) != pp || sum != n_layers) {
      throw std::invalid_argument("parallel.stage_layers has " + std::to_string(override.size()) +
                                  " entries summing to " + std::to_string(sum) + "; expected " + std::to_string(pp) +
                                  " (one per stage) summing to model.n_layers = " + std::to_string(n_layers));
    }
    return override;
  }
  if (n_layers < pp) {
    throw std::invalid_argument("the model has " + std::to_string(n_layers) + " layers, fewer than the " +
                                std::to_string(pp) + " pipeline stages (each stage needs at least one layer)");
  }
  // Forward FLOPs per token: a layer's GEMMs and attention at max_seq_len, and the LM head on
  // the last stage (2·V·C, often more than a layer for small models).
  const double C = static_cast<double>(config.d_model), D = static_cast<double>(config.head_dim());
  const double q = static_cast<double>(config.n_heads) * D, kv = static_cast<double>(config.n_kv_heads) * D;
  const double mlp_mats = config.family == model::Family::Llama ? 3.0 : 2.0;
  const double layer = 2.0 * ((q + 2 * kv) * C + q * C + mlp_mats * C * static_cast<double>(config.d_ff)) +
                       4.0 * static_cast<double>(config.max_seq_len) * q;
  const double head = 2.0 * static_cast<double>(config.vocab_size) * C;
  // The contiguous split minimising the busiest stage (the pipeline runs at its pace); among
  // equal splits the first found, which puts extra layers early.
  const auto L = static_cast<std::size_t>(n_layers);
  const auto P = static_cast<std::size_t>(pp);
  const double inf = std::numeric_limits<double>::infinity();
  // best[p][l]: the smallest max-stage cost of layers [0, l) over stages [0, p).
  std::vector<std::vector<double>> best(P + 1, std::vector<double>(L + 1, inf));
  std::vector<std::vector<std::size_t>> cut(P + 1, std::vector<std::size_t>(L + 1, 0));
  best[0][0] = 0.0;
  for (std::size_t p = 1; p <= P; ++p) {
    for (std::size_t l = p; l <= L; ++l) {
      for (std::size_t from = p - 1; from < l; ++from) {
        const double stage = static_cast<double>(l - from) * layer + (p == P && l == L ? head : 0.0);
        const double cost = std::max(best[p - 1][from], stage);
        if (cost < best[p][l] * (1.0 - 1e-12)) {
          best[p][l] = cost;
          cut[p][l] = from;
        }
      }
    }
  }
  std::vector<std::int64_t> stages(P);
  for (std::size_t p = P, l = L; p > 0; l = cut[p][l], --p) stages[p - 1] = static_cast<std::int64_t>(l - cut[p][l]);
  return stages;
}

Engine::Engine(const model::ModelConfig& config, const EngineOptions& options, Backend& backend)
    : config_(config), options_(options), backend_(backend) {
  stages_ = checked_stages(config_, options_);
  groups_ = launch::ProcessGroups::build(MPI_COMM_WORLD, options_.layout);
  world_comm_ = std::make_unique<launch::MpiComm>(groups_, launch::GroupAxis::World);
  const bool on_gpu = backend_.device() == Device::CUDA;
#if !LOOM_HAVE_NCCL
  if (on_gpu && groups_.world_size() > 1) {
    throw std::invalid_argument("train.device=cuda with " + std::to_string(groups_.world_size()) +
                                " ranks needs NCCL, which this build lacks (see docs/nccl.md)");
  }
#endif
  auto make = [&](launch::GroupAxis axis, std::unique_ptr<launch::MpiComm>& mpi, std::unique_ptr<Comm>& device,
                  std::unique_ptr<parallel::TimingComm>& timed) {
    if (groups_.size(axis) == 1) return;
#if LOOM_HAVE_NCCL
    if (on_gpu) {
      device = std::make_unique<launch::NcclComm>(groups_, axis, cuda::stream_of(backend_));
      timed = std::make_unique<parallel::TimingComm>(*device);
      return;
    }
#endif
    (void)device;
    mpi = std::make_unique<launch::MpiComm>(groups_, axis);
    timed = std::make_unique<parallel::TimingComm>(*mpi);
  };
  make(launch::GroupAxis::Tp, tp_mpi_, tp_device_, tp_comm_);
  make(launch::GroupAxis::Dp, dp_mpi_, dp_device_, dp_comm_);
  make(launch::GroupAxis::Pp, pp_mpi_, pp_device_, pp_comm_);
  pp_ = parallel::PpGroup{pp_comm_.get(), groups_.pp_rank(), groups_.pp_size()};
  shard_ = shard_for(config_, stages_, groups_.pp_rank(), groups_.tp_rank(), groups_.tp_size());
  model_ = std::make_unique<model::Transformer>(config_, shard_, options_.head, backend_, options_.lora,
                                                options_.precision);
  trainable_ = model_->trainable_range();
  if (groups_.tp_size() > 1) {
    model_->set_tensor_parallel(parallel::TpGroup{tp_comm_.get(), groups_.tp_rank(), groups_.tp_size()});
  }
  // Frozen under LoRA: the two copies of a tied embedding then never change.
  tied_copies_ = groups_.pp_size() > 1 && options_.head == model::HeadKind::LM && config_.tie_embeddings &&
                 !options_.lora.enabled();
  if (dp_comm_ && !options_.zero1) {
    reducer_ = std::make_unique<parallel::GradReducer>(model_->params().grads(), model_->grad_ranges(), dp_comm_.get(),
                                                       options_.bucket_elements);
    model_->set_grad_ready_hook([this](const model::Transformer::GradRange& r) { reducer_->ready(r); });
  }
  build_norm_ranges();
}

Engine::~Engine() = default;

void Engine::init_weights(std::uint64_t seed) {
  seed_ = seed;
  model_->init_weights(seed);
}

void Engine::load_weights(const std::string& file) {
  // Every rank reads the whole file and keeps its slice: simple and fine for the models that
  // fit one host's memory; sharded checkpoints read hyperslabs instead.
  model::Transformer whole(config_, model::ShardSpec::whole(config_), options_.head, host_backend());
  const nlohmann::json metadata = io::load_model_weights(file, whole);
  // A scalar head started from a language model's backbone keeps its init (the file has none).
  const bool fresh_head = metadata.value("head", std::string("lm")) != model::head_kind_name(options_.head);
  copy_from_whole(whole, fresh_head);
}

void Engine::load_from(const model::Transformer& whole) { copy_from_whole(whole, false); }

void Engine::copy_from_whole(const model::Transformer& whole, bool keep_score_head) {
  model::ParameterSet& mine = model_->params();
  // On a GPU the slices are assembled in a host copy of the values (which keeps what is
  // not overwritten: adapters, a fresh score head) and copied up once.
  Tensor values = host_values();
  for (const model::ParameterEntry& e : mine.entries()) {
    if (model::is_lora_parameter(e.name)) continue;  // adapters keep their init: the file is a plain model
    if (keep_score_head && e.name.rfind("score_head.", 0) == 0) continue;
    copy_slice(e, shard_, values.view(e.offset, e.shape), whole.params().value(e.name), /*to_whole=*/false);
  }
  if (values.raw() != mine.values().raw()) {
    Tensor device_values = mine.values();
    backend_.copy(values, device_values);
  }
  mine.refresh_compute_values(backend_);
}

Backend& Engine::host_backend() {
  if (backend_.device() == Device::CPU) return backend_;
  if (!host_backend_) host_backend_ = make_cpu_backend();
  return *host_backend_;
}

Tensor Engine::host_values() {
  const Tensor& values = model_->params().values();
  if (values.device() == Device::CPU) return values;
  return to_host(backend_, values, host_values_);
}

std::unique_ptr<model::Transformer> Engine::gather_whole_model(Backend& backend) {
  const launch::ParallelLayout layout = options_.layout;
  const int world = groups_.world_size();
  constexpr int kTag = 7001;
  if (!leader()) {
    // One copy of each slice is enough: data-parallel rank 0 of each (tp, pp) position sends.
    if (groups_.dp_rank() == 0) world_comm_->send(host_values(), 0, kTag);  // MPI: host memory
    return nullptr;
  }
  Backend& host = backend.device() == Device::CPU ? backend : host_backend();
  auto whole = std::make_unique<model::Transformer>(config_, model::ShardSpec::whole(config_), options_.head, host,
                                                    options_.lora);
  // Puts one shard's slices (its flat host values, laid out as `entries`) into the whole model.
  auto place = [&](const std::vector<model::ParameterEntry>& entries, const Tensor& values,
                   const model::ShardSpec& spec) {
    for (const model::ParameterEntry& e : entries) {
      copy_slice(e, spec, values.view(e.offset, e.shape), whole->params().value(e.name), /*to_whole=*/true);
    }
  };
  place(model_->params().entries(), host_values(), shard_);
  for (int rank = 1; rank < world; ++rank) {
    const launch::RankCoordinates c = launch::coordinates_of(rank, world, layout);
    if (c.dp_rank != 0) continue;
    const model::ShardSpec spec = shard_for(config_, stages_, c.pp_rank, c.tp_rank, layout.tp);
    model::ParameterSet slice(model::parameter_specs(config_, spec, options_.head, options_.lora), host);
    world_comm_->recv(slice.values(), rank, kTag);
    place(slice.entries(), slice.values(), spec);
  }
  if (options_.lora.enabled()) return model::merge_lora(*whole, host);
  return whole;
}

void Engine::make_optimizer(const optim::AdamWConfig& config) {
  model::ParameterSet& params = model_->params();
  const std::int64_t begin = trainable_.begin, end = trainable_.end;
  if (!options_.zero1 || groups_.dp_size() == 1) {
    optimizer_ = std::make_unique<optim::AdamW>(params, config, backend_, begin, end);
    return;
  }
  const std::int64_t dp = groups_.dp_size(), r = groups_.dp_rank();
  zero_shard_ = (end - begin) / dp;
  optimizer_ = std::make_unique<optim::AdamW>(params, config, backend_, begin + r * zero_shard_,
                                              begin + (r + 1) * zero_shard_);
  if (end - begin > dp * zero_shard_) {
    tail_optimizer_ = std::make_unique<optim::AdamW>(params, config, backend_, begin + dp * zero_shard_, end);
  }
  zero_scratch_ = Tensor::empty({zero_shard_}, DType::F32, backend_.device());
  zero_grad_scratch_ = params.mixed_precision()
                           ? Tensor::empty({zero_shard_}, params.compute_dtype(), backend_.device())
                           : zero_scratch_;
  build_norm_ranges();
}

std::vector<Engine::OptimizerPart> Engine::optimizer_parts() {
  std::vector<OptimizerPart> parts;
  if (optimizer_) parts.push_back({optimizer_.get(), options_.zero1 && groups_.dp_size() > 1});
  if (tail_optimizer_) parts.push_back({tail_optimizer_.get(), false});
  return parts;
}

void Engine::set_activity_marker(parallel::ActivityMarker* marker) {
  marker_ = marker;
  if (tp_comm_) tp_comm_->mark_activity(marker, "tp");
  if (dp_comm_) dp_comm_->mark_activity(marker, "dp");
  if (pp_comm_) pp_comm_->mark_activity(marker, "pp");
}

void Engine::zero_grads() { model_->zero_grads(); }

StepTimes Engine::forward_backward(parallel::StageWork& work, int micro_batches, std::int64_t micro_rows,
                                   std::int64_t seq) {
  StepTimes times;
  std::function<void()> arm;
  if (reducer_) arm = [this] { reducer_->arm(); };
  // This dp rank's rows of the global batch start at dp_rank · (its rows), as the loader
  // hands them out, so every layout keys a sample's LoRA dropout mask the same way.
  model_->set_lora_dropout({true, seed_, optimizer_ ? optimizer_->steps_taken() : 0,
                            static_cast<std::int64_t>(groups_.dp_rank()) * micro_batches * micro_rows});
  times.pipeline = parallel::run_pipeline(*model_, pp_, options_.schedule, micro_batches, micro_rows, seq, work, arm);
  return times;
}

parallel::PipelineTimes Engine::forward_only(parallel::StageWork& work, int micro_batches, std::int64_t micro_rows,
                                             std::int64_t seq) {
  model_->set_lora_dropout({});  // evaluation: no dropout
  return parallel::run_pipeline_forward(*model_, pp_, micro_batches, micro_rows, seq, work);
}

void Engine::exchange_tied_embedding_grads() {
  if (!tied_copies_ || !(pp_.first() || pp_.last())) return;
  Tensor grad = model_->params().grad("embed.tokens.weight");
  if (!tied_peer_grad_.defined()) tied_peer_grad_ = Tensor::empty(grad.shape(), grad.dtype(), backend_.device());
  Tensor& other = tied_peer_grad_;
  const int peer = pp_.first() ? pp_.size - 1 : 0;
  Request sent = pp_comm_->send_async(grad, peer, 9001);
  pp_comm_->recv(other, peer, 9001);
  sent.wait();
  // a + b on one stage, b + a on the other: the same bits (IEEE addition commutes).
  backend_.add_inplace(grad, other);
}

void Engine::broadcast_tied_embedding() {
  if (!tied_copies_ || !(pp_.first() || pp_.last())) return;
  Tensor weight = model_->params().value("embed.tokens.weight");
  if (pp_.first()) {
    pp_comm_->send(weight, pp_.size - 1, 9002);
  } else {
    pp_comm_->recv(weight, 0, 9002);
  }
}

double Engine::reduce_gradients() {
  const auto t0 = std::chrono::steady_clock::now();
  model::ParameterSet& params = model_->params();
  const parallel::TpGroup& tp = model_->tensor_parallel();
  if (options_.zero1 && dp_comm_) {
    // Everything that adds copies together first, then each dp rank receives the sum of its
    // shard (the tied copies' shards are re-synchronised from stage 0 after the update).
    sum_tp_replicas(tp, params);
    exchange_tied_embedding_grads();
    const std::int64_t dp = groups_.dp_size(), r = groups_.dp_rank(), begin = trainable_.begin;
    Tensor body = params.grads().view(begin, {dp * zero_shard_});
    dp_comm_->reduce_scatter_sum(body, zero_grad_scratch_);
    Tensor mine = params.grads().view(begin + r * zero_shard_, {zero_shard_});
    backend_.copy(zero_grad_scratch_, mine);
    if (tail_optimizer_) {
      Tensor tail = params.grads().view(begin + dp * zero_shard_, {trainable_.end - begin - dp * zero_shard_});
      dp_comm_->all_reduce_sum(tail);
    }
  } else {
    // After the dp sum every replica of a kv head and both tied copies hold dp-reduced
    // values, so the sums below give the same bits on every rank that holds a copy.
    if (reducer_) reducer_->finish();
    sum_tp_replicas(tp, params);
    exchange_tied_embedding_grads();
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Engine::sum_tp_replicas(const parallel::TpGroup& tp, model::ParameterSet& params) {
  if (options_.lora.enabled()) {
    model::sum_lora_grads_over_tp(tp, backend_, params);  // the frozen kv replicas have no gradient
  } else {
    parallel::sum_replicated_kv_grads(tp, backend_, params);
  }
}

void Engine::build_norm_ranges() {
  const model::ParameterSet& params = model_->params();
  const parallel::TpGroup& tp = model_->tensor_parallel();
  // The elements this rank counts: all of them on dp rank 0 (plain dp: every dp rank holds the
  // same sums), its own shard (and rank 0 the tail) under ZeRO-1.
  std::int64_t lo = trainable_.begin, hi = trainable_.end;
  bool counts_tail = false;
  if (options_.zero1 && dp_comm_) {
    lo = trainable_.begin + groups_.dp_rank() * zero_shard_;
    hi = lo + zero_shard_;
    counts_tail = groups_.dp_rank() == 0;
  } else if (groups_.dp_rank() != 0) {
    hi = lo;
  }
  const std::int64_t tail_lo = trainable_.begin + groups_.dp_size() * zero_shard_;
  norm_ranges_.clear();
  for (const model::ParameterEntry& e : params.entries()) {
    if (tied_copies_ && !pp_.first() && e.name == "embed.tokens.weight") continue;  // counted on stage 0
    for (const parallel::WeightedRange& w : parallel::tp_norm_weights(e, tp)) {
      if (w.weight == 0.0) continue;
      auto add = [&](std::int64_t from, std::int64_t to) {
        from = std::max(from, e.offset + w.offset);
        to = std::min(to, e.offset + w.offset + w.length);
        if (from < to) norm_ranges_.push_back(parallel::WeightedRange{from, to - from, w.weight});
      };
      add(lo, hi);
      if (counts_tail) add(tail_lo, trainable_.end);
    }
  }
}

double Engine::grad_norm() {
  double sum = 0.0;
  for (const parallel::WeightedRange& r : norm_ranges_) {
    sum += r.weight * backend_.sum_squares(model_->params().grads().view(r.offset, {r.length}));
  }
  double total[1] = {sum};
  world_comm_->all_reduce_host(total, ReduceOp::Sum);
  return std::sqrt(total[0]);
}

void Engine::optimizer_step(float lr, float grad_scale) {
  if (!optimizer_) throw std::logic_error("Engine::optimizer_step: make_optimizer() was not called");
  optimizer_->step(lr, grad_scale);
  if (tail_optimizer_) tail_optimizer_->step(lr, grad_scale);
  if (options_.zero1 && dp_comm_) {
    model::ParameterSet& params = model_->params();
    const std::int64_t dp = groups_.dp_size(), r = groups_.dp_rank(), begin = trainable_.begin;
    backend_.copy(params.values().view(begin + r * zero_shard_, {zero_shard_}), zero_scratch_);
    Tensor body = params.values().view(begin, {dp * zero_shard_});
    dp_comm_->all_gather(zero_scratch_, body);
    broadcast_tied_embedding();
    params.refresh_compute_values(backend_, trainable_.begin, trainable_.end);  // the other ranks' shards
  }
}

Engine::CommSeconds Engine::comm_seconds() const {
  return CommSeconds{tp_comm_ ? tp_comm_->seconds() : 0.0, dp_comm_ ? dp_comm_->seconds() : 0.0,
                     pp_comm_ ? pp_comm_->seconds() : 0.0};
}

void Engine::reset_comm_seconds() {
  for (auto* comm : {tp_comm_.get(), dp_comm_.get(), pp_comm_.get()}) {
    if (comm) comm->reset();
  }
}

MemoryReport Engine::memory(int micro_batches, std::int64_t micro_rows, std::int64_t seq) const {
  MemoryReport m;
  const std::int64_t numel = model_->params().numel();
  const std::int64_t trainable = trainable_.end - trainable_.begin;
  const std::int64_t compute_bytes = static_cast<std::int64_t>(dtype_size(options_.precision));
  // bf16: the f32 masters plus the bf16 compute copy.
  m.parameters = numel * 4 + (options_.precision == DType::F32 ? 0 : numel * compute_bytes);
  m.gradients = numel * compute_bytes;  // allocated whole; under LoRA only the adapters' part is ever written
  std::int64_t state = trainable;  // ZeRO-1: this rank's shard plus the shared tail
  if (options_.zero1 && groups_.dp_size() > 1) state = zero_shard_ + (trainable - groups_.dp_size() * zero_shard_);
  m.optimizer = 2 * state * 4;
  const bool head = shard_.owns_head(config_);
  // 1F1B keeps at most pp - stage micro-batches' activations in flight (GPipe all of them).
  std::int64_t slots = options_.schedule == parallel::Schedule::GPipe ? micro_batches : pp_.size - pp_.rank;
  slots = head ? 1 : std::min<std::int64_t>(slots, micro_batches);
  m.activations = slots * model::SlotActivations::bytes_for(model_->dims(), head, micro_rows, seq) +
                  model::Workspace::bytes_for(model_->dims(), head && options_.head == model::HeadKind::LM, micro_rows, seq);
  return m;
}

std::string Engine::describe() const {
  std::ostringstream out;
  out << "dp " << groups_.dp_size() << " x tp " << groups_.tp_size() << " x pp " << groups_.pp_size() << " = "
      << groups_.world_size() << " rank" << (groups_.world_size() == 1 ? "" : "s") << "; stage " << pp_.rank
      << " holds layers " << shard_.layer_begin << "-" << shard_.layer_end - 1;
  if (shard_.owns_embeddings()) out << " + embeddings";
  if (shard_.owns_head(config_)) out << " + head";
  out << "; " << parallel::schedule_name(options_.schedule) << (options_.zero1 ? ", ZeRO-1" : "");
  if (options_.precision != DType::F32) out << "; " << dtype_name(options_.precision) << " over f32 master weights";
  if (options_.lora.enabled()) {
    out << "; LoRA r=" << options_.lora.rank << " alpha=" << options_.lora.alpha << " dropout=" << options_.lora.dropout
        << " on";
    for (const std::string& t : options_.lora.targets) out << " " << t;
    std::int64_t adapters = 0;
    for (const model::ParameterEntry& e : model_->params().entries()) {
      if (model::is_lora_parameter(e.name)) adapters += e.numel;
    }
    out << " (" << adapters << " trainable parameters in this shard)";
  }
  return out.str();
}

}  // namespace loom::train
