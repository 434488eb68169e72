// TransformerBlock: one pre-norm decoder layer with an explicit forward and backward
// (no autograd), for both families:
//
//   h   = x + Out(Attention(Rope?(QKV(Norm1(x)))))
//   out = h + Down(Act(Norm2(h)))          Act = GELU(Up ·)      (GPT-2)
//                                          Act = silu(Gate ·)·(Up ·) (Llama)
//
// The block holds views of its weights and gradients (into the model's ParameterSet) and
// no activations: the caller passes the LayerActivations to fill or read and the shared
// backward Workspace. Under tensor parallelism the block holds this rank's slice (heads/tp,
// F/tp) and runs Megatron's scheme (core/parallel/tensor_parallel.h): QKV and up/gate are
// column-parallel, attention-out and down row-parallel; each branch output is summed over
// the tp group in forward (bias added once, by tp rank 0) and each branch's input gradient
// in backward: two all-reduces per block each way.
//
// Threads: as the Backend (one caller at a time).
#pragma once

#include <cstdint>
#include <string>

#include "core/backend.h"
#include "core/model/activations.h"
#include "core/model/kv_cache.h"
#include "core/model/layers.h"
#include "core/model/model_config.h"
#include "core/model/parameter_set.h"
#include "core/parallel/tensor_parallel.h"

namespace loom::model {

class TransformerBlock {
 public:
  // Binds the parameters "layers.<layer>.*" of `params`. With LoRA enabled the adapters of
  // the targets are bound and every base weight is frozen (no weight gradients computed).
  TransformerBlock(const ModelConfig& config, const ShardDims& dims, std::int64_t layer, const ParameterSet& params,
                   const LoraConfig& lora = {});

  // The tensor-parallel group this block's slice belongs to (tp = 1 until set).
  void set_tensor_parallel(const parallel::TpGroup& tp) {
    tp_ = tp;
    for (LoraAdapter& adapter : lora_) adapter.set_tp_rank(tp.rank);
  }

  // A loom-quantize model's parts: the linear layers by name ("qkv", "out", "gate", "up",
  // "down"; gate exists for Llama only), whose `quantized` kernel the loader sets, and the
  // int8 KV cache numerics (keys and values rounded through int8 per token and head before
  // attention, in forward and forward_cached alike). Forward only.
  Linear& linear(const std::string& name);
  Norm& attn_norm() { return attn_norm_; }
  Norm& mlp_norm() { return mlp_norm_; }
  void set_kv_int8(bool on) { kv_int8_ = on; }
  bool kv_int8() const { return kv_int8_; }

  // Reads x [B, T, C]; fills every field of `acts` (acts.output is the block output).
  // `dropout` drops the LoRA adapters' inputs (training); backward must get the same value.
  void forward(Backend& backend, const Tensor& x, LayerActivations& acts, const LoraDropout& dropout = {}) const;

  // Generation (forward only): x [B, T, C] holds T new tokens per sequence at positions
  // [position, position + T). Their k/v are appended to layer `layer` of the cache (this
  // rank's kv heads; it must hold positions [0, position) already) and every query attends
  // to the cache up to its own position. Fills acts like forward, except attn_lse (and, with
  // an int8 cache, acts.qkv keeps its k/v rows unrounded: the cache holds the rounded ones);
  // under tensor parallelism the same two all-reduces as forward. An f32 cache under
  // kv_int8 gets the round-tripped rows; an int8 cache needs kv_int8 on.
  void forward_cached(Backend& backend, const Tensor& x, KvCache& cache, std::int64_t layer, std::int64_t position,
                      LayerActivations& acts) const;

  // On entry ws.d_residual holds ∂L/∂output; on exit it holds ∂L/∂x. Parameter gradients
  // accumulate (+=). x and acts must be what forward saw.
  void backward(Backend& backend, const Tensor& x, const LayerActivations& acts, Workspace& ws,
                const LoraDropout& dropout = {});

 private:
  AttentionShape attention_shape(std::int64_t batch, std::int64_t seq) const;
  // The attention-out projection, residual add and MLP branch, shared by forward and
  // forward_cached (everything after a.attn_out is written).
  void forward_after_attention(Backend& backend, const Tensor& x, LayerActivations& a,
                               const LoraDropout& dropout = {}) const;
  // QKV projection of a.attn_norm_out into a.qkv, with its adapter (before RoPE).
  void qkv_forward(Backend& backend, LayerActivations& a, const LoraDropout& dropout) const;
  // The adapter of `target` (if any) adds into y; u/x_dropped go to a's slots of the target.
  void lora_forward(Backend& backend, LoraTarget target, const Tensor& x, Tensor& y, LayerActivations& a,
                    const LoraDropout& dropout) const;
  void lora_backward(Backend& backend, LoraTarget target, const Tensor& dy, const Tensor& x,
                     const LayerActivations& a, Tensor& dx, Workspace& ws, const LoraDropout& dropout);

  Family family_;
  RopeConfig rope_;
  ShardDims dims_;
  parallel::TpGroup tp_;
  Norm attn_norm_, mlp_norm_;
  Linear qkv_, out_, gate_, up_, down_;  // gate_ unbound for GPT-2
  LoraAdapter lora_[kLoraTargets];       // indexed by LoraTarget; undefined where none
  bool kv_int8_ = false;
};

}  // namespace loom::model
