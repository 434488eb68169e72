#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace loom {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I8: return 1;
    case DType::I32: return 4;
  }
  throw std::logic_error("dtype_size: unknown dtype");
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I8: return "i8";
    case DType::I32: return "i32";
  }
  return "?";
}

const char* device_name(Device device) { return device == Device::CPU ? "cpu" : "cuda"; }

bf16 to_bf16(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return bf16{static_cast<std::uint16_t>((bits >> 16) | 0x40)};  // quiet NaN stays NaN
  }
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return bf16{static_cast<std::uint16_t>((bits + rounding) >> 16)};
}

float from_bf16(bf16 value) {
  const std::uint32_t bits = static_cast<std::uint32_t>(value.bits) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes) override {
    const std::size_t rounded = (bytes + 63) / 64 * 64;
    void* ptr = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (ptr == nullptr) throw std::bad_alloc();
    return ptr;
  }
  void deallocate(void* ptr) override { std::free(ptr); }
};

Allocator* g_allocators[2] = {nullptr, nullptr};

}  // namespace

void register_allocator(Device device, Allocator* allocator) {
  g_allocators[static_cast<int>(device)] = allocator;
}

Allocator& allocator_for(Device device) {
  static CpuAllocator cpu;
  if (device == Device::CPU) return g_allocators[0] ? *g_allocators[0] : cpu;
  Allocator* a = g_allocators[static_cast<int>(device)];
  if (a == nullptr) {
    throw std::runtime_error(std::string("no allocator registered for device ") + device_name(device) +
                             " (was the backend initialised?)");
  }
  return *a;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (auto d : shape) {
    if (d < 0) throw std::invalid_argument("Tensor::empty: negative dimension in " + shape_string(shape));
  }
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  Allocator& allocator = allocator_for(device);
  void* ptr = allocator.allocate(t.nbytes());
  t.storage_ = std::shared_ptr<void>(ptr, [&allocator](void* p) { allocator.deallocate(p); });
  t.data_ = ptr;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype, Device::CPU);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::wrap(void* data, const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

std::int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int k = i < 0 ? i + n : i;
  if (k < 0 || k >= n) {
    throw std::out_of_range("Tensor::dim(" + std::to_string(i) + ") on " + describe());
  }
  return shape_[k];
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (shape_numel(shape) != numel()) {
    throw std::invalid_argument("Tensor::reshape: " + describe() + " cannot become " + shape_string(shape));
  }
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::view(std::int64_t offset, const Shape& shape) const {
  if (offset < 0 || offset + shape_numel(shape) > numel()) {
    throw std::out_of_range("Tensor::view: elements [" + std::to_string(offset) + ", " +
                            std::to_string(offset + shape_numel(shape)) + ") outside " + describe());
  }
  Tensor t = *this;
  t.shape_ = shape;
  t.data_ = static_cast<char*>(data_) + offset * static_cast<std::int64_t>(dtype_size(dtype_));
  return t;
}

Tensor Tensor::slice_rows(std::int64_t begin, std::int64_t end) const {
  if (ndim() == 0 || begin < 0 || end < begin || end > shape_[0]) {
    throw std::out_of_range("Tensor::slice_rows(" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") on " + describe());
  }
  Shape shape = shape_;
  shape[0] = end - begin;
  return view(begin * (numel() / (shape_[0] == 0 ? 1 : shape_[0])), shape);
}

Tensor Tensor::clone() const {
  if (device_ != Device::CPU) throw std::logic_error("Tensor::clone: only CPU tensors are cloned here");
  Tensor t = empty(shape_, dtype_, device_);
  if (nbytes() > 0) std::memcpy(t.data_, data_, nbytes());
  return t;
}

std::string Tensor::describe() const {
  return shape_string(shape_) + " " + dtype_name(dtype_) + " " + device_name(device_);
}

void Tensor::check_dtype(DType expected) const {
  if (expected != dtype_) {
    throw std::logic_error(std::string("Tensor: accessed as ") + dtype_name(expected) + " but holds " +
                           describe());
  }
}

}  // namespace loom
