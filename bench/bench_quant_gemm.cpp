// bench-quant-gemm: how fast are loom's quantized linear layers (core/quant/quant_gemm.h) next to
// loom::cpu::sgemm on the same weights dequantised to f32? Shapes of the tiny model (d 256,
// ff 688, vocab 4096) and of a GPT-2 124M layer (768→3072, 3072→768), at 1 token (decode), 16
// and 2048 (prefill / scoring). Variants: fp32 (sgemm, x · Wᵀ), W8A8, W8A16, W4A16 g128 and g32;
// with oneDNN found, also oneDNN's int8 matmul (u8 × s8 → s32 on prepacked weights, timed
// without activation quantisation or scaling, so a lower bound on what it would cost loom) to
// back the choice of W8A8 kernel. Prints one JSON object on stdout.
//
// Timing: each variant runs once untimed, then repeatedly for --seconds; the best call counts
// (the machine is shared, so the minimum is the least disturbed). GFLOP/s = 2·M·N·K / time.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/kernels/gemm/gemm.h"
#include "core/quant/quant_gemm.h"

#if defined(LOOM_BENCH_ONEDNN)
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace {

using loom::quant::ActivationMode;
using loom::quant::QuantizedLinear;
using loom::quant::Scheme;
using Clock = std::chrono::steady_clock;

struct Shape {
  std::string name;
  std::int64_t in, out;
};

double best_seconds(double budget, const std::function<void()>& call) {
  call();
  double best = 1e30, spent = 0.0;
  int calls = 0;
  while (spent < budget || calls < 3) {
    const auto start = Clock::now();
    call();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::min(best, s);
    spent += s;
    ++calls;
  }
  return best;
}

std::vector<float> normal_values(std::size_t n, unsigned seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

#if defined(LOOM_BENCH_ONEDNN)
// oneDNN's int8 matmul on the same sizes: src u8 [M, K], weights s8 [K, N] reordered once into
// the primitive's preferred layout, dst s32 [M, N].
class OnednnInt8 {
 public:
  OnednnInt8(std::int64_t m, std::int64_t n, std::int64_t k) : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::desc src({m, k}, dt::u8, tag::ab), dst({m, n}, dt::s32, tag::ab);
    const dnnl::memory::desc weights_any({k, n}, dt::s8, tag::any), weights_plain({k, n}, dt::s8, tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights_any, dst), engine_);
    matmul_ = dnnl::matmul(pd);
    src_ = dnnl::memory(src, engine_);
    dst_ = dnnl::memory(dst, engine_);
    weights_ = dnnl::memory(pd.weights_desc(), engine_);
    dnnl::memory plain(weights_plain, engine_);
    std::mt19937 rng(5);
    auto* w = static_cast<std::int8_t*>(plain.get_data_handle());
    for (std::int64_t i = 0; i < k * n; ++i) w[i] = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
    auto* a = static_cast<std::uint8_t*>(src_.get_data_handle());
    for (std::int64_t i = 0; i < m * k; ++i) a[i] = static_cast<std::uint8_t>(rng() % 256);
    dnnl::reorder(plain, weights_).execute(stream_, plain, weights_);
    stream_.wait();
  }
  void run() {
    matmul_.execute(stream_, {{DNNL_ARG_SRC, src_}, {DNNL_ARG_WEIGHTS, weights_}, {DNNL_ARG_DST, dst_}});
    stream_.wait();
  }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  dnnl::matmul matmul_;
  dnnl::memory src_, weights_, dst_;
};
#endif

nlohmann::json measure_shape(const Shape& shape, std::int64_t tokens, double seconds) {
  const std::int64_t K = shape.in, N = shape.out;
  const double flops = 2.0 * static_cast<double>(tokens) * static_cast<double>(N) * static_cast<double>(K);
  const std::vector<float> w = normal_values(static_cast<std::size_t>(N * K), 1, 0.05f);
  const std::vector<float> x = normal_values(static_cast<std::size_t>(tokens * K), 2, 1.0f);
  const std::vector<float> bias = normal_values(static_cast<std::size_t>(N), 3, 0.1f);
  std::vector<float> y(static_cast<std::size_t>(tokens * N));

  nlohmann::json results = nlohmann::json::object();
  const auto record = [&](const std::string& name, double best, std::int64_t bytes) {
    results[name] = {{"gflops", flops / best / 1e9}, {"ms", best * 1e3}, {"weight_bytes", bytes}};
  };
  // fp32 baseline: the weights the quantized variants approximate (int8 per channel), dequantised.
  std::vector<float> dense(w.size());
  loom::quant::dequantize(loom::quant::quantize_rtn(w.data(), N, K, Scheme{8, 0, true}), dense.data());
  record("fp32",
         best_seconds(seconds, [&] {
           loom::cpu::sgemm(false, true, tokens, N, K, 1.0f, x.data(), K, dense.data(), K, 0.0f, y.data(), N);
         }),
         N * K * 4);

  struct Variant {
    std::string name;
    Scheme scheme;
    ActivationMode mode;
  };
  const std::vector<Variant> variants = {
      {"w8a8", {8, 0, true}, ActivationMode::Int8},
      {"w8a16", {8, 0, true}, ActivationMode::Float},
      {"w4a16_g128", {4, 128, true}, ActivationMode::Float},
      {"w4a16_g32", {4, 32, true}, ActivationMode::Float},
  };
  for (const Variant& v : variants) {
    const auto linear = QuantizedLinear::prepare(loom::quant::quantize_rtn(w.data(), N, K, v.scheme), v.mode);
    record(v.name, best_seconds(seconds, [&] { linear->forward(x.data(), tokens, bias.data(), y.data()); }),
           linear->bytes());
  }
#if defined(LOOM_BENCH_ONEDNN)
  OnednnInt8 onednn(tokens, N, K);
  record("onednn_int8_matmul_only", best_seconds(seconds, [&] { onednn.run(); }), N * K);
#endif
  const double fp32 = results["fp32"]["gflops"].get<double>();
  for (auto& [name, r] : results.items()) r["ratio_to_fp32"] = r["gflops"].get<double>() / fp32;
  return {{"shape", shape.name}, {"in", K}, {"out", N}, {"tokens", tokens}, {"results", results}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench-quant-gemm: quantized linear layers (W8A8, W8A16, W4A16) against f32 sgemm; prints JSON"};
  int threads = 2;
  double seconds = 0.3;
  app.add_option("--threads", threads, "threads for every kernel (OpenMP and the GEMM library)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seconds", seconds, "time spent timing each variant on each shape")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  loom::cpu::set_gemm_threads(threads);
  const std::vector<Shape> shapes = {
      {"tiny.qkv", 256, 768},         {"tiny.ff_up", 256, 688},        {"tiny.ff_down", 688, 256},
      {"tiny.lm_head", 256, 4096},    {"gpt2.mlp_up", 768, 3072},      {"gpt2.mlp_down", 3072, 768},
  };
  nlohmann::json runs = nlohmann::json::array();
  for (const Shape& shape : shapes)
    for (std::int64_t tokens : {1, 16, 2048}) runs.push_back(measure_shape(shape, tokens, seconds));

  const nlohmann::json out = {
      {"benchmark", "quant_gemm"},
      {"threads", threads},
      {"seconds_per_variant", seconds},
      {"isa", loom::quant::isa_name(loom::quant::compiled_isas().back())},
      {"sgemm_library", loom::cpu::gemm_library()},
      {"fused_gemv_max_tokens", loom::quant::kFusedGemvMaxTokens},
      {"runs", runs},
  };
  std::cout << out.dump(1) << "\n";
  return 0;
}
