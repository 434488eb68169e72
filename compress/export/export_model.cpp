#include "compress/export/export_model.h"

#include <map>
#include <stdexcept>

#include "core/model/parameter_layout.h"

namespace loom::compress {

std::int64_t ExportTensor::numel() const { return shape_numel(shape); }

std::vector<float> ExportTensor::dense() const {
  if (!quantized) return values;
  std::vector<float> out(static_cast<std::size_t>(quantized->rows * quantized->cols));
  quant::dequantize(*quantized, out.data());
  return out;
}

const ExportTensor& ExportModel::tensor(const std::string& wanted) const {
  for (const ExportTensor& t : tensors) {
    if (t.name == wanted) return t;
  }
  throw std::invalid_argument("export model: tensor '" + wanted + "' is missing");
}

namespace {

void check_quantized(const ExportTensor& t) {
  const quant::QuantizedMatrix& q = *t.quantized;
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("export model: tensor '" + t.name + "' " + what);
  };
  if (t.shape.size() != 2) fail("is quantized but has shape " + shape_string(t.shape) + " (only 2-D weights can be)");
  if (q.rows != t.shape[0] || q.cols != t.shape[1]) {
    fail("has a quantized matrix of " + std::to_string(q.rows) + " x " + std::to_string(q.cols) + ", expected " +
         shape_string(t.shape));
  }
  q.scheme.validate();
  const auto cells = static_cast<std::size_t>(q.rows * q.groups());
  if (q.codes.size() != static_cast<std::size_t>(q.rows * q.row_bytes()) || q.scales.size() != cells ||
      q.zeros.size() != cells) {
    fail("has quantized buffers of the wrong size (codes " + std::to_string(q.codes.size()) + ", scales " +
         std::to_string(q.scales.size()) + ", zeros " + std::to_string(q.zeros.size()) + " for " + q.scheme.name() +
         ")");
  }
  if (!t.values.empty()) fail("holds both dense values and a quantized matrix (expected exactly one)");
}

}  // namespace

void ExportModel::validate() const {
  config.validate();
  std::map<std::string, Shape> expected;
  for (const model::ParameterSpec& spec :
       model::parameter_specs(config, model::ShardSpec::whole(config), model::HeadKind::LM)) {
    expected.emplace(spec.name, spec.global_shape);
  }
  std::map<std::string, int> seen;
  for (const ExportTensor& t : tensors) {
    const auto it = expected.find(t.name);
    if (it == expected.end()) {
      throw std::invalid_argument("export model: tensor '" + t.name + "' is not a parameter of this " +
                                  model::family_name(config.family) + " config");
    }
    if (++seen[t.name] > 1) throw std::invalid_argument("export model: tensor '" + t.name + "' appears twice");
    if (t.shape != it->second) {
      throw std::invalid_argument("export model: tensor '" + t.name + "' has shape " + shape_string(t.shape) +
                                  ", the config implies " + shape_string(it->second));
    }
    if (t.quantized) {
      check_quantized(t);
    } else if (static_cast<std::int64_t>(t.values.size()) != t.numel()) {
      throw std::invalid_argument("export model: tensor '" + t.name + "' has " + std::to_string(t.values.size()) +
                                  " values, expected " + std::to_string(t.numel()));
    }
  }
  for (const auto& [name, shape] : expected) {
    if (seen.count(name) == 0) throw std::invalid_argument("export model: tensor '" + name + "' is missing");
  }
}

bool is_block_linear_weight(const std::string& loom_name) {
  if (loom_name.rfind("layers.", 0) != 0) return false;
  for (const char* module : {".attn.qkv.weight", ".attn.out.weight", ".mlp.gate.weight", ".mlp.up.weight",
                             ".mlp.down.weight"}) {
    const std::string suffix = module;
    if (loom_name.size() > suffix.size() &&
        loom_name.compare(loom_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace loom::compress
