#include "core/model/transformer.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/mix64.h"
#include "core/model/init.h"
#include "core/transfer.h"

namespace loom::model {

namespace {

ShardSpec checked_shard(const ModelConfig& config, const ShardSpec& shard) {
  config.validate();
  return shard.resolved(config);
}

ShardDims dims_with_lora(const ModelConfig& config, const ShardSpec& shard, const LoraConfig& lora, DType compute) {
  ShardDims dims = ShardDims::of(config, shard);
  dims.set_lora(lora);
  dims.dtype = compute;
  return dims;
}

}  // namespace

Transformer::Transformer(const ModelConfig& config, const ShardSpec& shard, HeadKind head, Backend& backend,
                         const LoraConfig& lora, DType compute)
    : config_(config),
      shard_(checked_shard(config, shard)),
      head_(head),
      lora_(lora),
      backend_(backend),
      dims_(dims_with_lora(config_, shard_, lora_, compute)),
      params_(parameter_specs(config_, shard_, head_, lora_), backend, compute) {
  if (params_.contains("embed.tokens.weight")) {
    token_embedding_ = params_.compute_value("embed.tokens.weight");
    d_token_embedding_ = params_.grad("embed.tokens.weight");
  }
  if (params_.contains("embed.positions.weight")) {
    position_embedding_ = params_.compute_value("embed.positions.weight");
    d_position_embedding_ = params_.grad("embed.positions.weight");
  }
  blocks_.reserve(static_cast<std::size_t>(dims_.layers));
  for (std::int64_t layer = shard_.layer_begin; layer < shard_.layer_end; ++layer) {
    blocks_.emplace_back(config_, dims_, layer, params_, lora_);
  }
  if (lora_.enabled()) {
    // Frozen: no gradient views, so no backward op writes one.
    d_token_embedding_ = Tensor();
    d_position_embedding_ = Tensor();
  }
  if (shard_.owns_head(config_)) {
    final_norm_ = Norm::bind(params_, "final_norm", config_);
    if (head_ == HeadKind::Scalar) {
      head_linear_ = Linear::bind(params_, "score_head");
    } else if (config_.tie_embeddings) {
      head_linear_.weight = token_embedding_;
      head_linear_.dweight = d_token_embedding_;
    } else {
      head_linear_ = Linear::bind(params_, "lm_head");
    }
    if (lora_.enabled()) {
      final_norm_.freeze();
      head_linear_.freeze();
    }
    if (head_ == HeadKind::LM) {
      ones_vocab_ = Tensor::empty({config_.vocab_size, 1}, DType::F32, backend_.device());
      backend_.fill(ones_vocab_, 1.0f);
      host_loss_totals_ = Tensor::empty({2, 1}, DType::F32, Device::CPU);
    }
  }
  build_grad_ranges();
  trainable_ = GradRange{0, params_.numel()};
  if (lora_.enabled()) {
    for (const ParameterEntry& e : params_.entries()) {
      if (is_lora_parameter(e.name)) {
        trainable_.begin = e.offset;
        break;
      }
    }
  }
}

void Transformer::build_grad_ranges() {
  auto extend = [](GradRange& r, const ParameterEntry& e) {
    if (r.end == r.begin) r.begin = e.offset;
    r.end = e.offset + e.numel;
  };
  layer_ranges_.assign(static_cast<std::size_t>(dims_.layers), GradRange{});
  for (const ParameterEntry& e : params_.entries()) {
    if (lora_.enabled() && !is_lora_parameter(e.name)) continue;  // frozen: never reduced
    if (e.name.rfind("embed.", 0) == 0) {
      extend(embed_range_, e);
    } else if (e.name.rfind("layers.", 0) == 0) {
      const std::int64_t layer = std::stoll(e.name.substr(7));
      extend(layer_ranges_[static_cast<std::size_t>(layer - shard_.layer_begin)], e);
    } else {
      extend(head_range_, e);
    }
  }
  if (head_range_.end > head_range_.begin) grad_ranges_.push_back(head_range_);
  for (auto it = layer_ranges_.rbegin(); it != layer_ranges_.rend(); ++it) grad_ranges_.push_back(*it);
  if (embed_range_.end > embed_range_.begin) grad_ranges_.push_back(embed_range_);
}

void Transformer::set_tensor_parallel(const parallel::TpGroup& tp) {
  if (tp.size != shard_.tp_size || tp.rank != shard_.tp_rank || (tp.size > 1 && tp.comm == nullptr)) {
    throw std::invalid_argument("Transformer::set_tensor_parallel: group rank " + std::to_string(tp.rank) + " of " +
                                std::to_string(tp.size) + (tp.comm ? "" : " without a communicator") +
                                " does not match the shard's tp slice " + std::to_string(shard_.tp_rank) + " of " +
                                std::to_string(shard_.tp_size));
  }
  tp_ = tp;
  for (TransformerBlock& block : blocks_) block.set_tensor_parallel(tp);
}

void Transformer::init_weights(std::uint64_t seed) {
  init_parameters(params_, seed, shard_.tp_rank, shard_.tp_size, backend_);
}

void Transformer::zero_grads() {
  Tensor trainable = params_.grads().view(trainable_.begin, {trainable_.end - trainable_.begin});
  backend_.fill(trainable, 0.0f);
}

void Transformer::set_lora_dropout(const LoraDropoutStep& step) {
  lora_step_ = step;
  lora_micro_ = 0;
}

// ---- checks and slots -------------------------------------------------------------------

void Transformer::require_stage(bool ok, const char* step, const char* what) const {
  if (!ok) throw std::logic_error(std::string("Transformer::") + step + ": " + what);
}

void Transformer::check_tokens(const Tensor& t, const char* what, const char* step) const {
  if (t.ndim() != 2 || t.dtype() != DType::I32) {
    throw std::invalid_argument(std::string("Transformer::") + step + ": " + what + " must be [B, T] i32, got " +
                                t.describe());
  }
  if (t.dim(1) > config_.max_seq_len) {
    throw std::invalid_argument(std::string("Transformer::") + step + ": sequence length " +
                                std::to_string(t.dim(1)) + " exceeds max_seq_len " +
                                std::to_string(config_.max_seq_len));
  }
}

SlotActivations& Transformer::slot_for(int slot, std::int64_t batch, std::int64_t seq) {
  if (slot < 0) throw std::invalid_argument("Transformer: activation slot must be >= 0, got " + std::to_string(slot));
  require_stage(shard_.tp_size == 1 || tp_.active(), "forward",
                "a tensor-parallel shard (tp_size > 1) needs set_tensor_parallel() with its group before it runs");
  const auto index = static_cast<std::size_t>(slot);
  if (slots_.size() <= index) {
    slots_.resize(index + 1);
    slot_ids_.resize(index + 1);
    slot_ids_device_.resize(index + 1);
    slot_hidden_.resize(index + 1);
  }
  if (!slots_[index]) slots_[index] = std::make_unique<SlotActivations>();
  slots_[index]->plan(dims_, shard_.owns_head(config_), batch, seq, backend_.device());
  return *slots_[index];
}

SlotActivations& Transformer::planned_slot(int slot, const char* step) {
  const auto index = static_cast<std::size_t>(slot);
  if (slot < 0 || index >= slots_.size() || !slots_[index] || slots_[index]->batch == 0) {
    throw std::logic_error(std::string("Transformer::") + step + ": no forward pass has run on slot " +
                           std::to_string(slot));
  }
  SlotActivations& s = *slots_[index];
  workspace_.plan(dims_, head_ == HeadKind::LM && shard_.owns_head(config_), s.batch, s.seq, backend_);
  return s;
}

// ---- embeddings ---------------------------------------------------------------------------

const Tensor& Transformer::embed_forward(const Tensor& ids, int slot) {
  require_stage(shard_.owns_embeddings(), "embed_forward", "this stage does not own layer 0 (the embeddings)");
  check_tokens(ids, "ids", "embed_forward");
  const std::int64_t B = ids.dim(0), T = ids.dim(1), C = dims_.d_model;
  SlotActivations& s = slot_for(slot, B, T);
  const Tensor& device_ids = to_backend(backend_, ids, slot_ids_device_[static_cast<std::size_t>(slot)]);
  parallel::VocabParallelEmbedding::forward(tp_, backend_, device_ids.reshape({B * T}), token_embedding_, s.input);
  if (position_embedding_.defined()) {
    const Tensor positions = position_embedding_.view(0, {T, C});
    for (std::int64_t b = 0; b < B; ++b) {
      Tensor rows = s.input.view(b * T * C, {T, C});
      backend_.add_inplace(rows, positions);
    }
  }
  slot_ids_[static_cast<std::size_t>(slot)] = device_ids;
  return s.input;
}

void Transformer::embed_backward(const Tensor& dhidden, int slot) {
  require_stage(shard_.owns_embeddings(), "embed_backward", "this stage does not own layer 0 (the embeddings)");
  SlotActivations& s = planned_slot(slot, "embed_backward");
  const Tensor& ids = slot_ids_[static_cast<std::size_t>(slot)];
  require_stage(ids.defined(), "embed_backward", "embed_forward has not run on this slot");
  const std::int64_t B = s.batch, T = s.seq, C = dims_.d_model;
  if (d_token_embedding_.defined()) {
    parallel::VocabParallelEmbedding::backward(tp_, backend_, ids.reshape({B * T}), dhidden, d_token_embedding_);
  }
  if (d_position_embedding_.defined()) {
    Tensor d_positions = d_position_embedding_.view(0, {T, C});
    for (std::int64_t b = 0; b < B; ++b) backend_.add_inplace(d_positions, dhidden.view(b * T * C, {T, C}));
  }
  report_ready(embed_range_);
}

// ---- blocks -------------------------------------------------------------------------------

Tensor& Transformer::stage_input(std::int64_t batch, std::int64_t seq, int slot) {
  return slot_for(slot, batch, seq).input;
}

const Tensor& Transformer::blocks_forward(const Tensor& hidden_in, int slot) {
  if (hidden_in.ndim() != 3 || hidden_in.dim(2) != dims_.d_model) {
    throw std::invalid_argument("Transformer::blocks_forward: hidden state must be [B, T, " +
                                std::to_string(dims_.d_model) + "], got " + hidden_in.describe());
  }
  SlotActivations& s = slot_for(slot, hidden_in.dim(0), hidden_in.dim(1));
  if (hidden_in.raw() != s.input.raw()) backend_.copy(hidden_in, s.input);
  const LoraDropout dropout = next_lora_dropout(s.batch, s.seq);
  if (slot_dropout_.size() <= static_cast<std::size_t>(slot)) slot_dropout_.resize(static_cast<std::size_t>(slot) + 1);
  slot_dropout_[static_cast<std::size_t>(slot)] = dropout;
  const Tensor* x = &s.input;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    blocks_[i].forward(backend_, *x, s.layers[i], dropout);
    x = &s.layers[i].output;
  }
  return *x;
}

