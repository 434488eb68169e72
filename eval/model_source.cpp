#include "eval/model_source.h"

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "io/checkpoint/checkpoint.h"
#include "io/checkpoint/format.h"
#include "io/hf/loom_model_file.h"
#include "io/weights/quantized_weights.h"
#include "io/weights/weights.h"
#include "core/quant/quant_gemm.h"
#include "train/checkpointing.h"

namespace loom::eval {
namespace fs = std::filesystem;
namespace {

fs::path tokenizer_of(const nlohmann::json& config) {
  if (!config.is_object() || !config.contains("data") || !config["data"].is_object()) return {};
  const nlohmann::json& path = config["data"].value("tokenizer", nlohmann::json());
  return path.is_string() ? fs::path(path.get<std::string>()) : fs::path();
}

EvalModel from_weights(const fs::path& file) {
  const nlohmann::json meta = io::read_weights_metadata(file);
  if (!meta.contains("model")) {
    throw std::runtime_error(file.string() + ": weights file has no \"model\" metadata (not written by loom?)");
  }
  EvalModel model;
  model.path = file;
  model.kind = "weights";
  model.step = meta.value("step", std::int64_t{-1});
  model.config = io::hf::model_config_from_json(meta["model"], file.string());
  model.head = meta.value("head", std::string("lm"));
  if (io::is_quantized_model_file(file)) {
    model.kind = "quantized";
    model.quantization = meta.value("quantization", nlohmann::json::object());
    if (meta.contains("tokenizer") && meta["tokenizer"].is_string()) model.tokenizer = meta["tokenizer"].get<std::string>();
    return model;
  }
  const fs::path run_json = file.parent_path() / "run.json";
  if (fs::exists(run_json)) {
    std::ifstream in(run_json);
    nlohmann::json run = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!run.is_discarded()) model.tokenizer = tokenizer_of(run.value("config", nlohmann::json()));
  }
  return model;
}

EvalModel from_checkpoint(const fs::path& dir) {
  const nlohmann::json index = io::ckpt::read_index(dir);
  EvalModel model;
  model.path = dir;
  model.kind = "checkpoint";
  model.step = index.value("step", std::int64_t{-1});
  if (!index.contains("model_config")) {
    throw std::runtime_error((dir / "index.json").string() + ": no \"model_config\" (written by an older loom?)");
  }
  model.config = io::hf::model_config_from_json(index["model_config"], (dir / "index.json").string());
  const nlohmann::json config = index.value("config", nlohmann::json());
  model.tokenizer = tokenizer_of(config);
  if (config.contains("lora") && config["lora"].value("rank", 0) > 0) {
    throw std::runtime_error(dir.string() + ": a LoRA checkpoint holds unmerged adapters; evaluate the run's "
                             "model.h5 (adapters merged) instead");
  }
  const std::string program = index.value("program", std::string());
  if (program == "loom-rm") model.head = "scalar";
  return model;
}

std::vector<std::int64_t> parse_steps(const std::string& steps, const fs::path& root) {
  std::vector<std::int64_t> out;
  std::size_t at = 0;
  while (at <= steps.size()) {
    const std::size_t comma = std::min(steps.find(',', at), steps.size());
    const std::string item = steps.substr(at, comma - at);
    try {
      std::size_t used = 0;
      out.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw std::runtime_error(root.string() + ": steps must be latest, all or a list of step numbers (100,200), got \"" +
                               steps + "\"");
    }
    at = comma + 1;
  }
  return out;
}

}  // namespace

nlohmann::json EvalModel::to_json() const {
  nlohmann::json j = {{"path", path.string()}, {"kind", kind}, {"step", step}};
  if (kind == "quantized") j["quantization"] = quantization;
  return j;
}

