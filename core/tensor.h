// Tensor: a typed, shaped, contiguous block of memory on one device.
//
// Ownership: a Tensor either owns its storage (shared, reference-counted: copies of a
// Tensor alias the same memory) or is a non-owning view of memory someone else keeps
// alive (Tensor::wrap). Views made with view()/reshape() share the parent's storage and
// keep it alive. Tensors are always row-major and contiguous; a view is a contiguous
// sub-range of its parent.
//
// Threads and ranks: a Tensor is a plain value; concurrent reads are safe, concurrent
// writes to overlapping memory are the caller's problem. Nothing here knows about MPI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace loom {

enum class DType : std::uint8_t { F32, BF16, I8, I32 };
enum class Device : std::uint8_t { CPU, CUDA };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* device_name(Device device);

// bfloat16 stored as its upper 16 bits of an IEEE float; conversion rounds to nearest even.
struct bf16 {
  std::uint16_t bits = 0;
};
bf16 to_bf16(float value);
float from_bf16(bf16 value);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }
template <> constexpr DType dtype_of<std::int8_t>() { return DType::I8; }
template <> constexpr DType dtype_of<std::int32_t>() { return DType::I32; }

using Shape = std::vector<std::int64_t>;
std::string shape_string(const Shape& shape);
std::int64_t shape_numel(const Shape& shape);

// Allocation on a device. The CPU allocator is built in (64-byte aligned); a GPU backend
// registers its own allocator when it is initialised.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* ptr) = 0;
};
void register_allocator(Device device, Allocator* allocator);
Allocator& allocator_for(Device device);

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised storage of the given shape (CPU: 64-byte aligned).
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  // Zero-filled storage (CPU only; other devices zero through their backend).
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32);
  // A non-owning view of memory the caller keeps alive for the Tensor's lifetime.
  static Tensor wrap(void* data, const Shape& shape, DType dtype, Device device = Device::CPU);

  bool defined() const { return data_ != nullptr || (!shape_.empty() && numel() == 0); }
  bool owning() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // Size of dimension i; negative i counts from the end.
  std::int64_t dim(int i) const;
  std::int64_t numel() const { return shape_numel(shape_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

  // Typed access; throws std::logic_error when T does not match dtype().
  template <typename T> T* data() {
    check_dtype(dtype_of<T>());
    return static_cast<T*>(data_);
  }
  template <typename T> const T* data() const {
    check_dtype(dtype_of<T>());
    return static_cast<const T*>(data_);
  }
  void* raw() { return data_; }
  const void* raw() const { return data_; }

  // The same memory with another shape of equal numel.
  Tensor reshape(const Shape& shape) const;
  // Elements [offset, offset + numel(shape)) of the flattened tensor, as `shape`.
  Tensor view(std::int64_t offset, const Shape& shape) const;
  // Rows [begin, end) along dimension 0.
  Tensor slice_rows(std::int64_t begin, std::int64_t end) const;

  // A deep copy on the same device (CPU only for now).
  Tensor clone() const;
  // "[4, 64, 768] f32 cpu"
  std::string describe() const;

 private:
  void check_dtype(DType expected) const;

  std::shared_ptr<void> storage_;  // null for wrapped memory
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
};

}  // namespace loom
