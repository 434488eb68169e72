// ProfilingBackend: forwards each op, timing it under a key of op name and operand shapes.
#include "core/kernels/cpu/profiling_backend.h"

#include <algorithm>

namespace loom::cpu {

namespace {

std::string shape_of(const Tensor& t) { return t.defined() ? shape_string(t.shape()) : std::string("[]"); }

std::string attention_key(const char* op, const AttentionShape& s) {
  return std::string(op) + " B=" + std::to_string(s.batch) + " T=" + std::to_string(s.seq) +
         " Hq=" + std::to_string(s.q_heads) + " Hkv=" + std::to_string(s.kv_heads) + " D=" + std::to_string(s.head_dim);
}

double gemm_flops(std::int64_t m, std::int64_t n, std::int64_t k) {
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

std::int64_t last_dim(const Tensor& t) { return t.ndim() == 0 ? 1 : t.dim(-1); }
std::int64_t leading_rows(const Tensor& t) { return last_dim(t) == 0 ? 0 : t.numel() / last_dim(t); }

}  // namespace

void ProfilingBackend::record(const std::string& key, Clock::time_point start, double flops) {
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  OpTiming& t = table_[key];
  if (t.key.empty()) t.key = key;
  ++t.calls;
  t.seconds += seconds;
  t.flops += flops;
}

std::vector<OpTiming> ProfilingBackend::timings() const {
  std::vector<OpTiming> out;
  out.reserve(table_.size());
  for (const auto& [key, timing] : table_) out.push_back(timing);
  std::sort(out.begin(), out.end(), [](const OpTiming& a, const OpTiming& b) { return a.seconds > b.seconds; });
  return out;
}

double ProfilingBackend::total_seconds() const {
  double total = 0.0;
  for (const auto& [key, timing] : table_) total += timing.seconds;
  return total;
}

void ProfilingBackend::fill(Tensor& x, float value) {
  const auto t0 = Clock::now();
  inner_.fill(x, value);
  record("fill " + shape_of(x), t0);
}

void ProfilingBackend::copy(const Tensor& src, Tensor& dst) {
  const auto t0 = Clock::now();
  inner_.copy(src, dst);
  record("copy " + shape_of(src), t0);
}

void ProfilingBackend::add_inplace(Tensor& y, const Tensor& x, float alpha) {
  const auto t0 = Clock::now();
  inner_.add_inplace(y, x, alpha);
  record("add_inplace " + shape_of(y), t0);
}

void ProfilingBackend::scale_inplace(Tensor& x, float alpha) {
  const auto t0 = Clock::now();
  inner_.scale_inplace(x, alpha);
  record("scale_inplace " + shape_of(x), t0);
}

double ProfilingBackend::sum_squares(const Tensor& x) {
  const auto t0 = Clock::now();
  const double result = inner_.sum_squares(x);
  record("sum_squares " + shape_of(x), t0);
  return result;
}

bool ProfilingBackend::all_finite(const Tensor& x) {
  const auto t0 = Clock::now();
  const bool result = inner_.all_finite(x);
  record("all_finite " + shape_of(x), t0);
  return result;
}

void ProfilingBackend::matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
                              float beta) {
  const auto t0 = Clock::now();
  inner_.matmul(a, trans_a, b, trans_b, c, alpha, beta);
  const std::int64_t k = trans_a ? leading_rows(a) : last_dim(a);
  record("matmul a" + shape_of(a) + (trans_a ? "T" : "") + " b" + shape_of(b) + (trans_b ? "T" : ""), t0,
         gemm_flops(leading_rows(c), last_dim(c), k));
}

void ProfilingBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  const auto t0 = Clock::now();
  inner_.linear_forward(x, w, bias, y);
  record("linear_forward x" + shape_of(x) + " w" + shape_of(w), t0,
         gemm_flops(leading_rows(x), leading_rows(w), last_dim(x)));
}

void ProfilingBackend::quantized_linear_forward(const Tensor& x, const quant::QuantizedLinear& w, const Tensor& bias,
                                                Tensor& y) {
  const auto t0 = Clock::now();
  inner_.quantized_linear_forward(x, w, bias, y);
  record("quantized_linear_forward x" + shape_of(x) + " y" + shape_of(y), t0,
         gemm_flops(leading_rows(x), last_dim(y), last_dim(x)));
}

