// compress/export: the GGML block encodings against llama.cpp's reference loops written out
// plainly here, fp16 rounding (every half value, every tie between neighbours, overflow and
// subnormals), the compressed-tensors int4 → int32 packing order, the Llama q/k row
// permutation, GPT-2's byte-to-unicode text, and the writers' contracts (which tensors stay
// F32, what a malformed model is refused with, what lands in the safetensors file).
#define BOOST_TEST_MODULE compress_export
#include <boost/test/unit_test.hpp>

#include "tests/unit/error_of.h"

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "compress/export/compressed_tensors.h"
#include "compress/export/gguf.h"
#include "core/model/parameter_layout.h"
#include "io/hf/safetensors.h"

// The reference loops below must round x·id and x·id + 8.5 separately, as llama.cpp's ISO C
// build does (see gguf_blocks.cpp).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace fs = std::filesystem;
using namespace loom;
using namespace loom::compress;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("loom-test-compress-export-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

std::vector<float> random_values(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> out(n);
  for (float& v : out) v = normal(rng);
  return out;
}

// llama.cpp's quantize_row_q8_0_ref for one block, as printed in ggml-quants.c.
std::vector<std::uint8_t> plain_q8_0(const float* x) {
  float amax = 0.0f;
  for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / ((1 << 7) - 1);
  const float id = d ? 1.0f / d : 0.0f;
  std::vector<std::uint8_t> block(34);
  const std::uint16_t dh = gguf::f32_to_f16_bits(d);
  std::memcpy(block.data(), &dh, 2);
  for (int j = 0; j < 32; ++j) block[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(roundf(x[j] * id)));
  return block;
}

// llama.cpp's quantize_row_q4_0_ref for one block.
std::vector<std::uint8_t> plain_q4_0(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; j++) {
    if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
  }
  const float d = max / -8;
  const float id = d ? 1.0f / d : 0.0f;
  std::vector<std::uint8_t> block(18);
  const std::uint16_t dh = gguf::f32_to_f16_bits(d);
  std::memcpy(block.data(), &dh, 2);
  for (int j = 0; j < 16; ++j) {
    const auto xi0 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(static_cast<std::int8_t>(x[j] * id + 8.5f))));
    const auto xi1 =
        static_cast<std::uint8_t>(std::min(15, static_cast<int>(static_cast<std::int8_t>(x[16 + j] * id + 8.5f))));
    block[2 + j] = static_cast<std::uint8_t>(xi0 | (xi1 << 4));
  }
  return block;
}

// A small Llama (GQA, ragged d_ff) with every block linear quantized by RTN under `scheme`.
ExportModel tiny_llama(const quant::Scheme& scheme, std::int64_t d_ff, std::int64_t vocab) {
  ExportModel m;
  m.config = model::ModelConfig::from_family(model::Family::Llama, vocab, 32, 1, 4, 2, d_ff, 64);
  m.quantization = {{"method", "rtn"}, {"scheme", scheme.name()}};
  std::uint32_t seed = 1;
  for (const model::ParameterSpec& spec :
       model::parameter_specs(m.config, model::ShardSpec::whole(m.config), model::HeadKind::LM)) {
    ExportTensor t{spec.name, spec.global_shape, random_values(static_cast<std::size_t>(shape_numel(spec.global_shape)), seed++, 0.05f), {}};
    if (is_block_linear_weight(spec.name)) {
      t.quantized = quant::quantize_rtn(t.values.data(), t.shape[0], t.shape[1], scheme);
      t.values.clear();
    }
    m.tensors.push_back(std::move(t));
  }
  return m;
}

const io::Tokenizer& small_tokenizer() {
  static const io::Tokenizer tokenizer = [] {
    std::vector<std::string> corpus(10, "The quick brown fox jumps over the lazy dog. It is 4 o'clock.");
    io::BpeTrainer::Options options;
    options.vocab_size = 300;
    return io::BpeTrainer::train(corpus, options);
  }();
  return tokenizer;
}

}  // namespace

