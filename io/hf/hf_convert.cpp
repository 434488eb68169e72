#include "io/hf/hf_convert.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>

#include "io/hf/hf_config.h"
#include "io/hf/hf_names.h"

namespace loom::io::hf {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void fail(const fs::path& file, const std::string& what) { throw std::runtime_error(file.string() + ": " + what); }

json read_json_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) fail(file, "cannot open (a Hugging Face model directory holds config.json and *.safetensors)");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::exception& e) {
    fail(file, std::string("is not valid JSON: ") + e.what());
  }
}

// The safetensors files of a model directory: the index's shards, model.safetensors, or
// every *.safetensors there. Also returns the index's name → file claims to check.
std::vector<fs::path> weight_files(const fs::path& dir, std::map<std::string, std::string>& claimed) {
  const fs::path index = dir / "model.safetensors.index.json";
  std::vector<fs::path> files;
  if (fs::exists(index)) {
    const json j = read_json_file(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) fail(index, "has no \"weight_map\" object");
    std::set<std::string> names;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string()) fail(index, "weight_map." + tensor + " must name a file, got " + file.dump());
      claimed[tensor] = file.get<std::string>();
      names.insert(file.get<std::string>());
    }
    for (const auto& name : names) files.push_back(dir / name);
    return files;
  }
  if (fs::exists(dir / "model.safetensors")) return {dir / "model.safetensors"};
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) fail(dir, "holds no *.safetensors file (and no model.safetensors.index.json)");
  return files;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

ExportSummary export_hf(const LoomModel& model, const fs::path& out_dir, StDType dtype) {
  if (dtype != StDType::F32 && dtype != StDType::BF16) {
    throw std::invalid_argument(std::string("export dtype ") + st_dtype_name(dtype) + " is not supported (f32 or bf16)");
  }
  const json config = hf_config_json(model.config, dtype == StDType::F32 ? "float32" : "bfloat16");
  std::vector<SafetensorsTensor> tensors;
  ExportSummary summary;
  for (const TensorMapping& mapping : hf_tensor_mapping(model.config)) {
    const Tensor& source = model.tensor(mapping.loom_name);
    const std::vector<Tensor> pieces = split_for_hf(mapping, source);
    for (std::size_t i = 0; i < pieces.size(); ++i) tensors.push_back({mapping.pieces[i].hf_name, pieces[i]});
    summary.parameters += source.numel();
  }
  summary.tensors = static_cast<std::int64_t>(tensors.size());
  summary.safetensors = out_dir / "model.safetensors";
  summary.config = out_dir / "config.json";
  write_safetensors(summary.safetensors, tensors, {{"format", "pt"}, {"source", model.source}}, dtype);
  write_file_atomically(summary.config, config.dump(2) + "\n");
  return summary;
}

LoomModel import_hf(const fs::path& hf_dir) {
  if (!fs::is_directory(hf_dir)) fail(hf_dir, "is not a directory (expected a Hugging Face model directory)");
  const fs::path config_path = hf_dir / "config.json";
  LoomModel model{model_config_from_hf(read_json_file(config_path), config_path.string()), {}, hf_dir.string()};
  const model::Family family = model.config.family;

  std::map<std::string, std::string> claimed;
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const fs::path& file : weight_files(hf_dir, claimed)) files.push_back(std::make_unique<SafetensorsFile>(file));

  struct Found {
    const SafetensorsFile* file;
    std::string name;  // as stored
  };
  std::map<std::string, Found> found;  // by canonical name
  for (const auto& file : files) {
    for (const SafetensorsEntry& e : file->entries()) {
      const std::string canonical = canonical_hf_name(family, e.name);
      const auto [it, inserted] = found.emplace(canonical, Found{file.get(), e.name});
      if (!inserted) {
        fail(file->path(), "tensor '" + e.name + "' is also in " + it->second.file->path().string());
      }
    }
  }
  for (const auto& [tensor, file] : claimed) {
    const auto it = found.find(canonical_hf_name(family, tensor));
    if (it == found.end() || it->second.file->path().filename() != file) {
      fail(hf_dir / "model.safetensors.index.json", "weight_map puts '" + tensor + "' in " + file + " but it is not there");
    }
  }

  std::set<std::string> used;
  for (const TensorMapping& mapping : hf_tensor_mapping(model.config)) {
    Tensor tensor = Tensor::empty(mapping.loom_shape, DType::F32);
    for (const HfPiece& piece : mapping.pieces) {
      const auto it = found.find(piece.hf_name);
      if (it == found.end()) {
        fail(hf_dir, "tensor '" + piece.hf_name + "' (loom " + mapping.loom_name + ") is in none of the " +
                         std::to_string(files.size()) + " safetensors file(s)");
      }
      try {
        place_from_hf(piece, it->second.file->read_f32(it->second.name), tensor);
      } catch (const std::invalid_argument& e) {
        fail(it->second.file->path(), e.what());
      }
      used.insert(piece.hf_name);
    }
    model.tensors.push_back({mapping.loom_name, tensor});
  }

  std::vector<std::string> unexpected;
  for (const auto& [canonical, where] : found) {
    if (used.count(canonical) != 0 || is_ignored_hf_buffer(canonical)) continue;
    if (canonical == "lm_head.weight" && model.config.tie_embeddings) {
      if (!bit_equal(where.file->read_f32(where.name), model.tensor("embed.tokens.weight"))) {
        fail(where.file->path(), "config.json says tie_word_embeddings, but lm_head.weight differs from the embedding");
      }
      continue;
    }
    unexpected.push_back(where.name);
  }
  if (!unexpected.empty()) {
    std::string list;
    for (std::size_t i = 0; i < unexpected.size() && i < 5; ++i) list += (i ? ", " : "") + unexpected[i];
    if (unexpected.size() > 5) list += ", ...";
    fail(hf_dir, std::to_string(unexpected.size()) + " tensor(s) match nothing config.json describes (" + list +
                     "); does config.json belong to these weights?");
  }
  return model;
}

}  // namespace loom::io::hf