const LayerActivations& Transformer::layer_forward(std::int64_t index, const Tensor& x, int slot) {
  TransformerBlock& b = block(index);
  if (x.ndim() != 3 || x.dim(2) != dims_.d_model) {
    throw std::invalid_argument("Transformer::layer_forward: hidden state must be [B, T, " +
                                std::to_string(dims_.d_model) + "], got " + x.describe());
  }
  SlotActivations& s = slot_for(slot, x.dim(0), x.dim(1));
  LayerActivations& acts = s.layers[static_cast<std::size_t>(index)];
  b.forward(backend_, x, acts);
  return acts;
}

TransformerBlock& Transformer::block(std::int64_t index) {
  if (index < 0 || index >= static_cast<std::int64_t>(blocks_.size())) {
    throw std::out_of_range("Transformer::block: layer " + std::to_string(index) + " outside the " +
                            std::to_string(blocks_.size()) + " layers of this stage");
  }
  return blocks_[static_cast<std::size_t>(index)];
}

void Transformer::set_kv_int8(bool on) {
  for (TransformerBlock& b : blocks_) b.set_kv_int8(on);
}

const Tensor& Transformer::blocks_backward(const Tensor& dhidden_out, int slot) {
  SlotActivations& s = planned_slot(slot, "blocks_backward");
  if (dhidden_out.numel() != s.batch * s.seq * dims_.d_model) {
    throw std::invalid_argument("Transformer::blocks_backward: gradient " + dhidden_out.describe() +
                                " does not match the slot's hidden state " + s.input.describe());
  }
  if (dhidden_out.raw() != workspace_.d_residual.raw()) backend_.copy(dhidden_out, workspace_.d_residual);
  const LoraDropout dropout =
      static_cast<std::size_t>(slot) < slot_dropout_.size() ? slot_dropout_[static_cast<std::size_t>(slot)] : LoraDropout{};
  for (std::size_t i = blocks_.size(); i-- > 0;) {
    const Tensor& x = i == 0 ? s.input : s.layers[i - 1].output;
    blocks_[i].backward(backend_, x, s.layers[i], workspace_, dropout);
    report_ready(layer_ranges_[i]);
  }
  return workspace_.d_residual;
}

