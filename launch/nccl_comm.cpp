#include "launch/nccl_comm.h"

#include <nccl.h>

#include <array>
#include <chrono>
#include <memory>
#include <source_location>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "launch/cuda_device.h"
#include "launch/mpi_runtime.h"

namespace loom::launch {

// The NCCL communicators and their streams, one per lane: collectives, transfers to higher
// ranks ("up") and transfers to lower ranks ("down"). Groups of one rank have only the
// collective lane.
namespace detail {
struct NcclState {
  int device = 0;
  std::array<ncclComm_t, 3> comms{};
  std::array<cudaStream_t, 3> streams{};
  cudaEvent_t input_ready = nullptr;  // recorded on the compute stream at each call

  NcclState() = default;
  NcclState(const NcclState&) = delete;
  NcclState& operator=(const NcclState&) = delete;
  ~NcclState() {
    for (ncclComm_t comm : comms) {
      if (comm == nullptr) continue;
      ncclResult_t pending = ncclSuccess;
      // Destroying a communicator with a failed peer would wait forever for its kernels.
      if (ncclCommGetAsyncError(comm, &pending) != ncclSuccess || pending != ncclSuccess) {
        ncclCommAbort(comm);
      } else {
        ncclCommDestroy(comm);
      }
    }
    for (cudaStream_t stream : streams) {
      if (stream != nullptr) cudaStreamDestroy(stream);
    }
    if (input_ready != nullptr) cudaEventDestroy(input_ready);
  }
};
}  // namespace detail

namespace {

using detail::NcclState;

enum Lane : int { kCollective = 0, kUp = 1, kDown = 2 };

// What a call was doing, for error messages: "NcclComm::all_reduce_sum: ncclAllReduce of
// 37 f32 elements over 4 ranks".
struct OpInfo {
  const char* call;
  const char* nccl_function;
  std::int64_t count;
  DType dtype;
  int ranks;
  int peer = -1;  // root or peer, where the call has one
};

std::string describe(const OpInfo& op) {
  std::string text = std::string("NcclComm::") + op.call + ": " + op.nccl_function + " of " +
                     std::to_string(op.count) + " " + dtype_name(op.dtype) + " elements over " +
                     std::to_string(op.ranks) + " ranks";
  if (op.peer >= 0) text += " (peer/root " + std::to_string(op.peer) + ")";
  return text;
}

const char* hint_for(ncclResult_t result) {
  switch (result) {
    case ncclUnhandledCudaError:
      return "a CUDA call inside NCCL failed: out of GPU memory, or a pointer that is not on this rank's GPU";
    case ncclSystemError:
      return "a system or network call failed; rerun with NCCL_DEBUG=WARN for the details";
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return "every rank must make the same calls in the same order with the same counts, one rank per GPU";
    case ncclRemoteError:
      return "a peer rank failed or lost its connection; look for the first error in the other ranks' logs";
    default:
      return "rerun with NCCL_DEBUG=WARN for the details";
  }
}

void nccl_check(ncclResult_t result, ncclComm_t comm, const std::string& what,
                std::source_location where = std::source_location::current()) {
  if (result == ncclSuccess) return;
  const char* last = ncclGetLastError(comm);
  throw std::runtime_error(what + " failed at " + where.file_name() + ":" + std::to_string(where.line()) + ": " +
                           ncclGetErrorString(result) + (last != nullptr && *last ? std::string(" (") + last + ")" : "") +
                           "; " + hint_for(result));
}

// Throws when NCCL has recorded an asynchronous failure (a peer died, the network broke)
// on `comm`; its kernels may then never finish, so waiting must stop.
void check_async(ncclComm_t comm, const std::string& what) {
  ncclResult_t pending = ncclSuccess;
  nccl_check(ncclCommGetAsyncError(comm, &pending), comm, what + ": ncclCommGetAsyncError");
  if (pending != ncclSuccess) {
    nccl_check(pending, comm, what + " (asynchronous error; the communicator is aborted when the NcclComm goes)");
  }
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
    case DType::I8: return ncclInt8;
  }
  throw std::invalid_argument("NcclComm: unknown dtype");
}

void check_cuda_tensor(const char* call, const Tensor& tensor) {
  if (!tensor.defined()) throw std::invalid_argument(std::string("NcclComm::") + call + ": tensor is undefined");
  if (tensor.device() != Device::CUDA) {
    throw std::invalid_argument(std::string("NcclComm::") + call + ": tensor " + tensor.describe() + " is on the " +
                                device_name(tensor.device()) +
                                "; NcclComm moves GPU memory only (use MpiComm for CPU tensors)");
  }
}

void check_summable(const char* call, const Tensor& tensor) {
  check_cuda_tensor(call, tensor);
  if (tensor.dtype() != DType::F32 && tensor.dtype() != DType::BF16 && tensor.dtype() != DType::I32) {
    throw std::invalid_argument(std::string("NcclComm::") + call + ": cannot sum " + tensor.describe() +
                                "; sums take f32, bf16 or i32");
  }
}

// `big` holds group size x `small` elements of the same dtype.
void check_scatter_shapes(const char* call, const Tensor& big, const Tensor& small, int size) {
  check_cuda_tensor(call, big);
  check_cuda_tensor(call, small);
  if (big.dtype() != small.dtype()) {
    throw std::invalid_argument(std::string("NcclComm::") + call + ": dtypes differ (" + big.describe() + " vs " +
                                small.describe() + ")");
  }
  if (big.numel() != small.numel() * size) {
    throw std::invalid_argument(std::string("NcclComm::") + call + ": the full tensor " + big.describe() +
                                " must hold group size " + std::to_string(size) + " x the shard " + small.describe());
  }
}

// One enqueued NCCL operation: the event recorded after it on its lane's stream, and the
// tensors (and NCCL state) that must outlive it.
class NcclPending final : public PendingTransfer {
 public:
  NcclPending(std::shared_ptr<NcclState> state, Lane lane, std::string what, Tensor first, Tensor second)
      : state_(std::move(state)), lane_(lane), what_(std::move(what)), first_(std::move(first)),
        second_(std::move(second)) {
    cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  ~NcclPending() override {
    // Request waits before destroying; if that wait threw, the event is released once the
    // (aborted) work completes.
    if (done_ != nullptr) cudaEventDestroy(done_);
  }
  NcclPending(const NcclPending&) = delete;
  NcclPending& operator=(const NcclPending&) = delete;

  void record() { cuda_check(cudaEventRecord(done_, state_->streams[lane_]), "cudaEventRecord"); }

  // Polls instead of cudaEventSynchronize: a kernel waiting on a dead peer never
  // finishes, and only ncclCommGetAsyncError says so.
  void wait() override {
    constexpr int kSpinPolls = 2000;
    for (int polls = 0; !test(); ++polls) {
      if (polls >= kSpinPolls) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  bool test() override {
    const cudaError_t status = cudaEventQuery(done_);
    if (status == cudaSuccess) return true;
    if (status != cudaErrorNotReady) cuda_check(status, "cudaEventQuery");
    check_async(state_->comms[lane_], what_);
    return false;
  }

 private:
  std::shared_ptr<NcclState> state_;
  Lane lane_;
  std::string what_;
  Tensor first_, second_;
  cudaEvent_t done_ = nullptr;
};

// Makes `lane` wait for the compute stream's work so far, enqueues `launch` on it and
// returns the Request that completes with it.
template <typename Launch>
Request enqueue(const std::shared_ptr<NcclState>& state, cudaStream_t compute_stream, Lane lane, const OpInfo& op,
                Launch&& launch, Tensor first, Tensor second = Tensor()) {
  NcclState& s = *state;
  cuda_check(cudaEventRecord(s.input_ready, compute_stream), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(s.streams[lane], s.input_ready, 0), "cudaStreamWaitEvent");
  std::string what = describe(op);
  auto pending = std::make_unique<NcclPending>(state, lane, what, std::move(first), std::move(second));
  nccl_check(launch(s.comms[lane], s.streams[lane]), s.comms[lane], what);
  pending->record();
  return Request(std::move(pending));
}

// Opens every point-to-point connection now, in one group per lane, so that no later send
// or recv has to wait on the host for its peer to join a connection handshake.
void connect_all_pairs(NcclState& s, int rank, int size) {
  void* raw = nullptr;
  cuda_check(cudaMalloc(&raw, static_cast<std::size_t>(size)), "cudaMalloc");
  std::unique_ptr<void, decltype(&cudaFree)> bytes(raw, &cudaFree);
  cuda_check(cudaMemset(raw, 0, static_cast<std::size_t>(size)), "cudaMemset");
  const std::string what = "NcclComm: connecting the " + std::to_string(size) + " ranks point-to-point";
  for (Lane lane : {kUp, kDown}) {
    ncclComm_t comm = s.comms[lane];
    nccl_check(ncclGroupStart(), comm, what + ": ncclGroupStart");
    ncclResult_t first_error = ncclSuccess;
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      void* byte = static_cast<char*>(raw) + peer;
      const bool sends = (lane == kUp) == (peer > rank);
      const ncclResult_t result = sends ? ncclSend(byte, 1, ncclInt8, peer, comm, s.streams[lane])
                                        : ncclRecv(byte, 1, ncclInt8, peer, comm, s.streams[lane]);
      if (first_error == ncclSuccess) first_error = result;
    }
    const ncclResult_t end = ncclGroupEnd();
    nccl_check(first_error != ncclSuccess ? first_error : end, comm, what);
  }
  for (Lane lane : {kUp, kDown}) cuda_check(cudaStreamSynchronize(s.streams[lane]), "cudaStreamSynchronize");
}

// Rank 0 makes the ids and broadcasts them with a success flag, so a failure there becomes
// an exception on every rank rather than a hang in MPI_Bcast.
std::array<ncclUniqueId, 3> share_unique_ids(MPI_Comm group, int rank, int lanes) {
  struct Message {
    int ok = 1;
    std::array<ncclUniqueId, 3> ids{};
  } message;
  std::string failure;
  if (rank == 0) {
    try {
      for (int lane = 0; lane < lanes; ++lane) {
        nccl_check(ncclGetUniqueId(&message.ids[static_cast<std::size_t>(lane)]), nullptr, "NcclComm: ncclGetUniqueId");
      }
    } catch (const std::runtime_error& error) {
      message.ok = 0;
      failure = error.what();
    }
  }
  MPI_CHECK(MPI_Bcast(&message, static_cast<int>(sizeof(message)), MPI_BYTE, 0, group));
  if (message.ok == 0) {
    throw std::runtime_error(rank == 0 ? failure
                                       : "NcclComm: group rank 0 could not create the NCCL unique id (see its error)");
  }
  return message.ids;
}

}  // namespace

NcclComm::NcclComm(const ProcessGroups& groups, GroupAxis axis, cudaStream_t compute_stream)
    : NcclComm(MpiComm(groups, axis), compute_stream) {}

NcclComm::NcclComm(MPI_Comm group, cudaStream_t compute_stream) : NcclComm(MpiComm(group), compute_stream) {}

NcclComm::NcclComm(MpiComm host, cudaStream_t compute_stream)
    : host_(std::move(host)), compute_stream_(compute_stream), state_(std::make_shared<NcclState>()) {
  NcclState& s = *state_;
  cuda_check(cudaGetDevice(&s.device), "cudaGetDevice");
  const int lanes = size() > 1 ? 3 : 1;
  const std::array<ncclUniqueId, 3> ids = share_unique_ids(mpi_handle(), rank(), lanes);
  int least_priority = 0, greatest_priority = 0;
  cuda_check(cudaDeviceGetStreamPriorityRange(&least_priority, &greatest_priority), "cudaDeviceGetStreamPriorityRange");
  cuda_check(cudaEventCreateWithFlags(&s.input_ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  for (int lane = 0; lane < lanes; ++lane) {
    const auto at = static_cast<std::size_t>(lane);
    // High priority: a collective's kernels get SMs ahead of queued compute kernels.
    cuda_check(cudaStreamCreateWithPriority(&s.streams[at], cudaStreamNonBlocking, greatest_priority),
               "cudaStreamCreateWithPriority");
    nccl_check(ncclCommInitRank(&s.comms[at], size(), ids[at], rank()), nullptr,
               "NcclComm: ncclCommInitRank(rank " + std::to_string(rank()) + " of " + std::to_string(size()) +
                   ", device " + std::to_string(s.device) + ")");
  }
  if (lanes > 1) connect_all_pairs(s, rank(), size());
}

NcclComm::~NcclComm() = default;

int NcclComm::device() const { return state_->device; }

void NcclComm::check_peer(const char* call, int peer, int tag) const {
  if (peer < 0 || peer >= size() || peer == rank()) {
    throw std::invalid_argument(std::string("NcclComm::") + call + ": peer " + std::to_string(peer) +
                                " is not another rank of this group of " + std::to_string(size()) + " (this is rank " +
                                std::to_string(rank()) + "; ranks are group-local and NCCL cannot send to itself)");
  }
  if (tag < 0) {
    throw std::invalid_argument(std::string("NcclComm::") + call + ": tag " + std::to_string(tag) +
                                " is negative (tags are not used by NCCL, but must be valid MPI tags)");
  }
}

void NcclComm::barrier() {
  for (cudaStream_t stream : state_->streams) {
    if (stream != nullptr) cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
  host_.barrier();
}

void NcclComm::all_reduce_host(std::span<double> values, ReduceOp op) { host_.all_reduce_host(values, op); }

Request NcclComm::start_all_reduce(const char* call, Tensor& tensor) {
  check_summable(call, tensor);
  const OpInfo op{call, "ncclAllReduce", tensor.numel(), tensor.dtype(), size()};
  void* data = tensor.raw();
  return enqueue(state_, compute_stream_, kCollective, op, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(data, data, static_cast<std::size_t>(op.count), nccl_type(op.dtype), ncclSum, comm, stream);
  }, tensor);
}

Request NcclComm::start_reduce_scatter(const char* call, const Tensor& in, Tensor& out) {
  check_summable(call, in);
  check_scatter_shapes(call, in, out, size());
  const OpInfo op{call, "ncclReduceScatter", out.numel(), out.dtype(), size()};
  return enqueue(state_, compute_stream_, kCollective, op, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclReduceScatter(in.raw(), out.raw(), static_cast<std::size_t>(op.count), nccl_type(op.dtype), ncclSum,
                             comm, stream);
  }, in, out);
}

Request NcclComm::start_all_gather(const char* call, const Tensor& in, Tensor& out) {
  check_scatter_shapes(call, out, in, size());
  const OpInfo op{call, "ncclAllGather", in.numel(), in.dtype(), size()};
  return enqueue(state_, compute_stream_, kCollective, op, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllGather(in.raw(), out.raw(), static_cast<std::size_t>(op.count), nccl_type(op.dtype), comm, stream);
  }, in, out);
}

Request NcclComm::start_broadcast(const char* call, Tensor& tensor, int root) {
  check_cuda_tensor(call, tensor);
  if (root < 0 || root >= size()) {
    throw std::invalid_argument(std::string("NcclComm::") + call + ": root " + std::to_string(root) +
                                " is outside this group of " + std::to_string(size()) + " (ranks are group-local)");
  }
  const OpInfo op{call, "ncclBroadcast", tensor.numel(), tensor.dtype(), size(), root};
  void* data = tensor.raw();
  return enqueue(state_, compute_stream_, kCollective, op, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclBroadcast(data, data, static_cast<std::size_t>(op.count), nccl_type(op.dtype), root, comm, stream);
  }, tensor);
}

Request NcclComm::start_send(const char* call, const Tensor& tensor, int peer, int tag) {
  check_cuda_tensor(call, tensor);
  check_peer(call, peer, tag);
  const OpInfo op{call, "ncclSend", tensor.numel(), tensor.dtype(), size(), peer};
  return enqueue(state_, compute_stream_, peer > rank() ? kUp : kDown, op, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclSend(tensor.raw(), static_cast<std::size_t>(op.count), nccl_type(op.dtype), peer, comm, stream);
  }, tensor);
}

