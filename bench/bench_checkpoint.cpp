// bench-checkpoint: how fast loom saves and loads a step checkpoint, against `dd` writing and
// reading the same number of bytes in the same run and directory, and what an asynchronous
// save costs a training step (docs/performance.md, "Checkpoints").
//
// The model is GPT-2 124M (vocabulary padded to 50,304) with its AdamW state (parameters + two moments: ~1.49 GB, f32) in
// an Engine under whatever layout mpirun gives (--tp/--pp; one process by default):
//   save   synchronous Checkpointer::save + finish: shard write, fsync, read-back XXH64 check,
//          commit (index.json, view.h5, atomic rename), as a stop signal's save does
//   dd     `dd if=/dev/zero of=FILE bs=16M count=N conv=fsync` over the same bytes, then
//          `dd if=FILE of=/dev/null bs=16M` from the page cache and, when it can be emptied
//          (root), from the disk
//   load   Checkpointer::resume(dir): every rank reads its boxes, checking each whole piece's
//          XXH64 as it lands, then verifies what remains of its share (the path a restart
//          takes); hot (page cache) and cold (page cache emptied) when permitted
//   async  training steps (B x T random tokens) without a save, and with an asynchronous save
//          started at the step boundary: the stall is the time the main thread waited for the
//          snapshot copy; the step time with a save in flight shows the contention on top.
// Rank 0 prints one JSON object.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/kernels/gemm/gemm.h"
#include "core/optim/grad_clip.h"
#include "launch/mpi_runtime.h"
#include "io/weights/model_weights.h"
#include "train/checkpointing.h"
#include "train/engine.h"
#include "train/lm_work.h"

using namespace loom;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Seconds a shell command takes; throws when it fails.
double timed_shell(const std::string& command) {
  const auto start = Clock::now();
  if (std::system(command.c_str()) != 0) throw std::runtime_error("command failed: " + command);
  return since(start);
}

