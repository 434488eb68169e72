// Transformer: one rank's shard of a decoder-only language model (GPT-2 or Llama family)
// with an LM or scalar head, explicit forward and backward, all numerics via Backend.
//
// A shard owns layers [layer_begin, layer_end) and tensor-parallel slice tp_rank of tp_size
// (ShardSpec). The stage that owns layer 0 holds the embeddings; the stage that owns the
// last layer holds the final norm and the head. A pipeline schedule drives the stage steps
// below per micro-batch; single-stage callers use forward_lm/backward_lm and
// forward_scalar/backward_scalar.
//
// Parameters and gradients live in one ParameterSet (two flat f32 buffers). Backward ops
// ADD into gradients, so gradient accumulation over micro-batches is just calling backward
// again; call zero_grads() at the start of an optimizer step.
//
// Activations: `slot` picks one of several saved-activation sets so that several
// micro-batches can be in flight on a stage (1F1B holds up to pp of them); each is sized for
// the largest (B, T) it has seen and reused. The backward scratch and the LM head's logits
// are shared: the backward of a micro-batch runs to completion before the next starts, and
// lm_head_backward must follow its slot's lm_head_forward with no other LM-head forward in
// between (the 1F1B last stage does exactly that).
//
// LoRA (lora_config.h): a shard built with a LoraConfig of rank > 0 holds the adapters after
// its base parameters, trains only them (base weights, embeddings, norms and head get no
// gradients), and drops out the adapters' inputs in training forwards once
// set_lora_dropout() has said which step and rows they belong to.
//
// Inputs held by reference: ids and targets are kept (as Tensor handles) from forward to
// backward; the caller must not overwrite them in between. They may be host tensors on any
// backend: a GPU shard copies them into device buffers it keeps (core/transfer.h). Outputs
// (losses, values, logits) stay on the backend's device; host readers use to_host.
//
// Tensor parallelism: a shard with tp_size > 1 runs once set_tensor_parallel() has given it
// its tp group; the blocks, the vocab-parallel embedding and the vocab-parallel LM head and
// loss then communicate over it (core/parallel/tensor_parallel.h); generation's LM head
// all-gathers its vocabulary slices instead. Nothing else here communicates: pipeline
// transfers and gradient reduction belong to the schedule, the trainer and the generator.
//
// Threads: one thread drives a Transformer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/model/activations.h"
#include "core/model/block.h"
#include "core/model/kv_cache.h"
#include "core/model/layers.h"
#include "core/model/model_config.h"
#include "core/model/parameter_set.h"
#include "core/parallel/tensor_parallel.h"

namespace loom::model {

// Sum of per-token losses and the number of tokens that carried a target.
struct LossSum {
  double sum = 0.0;
  std::int64_t count = 0;
  double mean() const { return count > 0 ? sum / static_cast<double>(count) : 0.0; }
};

class Transformer {
 public:
  // compute: the dtype of weights, activations and gradients (f32, or bf16 over f32 master
  // weights: ParameterSet).
  Transformer(const ModelConfig& config, const ShardSpec& shard, HeadKind head, Backend& backend,
              const LoraConfig& lora = {}, DType compute = DType::F32);
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return config_; }
  const ShardSpec& shard() const { return shard_; }
  HeadKind head_kind() const { return head_; }
  const LoraConfig& lora() const { return lora_; }
  const ShardDims& dims() const { return dims_; }
  ParameterSet& params() { return params_; }
  const ParameterSet& params() const { return params_; }
  Backend& backend() { return backend_; }

  // Required before running a shard with tp_size > 1: the group of the tp_size ranks holding
  // the slices (rank and size must match the ShardSpec).
  void set_tensor_parallel(const parallel::TpGroup& tp);
  const parallel::TpGroup& tensor_parallel() const { return tp_; }

  // Flat gradient-buffer ranges [begin, end) (elements) whose gradient a backward completes
  // together, in the order backward completes them: head (final norm and untied head or
  // score head), the owned layers from last to first, then the embeddings (with a tied
  // replica on a head-only stage, the replica). Empty ranges are left out.
  struct GradRange {
    std::int64_t begin = 0, end = 0;
  };
  const std::vector<GradRange>& grad_ranges() const { return grad_ranges_; }
  // Called with each range of grad_ranges() as a backward step finishes adding into it
  // (head backward, each block, embed backward); a head-only stage's tied replica is never
  // reported. Used by a data-parallel reducer to start reducing early. Empty: no calls.
  using GradReadyHook = std::function<void(const GradRange&)>;
  void set_grad_ready_hook(GradReadyHook hook) { grad_ready_ = std::move(hook); }

  // The flat-buffer range [begin, end) a training step updates: the adapters with LoRA
  // (every other gradient stays zero), else the whole buffer.
  GradRange trainable_range() const { return trainable_; }

