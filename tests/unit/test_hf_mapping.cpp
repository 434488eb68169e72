// Hugging Face interchange without PyTorch: the loom ⇄ HF name and layout mapping of both
// families, config.json round trips, export → import round trips (f32 bit-exact, bf16
// rounded), sharded and prefix-less inputs, and the errors a mismatched directory produces.
// (tests/reference/test_hf_parity.py checks the numerics against an independent model.)
#define BOOST_TEST_MODULE hf_mapping
#include <boost/test/unit_test.hpp>

#include "tests/unit/error_of.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "io/hf/hf_config.h"
#include "io/hf/hf_convert.h"
#include "io/hf/hf_names.h"
#include "core/backend.h"
#include "core/model/transformer.h"
#include "io/weights/model_weights.h"

namespace fs = std::filesystem;
using namespace loom;
using namespace loom::io::hf;
using model::Family;
using model::ModelConfig;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("loom-test-hf-" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

ModelConfig llama_gqa() {
  ModelConfig c = ModelConfig::from_family(Family::Llama, 50, 32, 2, 4, 2, 48, 16);
  c.rope.theta = 500000.0f;
  return c;
}

ModelConfig gpt2_tiny() { return ModelConfig::from_family(Family::GPT2, 40, 16, 2, 2, 2, 64, 12); }

LoomModel random_model(const ModelConfig& config, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  LoomModel m{config, {}, "random"};
  for (const TensorMapping& mapping : hf_tensor_mapping(config)) {
    Tensor t = Tensor::empty(mapping.loom_shape, DType::F32);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
    m.tensors.push_back({mapping.loom_name, t});
  }
  return m;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

const HfPiece* find_piece(const std::vector<TensorMapping>& mappings, const std::string& hf_name,
                          const TensorMapping** owner = nullptr) {
  for (const auto& m : mappings) {
    for (const auto& p : m.pieces) {
      if (p.hf_name == hf_name) {
        if (owner) *owner = &m;
        return &p;
      }
    }
  }
  return nullptr;
}

}  // namespace

BOOST_AUTO_TEST_CASE(llama_names_split_fused_qkv_into_q_k_v) {
  const ModelConfig config = llama_gqa();
  const auto mappings = hf_tensor_mapping(config);
  std::size_t hf_tensors = 0;
  for (const auto& m : mappings) hf_tensors += m.pieces.size();
  BOOST_TEST(hf_tensors == 1u + 2u * 9u + 2u);  // embed, 2 × (2 norms, q, k, v, o, gate, up, down), norm, head

  const TensorMapping* qkv = nullptr;
  const HfPiece* k = find_piece(mappings, "model.layers.1.self_attn.k_proj.weight", &qkv);
  BOOST_REQUIRE(k != nullptr);
  BOOST_TEST(qkv->loom_name == "layers.1.attn.qkv.weight");
  BOOST_TEST(qkv->pieces.size() == 3u);
  BOOST_TEST(qkv->pieces[0].hf_shape == (Shape{32, 32}));  // Hq·D = 4·8
  BOOST_TEST(k->row_begin == 32);
  BOOST_TEST(k->hf_shape == (Shape{16, 32}));  // Hkv·D = 2·8
  BOOST_TEST(qkv->pieces[2].row_begin == 48);
  BOOST_TEST(find_piece(mappings, "model.layers.0.post_attention_layernorm.weight") != nullptr);
  BOOST_TEST(find_piece(mappings, "model.layers.0.mlp.gate_proj.weight")->hf_shape == (Shape{48, 32}));
  BOOST_TEST(find_piece(mappings, "lm_head.weight") != nullptr);
  BOOST_TEST(find_piece(mappings, "model.norm.weight") != nullptr);

  ModelConfig tied = config;
  tied.tie_embeddings = true;
  BOOST_TEST(find_piece(hf_tensor_mapping(tied), "lm_head.weight") == nullptr);

  const LoomModel m = random_model(config, 3);
  const Tensor& fused = m.tensor("layers.1.attn.qkv.weight");
  const std::vector<Tensor> pieces = split_for_hf(*qkv, fused);
  BOOST_TEST(pieces[1].data<float>()[5 * 32 + 7] == fused.data<float>()[(32 + 5) * 32 + 7]);  // k row 5
  BOOST_TEST(pieces[2].data<float>()[3 * 32] == fused.data<float>()[(48 + 3) * 32]);          // v row 3
}

BOOST_AUTO_TEST_CASE(gpt2_conv1d_weights_are_transposed) {
  const ModelConfig config = gpt2_tiny();
  const auto mappings = hf_tensor_mapping(config);
  const TensorMapping* owner = nullptr;
  const HfPiece* c_attn = find_piece(mappings, "transformer.h.1.attn.c_attn.weight", &owner);
  BOOST_REQUIRE(c_attn != nullptr);
  BOOST_TEST(owner->loom_name == "layers.1.attn.qkv.weight");
  BOOST_TEST(c_attn->transposed);
  BOOST_TEST(c_attn->hf_shape == (Shape{16, 48}));
  BOOST_TEST(find_piece(mappings, "transformer.h.0.mlp.c_fc.weight")->hf_shape == (Shape{16, 64}));
  BOOST_TEST(find_piece(mappings, "transformer.h.0.mlp.c_proj.weight")->hf_shape == (Shape{64, 16}));
  BOOST_TEST(!find_piece(mappings, "transformer.h.0.attn.c_attn.bias")->transposed);
  BOOST_TEST(find_piece(mappings, "transformer.wpe.weight")->hf_shape == (Shape{12, 16}));
  BOOST_TEST(find_piece(mappings, "transformer.ln_f.bias") != nullptr);
  BOOST_TEST(find_piece(mappings, "lm_head.weight") == nullptr);  // tied

  const LoomModel m = random_model(config, 4);
  const Tensor& loom_qkv = m.tensor("layers.1.attn.qkv.weight");  // [48, 16]
  const Tensor hf = split_for_hf(*owner, loom_qkv)[0];              // [16, 48]
  BOOST_TEST(hf.data<float>()[3 * 48 + 40] == loom_qkv.data<float>()[40 * 16 + 3]);
  Tensor back = Tensor::zeros({48, 16});
  place_from_hf(*c_attn, hf, back);
  BOOST_TEST(bit_equal(back, loom_qkv));

  BOOST_TEST(canonical_hf_name(Family::GPT2, "h.0.ln_1.weight") == "transformer.h.0.ln_1.weight");
  BOOST_TEST(canonical_hf_name(Family::GPT2, "transformer.wte.weight") == "transformer.wte.weight");
  BOOST_TEST(canonical_hf_name(Family::GPT2, "lm_head.weight") == "lm_head.weight");
  BOOST_TEST(is_ignored_hf_buffer("h.3.attn.bias"));
  BOOST_TEST(is_ignored_hf_buffer("transformer.h.3.attn.masked_bias"));
  BOOST_TEST(!is_ignored_hf_buffer("transformer.h.3.attn.c_attn.bias"));
}

BOOST_AUTO_TEST_CASE(config_json_round_trips_both_families) {
  ModelConfig linear = llama_gqa();
  linear.rope.scaling = RopeConfig::Scaling::Linear;
  linear.rope.factor = 4.0f;
  linear.norm_eps = 1e-6f;
  ModelConfig ntk = llama_gqa();
  ntk.rope.scaling = RopeConfig::Scaling::NTK;
  ntk.rope.factor = 2.0f;
  ModelConfig biased = llama_gqa();
  biased.bias = true;
  biased.tie_embeddings = true;
  ModelConfig gpt2_untied = gpt2_tiny();
  gpt2_untied.tie_embeddings = false;
  for (const ModelConfig& c : {llama_gqa(), linear, ntk, biased, gpt2_tiny(), gpt2_untied}) {
    const nlohmann::json j = hf_config_json(c, "float32");
    const ModelConfig back = model_config_from_hf(j, "config.json");
    BOOST_TEST(io::model_config_json(back).dump() == io::model_config_json(c).dump(), j.dump());
  }
  const nlohmann::json j = hf_config_json(linear, "float32");
  BOOST_TEST(j["rms_norm_eps"].dump() == "1e-06");
  BOOST_TEST(j["rope_scaling"]["rope_type"] == "linear");
  BOOST_TEST(j["num_key_value_heads"] == 2);
  const nlohmann::json n = hf_config_json(ntk, "float32");
  BOOST_TEST(n["rope_scaling"].is_null());
  BOOST_TEST(n["rope_theta"].get<double>() == 500000.0 * std::pow(2.0, 8.0 / 6.0), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(hf_config_json(gpt2_tiny(), "float32")["n_inner"] == 64);

  ModelConfig no_bias = gpt2_tiny();
  no_bias.bias = false;
  BOOST_TEST(error_of([&] { hf_config_json(no_bias, "float32"); }).find("model.bias") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(unsupported_config_keys_are_named) {
  const nlohmann::json base = hf_config_json(llama_gqa(), "float32");
  struct Case {
    const char* key;
    nlohmann::json value;
  };
  for (const Case& c : {Case{"hidden_act", "gelu"}, Case{"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}}},
                        Case{"model_type", "mistral"}, Case{"head_dim", 16}, Case{"mlp_bias", true},
                        Case{"num_key_value_heads", 3}, Case{"hidden_size", "32"}}) {
    nlohmann::json j = base;
    j[c.key] = c.value;
    const std::string message = error_of([&] { model_config_from_hf(j, "dir/config.json"); });
    BOOST_TEST_CONTEXT(c.key << ": " << message) {
      BOOST_TEST(message.rfind("dir/config.json: ", 0) == 0u);
      BOOST_TEST(message.find(c.key) != std::string::npos);
    }
  }
  nlohmann::json gpt2 = hf_config_json(gpt2_tiny(), "float32");
  gpt2["activation_function"] = "gelu";
  BOOST_TEST(error_of([&] { model_config_from_hf(gpt2, "c.json"); }).find("activation_function") != std::string::npos);
  gpt2.erase("activation_function");
  gpt2.erase("n_embd");
  BOOST_TEST(error_of([&] { model_config_from_hf(gpt2, "c.json"); }).find("n_embd is missing") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(export_then_import_is_bit_exact) {
  ModelConfig untied_gpt2 = gpt2_tiny();
  untied_gpt2.tie_embeddings = false;
  ModelConfig ntk = llama_gqa();
  ntk.rope.scaling = RopeConfig::Scaling::NTK;
  ntk.rope.factor = 3.0f;
  unsigned seed = 10;
  for (const ModelConfig& config : {llama_gqa(), ntk, gpt2_tiny(), untied_gpt2}) {
    const LoomModel original = random_model(config, ++seed);
    const fs::path dir = scratch("round-trip-" + std::to_string(seed));
    const ExportSummary s = export_hf(original, dir, StDType::F32);
    BOOST_TEST(s.parameters == config.parameter_count());
    BOOST_TEST(SafetensorsFile(dir / "model.safetensors").metadata().at("format") == "pt");
    const LoomModel back = import_hf(dir);
    BOOST_TEST(io::model_config_json(back.config).dump() == io::model_config_json(config).dump());
    BOOST_REQUIRE(back.tensors.size() == original.tensors.size());
    for (std::size_t i = 0; i < back.tensors.size(); ++i) {
      BOOST_TEST(back.tensors[i].name == original.tensors[i].name);
      BOOST_TEST(bit_equal(back.tensors[i].tensor, original.tensors[i].tensor), back.tensors[i].name);
    }
  }
  const LoomModel original = random_model(llama_gqa(), 99);
  const fs::path dir = scratch("bf16");
  export_hf(original, dir, StDType::BF16);
  const LoomModel back = import_hf(dir);
  for (std::size_t i = 0; i < back.tensors.size(); ++i) {
    const Tensor& a = back.tensors[i].tensor;
    const Tensor& b = original.tensors[i].tensor;
    for (std::int64_t e = 0; e < a.numel(); ++e) {
      BOOST_TEST_REQUIRE(a.data<float>()[e] == from_bf16(to_bf16(b.data<float>()[e])), back.tensors[i].name << "[" << e << "]");
    }
  }
}

BOOST_AUTO_TEST_CASE(sharded_and_prefixless_directories_import) {
  // Llama split over two shards with an index, as transformers' save_pretrained writes it.
  const LoomModel llama = random_model(llama_gqa(), 21);
  const fs::path single = scratch("single");
  export_hf(llama, single, StDType::F32);
  const SafetensorsFile whole(single / "model.safetensors");
  std::vector<SafetensorsTensor> shard[2];
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (std::size_t i = 0; i < whole.entries().size(); ++i) {
    const std::string& name = whole.entries()[i].name;
    const int which = i < whole.entries().size() / 2 ? 0 : 1;
    shard[which].push_back({name, whole.read_f32(name)});
    index["weight_map"][name] = which == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  const fs::path sharded = scratch("sharded");
  fs::copy_file(single / "config.json", sharded / "config.json");
  write_safetensors(sharded / "model-00001-of-00002.safetensors", shard[0], {{"format", "pt"}});
  write_safetensors(sharded / "model-00002-of-00002.safetensors", shard[1], {{"format", "pt"}});
  write_text(sharded / "model.safetensors.index.json", index.dump());
  const LoomModel back = import_hf(sharded);
  for (std::size_t i = 0; i < back.tensors.size(); ++i) {
    BOOST_TEST(bit_equal(back.tensors[i].tensor, llama.tensors[i].tensor), back.tensors[i].name);
  }
  // The index must agree with the files.
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  write_text(sharded / "model.safetensors.index.json", index.dump());
  BOOST_TEST(error_of([&] { import_hf(sharded); }).find("model.norm.weight") != std::string::npos);

  // GPT-2 as the original release names it: no "transformer." prefix, causal-mask buffers.
  const LoomModel gpt2 = random_model(gpt2_tiny(), 22);
  const fs::path prefixed = scratch("gpt2-prefixed");
  export_hf(gpt2, prefixed, StDType::F32);
  const SafetensorsFile file(prefixed / "model.safetensors");
  std::vector<SafetensorsTensor> renamed;
  for (const auto& e : file.entries()) renamed.push_back({e.name.substr(std::strlen("transformer.")), file.read_f32(e.name)});
  renamed.push_back({"h.0.attn.bias", Tensor::zeros({1, 1, 12, 12})});
  renamed.push_back({"lm_head.weight", gpt2.tensor("embed.tokens.weight")});  // tied: redundant copy
  const fs::path bare = scratch("gpt2-bare");
  fs::copy_file(prefixed / "config.json", bare / "config.json");
  write_safetensors(bare / "model.safetensors", renamed, {});
  const LoomModel gpt2_back = import_hf(bare);
  for (std::size_t i = 0; i < gpt2_back.tensors.size(); ++i) {
    BOOST_TEST(bit_equal(gpt2_back.tensors[i].tensor, gpt2.tensors[i].tensor), gpt2_back.tensors[i].name);
  }
}

BOOST_AUTO_TEST_CASE(mismatched_directories_are_refused_by_name) {
  const LoomModel llama = random_model(llama_gqa(), 31);
  const fs::path dir = scratch("mismatch");
  export_hf(llama, dir, StDType::F32);
  const SafetensorsFile file(dir / "model.safetensors");
  auto rewrite = [&](const std::function<void(std::vector<SafetensorsTensor>&)>& edit) {
    std::vector<SafetensorsTensor> tensors;
    for (const auto& e : file.entries()) tensors.push_back({e.name, file.read_f32(e.name)});
    edit(tensors);
    const fs::path out = scratch("mismatch-edited");
    fs::copy_file(dir / "config.json", out / "config.json");
    write_safetensors(out / "model.safetensors", tensors, {});
    return error_of([&] { import_hf(out); });
  };
  const std::string missing = rewrite([](auto& t) {
    std::erase_if(t, [](const SafetensorsTensor& x) { return x.name == "model.layers.1.self_attn.v_proj.weight"; });
  });
  BOOST_TEST(missing.find("model.layers.1.self_attn.v_proj.weight") != std::string::npos, missing);
  BOOST_TEST(missing.find("layers.1.attn.qkv.weight") != std::string::npos, missing);
  const std::string shape = rewrite([](auto& t) {
    for (auto& x : t) {
      if (x.name == "model.layers.0.mlp.up_proj.weight") x.tensor = Tensor::zeros({47, 32});
    }
  });
  BOOST_TEST(shape.find("model.layers.0.mlp.up_proj.weight") != std::string::npos, shape);
  BOOST_TEST(shape.find("[47, 32]") != std::string::npos, shape);
  const std::string extra = rewrite([](auto& t) { t.push_back({"model.layers.2.mlp.up_proj.weight", Tensor::zeros({1})}); });
  BOOST_TEST(extra.find("model.layers.2.mlp.up_proj.weight") != std::string::npos, extra);
  BOOST_TEST(extra.find("config.json") != std::string::npos, extra);
  BOOST_TEST(error_of([&] { import_hf(scratch("empty")); }).find("config.json") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(imported_model_file_loads_as_train_init_from) {
  // What loom-sft does with train.init_from: io::load_model_weights into a Transformer.
  const LoomModel original = random_model(llama_gqa(), 41);
  const fs::path file = scratch("init-from") / "model.h5";
  write_loom_model(file, original.config, original.tensors, {{"source", "test"}});
  auto backend = make_cpu_backend();
  model::Transformer transformer(original.config, model::ShardSpec::whole(original.config), model::HeadKind::LM,
                                 *backend);
  const nlohmann::json metadata = io::load_model_weights(file, transformer);
  BOOST_TEST(metadata["source"] == "test");
  for (const auto& entry : transformer.params().entries()) {
    BOOST_TEST(bit_equal(transformer.params().value(entry), original.tensor(entry.name)), entry.name);
  }
  const LoomModel back = read_loom_model(file);
  BOOST_TEST(io::model_config_json(back.config).dump() == io::model_config_json(original.config).dump());
  BOOST_TEST(back.source == file.string());
}
