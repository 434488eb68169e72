// MpiComm: the Comm contract (core/comm.h) over an MPI communicator, for CPU tensors.
// Reductions support f32, i32 and bf16 (MPI has no bf16 type: a user-defined op adds pairs
// in f32 and rounds each sum to bf16, as NCCL does); gathers, broadcasts and point-to-point
// transfers move any dtype as raw elements.
//
// Ownership: an MpiComm made from ProcessGroups holds a copy of them, so the communicator
// stays valid as long as the MpiComm lives. One made from a raw MPI_Comm does not own it.
// Determinism: all_reduce_sum is one MPI_Allreduce on one communicator, which yields the
// same bits on every rank; tests/dist checks this with random floats.
// Threads: main thread only (MPI_THREAD_FUNNELED).
#pragma once

#include <mpi.h>

#include "core/comm.h"
#include "launch/process_groups.h"

namespace loom::launch {

class MpiComm final : public Comm {
 public:
  MpiComm(const ProcessGroups& groups, GroupAxis axis);
  // Not owned: the caller keeps `comm` valid for this object's lifetime.
  explicit MpiComm(MPI_Comm comm);

  int size() const override { return size_; }
  int rank() const override { return rank_; }
  MPI_Comm handle() const { return comm_; }

  void barrier() override;
  void all_reduce_sum(Tensor& tensor) override;
  void all_reduce_host(std::span<double> values, ReduceOp op) override;
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  void broadcast(Tensor& tensor, int root) override;
  void send(const Tensor& tensor, int peer, int tag) override;
  void recv(Tensor& tensor, int peer, int tag) override;

  Request all_reduce_sum_async(Tensor& tensor) override;
  Request reduce_scatter_sum_async(const Tensor& in, Tensor& out) override;
  Request all_gather_async(const Tensor& in, Tensor& out) override;
  Request broadcast_async(Tensor& tensor, int root) override;
  Request send_async(const Tensor& tensor, int peer, int tag) override;
  Request recv_async(Tensor& tensor, int peer, int tag) override;

 private:
  void check_peer(const char* call, int peer) const;

  ProcessGroups keep_alive_;  // default-constructed (empty) for a raw communicator
  MPI_Comm comm_ = MPI_COMM_NULL;
  int size_ = 1, rank_ = 0;
};

}  // namespace loom::launch
