// NcclComm against MpiComm on the same host data, under mpirun with one rank per GPU
// (tests/gpu/run_nccl_test.sh picks the rank count; with one rank every collective still
// runs on a 1-rank communicator). Sums: integers equal MPI's exactly, floats within 1e-6
// of the sum of magnitudes, and the result is bit-identical on every rank; gathers,
// broadcasts and transfers are compared bit for bit. Also: inputs written on the compute
// stream just before an async call, several requests in flight at once, the two
// directions of a pipeline stage pair in flight together, and the error messages.
//
// Without a GPU it prints "test_nccl_comm: skipped: <reason>" and exits 77 (CTest: skipped).
// Every rank runs the same cases in the same order; checks never throw, so one rank's
// failure does not leave the others waiting in a collective. The exit status is the worst
// over the ranks.
#define BOOST_TEST_MODULE nccl_comm
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <cuda_runtime.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "launch/cuda_device.h"
#include "launch/mpi_comm.h"
#include "launch/mpi_runtime.h"
#include "launch/nccl_comm.h"

using namespace loom;
using namespace loom::launch;

namespace {

// Plain cudaMalloc/cudaFree, so Tensor::empty(..., Device::CUDA) works without the CUDA backend.
class CudaTestAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes) override {
    void* ptr = nullptr;
    cuda_check(cudaMalloc(&ptr, bytes == 0 ? 1 : bytes), "cudaMalloc");
    return ptr;
  }
  void deallocate(void* ptr) override { cudaFree(ptr); }
};

struct Setup {
  NcclComm* nccl = nullptr;
  MpiComm* mpi = nullptr;
  cudaStream_t compute = nullptr;
  int device = 0;
};
Setup g;

Tensor to_device(const Tensor& host) {
  Tensor device = Tensor::empty(host.shape(), host.dtype(), Device::CUDA);
  cuda_check(cudaMemcpy(device.raw(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice), "cudaMemcpy");
  return device;
}

Tensor to_host(const Tensor& device) {
  Tensor host = Tensor::empty(device.shape(), device.dtype());
  cuda_check(cudaMemcpy(host.raw(), device.raw(), device.nbytes(), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return host;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.numel() == b.numel() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// True when `tensor` holds the same bytes on every rank of the group.
bool identical_on_every_rank(const Tensor& tensor) {
  Tensor first = tensor.clone();
  g.mpi->broadcast(first, 0);
  double mismatch = same_bits(first, tensor) ? 0.0 : 1.0;
  g.mpi->all_reduce_host({&mismatch, 1}, ReduceOp::Max);
  return mismatch == 0.0;
}

// Random host data that differs per rank and per call site (`salt`).
Tensor random_host(std::int64_t n, DType dtype, int salt) {
  std::mt19937 rng(static_cast<unsigned>(1000 * salt + g.mpi->rank()));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_int_distribution<int> integer(-100000, 100000);
  Tensor t = Tensor::empty({n}, dtype);
  for (std::int64_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::F32: t.data<float>()[i] = uniform(rng); break;
      case DType::BF16: t.data<bf16>()[i] = to_bf16(uniform(rng)); break;
      case DType::I32: t.data<std::int32_t>()[i] = integer(rng); break;
      case DType::I8: t.data<std::int8_t>()[i] = static_cast<std::int8_t>(integer(rng) % 128); break;
    }
  }
  return t;
}

float as_float(const Tensor& t, std::int64_t i) {
  return t.dtype() == DType::BF16 ? from_bf16(t.data<bf16>()[i]) : t.data<float>()[i];
}

// Sums host floats (f32 or bf16) with MPI in f32, and their magnitudes, as the reference.
void mpi_float_sums(const Tensor& host, Tensor& sum, Tensor& magnitude) {
  sum = Tensor::empty(host.shape(), DType::F32);
  magnitude = Tensor::empty(host.shape(), DType::F32);
  for (std::int64_t i = 0; i < host.numel(); ++i) {
    sum.data<float>()[i] = as_float(host, i);
    magnitude.data<float>()[i] = std::fabs(as_float(host, i));
  }
  g.mpi->all_reduce_sum(sum);
  g.mpi->all_reduce_sum(magnitude);
}

// |got - MPI sum| <= rtol * sum of |x| over ranks, element by element.
void check_float_sum(const Tensor& host_in, const Tensor& got, double rtol, const std::string& what) {
  Tensor sum, magnitude;
  mpi_float_sums(host_in, sum, magnitude);
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < got.numel(); ++i) {
    const double error = std::fabs(double(as_float(got, i)) - double(sum.data<float>()[i]));
    if (error > rtol * double(magnitude.data<float>()[i]) + 1e-30) ++bad;
  }
  BOOST_CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << got.numel() << " elements differ from MPI's sum");
}

}  // namespace

