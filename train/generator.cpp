#include "train/generator.h"

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <stdexcept>

#include "core/mix64.h"
#include "core/transfer.h"

namespace loom::train {
namespace {

// Hidden states between stages; the training schedules use tags 2i and 2i+1 per micro-batch.
constexpr int kHiddenTag = 30001;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Everything that decides the generated tokens, hashed to 52 bits (exact in a double).
double fingerprint(const std::vector<std::vector<std::int32_t>>& prompts, const model::GenerationConfig& config) {
  std::uint64_t h = mix64(prompts.size());
  auto add = [&h](std::uint64_t x) { h = mix64(h ^ x); };
  for (const auto& prompt : prompts) {
    add(prompt.size());
    for (std::int32_t id : prompt) add(static_cast<std::uint32_t>(id));
  }
  add(static_cast<std::uint64_t>(config.max_new_tokens));
  add(std::bit_cast<std::uint32_t>(config.sampling.temperature));
  add(static_cast<std::uint64_t>(config.sampling.top_k));
  add(std::bit_cast<std::uint32_t>(config.sampling.top_p));
  add(config.sampling.seed);
  add(config.stop_tokens.size());
  for (std::int32_t id : config.stop_tokens) add(static_cast<std::uint32_t>(id));
  add(config.sequence_ids.size());
  for (std::uint64_t id : config.sequence_ids) add(id);
  return static_cast<double>(h >> 12);
}

// Every rank of the replica learns whether all of them hold the same fingerprint: compared
// over tp (each stage), then pp (each tp column), then the verdict spread over tp again, so
// either every rank throws or none does.
void check_replica_agrees(Comm* tp, Comm* pp, double mine) {
  double mismatch = 0.0;
  auto compare = [&](Comm* comm) {
    if (comm == nullptr) return;
    std::array<double, 3> v{mine, -mine, mismatch};
    comm->all_reduce_host(v, ReduceOp::Max);
    mismatch = (v[0] != -v[1] || v[2] != 0.0) ? 1.0 : 0.0;
  };
  compare(tp);
  compare(pp);
  compare(tp);
  if (mismatch != 0.0) {
    throw std::invalid_argument(
        "train::generate: the ranks of one model replica (its tp x pp ranks) were given different prompts or "
        "generation settings; every rank of a replica must pass the same");
  }
}

}  // namespace

model::GenerationResult generate(Engine& engine, const std::vector<std::vector<std::int32_t>>& prompts,
                                 const model::GenerationConfig& config) {
  if (engine.options().head != model::HeadKind::LM) {
    throw std::invalid_argument("train::generate: the model has a " +
                                std::string(model::head_kind_name(engine.options().head)) +
                                " head; generation needs an LM head");
  }
  model::Transformer& model = engine.model();
  const parallel::PpGroup& pp = engine.pp_group();
  Comm* tp = model.tensor_parallel().active() ? model.tensor_parallel().comm : nullptr;
  check_replica_agrees(tp, pp.comm, fingerprint(prompts, config));

  model::GenerationSteps steps(prompts, config, engine.config().vocab_size);
  if (steps.trivial()) return steps.result();
  model::KvCache cache = model.make_kv_cache(steps.batch(), steps.capacity());

  // One forward through every stage; the last stage then chooses the next inputs and
  // every stage learns them.
  Backend& backend = model.backend();
  Tensor host_logits, device_choice;
  auto step = [&](const Tensor& ids, std::int64_t pos, std::int64_t choose_pos) {
    const Tensor* hidden = nullptr;
    if (pp.first()) {
      hidden = &model.decode_embed(ids, pos);
    } else {
      Tensor& in = model.decode_input(ids.dim(0), ids.dim(1));
      pp.comm->recv(in, pp.rank - 1, kHiddenTag);
      hidden = &in;
    }
    const Tensor& out = model.decode_blocks(*hidden, cache, pos);
    if (pp.last()) {
      steps.choose(model::last_logits_on_host(backend, model.decode_head(out), host_logits), choose_pos);
    } else {
      pp.comm->send(out, pp.rank + 1, kHiddenTag);
    }
    if (pp.size > 1 && backend.device() == Device::CPU) {
      pp.comm->broadcast(steps.choice(), pp.size - 1);
      if (!pp.last()) steps.apply(steps.choice());
    } else if (pp.size > 1) {
      // The pipeline comm moves device memory (NCCL): the choice travels through a device copy.
      Tensor& shared = fit_buffer(device_choice, steps.choice(), backend.device());
      if (pp.last()) backend.copy(steps.choice(), shared);
      pp.comm->broadcast(shared, pp.size - 1);
      if (!pp.last()) {
        backend.copy(shared, steps.choice());
        steps.apply(steps.choice());
      }
    }
  };

  model::GenerationResult& result = steps.result();
  const auto t0 = Clock::now();
  step(steps.prefill_ids(), 0, steps.prefill_length());
  result.prefill_seconds = seconds_since(t0);
  const auto t1 = Clock::now();
  for (std::int64_t pos = steps.prefill_length(); !steps.finished(); ++pos) step(steps.step_ids(), pos, pos + 1);
  result.decode_seconds = seconds_since(t1);

  // The slowest rank's times, so that every rank returns the same result.
  std::array<double, 2> times{result.prefill_seconds, result.decode_seconds};
  if (pp.comm) pp.comm->all_reduce_host(times, ReduceOp::Max);
  if (tp) tp->all_reduce_host(times, ReduceOp::Max);
  result.prefill_seconds = times[0];
  result.decode_seconds = times[1];
  const double total = times[0] + times[1];
  result.tokens_per_second = total > 0.0 ? static_cast<double>(result.new_tokens) / total : 0.0;
  return result;
}

}  // namespace loom::train
