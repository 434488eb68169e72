// GradReducer: sums a model shard's flat gradient buffer over its data-parallel group in
// buckets, with nonblocking all-reduces started while the backward pass is still running.
//
// Buckets are contiguous runs of the Transformer's grad_ranges() (head, layers last to
// first, embeddings), merged until each holds at least `bucket_elements`. Once armed (the
// last micro-batch's backward is about to start), every range the model reports finished
// marks itself ready, and a bucket whose ranges are all ready starts its all-reduce at once,
// overlapping the rest of the backward. finish() starts the buckets still waiting (e.g. a
// tied-embedding replica no backward step reports), always in bucket order, and waits for
// all of them.
//
// Determinism: every dp rank runs the same schedule, so the buckets start in the same order
// on every rank of the group, and each bucket is one all-reduce over fixed memory: repeated
// runs give the same bits.
//
// Ownership: holds a view of the gradient buffer and borrows the Comm; both must outlive it.
// Threads: the thread that runs the backward (the hook calls ready()).
#pragma once

#include <cstdint>
#include <vector>

#include "core/comm.h"
#include "core/model/transformer.h"

namespace loom::parallel {

class GradReducer {
 public:
  // dp null or of size 1: nothing is reduced (every call returns at once).
  GradReducer(const Tensor& grads, const std::vector<model::Transformer::GradRange>& ranges, Comm* dp,
              std::int64_t bucket_elements);

  void arm();                                          // start reducing ranges as they finish
  void ready(const model::Transformer::GradRange& range);  // the model's grad-ready hook
  // Starts what is left, waits for every bucket, disarms. Returns the seconds spent waiting.
  double finish();

  int buckets() const { return static_cast<int>(buckets_.size()); }
  // Buckets started before finish() in the last step (overlapped with the backward).
  int started_early() const { return started_early_; }

 private:
  struct Bucket {
    std::int64_t begin = 0, end = 0;
    int pending_ranges = 0;  // not yet reported ready in this step
    int range_count = 0;
    Request request;
    bool started = false;
  };
  void start(Bucket& bucket);

  Tensor grads_;
  Comm* dp_;
  bool armed_ = false;
  int started_early_ = 0;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<model::Transformer::GradRange, std::size_t>> range_bucket_;  // range -> bucket
};

}  // namespace loom::parallel