BOOST_AUTO_TEST_CASE(fp16_every_half_round_trips_and_ties_go_to_even) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = gguf::f16_bits_to_f32(bits);
    if (std::isnan(f)) {
      BOOST_TEST(std::isnan(gguf::f16_bits_to_f32(gguf::f32_to_f16_bits(f))));
      continue;
    }
    BOOST_TEST_REQUIRE(gguf::f32_to_f16_bits(f) == bits, "half " << h);
    // The exact midpoint to the next half of larger magnitude (exact in f32) goes to the even one.
    if ((h & 0x7fff) < 0x7bff) {
      const float next = gguf::f16_bits_to_f32(static_cast<std::uint16_t>(h + 1));
      const float mid = (f + next) / 2.0f;
      const std::uint16_t even = (h & 1u) == 0 ? bits : static_cast<std::uint16_t>(h + 1);
      BOOST_TEST_REQUIRE(gguf::f32_to_f16_bits(mid) == even, "midpoint above half " << h);
      BOOST_TEST_REQUIRE(gguf::f32_to_f16_bits(std::nextafter(mid, f)) == bits);
      BOOST_TEST_REQUIRE(gguf::f32_to_f16_bits(std::nextafter(mid, next)) == static_cast<std::uint16_t>(h + 1));
    }
  }
  BOOST_TEST(gguf::f32_to_f16_bits(65504.0f) == 0x7bffu);
  BOOST_TEST(gguf::f32_to_f16_bits(65519.99f) == 0x7bffu);
  BOOST_TEST(gguf::f32_to_f16_bits(65520.0f) == 0x7c00u);
  BOOST_TEST(gguf::f32_to_f16_bits(-1e10f) == 0xfc00u);
  BOOST_TEST(gguf::f32_to_f16_bits(std::ldexp(1.0f, -25)) == 0u);  // tie between 0 and 2^-24: even
  BOOST_TEST(gguf::f32_to_f16_bits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 1u);
  BOOST_TEST(gguf::f32_to_f16_bits(-std::ldexp(1.0f, -30)) == 0x8000u);
  BOOST_TEST(gguf::f32_to_f16_bits(0.1f) == 0x2e66u);  // 0.0999755859375, as numpy's float16(0.1)
}