Request NcclComm::start_recv(const char* call, Tensor& tensor, int peer, int tag) {
  check_cuda_tensor(call, tensor);
  check_peer(call, peer, tag);
  const OpInfo op{call, "ncclRecv", tensor.numel(), tensor.dtype(), size(), peer};
  void* data = tensor.raw();
  // A transfer from a lower rank travels on the "up" lane of both ends.
  return enqueue(state_, compute_stream_, peer < rank() ? kUp : kDown, op, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclRecv(data, static_cast<std::size_t>(op.count), nccl_type(op.dtype), peer, comm, stream);
  }, tensor);
}

void NcclComm::all_reduce_sum(Tensor& tensor) { start_all_reduce("all_reduce_sum", tensor).wait(); }
void NcclComm::reduce_scatter_sum(const Tensor& in, Tensor& out) {
  start_reduce_scatter("reduce_scatter_sum", in, out).wait();
}
void NcclComm::all_gather(const Tensor& in, Tensor& out) { start_all_gather("all_gather", in, out).wait(); }
void NcclComm::broadcast(Tensor& tensor, int root) { start_broadcast("broadcast", tensor, root).wait(); }
void NcclComm::send(const Tensor& tensor, int peer, int tag) { start_send("send", tensor, peer, tag).wait(); }
void NcclComm::recv(Tensor& tensor, int peer, int tag) { start_recv("recv", tensor, peer, tag).wait(); }

Request NcclComm::all_reduce_sum_async(Tensor& tensor) { return start_all_reduce("all_reduce_sum_async", tensor); }
Request NcclComm::reduce_scatter_sum_async(const Tensor& in, Tensor& out) {
  return start_reduce_scatter("reduce_scatter_sum_async", in, out);
}
Request NcclComm::all_gather_async(const Tensor& in, Tensor& out) {
  return start_all_gather("all_gather_async", in, out);
}
Request NcclComm::broadcast_async(Tensor& tensor, int root) { return start_broadcast("broadcast_async", tensor, root); }
Request NcclComm::send_async(const Tensor& tensor, int peer, int tag) {
  return start_send("send_async", tensor, peer, tag);
}
Request NcclComm::recv_async(Tensor& tensor, int peer, int tag) { return start_recv("recv_async", tensor, peer, tag); }

}  // namespace loom::launch
