#include "compress/distributed.h"

#include <bit>
#include <stdexcept>
#include <string>

#include "launch/mpi_runtime.h"

namespace loom::compress {
namespace {

int size_of(MPI_Comm comm) {
  int n = 1;
  MPI_CHECK(MPI_Comm_size(comm, &n));
  return n;
}

int rank_of(MPI_Comm comm) {
  int r = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &r));
  return r;
}

}  // namespace

void all_reduce_max(std::span<float> values, MPI_Comm comm) {
  if (size_of(comm) == 1 || values.empty()) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_FLOAT, MPI_MAX, comm));
}

void all_reduce_min(std::span<float> values, MPI_Comm comm) {
  if (size_of(comm) == 1 || values.empty()) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_FLOAT, MPI_MIN, comm));
}

void all_reduce_sum(std::span<std::int64_t> values, MPI_Comm comm) {
  if (size_of(comm) == 1 || values.empty()) return;
  // Integer sums are exact in any order: the statistics do not depend on the split.
  constexpr std::size_t kChunk = std::size_t{1} << 26;
  for (std::size_t at = 0; at < values.size(); at += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, values.size() - at));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data() + at, n, MPI_INT64_T, MPI_SUM, comm));
  }
}

std::int64_t all_reduce_sum(std::int64_t value, MPI_Comm comm) {
  all_reduce_sum(std::span<std::int64_t>(&value, 1), comm);
  return value;
}

std::vector<float> all_gather_columns(const float* x, std::int64_t rows, std::int64_t cols, MPI_Comm comm) {
  const int size = size_of(comm);
  std::vector<float> gathered(static_cast<std::size_t>(rows * cols * size));
  MPI_CHECK(MPI_Allgather(x, static_cast<int>(rows * cols), MPI_FLOAT, gathered.data(), static_cast<int>(rows * cols),
                          MPI_FLOAT, comm));
  std::vector<float> whole(gathered.size());
  const std::int64_t width = cols * size;
  for (int r = 0; r < size; ++r)
    for (std::int64_t i = 0; i < rows; ++i)
      std::copy_n(gathered.data() + (r * rows + i) * cols, cols, whole.data() + i * width + r * cols);
  return whole;
}

float MpiSelector::kth_smallest(std::span<const float> values, std::int64_t k) const {
  if (size_of(comm_) == 1) return Selector::kth_smallest(values, k);
  // The smallest bit pattern t with count(bits <= t) > k over every rank: non-negative floats
  // order like their bits.
  std::uint32_t lo = 0, hi = 0x7F800000u;  // +inf
  while (lo < hi) {
    const std::uint32_t mid = lo + (hi - lo) / 2;
    std::int64_t count = 0;
    for (float v : values) {
      if (v < 0.0f) throw std::invalid_argument("MpiSelector: negative metric " + std::to_string(v));
      count += std::bit_cast<std::uint32_t>(v) <= mid ? 1 : 0;
    }
    if (all_reduce_sum(count, comm_) > k) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return std::bit_cast<float>(lo);
}

void MpiSelector::kth_smallest_per_row(std::span<const std::uint64_t> keys, std::int64_t rows, std::int64_t k,
                                       std::uint64_t* out) const {
  if (size_of(comm_) == 1) return Selector::kth_smallest_per_row(keys, rows, k, out);
  const std::int64_t cols = rows > 0 ? static_cast<std::int64_t>(keys.size()) / rows : 0;
  std::vector<std::uint64_t> lo(static_cast<std::size_t>(rows), 0), hi(static_cast<std::size_t>(rows), ~0ull);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(rows));
  for (int round = 0; round < 64; ++round) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::uint64_t mid = lo[r] + (hi[r] - lo[r]) / 2;
      std::int64_t c = 0;
      for (std::int64_t j = 0; j < cols; ++j) c += keys[static_cast<std::size_t>(r * cols + j)] <= mid ? 1 : 0;
      counts[static_cast<std::size_t>(r)] = c;
    }
    all_reduce_sum(counts, comm_);
    for (std::int64_t r = 0; r < rows; ++r) {
      if (lo[r] >= hi[r]) continue;
      const std::uint64_t mid = lo[r] + (hi[r] - lo[r]) / 2;
      if (counts[static_cast<std::size_t>(r)] > k) {
        hi[r] = mid;
      } else {
        lo[r] = mid + 1;
      }
    }
  }
  for (std::int64_t r = 0; r < rows; ++r) out[r] = lo[static_cast<std::size_t>(r)];
}

void send_to_later_ranks(std::span<const float> data, MPI_Comm comm, int tag) {
  const int me = rank_of(comm), size = size_of(comm);
  for (int r = me + 1; r < size; ++r) {
    MPI_CHECK(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_FLOAT, r, tag, comm));
  }
}

void receive_from(std::span<float> data, int from, MPI_Comm comm, int tag) {
  MPI_CHECK(MPI_Recv(data.data(), static_cast<int>(data.size()), MPI_FLOAT, from, tag, comm, MPI_STATUS_IGNORE));
}

}  // namespace loom::compress