BOOST_AUTO_TEST_CASE(q8_0_and_q4_0_match_the_reference_loops_byte_for_byte) {
  std::vector<float> x = random_values(32 * 64, 7);
  for (int j = 0; j < 32; ++j) x[32 + j] = 0.0f;                  // an all-zero block: d = 0
  for (int j = 0; j < 32; ++j) x[64 + j] = static_cast<float>(j - 16);  // -16 .. 15, then
  x[95] = 16.0f;  // +16, opposite to the first extreme -16: Q4_0's clamp at 15
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  std::vector<std::uint8_t> q8(gguf::row_bytes(GgufType::Q8_0, n)), q4(gguf::row_bytes(GgufType::Q4_0, n));
  BOOST_TEST(q8.size() == 64u * 34u);
  BOOST_TEST(q4.size() == 64u * 18u);
  gguf::quantize_row_q8_0(x.data(), n, q8.data());
  gguf::quantize_row_q4_0(x.data(), n, q4.data());
  for (int b = 0; b < 64; ++b) {
    const std::vector<std::uint8_t> e8 = plain_q8_0(x.data() + 32 * b), e4 = plain_q4_0(x.data() + 32 * b);
    BOOST_TEST_REQUIRE(std::equal(e8.begin(), e8.end(), q8.begin() + 34 * b), "Q8_0 block " << b);
    BOOST_TEST_REQUIRE(std::equal(e4.begin(), e4.end(), q4.begin() + 18 * b), "Q4_0 block " << b);
  }
  // Round trip within the documented bounds: Q8_0 |Δ| <= d/2 + 127·|d|·2^-11, Q4_0 |Δ| <= |d|
  // (d/2 except the clamped values) + 8·|d|·2^-11, d as stored.
  std::vector<float> back8(x.size()), back4(x.size());
  gguf::dequantize_row_q8_0(q8.data(), n, back8.data());
  gguf::dequantize_row_q4_0(q4.data(), n, back4.data());
  for (int b = 0; b < 64; ++b) {
    std::uint16_t d8 = 0, d4 = 0;
    std::memcpy(&d8, q8.data() + 34 * b, 2);
    std::memcpy(&d4, q4.data() + 18 * b, 2);
    const float s8 = std::fabs(gguf::f16_bits_to_f32(d8)), s4 = std::fabs(gguf::f16_bits_to_f32(d4));
    for (int j = 0; j < 32; ++j) {
      const std::size_t i = static_cast<std::size_t>(32 * b + j);
      BOOST_TEST_REQUIRE(std::fabs(back8[i] - x[i]) <= s8 * (0.5f + 127.0f / 2048.0f) * 1.0001f, "Q8_0 value " << i);
      BOOST_TEST_REQUIRE(std::fabs(back4[i] - x[i]) <= s4 * (1.0f + 8.0f / 2048.0f) * 1.0001f, "Q4_0 value " << i);
    }
  }
  // Known answers: the zero block decodes to zeros; in the third block d = -16 / -8 = 2, value
  // -16 → n = 0 (low nibble of byte 0), value 0 → n = 8 (its high nibble), and +16 would need
  // n = 16, so it is clamped to 15 and decodes to 14.
  for (int j = 0; j < 32; ++j) BOOST_TEST(back8[static_cast<std::size_t>(32 + j)] == 0.0f);
  std::uint16_t d4 = 0;
  std::memcpy(&d4, q4.data() + 2 * 18, 2);
  BOOST_TEST(d4 == 0x4000u);  // 2.0
  BOOST_TEST(q4[2 * 18 + 2 + 0] == 0x80u);
  BOOST_TEST((q4[2 * 18 + 2 + 15] >> 4) == 15);
  BOOST_TEST(back4[95] == 14.0f);
  BOOST_TEST_REQUIRE(gguf::row_bytes(GgufType::F32, 33) == 132u);
  BOOST_TEST(error_of([] { gguf::row_bytes(GgufType::Q4_0, 48); }).find("48 values") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(int4_codes_pack_eight_per_int32_low_nibble_first) {
  quant::Scheme scheme{4, 0, false};
  quant::QuantizedMatrix q = quant::QuantizedMatrix::empty(3, 10, scheme);
  for (std::int64_t r = 0; r < 3; ++r)
    for (std::int64_t c = 0; c < 10; ++c) q.set_code(r, c, static_cast<int>((r * 10 + c) % 16));
  const std::vector<std::int32_t> words = compressed_tensors::pack_int4_rows(q, 1, 2);  // rows 1, 2
  BOOST_TEST_REQUIRE(words.size() == 4u);  // [2, ceil(10 / 8)]
  // Row 1 holds codes 10..15, 0..3: column 8w + i in bits [4i, 4i + 4).
  BOOST_TEST(static_cast<std::uint32_t>(words[0]) == 0x10FEDCBAu);
  BOOST_TEST(static_cast<std::uint32_t>(words[1]) == 0x32u);  // codes 2, 3 then zero padding
  BOOST_TEST(static_cast<std::uint32_t>(words[2]) == 0xBA987654u);
  BOOST_TEST(static_cast<std::uint32_t>(words[3]) == 0xDCu);
  // Zero points pack along dim 0: [9 rows, 2 groups] → [2, 2].
  std::vector<std::uint8_t> zeros(18);
  for (std::size_t i = 0; i < zeros.size(); ++i) zeros[i] = static_cast<std::uint8_t>(i % 16);
  const std::vector<std::int32_t> z = compressed_tensors::pack_int4_columns(zeros, 9, 2);
  BOOST_TEST_REQUIRE(z.size() == 4u);
  BOOST_TEST(static_cast<std::uint32_t>(z[0]) == 0xECA86420u);  // column 0, rows 0..7: 0, 2, ..., 14
  BOOST_TEST(static_cast<std::uint32_t>(z[1]) == 0xFDB97531u);  // column 1: 1, 3, ..., 15
  BOOST_TEST(static_cast<std::uint32_t>(z[2]) == 0x0u);         // row 8, column 0: 16 % 16
  BOOST_TEST(static_cast<std::uint32_t>(z[3]) == 0x1u);
}

BOOST_AUTO_TEST_CASE(llama_rope_permutation_interleaves_the_two_halves_of_each_head) {
  // convert_hf_to_gguf's permute: reshape(heads, 2, D/2, ...).swapaxes(1, 2).
  const std::vector<std::int64_t> whole = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
  for (std::int64_t r = 0; r < 16; ++r) BOOST_TEST(gguf::llama_rope_source_row(r, 8, 8) == whole[static_cast<std::size_t>(r)]);
  const std::vector<std::int64_t> partial = {0, 2, 1, 3, 4, 5, 6, 7};  // 4 rotary channels of 8
  for (std::int64_t r = 0; r < 8; ++r) BOOST_TEST(gguf::llama_rope_source_row(r, 8, 4) == partial[static_cast<std::size_t>(r)]);
}

BOOST_AUTO_TEST_CASE(gpt2_byte_to_unicode_text) {
  BOOST_TEST(gguf::gpt2_unicode_text(" the") == "\u0120the");
  BOOST_TEST(gguf::gpt2_unicode_text("\n") == "\u010a");
  BOOST_TEST(gguf::gpt2_unicode_text(std::string(1, '\xad')) == "\u0143");
  BOOST_TEST(gguf::gpt2_unicode_text(std::string(1, '\xff')) == "\u00ff");
  BOOST_TEST(gguf::gpt2_unicode_text(std::string(1, '\x7f')) == "\u0121");
}

BOOST_AUTO_TEST_CASE(gguf_keeps_ragged_linears_f32_and_writes_a_v3_header) {
  const ExportModel m = tiny_llama({4, 32, true}, 48, 320);
  const fs::path file = scratch("tiny.gguf");
  const GgufReport report = write_gguf(file, m, small_tokenizer(), GgufType::Q4_0);
  BOOST_TEST(report.kept_f32 == std::vector<std::string>{"blk.0.ffn_down.weight"});
  BOOST_TEST(static_cast<std::int64_t>(fs::file_size(file)) == report.bytes);
  BOOST_TEST(report.bytes % 32 == 0);
  std::ifstream in(file, std::ios::binary);
  char head[24];
  in.read(head, 24);
  std::uint32_t version = 0;
  std::uint64_t tensors = 0;
  std::memcpy(&version, head + 4, 4);
  std::memcpy(&tensors, head + 8, 8);
  BOOST_TEST(std::string(head, 4) == "GGUF");
  BOOST_TEST(version == 3u);
  // token_embd, attn_norm, q, k, v, attn_output, ffn_norm, gate, up, down, output_norm, output
  BOOST_TEST(tensors == 12u);
  BOOST_TEST(!fs::exists(file.string() + ".tmp"));
}

BOOST_AUTO_TEST_CASE(malformed_models_are_refused_naming_the_tensor) {
  ExportModel m = tiny_llama({8, 0, true}, 64, 320);
  const fs::path file = scratch("bad.gguf");
  ExportModel missing = m;
  missing.tensors.pop_back();
  BOOST_TEST(error_of([&] { write_gguf(file, missing, small_tokenizer(), GgufType::Q8_0); }).find("lm_head.weight' is missing") !=
             std::string::npos);
  ExportModel both = m;
  both.tensors[2].values.assign(static_cast<std::size_t>(both.tensors[2].numel()), 0.0f);
  BOOST_TEST(error_of([&] { write_compressed_safetensors(scratch("bad"), both); }).find("both dense values") !=
             std::string::npos);
  ExportModel shape = m;
  shape.tensors[0].shape[1] = 31;
  BOOST_TEST(error_of([&] { write_gguf(file, shape, small_tokenizer(), GgufType::Q8_0); }).find("embed.tokens.weight' has shape") !=
             std::string::npos);
  ExportModel small_vocab = tiny_llama({8, 0, true}, 64, 100);
  BOOST_TEST(error_of([&] { write_gguf(file, small_vocab, small_tokenizer(), GgufType::Q8_0); }).find("vocab_size is 100") !=
             std::string::npos);
  BOOST_TEST(!fs::exists(file));
}

BOOST_AUTO_TEST_CASE(compressed_safetensors_hold_the_codes_under_hugging_face_names) {
  ExportModel m = tiny_llama({8, 0, false}, 64, 320);
  m.quantization["sparsity"] = "unstructured";
  const fs::path dir = scratch("ct8");
  write_compressed_safetensors(dir, m);
  const io::hf::SafetensorsFile file(dir / "model.safetensors");
  const io::hf::SafetensorsEntry* q = file.find("model.layers.0.self_attn.q_proj.weight");
  BOOST_TEST_REQUIRE(q != nullptr);
  BOOST_TEST(std::string(io::hf::st_dtype_name(q->dtype)) == "I8");
  BOOST_TEST(q->shape == (Shape{32, 32}));
  const io::hf::SafetensorsEntry* zp = file.find("model.layers.0.self_attn.k_proj.weight_zero_point");
  BOOST_TEST_REQUIRE(zp != nullptr);
  BOOST_TEST(zp->shape == (Shape{16, 1}));  // 2 kv heads of 8 rows, per channel
  const auto codes = file.raw_bytes(*q);
  const quant::QuantizedMatrix& qkv = *m.tensor("layers.0.attn.qkv.weight").quantized;
  for (std::int64_t c = 0; c < 32; ++c) BOOST_TEST(static_cast<int>(static_cast<std::int8_t>(codes[static_cast<std::size_t>(32 + c)])) == qkv.code(1, c) - 128);
  BOOST_TEST(file.find("lm_head.weight") != nullptr);
  BOOST_TEST(file.find("model.layers.0.mlp.down_proj.weight_shape") == nullptr);  // int-quantized has none
  std::ifstream in(dir / "config.json");
  const nlohmann::json config = nlohmann::json::parse(in);
  const nlohmann::json& qc = config["quantization_config"];
  BOOST_TEST(qc["quant_method"] == "compressed-tensors");
  BOOST_TEST(qc["format"] == "int-quantized");
  BOOST_TEST(qc["config_groups"]["group_0"]["weights"]["strategy"] == "channel");
  BOOST_TEST(qc["config_groups"]["group_0"]["targets"] == nlohmann::json::array({"Linear"}));
  BOOST_TEST(qc["ignore"] == nlohmann::json::array({"lm_head"}));
  BOOST_TEST(qc["sparsity_config"]["sparsity_structure"] == "unstructured");
}