BOOST_AUTO_TEST_CASE(device_description) {
  const std::string text = describe_cuda_device(g.device);
  BOOST_TEST_MESSAGE("rank " << g.nccl->rank() << ": " << text);
  BOOST_CHECK(text.find(", sm_") != std::string::npos);
  BOOST_CHECK(text.find(" GiB, bus ") != std::string::npos);
  BOOST_CHECK_EQUAL(g.nccl->device(), g.device);
  BOOST_CHECK_EQUAL(g.nccl->size(), g.mpi->size());
  BOOST_CHECK_EQUAL(g.nccl->rank(), g.mpi->rank());
}

BOOST_AUTO_TEST_CASE(all_reduce_f32_matches_mpi_and_is_identical_everywhere) {
  for (std::int64_t n : {std::int64_t(1037), std::int64_t(3 << 20) + 1}) {
    const Tensor host = random_host(n, DType::F32, 1);
    Tensor device = to_device(host);
    g.nccl->all_reduce_sum(device);
    const Tensor got = to_host(device);
    check_float_sum(host, got, 1e-6, "f32 all_reduce_sum n=" + std::to_string(n));
    BOOST_CHECK_MESSAGE(identical_on_every_rank(got), "f32 all_reduce_sum bits differ between ranks");
  }
}

BOOST_AUTO_TEST_CASE(all_reduce_i32_equals_mpi) {
  const Tensor host = random_host(4099, DType::I32, 2);
  Tensor device = to_device(host);
  g.nccl->all_reduce_sum(device);
  Tensor expected = host.clone();
  g.mpi->all_reduce_sum(expected);
  const Tensor got = to_host(device);
  BOOST_CHECK(same_bits(got, expected));
  BOOST_CHECK(identical_on_every_rank(got));
}

BOOST_AUTO_TEST_CASE(all_reduce_bf16) {
  // Small integers are exact in bf16, so the sum is exact whatever the order of additions.
  const std::int64_t n = 515;
  Tensor whole = Tensor::empty({n}, DType::BF16);
  for (std::int64_t i = 0; i < n; ++i) {
    whole.data<bf16>()[i] = to_bf16(float((i * 7 + g.mpi->rank() * 13) % 64 - 32));
  }
  Tensor device = to_device(whole);
  g.nccl->all_reduce_sum(device);
  Tensor got = to_host(device);
  check_float_sum(whole, got, 0.0, "bf16 all_reduce_sum of integers");
  BOOST_CHECK(identical_on_every_rank(got));

  // Random values: bf16 rounds after each addition (8 significant bits).
  const Tensor random = random_host(2053, DType::BF16, 3);
  device = to_device(random);
  g.nccl->all_reduce_sum(device);
  got = to_host(device);
  check_float_sum(random, got, g.nccl->size() * std::ldexp(1.0, -8), "bf16 all_reduce_sum of random values");
  BOOST_CHECK(identical_on_every_rank(got));
}

