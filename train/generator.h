// Batched generation on a model trained under any tp × pp layout, for trainers that sample
// from their policy (PPO, GRPO) and for evaluation.
//
// Run by every rank of one model replica: the tp × pp ranks that share a dp rank call
// generate() together with the same prompts and config (checked: a mismatch throws
// std::invalid_argument on every rank of the replica). Different dp ranks may pass
// different prompts, even different batch sizes; nothing is communicated over dp.
//
// Per forward (the prefill, then one token per sequence a step) the first stage embeds
// the ids, each stage runs its layers over its own KvCache (its layers only) and sends the
// hidden state [B, T, C] to the next stage (pp point-to-point); the last stage's LM head
// all-gathers its vocabulary slices over tp, so every tp rank of that stage holds the same
// full logits and, with the same counter-based sampler, picks the same tokens. The last
// stage broadcasts the step's choice (model::GenerationSteps) over pp, so every rank
// knows the next inputs and whether to go on. The result (tokens, stop flags, and the
// slowest rank's timings) is identical on every rank of the replica, and equal to
// model::generate() on the whole model in one process up to f32 summation order.
//
// The stages work one after another on the whole batch (no micro-batch interleaving), so
// with pp stages each is busy about 1/pp of the time: pipeline parallelism here is for
// models that do not fit one rank, not for speed.
//
// Collectives go through the engine's tp and pp communicators, so they are timed and
// marked for the hang watchdog like training's. Ranks: collective over the replica.
// Threads: the main thread (MPI_THREAD_FUNNELED).
#pragma once

#include <cstdint>
#include <vector>

#include "core/model/generation.h"
#include "train/engine.h"

namespace loom::train {

// The engine's model must have an LM head. Throws std::invalid_argument (on every rank of
// the replica) for bad prompts or settings, as model::generate, and for prompts or settings
// that differ between the replica's ranks.
model::GenerationResult generate(Engine& engine, const std::vector<std::vector<std::int32_t>>& prompts,
                                 const model::GenerationConfig& config);

}  // namespace loom::train
