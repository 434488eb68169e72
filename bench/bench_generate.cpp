// bench-generate: generation throughput with a KV cache, as one JSON object.
//
// Model: the tiny-brown shape (configs/tiny-brown.yaml: Llama family, d_model 256, 6 layers,
// 8 heads, 4 kv heads, d_ff 688, vocab 4096, max_seq_len 128), random-init weights, fp32 CPU.
// For each batch size (default 1, 8, 32): prompts of --prompt-len random tokens each, then
// --new-tokens new tokens per sequence (greedy unless --temperature > 0; no stop tokens, so
// every sequence runs to the limit). Reported per batch size, medians over --repeats runs
// after one untimed warm-up run:
//   prefill_tokens_per_s   B · prompt_len / prefill time (one forward over every prompt)
//   decode_tokens_per_s    B · (new_tokens - 1) / decode time (the first new token comes
//                          from the prefill's logits; each decode step feeds B tokens)
//   decode_ms_per_step     decode time / (new_tokens - 1): the per-token latency of one
//                          sequence, whatever the batch
//   decode_ms_per_token    1000 / decode_tokens_per_s
// The decode time includes sampling and, under mpirun, every tp/pp transfer.
// --kv-int8 turns on the int8 KV cache (core/model/kv_cache.h: int8 codes plus one f32 scale
// per token and head, and the matching attention numerics); every row then also reports
//   kv_cache_bytes         the cache world rank 0's shard allocates for that batch
//                          (B sequences of prompt_len + new_tokens positions)
// so a run with and one without the flag compare the cache size and decode tokens/s.
// Threads: 1 per rank by default. A decode step's GEMMs are one row per sequence (GEMVs,
// memory-bound and too small to split), and on a shared 2-core machine a second OpenMP
// thread that has to wait for a core makes every op's barrier slow (measured: 200 ms a step
// instead of 3 at batch 1); pass --threads 2 on a quiet machine for the prefill.
//
// Layouts: run under mpirun with --tp / --pp (dp = ranks / (tp·pp) replicas generate the same
// prompts side by side; the numbers are replica 0's, each time the slowest of its ranks).
// World rank 0 prints the JSON on stdout and a table on stderr.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/kernels/gemm/gemm.h"
#include "core/mix64.h"
#include "core/model/model_config.h"
#include "launch/mpi_runtime.h"
#include "train/engine.h"
#include "train/generator.h"

using namespace loom;

namespace {

struct Options {
  std::vector<std::int64_t> batches{1, 8, 32};
  std::int64_t prompt_len = 32, new_tokens = 32;
  int repeats = 5, threads = 1, tp = 1, pp = 1;
  float temperature = 0.0f;
  std::int64_t top_k = 0;
  std::uint64_t seed = 1234;
  bool kv_int8 = false;
};

model::ModelConfig tiny_brown() {
  model::ModelConfig c = model::ModelConfig::from_family(model::Family::Llama, 4096, 256, 6, 8, 4, 688, 128);
  c.rope.theta = 10000.0f;
  c.validate();
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::vector<std::vector<std::int32_t>> random_prompts(const Options& o, std::int64_t batch, std::int64_t vocab) {
  std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = 0; i < o.prompt_len; ++i) {
      const std::uint64_t h = mix64(mix64(o.seed ^ static_cast<std::uint64_t>(b)) ^ static_cast<std::uint64_t>(i));
      prompts[static_cast<std::size_t>(b)].push_back(static_cast<std::int32_t>(h % static_cast<std::uint64_t>(vocab)));
    }
  }
  return prompts;
}

nlohmann::ordered_json measure(train::Engine& engine, const Options& o, std::int64_t batch) {
  const auto prompts = random_prompts(o, batch, engine.config().vocab_size);
  model::GenerationConfig config;
  config.max_new_tokens = o.new_tokens;
  config.sampling.temperature = o.temperature;
  config.sampling.top_k = o.top_k;
  config.sampling.seed = o.seed;
  std::vector<double> prefill, decode;
  std::int64_t generated = 0;
  for (int run = 0; run <= o.repeats; ++run) {
    const model::GenerationResult r = train::generate(engine, prompts, config);
    if (run == 0) continue;  // warm-up: first-touch allocations and cache sizing
    prefill.push_back(r.prefill_seconds);
    decode.push_back(r.decode_seconds);
    generated = r.new_tokens;
  }
  const double prefill_s = median(prefill), decode_s = median(decode);
  const auto steps = static_cast<double>(o.new_tokens - 1);
  const double decode_tps = decode_s > 0 ? static_cast<double>(batch) * steps / decode_s : 0.0;
  nlohmann::ordered_json row;
  row["batch"] = batch;
  row["new_tokens_generated"] = generated;
  row["prefill_s"] = prefill_s;
  row["decode_s"] = decode_s;
  row["prefill_tokens_per_s"] = prefill_s > 0 ? static_cast<double>(batch * o.prompt_len) / prefill_s : 0.0;
  row["decode_tokens_per_s"] = decode_tps;
  row["decode_ms_per_step"] = steps > 0 ? 1000.0 * decode_s / steps : 0.0;
  row["decode_ms_per_token"] = decode_tps > 0 ? 1000.0 / decode_tps : 0.0;
  row["kv_cache_bytes"] = engine.model().make_kv_cache(batch, o.prompt_len + o.new_tokens).bytes();
  return row;
}

