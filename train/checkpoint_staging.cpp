#include "train/checkpoint_staging.h"

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#if LOOM_HAVE_CUDA
#include <cuda_runtime.h>

#include "core/kernels/cuda/cuda_stream.h"
#endif

namespace loom::train {

#if LOOM_HAVE_CUDA
namespace {

void check(cudaError_t code, const char* call) {
  if (code != cudaSuccess) {
    throw std::runtime_error(std::string("checkpoint staging: ") + call + " failed: " + cudaGetErrorName(code) + " (" +
                             cudaGetErrorString(code) +
                             "); a failed cudaMallocHost means too little page-lockable host memory (ulimit -l)");
  }
}

class CudaStaging final : public DeviceStaging {
 public:
  explicit CudaStaging(Backend& backend) : compute_(cuda::stream_of(backend)) {
    check(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaEventCreateWithFlags(&queued_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  ~CudaStaging() override {
    // Never free pinned memory a copy may still be writing.
    cudaStreamSynchronize(side_);
    for (Buffer& b : buffers_) cudaFreeHost(b.data);
    cudaEventDestroy(done_);
    cudaEventDestroy(queued_);
    cudaStreamDestroy(side_);
  }

  void begin() override {
    next_ = 0;
    check(cudaEventRecord(queued_, compute_), "cudaEventRecord");
    check(cudaStreamWaitEvent(side_, queued_, 0), "cudaStreamWaitEvent");
  }

  const float* stage(const Tensor& t) override {
    if (t.dtype() != DType::F32 || t.device() != Device::CUDA) {
      throw std::invalid_argument("checkpoint staging: expected an f32 CUDA tensor, got " + t.describe());
    }
    if (next_ == buffers_.size()) buffers_.push_back({});
    Buffer& b = buffers_[next_++];
    if (b.bytes < t.nbytes()) {
      if (b.data != nullptr) check(cudaFreeHost(b.data), "cudaFreeHost");
      b.data = nullptr;
      check(cudaMallocHost(&b.data, t.nbytes()), "cudaMallocHost");
      b.bytes = t.nbytes();
    }
    check(cudaMemcpyAsync(b.data, t.raw(), t.nbytes(), cudaMemcpyDeviceToHost, side_), "cudaMemcpyAsync");
    return static_cast<const float*>(b.data);
  }

  void end() override { check(cudaEventRecord(done_, side_), "cudaEventRecord"); }

  void wait() override { check(cudaEventSynchronize(done_), "cudaEventSynchronize"); }

 private:
  struct Buffer {
    void* data = nullptr;
    std::size_t bytes = 0;
  };
  cudaStream_t compute_ = nullptr, side_ = nullptr;
  cudaEvent_t queued_ = nullptr, done_ = nullptr;
  std::vector<Buffer> buffers_;
  std::size_t next_ = 0;
};

}  // namespace
#endif

std::unique_ptr<DeviceStaging> make_device_staging(Backend& backend) {
  if (backend.device() == Device::CPU) return nullptr;
#if LOOM_HAVE_CUDA
  if (backend.device() == Device::CUDA) return std::make_unique<CudaStaging>(backend);
#endif
  throw std::invalid_argument("checkpoint staging: no host staging for the " + backend.name() + " backend");
}

}  // namespace loom::train
