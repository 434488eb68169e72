// MpiRuntime, ProcessGroups and MpiComm under mpirun (-np 2 and 4): every collective and
// transfer, blocking and nonblocking, against values computed locally from the rank, on
// the world and on tp/dp/pp sub-communicators. Exits non-zero on every rank if any rank
// fails a check; rank 0 prints "N passed, M failed".
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "launch/mpi_comm.h"
#include "launch/mpi_runtime.h"
#include "launch/process_groups.h"

using namespace loom;
using namespace loom::launch;

namespace {

int g_passed = 0, g_failed = 0, g_rank = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::fprintf(stderr, "[rank %d] FAILED: %s\n", g_rank, what.c_str());
  }
}

// Runs one named case, counting an exception as a failure. A rank that throws skips the
// case's remaining collectives, so the cases are written to throw alike on every rank.
void run_case(const char* name, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& error) {
    check(false, std::string(name) + " threw: " + error.what());
  }
}

template <typename T> Tensor filled(std::int64_t n, const std::function<T(std::int64_t)>& value) {
  Tensor t = Tensor::empty({n}, dtype_of<T>());
  for (std::int64_t i = 0; i < n; ++i) t.data<T>()[i] = value(i);
  return t;
}

template <typename T> bool equals(const Tensor& t, const std::function<T(std::int64_t)>& expected) {
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if (t.data<T>()[i] != expected(i)) return false;
  }
  return true;
}

void test_collectives(Comm& comm, const std::string& where, bool async) {
  const int size = comm.size(), rank = comm.rank();
  const std::string tag = where + (async ? " async" : "");
  const std::int64_t n = 37;  // odd, so no algorithm gets an even split for free
  const std::int64_t triangle = std::int64_t(size) * (size - 1) / 2;

  Tensor sum_f32 = filled<float>(n, [&](std::int64_t i) { return float(rank * 100 + i); });
  Tensor sum_i32 = filled<std::int32_t>(n, [&](std::int64_t i) { return std::int32_t(rank * 1000 - i); });
  if (async) {
    Request a = comm.all_reduce_sum_async(sum_f32);
    Request b = comm.all_reduce_sum_async(sum_i32);
    b.wait();
    a.wait();
    a.wait();  // idempotent
  } else {
    comm.all_reduce_sum(sum_f32);
    comm.all_reduce_sum(sum_i32);
  }
  check(equals<float>(sum_f32, [&](std::int64_t i) { return float(100 * triangle + size * i); }),
        tag + ": all_reduce_sum f32");
  check(equals<std::int32_t>(sum_i32, [&](std::int64_t i) { return std::int32_t(1000 * triangle - size * i); }),
        tag + ": all_reduce_sum i32");

  Tensor full = filled<float>(n * size, [&](std::int64_t j) { return float(rank + j); });
  Tensor shard = Tensor::zeros({n});
  if (async) {
    comm.reduce_scatter_sum_async(full, shard).wait();
  } else {
    comm.reduce_scatter_sum(full, shard);
  }
  check(equals<float>(shard, [&](std::int64_t k) { return float(triangle + size * (rank * n + k)); }),
        tag + ": reduce_scatter_sum f32");

  // bf16 sums (a user-defined MPI op: f32 additions rounded to bf16). Small integers are
  // exact in bf16; 1 + rank/256 is not, so ranks 1.. add bits that bf16 cannot keep.
  Tensor sum_bf16 = Tensor::empty({n}, DType::BF16);
  for (std::int64_t i = 0; i < n; ++i) sum_bf16.data<bf16>()[i] = to_bf16(float(rank + i));
  Tensor shard_bf16 = Tensor::empty({n}, DType::BF16);
  Tensor full_bf16 = Tensor::empty({n * size}, DType::BF16);
  for (std::int64_t j = 0; j < n * size; ++j) full_bf16.data<bf16>()[j] = to_bf16(1.0f + float(rank) / 256.0f);
  if (async) {
    comm.all_reduce_sum_async(sum_bf16).wait();
    comm.reduce_scatter_sum_async(full_bf16, shard_bf16).wait();
  } else {
    comm.all_reduce_sum(sum_bf16);
    comm.reduce_scatter_sum(full_bf16, shard_bf16);
  }
  bool bf16_sum_ok = true, bf16_rounded = true;
  for (std::int64_t i = 0; i < n; ++i) {
    bf16_sum_ok &= from_bf16(sum_bf16.data<bf16>()[i]) == float(triangle + size * i);
    // Each partial sum is rounded to 8 significant bits: the result is within size roundings of
    // the exact sum and is itself a bf16 value.
    const float got = from_bf16(shard_bf16.data<bf16>()[i]);
    const float exact = float(size) + float(triangle) / 256.0f;
    bf16_rounded &= std::fabs(got - exact) <= float(size) * exact / 256.0f;
  }
  check(bf16_sum_ok, tag + ": all_reduce_sum bf16");
  check(bf16_rounded, tag + ": reduce_scatter_sum bf16 within bf16 rounding");

  Tensor mine = filled<float>(n, [&](std::int64_t k) { return float(rank * 10 + k); });
  Tensor gathered = Tensor::zeros({size, n});
  Tensor mine_bf16 = Tensor::empty({n}, DType::BF16);
  for (std::int64_t k = 0; k < n; ++k) mine_bf16.data<bf16>()[k] = to_bf16(float(rank + k));
  Tensor gathered_bf16 = Tensor::empty({n * size}, DType::BF16);
  if (async) {
    Request a = comm.all_gather_async(mine, gathered);
    Request b = comm.all_gather_async(mine_bf16, gathered_bf16);
    while (!a.done()) {
    }
    b.wait();
  } else {
    comm.all_gather(mine, gathered);
    comm.all_gather(mine_bf16, gathered_bf16);
  }
  check(equals<float>(gathered, [&](std::int64_t j) { return float((j / n) * 10 + j % n); }), tag + ": all_gather f32");
  bool bf16_ok = true;
  for (std::int64_t j = 0; j < n * size; ++j) {
    bf16_ok &= from_bf16(gathered_bf16.data<bf16>()[j]) == float(j / n + j % n);
  }
  check(bf16_ok, tag + ": all_gather bf16");

  const int root = size - 1;
  Tensor shared = rank == root ? filled<std::int32_t>(n, [](std::int64_t i) { return std::int32_t(i * i); })
                               : Tensor::zeros({n}, DType::I32);
  if (async) {
    comm.broadcast_async(shared, root).wait();
  } else {
    comm.broadcast(shared, root);
  }
  check(equals<std::int32_t>(shared, [](std::int64_t i) { return std::int32_t(i * i); }), tag + ": broadcast from last rank");

  // Ring: each rank sends its rank-stamped vector to the next and receives the previous one's.
  const int next = (rank + 1) % size, previous = (rank + size - 1) % size;
  Tensor outgoing = filled<float>(n, [&](std::int64_t i) { return float(rank * 1000 + i); });
  Tensor incoming = Tensor::zeros({n});
  if (async) {
    Request receiving = comm.recv_async(incoming, previous, 7);
    Request sending = comm.send_async(outgoing, next, 7);
    sending.wait();
    receiving.wait();
  } else if (rank % 2 == 0) {  // even ranks send first so a blocking ring cannot deadlock
    comm.send(outgoing, next, 7);
    comm.recv(incoming, previous, 7);
  } else {
    comm.recv(incoming, previous, 7);
    comm.send(outgoing, next, 7);
  }
  check(equals<float>(incoming, [&](std::int64_t i) { return float(previous * 1000 + i); }), tag + ": send/recv ring");
}

