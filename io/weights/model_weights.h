// A Transformer's parameters to and from a whole-model weights file (weights.h), with the
// architecture recorded in the metadata so a mismatched file is refused by name instead of
// loaded into the wrong shapes. Single-shard models only (tp = pp = 1) until the sharded
// checkpoints arrive.
//
// Threads: one thread; the model must not be running. Ranks: call on the rank that holds
// the whole model.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/model/transformer.h"

namespace loom::io {

nlohmann::json model_config_json(const model::ModelConfig& config);

// Writes every parameter under its name; metadata gets {"model": model_config_json(...)}
// merged with `extra` (step, tokens, source run, ...).
void save_model_weights(const std::filesystem::path& file, const model::Transformer& model,
                        const nlohmann::json& extra);

// Loads every parameter of `model` from `file`. Throws std::runtime_error naming the file and
// the first architecture field that differs, or the missing tensor. Returns the metadata.
nlohmann::json load_model_weights(const std::filesystem::path& file, model::Transformer& model);

}  // namespace loom::io