LoraDropout Transformer::next_lora_dropout(std::int64_t batch, std::int64_t seq) {
  if (!dims_.lora_dropout || !lora_step_.training) return LoraDropout{};
  const std::int64_t micro = lora_micro_++;
  LoraDropout dropout;
  dropout.p = lora_.dropout;
  dropout.key = mix64(mix64(lora_step_.seed ^ 0x4c6f5241ull) + static_cast<std::uint64_t>(lora_step_.step));
  dropout.token0 = (lora_step_.first_row + micro * batch) * seq;
  return dropout;
}

// ---- heads --------------------------------------------------------------------------------

void Transformer::head_norm_forward(const Tensor& hidden, SlotActivations& s, int slot) {
  final_norm_.forward(backend_, hidden, s.final_norm_out, s.final_norm_mean, s.final_norm_rstd);
  slot_hidden_[static_cast<std::size_t>(slot)] = hidden;
}

const Tensor& Transformer::head_backward(const Tensor& dhead_out, SlotActivations& s, int slot) {
  head_linear_.backward_overwrite(backend_, dhead_out, s.final_norm_out, workspace_.d_norm);
  // The LM head is column-parallel over the vocabulary: each rank's input gradient is
  // partial. The scalar head is replicated, so its gradient is already whole.
  if (head_ == HeadKind::LM) parallel::CopyToTp::backward(tp_, workspace_.d_norm);
  backend_.fill(workspace_.d_residual, 0.0f);
  final_norm_.backward(backend_, workspace_.d_norm, slot_hidden_[static_cast<std::size_t>(slot)], s.final_norm_mean,
                       s.final_norm_rstd, workspace_.d_residual);
  report_ready(head_range_);
  return workspace_.d_residual;
}

