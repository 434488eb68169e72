// A whole loom model (architecture + every parameter as one global f32 tensor) read from
// either place loom keeps one:
//
//   model.h5            a whole-model weights file (io/weights/model_weights.h): datasets
//                       named by loom parameter name, root attribute "metadata" with
//                       {"model": model_config_json(...), "head": "lm", ...}
//   <step dir>/view.h5  a checkpoint step's view file: root attribute "model_config" (the
//   or view.h5 itself   same JSON), datasets /model/<loom name> presenting each global tensor
//                       whole (virtual datasets over the shard files, resolved relative to
//                       the step directory)
//
// and written back as a model.h5 that loom-sft accepts as train.init_from.
//
// Memory: the whole model is held in RAM as f32. Threads: HDF5 is not thread-safe here;
// call from one thread of one rank.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/model_config.h"
#include "io/weights/weights.h"

namespace loom::io::hf {

struct LoomModel {
  model::ModelConfig config;
  std::vector<NamedTensor> tensors;  // parameter_specs order, global shapes, LM head
  std::string source;                // the file the tensors came from

  // Throws std::runtime_error naming the source when `name` is absent.
  const Tensor& tensor(const std::string& name) const;
};

// Inverse of io::model_config_json. `where` prefixes errors naming a missing or mistyped key.
model::ModelConfig model_config_from_json(const nlohmann::json& model_json, const std::string& where);

// Reads a model.h5, a checkpoint step directory or its view.h5. Throws std::runtime_error
// naming the file and the missing tensor, key or unsupported head.
LoomModel read_loom_model(const std::filesystem::path& path);

// Writes a model.h5 with metadata {"model": ..., "head": "lm"} merged into `extra`.
void write_loom_model(const std::filesystem::path& file, const model::ModelConfig& config,
                      std::span<const NamedTensor> tensors, const nlohmann::json& extra);

}  // namespace loom::io::hf
