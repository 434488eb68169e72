// bench-collectives: how fast are loom's CPU collectives? Times all_reduce_sum (f32),
// all_gather, reduce_scatter_sum and all_reduce_sum_async + wait of loom::launch::MpiComm on
// MPI_COMM_WORLD for message sizes from --min-bytes to --max-bytes (powers of 4), and checks
// every result. Run under mpirun; rank 0 prints one JSON object on stdout and a table on stderr.
//
// Timing: each iteration starts after a barrier, and its time is the slowest rank's (the
// per-rank elapsed times are max-reduced), so a rank that arrives late cannot hide. Reported:
// median and minimum over --iters iterations after --warmup untimed ones; algorithm bandwidth
// = bytes / time, and bus bandwidth with the nccl-tests convention (all-reduce: algbw ×
// 2(n-1)/n; all-gather and reduce-scatter: algbw × (n-1)/n), where bytes is the full buffer:
// the reduced tensor, the gathered output, or the reduce-scatter input.
//
// Correctness: inputs are small integers stored as floats, so every sum is exact and the
// expected value of each element is known in closed form. Inputs are refilled and outputs
// poisoned before every iteration (untimed), and every iteration's result is checked; a wrong
// element on any rank makes every rank exit with status 1 after naming the op, size,
// iteration and element.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/comm.h"
#include "core/tensor.h"
#include "io/record/run_record.h"
#include "launch/mpi_comm.h"
#include "launch/mpi_runtime.h"

namespace {

using loom::Comm;
using loom::Tensor;
using Clock = std::chrono::steady_clock;

// One collective at one size: fill() resets buffers (untimed), run() is the timed call,
// first_wrong() names the first element that differs from the closed-form expectation.
class Case {
 public:
  virtual ~Case() = default;
  virtual const char* name() const = 0;
  virtual double bus_factor(int ranks) const = 0;  // busbw / algbw
  virtual void fill() = 0;
  virtual void run(Comm& comm) = 0;
  virtual std::optional<std::string> first_wrong() const = 0;
};

std::string wrong_element(std::int64_t index, float got, float expected) {
  std::ostringstream message;
  message << "element " << index << " is " << got << " but expected " << expected;
  return message.str();
}

// Rank r contributes r + 1 + (i mod 13) at element i, so the sum is n(n+1)/2 + n·(i mod 13).
class AllReduceCase final : public Case {
 public:
  AllReduceCase(std::int64_t elements, int rank, int ranks, bool async)
      : tensor_(Tensor::empty({elements})), rank_(rank), ranks_(ranks), async_(async) {}
  const char* name() const override { return async_ ? "all_reduce_sum_async" : "all_reduce_sum"; }
  double bus_factor(int ranks) const override { return 2.0 * (ranks - 1) / ranks; }
  void fill() override {
    float* data = tensor_.data<float>();
    for (std::int64_t i = 0; i < tensor_.numel(); ++i) data[i] = float(rank_ + 1 + i % 13);
  }
  void run(Comm& comm) override {
    if (async_) {
      loom::Request request = comm.all_reduce_sum_async(tensor_);
      request.wait();
    } else {
      comm.all_reduce_sum(tensor_);
    }
  }
  std::optional<std::string> first_wrong() const override {
    const float* data = tensor_.data<float>();
    const std::int64_t base = std::int64_t(ranks_) * (ranks_ + 1) / 2;
    for (std::int64_t i = 0; i < tensor_.numel(); ++i) {
      const float expected = float(base + ranks_ * (i % 13));
      if (data[i] != expected) return wrong_element(i, data[i], expected);
    }
    return std::nullopt;
  }

 private:
  Tensor tensor_;  // [elements] f32, reduced in place
  int rank_, ranks_;
  bool async_;
};

// Rank r sends r·1000 + (j mod 997) at element j of its chunk; gathered element r·chunk + j
// must hold exactly that.
class AllGatherCase final : public Case {
 public:
  AllGatherCase(std::int64_t chunk, int rank, int ranks)
      : in_(Tensor::empty({chunk})), out_(Tensor::empty({chunk * ranks})), rank_(rank) {}
  const char* name() const override { return "all_gather"; }
  double bus_factor(int ranks) const override { return double(ranks - 1) / ranks; }
  void fill() override {
    float* in = in_.data<float>();
    for (std::int64_t j = 0; j < in_.numel(); ++j) in[j] = float(rank_ * 1000 + j % 997);
    std::fill_n(out_.data<float>(), out_.numel(), -1.0f);
  }
  void run(Comm& comm) override { comm.all_gather(in_, out_); }
  std::optional<std::string> first_wrong() const override {
    const float* out = out_.data<float>();
    const std::int64_t chunk = in_.numel();
    for (std::int64_t i = 0; i < out_.numel(); ++i) {
      const float expected = float((i / chunk) * 1000 + (i % chunk) % 997);
      if (out[i] != expected) return wrong_element(i, out[i], expected);
    }
    return std::nullopt;
  }

