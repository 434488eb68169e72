// Backend: every numerical operation the models, losses and optimizers need, forward and
// backward, behind one interface so a CUDA backend can slot in beside the CPU one.
// Model code calls only these; it never loops over tensor memory itself.
//
// Conventions (all backends):
//  * Row-major, contiguous tensors. "[N, C]" means N rows of C; any leading dims are
//    flattened into N (a [B, T, C] tensor is passed where [N, C] is asked, N = B*T).
//  * Forward ops OVERWRITE their outputs.
//  * Backward ops ADD INTO (+=) every gradient output (parameter and input gradients
//    alike), as llm.c does: callers zero gradient buffers before the first use. This makes
//    residual branches and gradient accumulation free.
//  * Weights follow PyTorch: a linear layer's weight is [out, in], y = x W^T + b.
//  * Integer ids and targets are i32. A target < 0 is ignored (no loss, no gradient).
//  * Floating tensors may be f32 or bf16 storage, one dtype per call; arithmetic is f32 on
//    every backend (the CPU backend rounds each bf16 output once). docs/cuda.md "Dtypes"
//    lists the tensors that are always f32.
//
// Threads: a Backend may run its ops on several threads internally; calls into one
// Backend object must come from one thread at a time. Ranks: nothing here communicates.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/tensor.h"

namespace loom {

namespace quant {
class QuantizedLinear;  // core/quant/quant_gemm.h
}

// Rotary position embedding settings (Llama family). Rotation is the "rotate half"
// (GPT-NeoX / Hugging Face Llama) form over each head's first rotary_dim channels.
struct RopeConfig {
  enum class Scaling { None, Linear, NTK };
  float theta = 10000.0f;
  Scaling scaling = Scaling::None;
  // Linear: positions are divided by factor. NTK: theta is multiplied by
  // factor^(d/(d-2)) (the "NTK-aware" rule), d = rotary_dim.
  float factor = 1.0f;
  // Channels rotated at the start of each head (even); 0 means the whole head_dim.
  std::int64_t rotary_dim = 0;
};

// The geometry of one attention call. qkv packs, per token, Hq query heads, then Hkv key
// heads, then Hkv value heads, each of head_dim channels: [B, T, (Hq + 2*Hkv) * D].
// Query head h attends with key/value head h / (Hq / Hkv) (grouped-query attention).
struct AttentionShape {
  std::int64_t batch = 0;
  std::int64_t seq = 0;
  std::int64_t q_heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;

  // ---- memory -------------------------------------------------------------------------
  virtual void fill(Tensor& x, float value) = 0;
  virtual void copy(const Tensor& src, Tensor& dst) = 0;                  // same numel
  virtual void add_inplace(Tensor& y, const Tensor& x, float alpha = 1.0f) = 0;  // y += a*x
  virtual void scale_inplace(Tensor& x, float alpha) = 0;                 // x *= alpha
  virtual double sum_squares(const Tensor& x) = 0;                        // Σ x², f64 accumulate
  virtual bool all_finite(const Tensor& x) = 0;

  // ---- GEMM ---------------------------------------------------------------------------
  // c = alpha * op(a) @ op(b) + beta * c, op(x) = x^T when trans_x. a, b, c are 2-D.
  virtual void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                      float alpha = 1.0f, float beta = 0.0f) = 0;

