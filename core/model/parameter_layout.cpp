#include "core/model/parameter_layout.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace loom::model {

const char* tp_split_name(TpSplit split) {
  switch (split) {
    case TpSplit::None: return "none";
    case TpSplit::Rows: return "rows";
    case TpSplit::Cols: return "cols";
    case TpSplit::Vocab: return "vocab";
  }
  return "?";
}

namespace {

class SpecBuilder {
 public:
  SpecBuilder(const ModelConfig& config, const ShardSpec& shard) : config_(config), tp_(shard.tp_size) {}

  void normal(const std::string& name, Shape global, TpSplit split, float std,
              std::vector<std::int64_t> sections = {}, std::vector<std::int64_t> parts = {}) {
    add(name, std::move(global), split, /*decay=*/true, InitKind::Normal, std, std::move(sections), std::move(parts));
  }
  void bias(const std::string& name, std::int64_t size, TpSplit split, std::vector<std::int64_t> sections = {},
            std::vector<std::int64_t> parts = {}) {
    add(name, {size}, split, /*decay=*/false, InitKind::Zeros, 0.0f, std::move(sections), std::move(parts));
  }
  void norm(const std::string& prefix) {
    add(prefix + ".weight", {config_.d_model}, TpSplit::None, false, InitKind::Ones, 0.0f, {}, {});
    if (config_.family == Family::GPT2) {
      add(prefix + ".bias", {config_.d_model}, TpSplit::None, false, InitKind::Zeros, 0.0f, {}, {});
    }
  }

  // A LoRA half: trained, decayed like the weight it adapts.
  void adapter(const std::string& name, Shape global, TpSplit split, InitKind init, float std,
               std::vector<std::int64_t> sections = {}, std::vector<std::int64_t> parts = {}) {
    add(name, std::move(global), split, /*decay=*/true, init, std, std::move(sections), std::move(parts));
  }

  std::vector<ParameterSpec> take() { return std::move(specs_); }

 private:
  void add(const std::string& name, Shape global, TpSplit split, bool decay, InitKind init, float std,
           std::vector<std::int64_t> sections, std::vector<std::int64_t> parts) {
    ParameterSpec spec;
    spec.name = name;
    spec.global_shape = global;
    spec.shape = global;
    spec.decay = decay;
    spec.split = split;
    spec.init = init;
    spec.init_std = std;
    if (split == TpSplit::Rows || split == TpSplit::Vocab) {
      spec.row_sections = sections.empty() ? std::vector<std::int64_t>{global[0]} : std::move(sections);
      spec.row_section_parts = parts.empty() ? std::vector<std::int64_t>(spec.row_sections.size(), tp_) : std::move(parts);
      spec.shape[0] = 0;
      for (std::size_t i = 0; i < spec.row_sections.size(); ++i) {
        spec.shape[0] += spec.row_sections[i] / spec.row_section_parts[i];
      }
    } else if (split == TpSplit::Cols) {
      spec.shape[1] = global[1] / tp_;
    }
    specs_.push_back(std::move(spec));
  }

  const ModelConfig& config_;
  std::int64_t tp_;
  std::vector<ParameterSpec> specs_;
};

}  // namespace