BOOST_AUTO_TEST_CASE(reduce_scatter_matches_mpi) {
  const int size = g.nccl->size();
  const std::int64_t shard = 333;
  for (DType dtype : {DType::F32, DType::I32}) {
    const Tensor host = random_host(shard * size, dtype, 4);
    const Tensor device_in = to_device(host);
    Tensor device_out = Tensor::empty({shard}, dtype, Device::CUDA);
    g.nccl->reduce_scatter_sum(device_in, device_out);
    const Tensor got = to_host(device_out);
    Tensor expected = Tensor::empty({shard}, dtype);
    g.mpi->reduce_scatter_sum(host, expected);
    if (dtype == DType::I32) {
      BOOST_CHECK_MESSAGE(same_bits(got, expected), "i32 reduce_scatter_sum differs from MPI");
    } else {
      // Against the sum of magnitudes of this rank's chunk over the ranks.
      Tensor magnitude = Tensor::empty({shard * size}, DType::F32);
      for (std::int64_t i = 0; i < shard * size; ++i) magnitude.data<float>()[i] = std::fabs(host.data<float>()[i]);
      Tensor magnitude_shard = Tensor::empty({shard}, DType::F32);
      g.mpi->reduce_scatter_sum(magnitude, magnitude_shard);
      std::int64_t bad = 0;
      for (std::int64_t i = 0; i < shard; ++i) {
        const double error = std::fabs(double(got.data<float>()[i]) - double(expected.data<float>()[i]));
        if (error > 1e-6 * double(magnitude_shard.data<float>()[i]) + 1e-30) ++bad;
      }
      BOOST_CHECK_MESSAGE(bad == 0, "f32 reduce_scatter_sum: " << bad << " elements differ from MPI's");
    }
  }
}

BOOST_AUTO_TEST_CASE(all_gather_is_rank_major_for_every_dtype) {
  const int size = g.nccl->size();
  for (DType dtype : {DType::F32, DType::BF16, DType::I32, DType::I8}) {
    const Tensor host = random_host(129, dtype, 5);
    Tensor device_out = Tensor::empty({129 * size}, dtype, Device::CUDA);
    g.nccl->all_gather(to_device(host), device_out);
    Tensor expected = Tensor::empty({129 * size}, dtype);
    g.mpi->all_gather(host, expected);
    BOOST_CHECK_MESSAGE(same_bits(to_host(device_out), expected), "all_gather " << dtype_name(dtype) << " differs");
  }
}

BOOST_AUTO_TEST_CASE(broadcast_from_every_root) {
  for (int root = 0; root < g.nccl->size(); ++root) {
    for (DType dtype : {DType::F32, DType::BF16, DType::I32, DType::I8}) {
      const Tensor host = random_host(77, dtype, 6 + root);
      Tensor device = to_device(host);
      g.nccl->broadcast(device, root);
      Tensor expected = host.clone();
      g.mpi->broadcast(expected, root);
      BOOST_CHECK_MESSAGE(same_bits(to_host(device), expected),
                          "broadcast " << dtype_name(dtype) << " from root " << root << " differs");
    }
  }
}

BOOST_AUTO_TEST_CASE(send_recv_ring) {
  const int size = g.nccl->size(), rank = g.nccl->rank();
  if (size == 1) {
    Tensor t = Tensor::empty({4}, DType::F32, Device::CUDA);
    BOOST_CHECK_THROW(g.nccl->send(t, 0, 0), std::invalid_argument);
    return;
  }
  const int next = (rank + 1) % size, previous = (rank + size - 1) % size;
  for (DType dtype : {DType::F32, DType::BF16, DType::I32, DType::I8}) {
    const Tensor mine = random_host(1000, dtype, 20);
    Tensor expected = Tensor::empty({1000}, dtype);
    // The MPI reference ring, nonblocking on both sides as MPI needs too.
    {
      Request sent = g.mpi->send_async(mine, next, 7);
      g.mpi->recv(expected, previous, 7);
      sent.wait();
    }
    const Tensor outgoing = to_device(mine);
    Tensor incoming = Tensor::empty({1000}, dtype, Device::CUDA);
    Request sent = g.nccl->send_async(outgoing, next, 7);
    g.nccl->recv(incoming, previous, 7);
    sent.wait();
    BOOST_CHECK_MESSAGE(same_bits(to_host(incoming), expected), "ring of " << dtype_name(dtype) << " differs");
  }
}

