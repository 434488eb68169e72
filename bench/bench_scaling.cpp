// bench-scaling: how does one training step of a small model behave under a dp × tp × pp
// layout? Builds a train::Engine for the layout (world size from mpirun, --tp and --pp given,
// dp the rest), runs --warmup untimed and --steps timed training steps — zero_grads,
// forward_backward through the pipeline schedule, reduce_gradients, loss reduction,
// grad_norm, AdamW — on random token ids from a fixed seed (throughput does not depend on
// the text), and rank 0 prints one JSON object on stdout and a one-line summary on stderr.
//
// Timing. Every step starts after a world barrier; its wall time is the slowest rank's (the
// per-rank times are max-reduced outside the timed region). tokens_per_s is the global batch
// (dp × micro_batches × micro_rows × seq tokens) over the median step. Communication: the
// Engine times every call on its tp, dp and pp communicators (the pp seconds include waiting
// for the neighbour stage); a rank's fraction per axis is its seconds summed over the timed
// steps over the summed step wall times, and the reported fractions are means over ranks.
// The world communicator (loss and grad-norm reductions, a few doubles) is not timed.
// Bubble: each rank's pipeline idle share 1 - Σcompute_s / Σtotal_s over the timed steps,
// averaged over the ranks of a stage (bubble_by_stage) and then over the stages, against
// (pp-1)/(m+pp-1). Each stage's total_s spans only its own schedule, so a stage that finishes
// early (the last one, before the first stage's final backward) does not count the wait at
// the end; bubble_makespan divides by the slowest stage's span of each step instead, as the
// formula does. Tensor-parallel all-reduces run inside forward and backward, so under tp > 1
// they count as pipeline compute.
//
// Errors: a layout or model that does not fit the world (world size not divisible by tp·pp,
// heads or vocabulary not divisible by tp, fewer layers than stages) is reported once by
// rank 0 and every rank exits with status 2; a failure during the steps aborts the world.
#include <mpi.h>
#include <sched.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/kernels/gemm/gemm.h"
#include "core/model/model_config.h"
#include "core/optim/grad_clip.h"
#include "io/record/run_record.h"
#include "launch/mpi_runtime.h"
#include "train/engine.h"
#include "train/lm_work.h"

namespace {

using namespace loom;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string family = "llama";
  std::int64_t d_model = 256, layers = 8, heads = 8, kv_heads = 4, d_ff = 0, vocab = 4096, seq = 128;
  std::int64_t micro_rows = 2;
  int micro_batches = 8, steps = 5, warmup = 2, threads = 1, tp = 1, pp = 1;
  std::string schedule = "1f1b";
  bool zero1 = false;
  std::vector<std::int64_t> stage_layers;  // empty: the Engine's balanced split
  std::uint64_t seed = 1234;
};

// What one rank adds up over the timed steps; gathered to every rank at the end.
// Laid out as kFields doubles per rank: tp, dp, pp seconds, pipeline total, compute, wait, stage.
struct RankTotals {
  double tp_s = 0, dp_s = 0, pp_s = 0, pipeline_total_s = 0, pipeline_compute_s = 0, pipeline_wait_s = 0;
  static constexpr int kFields = 7;
};

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// CPUs this process may run on: mpirun binds each rank to one core when it starts no more
// ranks than cores, which silently serialises --threads 2 (launch with --bind-to none).
int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
}

double round_places(double value, int places) {
  const double scale = std::pow(10.0, places);
  return std::round(value * scale) / scale;
}

// The ModelConfig the flags describe; throws std::invalid_argument naming the flag.
model::ModelConfig model_config(const Options& o) {
  const model::Family family = model::parse_family(o.family);
  // Defaults as the tiny Llama of configs/tiny-brown.yaml (d_ff 688 for d_model 256).
  const std::int64_t d_ff =
      o.d_ff > 0 ? o.d_ff : family == model::Family::GPT2 ? 4 * o.d_model : (8 * o.d_model / 3 + 7) / 8 * 8;
  const std::int64_t kv_heads = family == model::Family::GPT2 ? o.heads : o.kv_heads;
  model::ModelConfig config =
      model::ModelConfig::from_family(family, o.vocab, o.d_model, o.layers, o.heads, kv_heads, d_ff, o.seq);
  try {
    config.validate();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("the model flags (--d-model, --heads, --kv-heads, ...) do not fit: ") +
                                e.what());
  }
  return config;
}

