// Tensor-parallel collectives as forward/backward pairs (Megatron-LM's f and g and the
// vocab-parallel embedding and cross-entropy), all in this one file; the transformer's
// layers are composed from them:
//
//   column-parallel linear (QKV, MLP up/gate):  CopyToTp  -> local GEMM -> (local output)
//   row-parallel linear (attn out, MLP down):   local GEMM -> ReduceFromTp -> + bias
//   embedding:                                   VocabParallelEmbedding (rows of V/tp)
//   LM head + loss:                              CopyToTp -> local logits [N, V/tp] ->
//                                                VocabParallelCrossEntropy (never gathers V)
//   LM head for sampling (generation):           local logits -> GatherVocabFromTp [N, V]
//
// With tp = 1 (TpGroup::comm == nullptr) every pair is the identity and no collective runs.
//
// Determinism: every collective is one Comm call whose result is the same bits on every tp
// rank, so replicated tensors (the residual stream, norm weights and their gradients) stay
// identical across the group without any extra synchronisation.
//
// Ownership: a TpGroup points at a Comm owned by the caller (the trainer), which must outlive
// every layer using it. Threads: one thread per rank, as the Comm.
#pragma once

#include <cstdint>

#include "core/backend.h"
#include "core/comm.h"
#include "core/model/parameter_set.h"

namespace loom::parallel {

// The tensor-parallel group of a model shard.
struct TpGroup {
  Comm* comm = nullptr;  // null: tp = 1
  int rank = 0;
  int size = 1;
  bool active() const { return comm != nullptr && size > 1; }
};

// f: identity forward; the gradient of a replicated input that fans out into column-parallel
// GEMMs is the sum of every rank's partial gradient.
struct CopyToTp {
  static void forward(const TpGroup&, const Tensor&) {}
  static void backward(const TpGroup& tp, Tensor& grad);
};

// g: the partial outputs of a row-parallel GEMM are summed; the gradient passes unchanged.
struct ReduceFromTp {
  static void forward(const TpGroup& tp, Tensor& partial);
  static void backward(const TpGroup&, const Tensor&) {}
};

// Vocab-parallel embedding: each rank looks up ids in its rows [rank·V/tp, (rank+1)·V/tp)
// (zero for ids elsewhere), and the sum over ranks is the full lookup. Backward: each rank
// scatters the (replicated) output gradient into its own rows; no collective.
struct VocabParallelEmbedding {
  static void forward(const TpGroup& tp, Backend& backend, const Tensor& ids, const Tensor& table, Tensor& out);
  static void backward(const TpGroup& tp, Backend& backend, const Tensor& ids, const Tensor& dout, Tensor& dtable);
};

// Vocab-parallel logits made whole (generation, forward only: a sampler needs every column):
// local [N, V/tp] of every rank -> full [N, V], the same bits on every rank. gathered
// ([tp·N·V/tp] f32) and order ([tp·N] i32) are the caller's scratch, (re)allocated here when
// too small. With tp = 1 it copies local into full.
struct GatherVocabFromTp {
  static void forward(const TpGroup& tp, Backend& backend, const Tensor& local, Tensor& gathered, Tensor& order,
                      Tensor& full);
};

// Vocab-parallel softmax cross-entropy over logits [N, V/tp]: per-row (max, Σexp, target
// logit) of every shard are all-gathered ([tp, N, 3], 12 bytes a token instead of 4·V/tp),
// combined in a fixed order into the log-sum-exp, and the backward needs no communication.
class VocabParallelCrossEntropy {
 public:
  // losses [N] f32: -log softmax(full logits)[target], 0 for ignored targets.
  void forward(const TpGroup& tp, Backend& backend, const Tensor& logits, const Tensor& targets, Tensor& losses);
  // dlogits += dloss · (softmax - onehot) over this shard's columns, from the last forward's
  // lse; dlogits may alias logits.
  void backward(const TpGroup& tp, Backend& backend, const Tensor& logits, const Tensor& targets,
                const Tensor& dloss, Tensor& dlogits);

 private:
  void plan(const TpGroup& tp, std::int64_t rows, Device device);
  Tensor stats_, all_stats_, lse_;
};

// Replicated kv heads (fewer kv heads than tp ranks): each replica saw the gradient of only
// its own rank's query heads; sums the k and v sections of every attn.qkv weight and bias
// gradient over the ranks that share a head. Call once per optimizer step, after the last
// micro-batch's backward and before the data-parallel reduction. No-op when kv heads are
// split rather than replicated.
void sum_replicated_kv_grads(const TpGroup& tp, Backend& backend, model::ParameterSet& params);

// The share of a parameter's squared gradient norm this tp rank contributes so that the sum
// over the tp group counts every distinct element once: 1 for split tensors, 1 on tp rank 0
// and 0 elsewhere for replicated ones, 1/replicas for replicated kv sections. Returns (offset
// within the entry, length, weight) ranges covering the entry.
struct WeightedRange {
  std::int64_t offset = 0, length = 0;
  double weight = 1.0;
};
std::vector<WeightedRange> tp_norm_weights(const model::ParameterEntry& entry, const TpGroup& tp);

}  // namespace loom::parallel