LossSum Transformer::lm_head_forward(const Tensor& hidden, const Tensor& targets, int slot) {
  require_stage(shard_.owns_head(config_) && head_ == HeadKind::LM, "lm_head_forward",
                "this shard has no LM head (it is not the last stage, or the head is scalar)");
  check_tokens(targets, "targets", "lm_head_forward");
  const std::int64_t B = targets.dim(0), T = targets.dim(1), N = B * T;
  if (hidden.numel() != N * dims_.d_model) {
    throw std::invalid_argument("Transformer::lm_head_forward: hidden " + hidden.describe() +
                                " does not match targets " + targets.describe());
  }
  SlotActivations& s = slot_for(slot, B, T);
  workspace_.plan(dims_, true, B, T, backend_);
  Workspace& ws = workspace_;

  head_norm_forward(hidden, s, slot);
  head_linear_.forward(backend_, s.final_norm_out, ws.logits);
  targets_ = to_backend(backend_, targets, targets_device_).reshape({N});
  Tensor losses = ws.loss_terms.view(0, {N});
  Tensor counted = ws.loss_terms.view(N, {N, 1});
  vocab_ce_.forward(tp_, backend_, ws.logits, targets_, losses);
  // Targets inside [0, V) pick a 1 from the ones column, ignored (negative) ones give 0;
  // one [2, N] x [N, 1] product then yields {Σ loss, count} without a host loop.
  backend_.embedding_forward(targets_, ones_vocab_, counted);
  backend_.matmul(ws.loss_terms, false, ws.ones_tokens, false, ws.loss_totals);
  backend_.copy(ws.loss_totals, host_loss_totals_);
  logits_slot_ = slot;

  const float* totals = host_loss_totals_.data<float>();
  return LossSum{static_cast<double>(totals[0]), std::llround(totals[1])};
}

