// The int8 KV cache (KvCache::Int8, Backend::attention_cached_int8_forward) against the f32
// cache with kv_int8_round_trip, which is what it replaces: the op's output and the decoded
// cache bit for bit, the cache's bytes, greedy generation of GPT-2 and Llama (GQA + RoPE)
// with identical tokens and logits at every step, prefill + decode against one full
// forward with the int8 numerics, and the error paths.
#define BOOST_TEST_MODULE kv_int8_cache
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/model/generation.h"
#include "core/model/kv_cache.h"
#include "core/model/transformer.h"
#include "core/quant/kv_int8.h"

namespace {

using loom::DType;
using loom::Tensor;
using loom::model::Family;
using loom::model::GenerationConfig;
using loom::model::GenerationSteps;
using loom::model::HeadKind;
using loom::model::KvCache;
using loom::model::KvCacheKind;
using loom::model::ModelConfig;
using loom::model::ShardSpec;
using loom::model::Transformer;
using Tokens = std::vector<std::int32_t>;

constexpr std::int64_t kVocab = 96;

ModelConfig small(Family family) {
  ModelConfig c = family == Family::GPT2 ? ModelConfig::from_family(family, kVocab, 64, 2, 4, 4, 256, 64)
                                         : ModelConfig::from_family(family, kVocab, 64, 2, 4, 2, 96, 64);
  c.init_std = 0.25f;
  c.validate();
  return c;
}

Tokens prompt(std::int64_t length, int salt) {
  Tokens t;
  for (std::int64_t i = 0; i < length; ++i) t.push_back(static_cast<std::int32_t>((i * 31 + salt * 17 + 5) % kVocab));
  return t;
}

Tensor ids_of(const Tokens& tokens) {
  Tensor t = Tensor::empty({1, static_cast<std::int64_t>(tokens.size())}, DType::I32);
  std::copy(tokens.begin(), tokens.end(), t.data<std::int32_t>());
  return t;
}

bool same_bits(const float* a, const float* b, std::int64_t n) {
  return std::memcmp(a, b, static_cast<std::size_t>(n) * sizeof(float)) == 0;
}

// One greedy generation driven step by step (as generate() does) on the given cache,
// keeping every step's logits [B, T, V].
struct Trace {
  std::vector<std::vector<std::int32_t>> tokens;
  std::vector<std::vector<float>> logits;
};

Trace greedy_trace(Transformer& model, const std::vector<Tokens>& prompts, const GenerationConfig& config,
                   KvCache& cache) {
  GenerationSteps steps(prompts, config, kVocab);
  Trace trace;
  const Tensor* logits = &model.forward_decode(steps.prefill_ids(), cache, 0);
  for (std::int64_t pos = steps.prefill_length();; ++pos) {
    trace.logits.emplace_back(logits->data<float>(), logits->data<float>() + logits->numel());
    steps.choose(*logits, pos);
    if (steps.finished()) break;
    logits = &model.forward_decode(steps.step_ids(), cache, pos);
  }
  trace.tokens = steps.result().tokens;
  return trace;
}

void check_generation_matches_f32_cache(Family family) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(family);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(2024);
  model.set_kv_int8(true);
  const std::vector<Tokens> prompts = {prompt(5, 1), prompt(9, 2), prompt(7, 3)};
  GenerationConfig config;
  config.max_new_tokens = 20;
  config.sampling.temperature = 0.0f;
  const GenerationSteps plan(prompts, config, kVocab);

  KvCache int8_cache = model.make_kv_cache(3, plan.capacity());
  BOOST_REQUIRE(int8_cache.int8());
  KvCache f32_cache(model.dims(), 3, plan.capacity(), loom::Device::CPU, KvCacheKind::F32);
  const Trace got = greedy_trace(model, prompts, config, int8_cache);
  const Trace want = greedy_trace(model, prompts, config, f32_cache);

  BOOST_CHECK(got.tokens == want.tokens);
  BOOST_REQUIRE_EQUAL(got.logits.size(), want.logits.size());
  std::size_t identical = 0;
  for (std::size_t s = 0; s < got.logits.size(); ++s) {
    BOOST_REQUIRE_EQUAL(got.logits[s].size(), want.logits[s].size());
    identical += same_bits(got.logits[s].data(), want.logits[s].data(),
                           static_cast<std::int64_t>(got.logits[s].size()))
                     ? 1
                     : 0;
  }
  BOOST_CHECK_EQUAL(identical, got.logits.size());
  BOOST_CHECK_EQUAL(got.tokens[0].size(), 20u);

  // generate() picks the int8 cache by itself and gives the same tokens.
  BOOST_CHECK(loom::model::generate(model, prompts, config).tokens == got.tokens);