  // LoRA dropout of the training forwards that follow: the k-th blocks_forward after this
  // call is micro-batch k of optimizer step `step`, whose first row is row `first_row` of
  // the step's global batch (forwards run in micro-batch order under every schedule). Each
  // slot keeps its forward's mask for its backward. training = false (the default state):
  // no dropout (evaluation). No effect without LoRA dropout.
  struct LoraDropoutStep {
    bool training = false;
    std::uint64_t seed = 0;
    std::int64_t step = 0;
    std::int64_t first_row = 0;
  };
  void set_lora_dropout(const LoraDropoutStep& step);

  // Layout-independent init (see init.h) of this shard's slice.
  void init_weights(std::uint64_t seed);
  // Zeroes the trainable range of the gradient buffer (the rest is never written).
  void zero_grads();

  // ---- whole model (single stage: owns every layer, tp_size = 1) -------------------------
  // ids, targets [B, T] i32; target < 0 is ignored.
  LossSum forward_lm(const Tensor& ids, const Tensor& targets);
  // Adds the gradient of dloss_per_token · Σ token losses (mean loss: 1 / count).
  void backward_lm(float dloss_per_token);
  // values [B, T] f32, valid until the next forward on slot 0.
  const Tensor& forward_scalar(const Tensor& ids);
  void backward_scalar(const Tensor& dvalues);  // dvalues [B, T] f32

  // ---- generation (LM head; forward only) ----------------------------------------------
  // An empty cache of this stage's layers for `batch` sequences of up to `capacity`
  // positions (<= max_seq_len): int8 (KvCacheKind::Int8) when set_kv_int8 is on, else f32.
  KvCache make_kv_cache(std::int64_t batch, std::int64_t capacity) const;
  // Single stage (any tp_size): ids [B, T] i32 are the tokens at positions
  // [start_pos, start_pos + T) of each sequence; the cache must hold positions [0, start_pos)
  // (prefill: start_pos 0, T = prompt length; decode: T = 1). Appends their keys/values, sets
  // cache.length() = start_pos + T and returns the full logits [B, T, V] (gathered over tp,
  // so every tp rank holds the same bits), valid until the next decode_head. Throws
  // std::logic_error for a pipeline stage: use the decode steps below.
  const Tensor& forward_decode(const Tensor& ids, KvCache& cache, std::int64_t start_pos);

  // ---- generation stage steps (pipeline stages; forward_decode composes them) -----------
  // First stage: the embedded tokens ids [B, T] at positions [start_pos, start_pos + T)
  // as the hidden state [B, T, C], valid until the next decode step.
  const Tensor& decode_embed(const Tensor& ids, std::int64_t start_pos);
  // The decode input buffer for (B, T), for receiving a hidden state in place.
  Tensor& decode_input(std::int64_t batch, std::int64_t seq);
  // Runs this stage's layers over hidden_in [B, T, C] (decode_embed's or decode_input's
  // tensor, or any other, copied in) with this stage's cache, as forward_decode describes;
  // returns the stage output [B, T, C].
  const Tensor& decode_blocks(const Tensor& hidden_in, KvCache& cache, std::int64_t start_pos);
  // Last stage: final norm and LM head on decode_blocks' output; returns the full logits
  // [B, T, V], all-gathered over tp when the head is vocab-parallel.
  const Tensor& decode_head(const Tensor& hidden);

  // ---- layer by layer (post-training quantization, compress/) ---------------------------
  // Owned layer `index` (0-based within this stage) over x [B, T, C] on `slot`; returns its
  // saved activations, the inputs of every linear layer included (attn_norm_out, attn_out,
  // mlp_norm_out, mlp_act) and the layer output. x must not be a field of that layer's
  // activations on the same slot.
  const LayerActivations& layer_forward(std::int64_t index, const Tensor& x, int slot = 0);
  TransformerBlock& block(std::int64_t index);
  std::int64_t owned_layers() const { return static_cast<std::int64_t>(blocks_.size()); }
  // The int8 KV cache numerics in every owned layer (TransformerBlock::set_kv_int8).
  void set_kv_int8(bool on);