const Tensor& Transformer::lm_head_backward(float dloss_per_token, int slot) {
  require_stage(shard_.owns_head(config_) && head_ == HeadKind::LM, "lm_head_backward",
                "this shard has no LM head");
  SlotActivations& s = planned_slot(slot, "lm_head_backward");
  if (logits_slot_ != slot) {
    throw std::logic_error("Transformer::lm_head_backward: the logits buffer holds slot " +
                           std::to_string(logits_slot_) + ", not slot " + std::to_string(slot) +
                           "; run lm_head_forward for a slot right before its backward (and only once)");
  }
  Workspace& ws = workspace_;
  Tensor dloss = ws.loss_terms.view(0, {s.batch * s.seq});
  backend_.fill(dloss, dloss_per_token);
  vocab_ce_.backward(tp_, backend_, ws.logits, targets_, dloss, ws.logits);
  logits_slot_ = -1;  // the buffer now holds dlogits
  return head_backward(ws.logits, s, slot);
}

Tensor Transformer::lm_token_losses() const {
  if (logits_slot_ < 0) {
    throw std::logic_error("Transformer::lm_token_losses: no lm_head_forward since the last lm_head_backward");
  }
  return workspace_.loss_terms.view(0, {targets_.numel()});
}

const Tensor& Transformer::lm_head_backward(const Tensor& dloss, int slot) {
  require_stage(shard_.owns_head(config_) && head_ == HeadKind::LM, "lm_head_backward",
                "this shard has no LM head");
  SlotActivations& s = planned_slot(slot, "lm_head_backward");
  if (logits_slot_ != slot) {
    throw std::logic_error("Transformer::lm_head_backward: the logits buffer holds slot " +
                           std::to_string(logits_slot_) + ", not slot " + std::to_string(slot) +
                           "; run lm_head_forward for a slot right before its backward (and only once)");
  }
  if (dloss.numel() != s.batch * s.seq || dloss.dtype() != DType::F32) {
    throw std::invalid_argument("Transformer::lm_head_backward: dloss must hold " + std::to_string(s.batch * s.seq) +
                                " f32 per-token weights, got " + dloss.describe());
  }
  Workspace& ws = workspace_;
  vocab_ce_.backward(tp_, backend_, ws.logits, targets_, dloss.reshape({s.batch * s.seq}), ws.logits);
  logits_slot_ = -1;  // the buffer now holds dlogits
  return head_backward(ws.logits, s, slot);
}

const Tensor& Transformer::scalar_head_forward(const Tensor& hidden, int slot) {
  require_stage(shard_.owns_head(config_) && head_ == HeadKind::Scalar, "scalar_head_forward",
                "this shard has no scalar head");
  if (hidden.ndim() != 3) {
    throw std::invalid_argument("Transformer::scalar_head_forward: hidden must be [B, T, C], got " +
                                hidden.describe());
  }
  SlotActivations& s = slot_for(slot, hidden.dim(0), hidden.dim(1));
  head_norm_forward(hidden, s, slot);
  // Values leave the model in f32 whatever the compute dtype (the losses are computed on them).
  const bool mixed = s.values_compute.defined();
  Tensor values = (mixed ? s.values_compute : s.values).reshape({s.batch * s.seq, 1});
  head_linear_.forward(backend_, s.final_norm_out, values);
  if (mixed) backend_.copy(s.values_compute, s.values);
  return s.values;
}

const Tensor& Transformer::scalar_head_backward(const Tensor& dvalues, int slot) {
  require_stage(shard_.owns_head(config_) && head_ == HeadKind::Scalar, "scalar_head_backward",
                "this shard has no scalar head");
  SlotActivations& s = planned_slot(slot, "scalar_head_backward");
  if (dvalues.numel() != s.batch * s.seq || dvalues.dtype() != DType::F32) {
    throw std::invalid_argument("Transformer::scalar_head_backward: dvalues must be [" + std::to_string(s.batch) +
                                ", " + std::to_string(s.seq) + "] f32, got " + dvalues.describe());
  }
  if (workspace_.d_values.defined()) {
    backend_.copy(dvalues, workspace_.d_values);
    return head_backward(workspace_.d_values, s, slot);
  }
  return head_backward(dvalues.reshape({s.batch * s.seq, 1}), s, slot);
}

