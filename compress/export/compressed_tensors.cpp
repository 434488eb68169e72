#include "compress/export/compressed_tensors.h"

#include <cstring>
#include <deque>
#include <map>
#include <stdexcept>
#include <string>

#include "io/hf/hf_config.h"
#include "io/hf/hf_names.h"
#include "io/hf/safetensors.h"

namespace loom::compress {
namespace {

// "model.layers.0.self_attn.q_proj.weight" -> "model.layers.0.self_attn.q_proj"
std::string module_of(const std::string& hf_weight_name) {
  return hf_weight_name.substr(0, hf_weight_name.size() - std::string(".weight").size());
}

}  // namespace

namespace compressed_tensors {

std::vector<std::int32_t> pack_int4_rows(const quant::QuantizedMatrix& q, std::int64_t row_begin, std::int64_t rows) {
  const std::int64_t words = (q.cols + 7) / 8;
  std::vector<std::uint32_t> packed(static_cast<std::size_t>(rows * words), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < q.cols; ++c) {
      packed[static_cast<std::size_t>(r * words + c / 8)] |= static_cast<std::uint32_t>(q.code(row_begin + r, c))
                                                             << (4 * (c % 8));
    }
  }
  std::vector<std::int32_t> out(packed.size());
  std::memcpy(out.data(), packed.data(), packed.size() * sizeof(std::uint32_t));
  return out;
}

std::vector<std::int32_t> pack_int4_columns(const std::vector<std::uint8_t>& values, std::int64_t rows,
                                            std::int64_t cols) {
  const std::int64_t word_rows = (rows + 7) / 8;
  std::vector<std::uint32_t> packed(static_cast<std::size_t>(word_rows * cols), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      packed[static_cast<std::size_t>((r / 8) * cols + c)] |=
          static_cast<std::uint32_t>(values[static_cast<std::size_t>(r * cols + c)] & 0x0F) << (4 * (r % 8));
    }
  }
  std::vector<std::int32_t> out(packed.size());
  std::memcpy(out.data(), packed.data(), packed.size() * sizeof(std::uint32_t));
  return out;
}

namespace {

const char* format_of(const quant::Scheme& scheme) { return scheme.bits == 8 ? "int-quantized" : "pack-quantized"; }

nlohmann::json weights_args(const quant::Scheme& s) {
  return {{"num_bits", s.bits},
          {"type", "int"},
          {"symmetric", s.symmetric},
          {"strategy", s.group_size == 0 ? "channel" : "group"},
          {"group_size", s.group_size == 0 ? nlohmann::json(nullptr) : nlohmann::json(s.group_size)},
          {"block_structure", nullptr},
          {"dynamic", false},
          {"actorder", nullptr},
          {"observer", "minmax"},
          {"observer_kwargs", nlohmann::json::object()}};
}

// Fraction of exact zeros over every block linear weight (a quantized element is zero when its
// code equals its group's zero point).
double measured_sparsity(const ExportModel& model) {
  std::int64_t zeros = 0, total = 0;
  for (const ExportTensor& t : model.tensors) {
    if (!is_block_linear_weight(t.name)) continue;
    total += t.numel();
    if (t.quantized) {
      const quant::QuantizedMatrix& q = *t.quantized;
      for (std::int64_t r = 0; r < q.rows; ++r) {
        for (std::int64_t c = 0; c < q.cols; ++c) zeros += q.code(r, c) == q.params(r, q.scheme.group_of(c)).zero;
      }
    } else {
      for (const float v : t.values) zeros += v == 0.0f;
    }
  }
  return total == 0 ? 0.0 : static_cast<double>(zeros) / static_cast<double>(total);
}

std::string sparsity_structure(const nlohmann::json& sparsity) {
  if (sparsity.is_string()) return sparsity.get<std::string>();
  if (sparsity.is_object() && sparsity.contains("structure") && sparsity["structure"].is_string()) {
    return sparsity["structure"].get<std::string>();
  }
  return "unstructured";
}

}  // namespace

nlohmann::json quantization_config(const ExportModel& model) {
  std::map<std::string, std::pair<quant::Scheme, std::vector<std::string>>> groups;  // by scheme name
  std::vector<std::string> ignore;
  for (const io::hf::TensorMapping& mapping : io::hf::hf_tensor_mapping(model.config)) {
    const bool linear = is_block_linear_weight(mapping.loom_name) || mapping.loom_name == "lm_head.weight";
    if (!linear) continue;
    const ExportTensor& t = model.tensor(mapping.loom_name);
    for (const io::hf::HfPiece& piece : mapping.pieces) {
      if (!t.quantized) {
        ignore.push_back(module_of(piece.hf_name));
        continue;
      }
      auto& group = groups[t.quantized->scheme.name()];
      group.first = t.quantized->scheme;
      group.second.push_back(module_of(piece.hf_name));
    }
  }
  // A tied head has no tensor of its own but is still an unquantized lm_head module.
  if (model.config.tie_embeddings) ignore.push_back("lm_head");

  nlohmann::json config_groups = nlohmann::json::object();
  std::string format;
  int index = 0;
  for (const auto& [name, group] : groups) {
    const std::string group_format = format_of(group.first);
    format = format.empty() || format == group_format ? group_format : "mixed-precision";
    config_groups["group_" + std::to_string(index++)] = {
        {"targets", groups.size() == 1 ? nlohmann::json::array({"Linear"}) : nlohmann::json(group.second)},
        {"weights", weights_args(group.first)},
        {"input_activations", nullptr},
        {"output_activations", nullptr},
        {"format", group_format}};
  }
  nlohmann::json config = {{"quant_method", "compressed-tensors"},
                           {"format", format.empty() ? "dense" : format},
                           {"quantization_status", "compressed"},
                           {"config_groups", config_groups},
                           {"ignore", ignore},
                           {"kv_cache_scheme", nullptr},
                           {"global_compression_ratio", nullptr}};
  if (model.quantization.is_object() && model.quantization.contains("sparsity") &&
      !model.quantization["sparsity"].is_null()) {
    config["sparsity_config"] = {{"format", "dense"},
                                 {"global_sparsity", measured_sparsity(model)},
                                 {"sparsity_structure", sparsity_structure(model.quantization["sparsity"])},
                                 {"targets", {"Linear"}},
                                 {"ignore", {"lm_head"}},
                                 {"registry_requires_subclass", false}};
  }
  return config;
}

}  // namespace compressed_tensors

