#include "io/weights/model_weights.h"

#include <stdexcept>
#include <vector>

#include "io/weights/weights.h"

namespace loom::io {
namespace {

const char* scaling_name(RopeConfig::Scaling s) {
  switch (s) {
    case RopeConfig::Scaling::None: return "none";
    case RopeConfig::Scaling::Linear: return "linear";
    case RopeConfig::Scaling::NTK: return "ntk";
  }
  return "?";
}

std::vector<NamedTensor> named_parameters(const model::Transformer& model) {
  if (model.shard().tp_size != 1 || !model.shard().owns_embeddings() || !model.shard().owns_head(model.config())) {
    throw std::logic_error("model weights files hold whole models; this rank holds a shard");
  }
  std::vector<NamedTensor> out;
  for (const auto& entry : model.params().entries()) out.push_back({entry.name, model.params().value(entry)});
  return out;
}

}  // namespace

nlohmann::json model_config_json(const model::ModelConfig& c) {
  return {{"family", model::family_name(c.family)},
          {"vocab_size", c.vocab_size},
          {"d_model", c.d_model},
          {"n_layers", c.n_layers},
          {"n_heads", c.n_heads},
          {"n_kv_heads", c.n_kv_heads},
          {"d_ff", c.d_ff},
          {"max_seq_len", c.max_seq_len},
          {"norm_eps", c.norm_eps},
          {"rope", {{"theta", c.rope.theta}, {"scaling", scaling_name(c.rope.scaling)}, {"factor", c.rope.factor}}},
          {"tie_embeddings", c.tie_embeddings},
          {"bias", c.bias}};
}

void save_model_weights(const std::filesystem::path& file, const model::Transformer& model,
                        const nlohmann::json& extra) {
  nlohmann::json metadata = extra;
  metadata["model"] = model_config_json(model.config());
  metadata["head"] = model::head_kind_name(model.head_kind());
  const auto tensors = named_parameters(model);
  save_weights(file, tensors, metadata);
}

nlohmann::json load_model_weights(const std::filesystem::path& file, model::Transformer& model) {
  const nlohmann::json metadata = read_weights_metadata(file);
  if (!metadata.contains("model")) throw std::runtime_error(file.string() + ": metadata has no \"model\" entry");
  const nlohmann::json expected = model_config_json(model.config());
  // The architecture must match; norm_eps and rope settings may change between stages.
  for (const char* key : {"family", "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff",
                          "tie_embeddings", "bias"}) {
    if (metadata["model"].value(key, nlohmann::json()) != expected[key]) {
      throw std::runtime_error(file.string() + ": model." + key + " is " + metadata["model"].value(key, nlohmann::json()).dump() +
                               " in the file but " + expected[key].dump() + " in this run's config");
    }
  }
  auto tensors = named_parameters(model);
  // A reward model or critic starts from a language model's backbone: the file's LM head is
  // left out and the score head keeps its init. The other way round is refused.
  const std::string file_head = metadata.value("head", std::string(model::head_kind_name(model::HeadKind::LM)));
  if (file_head != model::head_kind_name(model.head_kind())) {
    if (model.head_kind() != model::HeadKind::Scalar) {
      throw std::runtime_error(file.string() + ": holds a model with a " + file_head +
                               " head, but a language model (LM head) is needed here");
    }
    std::erase_if(tensors, [](const auto& named) { return named.name.rfind("score_head.", 0) == 0; });
  }
  load_weights(file, tensors);
  return metadata;
}

}  // namespace loom::io