// This data-parallel rank's batch [micro_batches * micro_rows, seq] of ids and targets: the
// same on every tp and pp rank of the replica (stage 0 reads the ids, the last stage the
// targets), different across replicas.
void random_batch(const Options& o, int dp_rank, Tensor& ids, Tensor& targets) {
  const std::int64_t rows = o.micro_batches * o.micro_rows;
  ids = Tensor::empty({rows, o.seq}, DType::I32);
  targets = Tensor::empty({rows, o.seq}, DType::I32);
  std::mt19937_64 rng(o.seed + 1000003ull * static_cast<std::uint64_t>(dp_rank));
  std::uniform_int_distribution<std::int32_t> token(0, static_cast<std::int32_t>(o.vocab - 1));
  for (std::int64_t i = 0; i < ids.numel(); ++i) {
    ids.data<std::int32_t>()[i] = token(rng);
    targets.data<std::int32_t>()[i] = token(rng);
  }
}

struct Measurements {
  std::vector<double> step_s;         // slowest rank's wall time of each timed step
  double pipeline_span_s = 0;         // Σ over timed steps of the slowest stage's total_s
  std::vector<double> loss;           // global mean loss of every step, warm-up included
  std::vector<double> ranks;          // world_size × RankTotals::kFields, every rank's sums
};

// Runs warm-up and timed steps; collective over the world.
Measurements run_steps(train::Engine& engine, const Options& o, const Tensor& ids, const Tensor& targets) {
  const double global_tokens = static_cast<double>(engine.dp_size() * o.micro_batches * o.micro_rows * o.seq);
  const float dloss = static_cast<float>(1.0 / global_tokens);
  // The last stage's tp rank 0 of each replica holds the loss sums of its rows.
  const bool counts_loss = engine.last_stage() && engine.groups().tp_rank() == 0;
  Measurements m;
  RankTotals totals;
  for (int step = 0; step < o.warmup + o.steps; ++step) {
    engine.world().barrier();
    engine.reset_comm_seconds();
    const auto start = Clock::now();
    engine.zero_grads();
    train::LmWork work(ids, targets, o.micro_rows, dloss);
    const train::StepTimes times = engine.forward_backward(work, o.micro_batches, o.micro_rows, o.seq);
    engine.reduce_gradients();
    double loss[2] = {counts_loss ? work.loss().sum : 0.0, counts_loss ? static_cast<double>(work.loss().count) : 0.0};
    engine.all_reduce_host(loss, ReduceOp::Sum);
    const double norm = engine.grad_norm();
    engine.optimizer_step(1e-3f, optim::clip_scale(norm, 1.0f));
    const double local_s = since(start);
    const train::Engine::CommSeconds comm = engine.comm_seconds();

    double slowest[2] = {local_s, times.pipeline.total_s};
    engine.all_reduce_host(slowest, ReduceOp::Max);
    m.loss.push_back(loss[1] > 0 ? loss[0] / loss[1] : std::nan(""));
    if (step < o.warmup) continue;
    m.step_s.push_back(slowest[0]);
    m.pipeline_span_s += slowest[1];
    totals.tp_s += comm.tp;
    totals.dp_s += comm.dp;
    totals.pp_s += comm.pp;
    totals.pipeline_total_s += times.pipeline.total_s;
    totals.pipeline_compute_s += times.pipeline.compute_s;
    totals.pipeline_wait_s += times.pipeline.wait_s;
  }
  const int world = engine.groups().world_size(), rank = engine.groups().world_rank();
  m.ranks.assign(static_cast<std::size_t>(world * RankTotals::kFields), 0.0);
  double* mine = m.ranks.data() + static_cast<std::ptrdiff_t>(rank) * RankTotals::kFields;
  const double fields[RankTotals::kFields] = {totals.tp_s,
                                              totals.dp_s,
                                              totals.pp_s,
                                              totals.pipeline_total_s,
                                              totals.pipeline_compute_s,
                                              totals.pipeline_wait_s,
                                              static_cast<double>(engine.pp_group().rank)};
  std::copy(fields, fields + RankTotals::kFields, mine);
  engine.all_reduce_host(m.ranks, ReduceOp::Sum);  // each rank fills only its own slots: a gather
  return m;
}

