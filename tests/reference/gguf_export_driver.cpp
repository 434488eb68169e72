// loom's side of tests/reference/test_gguf_export.py: builds small random models, quantizes
// their block linears with RTN under a per-tensor mix of schemes, and writes them with the
// export writers, plus what the Python reader needs to judge the files:
//
//   OUT/tokenizer.json                      the tokenizer used (Brown 4k when present, else a tiny trained one)
//   OUT/llama_q8.gguf, OUT/llama_q4.gguf    the mixed Llama as Q8_0 / Q4_0
//   OUT/gpt2_q8.gguf                        a tied GPT-2 with a padded vocabulary, Q8_0
//   OUT/ct_mixed, OUT/ct_w4, OUT/ct_w8      compressed-tensors directories (mixed schemes, all
//                                           int4-g32, all int8 per channel)
//   OUT/<model>_truth.safetensors           every tensor's f32 values under its loom name (a
//                                           quantized matrix's dequantized values)
//   OUT/manifest.json                       configs, schemes per tensor, GgufReports
//
// Usage: gguf-export-driver OUT_DIR   (run from the repository root)
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/export/compressed_tensors.h"
#include "compress/export/gguf.h"
#include "core/model/parameter_layout.h"
#include "io/hf/safetensors.h"

namespace fs = std::filesystem;
using namespace loom;
using compress::ExportModel;
using compress::ExportTensor;
using nlohmann::json;

