// Pinned host copies of device-resident training state for an asynchronous checkpoint save,
// so the checkpoint and io/ code keep reading plain host memory and never depend on CUDA.
//
// At save time the Checkpointer calls begin(), stage() for each device buffer it saves
// (parameters, AdamW moments) and end(): on a GPU backend the copies are enqueued on a
// side stream, ordered after every kernel already queued on the backend's stream, into
// pinned (page-locked) host buffers kept from save to save, and an event marks their end;
// training goes on while they run. The saver thread calls wait() before it reads the host
// addresses stage() returned. The caller must not change the staged buffers until wait()
// has returned (the Checkpointer's before_update() guarantees it).
//
// make_device_staging returns nullptr for a CPU backend: the CPU path keeps saving from the
// live buffers through its own snapshot copy, exactly as before.
//
// Ownership: owns its pinned buffers, stream and event. Threads: begin/stage/end on the
// backend's thread, wait on any thread (the saver's).
#pragma once

#include <memory>

#include "core/backend.h"

namespace loom::train {

class DeviceStaging {
 public:
  virtual ~DeviceStaging() = default;
  // Starts a save: the copies that follow see every op queued on the backend so far.
  virtual void begin() = 0;
  // Enqueues a copy of the f32 device tensor `t` (the i-th of this save) and returns the
  // pinned host address that holds it once wait() has returned.
  virtual const float* stage(const Tensor& t) = 0;
  // Marks the end of this save's copies.
  virtual void end() = 0;
  // Blocks until every copy since begin() is in host memory.
  virtual void wait() = 0;
};

std::unique_ptr<DeviceStaging> make_device_staging(Backend& backend);

}  // namespace loom::train