  // ---- linear: y[N, out] = x[N, in] @ w[out, in]^T + bias[out] (bias may be undefined)
  virtual void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) = 0;
  // dx += dy @ w; dw += dy^T @ x; dbias += Σ_rows dy. dx/dw/dbias may be undefined (skipped,
  // e.g. dw of a frozen weight).
  virtual void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx,
                               Tensor& dw, Tensor& dbias) = 0;
  // y = x · Wᵀ + bias with a quantized weight (core/quant/quant_gemm.h: W8A8, W8A16, W4A16);
  // x [.., in], y [.., out] f32, bias [out] or undefined. Forward only (evaluation and
  // generation of a loom-quantize model). Backends without quantized kernels throw.
  virtual void quantized_linear_forward(const Tensor& x, const quant::QuantizedLinear& w, const Tensor& bias,
                                        Tensor& y) {
    (void)x, (void)w, (void)bias, (void)y;
    throw std::logic_error(name() + " backend: no quantized linear kernels");
  }
  // The int8 KV cache's numerics: the key and value head rows of qkv [N, (Hq+2Hkv)·D] (after
  // RoPE) rounded through int8 with one scale per (token, head) (core/quant/kv_int8.h), so
  // attention sees exactly what an int8 cache holds.
  virtual void kv_int8_round_trip(Tensor& qkv, const AttentionShape& shape) {
    (void)qkv, (void)shape;
    throw std::logic_error(name() + " backend: no int8 KV cache");
  }

  // ---- embedding: out[N, C] = table[ids[n] - row_offset] for ids inside the table's
  // rows [row_offset, row_offset + V); rows for ids outside it are zero (vocab-parallel
  // shards use row_offset). accumulate=true adds into out instead of overwriting.
  virtual void embedding_forward(const Tensor& ids, const Tensor& table, Tensor& out,
                                 std::int64_t row_offset = 0, bool accumulate = false) = 0;
  virtual void embedding_backward(const Tensor& ids, const Tensor& dout, Tensor& dtable,
                                  std::int64_t row_offset = 0) = 0;

  // ---- normalisation over the last dim C. mean/rstd are [N] f32, saved for backward.
  // layernorm's bias may be undefined; so may any gradient output of the backwards (skipped).
  virtual void layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                                 Tensor& y, Tensor& mean, Tensor& rstd) = 0;
  virtual void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                  const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dweight,
                                  Tensor& dbias) = 0;
  virtual void rmsnorm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& y,
                               Tensor& rstd) = 0;
  virtual void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                const Tensor& rstd, Tensor& dx, Tensor& dweight) = 0;

  // ---- activations (elementwise). GELU is the tanh approximation GPT-2 uses.
  virtual void gelu_forward(const Tensor& x, Tensor& y) = 0;
  virtual void gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) = 0;
  // out = silu(gate) * up, all [N, F].
  virtual void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  virtual void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor& dgate,
                               Tensor& dup) = 0;

  // ---- dropout with a counter-based mask (LoRA inputs). x, y [N, F] f32:
  // y = x · keep / (1 - p) (y += that with accumulate), keep[n, j] = (u >= p) for the uniform
  // u in [0, 1) from the top 53 bits of mix64(key + (token0 + n) · features + feature0 + j)
  // (core/mix64.h). The mask is a pure function of the key and each element's global (token,
  // feature) index, so every rank, layout and repeat of a step draws the same one; applying
  // the op to an input's gradient with the same arguments is dropout's backward.
  struct DropoutArgs {
    float p = 0.0f;
    std::uint64_t key = 0;
    std::int64_t token0 = 0;    // global index of row 0 of x
    std::int64_t features = 0;  // global row width (F, or F·tp for a tp slice)
    std::int64_t feature0 = 0;  // global index of column 0 of x
  };
  virtual void dropout_forward(const Tensor& x, Tensor& y, const DropoutArgs& args, bool accumulate = false) = 0;

  // ---- rotary embedding, in place on the q and k heads of a packed qkv (see
  // AttentionShape); token t of every sequence has position position_offset + t.
  // rope_backward applies the inverse rotation to dqkv in place.
  virtual void rope_forward(Tensor& qkv, const AttentionShape& shape, const RopeConfig& rope,
                            std::int64_t position_offset = 0) = 0;
  virtual void rope_backward(Tensor& dqkv, const AttentionShape& shape, const RopeConfig& rope,
                             std::int64_t position_offset = 0) = 0;

  // ---- causal self-attention with grouped-query heads, softmax scale 1/sqrt(D).
  // out: [B, T, Hq*D]; lse: [B, Hq, T] f32 log-sum-exp of each row's scaled scores, saved
  // so backward recomputes the probabilities instead of storing [T, T] per head.
  virtual void attention_forward(const Tensor& qkv, const AttentionShape& shape, Tensor& out,
                                 Tensor& lse) = 0;
  virtual void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                                  const Tensor& lse, const AttentionShape& shape, Tensor& dqkv) = 0;

  // ---- attention over a key/value cache (generation; forward only, no lse saved).
  // qkv [B, T, (Hq + 2 Hkv) D] packs T new tokens per sequence at absolute positions
  // [position, position + T), RoPE (if any) already applied; shape.seq = T. The op first
  // writes their k and v heads into k_cache and v_cache, each [B, Hkv, capacity, D] (f32),
  // at those positions, then out [B, T, Hq*D] = causal grouped-query attention of each new
  // query at position p over cached keys/values [0, p], softmax scale 1/sqrt(D).
  // Cache rows [0, position) must hold the earlier tokens; position + T <= capacity.
  virtual void attention_cached_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                        Tensor& k_cache, Tensor& v_cache, Tensor& out) = 0;
  // The same over an int8 cache (core/model/kv_cache.h): k_cache/v_cache [B, Hkv, capacity, D]
  // int8 with k_scales/v_scales [B, Hkv, capacity] f32. qkv's key/value rows are NOT rounded
  // beforehand: the op quantizes them (core/quant/kv_int8.h quantize_kv) into the cache and
  // reads every cached row as scale · q, so out is bit for bit attention_cached_forward's on
  // an f32 cache after kv_int8_round_trip.
  virtual void attention_cached_int8_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                             Tensor& k_cache, Tensor& v_cache, Tensor& k_scales, Tensor& v_scales,
                                             Tensor& out) {
    (void)qkv, (void)shape, (void)position, (void)k_cache, (void)v_cache, (void)k_scales, (void)v_scales, (void)out;
    throw std::logic_error(name() + " backend: no int8 KV cache");
  }

  // ---- softmax cross-entropy over logits [N, V] with targets [N] (target < 0: ignored).
  // losses[N] f32 gets -log softmax(logits)[target] (0 for ignored rows).
  virtual void cross_entropy_forward(const Tensor& logits, const Tensor& targets, Tensor& losses) = 0;
  // dlogits += dloss[n] * (softmax(logits[n]) - onehot(target[n])); zero for ignored rows.
  // dlogits may alias logits (then the logits are overwritten with their gradient).
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& dloss,
                                      Tensor& dlogits) = 0;

  // ---- vocab-parallel cross-entropy (Megatron style: the full [N, V] logits never exist on
  // one rank). logits [N, Vs] hold columns [vocab_offset, vocab_offset + Vs) of the full
  // logits; targets [N] are global ids (< 0: ignored).
  // 1. Each shard: stats [N, 3] = {row max m, Σ exp(x - m), the target's logit or 0 when the
  //    target is outside this shard or ignored}.
  virtual void cross_entropy_shard_stats(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                         Tensor& stats) = 0;
  // 2. After an all-gather of every shard's stats (rank-major, [shards, N, 3]): lse [N] =
  //    log Σ exp over the whole vocabulary, losses [N] = lse - target logit (0 for ignored
  //    rows). Depends only on all_stats, so every shard computes the same bits.
  virtual void cross_entropy_shard_combine(const Tensor& all_stats, const Tensor& targets, Tensor& lse,
                                           Tensor& losses) = 0;
  // 3. dlogits += dloss[n] * (exp(x - lse[n]) - onehot(target[n] - vocab_offset)); zero for
  //    ignored rows. dlogits may alias logits, as in cross_entropy_backward.
  virtual void cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                            const Tensor& lse, const Tensor& dloss, Tensor& dlogits) = 0;

  // ---- row gather/scatter (e.g. the last token of each sequence for a scalar head).
  // out[m] = x[index[m]];  dx[index[m]] += dout[m].
  virtual void gather_rows(const Tensor& x, const Tensor& index, Tensor& out) = 0;
  virtual void scatter_add_rows(const Tensor& dout, const Tensor& index, Tensor& dx) = 0;

  // ---- AdamW, in place over flat f32 buffers (PyTorch's torch.optim.AdamW semantics):
  //   g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²
  //   param -= lr * ( (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps) + weight_decay * param )
  // step counts from 1.
  struct AdamWArgs {
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;
    float grad_scale = 1.0f;
    std::int64_t step = 1;
  };
  virtual void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                            const AdamWArgs& args) = 0;
};

// The CPU backend (f32, BLAS GEMM, OpenMP elsewhere). Always available.
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace loom
