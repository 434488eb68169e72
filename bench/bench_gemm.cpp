// bench-gemm: which CPU GEMM should loom use? Times OpenBLAS (cblas_sgemm), oneDNN's
// dnnl_sgemm, oneDNN's cached matmul primitive and the mix of the two that loom runs
// (gemm_backends.h, onednn_hybrid) on every GEMM of a training step of GPT-2
// 124M and of a tiny Llama (core/kernels/gemm/gemm_shapes.h), then models the step's GEMM
// time per library and names the winner. A second part alternates GEMMs with an OpenMP
// elementwise pass, as loom's CPU backend does, to expose thread-pool fights between the
// GEMM library's threads and OpenMP's. Prints one JSON object on stdout.
//
// Fairness on a shared machine: the libraries are measured interleaved (every round runs each
// one, in rotating order) and each sample starts with an untimed call, so a neighbour's load or
// the other library's idle threads hit all of them alike; the reported figure is the median.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/kernels/gemm/gemm_backends.h"
#include "core/kernels/gemm/gemm_shapes.h"

namespace {

using loom::cpu::GemmShape;
namespace backend = loom::cpu::gemm_backend;
using Clock = std::chrono::steady_clock;

using GemmFn = void (*)(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*,
                        std::int64_t, const float*, std::int64_t, float, float*, std::int64_t);

struct Variant {
  std::string name;     // how the JSON names this way of calling a library
  std::string library;  // the LOOM_GEMM value it belongs to
  GemmFn gemm;
};

const std::vector<Variant>& variants() {
  static const std::vector<Variant> all = {
      {"openblas", "openblas", backend::openblas_sgemm},
      {"onednn_sgemm", "onednn", backend::onednn_sgemm},
      {"onednn_matmul", "onednn", backend::onednn_matmul},
      {"onednn_hybrid", "onednn", backend::onednn_hybrid},
  };
  return all;
}

struct Buffers {
  std::vector<float> a, b, c;
};

Buffers make_buffers(const std::vector<GemmShape>& shapes) {
  std::size_t largest = 0;
  for (const GemmShape& s : shapes)
    largest = std::max<std::size_t>({largest, static_cast<std::size_t>(s.m * s.k),
                                     static_cast<std::size_t>(s.k * s.n), static_cast<std::size_t>(s.m * s.n)});
  Buffers buffers{std::vector<float>(largest), std::vector<float>(largest), std::vector<float>(largest, 0.0f)};
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (float& x : buffers.a) x = uniform(rng);
  for (float& x : buffers.b) x = uniform(rng);
  return buffers;
}

void run_gemm(const Variant& variant, const GemmShape& s, Buffers& buf) {
  variant.gemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, buf.a.data(), s.trans_a ? s.m : s.k,
               buf.b.data(), s.trans_b ? s.k : s.n, s.beta, buf.c.data(), s.n);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// Wall time of a sample plus whether the process had the CPUs to itself while it ran: a
// sample counts as clean when the process used at least 90% of threads × wall CPU time
// (spinning counts as used, so only time taken by other processes makes a sample unclean).
struct Sample {
  double seconds;
  bool clean;
};

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

template <typename Work>
Sample timed_sample(int threads, Work&& work) {
  const double cpu_start = process_cpu_seconds();
  const auto start = Clock::now();
  work();
  const double wall = seconds_since(start);
  const double cpu = process_cpu_seconds() - cpu_start;
  return {wall, cpu >= 0.9 * wall * threads};
}

// Median over the clean samples when there are `reps` of them, else over all samples.
struct SampleSet {
  std::vector<double> all, clean;
  void add(const Sample& sample) {
    all.push_back(sample.seconds);
    if (sample.clean) clean.push_back(sample.seconds);
  }
  bool complete(int reps) const { return static_cast<int>(clean.size()) >= reps; }
  double result(int reps) const { return complete(reps) ? median(clean) : median(all); }
};

// Rounds of one sample per variant, in rotating order, until every variant has `reps` clean
// samples or 3 × reps rounds have run.
template <typename SampleFn>
std::vector<SampleSet> interleaved_samples(int reps, SampleFn&& sample_variant) {
  const std::size_t count = variants().size();
  std::vector<SampleSet> sets(count);
  for (int round = 0; round < 3 * reps; ++round) {
    bool done = true;
    for (const SampleSet& set : sets) done = done && set.complete(reps);
    if (done) break;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t index = (i + round) % count;
      sets[index].add(sample_variant(variants()[index]));
    }
  }
  return sets;
}