void test_all_reduce_is_bit_identical(Comm& comm) {
  std::mt19937 generator(1234 + comm.rank());
  std::normal_distribution<float> normal(0.0f, 1e3f);
  const std::int64_t n = 100003;  // large enough for Open MPI to pick a segmented algorithm
  Tensor values = filled<float>(n, [&](std::int64_t) { return normal(generator); });
  comm.all_reduce_sum(values);
  Tensor everyone = Tensor::empty({comm.size(), n});
  comm.all_gather(values, everyone);
  bool identical = true;
  for (int r = 1; r < comm.size(); ++r) {
    identical &= std::memcmp(everyone.data<float>(), everyone.data<float>() + r * n, n * sizeof(float)) == 0;
  }
  check(identical, "all_reduce_sum gives the same bits on every rank");
}

void test_groups(const MpiRuntime& runtime, ParallelLayout layout) {
  const std::string where = "tp=" + std::to_string(layout.tp) + " pp=" + std::to_string(layout.pp);
  ProcessGroups original = ProcessGroups::build(MPI_COMM_WORLD, layout);
  ProcessGroups groups = original;  // copies share the communicators
  original = ProcessGroups();
  const int world = runtime.world_size(), rank = runtime.world_rank();
  check(groups.dp_size() == world / (layout.tp * layout.pp), where + ": dp inferred from the world size");
  const RankCoordinates expected = coordinates_of(rank, world, layout);
  check(groups.tp_rank() == expected.tp_rank && groups.dp_rank() == expected.dp_rank &&
            groups.pp_rank() == expected.pp_rank,
        where + ": coordinates " + groups.describe());
  for (GroupAxis axis : {GroupAxis::Tp, GroupAxis::Dp, GroupAxis::Pp}) {
    const auto listing = axis == GroupAxis::Tp   ? tp_groups(world, layout)
                         : axis == GroupAxis::Dp ? dp_groups(world, layout)
                                                 : pp_groups(world, layout);
    const std::vector<int> members = groups.members(axis);
    bool listed = false;
    for (const auto& group : listing) listed |= group == members;
    check(listed, where + ": " + axis_name(axis) + " members appear in the pure listing");

    // What MPI actually put in the communicator: gather world ranks over it.
    MpiComm comm(groups, axis);
    check(comm.size() == groups.size(axis) && comm.rank() == groups.rank(axis),
          where + ": " + axis_name(axis) + " comm size/rank");
    Tensor me = Tensor::empty({1}, DType::I32);
    me.data<std::int32_t>()[0] = rank;
    Tensor all = Tensor::empty({comm.size()}, DType::I32);
    comm.all_gather(me, all);
    check(std::vector<int>(all.data<std::int32_t>(), all.data<std::int32_t>() + comm.size()) == members,
          where + ": " + axis_name(axis) + " communicator holds exactly the listed ranks in order");
    test_collectives(comm, where + " " + axis_name(axis), false);
    test_collectives(comm, where + " " + axis_name(axis), true);
  }
}

