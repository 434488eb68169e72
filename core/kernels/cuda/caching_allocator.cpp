// The caching device allocator (caching_allocator.h).
#include "core/kernels/cuda/caching_allocator.h"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/kernels/cuda/cuda_check.h"

namespace loom::cuda {

namespace {

// Small blocks round to 512 bytes, large ones to 2 MiB, so a training step's recurring
// shapes map onto a few classes without wasting more than a fraction of a large block.
std::size_t size_class(std::size_t bytes) {
  constexpr std::size_t kSmall = 512;
  constexpr std::size_t kLarge = std::size_t{2} << 20;
  if (bytes <= (std::size_t{1} << 20)) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

class CachingAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes) override {
    if (bytes == 0) return nullptr;
    int device = 0;
    LOOM_CUDA_CHECK(cudaGetDevice(&device));
    const std::size_t rounded = size_class(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find({device, rounded});
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        live_[p] = {device, rounded};
        return p;
      }
    }
    void* p = nullptr;
    cudaError_t status = cudaMalloc(&p, rounded);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear the sticky-free error before retrying
      release();
      status = cudaMalloc(&p, rounded);
    }
    if (status != cudaSuccess) {
      detail::throw_cuda_error(status, ("cudaMalloc(" + std::to_string(rounded) + " bytes)").c_str(), __FILE__,
                               __LINE__);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    live_[p] = {device, rounded};
    return p;
  }

  // Never throws: it runs inside shared_ptr deleters.
  void deallocate(void* p) override {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours; nothing safe to do with it
    free_[it->second].push_back(p);
    live_.erase(it);
  }

  void release() {
    std::map<std::pair<int, std::size_t>, std::vector<void*>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
    }
    int current = 0;
    if (cudaGetDevice(&current) != cudaSuccess) return;
    for (auto& [key, list] : blocks) {
      if (list.empty()) continue;
      cudaSetDevice(key.first);
      cudaDeviceSynchronize();
      for (void* p : list) cudaFree(p);
    }
    cudaSetDevice(current);
  }

 private:
  std::mutex mutex_;
  std::map<std::pair<int, std::size_t>, std::vector<void*>> free_;
  std::unordered_map<void*, std::pair<int, std::size_t>> live_;
};

CachingAllocator& instance() {
  static auto* allocator = new CachingAllocator();  // never destroyed: see the header
  return *allocator;
}

}  // namespace

void register_caching_allocator() {
  static std::once_flag once;
  std::call_once(once, [] { register_allocator(Device::CUDA, &instance()); });
}

void release_cached_blocks() { instance().release(); }

}  // namespace loom::cuda