 private:
  Tensor in_;   // [chunk] f32
  Tensor out_;  // [ranks * chunk] f32
  int rank_;
};

// Rank r contributes r + 1 + (k mod 11) at global element k; rank r receives chunk r, whose
// element j (global k = r·chunk + j) sums to n(n+1)/2 + n·(k mod 11).
class ReduceScatterCase final : public Case {
 public:
  ReduceScatterCase(std::int64_t chunk, int rank, int ranks)
      : in_(Tensor::empty({chunk * ranks})), out_(Tensor::empty({chunk})), rank_(rank), ranks_(ranks) {}
  const char* name() const override { return "reduce_scatter_sum"; }
  double bus_factor(int ranks) const override { return double(ranks - 1) / ranks; }
  void fill() override {
    float* in = in_.data<float>();
    for (std::int64_t k = 0; k < in_.numel(); ++k) in[k] = float(rank_ + 1 + k % 11);
    std::fill_n(out_.data<float>(), out_.numel(), -1.0f);
  }
  void run(Comm& comm) override { comm.reduce_scatter_sum(in_, out_); }
  std::optional<std::string> first_wrong() const override {
    const float* out = out_.data<float>();
    const std::int64_t base = std::int64_t(ranks_) * (ranks_ + 1) / 2;
    const std::int64_t offset = rank_ * out_.numel();
    for (std::int64_t j = 0; j < out_.numel(); ++j) {
      const float expected = float(base + ranks_ * ((offset + j) % 11));
      if (out[j] != expected) return wrong_element(j, out[j], expected);
    }
    return std::nullopt;
  }