nlohmann::ordered_json report(train::Engine& engine, const model::ModelConfig& config, const Options& o,
                      const Measurements& m) {
  const int world = engine.groups().world_size(), pp = engine.groups().pp_size();
  double summed_step_s = 0;
  for (double s : m.step_s) summed_step_s += s;
  double comm_tp = 0, comm_dp = 0, comm_pp = 0, wait_s = 0;
  std::vector<double> stage_bubble(static_cast<std::size_t>(pp), 0.0), stage_makespan(stage_bubble);
  std::vector<int> stage_ranks(static_cast<std::size_t>(pp), 0);
  for (int r = 0; r < world; ++r) {
    const double* f = m.ranks.data() + static_cast<std::ptrdiff_t>(r) * RankTotals::kFields;
    comm_tp += f[0] / summed_step_s;
    comm_dp += f[1] / summed_step_s;
    comm_pp += f[2] / summed_step_s;
    wait_s += f[5];
    const auto stage = static_cast<std::size_t>(std::llround(f[6]));
    stage_bubble[stage] += f[3] > 0 ? 1.0 - f[4] / f[3] : 0.0;
    stage_makespan[stage] += m.pipeline_span_s > 0 ? 1.0 - f[4] / m.pipeline_span_s : 0.0;
    ++stage_ranks[stage];
  }
  comm_tp /= world;
  comm_dp /= world;
  comm_pp /= world;
  nlohmann::ordered_json by_stage = nlohmann::ordered_json::array();
  double bubble = 0, makespan_bubble = 0;
  for (int s = 0; s < pp; ++s) {
    const double value = stage_bubble[static_cast<std::size_t>(s)] / stage_ranks[static_cast<std::size_t>(s)];
    by_stage.push_back(round_places(value, 4));
    bubble += value / pp;
    makespan_bubble += stage_makespan[static_cast<std::size_t>(s)] / stage_ranks[static_cast<std::size_t>(s)] / pp;
  }
  const double step_median = median(m.step_s);
  const std::int64_t global_tokens = engine.dp_size() * o.micro_batches * o.micro_rows * o.seq;
  const train::MemoryReport memory = engine.memory(o.micro_batches, o.micro_rows, o.seq);
  nlohmann::ordered_json step_list = nlohmann::ordered_json::array();
  for (double s : m.step_s) step_list.push_back(round_places(s, 5));
  return {
      {"benchmark", "bench-scaling"},
      {"world_size", world},
      {"dp", engine.dp_size()},
      {"tp", engine.groups().tp_size()},
      {"pp", pp},
      {"schedule", o.schedule},
      {"zero1", o.zero1},
      {"stage_layers", train::stage_layer_counts(config, pp, o.stage_layers)},
      {"micro_batches", o.micro_batches},
      {"micro_rows", o.micro_rows},
      {"seq", o.seq},
      {"model", {{"family", o.family}, {"d_model", config.d_model}, {"layers", config.n_layers},
                 {"heads", config.n_heads}, {"kv_heads", config.n_kv_heads}, {"d_ff", config.d_ff},
                 {"vocab", config.vocab_size}, {"parameters", config.parameter_count()}}},
      {"threads_per_rank", o.threads},
      {"affinity_cpus_rank0", affinity_cpus()},
      {"gemm_library", cpu::gemm_library()},
      {"steps_timed", o.steps},
      {"warmup_steps", o.warmup},
      {"global_tokens_per_step", global_tokens},
      {"tokens_per_s", round_places(static_cast<double>(global_tokens) / step_median, 1)},
      {"step_s_median", round_places(step_median, 5)},
      {"step_s", step_list},
      {"comm_fraction", round_places(comm_tp + comm_dp + comm_pp, 4)},
      {"comm_fraction_by_axis", {{"tp", round_places(comm_tp, 4)}, {"dp", round_places(comm_dp, 4)},
                                 {"pp", round_places(comm_pp, 4)}}},
      {"pipeline_wait_s_mean", round_places(wait_s / world / static_cast<double>(m.step_s.size()), 5)},
      {"bubble_measured", round_places(bubble, 4)},
      {"bubble_by_stage", by_stage},
      {"bubble_makespan", round_places(makespan_bubble, 4)},
      {"bubble_theoretical", round_places(parallel::PipelineTimes::theoretical_bubble(pp, o.micro_batches), 4)},
      {"memory_bytes_rank0", {{"parameters", memory.parameters}, {"gradients", memory.gradients},
                              {"optimizer", memory.optimizer}, {"activations", memory.activations},
                              {"total", memory.total()}}},
      {"loss_first_step", m.loss.front()},
      {"loss_last_step", m.loss.back()},
      {"host", record::host_info()}};
}