// Empties the page cache (root only) so reads come from the disk; false when not permitted.
bool drop_page_cache() {
  ::sync();
  std::FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("1\n", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

struct Options {
  std::string dir = "build/bench-checkpoint-data";
  int tp = 1, pp = 1;
  int threads = 2;
  std::int64_t rows = 4, seq = 64;
  int steps = 3;
  int layers = 12;
  bool keep = false;
};

}  // namespace

int main(int argc, char** argv) {
  launch::MpiRuntime runtime(&argc, &argv);
  CLI::App app{"bench-checkpoint: checkpoint save/load bandwidth against dd, and the asynchronous save's stall "
               "per training step, for GPT-2 124M with AdamW state; rank 0 prints one JSON object"};
  Options o;
  app.add_option("--dir", o.dir, "where to write (the checkpoint and the dd file; removed afterwards)")->capture_default_str();
  app.add_option("--tp", o.tp, "tensor-parallel ranks")->capture_default_str();
  app.add_option("--pp", o.pp, "pipeline stages")->capture_default_str();
  app.add_option("--threads", o.threads, "GEMM threads per rank")->capture_default_str();
  app.add_option("--rows", o.rows, "sequences per step (per data-parallel rank)")->capture_default_str();
  app.add_option("--seq", o.seq, "sequence length")->capture_default_str();
  app.add_option("--steps", o.steps, "timed steps without and with a save in flight")->capture_default_str();
  app.add_flag("--keep", o.keep, "keep the checkpoints written (for loom-ckpt verify or a profiler)");
  app.add_option("--layers", o.layers, "transformer layers (12 = GPT-2 124M; fewer for a quick check)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    std::ostringstream silent;
    return runtime.world_rank() == 0 ? app.exit(error) : app.exit(error, silent, silent);
  }
  try {
    cpu::set_gemm_threads(o.threads);
    auto backend = make_cpu_backend();
    model::ModelConfig config = model::ModelConfig::gpt2_124m();
    config.n_layers = o.layers;
    config.vocab_size = 50304;  // padded to a multiple of 128 (as Megatron and nanoGPT do), so any tp divides it
    config.max_seq_len = std::max<std::int64_t>(o.seq, 64);
    train::EngineOptions options;
    options.layout = launch::ParallelLayout{o.tp, o.pp};
    train::Engine engine(config, options, *backend);
    engine.init_weights(1);
    engine.make_optimizer(optim::AdamWConfig{});
    const bool leader = engine.leader();

    Tensor ids = Tensor::empty({o.rows, o.seq}, DType::I32), targets = Tensor::empty({o.rows, o.seq}, DType::I32);
    std::mt19937 rng(7 + static_cast<unsigned>(engine.dp_rank()));
    for (std::int64_t i = 0; i < ids.numel(); ++i) {
      ids.data<std::int32_t>()[i] = static_cast<std::int32_t>(rng() % config.vocab_size);
      targets.data<std::int32_t>()[i] = static_cast<std::int32_t>(rng() % config.vocab_size);
    }
    const float dloss = 1.0f / static_cast<float>(ids.numel() * engine.dp_size());
    auto step = [&](train::Checkpointer* saver) {
      engine.zero_grads();
      train::LmWork work(ids, targets, o.rows, dloss);
      engine.forward_backward(work, 1, o.rows, o.seq);
      engine.reduce_gradients();
      const double norm = engine.grad_norm();
      if (saver) saver->before_update();
      engine.optimizer_step(1e-4f, optim::clip_scale(norm, 1.0f));
    };
    step(nullptr);  // warm-up; the moments are no longer zero

    const fs::path root = fs::path(o.dir) / "checkpoints";
    if (leader) {
      fs::remove_all(o.dir);
      fs::create_directories(root);
    }
    engine.world().barrier();
    nlohmann::json meta = {{"program", "bench-checkpoint"}, {"model_config", io::model_config_json(config)}};
    train::TrainState state;
    state.step = 1;

    // Synchronous save.
    train::Checkpointer sync_saver(engine, train::CheckpointOptions{root, {2, 0}, false}, meta);
    engine.world().barrier();
    auto start = Clock::now();
    sync_saver.save(state);
    const auto saved = sync_saver.finish();
    double save_s = since(start);
    double slowest[1] = {save_s};
    engine.all_reduce_host(slowest, ReduceOp::Max);
    save_s = slowest[0];
    if (!saved || !saved->ok) throw std::runtime_error("the save failed: " + (saved ? saved->error : std::string("?")));
    const double bytes = static_cast<double>(saved->bytes);

    // dd over the same bytes, same directory, on rank 0 (the others wait).
    double dd_write_s = 0, dd_read_s = 0, dd_cold_read_s = 0;
    bool cold = false;
    if (leader) {
      const long blocks = static_cast<long>(std::ceil(bytes / (16.0 * (1 << 20))));
      const std::string file = (fs::path(o.dir) / "dd.bin").string();
      dd_write_s = timed_shell("dd if=/dev/zero of=" + file + " bs=16M count=" + std::to_string(blocks) +
                               " conv=fsync status=none");
      dd_read_s = timed_shell("dd if=" + file + " of=/dev/null bs=16M status=none");
    }
    engine.world().barrier();

    // Load (verify + read every box).
    start = Clock::now();
    const auto loaded = sync_saver.resume(saved->dir);
    double load_s = since(start);
    slowest[0] = load_s;
    engine.all_reduce_host(slowest, ReduceOp::Max);
    load_s = slowest[0];
    if (!loaded || loaded->step != 1) throw std::runtime_error("resume did not return the saved step");
    // The same from the disk, when the page cache can be emptied.
    if (leader) {
      const std::string file = (fs::path(o.dir) / "dd.bin").string();
      cold = drop_page_cache();
      if (cold) dd_cold_read_s = timed_shell("dd if=" + file + " of=/dev/null bs=16M status=none");
      fs::remove(file);
    }
    double cold_load_s = 0;
    double dropped[1] = {leader && cold && drop_page_cache() ? 1.0 : 0.0};
    engine.all_reduce_host(dropped, ReduceOp::Max);
    if (dropped[0] != 0) {
      engine.world().barrier();
      start = Clock::now();
      sync_saver.resume(saved->dir);
      slowest[0] = since(start);
      engine.all_reduce_host(slowest, ReduceOp::Max);
      cold_load_s = slowest[0];
    }

    // Steps without, then with, an asynchronous save started at the step boundary.
    train::Checkpointer async_saver(engine, train::CheckpointOptions{root, {2, 0}, true}, meta);
    double plain_s = 0, with_save_s = 0, stall_s = 0, background_s = 0;
    for (int i = 0; i < o.steps; ++i) {
      engine.world().barrier();
      start = Clock::now();
      step(nullptr);
      plain_s += since(start);
    }
    for (int i = 0; i < o.steps; ++i) {
      state.step = 10 + i;
      engine.world().barrier();
      start = Clock::now();
      async_saver.save(state);
      step(&async_saver);
      with_save_s += since(start);
      const auto report = async_saver.finish();  // outside the timed step: the write goes on in the background
      if (!report || !report->ok) throw std::runtime_error("an asynchronous save failed");
      stall_s += report->stall_s;
      background_s += report->write_s;
    }
    double per_rank[4] = {plain_s / o.steps, with_save_s / o.steps, stall_s / o.steps, background_s / o.steps};
    engine.all_reduce_host(per_rank, ReduceOp::Max);

    if (leader) {
      const double gb = bytes / 1e9;
      nlohmann::ordered_json out = {
          {"benchmark", "checkpoint"},
          {"model", "gpt2-124m"},
          {"layers", o.layers},
          {"world_size", engine.groups().world_size()},
          {"layout", {{"dp", engine.dp_size()}, {"tp", o.tp}, {"pp", o.pp}}},
          {"bytes", saved->bytes},
          {"save_s", save_s},
          {"save_gbps", gb / save_s},
          {"dd_write_s", dd_write_s},
          {"dd_write_gbps", gb / dd_write_s},
          {"save_vs_dd", dd_write_s / save_s},
          {"save_phases_rank0_s", {{"hdf5_write", saved->hdf5_write_s}, {"fsync", saved->fsync_s},
                                   {"verify", saved->verify_s}, {"commit", saved->commit_s}}},
          {"load_s", load_s},
          {"load_gbps", gb / load_s},
          {"dd_read_s", dd_read_s},
          {"dd_read_gbps", gb / dd_read_s},
          {"load_vs_dd", dd_read_s / load_s},
          {"page_cache_dropped", dropped[0] != 0},
          {"cold_load_s", cold_load_s},
          {"cold_load_gbps", cold_load_s > 0 ? gb / cold_load_s : 0.0},
          {"dd_cold_read_gbps", dd_cold_read_s > 0 ? gb / dd_cold_read_s : 0.0},
          {"cold_load_vs_dd", cold_load_s > 0 ? dd_cold_read_s / cold_load_s : 0.0},
          {"step_s", per_rank[0]},
          {"step_with_async_save_s", per_rank[1]},
          {"async_stall_s", per_rank[2]},
          {"async_stall_fraction_of_step", per_rank[2] / per_rank[0]},
          {"async_background_write_s", per_rank[3]},
          {"sync_save_fraction_of_step", save_s / per_rank[0]},
          {"rows", o.rows},
          {"seq", o.seq},
          {"threads", o.threads}};
      std::cout << out.dump(2) << std::endl;
      if (!o.keep) fs::remove_all(o.dir);
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench-checkpoint: [rank %d] %s\n", runtime.world_rank(), error.what());
    runtime.exit_after_failure(1);
    return 1;
  }
  return 0;
}
