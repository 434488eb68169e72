// The CUDA backend: loom::Backend (core/backend.h) on one NVIDIA GPU.
//
// Floating tensors may be f32 or bf16 ("bf16 storage, fp32 accumulation"); GEMMs run on
// cuBLASLt (pure fp32 for f32 operands, no TF32), everything else on loom's own kernels in
// this folder, one file per op family as in core/kernels/cpu, whose semantics they copy.
// Results are bit-identical run to run: no floating-point atomics, fixed reduction orders.
// docs/cuda.md lists what exists and how the GPU tests run.
//
// Ownership: make_cuda_backend returns a backend that owns its stream, cuBLASLt handle and
// workspace. Tensors on Device::CUDA come from a process-wide caching allocator that the
// first backend registers (register_allocator); it lives until the process exits.
//
// Threads: calls into one backend must come from one thread at a time (the Backend rule).
// Every op is enqueued on the backend's stream and returns without waiting, except
// sum_squares, all_finite and copies to or from the host, which synchronise. Ranks: nothing
// here communicates (NCCL collectives use stream_of, core/kernels/cuda/cuda_stream.h).
//
// This header includes no CUDA header, so CPU-only code may include it freely; it is only
// compiled into loom_cuda, which exists when CMake found CUDA (LOOM_HAVE_CUDA=1).
#pragma once

#include <memory>
#include <string>

#include "core/backend.h"

namespace loom::cuda {

// The number of usable CUDA devices; 0 when there is no driver or no device.
int device_count() noexcept;

// "" when a device is usable, else why not, e.g.
// "cudaGetDeviceCount: no CUDA-capable device is detected".
std::string unavailable_reason();

// Sets `device` current on the calling thread and creates the backend's stream, cuBLASLt
// handle and workspace. Throws std::runtime_error when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(int device);

// Waits until every op enqueued on a CUDA backend has finished (timing, benchmarks); throws
// std::invalid_argument for another backend and std::runtime_error for a failed kernel.
void synchronize(Backend& backend);

// The device's name as the driver reports it ("NVIDIA H100 80GB HBM3"); "" when unknown.
std::string device_name(int device);

}  // namespace loom::cuda
