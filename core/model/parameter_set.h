// ParameterSet: every parameter of a model shard in ONE contiguous f32 buffer, and every
// gradient in a second buffer with the same layout. Entries carry name, local shape,
// offset, weight-decay group and tensor-parallel split (see parameter_layout.h).
//
// Why flat: the optimizer, gradient clipping, data-parallel all-reduce buckets and
// checkpoints each work on one buffer (or a few contiguous ranges of it) instead of a
// hundred small tensors. Each entry starts on a 16-element (64-byte) boundary; the padding
// between entries stays zero in both buffers, so whole-buffer ops (norms, AdamW) are exact.
//
// Mixed precision (compute dtype bf16): values() stay the f32 master weights, the ones the
// optimizer updates, checkpoints save and loaders fill; the model computes with a bf16 copy
// (compute_values()), refreshed from the masters by refresh_compute_values() after every
// change, and its backward writes bf16 gradients (grads()). With compute dtype f32 the
// compute copy IS the master buffer and refreshing does nothing.
//
// Ownership: the set owns its buffers; value()/grad() return views that alias them and
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

  // Allocates the buffers on the backend's device and zeroes them. compute: f32 or bf16.
  ParameterSet(std::vector<ParameterSpec> specs, Backend& backend, DType compute = DType::F32);

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
  // What the model computes with: the compute-dtype copy of one parameter.
  Tensor compute_value(const std::string& name) const { return compute_value(entry(name)); }
  Tensor compute_value(const ParameterEntry& e) const { return compute_.view(e.offset, e.shape); }

  // The flat buffers, [numel()], padding included: values (f32 masters), grads and the
  // compute copy (compute dtype).
  Tensor& values() { return values_; }
  Tensor& grads() { return grads_; }
  const Tensor& values() const { return values_; }
  const Tensor& grads() const { return grads_; }
  const Tensor& compute_values() const { return compute_; }

  DType compute_dtype() const { return grads_.dtype(); }
  bool mixed_precision() const { return compute_dtype() != DType::F32; }
  // Rounds the masters into the compute copy (all of it, or elements [begin, end)). Call after
  // anything writes values(): init, loads, optimizer steps, gathers. Nothing to do in f32.
  void refresh_compute_values(Backend& backend);
  void refresh_compute_values(Backend& backend, std::int64_t begin, std::int64_t end);

  std::int64_t numel() const { return values_.numel(); }
  // Sum of the entries' sizes (no padding): this shard's parameter count.
  std::int64_t parameter_count() const { return parameter_count_; }

 private:
  std::vector<ParameterEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
  Tensor values_;   // [numel] f32 masters
  Tensor grads_;    // [numel] compute dtype
  Tensor compute_;  // [numel] compute dtype; values_ itself in f32
  std::int64_t parameter_count_ = 0;
};

}  // namespace loom::model
