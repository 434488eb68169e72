// Comm: the collectives and point-to-point transfers that parallel layers, the pipeline
// schedule and the gradient reducer use, over one group of ranks. It lives in core/ so the
// tensor-parallel layers and schedules (core/parallel) can call it without knowing the
// transport; MpiComm (launch/mpi_comm.h) implements it for CPU tensors, and an NCCL
// implementation for CUDA tensors can satisfy the same contract.
//
// Contract for every call:
//   * Ranks are group-local (0 .. size()-1), not world ranks.
//   * Collectives are called by every rank of the group, in the same order, with tensors
//     of the same dtype and element count; buffers are contiguous (every loom Tensor is).
//   * Reductions sum. The result of all_reduce_sum is bit-identical on every rank.
//   * Layout for gather/scatter is rank-major over the flattened elements: all_gather's
//     `out` holds rank 0's `in`, then rank 1's, ...; reduce_scatter_sum gives rank i the sum
//     of chunk i of every rank's `in` (in.numel() == size() * out.numel()).
//   * A nonblocking call returns a Request; the tensors must stay alive and untouched until
//     wait() returns. A Request destroyed before wait() waits in its destructor, so
//     buffers are never released under an in-flight transfer.
//   * Failures throw std::invalid_argument (wrong shapes, dtypes, devices) or
//     std::runtime_error (the transport), with messages naming the call and sizes.
//
// Threads: a Comm is used from one thread at a time (MPI_THREAD_FUNNELED).
#pragma once

#include <memory>
#include <span>

#include "core/tensor.h"

namespace loom {

// One in-flight transfer, implemented by each transport.
class PendingTransfer {
 public:
  virtual ~PendingTransfer() = default;
  virtual void wait() = 0;  // blocks until complete; throws on transport failure
  virtual bool test() = 0;  // true when complete (then wait() returns at once)
};

// Handle for a nonblocking operation; movable, not copyable.
class Request {
 public:
  Request() = default;
  explicit Request(std::unique_ptr<PendingTransfer> pending) : pending_(std::move(pending)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept {
    if (this != &other) {
      finish_quietly();
      pending_ = std::move(other.pending_);
    }
    return *this;
  }
  ~Request() { finish_quietly(); }

  // Idempotent: a finished (or empty) Request returns at once.
  void wait() {
    if (!pending_) return;
    auto pending = std::move(pending_);
    pending->wait();
  }
  bool done() {
    if (!pending_) return true;
    if (!pending_->test()) return false;
    pending_.reset();
    return true;
  }

 private:
  void finish_quietly() noexcept {
    try {
      wait();
    } catch (...) {
      // A destructor cannot report; the failure resurfaces at the next collective.
    }
  }
  std::unique_ptr<PendingTransfer> pending_;
};

enum class ReduceOp { Sum, Max };

class Comm {
 public:
  virtual ~Comm() = default;

  virtual int size() const = 0;
  virtual int rank() const = 0;

  virtual void barrier() = 0;
  virtual void all_reduce_sum(Tensor& tensor) = 0;                         // f32, i32
  virtual void reduce_scatter_sum(const Tensor& in, Tensor& out) = 0;      // f32, i32
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;              // any dtype
  virtual void broadcast(Tensor& tensor, int root) = 0;                    // any dtype
  virtual void send(const Tensor& tensor, int peer, int tag) = 0;          // any dtype
  virtual void recv(Tensor& tensor, int peer, int tag) = 0;                // any dtype

  // A few host scalars (loss sums, token counts, stop flags) reduced in f64 in place; the
  // result is identical on every rank.
  virtual void all_reduce_host(std::span<double> values, ReduceOp op) = 0;

  virtual Request all_reduce_sum_async(Tensor& tensor) = 0;
  virtual Request reduce_scatter_sum_async(const Tensor& in, Tensor& out) = 0;
  virtual Request all_gather_async(const Tensor& in, Tensor& out) = 0;
  virtual Request broadcast_async(Tensor& tensor, int root) = 0;
  virtual Request send_async(const Tensor& tensor, int peer, int tag) = 0;
  virtual Request recv_async(Tensor& tensor, int peer, int tag) = 0;
};

}  // namespace loom