std::vector<ParameterSpec> parameter_specs(const ModelConfig& config, const ShardSpec& shard_in, HeadKind head,
                                           const LoraConfig& lora) {
  config.validate();
  lora.validate();
  if (lora.has(LoraTarget::Gate) && config.family != Family::Llama) {
    throw std::invalid_argument("lora.targets names mlp.gate, which only the llama family has (this model is " +
                                std::string(family_name(config.family)) + ")");
  }
  const ShardSpec shard = shard_in.resolved(config);
  const std::int64_t C = config.d_model;
  const std::int64_t D = config.head_dim();
  const std::int64_t q_rows = config.n_heads * D;
  const std::int64_t kv_rows = config.n_kv_heads * D;
  const std::int64_t F = config.d_ff;
  const float std = config.init_std;
  // GPT-2's scaled init: each residual branch output is shrunk so the residual stream's
  // variance does not grow with depth.
  const float residual_std = std / std::sqrt(2.0f * static_cast<float>(config.n_layers));
  const bool gpt2 = config.family == Family::GPT2;
  // Fewer kv heads than tp ranks: one kv head per rank, replicated (see row_section_parts).
  const std::int64_t kv_parts = std::min<std::int64_t>(config.n_kv_heads, shard.tp_size);

  SpecBuilder b(config, shard);
  const bool head_needs_tokens = head == HeadKind::LM && config.tie_embeddings && shard.owns_head(config);
  if (shard.owns_embeddings() || head_needs_tokens) {
    // A head-only stage with tied embeddings keeps a replica whose gradient the pipeline
    // sums with the first stage's.
    b.normal("embed.tokens.weight", {config.vocab_size, C}, TpSplit::Vocab, std);
  }
  if (shard.owns_embeddings() && gpt2) {
    b.normal("embed.positions.weight", {config.max_seq_len, C}, TpSplit::None, std);
  }
  for (std::int64_t layer = shard.layer_begin; layer < shard.layer_end; ++layer) {
    const std::string p = "layers." + std::to_string(layer) + ".";
    b.norm(p + "attn_norm");
    const std::vector<std::int64_t> qkv_sections = {q_rows, kv_rows, kv_rows};
    const std::vector<std::int64_t> qkv_parts = {shard.tp_size, kv_parts, kv_parts};
    b.normal(p + "attn.qkv.weight", {q_rows + 2 * kv_rows, C}, TpSplit::Rows, std, qkv_sections, qkv_parts);
    if (config.bias) b.bias(p + "attn.qkv.bias", q_rows + 2 * kv_rows, TpSplit::Rows, qkv_sections, qkv_parts);
    b.normal(p + "attn.out.weight", {C, q_rows}, TpSplit::Cols, residual_std);
    if (config.bias) b.bias(p + "attn.out.bias", C, TpSplit::None);
    b.norm(p + "mlp_norm");
    if (!gpt2) {
      b.normal(p + "mlp.gate.weight", {F, C}, TpSplit::Rows, std);
      if (config.bias) b.bias(p + "mlp.gate.bias", F, TpSplit::Rows);
    }
    b.normal(p + "mlp.up.weight", {F, C}, TpSplit::Rows, std);
    if (config.bias) b.bias(p + "mlp.up.bias", F, TpSplit::Rows);
    b.normal(p + "mlp.down.weight", {C, F}, TpSplit::Cols, residual_std);
    if (config.bias) b.bias(p + "mlp.down.bias", C, TpSplit::None);
  }
  if (shard.owns_head(config)) {
    b.norm("final_norm");
    if (head == HeadKind::LM) {
      if (!config.tie_embeddings) b.normal("lm_head.weight", {config.vocab_size, C}, TpSplit::Vocab, std);
    } else {
      b.normal("score_head.weight", {1, C}, TpSplit::None, std);
      b.bias("score_head.bias", 1, TpSplit::None);
    }
  }
  if (lora.enabled()) {
    const std::int64_t r = lora.rank;
    for (std::int64_t layer = shard.layer_begin; layer < shard.layer_end; ++layer) {
      const std::string p = "layers." + std::to_string(layer) + ".";
      // in, out and (column-parallel) the row sections of each target's weight.
      struct Geometry {
        LoraTarget target;
        std::int64_t in, out;
        std::vector<std::int64_t> sections, parts;
      };
      const Geometry geometries[] = {
          {LoraTarget::Qkv, C, q_rows + 2 * kv_rows, {q_rows, kv_rows, kv_rows}, {shard.tp_size, kv_parts, kv_parts}},
          {LoraTarget::Out, q_rows, C, {}, {}},
          {LoraTarget::Gate, C, F, {}, {}},
          {LoraTarget::Up, C, F, {}, {}},
          {LoraTarget::Down, F, C, {}, {}}};
      for (const Geometry& g : geometries) {
        if (!lora.has(g.target)) continue;
        const std::string name = p + lora_target_name(g.target);
        // PEFT's kaiming_uniform_(a=sqrt(5)) draws A from U(-1/sqrt(in), 1/sqrt(in)); a normal of
        // the same variance keeps the layout-independent generator of init.h.
        const float a_std = 1.0f / std::sqrt(3.0f * static_cast<float>(g.in));
        if (lora_column_parallel(g.target)) {
          b.adapter(name + ".lora_a", {r, g.in}, TpSplit::None, InitKind::Normal, a_std);
          b.adapter(name + ".lora_b", {g.out, r}, TpSplit::Rows, InitKind::Zeros, 0.0f, g.sections, g.parts);
        } else {
          b.adapter(name + ".lora_a", {r, g.in}, TpSplit::Cols, InitKind::Normal, a_std);
          b.adapter(name + ".lora_b", {g.out, r}, TpSplit::None, InitKind::Zeros, 0.0f);
        }
      }
    }
  }
  return b.take();
}