  // ---- stage steps (pipeline schedules) -------------------------------------------------
  // Embedding lookup (stage with layer 0): returns the hidden state [B, T, C] of the slot.
  const Tensor& embed_forward(const Tensor& ids, int slot = 0);
  // Runs this stage's layers. hidden_in [B, T, C] may be the tensor embed_forward returned
  // or stage_input(...) filled by a pipeline receive (no copy then), or any other tensor
  // (copied in). Returns the stage output [B, T, C].
  const Tensor& blocks_forward(const Tensor& hidden_in, int slot = 0);
  // The slot's input buffer for (B, T), for receiving a hidden state in place.
  Tensor& stage_input(std::int64_t batch, std::int64_t seq, int slot = 0);
  // LM head on the stage output (the tensor blocks_forward returned).
  LossSum lm_head_forward(const Tensor& hidden, const Tensor& targets, int slot = 0);
  // The logits [B·T, V/tp] of the last lm_head_forward, until lm_head_backward overwrites
  // them with their gradient (for evaluation and tests).
  const Tensor& lm_logits() const { return workspace_.logits; }
  // Per-token losses [B·T] of the last lm_head_forward: -log p(target) over the whole
  // vocabulary (every tp rank gets the same), 0 for ignored targets. Valid until the next
  // lm_head_forward or lm_head_backward.
  Tensor lm_token_losses() const;
  // Returns ∂L/∂hidden [B, T, C] (the shared backward buffer).
  const Tensor& lm_head_backward(float dloss_per_token, int slot = 0);
  // The same with a weight per token: L = Σ_t dloss[t] · loss_t, dloss [B·T] f32 (ignored
  // targets contribute nothing whatever their weight). Preference and policy-gradient
  // losses reach the model through this: ∂L/∂log p(target_t) = -dloss[t].
  const Tensor& lm_head_backward(const Tensor& dloss, int slot = 0);
  const Tensor& scalar_head_forward(const Tensor& hidden, int slot = 0);  // values [B, T]
  const Tensor& scalar_head_backward(const Tensor& dvalues, int slot = 0);
  // dhidden_out: the head's return value, or a received gradient [B, T, C] (copied into
  // the shared buffer unless it is that buffer). Returns ∂L/∂(stage input) [B, T, C].
  const Tensor& blocks_backward(const Tensor& dhidden_out, int slot = 0);
  // Embedding gradients from ∂L/∂(embedding output) [B, T, C].
  void embed_backward(const Tensor& dhidden, int slot = 0);

 private:
  SlotActivations& slot_for(int slot, std::int64_t batch, std::int64_t seq);
  SlotActivations& planned_slot(int slot, const char* step);
  void require_stage(bool ok, const char* step, const char* what) const;
  void check_tokens(const Tensor& t, const char* what, const char* step) const;
  void head_norm_forward(const Tensor& hidden, SlotActivations& s, int slot);
  const Tensor& head_backward(const Tensor& dhead_out, SlotActivations& s, int slot);
  void build_grad_ranges();
  // The LoRA dropout of the next training forward (p = 0 when off); advances the micro count.
  LoraDropout next_lora_dropout(std::int64_t batch, std::int64_t seq);
  void report_ready(const GradRange& range) const {
    if (grad_ready_ && range.end > range.begin) grad_ready_(range);
  }

  ModelConfig config_;
  ShardSpec shard_;
  HeadKind head_;
  LoraConfig lora_;
  Backend& backend_;
  ShardDims dims_;
  ParameterSet params_;
  parallel::TpGroup tp_;
  parallel::VocabParallelCrossEntropy vocab_ce_;

  Tensor token_embedding_, d_token_embedding_;        // [V/tp, C]
  Tensor position_embedding_, d_position_embedding_;  // [max_seq, C] (GPT-2)
  std::vector<TransformerBlock> blocks_;
  Norm final_norm_;
  Linear head_linear_;  // LM: [V/tp, C] (tied: the token embedding) no bias; scalar: [1, C] + [1]
  Tensor ones_vocab_;   // [V, 1] all ones: marks targets inside the vocabulary (counted tokens)

  std::vector<std::unique_ptr<SlotActivations>> slots_;
  Workspace workspace_;
  std::vector<Tensor> slot_ids_;      // ids seen by embed_forward, per slot (on the backend's device)
  // Device copies of host ids and targets (unused on the CPU backend): one buffer per slot
  // for the ids embed_backward needs again, one for the head's targets, one for decoding.
  std::vector<Tensor> slot_ids_device_;
  Tensor targets_device_, decode_ids_device_;
  std::vector<Tensor> slot_hidden_;   // the hidden state the head read, per slot
  Tensor targets_;                    // of the last lm_head_forward, [N] i32
  Tensor host_loss_totals_;           // [2, 1] f32 on the CPU: {Σ loss, count} read back
  int logits_slot_ = -1;              // slot whose logits the workspace holds
  std::vector<GradRange> grad_ranges_;  // head, layers last to first, embeddings
  GradRange head_range_, embed_range_;
  std::vector<GradRange> layer_ranges_;  // per owned layer, first to last
  GradReadyHook grad_ready_;
  GradRange trainable_;
  LoraDropoutStep lora_step_;
  int lora_micro_ = 0;                       // training forwards since set_lora_dropout
  std::vector<LoraDropout> slot_dropout_;    // the mask of each slot's last forward
  SlotActivations decode_acts_;  // forward_decode's activations, sized for its (B, T)
  Tensor decode_logits_storage_; // flat, sized for the largest B·T·V seen
  Tensor decode_logits_;         // [B, T, V] view of it: the last decode_head's logits
  // tp > 1: this rank's vocabulary slice of the logits, every rank's slices (rank-major) and
  // the row order that interleaves them into [B·T, V]; each sized for the largest B·T seen.
  Tensor decode_local_storage_, decode_gathered_storage_, decode_order_;
  Tensor decode_compute_storage_;  // bf16 models: the logits before widening to f32
};

}  // namespace loom::model
