// Generation under tensor and pipeline parallelism (train::generate) against the
// single-process model::generate on the whole model, under mpirun -np 2 and 4.
//
// Layouts tp 2, pp 2 and tp 2 x pp 2 (those that fit the world; with 4 ranks tp 2 and pp 2
// have two data-parallel replicas, which generate from different prompts). Models are
// random-init and tiny, with a large init std so logits are sharp and greedy argmax has no
// near ties (checked: the reference's smallest top-1/top-2 gap must exceed 2e-5 of the
// largest |logit|, about 20 times the 1e-6 relative error of cached decode logits):
//   gpt2           learned positions, tied head (pp: the last stage holds a tied replica)
//   llama kv=1     GQA with fewer kv heads than tp ranks (replicated kv heads), untied head
//   llama kv=2     GQA with the kv heads split over tp
// Each rank builds the whole model with the same seed (Engine::init_weights and
// Transformer::init_weights are layout-independent) and checks, for its own replica's
// ragged prompts:
//   * greedy, 16 new tokens: equal token for token to the whole model;
//   * greedy with a stop token taken from that output: same tokens and stop flags;
//   * sampled (temperature 1, top-k 50, seeded): two runs equal, equal to the whole model,
//     and the same on every rank of the replica (token hashes compared over the world);
//   * prompts that differ inside a replica: every rank throws std::invalid_argument.
#include <mpi.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/mix64.h"
#include "core/model/generation.h"
#include "launch/mpi_runtime.h"
#include "train/engine.h"
#include "train/generator.h"

using namespace loom;
using Prompts = std::vector<std::vector<std::int32_t>>;

namespace {

int g_failed = 0, g_checks = 0, g_rank = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failed;
    std::fprintf(stderr, "[rank %d] FAILED: %s\n", g_rank, what.c_str());
  }
}

constexpr std::int64_t kVocab = 96;
constexpr std::int64_t kNewTokens = 16;

struct Case {
  std::string name;
  model::ModelConfig config;
};

model::ModelConfig sharp(model::ModelConfig c) {
  c.init_std = 0.25f;
  c.validate();
  return c;
}

std::vector<Case> cases() {
  using model::Family;
  using model::ModelConfig;
  std::vector<Case> out;
  out.push_back({"gpt2", sharp(ModelConfig::from_family(Family::GPT2, kVocab, 64, 4, 4, 4, 128, 64))});
  ModelConfig kv1 = ModelConfig::from_family(Family::Llama, kVocab, 64, 4, 4, 1, 96, 64);
  kv1.tie_embeddings = false;
  out.push_back({"llama kv=1", sharp(kv1)});
  out.push_back({"llama kv=2", sharp(ModelConfig::from_family(Family::Llama, kVocab, 64, 4, 4, 2, 96, 64))});
  return out;
}

// Ragged prompts, different for each data-parallel replica.
Prompts prompts_for(int dp_rank) {
  Prompts prompts;
  const std::int64_t lengths[] = {5, 9, 3};
  for (int b = 0; b < 3; ++b) {
    std::vector<std::int32_t> p;
    for (std::int64_t i = 0; i < lengths[b]; ++i) {
      p.push_back(static_cast<std::int32_t>((i * 31 + b * 17 + dp_rank * 7 + 5) % kVocab));
    }
    prompts.push_back(p);
  }
  return prompts;
}

std::string text(const std::vector<std::int32_t>& tokens) {
  std::string s;
  for (std::int32_t t : tokens) {
    if (!s.empty()) s += ' ';
    s += std::to_string(t);
  }
  return s;
}

void check_same(const model::GenerationResult& got, const model::GenerationResult& want, const std::string& where) {
  check(got.tokens.size() == want.tokens.size(), where + ": sequence count");
  for (std::size_t b = 0; b < std::min(got.tokens.size(), want.tokens.size()); ++b) {
    check(got.tokens[b] == want.tokens[b], where + ": sequence " + std::to_string(b) + " gave [" + text(got.tokens[b]) +
                                               "], the whole model [" + text(want.tokens[b]) + "]");
    check(got.stopped[b] == want.stopped[b], where + ": sequence " + std::to_string(b) + " stop flag");
  }
  check(got.new_tokens == want.new_tokens, where + ": new token count " + std::to_string(got.new_tokens) + " vs " +
                                               std::to_string(want.new_tokens));
}