 private:
  Tensor in_;   // [ranks * chunk] f32
  Tensor out_;  // [chunk] f32
  int rank_, ranks_;
};

std::vector<std::unique_ptr<Case>> make_cases(std::int64_t chunk, int rank, int ranks) {
  std::vector<std::unique_ptr<Case>> cases;
  cases.push_back(std::make_unique<AllReduceCase>(chunk * ranks, rank, ranks, false));
  cases.push_back(std::make_unique<AllGatherCase>(chunk, rank, ranks));
  cases.push_back(std::make_unique<ReduceScatterCase>(chunk, rank, ranks));
  cases.push_back(std::make_unique<AllReduceCase>(chunk * ranks, rank, ranks, true));
  return cases;
}

struct Options {
  std::int64_t min_bytes = 4 << 10;
  std::int64_t max_bytes = 64 << 20;
  int iters = 20;
  int warmup = 5;
};

struct Timing {
  std::vector<double> seconds;  // slowest rank's time of each timed iteration
  int wrong_ranks = 0;          // ranks on which some iteration gave a wrong result
};

// Every rank runs the same sequence of collectives, so they stay matched whatever the result.
Timing time_case(Case& c, Comm& comm, const Options& options, std::int64_t bytes) {
  Timing timing;
  bool wrong_here = false;
  for (int iteration = 0; iteration < options.warmup + options.iters; ++iteration) {
    c.fill();
    comm.barrier();
    const auto start = Clock::now();
    c.run(comm);
    double slowest[1] = {std::chrono::duration<double>(Clock::now() - start).count()};
    comm.all_reduce_host(slowest, loom::ReduceOp::Max);
    if (iteration >= options.warmup) timing.seconds.push_back(slowest[0]);
    if (wrong_here) continue;
    if (const std::optional<std::string> wrong = c.first_wrong()) {
      wrong_here = true;
      std::fprintf(stderr, "bench-collectives: [rank %d] %s of %lld bytes, iteration %d: %s\n", comm.rank(),
                   c.name(), static_cast<long long>(bytes), iteration, wrong->c_str());
    }
  }
  double wrong_count[1] = {wrong_here ? 1.0 : 0.0};
  comm.all_reduce_host(wrong_count, loom::ReduceOp::Sum);
  timing.wrong_ranks = static_cast<int>(wrong_count[0]);
  return timing;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// Divides by a power of ten (not multiplies by its inverse) so the JSON shows 0.6, not 0.6000000000000001.
double round_places(double value, int places) {
  const double scale = std::pow(10.0, places);
  return std::round(value * scale) / scale;
}

std::string mpi_library() {
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_CHECK(MPI_Get_library_version(version, &length));
  std::string text(version, static_cast<std::size_t>(length));
  return text.substr(0, text.find_first_of(",\n"));
}

// Sizes min, 4·min, 16·min, ... up to max.
std::vector<std::int64_t> message_sizes(const Options& options) {
  std::vector<std::int64_t> sizes;
  for (std::int64_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= 4) sizes.push_back(bytes);
  return sizes;
}

// The same answer on every rank, so all of them can stop without a collective.
std::optional<std::string> invalid_options(const Options& options, int ranks) {
  const std::int64_t smallest = std::int64_t(ranks) * std::int64_t(sizeof(float));
  if (options.min_bytes < smallest)
    return "--min-bytes " + std::to_string(options.min_bytes) + " is too small: with " + std::to_string(ranks) +
           " ranks every rank needs at least one f32, so at least " + std::to_string(smallest) + " bytes";
  if (options.max_bytes < options.min_bytes)
    return "--max-bytes " + std::to_string(options.max_bytes) + " is below --min-bytes " +
           std::to_string(options.min_bytes);
  return std::nullopt;
}

// Runs every size and op; returns the JSON rows, or nothing when some result was wrong.
std::optional<nlohmann::json> run_all(Comm& comm, const Options& options) {
  const int ranks = comm.size();
  nlohmann::json rows = nlohmann::json::array();
  if (comm.rank() == 0)
    std::fprintf(stderr, "%-22s %10s %12s %12s %11s %11s\n", "op", "bytes", "median_us", "min_us", "algbw_GB/s",
                 "busbw_GB/s");
  for (std::int64_t requested : message_sizes(options)) {
    // Rounded down to a whole f32 chunk per rank, so gather/scatter split evenly.
    const std::int64_t chunk = requested / std::int64_t(sizeof(float)) / ranks;
    const std::int64_t bytes = chunk * ranks * std::int64_t(sizeof(float));
    for (const std::unique_ptr<Case>& c : make_cases(chunk, comm.rank(), ranks)) {
      const Timing timing = time_case(*c, comm, options, bytes);
      if (timing.wrong_ranks > 0) {
        if (comm.rank() == 0)
          std::fprintf(stderr, "bench-collectives: FAILED: %s of %lld bytes gave wrong values on %d of %d ranks\n",
                       c->name(), static_cast<long long>(bytes), timing.wrong_ranks, ranks);
        return std::nullopt;
      }
      const double median_s = median(timing.seconds);
      const double min_s = *std::min_element(timing.seconds.begin(), timing.seconds.end());
      const double algbw = double(bytes) / median_s * 1e-9;
      const double busbw = algbw * c->bus_factor(ranks);
      if (comm.rank() == 0)
        std::fprintf(stderr, "%-22s %10lld %12.1f %12.1f %11.3f %11.3f\n", c->name(), static_cast<long long>(bytes),
                     median_s * 1e6, min_s * 1e6, algbw, busbw);
      rows.push_back({{"op", c->name()}, {"bytes", bytes}, {"time_us_median", round_places(median_s * 1e6, 1)},
                      {"time_us_min", round_places(min_s * 1e6, 1)}, {"algbw_GBps", round_places(algbw, 3)},
                      {"busbw_GBps", round_places(busbw, 3)}});
    }
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  loom::launch::MpiRuntime runtime(&argc, &argv);
  const int rank = runtime.world_rank();

  CLI::App app{"bench-collectives: times loom's MPI collectives (all-reduce, all-gather, reduce-scatter, "
               "async all-reduce) over message sizes; run under mpirun, rank 0 prints one JSON object"};
  Options options;
  app.add_option("--min-bytes", options.min_bytes, "smallest message in bytes (full buffer)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-bytes", options.max_bytes, "largest message in bytes; sizes grow by 4x from --min-bytes")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--iters", options.iters, "timed iterations per op and size (median and min reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", options.warmup, "untimed iterations before the timed ones")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    std::ostringstream silent;  // every rank parses the same argv; only rank 0 speaks
    return rank == 0 ? app.exit(error) : app.exit(error, silent, silent);
  }

  try {
    loom::launch::MpiComm world(MPI_COMM_WORLD);
    if (const std::optional<std::string> problem = invalid_options(options, world.size())) {
      if (rank == 0) std::fprintf(stderr, "bench-collectives: %s\n", problem->c_str());
      return 2;
    }
    const std::optional<nlohmann::json> rows = run_all(world, options);
    if (!rows) return 1;
    if (rank == 0) {
      const nlohmann::json out = {{"benchmark", "bench-collectives"}, {"ranks", world.size()},
                                  {"host", loom::record::host_info()}, {"mpi_library", mpi_library()},
                                  {"iters", options.iters},            {"warmup", options.warmup},
                                  {"results", *rows}};
      std::cout << out.dump(2) << std::endl;
    }
  } catch (const std::exception& error) {
    // A rank that throws may leave the others waiting inside a collective; abort them all.
    std::fprintf(stderr, "bench-collectives: [rank %d] %s\n", rank, error.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
