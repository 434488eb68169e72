// What every trainer (loom-sft, loom-rm, loom-dpo, loom-ppo, loom-grpo) sets up the same
// way from its config: GEMM threads, the engine's layout options, engines (layout errors
// become configuration errors), the optimizer, the learning-rate schedule, the batch split
// over data-parallel ranks and micro-batches, and token stores checked against the model's
// vocabulary. Each throws config::ConfigError naming the setting.
//
// Thread safety: plain functions of their arguments; the engine factory is collective.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/model/model_config.h"
#include "core/optim/adamw.h"
#include "core/optim/lr_schedule.h"
#include "io/config/config.h"
#include "io/data/token_store.h"
#include "io/tokenizer/tokenizer.h"
#include "train/engine.h"

namespace loom::train {

// train.threads (0: every hardware thread), applied to the GEMM library; returns the count.
int setup_threads(const config::Config& config);

// parallel.* as EngineOptions with the given head.
EngineOptions engine_options(const config::Config& config, model::HeadKind head = model::HeadKind::LM);

// A collective constructor: a layout that does not fit is a ConfigError.
std::unique_ptr<Engine> make_engine(const model::ModelConfig& model_config, const EngineOptions& options,
                                    Backend& backend);

optim::AdamWConfig adamw_config(const config::Config& config);
// train.lr, min_lr, warmup_steps (cut to total_steps), schedule over total_steps.
optim::LrSchedule lr_schedule(const config::Config& config, std::int64_t total_steps);

// The global batch of `rows` rows (train.batch_size, or `rows` given) over dp ranks in
// micro-batches of train.micro_batch_size rows (0: one micro-batch per rank). `group` rows
// must stay on one micro-batch (2 for preference pairs). `what` names the unit in errors.
struct BatchShape {
  std::int64_t global_rows = 0;   // over all dp ranks
  std::int64_t rank_rows = 0;     // per dp rank
  std::int64_t micro_rows = 0;    // per micro-batch
  int micro_batches = 0;          // per dp rank
};
BatchShape batch_shape(const config::Config& config, int dp_size, std::int64_t group = 1);

// Opens data key `key` (a token store path) and checks its vocabulary and, when `kind` is
// non-empty, its kind ("text"/"sft", "preference", "prompt").
std::shared_ptr<const io::TokenStore> open_store(const config::Config& config, const char* key,
                                                 std::int64_t vocab_size, const std::string& kind = "");

// "12.3 MiB"
std::string mib(std::int64_t bytes);

// What every trainer reads first: GEMM threads, the tokenizer, the model config, and the
// data.train / data.val stores (val optional), checked to hold `kind` data ("" = any).
struct TrainerInputs {
  int threads = 0;
  io::Tokenizer tokenizer;
  model::ModelConfig model;
  std::shared_ptr<const io::TokenStore> train, val;
};
TrainerInputs load_trainer_inputs(const config::Config& config, const std::string& kind = "");

// The path at `key` if set, else at `fallback` if set (dpo.reference, else train.init_from).
std::optional<std::filesystem::path> path_or(const config::Config& config, const char* key, const char* fallback);

// A frozen model in the trainer's layout (a reference or reward model): no optimizer, no
// ZeRO, no LoRA, weights from `file`. Collective.
std::unique_ptr<Engine> make_frozen_engine(const model::ModelConfig& model_config, EngineOptions options,
                                           Backend& backend, const std::filesystem::path& file);

// run.json's common part: program, config, git commit, host, start time, layout (with the
// primary engine's memory per rank) and model.
nlohmann::json base_run_record(const std::string& program, const config::Config& config, Engine& engine,
                               const BatchShape& shape, int threads, const std::string& backend_name,
                               std::int64_t seq_len);

// A store's entry in run.json's "data".
nlohmann::json store_record(const config::Config& config, const char* key, const io::TokenStore& store);

// Prints each rank's memory share (every rank of a small world, else rank 0).
void print_memory(const std::string& program, Engine& engine, const BatchShape& shape, std::int64_t seq_len);

// "llama model, 1234 parameters, 6 layers, d_model 256, vocab 4096"
std::string describe_model(const model::ModelConfig& config, model::HeadKind head = model::HeadKind::LM);

}  // namespace loom::train