// The smallest gap between the two largest logits over every greedy step of the reference.
// Also returns the largest |logit| seen, the scale f32 rounding differences grow with.
double smallest_greedy_gap(model::Transformer& whole, const Prompts& prompts, const model::GenerationResult& greedy,
                           double& largest) {
  double gap = std::numeric_limits<double>::infinity();
  largest = 0.0;
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    std::vector<std::int32_t> seq = prompts[b];
    seq.insert(seq.end(), greedy.tokens[b].begin(), greedy.tokens[b].end() - 1);
    const auto T = static_cast<std::int64_t>(seq.size());
    model::KvCache cache = whole.make_kv_cache(1, T);
    Tensor ids = Tensor::empty({1, T}, DType::I32);
    std::copy(seq.begin(), seq.end(), ids.data<std::int32_t>());
    const Tensor& logits = whole.forward_decode(ids, cache, 0);
    for (std::int64_t t = static_cast<std::int64_t>(prompts[b].size()) - 1; t < T; ++t) {
      std::vector<float> row(logits.data<float>() + t * kVocab, logits.data<float>() + (t + 1) * kVocab);
      std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<float>());
      gap = std::min(gap, static_cast<double>(row[0] - row[1]));
      for (float x : row) largest = std::max(largest, static_cast<double>(std::fabs(x)));
    }
  }
  return gap;
}

// A hash of every token and stop flag, in 52 bits (exact as a double).
double result_hash(const model::GenerationResult& r) {
  std::uint64_t h = 0;
  for (std::size_t b = 0; b < r.tokens.size(); ++b) {
    h = mix64(h ^ (r.stopped[b] ? 1u : 2u));
    for (std::int32_t t : r.tokens[b]) h = mix64(h ^ static_cast<std::uint32_t>(t));
  }
  return static_cast<double>(h >> 12);
}

// A tp shard's forward_decode gives the whole model's full [B, T, V] logits (prefill, then
// one decode step), within f32 rounding, bit-identical on every tp rank.
void check_tp_logits(train::Engine& engine, model::Transformer& whole, const Prompts& prompts,
                     const std::string& where) {
  model::Transformer& shard = engine.model();
  const auto B = static_cast<std::int64_t>(prompts.size());
  const std::int64_t T = 3;
  Tensor ids = Tensor::empty({B, T}, DType::I32), next = Tensor::empty({B, 1}, DType::I32);
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t t = 0; t < T; ++t) ids.data<std::int32_t>()[b * T + t] = prompts[static_cast<std::size_t>(b)][t];
    next.data<std::int32_t>()[b] = static_cast<std::int32_t>((b * 13 + 1) % kVocab);
  }
  model::KvCache shard_cache = shard.make_kv_cache(B, T + 1), whole_cache = whole.make_kv_cache(B, T + 1);
  for (int step = 0; step < 2; ++step) {
    const Tensor& in = step == 0 ? ids : next;
    const std::int64_t pos = step == 0 ? 0 : T;
    const Tensor& got = shard.forward_decode(in, shard_cache, pos);
    const Tensor& want = whole.forward_decode(in, whole_cache, pos);
    const std::string what = where + (step == 0 ? " prefill" : " decode") + " logits";
    check(got.ndim() == 3 && got.dim(0) == B && got.dim(1) == in.dim(1) && got.dim(2) == kVocab,
          what + ": shape " + got.describe());
    if (got.numel() != want.numel()) return;
    double diff = 0.0, scale = 0.0;
    std::uint64_t bits = 0;
    for (std::int64_t i = 0; i < got.numel(); ++i) {
      const float g = got.data<float>()[i], w = want.data<float>()[i];
      diff = std::max(diff, static_cast<double>(std::fabs(g - w)));
      scale = std::max(scale, static_cast<double>(std::fabs(w)));
      bits = mix64(bits ^ std::bit_cast<std::uint32_t>(g));
    }
    check(diff <= 2e-6 * scale, what + " differ from the whole model's by " + std::to_string(diff) + " (largest " +
                                    std::to_string(scale) + ")");
    std::array<double, 2> hash{static_cast<double>(bits >> 12), -static_cast<double>(bits >> 12)};
    shard.tensor_parallel().comm->all_reduce_host(hash, ReduceOp::Max);
    check(hash[0] == -hash[1], what + " are not bit-identical on every tp rank");
  }
}