struct ShapeTiming {
  std::vector<double> seconds_per_call;  // per variant
  int clean_samples = 0;                 // fewest clean samples of any variant
};

ShapeTiming time_shape(const GemmShape& shape, Buffers& buf, int reps, int threads) {
  double fastest_first_call = 1e30;
  for (const Variant& v : variants()) {
    run_gemm(v, shape, buf);  // creates oneDNN primitives, wakes thread pools, faults pages in
    const auto start = Clock::now();
    run_gemm(v, shape, buf);
    fastest_first_call = std::min(fastest_first_call, seconds_since(start));
  }
  // Enough calls per sample that one sample lasts about 30 ms.
  const int calls = std::clamp(static_cast<int>(std::ceil(0.03 / fastest_first_call)), 1, 1000);
  const std::vector<SampleSet> sets = interleaved_samples(reps, [&](const Variant& v) {
    run_gemm(v, shape, buf);  // untimed: lets the previous variant's threads go idle
    return timed_sample(threads, [&] {
      for (int call = 0; call < calls; ++call) run_gemm(v, shape, buf);
    });
  });
  ShapeTiming timing;
  timing.clean_samples = reps;
  for (const SampleSet& set : sets) {
    timing.seconds_per_call.push_back(set.result(reps) / calls);
    timing.clean_samples = std::min(timing.clean_samples, static_cast<int>(set.clean.size()));
  }
  return timing;
}

nlohmann::json bench_model(const loom::cpu::TransformerGemmDims& dims, int reps, int threads) {
  const std::vector<GemmShape> shapes = loom::cpu::training_step_gemms(dims);
  Buffers buf = make_buffers(shapes);
  const std::size_t count = variants().size();
  std::vector<double> step_seconds(count, 0.0);
  double step_flops = 0.0;
  nlohmann::json shape_rows = nlohmann::json::array();
  for (const GemmShape& shape : shapes) {
    const ShapeTiming timing = time_shape(shape, buf, reps, threads);
    const std::vector<double>& per_call = timing.seconds_per_call;
    nlohmann::json gflops;
    for (std::size_t i = 0; i < count; ++i) {
      gflops[variants()[i].name] = std::round(shape.flops() / per_call[i] * 1e-9 * 10.0) / 10.0;
      step_seconds[i] += shape.count * per_call[i];
    }
    step_flops += shape.count * shape.flops();
    shape_rows.push_back({{"name", shape.name}, {"m", shape.m}, {"n", shape.n}, {"k", shape.k},
                          {"trans_a", shape.trans_a}, {"trans_b", shape.trans_b}, {"beta", shape.beta},
                          {"count_per_step", shape.count}, {"gflops", gflops},
                          {"clean_samples", timing.clean_samples}});
  }
  nlohmann::json step_ms, step_gflops;
  std::size_t best = 0;
  for (std::size_t i = 0; i < count; ++i) {
    step_ms[variants()[i].name] = std::round(step_seconds[i] * 1e4) / 10.0;
    step_gflops[variants()[i].name] = std::round(step_flops / step_seconds[i] * 1e-9 * 10.0) / 10.0;
    if (step_seconds[i] < step_seconds[best]) best = i;
  }
  return {{"model", dims.name}, {"rows", dims.rows}, {"hidden", dims.hidden}, {"ffn", dims.ffn},
          {"vocab", dims.vocab}, {"layers", dims.layers}, {"step_gflop", step_flops * 1e-9},
          {"shapes", shape_rows}, {"step_gemm_ms", step_ms}, {"step_gflops", step_gflops},
          {"winner", variants()[best].name}, {"step_seconds_raw", step_seconds}};
}

// A GELU-like pass over a GEMM output, parallelised the way loom's elementwise kernels are.
void elementwise_pass(const float* in, float* out, std::int64_t size) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < size; ++i) out[i] = 0.5f * in[i] * (1.0f + std::tanh(0.79788456f * in[i]));
}

