#include "io/hf/loom_model_file.h"

#include <stdexcept>

#include "core/model/parameter_layout.h"
#include "io/h5/h5_check.h"
#include "io/weights/model_weights.h"

namespace loom::io::hf {
namespace {

namespace fs = std::filesystem;
using h5::H5Handle;
using nlohmann::json;

[[noreturn]] void fail(const fs::path& file, const std::string& what) { throw std::runtime_error(file.string() + ": " + what); }

bool has_attribute(hid_t object, const char* name, const std::string& where) {
  return H5_CHECK(H5Aexists(object, name), where) > 0;
}


json parse_json(const std::string& text, const fs::path& file, const char* what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(file, std::string(what) + " is not JSON: " + e.what());
  }
}

std::vector<NamedTensor> empty_tensors(const model::ModelConfig& config) {
  std::vector<NamedTensor> tensors;
  for (const model::ParameterSpec& spec :
       model::parameter_specs(config, model::ShardSpec::whole(config), model::HeadKind::LM)) {
    tensors.push_back({spec.name, Tensor::empty(spec.global_shape, DType::F32)});
  }
  return tensors;
}

model::ModelConfig config_from(const json& model_json, const fs::path& file, const std::string& key) {
  model::ModelConfig config = model_config_from_json(model_json, file.string() + ": " + key);
  try {
    config.validate();
  } catch (const std::invalid_argument& e) {
    fail(file, key + " is not a valid model: " + e.what());
  }
  return config;
}

LoomModel read_weights_file(const fs::path& file) {
  const json metadata = read_weights_metadata(file);
  if (!metadata.contains("model")) fail(file, "metadata has no \"model\" entry (not a loom model file?)");
  const std::string head = metadata.value("head", std::string("lm"));
  if (head != "lm") {
    fail(file, "holds a model with a '" + head + "' head; only language models (head 'lm') convert to Hugging Face");
  }
  LoomModel model{config_from(metadata["model"], file, "metadata.model"), {}, file.string()};
  model.tensors = empty_tensors(model.config);
  load_weights(file, model.tensors);
  return model;
}

// Reads /model/<name> of a checkpoint view; virtual datasets find their shard files
// relative to the step directory whatever the working directory is.
LoomModel read_checkpoint_view(const fs::path& file, hid_t f) {
  const std::string where = file.string();
  LoomModel model{config_from(parse_json(h5::read_string_attribute(f, "model_config", file.string()), file, "attribute model_config"),
                              file, "attribute model_config"),
                  {},
                  where};
  if (H5_CHECK(H5Lexists(f, "model", H5P_DEFAULT), where) == 0) fail(file, "has no /model group (not a checkpoint view?)");
  if (H5_CHECK(H5Lexists(f, "model/score_head.weight", H5P_DEFAULT), where) > 0) {
    fail(file, "holds a model with a scalar (reward/value) head; only language models convert to Hugging Face");
  }
  // A LoRA run's checkpoint holds the frozen base weights and the adapters apart; reading only
  // the base would silently drop the fine-tuning.
  for (std::int64_t layer = 0; layer < model.config.n_layers; ++layer) {
    for (const char* target : {"attn.qkv", "attn.out", "mlp.gate", "mlp.up", "mlp.down"}) {
      const std::string adapter = "model/layers." + std::to_string(layer) + "." + target + ".lora_a";
      if (H5_CHECK(H5Lexists(f, adapter.c_str(), H5P_DEFAULT), where) > 0) {
        fail(file, "holds LoRA adapters (/" + adapter + ") beside the frozen base weights; use the run's model.h5, "
                   "which has them merged");
      }
    }
  }
  H5Handle access(H5_CHECK(H5Pcreate(H5P_DATASET_ACCESS), where), H5Pclose);
  const std::string dir = fs::absolute(file).parent_path().string();
  H5_CHECK(H5Pset_virtual_prefix(access, dir.c_str()), where);
  model.tensors = empty_tensors(model.config);
  for (NamedTensor& t : model.tensors) {
    const std::string path = "model/" + t.name;
    const std::string what = where + " dataset /" + path;
    if (H5_CHECK(H5Lexists(f, path.c_str(), H5P_DEFAULT), where) == 0) fail(file, "has no dataset /" + path);
    H5Handle set(H5_CHECK(H5Dopen2(f, path.c_str(), access), what), H5Dclose);
    H5Handle space(H5_CHECK(H5Dget_space(set), what), H5Sclose);
    const int rank = H5_CHECK(H5Sget_simple_extent_ndims(space), what);
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr), what);
    const Shape found(dims.begin(), dims.end());
    if (found != t.tensor.shape()) {
      fail(file, "dataset /" + path + " has shape " + shape_string(found) + ", the model config implies " +
                     shape_string(t.tensor.shape()));
    }
    H5_CHECK(H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.tensor.raw()), what);
  }
  return model;
}