  // The int8 numerics are really on: without them the logits move, a little.
  model.set_kv_int8(false);
  KvCache plain = model.make_kv_cache(3, plan.capacity());
  BOOST_CHECK(!plain.int8());
  const Trace exact = greedy_trace(model, prompts, config, plain);
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < exact.logits[0].size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(exact.logits[0][i] - got.logits[0][i])));
    scale = std::max(scale, static_cast<double>(std::fabs(exact.logits[0][i])));
  }
  BOOST_TEST_MESSAGE(loom::model::family_name(family) << ": prefill logits int8 vs f32 KV, relative " << diff / scale);
  BOOST_CHECK_GT(diff, 0.0);
  BOOST_CHECK_LT(diff / scale, 0.05);
}

// Prefill then one token at a time, against forward_lm over the whole sequence, with the
// int8 numerics on in both.
void check_decode_matches_full_forward(Family family) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(family);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(77);
  model.set_kv_int8(true);
  Tokens seq = prompt(24, 4);
  const Tensor all = ids_of(seq);
  model.forward_lm(all, all);
  const float* ref = model.lm_logits().data<float>();
  const std::vector<float> reference(ref, ref + all.numel() * kVocab);

  KvCache cache = model.make_kv_cache(1, 32);
  BOOST_REQUIRE(cache.int8());
  const std::int64_t prefill = 6;
  std::vector<float> decoded;
  const Tensor& first = model.forward_decode(ids_of(Tokens(seq.begin(), seq.begin() + prefill)), cache, 0);
  decoded.insert(decoded.end(), first.data<float>(), first.data<float>() + first.numel());
  for (std::int64_t pos = prefill; pos < static_cast<std::int64_t>(seq.size()); ++pos) {
    const Tensor& step = model.forward_decode(ids_of({seq[static_cast<std::size_t>(pos)]}), cache, pos);
    decoded.insert(decoded.end(), step.data<float>(), step.data<float>() + step.numel());
  }
  BOOST_REQUIRE_EQUAL(decoded.size(), reference.size());
  double worst = 0.0, largest = 0.0;
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(decoded[i] - reference[i])));
    largest = std::max(largest, static_cast<double>(std::fabs(reference[i])));
  }
  BOOST_TEST_MESSAGE(loom::model::family_name(family) << ": decode vs full forward, max |diff| " << worst
                                                      << " over max |logit| " << largest);
  BOOST_CHECK_LT(worst, 1e-5 * largest);
  BOOST_CHECK_EQUAL(cache.length(), static_cast<std::int64_t>(seq.size()));
}

}  // namespace