// Milliseconds per layer-forward of GPT-2 124M (four GEMMs), with and without an OpenMP
// elementwise pass after each GEMM, and the elementwise passes alone. Interplay overhead is
// what the mixed loop costs beyond the sum of its parts.
nlohmann::json bench_interplay(int reps, int threads) {
  std::vector<GemmShape> shapes = loom::cpu::training_step_gemms(loom::cpu::gpt2_124m_gemm_dims());
  std::erase_if(shapes, [](const GemmShape& s) {
    return !s.name.ends_with(".forward") || s.name.starts_with("lm_head");
  });
  Buffers buf = make_buffers(shapes);
  enum Mode { kGemmOnly, kElementwiseOnly, kMixed };
  auto layer_forward = [&](const Variant& v, Mode mode) {
    for (const GemmShape& s : shapes) {
      if (mode != kElementwiseOnly) run_gemm(v, s, buf);
      // Alone, the pass reads A so that repeated passes never decay C into denormals.
      const float* in = mode == kMixed ? buf.c.data() : buf.a.data();
      if (mode != kGemmOnly) elementwise_pass(in, buf.c.data(), s.m * s.n);
    }
  };
  constexpr int layers_per_sample = 12;
  nlohmann::json result;
  std::vector<std::vector<double>> ms(variants().size());
  for (Mode mode : {kGemmOnly, kElementwiseOnly, kMixed}) {
    const std::vector<SampleSet> sets = interleaved_samples(reps, [&](const Variant& v) {
      layer_forward(v, mode);
      return timed_sample(threads, [&] {
        for (int layer = 0; layer < layers_per_sample; ++layer) layer_forward(v, mode);
      });
    });
    for (std::size_t i = 0; i < sets.size(); ++i) ms[i].push_back(sets[i].result(reps) / layers_per_sample * 1e3);
  }
  auto rounded = [](double x) { return std::round(x * 1e3) / 1e3; };
  for (std::size_t i = 0; i < variants().size(); ++i) {
    result[variants()[i].name] = {{"gemm_only_ms", rounded(ms[i][kGemmOnly])},
                                  {"elementwise_only_ms", rounded(ms[i][kElementwiseOnly])},
                                  {"mixed_ms", rounded(ms[i][kMixed])},
                                  {"overhead_ms", rounded(ms[i][kMixed] - ms[i][kGemmOnly] - ms[i][kElementwiseOnly])}};
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench-gemm: OpenBLAS vs oneDNN on loom's training-step GEMM shapes; prints one JSON object"};
  int threads = 2;
  int reps = 7;
  bool skip_interplay = false;
  app.add_option("--threads", threads, "threads per GEMM (and for the OpenMP elementwise pass)")
      ->check(CLI::PositiveNumber);
  app.add_option("--reps", reps, "interleaved timed repetitions per shape; the median is reported")
      ->check(CLI::PositiveNumber);
  app.add_flag("--skip-interplay", skip_interplay, "skip the GEMM/OpenMP alternation test");
  CLI11_PARSE(app, argc, argv);

  try {
    backend::openblas_set_threads(threads);
    backend::onednn_set_threads(threads);
    nlohmann::json out;
    out["benchmark"] = "gemm";
    out["threads"] = threads;
    out["reps"] = reps;
    out["libraries"] = {{"openblas", backend::openblas_describe()}, {"onednn", backend::onednn_describe()}};
    const loom::cpu::TransformerGemmDims gpt2 = loom::cpu::gpt2_124m_gemm_dims();
    out["onednn_matmul_impl"] = backend::onednn_matmul_impl(false, true, gpt2.rows, 3 * gpt2.hidden, gpt2.hidden);

    nlohmann::json models = nlohmann::json::array();
    std::vector<double> total_seconds(variants().size(), 0.0);
    for (const auto& dims : {gpt2, loom::cpu::tiny_llama_gemm_dims()}) {
      nlohmann::json model = bench_model(dims, reps, threads);
      const std::vector<double> seconds = model["step_seconds_raw"];
      for (std::size_t i = 0; i < seconds.size(); ++i) total_seconds[i] += seconds[i];
      model.erase("step_seconds_raw");
      models.push_back(std::move(model));
    }
    out["models"] = models;
    const std::size_t best = std::min_element(total_seconds.begin(), total_seconds.end()) - total_seconds.begin();
    out["winner"] = variants()[best].name;
    out["winner_library"] = variants()[best].library;
    out["winner_rule"] = "lowest modelled GEMM time of one gpt2-124m step plus one tiny-llama step";
    if (!skip_interplay) out["omp_interplay_per_layer_forward"] = bench_interplay(reps, threads);
    std::cout << out.dump(2) << std::endl;
  } catch (const std::exception& error) {
    std::cerr << "bench-gemm: " << error.what() << std::endl;
    return 1;
  }
  return 0;
}
