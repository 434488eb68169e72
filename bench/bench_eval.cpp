// bench-eval: loom-eval's scoring throughput against the training forward pass on the same
// model, as one JSON object.
//
// Model: the tiny-brown shape (Llama, d_model 256, 6 layers, 8 heads, 4 kv heads, d_ff 688,
// vocab 4096, window 128), random-init, fp32 CPU. Work: --batch rows of --seq tokens.
//   eval_tokens_per_s      eval::score_loglik on perplexity-style requests (1 context token,
//                          seq continuation tokens): what loom-eval runs, including building
//                          the padded batch and summing per-request log-likelihoods
//   forward_tokens_per_s   Engine::forward_only with the training LM loss (LmWork) on the
//                          same ids: the training step's forward pass
//   train_step_tokens_per_s  forward + backward (no optimizer), for scale
// Medians over --repeats timed runs after one warm-up. eval_vs_forward = eval / forward: 1.0
// means scoring costs no more than the training forward it is built on.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/backend.h"
#include "core/kernels/gemm/gemm.h"
#include "core/mix64.h"
#include "eval/scorer.h"
#include "launch/mpi_runtime.h"
#include "train/engine.h"
#include "train/lm_work.h"

using namespace loom;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double timed(int repeats, F&& f) {
  f();  // warm-up
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    f();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  return median(seconds);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench-eval: loom-eval scoring tokens/s against the training forward pass (tiny-brown shape), JSON on stdout"};
  std::int64_t batch = 16, seq = 128;
  int repeats = 5, threads = 2;
  app.add_option("--batch", batch, "rows per batch")->capture_default_str();
  app.add_option("--seq", seq, "tokens per row (<= 128)")->capture_default_str()->check(CLI::Range(2, 128));
  app.add_option("--repeats", repeats, "timed runs (median)")->capture_default_str();
  app.add_option("--threads", threads, "GEMM threads")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  launch::MpiRuntime runtime(&argc, &argv);
  cpu::set_gemm_threads(threads);
  auto backend = make_cpu_backend();
  model::ModelConfig config = model::ModelConfig::from_family(model::Family::Llama, 4096, 256, 6, 8, 4, 688, 128);
  config.validate();
  train::EngineOptions options;
  train::Engine engine(config, options, *backend);
  engine.init_weights(1234);

  Tensor ids = Tensor::empty({batch, seq}, DType::I32), targets = Tensor::empty({batch, seq}, DType::I32);
  std::vector<eval::LoglikRequest> requests(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    std::vector<std::int32_t> row;
    for (std::int64_t j = 0; j <= seq; ++j) row.push_back(static_cast<std::int32_t>(mix64(b * 1000 + j) % 4096));
    for (std::int64_t j = 0; j < seq; ++j) {
      ids.data<std::int32_t>()[b * seq + j] = row[static_cast<std::size_t>(j)];
      targets.data<std::int32_t>()[b * seq + j] = row[static_cast<std::size_t>(j + 1)];
    }
    requests[static_cast<std::size_t>(b)].context = {row[0]};
    requests[static_cast<std::size_t>(b)].continuation.assign(row.begin() + 1, row.end());
  }
  std::vector<const eval::LoglikRequest*> pointers;
  for (const auto& r : requests) pointers.push_back(&r);

  double checksum = 0;
  const double eval_s = timed(repeats, [&] {
    const auto results = eval::score_loglik(engine, pointers, batch, 0);
    checksum = results.front().logp;
  });
  const double forward_s = timed(repeats, [&] {
    train::LmWork work(ids, targets, batch, 0.0f);
    engine.forward_only(work, 1, batch, seq);
  });
  const double step_s = timed(repeats, [&] {
    engine.zero_grads();
    train::LmWork work(ids, targets, batch, 1.0f / static_cast<float>(batch * seq));
    engine.forward_backward(work, 1, batch, seq);
  });
  const double tokens = static_cast<double>(batch * seq);
  nlohmann::ordered_json out;
  out["benchmark"] = "bench-eval";
  out["model"] = "tiny-brown shape (llama, d_model 256, 6 layers, vocab 4096)";
  out["batch"] = batch;
  out["seq"] = seq;
  out["threads"] = threads;
  out["repeats"] = repeats;
  out["eval_tokens_per_s"] = tokens / eval_s;
  out["forward_tokens_per_s"] = tokens / forward_s;
  out["train_step_tokens_per_s"] = tokens / step_s;
  out["eval_vs_forward"] = forward_s / eval_s;
  out["first_request_logp"] = checksum;
  std::cout << out.dump(2) << std::endl;
  return 0;
}