// ---- whole model --------------------------------------------------------------------------

LossSum Transformer::forward_lm(const Tensor& ids, const Tensor& targets) {
  require_stage(shard_.owns_embeddings() && shard_.owns_head(config_), "forward_lm",
                "needs a single-stage shard (all layers); pipeline stages use the stage steps");
  const Tensor& hidden = blocks_forward(embed_forward(ids, 0), 0);
  return lm_head_forward(hidden, targets, 0);
}

void Transformer::backward_lm(float dloss_per_token) {
  embed_backward(blocks_backward(lm_head_backward(dloss_per_token, 0), 0), 0);
}

const Tensor& Transformer::forward_scalar(const Tensor& ids) {
  require_stage(shard_.owns_embeddings() && shard_.owns_head(config_), "forward_scalar",
                "needs a single-stage shard (all layers); pipeline stages use the stage steps");
  return scalar_head_forward(blocks_forward(embed_forward(ids, 0), 0), 0);
}

void Transformer::backward_scalar(const Tensor& dvalues) {
  embed_backward(blocks_backward(scalar_head_backward(dvalues, 0), 0), 0);
}

// ---- generation ---------------------------------------------------------------------------

KvCache Transformer::make_kv_cache(std::int64_t batch, std::int64_t capacity) const {
  if (capacity > config_.max_seq_len) {
    throw std::invalid_argument("Transformer::make_kv_cache: capacity " + std::to_string(capacity) +
                                " exceeds max_seq_len " + std::to_string(config_.max_seq_len));
  }
  const bool int8 = !blocks_.empty() && blocks_.front().kv_int8();
  return KvCache(dims_, batch, capacity, backend_, int8 ? KvCacheKind::Int8 : KvCacheKind::F32);
}

const Tensor& Transformer::forward_decode(const Tensor& ids, KvCache& cache, std::int64_t start_pos) {
  require_stage(shard_.owns_embeddings() && shard_.owns_head(config_), "forward_decode",
                "needs a single-stage shard (all layers); pipeline stages use decode_embed, decode_blocks and "
                "decode_head");
  return decode_head(decode_blocks(decode_embed(ids, start_pos), cache, start_pos));
}

const Tensor& Transformer::decode_embed(const Tensor& ids, std::int64_t start_pos) {
  require_stage(shard_.owns_embeddings(), "decode_embed", "this stage does not own layer 0 (the embeddings)");
  require_stage(head_ == HeadKind::LM, "decode_embed", "needs an LM head, this model has a scalar head");
  require_stage(shard_.tp_size == 1 || tp_.active(), "decode_embed",
                "a tensor-parallel shard (tp_size > 1) needs set_tensor_parallel() with its group before it runs");
  check_tokens(ids, "ids", "decode_embed");
  const std::int64_t B = ids.dim(0), T = ids.dim(1), C = dims_.d_model;
  if (start_pos < 0 || start_pos + T > config_.max_seq_len) {
    throw std::invalid_argument("Transformer::decode_embed: positions [" + std::to_string(start_pos) + ", " +
                                std::to_string(start_pos + T) + ") are outside [0, max_seq_len " +
                                std::to_string(config_.max_seq_len) + ")");
  }
  Tensor& hidden = decode_input(B, T);
  const Tensor& device_ids = to_backend(backend_, ids, decode_ids_device_);
  parallel::VocabParallelEmbedding::forward(tp_, backend_, device_ids.reshape({B * T}), token_embedding_, hidden);
  if (position_embedding_.defined()) {
    const Tensor positions = position_embedding_.view(start_pos * C, {T, C});
    for (std::int64_t b = 0; b < B; ++b) {
      Tensor rows = hidden.view(b * T * C, {T, C});
      backend_.add_inplace(rows, positions);
    }
  }
  return hidden;
}

Tensor& Transformer::decode_input(std::int64_t batch, std::int64_t seq) {
  decode_acts_.plan(dims_, shard_.owns_head(config_), batch, seq, backend_.device());
  return decode_acts_.input;
}

