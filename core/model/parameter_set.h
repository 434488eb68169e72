// ParameterSet: every parameter of a model shard in ONE contiguous f32 buffer, and every
// gradient in a second buffer with the same layout. Entries carry name, local shape,
// offset, weight-decay group and tensor-parallel split (see parameter_layout.h).
//
// Why flat: the optimizer, gradient clipping, data-parallel all-reduce buckets and
// checkpoints each work on one buffer (or a few contiguous ranges of it) instead of a
// hundred small tensors. Each entry starts on a 16-element (64-byte) boundary; the padding
// between entries stays zero in both buffers, so whole-buffer ops (norms, AdamW) are exact.
//
// Ownership: the set owns both buffers; value()/grad() return views that alias them and
// must not outlive the set. Threads: not synchronised; one owner thread. Ranks: each rank
// holds its own shard's set.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/backend.h"
#include "core/model/parameter_layout.h"
#include "core/tensor.h"

namespace loom::model {

struct ParameterEntry : ParameterSpec {
  std::int64_t offset = 0;  // into values()/grads(), in elements
  std::int64_t numel = 0;   // of the local shape
};

class ParameterSet {
 public:
  static constexpr std::int64_t kAlignment = 16;  // elements

  // Allocates both buffers on the backend's device and zeroes them.
  ParameterSet(std::vector<ParameterSpec> specs, Backend& backend);

  const std::vector<ParameterEntry>& entries() const { return entries_; }
  // nullptr when absent.
  const ParameterEntry* find(const std::string& name) const;
  // Throws std::out_of_range naming the parameter and listing a few that exist.
  const ParameterEntry& entry(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  // Views of one parameter (local shape) into the flat buffers.
  Tensor value(const std::string& name) const { return value(entry(name)); }
  Tensor grad(const std::string& name) const { return grad(entry(name)); }
  Tensor value(const ParameterEntry& e) const { return values_.view(e.offset, e.shape); }
  Tensor grad(const ParameterEntry& e) const { return grads_.view(e.offset, e.shape); }

  // The flat buffers, [numel()] f32, padding included.
  Tensor& values() { return values_; }
  Tensor& grads() { return grads_; }
  const Tensor& values() const { return values_; }
  const Tensor& grads() const { return grads_; }

  std::int64_t numel() const { return values_.numel(); }
  // Sum of the entries' sizes (no padding): this shard's parameter count.
  std::int64_t parameter_count() const { return parameter_count_; }

 private:
  std::vector<ParameterEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
  Tensor values_;  // [numel] f32
  Tensor grads_;   // [numel] f32
  std::int64_t parameter_count_ = 0;
};

}  // namespace loom::model
