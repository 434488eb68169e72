// KvCache: the keys and values a Transformer shard has computed for B sequences during
// generation, so each decode step attends to earlier tokens without recomputing them.
//
// Per owned layer, k and v are [B, Hkv, capacity, D] f32 on the backend's device (Hkv the
// shard's kv heads, RoPE already applied to k). Positions [0, length) are filled; a forward
// at start_pos overwrites from there on, so rewinding (start_pos < length) is allowed.
//
// Ownership: owns its tensors. Threads: one thread, the one driving the Transformer.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model/activations.h"
#include "core/tensor.h"

namespace loom::model {

class KvCache {
 public:
  KvCache() = default;
  // Zero-filled cache for `batch` sequences of up to `capacity` positions.
  KvCache(const ShardDims& dims, std::int64_t batch, std::int64_t capacity, Device device);

  std::int64_t batch() const { return batch_; }
  std::int64_t capacity() const { return capacity_; }
  std::int64_t layers() const { return static_cast<std::int64_t>(k_.size()); }
  // Positions [0, length) hold valid keys/values of every sequence.
  std::int64_t length() const { return length_; }
  void set_length(std::int64_t length);
  void reset() { length_ = 0; }

  Tensor& k(std::int64_t layer);
  Tensor& v(std::int64_t layer);
  // Bytes the cache holds (k and v, all layers).
  std::int64_t bytes() const;

 private:
  std::int64_t batch_ = 0, capacity_ = 0, length_ = 0;
  std::vector<Tensor> k_, v_;  // per owned layer, [B, Hkv, capacity, D]
};

}  // namespace loom::model
