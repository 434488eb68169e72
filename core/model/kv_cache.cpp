#include "core/model/kv_cache.h"

#include <stdexcept>
#include <string>

namespace loom::model {

KvCache::KvCache(const ShardDims& dims, std::int64_t batch, std::int64_t capacity, Device device)
    : batch_(batch), capacity_(capacity) {
  if (batch <= 0 || capacity <= 0) {
    throw std::invalid_argument("KvCache: batch and capacity must be positive, got batch " + std::to_string(batch) +
                                ", capacity " + std::to_string(capacity));
  }
  if (device != Device::CPU) {
    throw std::invalid_argument("KvCache: only CPU caches are supported so far");
  }
  const Shape shape{batch, dims.kv_heads, capacity, dims.head_dim};
  for (std::int64_t layer = 0; layer < dims.layers; ++layer) {
    k_.push_back(Tensor::zeros(shape, DType::F32));
    v_.push_back(Tensor::zeros(shape, DType::F32));
  }
}

void KvCache::set_length(std::int64_t length) {
  if (length < 0 || length > capacity_) {
    throw std::invalid_argument("KvCache::set_length: " + std::to_string(length) + " is outside [0, capacity " +
                                std::to_string(capacity_) + "]");
  }
  length_ = length;
}

Tensor& KvCache::k(std::int64_t layer) {
  if (layer < 0 || layer >= layers()) {
    throw std::out_of_range("KvCache::k: layer " + std::to_string(layer) + " of " + std::to_string(layers()));
  }
  return k_[static_cast<std::size_t>(layer)];
}

Tensor& KvCache::v(std::int64_t layer) {
  if (layer < 0 || layer >= layers()) {
    throw std::out_of_range("KvCache::v: layer " + std::to_string(layer) + " of " + std::to_string(layers()));
  }
  return v_[static_cast<std::size_t>(layer)];
}

std::int64_t KvCache::bytes() const {
  std::int64_t total = 0;
  for (const Tensor& t : k_) total += static_cast<std::int64_t>(t.nbytes());
  for (const Tensor& t : v_) total += static_cast<std::int64_t>(t.nbytes());
  return total;
}

}  // namespace loom::model