// A 1F1B stage pair: both ranks queue a large send to each other before either posts its
// recv. On one NCCL stream this deadlocks; NcclComm's per-direction lanes must not.
BOOST_AUTO_TEST_CASE(pipeline_pair_sends_cross) {
  const int size = g.nccl->size(), rank = g.nccl->rank();
  if (size == 1) return;
  const int partner = rank % 2 == 0 ? rank + 1 : rank - 1;
  const bool paired = partner < size;
  const std::int64_t n = 4 << 20;  // 16 MiB of f32, far past NCCL's buffering
  if (paired) {
    Tensor activations = to_device(random_host(n, DType::F32, 30));
    Tensor received = Tensor::empty({n}, DType::F32, Device::CUDA);
    Request sent = g.nccl->send_async(activations, partner, 0);
    Request arrived = g.nccl->recv_async(received, partner, 0);
    arrived.wait();
    sent.wait();
    Tensor expected = Tensor::empty({n}, DType::F32);
    Request mpi_sent = g.mpi->send_async(to_host(activations), partner, 1);
    g.mpi->recv(expected, partner, 1);
    mpi_sent.wait();
    BOOST_CHECK(same_bits(to_host(received), expected));
  }
  g.nccl->barrier();
}

BOOST_AUTO_TEST_CASE(async_calls_overlap_and_see_inputs_written_on_the_compute_stream) {
  const int size = g.nccl->size();
  const std::int64_t n = 1 << 22;
  // Pinned memory so the copy is truly asynchronous on the compute stream.
  std::int32_t* pinned = nullptr;
  cuda_check(cudaMallocHost(reinterpret_cast<void**>(&pinned), n * sizeof(std::int32_t)), "cudaMallocHost");
  for (std::int64_t i = 0; i < n; ++i) pinned[i] = static_cast<std::int32_t>((i % 1000) + g.nccl->rank());
  Tensor summed = Tensor::empty({n}, DType::I32, Device::CUDA);
  cuda_check(cudaMemsetAsync(summed.raw(), 0, summed.nbytes(), g.compute), "cudaMemsetAsync");
  cuda_check(cudaMemcpyAsync(summed.raw(), pinned, summed.nbytes(), cudaMemcpyHostToDevice, g.compute),
             "cudaMemcpyAsync");
  Request sum = g.nccl->all_reduce_sum_async(summed);

  const Tensor piece_host = random_host(1001, DType::BF16, 40);
  const Tensor piece = to_device(piece_host);
  Tensor gathered = Tensor::empty({1001 * size}, DType::BF16, Device::CUDA);
  Request gather = g.nccl->all_gather_async(piece, gathered);
  const Tensor root_host = random_host(513, DType::I8, 41);
  Tensor from_root = to_device(root_host);
  Request bcast = g.nccl->broadcast_async(from_root, size - 1);

  bcast.wait();
  gather.wait();
  sum.wait();
  BOOST_CHECK(sum.done() && gather.done() && bcast.done());
  sum.wait();  // idempotent

  const Tensor sum_host = to_host(summed);
  const std::int64_t rank_total = std::int64_t(size) * (size - 1) / 2;
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (sum_host.data<std::int32_t>()[i] != (i % 1000) * size + rank_total) ++bad;
  }
  BOOST_CHECK_MESSAGE(bad == 0, bad << " of " << n << " summed elements are wrong (input copy not awaited?)");
  Tensor gather_expected = Tensor::empty({1001 * size}, DType::BF16);
  g.mpi->all_gather(piece_host, gather_expected);
  BOOST_CHECK(same_bits(to_host(gathered), gather_expected));
  Tensor bcast_expected = root_host.clone();
  g.mpi->broadcast(bcast_expected, size - 1);
  BOOST_CHECK(same_bits(to_host(from_root), bcast_expected));
  cudaFreeHost(pinned);
}

