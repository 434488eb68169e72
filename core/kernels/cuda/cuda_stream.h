// The CUDA stream of a CUDA backend, for code that enqueues its own work in order with the
// backend's ops (NCCL collectives, asynchronous copies). Kept apart from cuda_backend.h so
// that only code which already uses the CUDA runtime sees cuda_runtime.h.
//
// The stream belongs to the backend and dies with it. Work on another stream that touches
// backend tensors must be ordered against this one (events), because the caching allocator
// reuses freed blocks in this stream's order.
#pragma once

#include <cuda_runtime.h>

#include "core/backend.h"

namespace loom::cuda {

// The stream every op of `backend` runs on. Throws std::invalid_argument when `backend` is
// not a CUDA backend.
cudaStream_t stream_of(Backend& backend);

}  // namespace loom::cuda
