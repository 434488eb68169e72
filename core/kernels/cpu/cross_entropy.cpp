// Softmax cross-entropy of the CPU backend over logits [N, V], parallel over rows, and its
// vocab-parallel form (stats per shard, a combine over all shards' stats, a backward).
// Vocabularies are large (50257 for GPT-2), so each row is read from memory once: an
// online softmax walks it in 512-element blocks (block max, rescale the running sum when
// the max grows, then a vectorised sum of exponentials), giving log-sum-exp in one pass.
// Backward recomputes that lse (the row is then in cache) and writes the gradient in one
// more pass; when dlogits aliases logits the row is overwritten with its gradient.
// bf16 logits and dlogits run this code on staged f32 copies (bf16_staging.h; an aliased
// dlogits shares the staged copy of logits); losses, stats, lse and dloss are always f32.
#include <algorithm>
#include <cmath>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

namespace {

constexpr std::int64_t kBlock = 512;


// Row max and Σ exp(x - max) in one pass (the online softmax of row_log_sum_exp).
void row_max_sum(const float* row, std::int64_t v, float& max_out, double& sum_out) {
  float running_max = -__builtin_inff();
  double running_sum = 0.0;
  for (std::int64_t begin = 0; begin < v; begin += kBlock) {
    const std::int64_t end = std::min(v, begin + kBlock);
    float block_max = -__builtin_inff();
#pragma omp simd reduction(max : block_max)
    for (std::int64_t i = begin; i < end; ++i) block_max = std::max(block_max, row[i]);
    if (block_max > running_max) {
      running_sum *= std::exp(static_cast<double>(running_max) - static_cast<double>(block_max));
      running_max = block_max;
    }
    float block_sum = 0.0f;
    const float m = running_max;
#pragma omp simd reduction(+ : block_sum)
    for (std::int64_t i = begin; i < end; ++i) block_sum += fast_exp(row[i] - m);
    running_sum += block_sum;
  }
  max_out = running_max;
  sum_out = running_sum;
}

void check_targets(const char* op, const Tensor& targets, std::int64_t vocab) {
  const std::int32_t* tp = targets.data<std::int32_t>();
  for (std::int64_t n = 0; n < targets.numel(); ++n) {
    if (tp[n] >= vocab) {
      fail(op, "targets[" + std::to_string(n) + "] = " + std::to_string(tp[n]) + " is not below the vocabulary size " +
                   std::to_string(vocab) + " (negative targets mean ignored)");
    }
  }
}

float row_log_sum_exp(const float* row, std::int64_t v) {
  float max = 0.0f;
  double sum = 0.0;
  row_max_sum(row, v, max, sum);
  return max + static_cast<float>(std::log(sum));
}

// drow (=|+=) g · softmax(row) with the row's log-sum-exp, minus g at column `target` when
// it lies in [0, v) (a vocab shard may not hold the target).
void row_gradient(const float* row, float* drow, std::int64_t v, float lse, float g, std::int64_t target,
                  bool overwrite) {
  if (overwrite) {
#pragma omp simd
    for (std::int64_t i = 0; i < v; ++i) drow[i] = g * fast_exp(row[i] - lse);
  } else {
#pragma omp simd
    for (std::int64_t i = 0; i < v; ++i) drow[i] += g * fast_exp(row[i] - lse);
  }
  if (target >= 0 && target < v) drow[target] -= g;
}

// The backward both cross-entropies share: dlogits (=|+=) dloss · (softmax - onehot) row by
// row, with each row's log-sum-exp from lse_of(r, row, v) and targets shifted by
// vocab_offset (a vocab shard may not hold the target). dlogits must alias logits exactly or
// not overlap them.
template <typename LseOf>
void backward_rows(const char* op, const Tensor& logits, const Tensor& targets, const Tensor& dloss, Tensor& dlogits,
                   std::int64_t vocab_offset, LseOf lse_of) {
  const std::int64_t n = rows_of(logits);
  const std::int64_t v = cols_of(logits);
  const float* lp = logits.data<float>();
  float* dp = dlogits.data<float>();
  const bool aliased = static_cast<const void*>(lp) == static_cast<const void*>(dp);
  if (!aliased && lp < dp + n * v && dp < lp + n * v) {
    fail(op, "dlogits " + dlogits.describe() + " partly overlaps logits " + logits.describe() +
                 "; it must alias them exactly or not at all");
  }
  const std::int32_t* tp = targets.data<std::int32_t>();
  const float* gp = dloss.data<float>();
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n * v))
  for (std::int64_t r = 0; r < n; ++r) {
    const float* row = lp + r * v;
    float* drow = dp + r * v;
    if (tp[r] < 0) {
      if (aliased) std::fill(drow, drow + v, 0.0f);
      continue;
    }
    row_gradient(row, drow, v, lse_of(r, row, v), gp[r], static_cast<std::int64_t>(tp[r]) - vocab_offset, aliased);
  }
}