void run(const Case& c, const launch::ParallelLayout& layout, Backend& backend) {
  train::EngineOptions options;
  options.layout = layout;
  train::Engine engine(c.config, options, backend);
  engine.init_weights(11);
  model::Transformer whole(c.config, model::ShardSpec::whole(c.config), model::HeadKind::LM, backend);
  whole.init_weights(11);

  const std::string where = c.name + " tp" + std::to_string(layout.tp) + " pp" + std::to_string(layout.pp) +
                            " dp rank " + std::to_string(engine.dp_rank());
  const Prompts prompts = prompts_for(engine.dp_rank());

  model::GenerationConfig greedy;
  greedy.max_new_tokens = kNewTokens;
  greedy.sampling.temperature = 0.0f;
  const model::GenerationResult want = model::generate(whole, prompts, greedy);
  double largest = 0.0;
  const double gap = smallest_greedy_gap(whole, prompts, want, largest);
  check(gap > 2e-5 * largest, where + ": the reference's smallest top-2 logit gap " + std::to_string(gap) +
                                  " is too small next to logits up to " + std::to_string(largest) +
                                  " for an exact comparison");
  check(want.new_tokens == 3 * kNewTokens, where + ": the reference made " + std::to_string(want.new_tokens) + " tokens");
  check_same(train::generate(engine, prompts, greedy), want, where + " greedy");

  if (layout.pp == 1) check_tp_logits(engine, whole, prompts, where);

  model::GenerationConfig stopping = greedy;
  stopping.stop_tokens = {want.tokens[0][4]};
  const model::GenerationResult want_stop = model::generate(whole, prompts, stopping);
  check(want_stop.stopped[0] && want_stop.tokens[0].size() <= 5, where + ": the stop token did not stop sequence 0");
  check_same(train::generate(engine, prompts, stopping), want_stop, where + " greedy with a stop token");

  model::GenerationConfig sampled;
  sampled.max_new_tokens = kNewTokens;
  sampled.sampling.temperature = 1.0f;
  sampled.sampling.top_k = 50;
  sampled.sampling.seed = 1234;
  const model::GenerationResult first = train::generate(engine, prompts, sampled);
  const model::GenerationResult second = train::generate(engine, prompts, sampled);
  check_same(second, first, where + " sampled, second run");
  check_same(first, model::generate(whole, prompts, sampled), where + " sampled");
  // Every rank of a replica must hold the same tokens: max and min of the hash agree over
  // the ranks sharing this dp rank (all_reduce over the world of a per-replica slot).
  std::vector<double> hi(static_cast<std::size_t>(engine.dp_size()), -std::numeric_limits<double>::infinity()),
      lo = hi;
  hi[static_cast<std::size_t>(engine.dp_rank())] = result_hash(first);
  lo[static_cast<std::size_t>(engine.dp_rank())] = -result_hash(first);
  engine.all_reduce_host(hi, ReduceOp::Max);
  engine.all_reduce_host(lo, ReduceOp::Max);
  const auto me = static_cast<std::size_t>(engine.dp_rank());
  check(hi[me] == -lo[me], where + ": the ranks of the replica sampled different tokens");

  // One rank per replica (the last tp rank of the last stage) changes a prompt token.
  Prompts odd = prompts;
  const auto& groups = engine.groups();
  if (groups.tp_rank() == layout.tp - 1 && groups.pp_rank() == layout.pp - 1) odd[1][2] = (odd[1][2] + 1) % kVocab;
  bool threw = false;
  try {
    train::generate(engine, odd, greedy);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("different prompts") != std::string::npos;
  }
  check(threw, where + ": prompts differing inside the replica were not refused");
}

}  // namespace

int main(int argc, char** argv) {
  launch::MpiRuntime runtime(&argc, &argv);
  const int world = runtime.world_size();
  g_rank = runtime.world_rank();
  auto backend = make_cpu_backend();
  const launch::ParallelLayout layouts[] = {{2, 1}, {1, 2}, {2, 2}};
  int layouts_run = 0;
  for (const launch::ParallelLayout& layout : layouts) {
    if (world % (layout.tp * layout.pp) != 0) continue;
    ++layouts_run;
    for (const Case& c : cases()) {
      try {
        run(c, layout, *backend);
      } catch (const std::exception& e) {
        check(false, c.name + " tp" + std::to_string(layout.tp) + " pp" + std::to_string(layout.pp) +
                         " threw: " + e.what());
      }
    }
  }
  int failed = g_failed;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0) {
    std::printf("distributed generation, %d ranks, %d layouts: %d checks per rank, %d failed over all ranks\n", world,
                layouts_run, g_checks, failed);
  }
  return failed == 0 && layouts_run > 0 ? 0 : 1;
}