void add_options(CLI::App& app, Options& o) {
  app.add_option("--batches", o.batches, "batch sizes, e.g. 1,8,32")->delimiter(',')->capture_default_str();
  app.add_option("--prompt-len", o.prompt_len, "tokens per prompt")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--new-tokens", o.new_tokens, "new tokens per sequence (>= 2)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  app.add_option("--repeats", o.repeats, "timed runs per batch size (median)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--temperature", o.temperature, "0: greedy")->capture_default_str();
  app.add_option("--top-k", o.top_k, "sampling top-k (0: all)")->capture_default_str();
  app.add_option("--threads", o.threads, "GEMM/OpenMP threads per rank")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--tp", o.tp, "tensor-parallel ranks")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--pp", o.pp, "pipeline stages")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of the weights, prompts and sampler")->capture_default_str();
  app.add_flag("--kv-int8", o.kv_int8, "int8 KV cache (one f32 scale per token and head) instead of f32");
}

}  // namespace

int main(int argc, char** argv) {
  launch::MpiRuntime runtime(&argc, &argv);
  const int rank = runtime.world_rank();
  CLI::App app{"bench-generate: prefill and decode tokens/s of the tiny-brown model shape with a KV cache, "
               "for several batch sizes; optionally under mpirun with --tp/--pp. Prints one JSON object"};
  Options o;
  add_options(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    std::ostringstream silent;  // every rank parses the same argv; only rank 0 speaks
    return rank == 0 ? app.exit(error) : app.exit(error, silent, silent);
  }

  cpu::set_gemm_threads(o.threads);
  auto backend = make_cpu_backend();
  const model::ModelConfig config = tiny_brown();
  std::unique_ptr<train::Engine> engine;
  try {
    if (o.prompt_len + o.new_tokens > config.max_seq_len) {
      throw std::invalid_argument("--prompt-len + --new-tokens = " + std::to_string(o.prompt_len + o.new_tokens) +
                                  " exceeds the model's max_seq_len " + std::to_string(config.max_seq_len));
    }
    train::EngineOptions options;
    options.layout = launch::ParallelLayout{o.tp, o.pp};
    engine = std::make_unique<train::Engine>(config, options, *backend);
  } catch (const std::invalid_argument& error) {
    if (rank == 0) std::fprintf(stderr, "bench-generate: %s\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench-generate: [rank %d] %s\n", rank, error.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  try {
    engine->init_weights(o.seed);
    engine->model().set_kv_int8(o.kv_int8);
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (std::int64_t batch : o.batches) rows.push_back(measure(*engine, o, batch));
    if (engine->leader()) {
      nlohmann::ordered_json out;
      out["benchmark"] = "bench-generate";
      out["model"] = {{"family", "llama"},     {"d_model", config.d_model},     {"n_layers", config.n_layers},
                      {"n_heads", config.n_heads}, {"n_kv_heads", config.n_kv_heads}, {"d_ff", config.d_ff},
                      {"vocab_size", config.vocab_size}};
      out["layout"] = {{"world_size", engine->groups().world_size()},
                       {"tp", o.tp},
                       {"pp", o.pp},
                       {"dp", engine->dp_size()}};
      out["threads_per_rank"] = o.threads;
      out["gemm_library"] = cpu::gemm_library();
      out["prompt_len"] = o.prompt_len;
      out["new_tokens"] = o.new_tokens;
      out["temperature"] = o.temperature;
      out["top_k"] = o.top_k;
      out["repeats"] = o.repeats;
      out["kv_cache"] = o.kv_int8 ? "int8" : "f32";
      out["results"] = rows;
      std::cout << out.dump(2) << std::endl;
      std::fprintf(stderr, "%6s %14s %14s %12s %12s %14s\n", "batch", "prefill tok/s", "decode tok/s", "ms/step",
                   "ms/token", o.kv_int8 ? "int8 KV bytes" : "f32 KV bytes");
      for (const auto& row : rows) {
        std::fprintf(stderr, "%6lld %14.0f %14.0f %12.3f %12.3f %14lld\n",
                     static_cast<long long>(row["batch"].get<std::int64_t>()),
                     row["prefill_tokens_per_s"].get<double>(), row["decode_tokens_per_s"].get<double>(),
                     row["decode_ms_per_step"].get<double>(), row["decode_ms_per_token"].get<double>(),
                     static_cast<long long>(row["kv_cache_bytes"].get<std::int64_t>()));
      }
    }
  } catch (const std::exception& error) {
    // A rank that throws may leave the others waiting inside a collective; abort them all.
    std::fprintf(stderr, "bench-generate: [rank %d] %s\n", rank, error.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