// Shared checks of the cross-entropy ops: logits [N, V] f32, targets [N] i32; returns N.
std::int64_t check_ce_inputs(const char* op, const Tensor& logits, const Tensor& targets) {
  require_f32(op, "logits", logits);
  require_i32(op, "targets", targets);
  const std::int64_t n = rows_of(logits);
  if (targets.numel() != n) fail(op, "targets " + targets.describe() + " must have one entry per row of logits " + logits.describe());
  return n;
}

}  // namespace

void CpuBackend::cross_entropy_forward(const Tensor& logits, const Tensor& targets, Tensor& losses) {
  if (is_bf16(logits)) {
    Bf16Staging staging("cross_entropy_forward");
    const Tensor logits32 = staging.input("logits", logits);
    return staging.run([&] { cross_entropy_forward(logits32, targets, losses); });
  }
  const char* op = "cross_entropy_forward";
  const std::int64_t n = check_ce_inputs(op, logits, targets);
  const std::int64_t v = cols_of(logits);
  require_numel(op, "losses", losses, n, "the rows of logits " + logits.describe());
  check_targets(op, targets, v);
  const float* lp = logits.data<float>();
  const std::int32_t* tp = targets.data<std::int32_t>();
  float* out = losses.data<float>();
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n * v))
  for (std::int64_t r = 0; r < n; ++r) {
    if (tp[r] < 0) {
      out[r] = 0.0f;
      continue;
    }
    const float* row = lp + r * v;
    out[r] = row_log_sum_exp(row, v) - row[tp[r]];
  }
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& dloss,
                                        Tensor& dlogits) {
  if (is_bf16(logits)) {
    Bf16Staging staging("cross_entropy_backward");
    const Tensor logits32 = staging.input("logits", logits);
    Tensor dlogits32 = staging.output("dlogits", dlogits, Bf16Staging::Use::Update);
    return staging.run([&] { cross_entropy_backward(logits32, targets, dloss, dlogits32); });
  }
  const char* op = "cross_entropy_backward";
  const std::int64_t n = check_ce_inputs(op, logits, targets);
  const std::int64_t v = cols_of(logits);
  require_numel(op, "dloss", dloss, n, "the rows of logits " + logits.describe());
  require_matrix(op, "dlogits", dlogits, n, v, "logits " + logits.describe());
  check_targets(op, targets, v);
  backward_rows(op, logits, targets, dloss, dlogits, 0,
                [](std::int64_t, const float* row, std::int64_t v) { return row_log_sum_exp(row, v); });
}

