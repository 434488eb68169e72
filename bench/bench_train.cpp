// bench-train: training throughput of one model shape on this machine, as one JSON object.
//
// Default: the GPT-2 124M shape (12 layers, 12 heads, 768 channels, vocab 50257), batch 4,
// sequence 64, fp32, 2 threads — full steps (forward, backward, global-norm clip, AdamW) on
// random tokens. Reports tokens/s, achieved GFLOP/s (training FLOPs of the model, PaLM
// accounting, over wall time), peak RSS, the time split by phase, and the machine's SGEMM
// GFLOP/s measured in the same run (before and after the steps; the higher reading counts),
// so the ratio to the GEMM peak is meaningful on a shared, noisy machine. --profile adds a
// per-op table (cpu::ProfilingBackend): calls, milliseconds and GEMM rate per op and shape.
//
// --device cuda runs the same steps on GPU 0 (a CUDA build), synchronising at every phase
// boundary, and reports MFU: achieved FLOP/s over the device's dense peak for the step's
// dtype (--peak-tflops, else a table of known devices; bench/gpu_train.sh runs the GPT-2
// 124M and 350M shapes). --precision bf16 trains in bf16 over f32 master weights
// (train.precision=bf16; on the CPU an emulation, for checking, not for speed).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/kernels/cpu/profiling_backend.h"
#include "core/kernels/gemm/gemm.h"
#include "core/model/transformer.h"
#include "core/optim/adamw.h"
#include "core/optim/grad_clip.h"

#if LOOM_HAVE_CUDA
#include "core/kernels/cuda/cuda_backend.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is KiB on Linux
}

// Dense tensor-core (bf16) and plain fp32 peaks in TFLOP/s of devices by name, from the
// vendors' data sheets (H100 SXM: 989.4 bf16, 66.9 fp32; H100 PCIe: 756.5, 51.2; H200 as
// H100 SXM; A100: 312, 19.5). 0 when unknown.
double peak_tflops(const std::string& device, bool bf16) {
  auto has = [&](const char* part) { return device.find(part) != std::string::npos; };
  if (has("H200") || (has("H100") && (has("SXM") || has("HBM3")))) return bf16 ? 989.4 : 66.9;
  if (has("H100")) return bf16 ? 756.5 : 51.2;
  if (has("A100")) return bf16 ? 312.0 : 19.5;
  return 0.0;
}

int run_bench(int argc, char** argv) {
  CLI::App app{"bench-train: training throughput of a model shape (GPT-2 124M by default), printed as JSON"};
  std::string family = "gpt2";
  std::int64_t batch = 4, seq = 64, layers = 12, heads = 12, kv_heads = 0, d_model = 768, vocab = 50257, d_ff = 0;
  int threads = 2, steps = 6, warmup = 2;
  bool profile = false;
  std::string device = "cpu", precision = "f32";
  double peak_override = 0.0;
  app.add_option("--family", family, "gpt2 or llama")->check(CLI::IsMember({"gpt2", "llama"}));
  app.add_option("--batch", batch, "Sequences per step")->check(CLI::PositiveNumber);
  app.add_option("--seq", seq, "Sequence length")->check(CLI::PositiveNumber);
  app.add_option("--layers", layers, "Transformer blocks")->check(CLI::PositiveNumber);
  app.add_option("--heads", heads, "Attention heads")->check(CLI::PositiveNumber);
  app.add_option("--kv-heads", kv_heads, "Key/value heads (0 = heads)");
  app.add_option("--d-model", d_model, "Hidden width")->check(CLI::PositiveNumber);
  app.add_option("--d-ff", d_ff, "MLP width (0 = 4*d_model for gpt2, 8/3*d_model for llama)");
  app.add_option("--vocab", vocab, "Vocabulary size")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads")->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "Timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed warm-up steps");
  app.add_flag("--profile", profile,
               "Time every backend op of the timed steps (per op and shape) and add the table as \"profile\"");
  app.add_option("--device", device, "cpu, or cuda (GPU 0; needs a CUDA build)")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--precision", precision, "f32, or bf16 over f32 master weights")
      ->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--peak-tflops", peak_override, "The device's dense peak for MFU (0: from the device's name)");
  CLI11_PARSE(app, argc, argv);

  using namespace loom;
  const bool on_gpu = device == "cuda";
  const DType dtype = precision == "bf16" ? DType::BF16 : DType::F32;
  if (on_gpu && profile) {
    std::cerr << "bench-train: --profile times host calls, which on a GPU only enqueue work; use nsys there\n";
    return 2;
  }
#if !LOOM_HAVE_CUDA
  if (on_gpu) {
    std::cerr << "bench-train: --device cuda needs a build with CUDA (see docs/cuda.md)\n";
    return 2;
  }
#endif
  // SGEMM is measured before and after the training steps; the higher reading is the
  // machine's rate (a neighbour's burst or a cold start only ever lowers a reading).
  const double sgemm_before = on_gpu ? 0.0 : cpu::measure_sgemm_gflops(threads);
  cpu::set_gemm_threads(threads);

  const model::Family fam = model::parse_family(family);
  if (kv_heads == 0) kv_heads = heads;
  if (d_ff == 0) d_ff = fam == model::Family::GPT2 ? 4 * d_model : (8 * d_model / 3 + 7) / 8 * 8;
  const model::ModelConfig config =
      model::ModelConfig::from_family(fam, vocab, d_model, layers, heads, kv_heads, d_ff, std::max<std::int64_t>(seq, 1024));
  config.validate();

  std::unique_ptr<Backend> base = make_cpu_backend();
  std::string device_name = "cpu";
