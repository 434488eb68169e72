// Hugging Face config.json ⇄ loom's model::ModelConfig, for LlamaForCausalLM and
// GPT2LMHeadModel.
//
// Export writes the fields transformers reads for the family (sizes, norm epsilon, RoPE,
// tying, biases, activation, torch_dtype). loom's static NTK-aware RoPE scaling has no
// Hugging Face counterpart, so it is exported as the equivalent base
// rope_theta·factor^(d/(d-2)) with rope_scaling null, plus a "loom_rope" entry that lets
// import restore the original settings.
//
// Import reads the same fields, applies transformers' defaults for optional ones, and
// refuses what loom cannot run (another model_type, activation, RoPE type, partial rotary,
// head_dim, attention scaling), with an error naming config.json and the key.
//
// Pure functions over values: safe from any thread or rank.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/model/model_config.h"

namespace loom::io::hf {

// torch_dtype is "float32" or "bfloat16". Throws std::invalid_argument naming the loom
// field when the model has no exact Hugging Face equivalent (GPT-2 without biases, partial
// rotary dimensions).
nlohmann::json hf_config_json(const model::ModelConfig& config, const std::string& torch_dtype);

// `source` (the config.json path) prefixes every error. Throws std::runtime_error.
model::ModelConfig model_config_from_hf(const nlohmann::json& hf_config, const std::string& source);

// The shortest decimal that reads back as the same float, as a double for JSON: 1e-5f
// becomes 1e-05 rather than 9.999999747378752e-06.
double float_for_json(float value);

}  // namespace loom::io::hf
