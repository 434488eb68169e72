#include "core/parallel/tensor_parallel.h"

#include <stdexcept>
#include <string>

namespace loom::parallel {

void CopyToTp::backward(const TpGroup& tp, Tensor& grad) {
  if (tp.active()) tp.comm->all_reduce_sum(grad);
}

void ReduceFromTp::forward(const TpGroup& tp, Tensor& partial) {
  if (tp.active()) tp.comm->all_reduce_sum(partial);
}

void VocabParallelEmbedding::forward(const TpGroup& tp, Backend& backend, const Tensor& ids, const Tensor& table,
                                     Tensor& out) {
  backend.embedding_forward(ids, table, out, static_cast<std::int64_t>(tp.rank) * table.dim(0));
  if (tp.active()) tp.comm->all_reduce_sum(out);
}

void VocabParallelEmbedding::backward(const TpGroup& tp, Backend& backend, const Tensor& ids, const Tensor& dout,
                                      Tensor& dtable) {
  backend.embedding_backward(ids, dout, dtable, static_cast<std::int64_t>(tp.rank) * dtable.dim(0));
}

void GatherVocabFromTp::forward(const TpGroup& tp, Backend& backend, const Tensor& local, Tensor& gathered,
                                Tensor& order, Tensor& full) {
  const std::int64_t vocab_slice = local.dim(local.ndim() - 1);
  const std::int64_t rows = local.numel() / vocab_slice;
  if (full.numel() != rows * vocab_slice * tp.size) {
    throw std::invalid_argument("GatherVocabFromTp: full logits " + full.describe() + " do not hold " +
                                std::to_string(tp.size) + " slices of " + local.describe());
  }
  if (!tp.active()) {
    backend.copy(local, full);
    return;
  }
  const std::int64_t parts = tp.size;
  if (!gathered.defined() || gathered.numel() < parts * local.numel() || gathered.dtype() != local.dtype()) {
    gathered = Tensor::empty({parts * local.numel()}, local.dtype(), backend.device());
  }
  Tensor all = gathered.view(0, {parts * rows, vocab_slice});
  tp.comm->all_gather(local, all);
  // all holds rank r's slice of row n at row r·N + n; full row n is the slices of every rank
  // side by side, i.e. row n·tp + r of full viewed as [N·tp, V/tp].
  if (!order.defined() || order.numel() != parts * rows) {
    Tensor host = Tensor::empty({parts * rows}, DType::I32);
    std::int32_t* index = host.data<std::int32_t>();
    for (std::int64_t n = 0; n < rows; ++n) {
      for (std::int64_t r = 0; r < parts; ++r) index[n * parts + r] = static_cast<std::int32_t>(r * rows + n);
    }
    if (backend.device() == Device::CPU) {
      order = host;
    } else {
      order = Tensor::empty(host.shape(), DType::I32, backend.device());
      backend.copy(host, order);
    }
  }
  Tensor out = full.reshape({rows * parts, vocab_slice});
  backend.gather_rows(all, order, out);
}

void VocabParallelCrossEntropy::plan(const TpGroup& tp, std::int64_t rows, Device device) {
  if (stats_.defined() && stats_.dim(0) == rows && all_stats_.dim(0) == tp.size) return;
  stats_ = Tensor::empty({rows, 3}, DType::F32, device);
  all_stats_ = Tensor::empty({static_cast<std::int64_t>(tp.size), rows, 3}, DType::F32, device);
  lse_ = Tensor::empty({rows}, DType::F32, device);
}

void VocabParallelCrossEntropy::forward(const TpGroup& tp, Backend& backend, const Tensor& logits,
                                        const Tensor& targets, Tensor& losses) {
  if (!tp.active()) {
    backend.cross_entropy_forward(logits, targets, losses);
    return;
  }
  const std::int64_t rows = logits.numel() / logits.dim(logits.ndim() - 1);
  const std::int64_t vocab_offset = static_cast<std::int64_t>(tp.rank) * logits.dim(logits.ndim() - 1);
  plan(tp, rows, backend.device());
  backend.cross_entropy_shard_stats(logits, targets, vocab_offset, stats_);
  tp.comm->all_gather(stats_, all_stats_);
  backend.cross_entropy_shard_combine(all_stats_, targets, lse_, losses);
}

void VocabParallelCrossEntropy::backward(const TpGroup& tp, Backend& backend, const Tensor& logits,
                                         const Tensor& targets, const Tensor& dloss, Tensor& dlogits) {
  if (!tp.active()) {
    backend.cross_entropy_backward(logits, targets, dloss, dlogits);
    return;
  }
  if (!lse_.defined() || lse_.numel() != targets.numel()) {
    throw std::logic_error("VocabParallelCrossEntropy::backward: no forward on " + std::to_string(targets.numel()) +
                           " rows precedes it");
  }
  const std::int64_t vocab_offset = static_cast<std::int64_t>(tp.rank) * logits.dim(logits.ndim() - 1);
  backend.cross_entropy_shard_backward(logits, targets, vocab_offset, lse_, dloss, dlogits);
}

namespace {

// Calls fn(section_index, first local row, local rows, parts) for every row section.
template <typename Fn>
void for_each_section(const model::ParameterEntry& e, int tp_size, Fn fn) {
  std::int64_t row = 0;
  for (std::size_t i = 0; i < e.row_sections.size(); ++i) {
    const std::int64_t parts = e.row_section_parts.empty() ? tp_size : e.row_section_parts[i];
    const std::int64_t rows = e.row_sections[i] / parts;
    fn(i, row, rows, parts);
    row += rows;
  }
}

std::int64_t row_width(const model::ParameterEntry& e) { return e.shape.size() > 1 ? e.shape[1] : 1; }

}  // namespace

void sum_replicated_kv_grads(const TpGroup& tp, Backend& backend, model::ParameterSet& params) {
  if (!tp.active()) return;
  for (const model::ParameterEntry& e : params.entries()) {
    if (e.split != model::TpSplit::Rows) continue;
    const std::int64_t width = row_width(e);
    for_each_section(e, tp.size, [&](std::size_t, std::int64_t first_row, std::int64_t rows, std::int64_t parts) {
      if (parts >= tp.size) return;
      // Every rank places its replica's gradient in the slot of the head it holds; the sum
      // over the group then adds exactly the replicas of each head.
      const std::int64_t numel = rows * width;
      Tensor slots = Tensor::empty({parts, numel}, params.compute_dtype(), backend.device());
      backend.fill(slots, 0.0f);
      Tensor grad = params.grads().view(e.offset + first_row * width, {numel});
      Tensor mine = slots.view(model::section_part(parts, tp.rank, tp.size) * numel, {numel});
      backend.copy(grad, mine);
      tp.comm->all_reduce_sum(slots);
      backend.copy(mine, grad);
    });
  }
}

std::vector<WeightedRange> tp_norm_weights(const model::ParameterEntry& e, const TpGroup& tp) {
  if (tp.size <= 1) return {WeightedRange{0, e.numel, 1.0}};
  if (e.split == model::TpSplit::None) return {WeightedRange{0, e.numel, tp.rank == 0 ? 1.0 : 0.0}};
  if (e.split == model::TpSplit::Cols || e.row_sections.empty()) return {WeightedRange{0, e.numel, 1.0}};
  std::vector<WeightedRange> ranges;
  const std::int64_t width = row_width(e);
  for_each_section(e, tp.size, [&](std::size_t, std::int64_t first_row, std::int64_t rows, std::int64_t parts) {
    const double weight = parts >= tp.size ? 1.0 : static_cast<double>(parts) / tp.size;
    ranges.push_back(WeightedRange{first_row * width, rows * width, weight});
  });
  return ranges;
}

}  // namespace loom::parallel
