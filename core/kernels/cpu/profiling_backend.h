// ProfilingBackend: a Backend that forwards every op to another Backend and records, per op
// and operand shape, how many calls ran and how much wall time they took. It answers
// "where does a training step's time go" (bench-train --profile) without touching the model.
//
// Keys name the op and its shapes, e.g. "linear_forward x[256, 768] w[2304, 768]", so each
// linear of a transformer shows up on its own line. linear_backward is timed as two
// entries, "linear_backward.dx" and "linear_backward.dw" (plus the bias gradient), by calling
// the wrapped backend twice with disjoint outputs; the results are the same as one call
// because backward ops only add into their outputs.
//
// Timing is host wall-clock around each call, which is exact for the CPU backend (its ops
// return when done). A backend that runs ops asynchronously would need a synchronise in
// between; none does yet.
//
// Ownership: holds a reference to the wrapped backend, which must outlive it.
// Threads: as the wrapped Backend (one caller at a time); the tables are not synchronised.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/backend.h"

namespace loom::cpu {

struct OpTiming {
  std::string key;           // op name and operand shapes
  std::int64_t calls = 0;
  double seconds = 0.0;
  double flops = 0.0;        // GEMM-shaped ops only (2·m·n·k per product); 0 elsewhere
};

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}

  // Every key seen since construction or the last reset(), slowest first.
  std::vector<OpTiming> timings() const;
  double total_seconds() const;
  void reset() { table_.clear(); }

  Device device() const override { return inner_.device(); }
  std::string name() const override { return inner_.name() + " (profiled)"; }

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

 private:
  using Clock = std::chrono::steady_clock;
  void record(const std::string& key, Clock::time_point start, double flops = 0.0);

  Backend& inner_;
  std::map<std::string, OpTiming> table_;
};

}  // namespace loom::cpu
