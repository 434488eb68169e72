// CachingAllocator: the process-wide allocator behind Tensor::empty(..., Device::CUDA).
//
// cudaMalloc and cudaFree synchronise the device and take tens of microseconds, far too
// slow for the activations and scratch buffers a training step allocates and drops. Freed
// blocks are kept in per-(device, size class) free lists and handed out again; when
// cudaMalloc runs out of memory the cache is emptied (after a device synchronisation) and
// the allocation retried once.
//
// Stream order: a freed block may still be in use by kernels queued on the backend's stream;
// reusing it for later work on that same stream is safe because the stream runs in order.
// Work queued on any other stream must be ordered after the backend's stream (an event)
// before the tensors it touches are dropped.
//
// Ownership: one instance, created by the first make_cuda_backend and never destroyed (a
// Tensor's deleter refers to it, and tensors may outlive every backend). Threads: safe; a
// mutex guards the free lists.
#pragma once

#include <cstddef>

#include "core/tensor.h"

namespace loom::cuda {

// Registers the caching allocator for Device::CUDA (once; later calls do nothing).
void register_caching_allocator();

// Frees every cached block back to the driver (a device synchronisation first). Tensors
// still alive are untouched.
void release_cached_blocks();

}  // namespace loom::cuda