namespace {

namespace fs = std::filesystem;
using io::hf::StDType;

// Owns the bytes the raw safetensors entries point at until the file is written.
class TensorList {
 public:
  template <typename T> void add(const std::string& name, StDType dtype, Shape shape, std::vector<T> values) {
    std::vector<std::uint8_t>& bytes = storage_.emplace_back(values.size() * sizeof(T));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    entries_.push_back({name, dtype, std::move(shape), bytes});
  }
  void add_f32(const std::string& name, const Tensor& tensor) {
    const Tensor& kept = tensors_.emplace_back(tensor);
    entries_.push_back({name, StDType::F32, kept.shape(),
                        {static_cast<const std::uint8_t*>(kept.raw()), kept.nbytes()}});
  }
  const std::vector<io::hf::SafetensorsRawTensor>& entries() const { return entries_; }

 private:
  std::deque<std::vector<std::uint8_t>> storage_;
  std::deque<Tensor> tensors_;
  std::vector<io::hf::SafetensorsRawTensor> entries_;
};

void add_quantized(TensorList& out, const std::string& module, const ExportTensor& t, std::int64_t row_begin,
                   std::int64_t rows) {
  const quant::QuantizedMatrix& q = *t.quantized;
  const quant::Scheme& s = q.scheme;
  const int midpoint = 1 << (s.bits - 1);
  const std::int64_t groups = q.groups();
  std::vector<float> scales(static_cast<std::size_t>(rows * groups));
  std::vector<std::uint8_t> zeros(scales.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t g = 0; g < groups; ++g) {
      const quant::GroupParams p = q.params(row_begin + r, g);
      if (s.symmetric && p.zero != midpoint) {
        throw std::invalid_argument("compressed-tensors export: " + t.name + " is " + s.name() + " but row " +
                                    std::to_string(row_begin + r) + " group " + std::to_string(g) + " has zero point " +
                                    std::to_string(p.zero) + " (a symmetric scheme needs " + std::to_string(midpoint) + ")");
      }
      scales[static_cast<std::size_t>(r * groups + g)] = p.scale;
      zeros[static_cast<std::size_t>(r * groups + g)] = static_cast<std::uint8_t>(p.zero);
    }
  }
  if (s.bits == 8) {
    std::vector<std::int8_t> codes(static_cast<std::size_t>(rows * q.cols));
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < q.cols; ++c) {
        codes[static_cast<std::size_t>(r * q.cols + c)] = static_cast<std::int8_t>(q.code(row_begin + r, c) - 128);
      }
    }
    out.add(module + ".weight", StDType::I8, {rows, q.cols}, std::move(codes));
  } else {
    out.add(module + ".weight_packed", StDType::I32, {rows, (q.cols + 7) / 8},
            compressed_tensors::pack_int4_rows(q, row_begin, rows));
    out.add(module + ".weight_shape", StDType::I64, {2}, std::vector<std::int64_t>{rows, q.cols});
  }
  out.add(module + ".weight_scale", StDType::F32, {rows, groups}, std::move(scales));
  if (s.symmetric) return;
  if (s.bits == 8) {
    std::vector<std::int8_t> signed_zeros(zeros.size());
    for (std::size_t i = 0; i < zeros.size(); ++i) signed_zeros[i] = static_cast<std::int8_t>(zeros[i] - 128);
    out.add(module + ".weight_zero_point", StDType::I8, {rows, groups}, std::move(signed_zeros));
  } else {
    out.add(module + ".weight_zero_point", StDType::I32, {(rows + 7) / 8, groups},
            compressed_tensors::pack_int4_columns(zeros, rows, groups));
  }
}

}  // namespace

void write_compressed_safetensors(const fs::path& dir, const ExportModel& model) {
  model.validate();
  nlohmann::json config = io::hf::hf_config_json(model.config, "float32");
  config["quantization_config"] = compressed_tensors::quantization_config(model);

  TensorList tensors;
  for (const io::hf::TensorMapping& mapping : io::hf::hf_tensor_mapping(model.config)) {
    const ExportTensor& t = model.tensor(mapping.loom_name);
    if (t.quantized) {
      for (const io::hf::HfPiece& piece : mapping.pieces) {
        add_quantized(tensors, module_of(piece.hf_name), t, piece.row_begin, piece.rows);
      }
      continue;
    }
    // split_for_hf shares a tensor stored whole, so the model's values are not copied then.
    const Tensor whole = Tensor::wrap(const_cast<float*>(t.values.data()), t.shape, DType::F32);
    const std::vector<Tensor> pieces = io::hf::split_for_hf(mapping, whole);
    for (std::size_t i = 0; i < pieces.size(); ++i) tensors.add_f32(mapping.pieces[i].hf_name, pieces[i]);
  }
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (!model.quantization.is_null()) metadata["loom.quantization"] = model.quantization.dump();
  fs::create_directories(dir);
  io::hf::write_safetensors_raw(dir / "model.safetensors", tensors.entries(), metadata);
  io::hf::write_file_atomically(dir / "config.json", config.dump(2) + "\n");
}

}  // namespace loom::compress
