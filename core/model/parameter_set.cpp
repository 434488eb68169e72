#include "core/model/parameter_set.h"

#include <stdexcept>
#include <string>

namespace loom::model {

ParameterSet::ParameterSet(std::vector<ParameterSpec> specs, Backend& backend, DType compute) {
  if (compute != DType::F32 && compute != DType::BF16) {
    throw std::invalid_argument(std::string("ParameterSet: compute dtype must be f32 or bf16, got ") +
                                dtype_name(compute));
  }
  std::int64_t offset = 0;
  entries_.reserve(specs.size());
  for (ParameterSpec& spec : specs) {
    ParameterEntry e;
    static_cast<ParameterSpec&>(e) = std::move(spec);
    e.numel = shape_numel(e.shape);
    e.offset = offset;
    if (!index_.emplace(e.name, entries_.size()).second) {
      throw std::invalid_argument("ParameterSet: parameter '" + e.name + "' appears twice");
    }
    offset += (e.numel + kAlignment - 1) / kAlignment * kAlignment;
    parameter_count_ += e.numel;
    entries_.push_back(std::move(e));
  }
  values_ = Tensor::empty({offset}, DType::F32, backend.device());
  grads_ = Tensor::empty({offset}, compute, backend.device());
  backend.fill(values_, 0.0f);
  backend.fill(grads_, 0.0f);
  compute_ = values_;
  if (compute != DType::F32) {
    compute_ = Tensor::empty({offset}, compute, backend.device());
    backend.fill(compute_, 0.0f);
  }
}

void ParameterSet::refresh_compute_values(Backend& backend) { refresh_compute_values(backend, 0, numel()); }

void ParameterSet::refresh_compute_values(Backend& backend, std::int64_t begin, std::int64_t end) {
  if (!mixed_precision() || begin >= end) return;
  if (begin < 0 || end > numel()) {
    throw std::out_of_range("ParameterSet::refresh_compute_values: range [" + std::to_string(begin) + ", " +
                            std::to_string(end) + ") is outside the " + std::to_string(numel()) + " elements");
  }
  Tensor to = compute_.view(begin, {end - begin});
  backend.copy(values_.view(begin, {end - begin}), to);
}

const ParameterEntry* ParameterSet::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const ParameterEntry& ParameterSet::entry(const std::string& name) const {
  if (const ParameterEntry* e = find(name)) return *e;
  std::string known;
  for (std::size_t i = 0; i < entries_.size() && i < 6; ++i) known += (i ? ", " : "") + entries_[i].name;
  if (entries_.size() > 6) known += ", ...";
  throw std::out_of_range("parameter '" + name + "' is not in this model shard (it holds " +
                          std::to_string(entries_.size()) + " parameters: " + known + ")");
}

}  // namespace loom::model
