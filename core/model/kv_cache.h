// KvCache: the keys and values a Transformer shard has computed for B sequences during
// generation, so each decode step attends to earlier tokens without recomputing them.
//
// Two kinds, chosen at construction:
//   F32:  per owned layer, k and v are [B, Hkv, capacity, D] f32.
//   Int8: per owned layer, k and v are [B, Hkv, capacity, D] int8 codes with k_scales and
//         v_scales [B, Hkv, capacity] f32, one scale per (token, head) row: a cached row is
//         scale · q (core/quant/kv_int8.h). About a quarter of the f32 cache's bytes.
// Tensors live on the backend's device (Hkv the shard's kv heads, RoPE already applied to k).
// Positions [0, length) are filled; a forward at start_pos overwrites from there on, so
// rewinding (start_pos < length) is allowed.
//
// Ownership: owns its tensors. Threads: one thread, the one driving the Transformer.
#pragma once

#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/model/activations.h"
#include "core/tensor.h"

namespace loom::model {

enum class KvCacheKind : std::uint8_t { F32, Int8 };

class KvCache {
 public:
  KvCache() = default;
  // Zero-filled cache for `batch` sequences of up to `capacity` positions.
  KvCache(const ShardDims& dims, std::int64_t batch, std::int64_t capacity, Device device,
          KvCacheKind kind = KvCacheKind::F32);
  // The same on the backend's device, zeroed through it (a GPU cache is f32 only: the
  // int8 cache's kernels are CPU-only).
  KvCache(const ShardDims& dims, std::int64_t batch, std::int64_t capacity, Backend& backend,
          KvCacheKind kind = KvCacheKind::F32);

  KvCacheKind kind() const { return kind_; }
  bool int8() const { return kind_ == KvCacheKind::Int8; }
  std::int64_t batch() const { return batch_; }
  std::int64_t capacity() const { return capacity_; }
  std::int64_t layers() const { return static_cast<std::int64_t>(k_.size()); }
  // Positions [0, length) hold valid keys/values of every sequence.
  std::int64_t length() const { return length_; }
  void set_length(std::int64_t length);
  void reset() { length_ = 0; }

  Tensor& k(std::int64_t layer);  // [B, Hkv, capacity, D] f32 or int8 by kind()
  Tensor& v(std::int64_t layer);
  // Int8 kind only (std::logic_error otherwise): [B, Hkv, capacity] f32.
  Tensor& k_scales(std::int64_t layer);
  Tensor& v_scales(std::int64_t layer);
  // Bytes the cache holds (k, v and any scales, all layers).
  std::int64_t bytes() const;

 private:
  // Zero-filled tensors: on the host (device_backend null) or on that backend's device.
  void allocate(const ShardDims& dims, Backend* device_backend);
  Tensor& layer_tensor(std::vector<Tensor>& tensors, const char* name, std::int64_t layer);

  KvCacheKind kind_ = KvCacheKind::F32;
  std::int64_t batch_ = 0, capacity_ = 0, length_ = 0;
  std::vector<Tensor> k_, v_;                // per owned layer, [B, Hkv, capacity, D]
  std::vector<Tensor> k_scales_, v_scales_;  // per owned layer, [B, Hkv, capacity]; Int8 only
};

}  // namespace loom::model