std::vector<EvalModel> resolve_models(const fs::path& path, const std::string& steps) {
  if (!fs::exists(path)) throw std::runtime_error(path.string() + ": no such model file or directory");
  if (fs::is_regular_file(path)) {
    if (steps != "latest") throw std::runtime_error(path.string() + ": steps = " + steps + " needs a run or checkpoints directory");
    return {from_weights(path)};
  }
  if (fs::exists(path / "index.json")) return {from_checkpoint(path)};
  const fs::path root = fs::exists(path / "checkpoints") ? path / "checkpoints" : path;
  std::vector<fs::path> committed = io::ckpt::list_checkpoints(root);  // newest first
  if (committed.empty()) {
    if (fs::exists(path / "model.h5")) return {from_weights(path / "model.h5")};
    throw std::runtime_error(path.string() + ": neither a model.h5, a checkpoint (index.json) nor a directory with "
                             "committed checkpoints");
  }
  std::vector<EvalModel> models;
  if (steps == "latest") {
    models.push_back(from_checkpoint(committed.front()));
  } else if (steps == "all") {
    for (auto it = committed.rbegin(); it != committed.rend(); ++it) models.push_back(from_checkpoint(*it));
  } else {
    for (const std::int64_t step : parse_steps(steps, root)) {
      const fs::path dir = root / io::ckpt::step_dir_name(step);
      if (std::find(committed.begin(), committed.end(), dir) == committed.end()) {
        throw std::runtime_error(dir.string() + ": step " + std::to_string(step) + " is not a committed checkpoint");
      }
      models.push_back(from_checkpoint(dir));
    }
  }
  return models;
}

namespace {

// A loom-quantize model: every parameter (quantized weights dequantized) into the engine's
// slices, then the quantized kernel of each compressed linear on this rank's slice of its codes,
// and the int8 KV cache numerics.
void load_quantized(const EvalModel& m, train::Engine& engine) {
  const io::QuantizedModel q = io::load_quantized_model(m.path);
  model::Transformer& mine = engine.model();
  model::Transformer whole(m.config, model::ShardSpec::whole(m.config), model::HeadKind::LM, mine.backend());
  for (const io::NamedTensor& t : q.dense) {
    if (!whole.params().contains(t.name)) {
      throw std::runtime_error(m.path.string() + ": tensor " + t.name + " is not a parameter of the recorded model");
    }
    Tensor dst = whole.params().value(t.name);
    if (dst.numel() != t.tensor.numel()) {
      throw std::runtime_error(m.path.string() + ": tensor " + t.name + " has " + std::to_string(t.tensor.numel()) +
                               " elements, the model expects " + std::to_string(dst.numel()));
    }
    std::copy_n(t.tensor.data<float>(), t.tensor.numel(), dst.data<float>());
  }
  for (const io::CompressedLinear& l : q.linears) {
    if (l.quantized) quant::dequantize(*l.quantized, whole.params().value(l.prefix + ".weight").data<float>());
  }
  engine.load_from(whole);
  const std::string activations = m.quantization.value("activations", std::string("float"));
  const quant::ActivationMode mode = activations == "int8" ? quant::ActivationMode::Int8 : quant::ActivationMode::Float;
  const model::ShardSpec& shard = mine.shard();
  const int tp_rank = engine.groups().tp_rank(), tp_size = engine.groups().tp_size();
  for (const io::CompressedLinear& l : q.linears) {
    if (!l.quantized) continue;
    // "layers.<L>.attn.qkv" -> layer L, linear "qkv"
    const std::size_t dot = l.prefix.find('.', 7);
    const std::int64_t layer = std::stoll(l.prefix.substr(7, dot - 7));
    const std::string linear = l.prefix.substr(l.prefix.rfind('.') + 1);
    if (layer < shard.layer_begin || layer >= shard.layer_end) continue;
    const model::ParameterEntry& e = mine.params().entry(l.prefix + ".weight");
    try {
      const quant::QuantizedMatrix slice = io::slice_quantized(*l.quantized, io::linear_slice(e, tp_rank, tp_size));
      mine.block(layer - shard.layer_begin).linear(linear).quantized = quant::QuantizedLinear::prepare(slice, mode);
    } catch (const std::invalid_argument& error) {
      throw std::runtime_error(m.path.string() + ": " + l.prefix + " under tp " + std::to_string(tp_size) + ": " +
                               error.what());
    }
  }
  mine.set_kv_int8(m.quantization.value("kv_int8", false));
}

}  // namespace

void load_model(const EvalModel& model, train::Engine& engine) {
  if (model.kind == "quantized") {
    load_quantized(model, engine);
    return;
  }
  if (model.kind == "weights") {
    engine.load_weights(model.path.string());
    return;
  }
  io::ckpt::CheckpointReader reader(model.path);
  train::load_checkpoint_parameters(reader, engine);
}

}  // namespace loom::eval
