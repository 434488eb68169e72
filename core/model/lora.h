// LoRA adapters beyond the forward/backward (layers.h LoraAdapter, block.cpp): merging them
// into the base weights, and completing their gradients over tensor parallelism.
//
// Merging: W += (alpha / r) · B · A for every adapted linear gives a plain model (no adapter
// entries) whose outputs equal the adapter model's up to rounding. It works on any shard:
// a column-parallel W's rows pair with B's rows and the replicated A; a row-parallel W's
// columns with A's columns and the replicated B.
//
// Tensor parallelism: the replicated half of an adapter (A of a column-parallel target, B of
// a row-parallel one) gets only this rank's share of its gradient, and B of attn.qkv has the
// k/v rows of a replicated kv head on several ranks, each with the gradient of its own query
// heads; sum_lora_grads_over_tp completes both (like parallel::sum_replicated_kv_grads for
// the base weights).
//
// Threads: one caller per model. Ranks: sum_lora_grads_over_tp is collective over the tp
// group; merge_lora communicates nothing.
#pragma once

#include <memory>

#include "core/backend.h"
#include "core/model/lora_config.h"
#include "core/model/transformer.h"
#include "core/parallel/tensor_parallel.h"

namespace loom::model {

// A model of the same config, shard and head as `model`, without adapters, whose base
// weights are `model`'s with its adapters merged in. `model` without LoRA: a plain copy.
std::unique_ptr<Transformer> merge_lora(const Transformer& model, Backend& backend);

// Adds (alpha / r) · B · A into every adapted weight of `plain` (which holds no adapters),
// reading the adapters from `adapters` (a set built with `lora` for the same shard).
void merge_lora_into(const ParameterSet& adapters, const LoraConfig& lora, ParameterSet& plain, Backend& backend);

// Sums the partial gradients of the adapters' replicated halves and replicated kv rows over
// the tp group (no-op for tp = 1 or a set without adapters). Once per optimizer step, after
// the last micro-batch's backward; before or after the data-parallel sum.
void sum_lora_grads_over_tp(const parallel::TpGroup& tp, Backend& backend, ParameterSet& params);

}  // namespace loom::model
