// Whole-model weight files: one HDF5 file holding every named f32 tensor as a dataset of
// its global shape, plus a JSON metadata attribute (model config, step, source run).
// This is the hand-off between jobs (pre-training → SFT → later stages) until the sharded
// step checkpoints of docs/checkpoint-format.md take over; h5py/h5dump read it directly.
//
// Writes go to "<file>.tmp" and are renamed into place after H5Fflush + close, so a crash
// never leaves a half-written file under the final name. Not thread-safe (HDF5 global
// state); call from one thread of one rank.
#pragma once

#include <filesystem>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "core/tensor.h"

namespace loom::io {

inline constexpr int kWeightsFormatVersion = 1;

struct NamedTensor {
  std::string name;  // e.g. "layers.0.attn.qkv.weight"
  Tensor tensor;     // f32, CPU
};

// Writes every tensor and `metadata` (stored as the JSON string attribute "metadata").
void save_weights(const std::filesystem::path& file, std::span<const NamedTensor> tensors,
                  const nlohmann::json& metadata);

// Reads the metadata attribute only.
nlohmann::json read_weights_metadata(const std::filesystem::path& file);

// Fills each tensor of `into` from the dataset of the same name. Throws std::runtime_error
// naming the file and the tensor when one is missing or its shape differs.
void load_weights(const std::filesystem::path& file, std::span<NamedTensor> into);

}  // namespace loom::io
