#include "launch/mpi_comm.h"

#include <climits>
#include <stdexcept>
#include <string>
#include <utility>

#include "launch/mpi_runtime.h"

namespace loom::launch {
namespace {

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return MPI_FLOAT;
    case DType::I32: return MPI_INT32_T;
    case DType::BF16: return MPI_UINT16_T;  // raw bits; sums go through bf16_sum_op()
    case DType::I8: return MPI_INT8_T;
  }
  return MPI_DATATYPE_NULL;
}

// bf16 sums: each pairwise addition in f32, rounded to bf16 (what NCCL's bf16 sum does).
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const bf16*>(in);
  auto* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = to_bf16(from_bf16(a[i]) + from_bf16(b[i]));
}

// Created on first use (after MPI_Init) and kept until MPI_Finalize frees it.
MPI_Op bf16_sum_op() {
  static const MPI_Op op = [] {
    MPI_Op created;
    MPI_CHECK(MPI_Op_create(&bf16_sum, /*commute=*/1, &created));
    return created;
  }();
  return op;
}

MPI_Op sum_op(DType dtype) { return dtype == DType::BF16 ? bf16_sum_op() : MPI_SUM; }

void check_cpu(const char* call, const Tensor& tensor) {
  if (!tensor.defined()) throw std::invalid_argument(std::string("MpiComm::") + call + ": tensor is undefined");
  if (tensor.device() != Device::CPU) {
    throw std::invalid_argument(std::string("MpiComm::") + call + ": tensor " + tensor.describe() +
                                " is not on the CPU; MpiComm moves CPU memory only (use the NCCL comm for CUDA)");
  }
}

void check_reducible(const char* call, const Tensor& tensor) {
  check_cpu(call, tensor);
  if (tensor.dtype() == DType::I8) {
    throw std::invalid_argument(std::string("MpiComm::") + call + ": cannot sum " + tensor.describe() +
                                "; reductions take f32, bf16 or i32");
  }
}

int mpi_count(const char* call, std::int64_t count) {
  if (count > INT_MAX) {
    throw std::invalid_argument(std::string("MpiComm::") + call + ": " + std::to_string(count) +
                                " elements exceed MPI's int count; split the tensor into buckets");
  }
  return static_cast<int>(count);
}

// Checks that `in` and `out` differ by a factor of `size` in element count, with one dtype.
void check_scatter_shapes(const char* call, const Tensor& big, const Tensor& small, int size) {
  check_cpu(call, big);
  check_cpu(call, small);
  if (big.dtype() != small.dtype()) {
    throw std::invalid_argument(std::string("MpiComm::") + call + ": dtypes differ (" + big.describe() +
                                " vs " + small.describe() + ")");
  }
  if (big.numel() != small.numel() * size) {
    throw std::invalid_argument(std::string("MpiComm::") + call + ": the full tensor " + big.describe() +
                                " must hold group size " + std::to_string(size) + " x the shard " +
                                small.describe());
  }
}

// An MPI_Request plus the tensors whose storage must outlive it (Tensor copies share storage).
class MpiPending final : public PendingTransfer {
 public:
  MpiPending(MPI_Request request, Tensor first, Tensor second = Tensor())
      : request_(request), first_(std::move(first)), second_(std::move(second)) {}
  ~MpiPending() override {
    if (request_ != MPI_REQUEST_NULL && mpi_active()) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  void wait() override { MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE)); }
  bool test() override {
    int flag = 0;
    MPI_CHECK(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE));
    return flag != 0;
  }

 private:
  MPI_Request request_;
  Tensor first_, second_;
};

Request make_request(MPI_Request request, Tensor first, Tensor second = Tensor()) {
  return Request(std::make_unique<MpiPending>(request, std::move(first), std::move(second)));
}

}  // namespace

MpiComm::MpiComm(const ProcessGroups& groups, GroupAxis axis)
    : keep_alive_(groups), comm_(groups.comm(axis)), size_(groups.size(axis)), rank_(groups.rank(axis)) {}

MpiComm::MpiComm(MPI_Comm comm) : comm_(comm) {
  if (!mpi_active()) throw std::runtime_error("MpiComm: MPI is not initialised; create an MpiRuntime first");
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
}

void MpiComm::check_peer(const char* call, int peer) const {
  if (peer < 0 || peer >= size_) {
    throw std::invalid_argument(std::string("MpiComm::") + call + ": rank " + std::to_string(peer) +
                                " is outside this group of " + std::to_string(size_) +
                                " (ranks are group-local)");
  }
}

void MpiComm::barrier() { MPI_CHECK(MPI_Barrier(comm_)); }