std::int64_t int_field(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_number_integer()) {
    throw std::runtime_error(where + "." + key + " is missing or not an integer");
  }
  return j[key].get<std::int64_t>();
}

}  // namespace

const Tensor& LoomModel::tensor(const std::string& name) const {
  for (const NamedTensor& t : tensors) {
    if (t.name == name) return t.tensor;
  }
  throw std::runtime_error(source + ": has no tensor " + name);
}

model::ModelConfig model_config_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw std::runtime_error(where + " must be a JSON object");
  auto number = [&](const json& object, const char* key, const std::string& at) {
    if (!object.contains(key) || !object[key].is_number()) throw std::runtime_error(at + "." + key + " is missing or not a number");
    return object[key].get<double>();
  };
  auto boolean = [&](const char* key) {
    if (!j.contains(key) || !j[key].is_boolean()) throw std::runtime_error(where + "." + key + " is missing or not true/false");
    return j[key].get<bool>();
  };
  model::ModelConfig c;
  if (!j.contains("family") || !j["family"].is_string()) throw std::runtime_error(where + ".family is missing");
  try {
    c.family = model::parse_family(j["family"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(where + ".family: " + e.what());
  }
  c.vocab_size = int_field(j, "vocab_size", where);
  c.d_model = int_field(j, "d_model", where);
  c.n_layers = int_field(j, "n_layers", where);
  c.n_heads = int_field(j, "n_heads", where);
  c.n_kv_heads = int_field(j, "n_kv_heads", where);
  c.d_ff = int_field(j, "d_ff", where);
  c.max_seq_len = int_field(j, "max_seq_len", where);
  c.norm_eps = static_cast<float>(number(j, "norm_eps", where));
  c.tie_embeddings = boolean("tie_embeddings");
  c.bias = boolean("bias");
  if (!j.contains("rope") || !j["rope"].is_object()) throw std::runtime_error(where + ".rope is missing");
  const json& rope = j["rope"];
  c.rope.theta = static_cast<float>(number(rope, "theta", where + ".rope"));
  c.rope.factor = static_cast<float>(number(rope, "factor", where + ".rope"));
  const std::string scaling = rope.value("scaling", std::string());
  if (scaling == "none") {
    c.rope.scaling = RopeConfig::Scaling::None;
  } else if (scaling == "linear") {
    c.rope.scaling = RopeConfig::Scaling::Linear;
  } else if (scaling == "ntk") {
    c.rope.scaling = RopeConfig::Scaling::NTK;
  } else {
    throw std::runtime_error(where + ".rope.scaling is '" + scaling + "'; expected none, linear or ntk");
  }
  return c;
}

LoomModel read_loom_model(const fs::path& path) {
  std::error_code ec;
  const fs::path file = fs::is_directory(path, ec) ? path / "view.h5" : path;
  if (!fs::exists(file, ec)) {
    if (fs::exists(path / "config.json", ec)) {
      fail(path, "is a Hugging Face model directory, not a loom model (convert it with `import` first)");
    }
    fail(file, fs::is_directory(path, ec) ? "no such file (a checkpoint step directory holds view.h5)"
                                          : "no such file (expected a model.h5, a checkpoint step directory or its view.h5)");
  }
  h5::silence_automatic_errors();
  H5Handle f(H5_CHECK(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), file.string()), H5Fclose);
  if (has_attribute(f, "model_config", file.string())) return read_checkpoint_view(file, f);
  if (has_attribute(f, "metadata", file.string())) {
    f.reset();
    return read_weights_file(file);
  }
  fail(file, "has neither a \"metadata\" attribute (model.h5) nor a \"model_config\" attribute (checkpoint view.h5)");
}

void write_loom_model(const fs::path& file, const model::ModelConfig& config, std::span<const NamedTensor> tensors,
                      const json& extra) {
  json metadata = extra.is_object() ? extra : json::object();
  metadata["model"] = model_config_json(config);
  metadata["head"] = model::head_kind_name(model::HeadKind::LM);
  save_weights(file, tensors, metadata);
}

}  // namespace loom::io::hf
