#include "train/setup.h"

#include <algorithm>
#include <iostream>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "core/kernels/gemm/gemm.h"
#include "io/record/fingerprint.h"
#include "train/device.h"
#include "io/record/run_record.h"
#include "io/weights/model_weights.h"
#include "train/settings.h"
#include "train/settings.h"

namespace loom::train {

int setup_threads(const config::Config& config) {
  const int threads = config.get_int("train.threads") > 0 ? static_cast<int>(config.get_int("train.threads"))
                                                           : static_cast<int>(std::thread::hardware_concurrency());
  cpu::set_gemm_threads(threads);
  return threads;
}

EngineOptions engine_options(const config::Config& config, model::HeadKind head) {
  EngineOptions options;
  options.layout = launch::ParallelLayout{static_cast<int>(config.get_int("parallel.tp")),
                                          static_cast<int>(config.get_int("parallel.pp"))};
  options.schedule = parallel::parse_schedule(config.get_string("parallel.schedule"));
  options.zero1 = config.get_bool("parallel.zero1");
  options.bucket_elements = config.get_int("parallel.bucket_mb") * (std::int64_t{1} << 20) / 4;
  options.stage_layers = config.get_int_list("parallel.stage_layers");
  if (config.schema().find("lora.rank") != nullptr) options.lora = lora_config_from(config);
  options.head = head;
  if (config.schema().find("train.precision") != nullptr) options.precision = precision_from(config);
  return options;
}

std::unique_ptr<Engine> make_engine(const model::ModelConfig& model_config, const EngineOptions& options,
                                    Backend& backend) {
  try {
    return std::make_unique<Engine>(model_config, options, backend);
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(e.what());
  }
}

optim::AdamWConfig adamw_config(const config::Config& config) {
  optim::AdamWConfig adamw;
  adamw.beta1 = static_cast<float>(config.get_float("train.beta1"));
  adamw.beta2 = static_cast<float>(config.get_float("train.beta2"));
  adamw.eps = static_cast<float>(config.get_float("train.eps"));
  adamw.weight_decay = static_cast<float>(config.get_float("train.weight_decay"));
  return adamw;
}

optim::LrSchedule lr_schedule(const config::Config& config, std::int64_t total_steps) {
  optim::LrSchedule schedule;
  schedule.max_lr = static_cast<float>(config.get_float("train.lr"));
  schedule.min_lr = static_cast<float>(config.get_float("train.min_lr"));
  // A short run (a smoke test with train.max_steps=30) keeps the config's warmup length
  // rather than failing: warmup is cut to the run.
  schedule.warmup_steps = std::min(config.get_int("train.warmup_steps"), total_steps);
  schedule.total_steps = total_steps;
  schedule.decay = optim::parse_decay_kind(config.get_string("train.schedule"));
  try {
    schedule.validate();
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(std::string("invalid train.* schedule settings: ") + e.what());
  }
  return schedule;
}

BatchShape batch_shape(const config::Config& config, int dp_size, std::int64_t group) {
  const std::int64_t batch = config.get_int("train.batch_size");
  std::int64_t micro = config.get_int("train.micro_batch_size");
  const std::string unit = group == 2 ? " pairs" : "";
  if (batch % dp_size != 0) {
    throw config::ConfigError("train.batch_size = " + std::to_string(batch) + unit + " does not divide over " +
                              std::to_string(dp_size) + " data-parallel ranks (it is the global batch)");
  }
  if (micro == 0) micro = batch / dp_size;
  if (batch % (dp_size * micro) != 0) {
    throw config::ConfigError("train.batch_size = " + std::to_string(batch) + unit +
                              " is not a multiple of data-parallel ranks x train.micro_batch_size = " +
                              std::to_string(dp_size) + " x " + std::to_string(micro) +
                              " (each rank runs batch_size / ranks in micro-batches)");
  }
  BatchShape shape;
  shape.global_rows = batch * group;
  shape.rank_rows = batch / dp_size * group;
  shape.micro_rows = micro * group;
  shape.micro_batches = static_cast<int>(batch / (dp_size * micro));
  return shape;
}

std::shared_ptr<const io::TokenStore> open_store(const config::Config& config, const char* key,
                                                 std::int64_t vocab_size, const std::string& kind) {
  const auto path = config.get_path(key);
  auto store = io::TokenStore::open(path);
  if (store->info().vocab_size > vocab_size) {
    throw config::ConfigError(std::string(key) + " = " + path.string() + " was tokenized with " +
                              std::to_string(store->info().vocab_size) + " tokens but the model has " +
                              std::to_string(vocab_size) + " (data.tokenizer or model.vocab_size mismatch)");
  }
  if (!kind.empty() && store->info().kind != kind) {
    throw config::ConfigError(std::string(key) + " = " + path.string() + " holds \"" + store->info().kind +
                              "\" data but this trainer needs \"" + kind +
                              "\" data (make it with loom-prep from JSONL of that form)");
  }
  return store;
}

std::string mib(std::int64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (1 << 20) << " MiB";
  return out.str();
}

TrainerInputs load_trainer_inputs(const config::Config& config, const std::string& kind) {
  TrainerInputs inputs{setup_threads(config), io::Tokenizer::load(config.get_path("data.tokenizer")), {}, {}, {}};
  inputs.model = model_config_from(config, inputs.tokenizer.vocab_size());
  inputs.train = open_store(config, "data.train", inputs.model.vocab_size, kind);
  if (config.has_value("data.val")) inputs.val = open_store(config, "data.val", inputs.model.vocab_size, kind);
  return inputs;
}

std::optional<std::filesystem::path> path_or(const config::Config& config, const char* key, const char* fallback) {
  if (config.has_value(key)) return config.get_path(key);
  if (config.has_value(fallback)) return config.get_path(fallback);
  return std::nullopt;
}

std::unique_ptr<Engine> make_frozen_engine(const model::ModelConfig& model_config, EngineOptions options,
                                           Backend& backend, const std::filesystem::path& file) {
  options.zero1 = false;
  options.lora = {};
  std::unique_ptr<Engine> engine = make_engine(model_config, options, backend);
  engine->load_weights(file.string());
  return engine;
}

nlohmann::json base_run_record(const std::string& program, const config::Config& config, Engine& engine,
                               const BatchShape& shape, int threads, const std::string& backend_name,
                               std::int64_t seq_len) {
  const EngineOptions& options = engine.options();
  const MemoryReport memory = engine.memory(shape.micro_batches, shape.micro_rows, seq_len);
  const model::ModelConfig& model_config = engine.config();
  return {{"program", program},
          {"config", config.to_json()},
          {"git_commit", record::git_commit()},
          {"host", record::host_info()},
          {"started_at", record::utc_now()},
          {"layout",
           {{"world_size", engine.groups().world_size()}, {"dp", engine.dp_size()}, {"tp", engine.groups().tp_size()},
            {"pp", engine.groups().pp_size()}, {"schedule", parallel::schedule_name(options.schedule)},
            {"zero1", options.zero1}, {"micro_batches", shape.micro_batches}, {"threads", threads},
            {"backend", backend_name}, {"gemm", cpu::gemm_library()},
            {"memory_bytes_rank0",
             {{"parameters", memory.parameters}, {"gradients", memory.gradients}, {"optimizer", memory.optimizer},
              {"activations", memory.activations}}}}},
          {"model",
           {{"config", io::model_config_json(model_config)},
            {"head", model::head_kind_name(options.head)},
            {"parameters", model_config.parameter_count(options.head)},
            {"training_flops_per_token", model_config.training_flops_per_token(seq_len)}}},
          {"data", {{"tokenizer", config.get_path("data.tokenizer").string()}}}};
}

nlohmann::json store_record(const config::Config& config, const char* key, const io::TokenStore& store) {
  return {{"path", config.get_path(key).string()},
          {"fingerprint", record::hex64(store.fingerprint())},
          {"documents", store.n_documents()},
          {"tokens", store.n_tokens()},
          {"kind", store.info().kind}};
}

void print_memory(const std::string& program, Engine& engine, const BatchShape& shape, std::int64_t seq_len) {
  if (!engine.leader() && engine.groups().world_size() > 8) return;
  const MemoryReport memory = engine.memory(shape.micro_batches, shape.micro_rows, seq_len);
  std::ostringstream line;  // one write: other ranks' lines must not split it
  line << program << ": memory of " << engine.groups().describe() << ": parameters " << mib(memory.parameters)
       << ", gradients " << mib(memory.gradients) << ", optimizer " << mib(memory.optimizer) << ", activations "
       << mib(memory.activations) << ", total " << mib(memory.total()) << "\n";
  std::cerr << line.str();
}

std::string describe_model(const model::ModelConfig& config, model::HeadKind head) {
  std::ostringstream out;
  out << model::family_name(config.family) << " model" << (head == model::HeadKind::Scalar ? " with a scalar head" : "")
      << ", " << config.parameter_count(head) << " parameters, " << config.n_layers << " layers, d_model "
      << config.d_model << ", vocab " << config.vocab_size;
  return out.str();
}

}  // namespace loom::train