void ProfilingBackend::kv_int8_round_trip(Tensor& qkv, const AttentionShape& shape) {
  const auto t0 = Clock::now();
  inner_.kv_int8_round_trip(qkv, shape);
  record("kv_int8_round_trip qkv" + shape_of(qkv), t0, 0);
}

void ProfilingBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                                       Tensor& dbias) {
  const std::string shapes = " x" + shape_of(x) + " w" + shape_of(w);
  const double flops = gemm_flops(leading_rows(x), leading_rows(w), last_dim(x));
  Tensor none;
  if (dx.defined()) {
    const auto t0 = Clock::now();
    inner_.linear_backward(dy, x, w, dx, none, none);
    record("linear_backward.dx" + shapes, t0, flops);
  }
  if (dw.defined() || dbias.defined()) {
    const auto t0 = Clock::now();
    inner_.linear_backward(dy, x, w, none, dw, dbias);
    record("linear_backward.dw" + shapes, t0, dw.defined() ? flops : 0.0);
  }
}

void ProfilingBackend::embedding_forward(const Tensor& ids, const Tensor& table, Tensor& out,
                                         std::int64_t row_offset, bool accumulate) {
  const auto t0 = Clock::now();
  inner_.embedding_forward(ids, table, out, row_offset, accumulate);
  record("embedding_forward ids" + shape_of(ids) + " table" + shape_of(table), t0);
}

void ProfilingBackend::embedding_backward(const Tensor& ids, const Tensor& dout, Tensor& dtable,
                                          std::int64_t row_offset) {
  const auto t0 = Clock::now();
  inner_.embedding_backward(ids, dout, dtable, row_offset);
  record("embedding_backward ids" + shape_of(ids) + " table" + shape_of(dtable), t0);
}

void ProfilingBackend::layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                                         Tensor& y, Tensor& mean, Tensor& rstd) {
  const auto t0 = Clock::now();
  inner_.layernorm_forward(x, weight, bias, eps, y, mean, rstd);
  record("layernorm_forward " + shape_of(x), t0);
}

void ProfilingBackend::layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                          const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dweight,
                                          Tensor& dbias) {
  const auto t0 = Clock::now();
  inner_.layernorm_backward(dy, x, weight, mean, rstd, dx, dweight, dbias);
  record("layernorm_backward " + shape_of(x), t0);
}

void ProfilingBackend::rmsnorm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& y, Tensor& rstd) {
  const auto t0 = Clock::now();
  inner_.rmsnorm_forward(x, weight, eps, y, rstd);
  record("rmsnorm_forward " + shape_of(x), t0);
}

void ProfilingBackend::rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                        Tensor& dx, Tensor& dweight) {
  const auto t0 = Clock::now();
  inner_.rmsnorm_backward(dy, x, weight, rstd, dx, dweight);
  record("rmsnorm_backward " + shape_of(x), t0);
}

void ProfilingBackend::dropout_forward(const Tensor& x, Tensor& y, const DropoutArgs& args, bool accumulate) {
  const auto t0 = Clock::now();
  inner_.dropout_forward(x, y, args, accumulate);
  record("dropout_forward " + shape_of(x), t0);
}

void ProfilingBackend::gelu_forward(const Tensor& x, Tensor& y) {
  const auto t0 = Clock::now();
  inner_.gelu_forward(x, y);
  record("gelu_forward " + shape_of(x), t0);
}

void ProfilingBackend::gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) {
  const auto t0 = Clock::now();
  inner_.gelu_backward(dy, x, dx);
  record("gelu_backward " + shape_of(x), t0);
}

void ProfilingBackend::swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) {
  const auto t0 = Clock::now();
  inner_.swiglu_forward(gate, up, out);
  record("swiglu_forward " + shape_of(gate), t0);
}

void ProfilingBackend::swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor& dgate,
                                       Tensor& dup) {
  const auto t0 = Clock::now();
  inner_.swiglu_backward(dout, gate, up, dgate, dup);
  record("swiglu_backward " + shape_of(gate), t0);
}

void ProfilingBackend::rope_forward(Tensor& qkv, const AttentionShape& shape, const RopeConfig& rope,
                                    std::int64_t position_offset) {
  const auto t0 = Clock::now();
  inner_.rope_forward(qkv, shape, rope, position_offset);
  record(attention_key("rope_forward", shape), t0);
}

