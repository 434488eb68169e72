// Moving a tensor across the host/device boundary of a Backend without paying for it on the
// CPU: to_backend and to_host hand the tensor itself back when it already lives where it is
// needed (every call on the CPU backend), and otherwise copy it into a caller-owned buffer
// that is (re)allocated only when the shape or dtype changes, so a training loop reuses one
// device buffer per role instead of allocating every step.
//
// Host tensors built by the data pipeline (ids, targets, masks, per-token weights) reach a
// GPU backend through to_backend; losses, log-probs, values and logits read by host code
// come back through to_host. Copies to or from the host synchronise the backend's stream
// (docs/cuda.md), so the source may be overwritten as soon as the call returns.
//
// Ownership: the returned reference is either `t` or `buffer`; both must outlive its use.
// Threads: the backend's thread.
#pragma once

#include "core/backend.h"

namespace loom {

// `buffer` shaped and typed as `t` on `device`, reallocated only when it cannot hold it.
inline Tensor& fit_buffer(Tensor& buffer, const Tensor& t, Device device) {
  if (buffer.defined() && buffer.device() == device && buffer.dtype() == t.dtype() &&
      buffer.numel() == t.numel()) {
    if (buffer.shape() != t.shape()) buffer = buffer.reshape(t.shape());
    return buffer;
  }
  buffer = Tensor::empty(t.shape(), t.dtype(), device);
  return buffer;
}

// `t` when it is on the backend's device, else a copy of it there in `buffer`.
inline const Tensor& to_backend(Backend& backend, const Tensor& t, Tensor& buffer) {
  if (t.device() == backend.device()) return t;
  backend.copy(t, fit_buffer(buffer, t, backend.device()));
  return buffer;
}

// `t` when it is in host memory, else a copy of it on the host in `buffer`.
inline const Tensor& to_host(Backend& backend, const Tensor& t, Tensor& buffer) {
  if (t.device() == Device::CPU) return t;
  backend.copy(t, fit_buffer(buffer, t, Device::CPU));
  return buffer;
}

}  // namespace loom
