#include "core/model/block.h"

#include <stdexcept>
#include <string>

namespace loom::model {

TransformerBlock::TransformerBlock(const ModelConfig& config, const ShardDims& dims, std::int64_t layer,
                                   const ParameterSet& params, const LoraConfig& lora)
    : family_(config.family), rope_(config.rope), dims_(dims) {
  const std::string p = "layers." + std::to_string(layer) + ".";
  attn_norm_ = Norm::bind(params, p + "attn_norm", config);
  mlp_norm_ = Norm::bind(params, p + "mlp_norm", config);
  qkv_ = Linear::bind(params, p + "attn.qkv");
  out_ = Linear::bind(params, p + "attn.out");
  if (family_ == Family::Llama) gate_ = Linear::bind(params, p + "mlp.gate");
  up_ = Linear::bind(params, p + "mlp.up");
  down_ = Linear::bind(params, p + "mlp.down");
  if (lora.enabled()) {
    for (Norm* n : {&attn_norm_, &mlp_norm_}) n->freeze();
    for (Linear* l : {&qkv_, &out_, &gate_, &up_, &down_}) l->freeze();
    for (int t = 0; t < kLoraTargets; ++t) {
      const auto target = static_cast<LoraTarget>(t);
      if (!lora.has(target)) continue;
      lora_[t] = LoraAdapter::bind(params, p + lora_target_name(target), target, layer, lora.scale());
    }
  }
}

AttentionShape TransformerBlock::attention_shape(std::int64_t batch, std::int64_t seq) const {
  return AttentionShape{batch, seq, dims_.q_heads, dims_.kv_heads, dims_.head_dim};
}

void TransformerBlock::forward(Backend& backend, const Tensor& x, LayerActivations& a,
                               const LoraDropout& dropout) const {
  const AttentionShape shape = attention_shape(x.dim(0), x.dim(1));

  attn_norm_.forward(backend, x, a.attn_norm_out, a.attn_norm_mean, a.attn_norm_rstd);
  qkv_forward(backend, a, dropout);
  if (family_ == Family::Llama) backend.rope_forward(a.qkv, shape, rope_);
  if (kv_int8_) backend.kv_int8_round_trip(a.qkv, shape);
  backend.attention_forward(a.qkv, shape, a.attn_out, a.attn_lse);
  forward_after_attention(backend, x, a, dropout);
}

Linear& TransformerBlock::linear(const std::string& name) {
  if (name == "qkv") return qkv_;
  if (name == "out") return out_;
  if (name == "up") return up_;
  if (name == "down") return down_;
  if (name == "gate" && family_ == Family::Llama) return gate_;
  throw std::invalid_argument("TransformerBlock::linear: no linear layer '" + name +
                              "' (expected qkv, out, up, down" + (family_ == Family::Llama ? ", gate)" : ")"));
}

void TransformerBlock::qkv_forward(Backend& backend, LayerActivations& a, const LoraDropout& dropout) const {
  qkv_.forward(backend, a.attn_norm_out, a.qkv);
  lora_forward(backend, LoraTarget::Qkv, a.attn_norm_out, a.qkv, a, dropout);
}

void TransformerBlock::lora_forward(Backend& backend, LoraTarget target, const Tensor& x, Tensor& y,
                                    LayerActivations& a, const LoraDropout& dropout) const {
  const auto t = static_cast<int>(target);
  if (lora_[t].defined()) lora_[t].forward(backend, x, y, a.lora_u[t], a.lora_x[t], dropout);
}

void TransformerBlock::lora_backward(Backend& backend, LoraTarget target, const Tensor& dy, const Tensor& x,
                                     const LayerActivations& a, Tensor& dx, Workspace& ws,
                                     const LoraDropout& dropout) {
  const auto t = static_cast<int>(target);
  if (lora_[t].defined()) {
    lora_[t].backward(backend, dy, x, a.lora_u[t], a.lora_x[t], dx, ws.d_lora_u, ws.d_lora_x, dropout);
  }
}

void TransformerBlock::forward_cached(Backend& backend, const Tensor& x, KvCache& cache, std::int64_t layer,
                                      std::int64_t position, LayerActivations& a) const {
  const AttentionShape shape = attention_shape(x.dim(0), x.dim(1));
  attn_norm_.forward(backend, x, a.attn_norm_out, a.attn_norm_mean, a.attn_norm_rstd);
  qkv_forward(backend, a, LoraDropout{});
  if (family_ == Family::Llama) backend.rope_forward(a.qkv, shape, rope_, position);
  if (cache.int8()) {
    if (!kv_int8_) {
      throw std::invalid_argument("TransformerBlock::forward_cached: layer " + std::to_string(layer) +
                                  " got an int8 KV cache but its kv_int8 numerics are off; make the cache with "
                                  "Transformer::make_kv_cache after set_kv_int8, or use an f32 cache");
    }
    // No round trip here: the kernel quantizes the unrounded rows with the same function the
    // round trip uses, so the cache decodes to exactly the round-tripped values.
    backend.attention_cached_int8_forward(a.qkv, shape, position, cache.k(layer), cache.v(layer),
                                          cache.k_scales(layer), cache.v_scales(layer), a.attn_out);
  } else {
    if (kv_int8_) backend.kv_int8_round_trip(a.qkv, shape);
    backend.attention_cached_forward(a.qkv, shape, position, cache.k(layer), cache.v(layer), a.attn_out);
  }
  forward_after_attention(backend, x, a);
}

void TransformerBlock::forward_after_attention(Backend& backend, const Tensor& x, LayerActivations& a,
                                               const LoraDropout& dropout) const {
  // The projection lands straight in residual_mid and the residual is added on top: one
  // buffer, no copy of x. Row-parallel adapters add their partial update before the tp sum.
  out_.forward(backend, a.attn_out, a.residual_mid, tp_.rank == 0);
  lora_forward(backend, LoraTarget::Out, a.attn_out, a.residual_mid, a, dropout);
  parallel::ReduceFromTp::forward(tp_, a.residual_mid);
  backend.add_inplace(a.residual_mid, x);

  mlp_norm_.forward(backend, a.residual_mid, a.mlp_norm_out, a.mlp_norm_mean, a.mlp_norm_rstd);
  up_.forward(backend, a.mlp_norm_out, a.mlp_up);
  lora_forward(backend, LoraTarget::Up, a.mlp_norm_out, a.mlp_up, a, dropout);
  if (family_ == Family::GPT2) {
    backend.gelu_forward(a.mlp_up, a.mlp_act);
  } else {
    gate_.forward(backend, a.mlp_norm_out, a.mlp_gate);
    lora_forward(backend, LoraTarget::Gate, a.mlp_norm_out, a.mlp_gate, a, dropout);
    backend.swiglu_forward(a.mlp_gate, a.mlp_up, a.mlp_act);
  }
  down_.forward(backend, a.mlp_act, a.output, tp_.rank == 0);
  lora_forward(backend, LoraTarget::Down, a.mlp_act, a.output, a, dropout);
  parallel::ReduceFromTp::forward(tp_, a.output);
  backend.add_inplace(a.output, a.residual_mid);
}

void TransformerBlock::backward(Backend& backend, const Tensor& x, const LayerActivations& a, Workspace& ws,
                                const LoraDropout& dropout) {
  const AttentionShape shape = attention_shape(x.dim(0), x.dim(1));
  // Scratch gradients are either overwritten by the GEMM that produces them (first writer)
  // or cleared right before an op that adds into them. ws.d_residual is never cleared here:
  // the residual stream's gradient passes through both branches and the norms add their
  // share into it.
  Tensor& d_res = ws.d_residual;

  down_.backward_overwrite(backend, d_res, a.mlp_act, ws.d_mlp_act);
  lora_backward(backend, LoraTarget::Down, d_res, a.mlp_act, a, ws.d_mlp_act, ws, dropout);
  backend.fill(ws.d_mlp_up, 0.0f);
  if (family_ == Family::GPT2) {
    backend.gelu_backward(ws.d_mlp_act, a.mlp_up, ws.d_mlp_up);
    up_.backward_overwrite(backend, ws.d_mlp_up, a.mlp_norm_out, ws.d_norm);
  } else {
    backend.fill(ws.d_mlp_gate, 0.0f);
    backend.swiglu_backward(ws.d_mlp_act, a.mlp_gate, a.mlp_up, ws.d_mlp_gate, ws.d_mlp_up);
    gate_.backward_overwrite(backend, ws.d_mlp_gate, a.mlp_norm_out, ws.d_norm);
    lora_backward(backend, LoraTarget::Gate, ws.d_mlp_gate, a.mlp_norm_out, a, ws.d_norm, ws, dropout);
    up_.backward(backend, ws.d_mlp_up, a.mlp_norm_out, ws.d_norm);
  }
  lora_backward(backend, LoraTarget::Up, ws.d_mlp_up, a.mlp_norm_out, a, ws.d_norm, ws, dropout);
  parallel::CopyToTp::backward(tp_, ws.d_norm);
  mlp_norm_.backward(backend, ws.d_norm, a.residual_mid, a.mlp_norm_mean, a.mlp_norm_rstd, d_res);

  out_.backward_overwrite(backend, d_res, a.attn_out, ws.d_attn);
  lora_backward(backend, LoraTarget::Out, d_res, a.attn_out, a, ws.d_attn, ws, dropout);
  backend.fill(ws.d_qkv, 0.0f);
  backend.attention_backward(ws.d_attn, a.qkv, a.attn_out, a.attn_lse, shape, ws.d_qkv);
  if (family_ == Family::Llama) backend.rope_backward(ws.d_qkv, shape, rope_);
  qkv_.backward_overwrite(backend, ws.d_qkv, a.attn_norm_out, ws.d_norm);
  lora_backward(backend, LoraTarget::Qkv, ws.d_qkv, a.attn_norm_out, a, ws.d_norm, ws, dropout);
  parallel::CopyToTp::backward(tp_, ws.d_norm);
  attn_norm_.backward(backend, ws.d_norm, x, a.attn_norm_mean, a.attn_norm_rstd, d_res);
}

}  // namespace loom::model
