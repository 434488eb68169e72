// Conversion between a whole loom model and a Hugging Face model directory:
//
//   DIR/config.json                     LlamaForCausalLM or GPT2LMHeadModel (hf_config.h)
//   DIR/model.safetensors               every tensor under its Hugging Face name (hf_names.h)
//   or DIR/model-0000k-of-0000n.safetensors + DIR/model.safetensors.index.json  (import only)
//
// Export writes one model.safetensors (metadata {"format": "pt"}, which transformers
// requires) and config.json, each atomically. Import accepts one file, an index with shards,
// or every *.safetensors in DIR; tensors may be F32, F16, BF16 or F64. It refuses a
// missing tensor, a tensor of the wrong shape, a tensor claimed by two files, and tensors
// that match nothing in the config (so a config.json that does not belong to the weights is
// caught), skipping only weightless buffers; a tied model's redundant lm_head.weight is
// accepted when it equals the embedding.
//
// Memory: the whole model in RAM as f32 (plus one transposed copy per GPT-2 Conv1D weight
// while exporting). Threads: one thread; no MPI.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "io/hf/loom_model_file.h"
#include "io/hf/safetensors.h"

namespace loom::io::hf {

struct ExportSummary {
  std::filesystem::path safetensors;
  std::filesystem::path config;
  std::int64_t tensors = 0;
  std::int64_t parameters = 0;
};

// dtype: F32 or BF16 (weights rounded to nearest even). Throws std::invalid_argument when
// the model has no Hugging Face equivalent, std::runtime_error naming the file on I/O errors.
ExportSummary export_hf(const LoomModel& model, const std::filesystem::path& out_dir, StDType dtype);

// Reads DIR as described above. Throws std::runtime_error naming DIR's file and the tensor
// or config key at fault.
LoomModel import_hf(const std::filesystem::path& hf_dir);

}  // namespace loom::io::hf
