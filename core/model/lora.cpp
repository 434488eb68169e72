#include "core/model/lora.h"

#include <stdexcept>
#include <string>

namespace loom::model {

namespace {

// "layers.3.attn.qkv.lora_a" -> "layers.3.attn.qkv".
std::string adapted_prefix(const std::string& lora_a_name) {
  return lora_a_name.substr(0, lora_a_name.size() - std::string(".lora_a").size());
}

bool ends_with(const std::string& text, const char* suffix) {
  const std::string s(suffix);
  return text.size() >= s.size() && text.compare(text.size() - s.size(), s.size(), s) == 0;
}

}  // namespace

void merge_lora_into(const ParameterSet& adapters, const LoraConfig& lora, ParameterSet& plain, Backend& backend) {
  for (const ParameterEntry& e : adapters.entries()) {
    if (!ends_with(e.name, ".lora_a")) continue;
    const std::string prefix = adapted_prefix(e.name);
    const Tensor a = adapters.value(e);
    const Tensor b = adapters.value(prefix + ".lora_b");
    Tensor weight = plain.value(prefix + ".weight");
    if (weight.dim(0) != b.dim(0) || weight.dim(1) != a.dim(1)) {
      throw std::invalid_argument("merge_lora: '" + prefix + ".weight' " + weight.describe() +
                                  " does not match its adapter B " + b.describe() + " x A " + a.describe() +
                                  " (sets of different shards?)");
    }
    backend.matmul(b, false, a, false, weight, lora.scale(), 1.0f);
  }
}

std::unique_ptr<Transformer> merge_lora(const Transformer& model, Backend& backend) {
  auto merged = std::make_unique<Transformer>(model.config(), model.shard(), model.head_kind(), backend);
  ParameterSet& plain = merged->params();
  for (const ParameterEntry& e : plain.entries()) {
    Tensor to = plain.value(e);
    backend.copy(model.params().value(e.name), to);
  }
  if (model.lora().enabled()) merge_lora_into(model.params(), model.lora(), plain, backend);
  plain.refresh_compute_values(backend);
  return merged;
}

void sum_lora_grads_over_tp(const parallel::TpGroup& tp, Backend& backend, ParameterSet& params) {
  if (!tp.active()) return;
  for (const ParameterEntry& e : params.entries()) {
    if (!is_lora_parameter(e.name)) continue;
    if (e.split == TpSplit::None) {
      Tensor grad = params.grad(e);
      tp.comm->all_reduce_sum(grad);
      continue;
    }
    if (e.split != TpSplit::Rows) continue;
    // B of attn.qkv: the k and v sections of a replicated kv head, as in
    // parallel::sum_replicated_kv_grads: each rank places its replica's gradient in the slot
    // of the head it holds, and the sum over the group adds exactly the replicas of each head.
    const std::int64_t width = e.shape.size() > 1 ? e.shape[1] : 1;
    std::int64_t row = 0;
    for (std::size_t i = 0; i < e.row_sections.size(); ++i) {
      const std::int64_t parts = e.row_section_parts.empty() ? tp.size : e.row_section_parts[i];
      const std::int64_t rows = e.row_sections[i] / parts;
      if (parts < tp.size) {
        const std::int64_t numel = rows * width;
        Tensor slots = Tensor::empty({parts, numel}, params.compute_dtype(), backend.device());
        backend.fill(slots, 0.0f);
        Tensor grad = params.grads().view(e.offset + row * width, {numel});
        Tensor mine = slots.view(section_part(parts, tp.rank, tp.size) * numel, {numel});
        backend.copy(grad, mine);
        tp.comm->all_reduce_sum(slots);
        backend.copy(mine, grad);
      }
      row += rows;
    }
  }
}

}  // namespace loom::model
