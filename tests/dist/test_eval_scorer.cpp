// loom-eval's scorer (eval/scorer.h): a request's log-likelihood does not depend on what else
// shares its batch. Requests of ragged lengths (some longer than the model's window) are scored
// in batches of one padding bucket, as the runner forms them, at batch sizes 1, 3, 4 and 16
// and in shuffled orders; every result must be bit-identical. (Padding to another length does
// change the last bits: the attention kernel's tiling follows the padded length.)
// Under mpirun -np 2 with tp 2 the results must match the single-process run within 1e-5
// relative. (Agreement with PyTorch: tests/reference/test_eval_reference.py.) Random-init
// tiny Llama; runs in a second.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "eval/scorer.h"
#include "launch/mpi_runtime.h"
#include "train/engine.h"

using namespace loom;

namespace {

int g_failed = 0, g_checks = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failed;
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
  }
}

constexpr std::int64_t kVocab = 128;

std::vector<eval::LoglikRequest> requests() {
  std::mt19937 rng(7);
  std::vector<eval::LoglikRequest> out;
  for (int i = 0; i < 23; ++i) {
    eval::LoglikRequest r;
    const int context = 1 + static_cast<int>(rng() % 20), continuation = 1 + static_cast<int>(rng() % 12);
    for (int j = 0; j < context; ++j) r.context.push_back(static_cast<std::int32_t>(rng() % kVocab));
    for (int j = 0; j < continuation; ++j) r.continuation.push_back(static_cast<std::int32_t>(rng() % kVocab));
    out.push_back(std::move(r));
  }
  // Longer than the window (32): the context is cut from the left.
  eval::LoglikRequest longer;
  for (int j = 0; j < 40; ++j) longer.context.push_back(static_cast<std::int32_t>(j * 5 % kVocab));
  longer.continuation = {3, 9, 27};
  out.push_back(longer);
  return out;
}

// Batches of up to `batch` requests of one bucket (as loom-eval's runner forms them), in `order`.
std::vector<eval::LoglikResult> score_all(train::Engine& engine, const std::vector<eval::LoglikRequest>& reqs,
                                          std::vector<std::size_t> order, std::size_t batch) {
  const std::int64_t window = engine.config().max_seq_len;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return eval::loglik_bucket(reqs[a], window) > eval::loglik_bucket(reqs[b], window);
  });
  std::vector<eval::LoglikResult> out(reqs.size());
  for (std::size_t at = 0; at < order.size();) {
    std::vector<const eval::LoglikRequest*> part;
    const std::int64_t bucket = eval::loglik_bucket(reqs[order[at]], window);
    std::size_t end = at;
    while (end < order.size() && end < at + batch && eval::loglik_bucket(reqs[order[end]], window) == bucket) {
      part.push_back(&reqs[order[end++]]);
    }
    const auto scored = eval::score_loglik(engine, part, static_cast<std::int64_t>(part.size()), 0);
    for (std::size_t i = 0; i < part.size(); ++i) out[order[at + i]] = scored[i];
    at = end;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  launch::MpiRuntime runtime(&argc, &argv);
  auto backend = make_cpu_backend();
  model::ModelConfig config = model::ModelConfig::from_family(model::Family::Llama, kVocab, 64, 2, 4, 2, 128, 32);
  config.init_std = 0.1f;
  config.validate();
  train::EngineOptions options;
  options.layout = launch::ParallelLayout{runtime.world_size(), 1};
  train::Engine engine(config, options, *backend);
  engine.init_weights(11);
  const std::vector<eval::LoglikRequest> reqs = requests();
  std::vector<std::size_t> order(reqs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const auto base = score_all(engine, reqs, order, 1);
  for (const std::size_t batch : {3, 4, 16}) {
    std::vector<std::size_t> shuffled = order;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(static_cast<unsigned>(batch)));
    const auto got = score_all(engine, reqs, shuffled, batch);
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      check(got[i].logp == base[i].logp && got[i].tokens == base[i].tokens,
            "request " + std::to_string(i) + " at batch " + std::to_string(batch) + ": " + std::to_string(got[i].logp) +
                " vs " + std::to_string(base[i].logp) + " at batch 1");
    }
  }
  // Against the single process's numbers, written by the first run and read by the tp run.
  const char* file = "build/eval-scorer-reference.txt";
  if (argc > 1) file = argv[1];
  if (runtime.world_size() == 1) {
    if (FILE* f = std::fopen(file, "w")) {
      for (const auto& r : base) std::fprintf(f, "%.17g %lld\n", r.logp, static_cast<long long>(r.tokens));
      std::fclose(f);
    }
    check(base.back().tokens == 3, "the request longer than the window scores its whole continuation");
    for (const auto& r : base) check(std::isfinite(r.logp) && r.logp < 0, "log-likelihoods are finite and negative");
  } else if (FILE* f = std::fopen(file, "r")) {
    for (std::size_t i = 0; i < base.size(); ++i) {
      double want = 0;
      long long tokens = 0;
      check(std::fscanf(f, "%lf %lld", &want, &tokens) == 2, "reference line " + std::to_string(i));
      check(std::fabs(base[i].logp - want) <= 1e-5 * std::fabs(want) + 1e-6 && base[i].tokens == tokens,
            "tp request " + std::to_string(i) + ": " + std::to_string(base[i].logp) + " vs " + std::to_string(want));
    }
    std::fclose(f);
  } else {
    check(false, std::string("no single-process reference in ") + file);
  }
  int failed = g_failed;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (runtime.world_rank() == 0) {
    std::printf("eval scorer, %d ranks: %d checks, %d failed\n", runtime.world_size(), g_checks, failed);
  }
  return failed == 0 ? 0 : 1;
}
