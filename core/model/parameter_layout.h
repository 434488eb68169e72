// The list of parameters a model shard holds: names, global and local shapes, how each
// tensor is split under tensor parallelism, weight-decay group and initialisation rule.
// This list is the single source of truth that ParameterSet (flat buffers), init_weights,
// parameter_count, checkpoints and gradient bucketing all read.
//
// Names use global layer indices ("layers.7.attn.qkv.weight" is layer 7 whichever pipeline
// stage holds it) and map 1:1 to the PyTorch reference in tests/reference.
//
// Pure functions over values: safe from any thread or rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/lora_config.h"
#include "core/model/model_config.h"
#include "core/tensor.h"

namespace loom::model {

// How a global tensor is cut into tp_size slices (slice r goes to tp rank r).
enum class TpSplit : std::uint8_t {
  None,   // replicated on every tp rank
  Rows,   // dim 0 cut; with row sections, each section is cut separately (fused qkv)
  Cols,   // dim 1 cut (row-parallel linears: attention out, MLP down)
  Vocab,  // dim 0 of a [V, C] table cut by vocabulary range (embedding, LM head)
};

const char* tp_split_name(TpSplit split);

enum class InitKind : std::uint8_t { Normal, Zeros, Ones };

struct ParameterSpec {
  std::string name;
  Shape global_shape;
  Shape shape;  // this tp rank's slice
  bool decay = false;
  TpSplit split = TpSplit::None;
  // For Rows/Vocab: the global heights of the row sections that are each split evenly
  // (qkv: {Hq·D, Hkv·D, Hkv·D}); a single section for ordinary tensors.
  std::vector<std::int64_t> row_sections;
  // How many parts each row section is cut into: tp_size, except the k and v sections when
  // there are fewer kv heads than tp ranks; then each kv head is one part, replicated on the
  // tp_size / parts ranks whose query heads read it (tp rank r holds part r·parts/tp_size),
  // and those replicas' gradients must be summed over the ranks sharing them.
  std::vector<std::int64_t> row_section_parts;
  InitKind init = InitKind::Zeros;
  float init_std = 0.0f;  // InitKind::Normal only
};

// Every parameter of the shard, in flat-buffer order. With LoRA enabled the adapters
// "layers.N.<target>.lora_a" [r, in] and ".lora_b" [out, r] follow every base parameter
// (layer by layer, targets in block order), so they form one contiguous trainable range.
// Throws std::invalid_argument when the config, spec or LoRA config is invalid.
std::vector<ParameterSpec> parameter_specs(const ModelConfig& config, const ShardSpec& shard, HeadKind head,
                                           const LoraConfig& lora = {});

// The flat index in the GLOBAL tensor of element `local_index` of tp slice `tp_rank` of
// `tp_size`. Used by init_weights so values do not depend on the layout, and by checkpoint
// resharding.
// Which part of a row section tp rank `tp_rank` holds.
inline std::int64_t section_part(std::int64_t parts, int tp_rank, int tp_size) {
  return static_cast<std::int64_t>(tp_rank) * parts / tp_size;
}

std::int64_t global_element_index(const ParameterSpec& spec, std::int64_t local_index, int tp_rank, int tp_size);

// A rectangle of a global tensor seen as 2-D [rows, cols] (a 1-D tensor of n elements is
// [n, 1]) that a contiguous run of a tp slice's elements maps to. Checkpoints save and load
// parameters and optimizer state as such boxes, so any layout can read what another wrote.
struct SliceBox {
  std::int64_t local_offset = 0;  // first element of the run in the local slice
  std::int64_t row0 = 0, rows = 0, col0 = 0, cols = 0;
  // The one tp rank that saves this box: false on the extra holders of a replicated tensor
  // (TpSplit::None) or of a replicated kv head (row_section_parts < tp_size).
  bool tp_owner = true;
  std::int64_t numel() const { return rows * cols; }
};

// The boxes covering elements [begin, end) of tp rank `tp_rank`'s slice, in local order: the
// run is cut at row-section edges, and a run that starts or ends inside a row gives a
// one-row box for the partial row. The local elements of each box are contiguous.
std::vector<SliceBox> slice_boxes(const ParameterSpec& spec, int tp_rank, int tp_size, std::int64_t begin,
                                  std::int64_t end);

}  // namespace loom::model