BOOST_AUTO_TEST_CASE(host_scalars_reduce_like_mpi) {
  const int size = g.nccl->size(), rank = g.nccl->rank();
  std::vector<double> values{double(rank) + 0.25, -double(rank)};
  g.nccl->all_reduce_host(values, ReduceOp::Sum);
  BOOST_CHECK_EQUAL(values[0], double(size) * (size - 1) / 2 + 0.25 * size);
  BOOST_CHECK_EQUAL(values[1], -double(size) * (size - 1) / 2);
  std::vector<double> peak{double(rank)};
  g.nccl->all_reduce_host(peak, ReduceOp::Max);
  BOOST_CHECK_EQUAL(peak[0], double(size - 1));
}

BOOST_AUTO_TEST_CASE(cpu_tensors_and_bad_arguments_are_refused_with_clear_messages) {
  Tensor cpu = Tensor::zeros({8});
  try {
    g.nccl->all_reduce_sum(cpu);
    BOOST_ERROR("all_reduce_sum accepted a CPU tensor");
  } catch (const std::invalid_argument& error) {
    const std::string message = error.what();
    BOOST_CHECK_MESSAGE(message.find("NcclComm::all_reduce_sum") != std::string::npos, message);
    BOOST_CHECK_MESSAGE(message.find("[8] f32 cpu") != std::string::npos, message);
    BOOST_CHECK_MESSAGE(message.find("MpiComm") != std::string::npos, message);
  }
  Tensor gpu = Tensor::empty({8}, DType::F32, Device::CUDA);
  BOOST_CHECK_THROW(g.nccl->all_gather_async(cpu, gpu), std::invalid_argument);
  BOOST_CHECK_THROW(g.nccl->broadcast(cpu, 0), std::invalid_argument);
  BOOST_CHECK_THROW(g.nccl->send_async(cpu, 0, 0), std::invalid_argument);
  Tensor codes = Tensor::empty({8}, DType::I8, Device::CUDA);
  try {
    g.nccl->all_reduce_sum_async(codes);
    BOOST_ERROR("all_reduce_sum_async summed i8");
  } catch (const std::invalid_argument& error) {
    BOOST_CHECK_MESSAGE(std::string(error.what()).find("cannot sum [8] i8 cuda") != std::string::npos, error.what());
  }
  Tensor wrong = Tensor::empty({8 * g.nccl->size() + 1}, DType::F32, Device::CUDA);
  BOOST_CHECK_THROW(g.nccl->all_gather(gpu, wrong), std::invalid_argument);
  BOOST_CHECK_THROW(g.nccl->broadcast(gpu, g.nccl->size()), std::invalid_argument);
  BOOST_CHECK_THROW(g.nccl->recv(gpu, -1, 0), std::invalid_argument);
}

int main(int argc, char** argv) {
  MpiRuntime mpi(&argc, &argv);
  std::string reason;
  const int devices = count_cuda_devices(&reason);
  if (devices == 0) {
    if (mpi.world_rank() == 0) std::printf("test_nccl_comm: skipped: %s\n", reason.c_str());
    return 77;
  }
  if (mpi.world_size() > devices) {
    if (mpi.world_rank() == 0) {
      std::fprintf(stderr, "test_nccl_comm: %d ranks but %d visible GPUs; NCCL needs one GPU per rank\n",
                   mpi.world_size(), devices);
    }
    return 1;
  }
  int status = 0;
  try {
    CudaTestAllocator allocator;
    register_allocator(Device::CUDA, &allocator);
    g.device = select_cuda_device(mpi.environment());
    cuda_check(cudaStreamCreateWithFlags(&g.compute, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    {
      MpiComm host(MPI_COMM_WORLD);
      NcclComm nccl(MPI_COMM_WORLD, g.compute);
      g.mpi = &host;
      g.nccl = &nccl;
      status = boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
      g.nccl = nullptr;
      g.mpi = nullptr;
    }
    cudaStreamDestroy(g.compute);
    register_allocator(Device::CUDA, nullptr);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "[rank %d] test_nccl_comm: %s\n", mpi.world_rank(), error.what());
    mpi.exit_after_failure(1);
  }
  int worst = status == 0 ? 0 : 1;
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
