// CUDA device selection for one rank: each process on a node takes GPU
// local_rank % device_count, counted among the devices CUDA_VISIBLE_DEVICES leaves visible
// (CUDA renumbers them from 0, so this code never parses the variable itself). Call
// select_cuda_device before creating any CUDA stream, allocation or NcclComm: every later
// CUDA call of the thread goes to the device it sets.
//
// Also the checked-call helpers the NCCL/CUDA code in launch/ shares: cuda_check turns a
// cudaError_t into a std::runtime_error naming the call, file:line, CUDA's error name and
// text, and a hint. They take std::source_location instead of being macros, so they cannot
// clash with the CUDA backend's own CUDA_CHECK.
//
// Built only with CUDA (library loom_nccl, LOOM_HAVE_NCCL=1).
// Threads: cudaSetDevice is per host thread; call select_cuda_device on the thread that
// drives the GPU (loom's main thread). The oversubscription warning prints once per process.
#pragma once

#include <cuda_runtime.h>

#include <source_location>
#include <string>

#include "launch/environment.h"

namespace loom::launch {

// Throws std::runtime_error when `code` is not cudaSuccess:
// "CUDA error in cudaSetDevice(3) at launch/cuda_device.cpp:41: cudaErrorInvalidDevice
//  (invalid device ordinal); check ...".
void cuda_check(cudaError_t code, const char* call,
                std::source_location where = std::source_location::current());

// Devices CUDA can use in this process (after CUDA_VISIBLE_DEVICES). Returns 0 instead of
// throwing when there is no driver or no device, and then puts the reason (CUDA's error
// text) in `reason` when it is given; tests use this to skip themselves.
int count_cuda_devices(std::string* reason = nullptr);

// Makes device local_rank % count current for this thread and returns it. Throws
// std::runtime_error naming the rank when CUDA sees no device. Warns once on stderr when
// more ranks share the node (env.local_size) than there are devices: they then share GPUs,
// which works for compute but not for NCCL (one rank per GPU per communicator).
int select_cuda_device(const RankEnvironment& env);

// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB, bus 0000:19:00.0"
std::string describe_cuda_device(int device);

}  // namespace loom::launch
