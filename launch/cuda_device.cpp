#include "launch/cuda_device.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace loom::launch {
namespace {

const char* hint_for(cudaError_t code) {
  switch (code) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "is a GPU visible to this process (nvidia-smi, CUDA_VISIBLE_DEVICES) and is the driver new enough "
             "for this CUDA runtime?";
    case cudaErrorInvalidDevice:
      return "the device number is past the visible devices; check CUDA_VISIBLE_DEVICES and ranks per node";
    case cudaErrorMemoryAllocation:
      return "the GPU is out of memory; use smaller micro-batches, more tp/pp, or check that no other process "
             "shares the GPU";
    default:
      return "rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing call";
  }
}

std::string gib(std::size_t bytes) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return text.data();
}

}  // namespace

void cuda_check(cudaError_t code, const char* call, std::source_location where) {
  if (code == cudaSuccess) return;
  throw std::runtime_error(std::string("CUDA error in ") + call + " at " + where.file_name() + ":" +
                           std::to_string(where.line()) + ": " + cudaGetErrorName(code) + " (" +
                           cudaGetErrorString(code) + "); " + hint_for(code));
}

int count_cuda_devices(std::string* reason) {
  int count = 0;
  const cudaError_t code = cudaGetDeviceCount(&count);
  if (code != cudaSuccess) {
    // A failed query leaves a sticky "last error" that a later, unrelated check would report.
    static_cast<void>(cudaGetLastError());
    if (reason != nullptr) *reason = std::string(cudaGetErrorName(code)) + ": " + cudaGetErrorString(code);
    return 0;
  }
  if (count == 0 && reason != nullptr) *reason = "CUDA reports no devices";
  return count;
}

int select_cuda_device(const RankEnvironment& env) {
  std::string reason;
  const int count = count_cuda_devices(&reason);
  if (count == 0) {
    throw std::runtime_error("select_cuda_device: " + describe(env) + " found no CUDA device (" + reason +
                             "); run on a GPU node, check CUDA_VISIBLE_DEVICES, or use the CPU backend");
  }
  if (env.local_size > count) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      std::fprintf(stderr,
                   "loom: warning: %d ranks on this node share %d visible CUDA device%s; ranks %d apart use the "
                   "same GPU (NCCL cannot put two ranks of one communicator on one GPU)\n",
                   env.local_size, count, count == 1 ? "" : "s", count);
    }
  }
  const int device = env.local_rank % count;
  cuda_check(cudaSetDevice(device), "cudaSetDevice");
  return device;
}

std::string describe_cuda_device(int device) {
  cudaDeviceProp props{};
  cuda_check(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties");
  std::array<char, 32> bus{};
  cuda_check(cudaDeviceGetPCIBusId(bus.data(), static_cast<int>(bus.size()), device), "cudaDeviceGetPCIBusId");
  return std::string(props.name) + ", sm_" + std::to_string(props.major) + std::to_string(props.minor) + ", " +
         gib(props.totalGlobalMem) + ", bus " + bus.data();
}

}  // namespace loom::launch