const Tensor& Transformer::decode_blocks(const Tensor& hidden_in, KvCache& cache, std::int64_t start_pos) {
  require_stage(head_ == HeadKind::LM, "decode_blocks", "needs an LM head, this model has a scalar head");
  require_stage(shard_.tp_size == 1 || tp_.active(), "decode_blocks",
                "a tensor-parallel shard (tp_size > 1) needs set_tensor_parallel() with its group before it runs");
  if (hidden_in.ndim() != 3 || hidden_in.dim(2) != dims_.d_model) {
    throw std::invalid_argument("Transformer::decode_blocks: hidden state must be [B, T, " +
                                std::to_string(dims_.d_model) + "], got " + hidden_in.describe());
  }
  const std::int64_t B = hidden_in.dim(0), T = hidden_in.dim(1);
  if (cache.batch() != B || cache.layers() != dims_.layers) {
    throw std::invalid_argument("Transformer::decode_blocks: cache holds " + std::to_string(cache.batch()) +
                                " sequences of " + std::to_string(cache.layers()) + " layers, the hidden state is " +
                                hidden_in.describe() + " for a stage of " + std::to_string(dims_.layers) + " layers");
  }
  if (start_pos < 0 || start_pos > cache.length()) {
    throw std::invalid_argument("Transformer::decode_blocks: start_pos " + std::to_string(start_pos) +
                                " must be in [0, cache length " + std::to_string(cache.length()) + "]");
  }
  const std::int64_t end = start_pos + T;
  if (end > cache.capacity() || end > config_.max_seq_len) {
    throw std::invalid_argument("Transformer::decode_blocks: positions up to " + std::to_string(end) +
                                " exceed the cache capacity " + std::to_string(cache.capacity()) +
                                " or max_seq_len " + std::to_string(config_.max_seq_len));
  }
  Tensor& input = decode_input(B, T);
  if (hidden_in.raw() != input.raw()) backend_.copy(hidden_in, input);
  SlotActivations& s = decode_acts_;
  const Tensor* x = &s.input;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    const auto layer = static_cast<std::int64_t>(i);
    blocks_[i].forward_cached(backend_, *x, cache, layer, start_pos, s.layers[i]);
    x = &s.layers[i].output;
  }
  cache.set_length(end);
  return *x;
}

const Tensor& Transformer::decode_head(const Tensor& hidden) {
  require_stage(shard_.owns_head(config_) && head_ == HeadKind::LM, "decode_head",
                "this shard has no LM head (it is not the last stage, or the head is scalar)");
  if (hidden.ndim() != 3 || hidden.dim(2) != dims_.d_model) {
    throw std::invalid_argument("Transformer::decode_head: hidden state must be [B, T, " +
                                std::to_string(dims_.d_model) + "], got " + hidden.describe());
  }
  const std::int64_t B = hidden.dim(0), T = hidden.dim(1), N = B * T;
  const std::int64_t V = dims_.vocab_global, Vs = dims_.vocab;
  decode_input(B, T);
  SlotActivations& s = decode_acts_;
  final_norm_.forward(backend_, hidden, s.final_norm_out, s.final_norm_mean, s.final_norm_rstd);
  // Logits leave the model in f32 (sampling reads them); a bf16 model computes them in bf16
  // and widens them once.
  const bool mixed = dims_.dtype != DType::F32;
  auto sized = [&](Tensor& storage, std::int64_t numel, DType dtype) {
    if (!storage.defined() || storage.numel() < numel) storage = Tensor::empty({numel}, dtype, backend_.device());
  };
  sized(decode_logits_storage_, N * V, DType::F32);
  decode_logits_ = decode_logits_storage_.view(0, {B, T, V});
  Tensor logits = decode_logits_.reshape({N, V});
  Tensor full = logits;
  if (mixed) {
    sized(decode_compute_storage_, N * V, dims_.dtype);
    full = decode_compute_storage_.view(0, {N, V});
  }
  if (!tp_.active()) {
    head_linear_.forward(backend_, s.final_norm_out, full);
  } else {
    sized(decode_local_storage_, N * Vs, dims_.dtype);
    Tensor local = decode_local_storage_.view(0, {N, Vs});
    head_linear_.forward(backend_, s.final_norm_out, local);
    parallel::GatherVocabFromTp::forward(tp_, backend_, local, decode_gathered_storage_, decode_order_, full);
  }
  if (mixed) backend_.copy(full, logits);
  return decode_logits_;
}

}  // namespace loom::model
