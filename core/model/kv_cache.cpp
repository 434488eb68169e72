#include "core/model/kv_cache.h"

#include <stdexcept>
#include <string>

namespace loom::model {

KvCache::KvCache(const ShardDims& dims, std::int64_t batch, std::int64_t capacity, Device device, KvCacheKind kind)
    : kind_(kind), batch_(batch), capacity_(capacity) {
  if (device != Device::CPU) {
    throw std::invalid_argument("KvCache: a cache on " + std::string(device_name(device)) +
                                " needs the backend to zero it (the Backend& constructor)");
  }
  allocate(dims, nullptr);
}

KvCache::KvCache(const ShardDims& dims, std::int64_t batch, std::int64_t capacity, Backend& backend, KvCacheKind kind)
    : kind_(kind), batch_(batch), capacity_(capacity) {
  if (backend.device() != Device::CPU && int8()) {
    throw std::invalid_argument("KvCache: the int8 cache runs on the CPU backend only, not on " + backend.name());
  }
  allocate(dims, backend.device() == Device::CPU ? nullptr : &backend);
}

void KvCache::allocate(const ShardDims& dims, Backend* device_backend) {
  if (batch_ <= 0 || capacity_ <= 0) {
    throw std::invalid_argument("KvCache: batch and capacity must be positive, got batch " + std::to_string(batch_) +
                                ", capacity " + std::to_string(capacity_));
  }
  const Shape shape{batch_, dims.kv_heads, capacity_, dims.head_dim};
  const Shape scale_shape{batch_, dims.kv_heads, capacity_};
  if (int8() && dims.dtype != DType::F32) {
    throw std::invalid_argument(std::string("KvCache: the int8 cache needs an f32 model, this one computes in ") +
                                dtype_name(dims.dtype));
  }
  const DType dtype = int8() ? DType::I8 : dims.dtype;  // the cache holds what qkv holds
  auto zeroed = [&](const Shape& s, DType t) {
    if (device_backend == nullptr) return Tensor::zeros(s, t);
    Tensor x = Tensor::empty(s, t, device_backend->device());
    device_backend->fill(x, 0.0f);
    return x;
  };
  for (std::int64_t layer = 0; layer < dims.layers; ++layer) {
    k_.push_back(zeroed(shape, dtype));
    v_.push_back(zeroed(shape, dtype));
    if (int8()) {
      k_scales_.push_back(zeroed(scale_shape, DType::F32));
      v_scales_.push_back(zeroed(scale_shape, DType::F32));
    }
  }
}

void KvCache::set_length(std::int64_t length) {
  if (length < 0 || length > capacity_) {
    throw std::invalid_argument("KvCache::set_length: " + std::to_string(length) + " is outside [0, capacity " +
                                std::to_string(capacity_) + "]");
  }
  length_ = length;
}

Tensor& KvCache::layer_tensor(std::vector<Tensor>& tensors, const char* name, std::int64_t layer) {
  if (layer < 0 || layer >= layers()) {
    throw std::out_of_range(std::string("KvCache::") + name + ": layer " + std::to_string(layer) + " of " +
                            std::to_string(layers()));
  }
  return tensors[static_cast<std::size_t>(layer)];
}

Tensor& KvCache::k(std::int64_t layer) { return layer_tensor(k_, "k", layer); }

Tensor& KvCache::v(std::int64_t layer) { return layer_tensor(v_, "v", layer); }

Tensor& KvCache::k_scales(std::int64_t layer) {
  if (!int8()) throw std::logic_error("KvCache::k_scales: an f32 cache has no scales (only the int8 kind does)");
  return layer_tensor(k_scales_, "k_scales", layer);
}

Tensor& KvCache::v_scales(std::int64_t layer) {
  if (!int8()) throw std::logic_error("KvCache::v_scales: an f32 cache has no scales (only the int8 kind does)");
  return layer_tensor(v_scales_, "v_scales", layer);
}

std::int64_t KvCache::bytes() const {
  std::int64_t total = 0;
  for (const auto* tensors : {&k_, &v_, &k_scales_, &v_scales_}) {
    for (const Tensor& t : *tensors) total += static_cast<std::int64_t>(t.nbytes());
  }
  return total;
}

}  // namespace loom::model
