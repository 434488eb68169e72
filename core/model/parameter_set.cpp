#include "core/model/parameter_set.h"

#include <stdexcept>

namespace loom::model {

ParameterSet::ParameterSet(std::vector<ParameterSpec> specs, Backend& backend) {
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
  grads_ = Tensor::empty({offset}, DType::F32, backend.device());
  backend.fill(values_, 0.0f);
  backend.fill(grads_, 0.0f);
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