namespace {

// The scheme for a loom tensor, or nullopt to leave it dense.
using SchemeOf = std::function<std::optional<quant::Scheme>(const std::string& name)>;

ExportModel build(const model::ModelConfig& config, const SchemeOf& scheme_of, std::uint32_t seed,
                  const json& quantization) {
  ExportModel m;
  m.config = config;
  m.quantization = quantization;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (const model::ParameterSpec& spec :
       model::parameter_specs(config, model::ShardSpec::whole(config), model::HeadKind::LM)) {
    ExportTensor t{spec.name, spec.global_shape, std::vector<float>(static_cast<std::size_t>(shape_numel(spec.global_shape))), {}};
    for (float& v : t.values) v = normal(rng);
    if (spec.name.find("norm") != std::string::npos) {
      for (float& v : t.values) v += 1.0f;
    }
    if (spec.name == "layers.1.mlp.up.weight") {  // a pruned, unquantized linear: every other weight zero
      for (std::size_t i = 0; i < t.values.size(); i += 2) t.values[i] = 0.0f;
    }
    if (const std::optional<quant::Scheme> scheme = scheme_of(spec.name)) {
      t.quantized = quant::quantize_rtn(t.values.data(), t.shape[0], t.shape[1], *scheme);
      t.values.clear();
    }
    m.tensors.push_back(std::move(t));
  }
  return m;
}

std::optional<quant::Scheme> mixed_scheme(const std::string& name) {
  if (!compress::is_block_linear_weight(name) || name == "layers.1.mlp.up.weight") return std::nullopt;
  if (name.find("attn.qkv") != std::string::npos) return quant::Scheme{4, 32, true};
  if (name.find("attn.out") != std::string::npos) return quant::Scheme{8, 0, true};
  if (name.find("mlp.gate") != std::string::npos) return quant::Scheme{4, 64, false};
  if (name.find("mlp.up") != std::string::npos) return quant::Scheme{8, 32, false};
  return quant::Scheme{4, 128, false};  // mlp.down: 144 columns, a full group of 128 and one of 16
}

void write_truth(const fs::path& file, const ExportModel& m) {
  std::vector<std::vector<float>> values;
  std::vector<io::hf::SafetensorsTensor> tensors;
  for (const ExportTensor& t : m.tensors) values.push_back(t.dense());
  for (std::size_t i = 0; i < m.tensors.size(); ++i) {
    tensors.push_back({m.tensors[i].name, Tensor::wrap(values[i].data(), m.tensors[i].shape, DType::F32)});
  }
  io::hf::write_safetensors(file, tensors, {});
}

json describe(const ExportModel& m) {
  const model::ModelConfig& c = m.config;
  json schemes = json::object();
  for (const ExportTensor& t : m.tensors) {
    if (!t.quantized) continue;
    const quant::Scheme& s = t.quantized->scheme;
    schemes[t.name] = {{"bits", s.bits}, {"group_size", s.group_size}, {"symmetric", s.symmetric}};
  }
  return {{"family", model::family_name(c.family)}, {"vocab_size", c.vocab_size}, {"d_model", c.d_model},
          {"n_layers", c.n_layers}, {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads}, {"d_ff", c.d_ff},
          {"max_seq_len", c.max_seq_len}, {"norm_eps", c.norm_eps}, {"rope_theta", c.rope.theta},
          {"tie_embeddings", c.tie_embeddings}, {"schemes", schemes}};
}

json report_json(const compress::GgufReport& r) { return {{"kept_f32", r.kept_f32}, {"bytes", r.bytes}}; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: gguf-export-driver OUT_DIR\n");
    return 2;
  }
  try {
    const fs::path out = argv[1];
    fs::create_directories(out);
    const fs::path brown = "data/tokenizers/brown-4k.json";
    io::Tokenizer tokenizer;
    if (fs::exists(brown)) {
      tokenizer = io::Tokenizer::load(brown);
    } else {
      std::vector<std::string> corpus(20, "The jury said it did find that the election was conducted well. 1961!");
      io::BpeTrainer::Options options;
      options.vocab_size = 320;
      tokenizer = io::BpeTrainer::train(corpus, options);
    }
    tokenizer.save(out / "tokenizer.json");
    const std::int64_t vocab = tokenizer.vocab_size();
    json manifest = {{"tokenizer_source", fs::exists(brown) ? brown.string() : "trained"}};

    model::ModelConfig llama = model::ModelConfig::from_family(model::Family::Llama, vocab, 64, 2, 4, 2, 144, 128);
    llama.rope.theta = 50000.0f;
    const json mixed_info = {{"method", "rtn"}, {"scheme", "mixed"}, {"sparsity", "unstructured"}};
    const ExportModel mixed = build(llama, mixed_scheme, 11, mixed_info);
    manifest["llama"] = describe(mixed);
    write_truth(out / "llama_truth.safetensors", mixed);
    manifest["reports"]["llama_q8"] = report_json(compress::write_gguf(out / "llama_q8.gguf", mixed, tokenizer, compress::GgufType::Q8_0));
    manifest["reports"]["llama_q4"] = report_json(compress::write_gguf(out / "llama_q4.gguf", mixed, tokenizer, compress::GgufType::Q4_0));
    compress::write_compressed_safetensors(out / "ct_mixed", mixed);

    for (const auto& [dir, scheme] : {std::pair<std::string, quant::Scheme>{"ct_w4", {4, 32, true}},
                                      {"ct_w8", {8, 0, true}}}) {
      const quant::Scheme s = scheme;
      const ExportModel uniform = build(
          llama,
          [s](const std::string& name) -> std::optional<quant::Scheme> {
            if (compress::is_block_linear_weight(name)) return s;
            return std::nullopt;
          },
          11, {{"method", "rtn"}, {"scheme", s.name()}});
      manifest[dir] = describe(uniform);
      write_truth(out / (dir + "_truth.safetensors"), uniform);
      compress::write_compressed_safetensors(out / dir, uniform);
    }

    const model::ModelConfig gpt2 = model::ModelConfig::from_family(model::Family::GPT2, vocab + 5, 64, 2, 4, 4, 256, 128);
    const ExportModel tied = build(
        gpt2,
        [](const std::string& name) -> std::optional<quant::Scheme> {
          if (compress::is_block_linear_weight(name)) return quant::Scheme{8, 0, true};
          return std::nullopt;
        },
        12, {{"method", "rtn"}, {"scheme", "int8"}});
    manifest["gpt2"] = describe(tied);
    write_truth(out / "gpt2_truth.safetensors", tied);
    manifest["reports"]["gpt2_q8"] = report_json(compress::write_gguf(out / "gpt2_q8.gguf", tied, tokenizer, compress::GgufType::Q8_0));

    std::ofstream(out / "manifest.json") << manifest.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gguf-export-driver: %s\n", e.what());
    return 1;
  }
  return 0;
}