void print_summary(const nlohmann::ordered_json& out) {
  std::fprintf(stderr,
               "bench-scaling: dp %d x tp %d x pp %d (%d ranks), %s, m=%d: %.0f tokens/s, step %.3f s, comm %.1f%% "
               "(tp %.1f%%, dp %.1f%%, pp %.1f%%), bubble %.3f (theory %.3f)\n",
               out["dp"].get<int>(), out["tp"].get<int>(), out["pp"].get<int>(), out["world_size"].get<int>(),
               out["schedule"].get<std::string>().c_str(), out["micro_batches"].get<int>(),
               out["tokens_per_s"].get<double>(), out["step_s_median"].get<double>(),
               100 * out["comm_fraction"].get<double>(), 100 * out["comm_fraction_by_axis"]["tp"].get<double>(),
               100 * out["comm_fraction_by_axis"]["dp"].get<double>(),
               100 * out["comm_fraction_by_axis"]["pp"].get<double>(), out["bubble_measured"].get<double>(),
               out["bubble_theoretical"].get<double>());
}

void add_options(CLI::App& app, Options& o) {
  app.add_option("--tp", o.tp, "tensor-parallel ranks per stage")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--pp", o.pp, "pipeline stages")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--family", o.family, "model family")->capture_default_str()->check(CLI::IsMember({"llama", "gpt2"}));
  app.add_option("--d-model", o.d_model, "hidden width")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--layers", o.layers, "transformer blocks")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--heads", o.heads, "attention heads")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--kv-heads", o.kv_heads, "key/value heads (llama; gpt2 uses --heads)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--d-ff", o.d_ff, "MLP width (0: 4*d_model for gpt2, 8/3*d_model rounded up to 8 for llama)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--vocab", o.vocab, "vocabulary size")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seq", o.seq, "sequence length")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--micro-rows", o.micro_rows, "sequences per micro-batch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--micro-batches", o.micro_batches, "micro-batches per step per data-parallel rank")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", o.steps, "timed steps (median reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--schedule", o.schedule, "pipeline schedule")
      ->capture_default_str()
      ->check(CLI::IsMember({"1f1b", "gpipe"}));
  app.add_option("--stage-layers", o.stage_layers, "layers per pipeline stage, e.g. 5,3 (default: balanced)")
      ->delimiter(',');
  app.add_flag("--zero1", o.zero1, "shard the optimizer state over data-parallel ranks (ZeRO-1)");
  app.add_option("--threads", o.threads, "GEMM/OpenMP threads per rank")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of the weights and the random token ids")->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  launch::MpiRuntime runtime(&argc, &argv);
  const int rank = runtime.world_rank();

  CLI::App app{"bench-scaling: training-step throughput, communication share and pipeline bubble of a small "
               "model under a dp x tp x pp layout; run under mpirun (dp = ranks / (tp*pp)), rank 0 prints one "
               "JSON object"};
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
  std::unique_ptr<train::Engine> engine;
  model::ModelConfig config;
  try {
    config = model_config(o);
    train::EngineOptions options;
    options.layout = launch::ParallelLayout{o.tp, o.pp};
    options.schedule = parallel::parse_schedule(o.schedule);
    options.zero1 = o.zero1;
    options.stage_layers = o.stage_layers;
    // The checks before any communicator are identical on every rank, so all of them land here.
    engine = std::make_unique<train::Engine>(config, options, *backend);
  } catch (const std::invalid_argument& error) {
    if (rank == 0) std::fprintf(stderr, "bench-scaling: %s\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench-scaling: [rank %d] %s\n", rank, error.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  try {
    engine->init_weights(o.seed);
    engine->make_optimizer(optim::AdamWConfig{});
    Tensor ids, targets;
    random_batch(o, engine->dp_rank(), ids, targets);
    const Measurements measured = run_steps(*engine, o, ids, targets);
    if (engine->leader()) {
      const nlohmann::ordered_json out = report(*engine, config, o, measured);
      std::cout << out.dump(2) << std::endl;
      print_summary(out);
      if (o.threads > affinity_cpus()) {
        std::fprintf(stderr, "bench-scaling: warning: --threads %d but rank 0 may run on %d CPU(s); mpirun binds "
                     "ranks to cores unless given --bind-to none\n", o.threads, affinity_cpus());
      }
    }
  } catch (const std::exception& error) {
    // A rank that throws may leave the others waiting inside a collective; abort them all.
    std::fprintf(stderr, "bench-scaling: [rank %d] %s\n", rank, error.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
