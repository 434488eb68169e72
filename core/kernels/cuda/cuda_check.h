// Checks for every CUDA runtime and cuBLASLt call: a failure throws std::runtime_error
// naming the call, file:line, the library's own error text and a hint. Kernel launches are
// checked with LOOM_CUDA_CHECK_LAUNCH() right after the <<<...>>> (launch errors only;
// errors inside a kernel surface at the next synchronising call, as CUDA reports them).
// Header-only, stateless; safe from any thread.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace loom::cuda::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  std::string hint;
  if (status == cudaErrorMemoryAllocation) {
    hint = " (out of GPU memory: reduce the micro-batch or sequence length)";
  } else if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) {
    hint = " (is the NVIDIA driver loaded and a GPU visible? check nvidia-smi and CUDA_VISIBLE_DEVICES)";
  } else if (status == cudaErrorNoKernelImageForDevice) {
    hint = " (loom_cuda was built for another GPU architecture: set CMAKE_CUDA_ARCHITECTURES)";
  }
  throw std::runtime_error(std::string("CUDA error in ") + call + " at " + file + ":" + std::to_string(line) +
                           ": " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status) + hint);
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLASLt error in ") + call + " at " + file + ":" + std::to_string(line) +
                           ": " + cublasLtGetStatusName(status) + ": " + cublasLtGetStatusString(status));
}

}  // namespace loom::cuda::detail

#define LOOM_CUDA_CHECK(call)                                                              \
  do {                                                                                     \
    const cudaError_t loom_status_ = (call);                                               \
    if (loom_status_ != cudaSuccess) {                                                     \
      ::loom::cuda::detail::throw_cuda_error(loom_status_, #call, __FILE__, __LINE__);     \
    }                                                                                      \
  } while (false)

#define LOOM_CUBLAS_CHECK(call)                                                            \
  do {                                                                                     \
    const cublasStatus_t loom_status_ = (call);                                            \
    if (loom_status_ != CUBLAS_STATUS_SUCCESS) {                                           \
      ::loom::cuda::detail::throw_cublas_error(loom_status_, #call, __FILE__, __LINE__);   \
    }                                                                                      \
  } while (false)

#define LOOM_CUDA_CHECK_LAUNCH() LOOM_CUDA_CHECK(cudaGetLastError())