void test_errors(Comm& comm, const MpiRuntime& runtime) {
  auto throws_invalid = [](const std::function<void()>& action, const std::string& needle) {
    try {
      action();
    } catch (const std::invalid_argument& error) {
      return std::string(error.what()).find(needle) != std::string::npos;
    }
    return false;
  };
  Tensor i8 = Tensor::empty({4}, DType::I8);
  check(throws_invalid([&] { comm.all_reduce_sum(i8); }, "reductions take f32, bf16 or i32"), "an i8 sum is refused");
  Tensor in = Tensor::zeros({5}), out = Tensor::zeros({5 * comm.size() + 1});
  check(throws_invalid([&] { comm.all_gather(in, out); }, "must hold group size"), "all_gather shape mismatch");
  check(throws_invalid([&] { comm.send(in, comm.size(), 0); }, "outside this group"), "send to a rank outside");
  const int world = runtime.world_size();
  const int tp = world % 3 == 0 ? world + 1 : 3;  // any tp that does not divide the world
  check(throws_invalid([&] { ProcessGroups::build(MPI_COMM_WORLD, ParallelLayout{tp, 1}); },
                       "world size " + std::to_string(world) + " is not divisible by tp*pp = " +
                           std::to_string(tp) + " (tp=" + std::to_string(tp) + ", pp=1)"),
        "a layout that does not divide the world is refused before any work");

  // A receive buffer shorter than the message: MPI reports truncation, MPI_CHECK turns it
  // into an exception naming the call and a hint (ranks 0 and 1 only; the rest look on).
  if (comm.size() >= 2 && comm.rank() < 2) {
    std::string message;
    try {
      if (comm.rank() == 0) {
        comm.send(Tensor::zeros({8}), 1, 99);
      } else {
        Tensor small = Tensor::zeros({4});
        comm.recv(small, 0, 99);
      }
    } catch (const std::runtime_error& error) {
      message = error.what();
    }
    if (comm.rank() == 1) {
      check(message.find("MPI_Recv") != std::string::npos && message.find("mpi_comm.cpp:") != std::string::npos &&
                message.find("hint: message sizes disagree") != std::string::npos,
            "truncated recv throws with call, file:line and hint; got: " + message);
    }
  }
  comm.barrier();
}

}  // namespace

int main(int argc, char** argv) {
  MpiRuntime runtime(&argc, &argv);
  g_rank = runtime.world_rank();
  {
    const RankEnvironment& env = runtime.environment();
    check(env.launcher == "openmpi", "launched by Open MPI's mpirun (got " + env.launcher + ")");
    check(env.world_size >= 2, "more than one rank");

    MpiComm world(MPI_COMM_WORLD);
    run_case("world", [&] {
      test_collectives(world, "world", false);
      test_collectives(world, "world", true);
      test_all_reduce_is_bit_identical(world);
    });
    for (ParallelLayout layout : {ParallelLayout{1, 1}, ParallelLayout{2, 1}, ParallelLayout{1, 2},
                                  ParallelLayout{2, 2}, ParallelLayout{1, 4}}) {
      if (runtime.world_size() % (layout.tp * layout.pp) != 0) continue;
      run_case("groups", [&] { test_groups(runtime, layout); });
    }
    run_case("errors", [&] { test_errors(world, runtime); });
  }

  int counts[2] = {g_passed, g_failed};
  MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0) std::printf("%d passed, %d failed (summed over %d ranks)\n", counts[0], counts[1], runtime.world_size());
  return counts[1] == 0 ? 0 : 1;
}
