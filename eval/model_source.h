// What `loom-eval --model PATH` names, resolved to the models to evaluate, and loading one
// into an Engine of any layout.
//
// PATH may be:
//   - a whole-model weights file (model.h5, io/weights): kind "weights", its recorded step;
//   - a loom-quantize output (quantized.h5, io/weights/quantized_weights.h): kind "quantized",
//     run with the quantized kernels of its linears and its int8 KV cache when it has one;
//   - a committed checkpoint directory (step-00000300 with index.json): kind "checkpoint";
//   - a checkpoints directory or a run directory (with checkpoints/ inside): its committed
//     steps, chosen by `steps`: "latest" (the newest), "all" (every committed step, oldest
//     first) or a comma-separated list of step numbers (each must exist).
// The architecture comes from the file (model.h5 metadata "model", index.json
// "model_config"); the tokenizer from the training config the model carries (index.json
// "config".data.tokenizer, or run.json beside model.h5) unless given.
//
// Errors (std::runtime_error) name the path and what was expected. Thread safety: plain
// functions; load_model is collective over the engine's world.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/model_config.h"
#include "train/engine.h"

namespace loom::eval {

struct EvalModel {
  std::filesystem::path path;
  std::string kind;             // "weights" or "checkpoint"
  std::int64_t step = -1;       // -1 when the file records none
  model::ModelConfig config;
  std::string head = "lm";      // "lm" or "scalar"
  std::filesystem::path tokenizer;  // from the model's training config; empty when unknown
  nlohmann::json quantization;      // kind "quantized": what loom-quantize did (method, scheme, kv_int8, ...)

  nlohmann::json to_json() const;  // {"path", "kind", "step"}
};

std::vector<EvalModel> resolve_models(const std::filesystem::path& path, const std::string& steps = "latest");

// Loads the model's parameters into `engine` (built with model.config and its head).
void load_model(const EvalModel& model, train::Engine& engine);

}  // namespace loom::eval