std::int64_t global_element_index(const ParameterSpec& spec, std::int64_t local_index, int tp_rank, int tp_size) {
  if (tp_size == 1 || spec.split == TpSplit::None) return local_index;
  const std::int64_t cols_global = spec.global_shape.size() > 1 ? spec.global_shape[1] : 1;
  if (spec.split == TpSplit::Cols) {
    const std::int64_t cols_local = cols_global / tp_size;
    const std::int64_t row = local_index / cols_local;
    const std::int64_t col = local_index % cols_local;
    return row * cols_global + static_cast<std::int64_t>(tp_rank) * cols_local + col;
  }
  const std::int64_t row_local = local_index / cols_global;
  const std::int64_t col = local_index % cols_global;
  std::int64_t local_start = 0;
  std::int64_t global_start = 0;
  for (std::size_t i = 0; i < spec.row_sections.size(); ++i) {
    const std::int64_t section = spec.row_sections[i];
    const std::int64_t parts = spec.row_section_parts.empty() ? tp_size : spec.row_section_parts[i];
    const std::int64_t section_local = section / parts;
    if (row_local < local_start + section_local) {
      const std::int64_t global_row =
          global_start + section_part(parts, tp_rank, tp_size) * section_local + (row_local - local_start);
      return global_row * cols_global + col;
    }
    local_start += section_local;
    global_start += section;
  }
  throw std::out_of_range("global_element_index: element " + std::to_string(local_index) + " is outside '" +
                          spec.name + "' " + shape_string(spec.shape));
}

namespace {

// The global row of local row `row` and whether this tp rank is the one that saves it.
struct RowPlace {
  std::int64_t global_row = 0;
  std::int64_t rows_left = 0;  // local rows from `row` to the end of its section
  bool owner = true;
};

RowPlace place_row(const ParameterSpec& spec, std::int64_t row, int tp_rank, int tp_size) {
  if (tp_size == 1 || spec.split == TpSplit::None || spec.split == TpSplit::Cols) {
    return RowPlace{row, spec.shape[0] - row, tp_size == 1 || spec.split != TpSplit::None || tp_rank == 0};
  }
  std::int64_t local_start = 0, global_start = 0;
  for (std::size_t i = 0; i < spec.row_sections.size(); ++i) {
    const std::int64_t section = spec.row_sections[i];
    const std::int64_t parts = spec.row_section_parts.empty() ? tp_size : spec.row_section_parts[i];
    const std::int64_t section_local = section / parts;
    if (row < local_start + section_local) {
      const std::int64_t part = section_part(parts, tp_rank, tp_size);
      // The lowest tp rank holding this part saves it.
      const bool owner = tp_rank == 0 || section_part(parts, tp_rank - 1, tp_size) != part;
      return RowPlace{global_start + part * section_local + (row - local_start), local_start + section_local - row,
                      owner};
    }
    local_start += section_local;
    global_start += section;
  }
  throw std::out_of_range("slice_boxes: row " + std::to_string(row) + " is outside '" + spec.name + "' " +
                          shape_string(spec.shape));
}

}  // namespace

std::vector<SliceBox> slice_boxes(const ParameterSpec& spec, int tp_rank, int tp_size, std::int64_t begin,
                                  std::int64_t end) {
  const std::int64_t local_cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
  const std::int64_t local_rows = spec.shape.empty() ? 1 : spec.shape[0];
  if (begin < 0 || end > local_rows * local_cols || begin > end) {
    throw std::out_of_range("slice_boxes: range [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") is outside '" + spec.name + "' " + shape_string(spec.shape));
  }
  const std::int64_t col_shift =
      tp_size > 1 && spec.split == TpSplit::Cols ? static_cast<std::int64_t>(tp_rank) * local_cols : 0;
  std::vector<SliceBox> boxes;
  std::int64_t at = begin;
  while (at < end) {
    const std::int64_t row = at / local_cols, col = at % local_cols;
    const RowPlace place = place_row(spec, row, tp_rank, tp_size);
    SliceBox box;
    box.local_offset = at;
    box.row0 = place.global_row;
    box.col0 = col_shift + col;
    box.tp_owner = place.owner;
    if (col != 0 || end - at < local_cols) {  // a partial row
      box.rows = 1;
      box.cols = std::min(local_cols - col, end - at);
    } else {  // whole rows, up to the range's last whole row or the section's end
      box.rows = std::min((end - at) / local_cols, place.rows_left);
      box.cols = local_cols;
    }
    boxes.push_back(box);
    at += box.numel();
  }
  return boxes;
}

}  // namespace loom::model