void MpiComm::all_reduce_sum(Tensor& tensor) {
  check_reducible("all_reduce_sum", tensor);
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, tensor.raw(), mpi_count("all_reduce_sum", tensor.numel()),
                          mpi_type(tensor.dtype()), sum_op(tensor.dtype()), comm_));
}

void MpiComm::all_reduce_host(std::span<double> values, ReduceOp op) {
  if (values.empty()) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data(), mpi_count("all_reduce_host", static_cast<std::int64_t>(values.size())),
                          MPI_DOUBLE, op == ReduceOp::Max ? MPI_MAX : MPI_SUM, comm_));
}

void MpiComm::reduce_scatter_sum(const Tensor& in, Tensor& out) {
  check_reducible("reduce_scatter_sum", in);
  check_scatter_shapes("reduce_scatter_sum", in, out, size_);
  MPI_CHECK(MPI_Reduce_scatter_block(in.raw(), out.raw(), mpi_count("reduce_scatter_sum", out.numel()),
                                     mpi_type(in.dtype()), sum_op(in.dtype()), comm_));
}

void MpiComm::all_gather(const Tensor& in, Tensor& out) {
  check_scatter_shapes("all_gather", out, in, size_);
  MPI_Datatype type = mpi_type(in.dtype());
  MPI_CHECK(MPI_Allgather(in.raw(), mpi_count("all_gather", in.numel()), type, out.raw(),
                          mpi_count("all_gather", in.numel()), type, comm_));
}

void MpiComm::broadcast(Tensor& tensor, int root) {
  check_cpu("broadcast", tensor);
  check_peer("broadcast", root);
  MPI_CHECK(MPI_Bcast(tensor.raw(), mpi_count("broadcast", tensor.numel()), mpi_type(tensor.dtype()), root, comm_));
}

void MpiComm::send(const Tensor& tensor, int peer, int tag) {
  check_cpu("send", tensor);
  check_peer("send", peer);
  MPI_CHECK(MPI_Send(tensor.raw(), mpi_count("send", tensor.numel()), mpi_type(tensor.dtype()), peer, tag, comm_));
}

void MpiComm::recv(Tensor& tensor, int peer, int tag) {
  check_cpu("recv", tensor);
  check_peer("recv", peer);
  MPI_CHECK(MPI_Recv(tensor.raw(), mpi_count("recv", tensor.numel()), mpi_type(tensor.dtype()), peer, tag,
                     comm_, MPI_STATUS_IGNORE));
}

Request MpiComm::all_reduce_sum_async(Tensor& tensor) {
  check_reducible("all_reduce_sum_async", tensor);
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, tensor.raw(), mpi_count("all_reduce_sum_async", tensor.numel()),
                           mpi_type(tensor.dtype()), sum_op(tensor.dtype()), comm_, &request));
  return make_request(request, tensor);
}

Request MpiComm::reduce_scatter_sum_async(const Tensor& in, Tensor& out) {
  check_reducible("reduce_scatter_sum_async", in);
  check_scatter_shapes("reduce_scatter_sum_async", in, out, size_);
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ireduce_scatter_block(in.raw(), out.raw(), mpi_count("reduce_scatter_sum_async", out.numel()),
                                      mpi_type(in.dtype()), sum_op(in.dtype()), comm_, &request));
  return make_request(request, in, out);
}

Request MpiComm::all_gather_async(const Tensor& in, Tensor& out) {
  check_scatter_shapes("all_gather_async", out, in, size_);
  MPI_Datatype type = mpi_type(in.dtype());
  const int count = mpi_count("all_gather_async", in.numel());
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Iallgather(in.raw(), count, type, out.raw(), count, type, comm_, &request));
  return make_request(request, in, out);
}

Request MpiComm::broadcast_async(Tensor& tensor, int root) {
  check_cpu("broadcast_async", tensor);
  check_peer("broadcast_async", root);
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ibcast(tensor.raw(), mpi_count("broadcast_async", tensor.numel()), mpi_type(tensor.dtype()), root,
                       comm_, &request));
  return make_request(request, tensor);
}

Request MpiComm::send_async(const Tensor& tensor, int peer, int tag) {
  check_cpu("send_async", tensor);
  check_peer("send_async", peer);
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Isend(tensor.raw(), mpi_count("send_async", tensor.numel()), mpi_type(tensor.dtype()), peer, tag,
                      comm_, &request));
  return make_request(request, tensor);
}

Request MpiComm::recv_async(Tensor& tensor, int peer, int tag) {
  check_cpu("recv_async", tensor);
  check_peer("recv_async", peer);
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Irecv(tensor.raw(), mpi_count("recv_async", tensor.numel()), mpi_type(tensor.dtype()), peer, tag,
                      comm_, &request));
  return make_request(request, tensor);
}

}  // namespace loom::launch