void CpuBackend::cross_entropy_shard_stats(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                           Tensor& stats) {
  if (is_bf16(logits)) {
    Bf16Staging staging("cross_entropy_shard_stats");
    const Tensor logits32 = staging.input("logits", logits);
    return staging.run([&] { cross_entropy_shard_stats(logits32, targets, vocab_offset, stats); });
  }
  const char* op = "cross_entropy_shard_stats";
  const std::int64_t n = check_ce_inputs(op, logits, targets);
  const std::int64_t v = cols_of(logits);
  require_f32(op, "stats", stats);
  require_numel(op, "stats", stats, n * 3, "[N, 3] for the rows of logits " + logits.describe());
  const float* lp = logits.data<float>();
  const std::int32_t* tp = targets.data<std::int32_t>();
  float* out = stats.data<float>();
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n * v))
  for (std::int64_t r = 0; r < n; ++r) {
    const float* row = lp + r * v;
    float max = 0.0f;
    double sum = 0.0;
    row_max_sum(row, v, max, sum);
    const std::int64_t local = static_cast<std::int64_t>(tp[r]) - vocab_offset;
    out[3 * r] = max;
    out[3 * r + 1] = static_cast<float>(sum);
    out[3 * r + 2] = tp[r] >= 0 && local >= 0 && local < v ? row[local] : 0.0f;
  }
}

void CpuBackend::cross_entropy_shard_combine(const Tensor& all_stats, const Tensor& targets, Tensor& lse,
                                             Tensor& losses) {
  const char* op = "cross_entropy_shard_combine";
  require_f32(op, "all_stats", all_stats);
  require_i32(op, "targets", targets);
  const std::int64_t n = targets.numel();
  if (n == 0 || all_stats.numel() % (3 * n) != 0) {
    fail(op, "all_stats " + all_stats.describe() + " must be [shards, N, 3] for targets " + targets.describe());
  }
  const std::int64_t shards = all_stats.numel() / (3 * n);
  require_numel(op, "lse", lse, n, "the targets " + targets.describe());
  require_numel(op, "losses", losses, n, "the targets " + targets.describe());
  const float* sp = all_stats.data<float>();
  const std::int32_t* tp = targets.data<std::int32_t>();
  float* lp = lse.data<float>();
  float* out = losses.data<float>();
  // Fixed shard order: the same bits on every rank and in every run.
  for (std::int64_t r = 0; r < n; ++r) {
    float max = -__builtin_inff();
    for (std::int64_t s = 0; s < shards; ++s) max = std::max(max, sp[(s * n + r) * 3]);
    double sum = 0.0;
    float target_logit = 0.0f;
    for (std::int64_t s = 0; s < shards; ++s) {
      const float* st = sp + (s * n + r) * 3;
      sum += static_cast<double>(st[1]) * std::exp(static_cast<double>(st[0]) - static_cast<double>(max));
      target_logit += st[2];
    }
    lp[r] = max + static_cast<float>(std::log(sum));
    out[r] = tp[r] < 0 ? 0.0f : lp[r] - target_logit;
  }
}

void CpuBackend::cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                              const Tensor& lse, const Tensor& dloss, Tensor& dlogits) {
  if (is_bf16(logits)) {
    Bf16Staging staging("cross_entropy_shard_backward");
    const Tensor logits32 = staging.input("logits", logits);
    Tensor dlogits32 = staging.output("dlogits", dlogits, Bf16Staging::Use::Update);
    return staging.run([&] { cross_entropy_shard_backward(logits32, targets, vocab_offset, lse, dloss, dlogits32); });
  }
  const char* op = "cross_entropy_shard_backward";
  const std::int64_t n = check_ce_inputs(op, logits, targets);
  const std::int64_t v = cols_of(logits);
  require_numel(op, "lse", lse, n, "the rows of logits " + logits.describe());
  require_numel(op, "dloss", dloss, n, "the rows of logits " + logits.describe());
  require_matrix(op, "dlogits", dlogits, n, v, "logits " + logits.describe());
  const float* ls = lse.data<float>();
  backward_rows(op, logits, targets, dloss, dlogits, vocab_offset,
                [ls](std::int64_t r, const float*, std::int64_t) { return ls[r]; });
}

}  // namespace loom::cpu
