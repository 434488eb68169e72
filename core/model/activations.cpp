#include "core/model/activations.h"

#include <algorithm>
#include <stdexcept>

namespace loom::model {

ShardDims ShardDims::of(const ModelConfig& config, const ShardSpec& resolved) {
  const std::int64_t tp = resolved.tp_size;
  ShardDims d;
  d.family = config.family;
  d.d_model = config.d_model;
  d.head_dim = config.head_dim();
  d.q_heads = config.n_heads / tp;
  d.kv_heads = config.n_kv_heads >= tp ? config.n_kv_heads / tp : 1;  // fewer: one replicated head
  d.ff = config.d_ff / tp;
  d.vocab = config.vocab_size / tp;
  d.vocab_global = config.vocab_size;
  d.layers = resolved.layer_end - resolved.layer_begin;
  return d;
}

void ShardDims::set_lora(const LoraConfig& lora) {
  lora_rank = lora.rank;
  lora_targets = 0;
  for (int t = 0; t < kLoraTargets; ++t) {
    if (lora.has(static_cast<LoraTarget>(t))) lora_targets = static_cast<std::uint8_t>(lora_targets | (1u << t));
  }
  lora_dropout = lora.enabled() && lora.dropout > 0.0f;
}

Tensor Arena::take_from(int buffer, const Shape& shape) {
  // Every piece starts on a 64-byte boundary.
  const std::int64_t align = 64 / static_cast<std::int64_t>(dtype_size(buffer == 0 ? dtype_ : DType::F32));
  const std::int64_t offset = used_[buffer];
  used_[buffer] += (shape_numel(shape) + align - 1) / align * align;
  if (storage_[buffer] == nullptr) return Tensor();
  return storage_[buffer]->view(offset, shape);
}

std::int64_t Arena::bytes() const {
  return used_[0] * static_cast<std::int64_t>(dtype_size(dtype_)) + used_[1] * static_cast<std::int64_t>(sizeof(float));
}

namespace {

// Sizes the arena with a counting pass, grows the storage only when needed, then carves.
template <typename CarveFn>
void plan_arena(Tensor& storage, Tensor& f32_storage, DType dtype, Device device, CarveFn carve) {
  Arena sizing(dtype, nullptr, nullptr);
  carve(sizing);
  auto grow = [&](Tensor& t, std::int64_t numel, DType type) {
    if (numel == 0 || (t.defined() && t.numel() >= numel && t.dtype() == type)) return;
    t = Tensor();  // release first: peak memory stays at one arena
    t = Tensor::empty({numel}, type, device);
  };
  grow(storage, sizing.used(0), dtype);
  grow(f32_storage, sizing.used(1), DType::F32);
  Arena real(dtype, &storage, &f32_storage);
  carve(real);
}

}  // namespace

void SlotActivations::carve(Arena& a, const ShardDims& d, bool has_head, std::int64_t B, std::int64_t T) {
  const std::int64_t N = B * T;
  const std::int64_t C = d.d_model;
  const bool layernorm = d.family == Family::GPT2;
  input = a.take({B, T, C});
  layers.resize(static_cast<std::size_t>(d.layers));
  for (LayerActivations& l : layers) {
    l.attn_norm_out = a.take({N, C});
    l.attn_norm_mean = layernorm ? a.take_f32({N}) : Tensor();
    l.attn_norm_rstd = a.take_f32({N});
    l.qkv = a.take({N, d.qkv_dim()});
    l.attn_out = a.take({N, d.q_dim()});
    l.attn_lse = a.take_f32({B, d.q_heads, T});
    l.residual_mid = a.take({N, C});
    l.mlp_norm_out = a.take({N, C});
    l.mlp_norm_mean = layernorm ? a.take_f32({N}) : Tensor();
    l.mlp_norm_rstd = a.take_f32({N});
    l.mlp_gate = layernorm ? Tensor() : a.take({N, d.ff});
    l.mlp_up = a.take({N, d.ff});
    l.mlp_act = a.take({N, d.ff});
    l.output = a.take({B, T, C});
    for (int t = 0; t < kLoraTargets; ++t) {
      const auto target = static_cast<LoraTarget>(t);
      l.lora_u[t] = d.has_lora(target) ? a.take({N, d.lora_rank}) : Tensor();
      l.lora_x[t] = d.has_lora(target) && d.lora_dropout ? a.take({N, d.lora_in(target)}) : Tensor();
    }
  }
  final_norm_out = has_head ? a.take({N, C}) : Tensor();
  final_norm_mean = has_head && layernorm ? a.take_f32({N}) : Tensor();
  final_norm_rstd = has_head ? a.take_f32({N}) : Tensor();
  values = has_head ? a.take_f32({B, T}) : Tensor();
  values_compute = has_head && d.dtype != DType::F32 ? a.take({B, T}) : Tensor();
}

void SlotActivations::plan(const ShardDims& dims, bool has_head, std::int64_t B, std::int64_t T, Device device) {
  if (B <= 0 || T <= 0) {
    throw std::invalid_argument("activations: batch and sequence length must be positive, got B=" +
                                std::to_string(B) + " T=" + std::to_string(T));
  }
  if (B == batch && T == seq) return;
  plan_arena(storage_, f32_storage_, dims.dtype, device, [&](Arena& a) { carve(a, dims, has_head, B, T); });
  batch = B;
  seq = T;
}

void Workspace::carve(Arena& a, const ShardDims& d, bool lm_head, std::int64_t B, std::int64_t T) {
  const std::int64_t N = B * T;
  const std::int64_t C = d.d_model;
  d_residual = a.take({B, T, C});
  d_norm = a.take({N, C});
  d_attn = a.take({N, d.q_dim()});
  d_qkv = a.take({N, d.qkv_dim()});
  d_mlp_act = a.take({N, d.ff});
  d_mlp_gate = d.family == Family::GPT2 ? Tensor() : a.take({N, d.ff});
  d_mlp_up = a.take({N, d.ff});
  logits = lm_head ? a.take({N, d.vocab}) : Tensor();
  loss_terms = lm_head ? a.take_f32({2, N}) : Tensor();
  ones_tokens = lm_head ? a.take_f32({N, 1}) : Tensor();
  loss_totals = lm_head ? a.take_f32({2, 1}) : Tensor();
  std::int64_t widest = 0;
  for (int t = 0; t < kLoraTargets; ++t) {
    if (d.has_lora(static_cast<LoraTarget>(t))) widest = std::max(widest, d.lora_in(static_cast<LoraTarget>(t)));
  }
  d_lora_u = d.lora_rank > 0 ? a.take({N, d.lora_rank}) : Tensor();
  d_lora_x = d.lora_dropout ? a.take({N, widest}) : Tensor();
  d_values = !lm_head && d.dtype != DType::F32 ? a.take({N, 1}) : Tensor();
}

void Workspace::plan(const ShardDims& dims, bool lm_head, std::int64_t B, std::int64_t T, Backend& backend) {
  if (B == batch && T == seq) return;
  plan_arena(storage_, f32_storage_, dims.dtype, backend.device(), [&](Arena& a) { carve(a, dims, lm_head, B, T); });
  if (lm_head) backend.fill(ones_tokens, 1.0f);
  batch = B;
  seq = T;
}

std::int64_t SlotActivations::bytes_for(const ShardDims& dims, bool has_head, std::int64_t batch, std::int64_t seq) {
  SlotActivations counting;
  Arena arena(dims.dtype, nullptr, nullptr);
  counting.carve(arena, dims, has_head, batch, seq);
  return arena.bytes();
}

std::int64_t Workspace::bytes_for(const ShardDims& dims, bool lm_head, std::int64_t batch, std::int64_t seq) {
  Workspace counting;
  Arena arena(dims.dtype, nullptr, nullptr);
  counting.carve(arena, dims, lm_head, batch, seq);
  return arena.bytes();
}

}  // namespace loom::model
