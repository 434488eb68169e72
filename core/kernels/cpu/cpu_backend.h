// CpuBackend: the reference implementation of loom::Backend (core/backend.h) in f32.
//
// bf16: every op accepts bf16 tensors exactly where the CUDA backend does (docs/cuda.md
// "Dtypes": one floating dtype per call; mean, rstd, lse, losses, stats, dloss and AdamW's
// param/m/v always f32) and refuses them where it does. A bf16 call reads its bf16 tensors
// as f32, runs the same f32 kernel and rounds each bf16 output once with loom::to_bf16
// (bf16_staging.h), so bf16 models are testable without a GPU; calls on f32 tensors never
// touch that layer. The quantized ops (int8 KV cache, quantized linear) stay f32-only.
//
// GEMM-shaped work (matmul, linear) goes through loom::cpu::sgemm; everything else is
// OpenMP loops written so the compiler vectorises them. The op definitions are spread over
// this folder by family (memory_ops, gemm_ops, embedding, norms, activations, rope,
// attention, cross_entropy, adamw); this header only declares the class.
//
// Determinism: every result is bit-identical run to run. Outside the GEMMs it is also
// independent of the OpenMP thread count: reductions over rows go through fixed row
// chunks (kernel_util.h) whose partial sums are combined in chunk order, and sums that
// would race (embedding and scatter backward, bias gradients) are split by column instead.
//
// Threads: the object holds no state; calls must still come from one thread at a time, as
// the Backend contract says, because each op starts its own OpenMP parallel region.
// Ranks: nothing here communicates.
#pragma once

#include <string>

#include "core/backend.h"

namespace loom::cpu {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string name() const override;

  void fill(Tensor& x, float value) override;
  void copy(const Tensor& src, Tensor& dst) override;
  void add_inplace(Tensor& y, const Tensor& x, float alpha) override;
  void scale_inplace(Tensor& x, float alpha) override;
  double sum_squares(const Tensor& x) override;
  bool all_finite(const Tensor& x) override;

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
              float beta) override;
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) override;
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                       Tensor& dbias) override;
  void quantized_linear_forward(const Tensor& x, const quant::QuantizedLinear& w, const Tensor& bias,
                                Tensor& y) override;
  void kv_int8_round_trip(Tensor& qkv, const AttentionShape& shape) override;

  void embedding_forward(const Tensor& ids, const Tensor& table, Tensor& out, std::int64_t row_offset,
                         bool accumulate) override;
  void embedding_backward(const Tensor& ids, const Tensor& dout, Tensor& dtable,
                          std::int64_t row_offset) override;

  void layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& y,
                         Tensor& mean, Tensor& rstd) override;
  void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                          const Tensor& rstd, Tensor& dx, Tensor& dweight, Tensor& dbias) override;
  void rmsnorm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& y, Tensor& rstd) override;
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                        Tensor& dx, Tensor& dweight) override;

  void gelu_forward(const Tensor& x, Tensor& y) override;
  void gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) override;
  void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor& dgate,
                       Tensor& dup) override;

  void dropout_forward(const Tensor& x, Tensor& y, const DropoutArgs& args, bool accumulate) override;

  void rope_forward(Tensor& qkv, const AttentionShape& shape, const RopeConfig& rope,
                    std::int64_t position_offset) override;
  void rope_backward(Tensor& dqkv, const AttentionShape& shape, const RopeConfig& rope,
                     std::int64_t position_offset) override;

  void attention_forward(const Tensor& qkv, const AttentionShape& shape, Tensor& out, Tensor& lse) override;
  void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                          const AttentionShape& shape, Tensor& dqkv) override;
  void attention_cached_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                Tensor& k_cache, Tensor& v_cache, Tensor& out) override;
  void attention_cached_int8_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                     Tensor& k_cache, Tensor& v_cache, Tensor& k_scales, Tensor& v_scales,
                                     Tensor& out) override;

  void cross_entropy_forward(const Tensor& logits, const Tensor& targets, Tensor& losses) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& dloss,
                              Tensor& dlogits) override;

  void cross_entropy_shard_stats(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                 Tensor& stats) override;
  void cross_entropy_shard_combine(const Tensor& all_stats, const Tensor& targets, Tensor& lse,
                                   Tensor& losses) override;
  void cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                    const Tensor& lse, const Tensor& dloss, Tensor& dlogits) override;
  void gather_rows(const Tensor& x, const Tensor& index, Tensor& out) override;
  void scatter_add_rows(const Tensor& dout, const Tensor& index, Tensor& dx) override;

  void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWArgs& args) override;
};

}  // namespace loom::cpu
