#include "io/hf/hf_commands.h"

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>

#include "core/model/parameter_layout.h"
#include "io/hf/hf_convert.h"
#include "io/hf/logits.h"

namespace loom::io::hf {

// Parses with CLI11, then runs `work`; maps the outcome to the exit codes of hf_commands.h.
int run_command(CLI::App& app, int argc, char** argv, const std::function<void()>& work) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    work();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", app.get_name().c_str(), e.what());
    return 1;
  }
  return 0;
}

namespace {

namespace fs = std::filesystem;

const char* architecture_of(const model::ModelConfig& config) {
  return config.family == model::Family::Llama ? "LlamaForCausalLM" : "GPT2LMHeadModel";
}

}  // namespace

int hf_export_command(int argc, char** argv) {
  CLI::App app("Write a loom model as a Hugging Face directory (model.safetensors + config.json)", "loom-ckpt export");
  fs::path from, out;
  std::string dtype = "f32", format = "safetensors";
  app.add_option("--from", from, "model.h5, a checkpoint step directory, or its view.h5")->required();
  app.add_option("--format", format, "Output format: safetensors (Hugging Face: model.safetensors + config.json)")
      ->check(CLI::IsMember({"safetensors"}))
      ->capture_default_str();
  app.add_option("--out", out, "Output directory")->required();
  app.add_option("--dtype", dtype, "Tensor type written: f32 or bf16 (rounded to nearest even)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  return run_command(app, argc, argv, [&] {
    const LoomModel model = read_loom_model(from);
    const ExportSummary s = export_hf(model, out, dtype == "f32" ? StDType::F32 : StDType::BF16);
    std::printf("loom-ckpt export: %s (%s, %lld parameters) -> %s (%lld tensors, %s) and %s\n", from.c_str(),
                architecture_of(model.config), static_cast<long long>(s.parameters), s.safetensors.c_str(),
                static_cast<long long>(s.tensors), dtype.c_str(), s.config.c_str());
  });
}

int hf_import_command(int argc, char** argv) {
  CLI::App app("Convert a Hugging Face Llama or GPT-2 directory into a loom model.h5 (usable as train.init_from)",
               "loom-ckpt import");
  fs::path from, out;
  app.add_option("--from", from, "Directory with config.json and *.safetensors (sharded with an index, or not)")
      ->required();
  app.add_option("--out", out, "Output model.h5")->required();
  return run_command(app, argc, argv, [&] {
    const LoomModel model = import_hf(from);
    write_loom_model(out, model.config, model.tensors,
                     {{"source", {{"huggingface", fs::absolute(from).string()}, {"architecture", architecture_of(model.config)}}}});
    std::printf("loom-ckpt import: %s (%s, %lld layers, %lld parameters) -> %s\n", from.c_str(),
                architecture_of(model.config), static_cast<long long>(model.config.n_layers),
                static_cast<long long>(model.config.parameter_count()), out.c_str());
  });
}

int logits_command(int argc, char** argv) {
  CLI::App app("Run a loom model on the CPU over one token sequence and report its logits", "loom-ckpt logits");
  fs::path model_path, out;
  std::string tokens_text;
  app.add_option("--model", model_path, "model.h5, a checkpoint step directory, or its view.h5")->required();
  app.add_option("--tokens", tokens_text, "Comma-separated token ids, e.g. 1,2,3")->required();
  app.add_option("--out", out, "Write logits [T, V] f32 (dataset \"logits\") and tokens to this HDF5 file");
  return run_command(app, argc, argv, [&] {
    std::vector<std::int32_t> tokens;
    try {
      tokens = parse_token_list(tokens_text);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("--tokens: ") + e.what());
    }
    const LoomModel model = read_loom_model(model_path);
    const Tensor logits = compute_logits(model, tokens);
    const std::int64_t t = logits.dim(0), v = logits.dim(1);
    const float* last = logits.data<float>() + (t - 1) * v;
    std::int64_t argmax = 0;
    for (std::int64_t i = 1; i < v; ++i) {
      if (last[i] > last[argmax]) argmax = i;
    }
    float max_abs = 0.0f;
    for (std::int64_t i = 0; i < t * v; ++i) max_abs = std::max(max_abs, std::fabs(logits.data<float>()[i]));
    std::printf("loom-ckpt logits: %s, %lld tokens x %lld vocabulary\n", model_path.c_str(), static_cast<long long>(t),
                static_cast<long long>(v));
    std::printf("  last position: argmax %lld (logit %.6g); max |logit| %.6g\n", static_cast<long long>(argmax),
                static_cast<double>(last[argmax]), static_cast<double>(max_abs));
    if (!out.empty()) {
      write_logits_file(out, logits, tokens, model.source);
      std::printf("  wrote %s\n", out.c_str());
    }
  });
}

}  // namespace loom::io::hf
