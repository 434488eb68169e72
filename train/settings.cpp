#include "train/settings.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "train/device.h"

namespace loom::train {

void add_run_settings(config::Schema& schema) {
  schema.add_path("run_dir", config::required,
                  "Directory for this run's metrics.jsonl, run.json and model.h5 (created if missing)");
}

void add_model_settings(config::Schema& schema) {
  schema.describe_group("model", "Model architecture (GPT-2 or Llama family)");
  schema.add_enum("model.family", std::string("llama"), {"gpt2", "llama"},
                  "gpt2: LayerNorm, learned positions, GELU, biases, tied embeddings; "
                  "llama: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases");
  schema.add_int("model.vocab_size", 0, "Vocabulary size; 0 = the tokenizer's", {.min = 0});
  schema.add_int("model.d_model", 256, "Hidden width C", {.min = 1});
  schema.add_int("model.n_layers", 6, "Transformer blocks", {.min = 1});
  schema.add_int("model.n_heads", 8, "Query heads (d_model must divide by it)", {.min = 1});
  schema.add_int("model.n_kv_heads", 0, "Key/value heads (GQA); 0 = n_heads", {.min = 0});
  schema.add_int("model.d_ff", 0, "MLP hidden width; 0 = 4*d_model (gpt2) or 8/3*d_model rounded to 8 (llama)",
                 {.min = 0});
  schema.add_int("model.max_seq_len", 1024, "Longest sequence (size of gpt2's position table)", {.min = 1});
  schema.add_float("model.norm_eps", 1e-5, "Epsilon of LayerNorm/RMSNorm", {.min = 0});
  schema.add_float("model.rope.theta", 10000.0, "RoPE base (llama)", {.min = 1});
  schema.add_enum("model.rope.scaling", std::string("none"), {"none", "linear", "ntk"},
                  "RoPE context extension: linear divides positions by factor; ntk raises theta");
  schema.add_float("model.rope.factor", 1.0, "RoPE scaling factor", {.min = 1});
  schema.add_enum("model.tie_embeddings", std::string("auto"), {"auto", "true", "false"},
                  "Share the token embedding with the LM head; auto = the family's choice");
  schema.add_float("model.init_std", 0.02, "Standard deviation of the weight init", {.min = 0});
}

void add_data_settings(config::Schema& schema) {
  schema.describe_group("data", "Token stores written by loom-prep");
  schema.add_path("data.tokenizer", config::required,
                  "tokenizer.json, or a directory with encoder.json + vocab.bpe (GPT-2)");
  schema.add_path("data.train", config::required, "Training token store (.h5)");
  schema.add_path("data.val", config::unset, "Validation token store (.h5); unset = no validation");
  schema.add_int("data.seq_len", 128, "Tokens per training sequence", {.min = 2});
  schema.add_bool("data.pack", true,
                  "Concatenate documents into full windows (pre-training); false = one document per row, "
                  "padded (SFT)");
  schema.add_bool("data.shuffle", true, "Shuffle documents every epoch (seeded by train.seed)");
}

void add_train_settings(config::Schema& schema) {
  schema.describe_group("train", "Optimisation loop");
  schema.add_int("train.batch_size", 16, "Sequences per optimizer step (all data-parallel ranks)", {.min = 1});
  schema.add_int("train.micro_batch_size", 0,
                 "Sequences per forward/backward; gradients accumulate over batch_size/micro_batch_size; "
                 "0 = batch_size",
                 {.min = 0});
  schema.add_int("train.max_steps", 1000, "Optimizer steps", {.min = 1});
  schema.add_float("train.max_time", 0.0,
                   "Stop after this many seconds of training (then validate and save); 0 = no limit", {.min = 0});
  schema.add_float("train.lr", 3e-4, "Peak learning rate", {.min = 0});
  schema.add_float("train.min_lr", 3e-5, "Learning rate at the end of the decay", {.min = 0});
  schema.add_int("train.warmup_steps", 100, "Linear warmup steps", {.min = 0});
  schema.add_enum("train.schedule", std::string("cosine"), {"cosine", "linear", "constant"},
                  "Decay after warmup");
  schema.add_float("train.weight_decay", 0.1, "AdamW decoupled weight decay (not on norms and biases)",
                   {.min = 0});
  schema.add_float("train.beta1", 0.9, "AdamW beta1", {.min = 0, .max = 1});
  schema.add_float("train.beta2", 0.95, "AdamW beta2", {.min = 0, .max = 1});
  schema.add_float("train.eps", 1e-8, "AdamW epsilon", {.min = 0});
  schema.add_float("train.grad_clip", 1.0, "Clip the global gradient norm to this; 0 = off", {.min = 0});
  schema.add_int("train.seed", 1234, "Seed of the weight init and the data order", {.min = 0});
  schema.add_path("train.init_from", config::unset,
                  "Start from this weights file (a previous run's model.h5) instead of a random init");
  schema.add_int("train.threads", 0, "CPU threads for kernels and GEMM; 0 = all cores", {.min = 0});
  add_device_setting(schema);
  schema.add_int("train.log_every", 10, "Write a metrics line every N steps", {.min = 1});
  schema.add_string("train.resume", std::string("auto"),
                    "auto = continue from the newest valid checkpoint under checkpoint.dir if there is one; never = "
                    "start fresh; or a checkpoint step directory to start from");
  schema.add_float("train.walltime", 0.0,
                   "The job's time limit in seconds from start (0 = from $SLURM_JOB_END_TIME or $LOOM_JOB_END_TIME, "
                   "epoch seconds, when set)", {.min = 0});
  schema.add_float("train.save_before_walltime", 0.0,
                   "Checkpoint and exit with code 75 (requeue) this many seconds (plus one step) before the job's "
                   "time limit; 0 = off", {.min = 0});
  schema.add_int("train.max_bad_steps", 3,
                 "Non-finite loss or gradient norm: the step is skipped; after this many in a row, roll back to the "
                 "last checkpoint and never train on those batches again; 0 = never roll back", {.min = 0});
  schema.add_float("train.watchdog_timeout", 600.0,
                   "Abort the job (exit 86) with a report of which ranks were behind when a rank is stuck this many "
                   "seconds in one collective, I/O call or step; 0 = off", {.min = 0});
  schema.describe_group("debug", "Fault injection for tests");
  schema.add_int_list("debug.nan_batches", std::vector<std::int64_t>{},
                      "Fault injection for tests: the loss of these global batch numbers is made NaN", {.min = 0});
  schema.add_int("debug.sleep_rank", -1, "Fault injection for tests: this world rank sleeps (a hung rank); -1 = none",
                 {.min = -1});
  schema.add_int("debug.sleep_at_step", 0, "Fault injection for tests: the step at which debug.sleep_rank sleeps",
                 {.min = 0});
  schema.add_float("debug.sleep_seconds", 0.0, "Fault injection for tests: how long debug.sleep_rank sleeps", {.min = 0});
  schema.add_float("debug.save_delay", 0.0,
                   "Fault injection for tests: each checkpoint save waits this many seconds with its temporary "
                   "directory created (so a kill lands mid-save)", {.min = 0});
}

void add_checkpoint_settings(config::Schema& schema) {
  schema.describe_group("checkpoint", "Sharded step checkpoints (docs/checkpoint-format.md)");
  schema.add_path("checkpoint.dir", config::unset, "Where checkpoints go; default <run_dir>/checkpoints");
  schema.add_int("checkpoint.every", 0, "Save every N steps; 0 = only on a stop signal, before the walltime and at the end",
                 {.min = 0});
  schema.add_int("checkpoint.keep_last", 3, "Newest checkpoints kept", {.min = 1});
  schema.add_int("checkpoint.keep_every", 0, "Also keep every checkpoint whose step is a multiple of this; 0 = none",
                 {.min = 0});
  schema.add_bool("checkpoint.async", true,
                  "Write shards on a background thread from a snapshot while training continues");
  schema.add_bool("checkpoint.at_end", true, "Save a checkpoint when training finishes");
  schema.add_enum("checkpoint.on_error", std::string("continue"), {"continue", "stop"},
                  "When a save fails (unwritable directory, full disk): continue training with the previous checkpoint "
                  "as the newest, or stop (exit 74)");
}

void add_eval_settings(config::Schema& schema) {
  schema.describe_group("eval", "Periodic validation");
  schema.add_int("eval.every", 100, "Validate every N steps (and at the end); 0 = only at the end", {.min = 0});
  schema.add_int("eval.batches", 16, "Validation batches of train.batch_size sequences; 0 = the whole split",
                 {.min = 0});
  schema.add_bool("eval.at_start", true, "Also validate before the first step (the starting point of the curve)");
}

void add_parallel_settings(config::Schema& schema) {
  schema.describe_group("parallel", "How the ranks of an MPI launch split the work (data parallel = the rest)");
  schema.add_int("parallel.tp", 1,
                 "Tensor-parallel ranks per layer; the data-parallel size is world_size / (tp * pp)", {.min = 1});
  schema.add_int("parallel.pp", 1, "Pipeline stages", {.min = 1});
  schema.add_enum("parallel.schedule", std::string("1f1b"), {"1f1b", "gpipe"},
                  "Pipeline schedule: 1f1b holds at most pp micro-batches of activations per stage, gpipe all of "
                  "them; the micro-batches are batch_size / (dp * micro_batch_size)");
  schema.add_int_list("parallel.stage_layers", std::vector<std::int64_t>{},
                      "Layers per pipeline stage (pp entries summing to model.n_layers); empty = balanced", {.min = 1});
  schema.add_bool("parallel.zero1", false,
                  "ZeRO-1: reduce-scatter gradients, each data-parallel rank updates and keeps optimizer state for "
                  "1/dp of the parameters, then all-gathers them");
  schema.add_int("parallel.bucket_mb", 16,
                 "Gradient all-reduce bucket size in MiB; buckets start while the backward pass still runs",
                 {.min = 1});
}

void add_lora_settings(config::Schema& schema) {
  schema.describe_group("lora", "Low-rank adapters (LoRA): train only them, the base model frozen");
  schema.add_int("lora.rank", 0, "Adapter rank r; 0 = no adapters (full fine-tuning)", {.min = 0});
  schema.add_float("lora.alpha", 16.0, "Adapter scale numerator: the update is alpha / rank * B A x", {.min = 0});
  schema.add_float("lora.dropout", 0.0, "Dropout on the adapters' inputs during training", {.min = 0, .max = 1});
  schema.add_string_list("lora.targets", std::vector<std::string>{"attn.qkv", "attn.out"},
                         "Linears that get adapters: attn.qkv, attn.out, mlp.gate (llama), mlp.up, mlp.down");
}

model::LoraConfig lora_config_from(const config::Config& config) {
  model::LoraConfig lora;
  lora.rank = config.get_int("lora.rank");
  lora.alpha = static_cast<float>(config.get_float("lora.alpha"));
  lora.dropout = static_cast<float>(config.get_float("lora.dropout"));
  lora.targets = config.get_string_list("lora.targets");
  try {
    lora.validate();
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(std::string("invalid lora.* settings: ") + e.what());
  }
  return lora;
}

model::ModelConfig model_config_from(const config::Config& config, std::int64_t tokenizer_vocab) {
  const model::Family family = model::parse_family(config.get_string("model.family"));
  std::int64_t vocab = config.get_int("model.vocab_size");
  if (vocab == 0) vocab = tokenizer_vocab;
  const std::int64_t d_model = config.get_int("model.d_model");
  const std::int64_t heads = config.get_int("model.n_heads");
  std::int64_t kv_heads = config.get_int("model.n_kv_heads");
  if (kv_heads == 0) kv_heads = heads;
  std::int64_t d_ff = config.get_int("model.d_ff");
  if (d_ff == 0) d_ff = family == model::Family::GPT2 ? 4 * d_model : (8 * d_model / 3 + 7) / 8 * 8;
  model::ModelConfig m = model::ModelConfig::from_family(family, vocab, d_model, config.get_int("model.n_layers"),
                                                         heads, kv_heads, d_ff, config.get_int("model.max_seq_len"));
  m.norm_eps = static_cast<float>(config.get_float("model.norm_eps"));
  m.rope.theta = static_cast<float>(config.get_float("model.rope.theta"));
  const std::string scaling = config.get_string("model.rope.scaling");
  m.rope.scaling = scaling == "linear" ? RopeConfig::Scaling::Linear
                   : scaling == "ntk"  ? RopeConfig::Scaling::NTK
                                       : RopeConfig::Scaling::None;
  m.rope.factor = static_cast<float>(config.get_float("model.rope.factor"));
  const std::string tie = config.get_string("model.tie_embeddings");
  if (tie != "auto") m.tie_embeddings = tie == "true";
  m.init_std = static_cast<float>(config.get_float("model.init_std"));
  if (vocab < tokenizer_vocab) {
    throw config::ConfigError("model.vocab_size = " + std::to_string(vocab) + " is smaller than the tokenizer's " +
                              std::to_string(tokenizer_vocab) + " tokens (set 0 to use the tokenizer's)");
  }
  if (config.get_int("data.seq_len") > m.max_seq_len) {
    throw config::ConfigError("data.seq_len = " + std::to_string(config.get_int("data.seq_len")) +
                              " exceeds model.max_seq_len = " + std::to_string(m.max_seq_len));
  }
  try {
    m.validate();
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(std::string("invalid model.* settings: ") + e.what());
  }
  return m;
}

}  // namespace loom::train
