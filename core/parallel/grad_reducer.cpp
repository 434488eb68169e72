#include "core/parallel/grad_reducer.h"

#include <chrono>
#include <stdexcept>
#include <string>

namespace loom::parallel {

GradReducer::GradReducer(const Tensor& grads, const std::vector<model::Transformer::GradRange>& ranges, Comm* dp,
                         std::int64_t bucket_elements)
    : grads_(grads), dp_(dp != nullptr && dp->size() > 1 ? dp : nullptr) {
  if (bucket_elements < 1) {
    throw std::invalid_argument("GradReducer: bucket size must be at least one element, got " +
                                std::to_string(bucket_elements));
  }
  for (const auto& range : ranges) {
    if (buckets_.empty() || buckets_.back().end - buckets_.back().begin >= bucket_elements) {
      buckets_.push_back(Bucket{range.begin, range.end, 0, 0, Request(), false});
    }
    Bucket& b = buckets_.back();
    b.begin = std::min(b.begin, range.begin);
    b.end = std::max(b.end, range.end);
    ++b.range_count;
    range_bucket_.emplace_back(range, buckets_.size() - 1);
  }
  for (Bucket& b : buckets_) b.pending_ranges = b.range_count;
}

void GradReducer::arm() {
  armed_ = true;
  started_early_ = 0;
}

void GradReducer::start(Bucket& bucket) {
  bucket.started = true;
  if (dp_ == nullptr) return;
  Tensor view = grads_.view(bucket.begin, {bucket.end - bucket.begin});
  bucket.request = dp_->all_reduce_sum_async(view);
}

void GradReducer::ready(const model::Transformer::GradRange& range) {
  if (!armed_) return;
  for (const auto& [r, index] : range_bucket_) {
    if (r.begin == range.begin && r.end == range.end) {
      --buckets_[index].pending_ranges;
      break;
    }
  }
  // Buckets start in order, so every rank issues the same sequence of collectives: a
  // complete bucket waits for the ones before it.
  for (Bucket& b : buckets_) {
    if (b.started) continue;
    if (b.pending_ranges > 0) break;
    start(b);
    ++started_early_;
  }
}

double GradReducer::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  for (Bucket& b : buckets_) {
    if (!b.started) start(b);
  }
  for (Bucket& b : buckets_) {
    b.request.wait();
    b.started = false;
    b.pending_ranges = b.range_count;
  }
  armed_ = false;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace loom::parallel