// The op against the round trip and the f32 op, appended in chunks (a 4-token prefill, a
// 2-token chunk, single tokens), GQA with 2 query heads per kv head.
BOOST_AUTO_TEST_CASE(int8_cached_attention_matches_round_trip_f32_cache) {
  auto backend = loom::make_cpu_backend();
  const std::int64_t B = 2, T = 9, Hq = 4, Hkv = 2, D = 16, W = (Hq + 2 * Hkv) * D, cap = 12;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.3f);
  Tensor qkv = Tensor::empty({B, T, W});
  for (std::int64_t i = 0; i < qkv.numel(); ++i) qkv.data<float>()[i] = normal(rng);

  Tensor kf = Tensor::zeros({B, Hkv, cap, D}), vf = Tensor::zeros({B, Hkv, cap, D});
  Tensor kq = Tensor::zeros({B, Hkv, cap, D}, DType::I8), vq = Tensor::zeros({B, Hkv, cap, D}, DType::I8);
  Tensor ks = Tensor::zeros({B, Hkv, cap}), vs = Tensor::zeros({B, Hkv, cap});
  const std::vector<std::pair<std::int64_t, std::int64_t>> chunks = {{0, 4}, {4, 2}, {6, 1}, {7, 1}, {8, 1}};
  for (const auto& [pos, len] : chunks) {
    const loom::AttentionShape shape{B, len, Hq, Hkv, D};
    Tensor part = Tensor::empty({B, len, W});
    for (std::int64_t b = 0; b < B; ++b) {
      std::copy_n(qkv.data<float>() + (b * T + pos) * W, len * W, part.data<float>() + b * len * W);
    }
    Tensor rounded = Tensor::empty({B, len, W});
    std::copy_n(part.data<float>(), part.numel(), rounded.data<float>());
    backend->kv_int8_round_trip(rounded, shape);
    Tensor want = Tensor::empty({B, len, Hq * D}), got = Tensor::empty({B, len, Hq * D});
    backend->attention_cached_forward(rounded, shape, pos, kf, vf, want);
    backend->attention_cached_int8_forward(part, shape, pos, kq, vq, ks, vs, got);
    BOOST_CHECK(same_bits(got.data<float>(), want.data<float>(), got.numel()));
  }

  // Every filled row decodes to exactly the f32 cache's row, and its codes are quantize_kv's.
  std::vector<float> decoded(static_cast<std::size_t>(D));
  std::vector<std::int8_t> codes(static_cast<std::size_t>(D));
  for (std::int64_t row = 0; row < B * Hkv * cap; ++row) {
    if (row % cap >= T) continue;
    for (const auto& [q, s, f] : {std::tuple{&kq, &ks, &kf}, std::tuple{&vq, &vs, &vf}}) {
      loom::quant::dequantize_kv(q->data<std::int8_t>() + row * D, s->data<float>() + row, 1, D, decoded.data());
      BOOST_CHECK(same_bits(decoded.data(), f->data<float>() + row * D, D));
    }
  }
  // Key head 1 of token 5 of sequence 1 (position 5 of that row block) against quantize_kv.
  float scale = 0.0f;
  loom::quant::quantize_kv(qkv.data<float>() + (1 * T + 5) * W + (Hq + 1) * D, 1, D, codes.data(), &scale);
  const std::int64_t row = (1 * Hkv + 1) * cap + 5;
  BOOST_CHECK_EQUAL(ks.data<float>()[row], scale);
  BOOST_CHECK(std::equal(codes.begin(), codes.end(), kq.data<std::int8_t>() + row * D));

  // Bad arguments name the op: an f32 cache, scales of the wrong shape, no room left.
  const loom::AttentionShape one{B, 1, Hq, Hkv, D};
  Tensor step = Tensor::empty({B, 1, W}), out = Tensor::empty({B, 1, Hq * D});
  BOOST_CHECK_THROW(backend->attention_cached_int8_forward(step, one, 9, kf, vf, ks, vs, out), std::invalid_argument);
  Tensor short_scales = Tensor::zeros({B, Hkv, cap - 1});
  BOOST_CHECK_THROW(backend->attention_cached_int8_forward(step, one, 9, kq, vq, short_scales, vs, out),
                    std::invalid_argument);
  BOOST_CHECK_THROW(backend->attention_cached_int8_forward(step, one, cap, kq, vq, ks, vs, out),
                    std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(int8_cache_layout_and_bytes) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(Family::Llama);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  const loom::model::ShardDims& d = model.dims();
  const std::int64_t B = 3, cap = 40, L = d.layers, H = d.kv_heads, D = d.head_dim;

  KvCache f32 = model.make_kv_cache(B, cap);
  BOOST_CHECK(f32.kind() == KvCacheKind::F32);
  BOOST_CHECK_EQUAL(f32.bytes(), 2 * L * B * H * cap * D * 4);
  BOOST_CHECK_THROW(f32.k_scales(0), std::logic_error);

  model.set_kv_int8(true);
  KvCache int8 = model.make_kv_cache(B, cap);
  BOOST_REQUIRE(int8.kind() == KvCacheKind::Int8);
  BOOST_CHECK_EQUAL(int8.layers(), L);
  BOOST_CHECK(int8.k(1).dtype() == DType::I8);
  BOOST_CHECK(int8.v(0).shape() == (loom::Shape{B, H, cap, D}));
  BOOST_CHECK(int8.v_scales(1).dtype() == DType::F32);
  BOOST_CHECK(int8.k_scales(0).shape() == (loom::Shape{B, H, cap}));
  BOOST_CHECK_THROW(int8.k_scales(L), std::out_of_range);
  // One byte per element plus one f32 scale per row of D: 1/4 + 1/D of the f32 cache.
  BOOST_CHECK_EQUAL(int8.bytes(), 2 * L * B * H * cap * (D + 4));
  const double ratio = static_cast<double>(int8.bytes()) / static_cast<double>(f32.bytes());
  BOOST_TEST_MESSAGE("int8 / f32 cache bytes " << ratio << " (D = " << D << ")");
  BOOST_CHECK_CLOSE(ratio, 0.25 + 1.0 / static_cast<double>(D), 1e-9);
}

BOOST_AUTO_TEST_CASE(gpt2_int8_cache_generation_matches_f32_cache) {
  check_generation_matches_f32_cache(Family::GPT2);
}
BOOST_AUTO_TEST_CASE(llama_int8_cache_generation_matches_f32_cache) {
  check_generation_matches_f32_cache(Family::Llama);
}
BOOST_AUTO_TEST_CASE(gpt2_int8_cache_decode_matches_full_forward) { check_decode_matches_full_forward(Family::GPT2); }
BOOST_AUTO_TEST_CASE(llama_int8_cache_decode_matches_full_forward) {
  check_decode_matches_full_forward(Family::Llama);
}

// An int8 cache on layers without the int8 numerics would silently change the model.
BOOST_AUTO_TEST_CASE(int8_cache_needs_kv_int8_layers) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(Family::GPT2);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(3);
  KvCache cache(model.dims(), 1, 8, loom::Device::CPU, KvCacheKind::Int8);
  BOOST_CHECK_THROW(model.forward_decode(ids_of({1, 2, 3}), cache, 0), std::invalid_argument);
  model.set_kv_int8(true);
  BOOST_CHECK_NO_THROW(model.forward_decode(ids_of({1, 2, 3}), cache, 0));
  BOOST_CHECK_EQUAL(cache.length(), 3);
}