void ProfilingBackend::rope_backward(Tensor& dqkv, const AttentionShape& shape, const RopeConfig& rope,
                                     std::int64_t position_offset) {
  const auto t0 = Clock::now();
  inner_.rope_backward(dqkv, shape, rope, position_offset);
  record(attention_key("rope_backward", shape), t0);
}

void ProfilingBackend::attention_forward(const Tensor& qkv, const AttentionShape& shape, Tensor& out, Tensor& lse) {
  const auto t0 = Clock::now();
  inner_.attention_forward(qkv, shape, out, lse);
  record(attention_key("attention_forward", shape), t0);
}

void ProfilingBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                                          const Tensor& lse, const AttentionShape& shape, Tensor& dqkv) {
  const auto t0 = Clock::now();
  inner_.attention_backward(dout, qkv, out, lse, shape, dqkv);
  record(attention_key("attention_backward", shape), t0);
}

void ProfilingBackend::attention_cached_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                                Tensor& k_cache, Tensor& v_cache, Tensor& out) {
  const auto t0 = Clock::now();
  inner_.attention_cached_forward(qkv, shape, position, k_cache, v_cache, out);
  record(attention_key("attention_cached_forward", shape), t0);
}

void ProfilingBackend::attention_cached_int8_forward(const Tensor& qkv, const AttentionShape& shape,
                                                     std::int64_t position, Tensor& k_cache, Tensor& v_cache,
                                                     Tensor& k_scales, Tensor& v_scales, Tensor& out) {
  const auto t0 = Clock::now();
  inner_.attention_cached_int8_forward(qkv, shape, position, k_cache, v_cache, k_scales, v_scales, out);
  record(attention_key("attention_cached_int8_forward", shape), t0);
}

void ProfilingBackend::cross_entropy_forward(const Tensor& logits, const Tensor& targets, Tensor& losses) {
  const auto t0 = Clock::now();
  inner_.cross_entropy_forward(logits, targets, losses);
  record("cross_entropy_forward " + shape_of(logits), t0);
}

void ProfilingBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& dloss,
                                              Tensor& dlogits) {
  const auto t0 = Clock::now();
  inner_.cross_entropy_backward(logits, targets, dloss, dlogits);
  record("cross_entropy_backward " + shape_of(logits), t0);
}

void ProfilingBackend::cross_entropy_shard_stats(const Tensor& logits, const Tensor& targets,
                                                 std::int64_t vocab_offset, Tensor& stats) {
  const auto t0 = Clock::now();
  inner_.cross_entropy_shard_stats(logits, targets, vocab_offset, stats);
  record("cross_entropy_shard_stats " + shape_of(logits), t0);
}

void ProfilingBackend::cross_entropy_shard_combine(const Tensor& all_stats, const Tensor& targets, Tensor& lse,
                                                   Tensor& losses) {
  const auto t0 = Clock::now();
  inner_.cross_entropy_shard_combine(all_stats, targets, lse, losses);
  record("cross_entropy_shard_combine " + shape_of(all_stats), t0);
}

void ProfilingBackend::cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets,
                                                    std::int64_t vocab_offset, const Tensor& lse,
                                                    const Tensor& dloss, Tensor& dlogits) {
  const auto t0 = Clock::now();
  inner_.cross_entropy_shard_backward(logits, targets, vocab_offset, lse, dloss, dlogits);
  record("cross_entropy_shard_backward " + shape_of(logits), t0);
}

void ProfilingBackend::gather_rows(const Tensor& x, const Tensor& index, Tensor& out) {
  const auto t0 = Clock::now();
  inner_.gather_rows(x, index, out);
  record("gather_rows " + shape_of(x), t0);
}

void ProfilingBackend::scatter_add_rows(const Tensor& dout, const Tensor& index, Tensor& dx) {
  const auto t0 = Clock::now();
  inner_.scatter_add_rows(dout, index, dx);
  record("scatter_add_rows " + shape_of(dx), t0);
}

void ProfilingBackend::adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                                    const AdamWArgs& args) {
  const auto t0 = Clock::now();
  inner_.adamw_update(param, grad, m, v, args);
  record("adamw_update", t0);
}

}  // namespace loom::cpu