#if LOOM_HAVE_CUDA
  if (on_gpu) {
    base = cuda::make_cuda_backend(0);
    device_name = cuda::device_name(0);
  }
#endif
  // Waits for the GPU at phase boundaries (CPU ops return when done).
  auto sync = [&] {
#if LOOM_HAVE_CUDA
    if (on_gpu) cuda::synchronize(*base);
#endif
  };
  cpu::ProfilingBackend profiler(*base);
  Backend* backend = profile ? static_cast<Backend*>(&profiler) : base.get();
  model::Transformer model(config, model::ShardSpec::whole(config), model::HeadKind::LM, *backend, {}, dtype);
  const auto init_start = Clock::now();
  model.init_weights(1337);
  const double init_s = since(init_start);
  optim::AdamWConfig adamw;
  adamw.weight_decay = 0.1f;
  optim::AdamW optimizer(model.params(), adamw, *backend);

  Tensor ids = Tensor::empty({batch, seq}, DType::I32);
  Tensor targets = Tensor::empty({batch, seq}, DType::I32);
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::int32_t> token(0, static_cast<std::int32_t>(vocab - 1));
  for (std::int64_t i = 0; i < ids.numel(); ++i) {
    ids.data<std::int32_t>()[i] = token(rng);
    targets.data<std::int32_t>()[i] = token(rng);
  }

  struct Phases {
    std::vector<double> step, zero_grads, forward, backward, grad_norm, adamw;
  } phases;
  double first_loss = 0.0, last_loss = 0.0;
  for (int i = 0; i < warmup + steps; ++i) {
    if (i == warmup) profiler.reset();
    sync();
    const auto t0 = Clock::now();
    model.zero_grads();
    sync();
    const double t_zero = since(t0);
    const model::LossSum loss = model.forward_lm(ids, targets);
    sync();
    const double t_forward = since(t0);
    model.backward_lm(1.0f / static_cast<float>(loss.count));
    sync();
    const double t_backward = since(t0);
    const double norm = optim::grad_norm(*backend, model.params().grads());
    const double t_norm = since(t0);
    optimizer.step(3e-4f, optim::clip_scale(norm, 1.0f));
    sync();
    const double total = since(t0);
    if (i == 0) first_loss = loss.mean();
    last_loss = loss.mean();
    if (i >= warmup) {
      phases.step.push_back(total);
      phases.zero_grads.push_back(t_zero);
      phases.forward.push_back(t_forward - t_zero);
      phases.backward.push_back(t_backward - t_forward);
      phases.grad_norm.push_back(t_norm - t_backward);
      phases.adamw.push_back(total - t_norm);
    }
  }
  const double training_peak_rss_mib = peak_rss_mib();  // before the second SGEMM run's buffers
  const double sgemm_after = on_gpu ? 0.0 : cpu::measure_sgemm_gflops(threads);
  const double sgemm_gflops = std::max(sgemm_before, sgemm_after);

  const double step_time = median(phases.step);
  const double tokens = static_cast<double>(batch * seq);
  const double flops_per_step = config.training_flops_per_token(seq) * tokens;
  const double gflops = flops_per_step / step_time / 1e9;
  nlohmann::json out = {
      {"benchmark", "train"},
      {"model", {{"family", family}, {"parameters", config.parameter_count()}, {"layers", layers}, {"heads", heads},
                 {"kv_heads", kv_heads}, {"d_model", d_model}, {"d_ff", d_ff}, {"vocab", vocab}}},
      {"batch", batch},
      {"seq", seq},
      {"dtype", precision},
      {"device", device_name},
      {"threads", threads},
      {"backend", backend->name()},
      {"gemm_library", cpu::gemm_library()},
      {"steps_timed", steps},
      {"step_s", step_time},
      {"tokens_per_s", tokens / step_time},
      {"achieved_gflops", gflops},
      {"machine_sgemm_gflops", sgemm_gflops},
      {"fraction_of_sgemm_peak", on_gpu ? 0.0 : gflops / sgemm_gflops},
      {"machine_sgemm_gflops_readings", {sgemm_before, sgemm_after}},
      {"time_split_s", {{"zero_grads", median(phases.zero_grads)}, {"forward", median(phases.forward)},
                        {"backward", median(phases.backward)}, {"grad_norm", median(phases.grad_norm)},
                        {"adamw", median(phases.adamw)}}},
      {"init_weights_s", init_s},
      {"training_gflop_per_step", flops_per_step / 1e9},
      {"peak_rss_mib", training_peak_rss_mib},
      {"loss_first_step", first_loss},
      {"loss_last_step", last_loss}};
  if (on_gpu) {
    const double peak = peak_override > 0.0 ? peak_override : peak_tflops(device_name, dtype == DType::BF16);
    out["peak_tflops"] = peak;
    out["mfu"] = peak > 0.0 ? gflops / 1e3 / peak : 0.0;  // 0: unknown device, pass --peak-tflops
  }
  if (profile) {
    // Per step: each op's share of the step, and the GEMM rate it reached.
    nlohmann::json ops = nlohmann::json::array();
    for (const cpu::OpTiming& t : profiler.timings()) {
      nlohmann::json row = {{"op", t.key},
                            {"calls_per_step", static_cast<double>(t.calls) / steps},
                            {"ms_per_step", 1e3 * t.seconds / steps}};
      if (t.flops > 0.0) row["gflops"] = t.flops / t.seconds / 1e9;
      ops.push_back(row);
    }
    out["profile"] = {{"ops_ms_per_step", 1e3 * profiler.total_seconds() / steps}, {"ops", ops}};
  }
  std::cout << out.dump(2) << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_bench(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench-train: " << e.what() << "\n";
    return 1;
  }
}
