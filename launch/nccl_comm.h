// NcclComm: the Comm contract (core/comm.h) over NCCL, for tensors in GPU memory.
//
// Construction is collective over the group's MPI communicator: group rank 0 makes the
// NCCL unique ids, MPI_Bcast's them, and every rank joins with ncclCommInitRank on the
// device that is current when the constructor runs (select_cuda_device in
// launch/cuda_device.h picks it; one rank per GPU, NCCL refuses two). The MPI
// communicator is kept for all_reduce_host (host scalars, MPI_Allreduce in f64 as MpiComm)
// and barrier.
//
// Dtypes: every tensor must be on Device::CUDA. Sums (all_reduce_sum, reduce_scatter_sum)
// take f32, bf16 and i32 (NCCL adds bf16 in bf16; accumulate gradients in f32 where that
// matters); all_gather, broadcast, send and recv take any loom dtype. Anything else throws
// std::invalid_argument naming the call, the tensor and its device or dtype.
//
// Streams and ordering. The comm owns its streams (high priority, non-blocking): one for
// collectives and one per direction of point-to-point traffic. Each call records an event
// on the caller's compute stream (given at construction) and makes the comm stream wait
// for it, so the transfer sees every kernel the caller launched before the call, while
// compute launched after it overlaps the transfer. wait() on the returned Request blocks
// the host until the transfer is done, after which the caller may reuse the buffers and
// launch kernels that read them. The blocking calls are the async call plus wait().
//
// Point-to-point: NCCL has no tags; `tag` is checked to be non-negative and otherwise
// ignored. What pairs a send with a recv is the order of calls between the two ranks in
// that direction, as in MPI with a single tag. loom's pipeline (core/parallel/pipeline.cpp)
// sends only activations forward and only gradients backward, each in micro-batch order,
// so its tags never reorder anything. NCCL's send and recv block the GPU until the peer
// joins, so a send to the next stage queued ahead of a recv from it would deadlock the 1F1B
// schedule on one stream; transfers to higher ranks therefore use their own NCCL
// communicator and stream, and transfers to lower ranks another. The constructor connects
// every pair of ranks in both directions (a few MiB of GPU buffers per peer), because
// NCCL's lazy connection would otherwise make the first send block the host until its peer
// posts the matching recv (a ring of sends issued before the recvs would hang). A rank
// cannot send to itself.
//
// Determinism: all_reduce_sum leaves the same bits on every rank (ring and tree
// all-reduce both finish by distributing one reduced copy), as the contract requires; the
// bits may differ from MPI's sum of the same floats, whose order of additions differs.
//
// Failures: an NCCL error throws std::runtime_error naming the call, the element count
// and dtype, ncclGetErrorString and ncclGetLastError. wait() polls the event and
// ncclCommGetAsyncError, so a peer that died surfaces as an exception instead of a hang.
// The destructor calls ncclCommDestroy, or ncclCommAbort when an asynchronous error is
// pending; a Request still alive keeps the NCCL communicators until it is finished.
//
// Ownership: made from ProcessGroups, it holds a copy of them (the MPI communicator stays
// valid); made from a raw MPI_Comm, the caller keeps that communicator alive. The compute
// stream is not owned and must outlive the comm.
// Threads: one thread, the one whose current device the comm was built on.
#pragma once

#include <cuda_runtime.h>
#include <mpi.h>

#include <memory>

#include "core/comm.h"
#include "launch/mpi_comm.h"
#include "launch/process_groups.h"

namespace loom::launch {

namespace detail {
struct NcclState;  // NCCL communicators, streams and events; shared with in-flight Requests
}

class NcclComm final : public Comm {
 public:
  // Collective over the group; every rank passes the stream its kernels run on.
  NcclComm(const ProcessGroups& groups, GroupAxis axis, cudaStream_t compute_stream);
  NcclComm(MPI_Comm group, cudaStream_t compute_stream);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int size() const override { return host_.size(); }
  int rank() const override { return host_.rank(); }
  MPI_Comm mpi_handle() const { return host_.handle(); }
  int device() const;  // the CUDA device the communicators were built on

  // Waits for this rank's transfers to finish, then MPI_Barrier over the group.
  void barrier() override;
  void all_reduce_sum(Tensor& tensor) override;
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  void broadcast(Tensor& tensor, int root) override;
  void send(const Tensor& tensor, int peer, int tag) override;
  void recv(Tensor& tensor, int peer, int tag) override;
  void all_reduce_host(std::span<double> values, ReduceOp op) override;

  Request all_reduce_sum_async(Tensor& tensor) override;
  Request reduce_scatter_sum_async(const Tensor& in, Tensor& out) override;
  Request all_gather_async(const Tensor& in, Tensor& out) override;
  Request broadcast_async(Tensor& tensor, int root) override;
  Request send_async(const Tensor& tensor, int peer, int tag) override;
  Request recv_async(Tensor& tensor, int peer, int tag) override;

 private:
  NcclComm(MpiComm host, cudaStream_t compute_stream);
  // The async calls without their wait; `call` names the public call in error messages.
  Request start_all_reduce(const char* call, Tensor& tensor);
  Request start_reduce_scatter(const char* call, const Tensor& in, Tensor& out);
  Request start_all_gather(const char* call, const Tensor& in, Tensor& out);
  Request start_broadcast(const char* call, Tensor& tensor, int root);
  Request start_send(const char* call, const Tensor& tensor, int peer, int tag);
  Request start_recv(const char* call, Tensor& tensor, int peer, int tag);
  void check_peer(const char* call, int peer, int tag) const;

  MpiComm host_;
  cudaStream_t compute_stream_;
  std::shared_ptr<detail::NcclState> state_;
};

}  // namespace loom::launch
