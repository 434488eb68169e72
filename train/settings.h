// The settings the trainers share, declared once (STYLE item 11): model.*, data.*,
// train.*, eval.*, parallel.*, lora.* and run_dir. Each group is added by its own function so a trainer
// composes what it needs; --help, docs/config.md and the startup banner come from here.
//
// Plain functions over config::Schema / config::Config; thread-safe.
#pragma once

#include <cstdint>

#include "core/model/lora_config.h"
#include "core/model/model_config.h"
#include "io/config/config.h"

namespace loom::train {

void add_run_settings(config::Schema& schema);
void add_model_settings(config::Schema& schema);
void add_data_settings(config::Schema& schema);
void add_train_settings(config::Schema& schema);
void add_eval_settings(config::Schema& schema);
void add_checkpoint_settings(config::Schema& schema);
// parallel.tp and parallel.pp; the data-parallel size follows from the world size.
void add_parallel_settings(config::Schema& schema);
// lora.rank, lora.alpha, lora.dropout, lora.targets: low-rank adapters (rank 0 = off).
void add_lora_settings(config::Schema& schema);

// The model architecture the config describes. vocab_size comes from model.vocab_size or,
// when that is 0, from the tokenizer (`tokenizer_vocab`). Throws config::ConfigError naming
// the model.* key when the combination is invalid.
model::ModelConfig model_config_from(const config::Config& config, std::int64_t tokenizer_vocab);

// The adapters lora.* describes. Throws config::ConfigError naming the lora.* key when invalid.
model::LoraConfig lora_config_from(const config::Config& config);

}  // namespace loom::train
