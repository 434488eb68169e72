// Generation with a KV cache: the cached attention op against full causal attention, cached
// decode logits and greedy tokens against full recompute (forward_lm over the whole prefix
// at every step) for GPT-2 (learned positions) and Llama (GQA + RoPE), ragged prompts,
// stop tokens, the seeded sampler's determinism, the decode stage steps of pipeline stages
// and GenerationSteps' choice replay (the parts train::generate distributes).
#define BOOST_TEST_MODULE generation
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/backend.h"
#include "core/model/generation.h"
#include "core/model/kv_cache.h"
#include "core/model/transformer.h"

namespace {

using loom::DType;
using loom::Tensor;
using loom::model::Family;
using loom::model::GenerationConfig;
using loom::model::HeadKind;
using loom::model::ModelConfig;
using loom::model::ShardSpec;
using loom::model::Transformer;
using Tokens = std::vector<std::int32_t>;

constexpr std::int64_t kVocab = 96;

// Small models with a large init so logits are sharp and greedy argmax is never a near tie.
ModelConfig small(Family family) {
  ModelConfig c = family == Family::GPT2 ? ModelConfig::from_family(family, kVocab, 64, 2, 4, 4, 256, 64)
                                         : ModelConfig::from_family(family, kVocab, 64, 2, 4, 2, 96, 64);
  c.init_std = 0.25f;
  c.validate();
  return c;
}

Tensor ids_of(const Tokens& tokens) {
  Tensor t = Tensor::empty({1, static_cast<std::int64_t>(tokens.size())}, DType::I32);
  std::copy(tokens.begin(), tokens.end(), t.data<std::int32_t>());
  return t;
}

// Logits [T, V] of a whole sequence by the training forward (no cache).
std::vector<float> full_logits(Transformer& model, const Tokens& tokens) {
  const Tensor ids = ids_of(tokens);
  model.forward_lm(ids, ids);
  const float* p = model.lm_logits().data<float>();
  return std::vector<float>(p, p + static_cast<std::int64_t>(tokens.size()) * kVocab);
}

std::int32_t argmax_row(const float* row) { return static_cast<std::int32_t>(std::max_element(row, row + kVocab) - row); }

// max |a - b| over max |b|, over one row of V.
double row_relative_error(const float* a, const float* b) {
  double diff = 0.0, scale = 0.0;
  for (std::int64_t i = 0; i < kVocab; ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return diff / scale;
}

Tokens prompt(std::int64_t length, int salt) {
  Tokens t;
  for (std::int64_t i = 0; i < length; ++i) t.push_back(static_cast<std::int32_t>((i * 31 + salt * 17 + 5) % kVocab));
  return t;
}

// Greedy continuation by full recompute; also returns the smallest top-1/top-2 logit gap.
Tokens greedy_by_recompute(Transformer& model, Tokens seq, std::int64_t steps, double& min_gap) {
  Tokens out;
  for (std::int64_t s = 0; s < steps; ++s) {
    const std::vector<float> logits = full_logits(model, seq);
    const float* row = logits.data() + (static_cast<std::int64_t>(seq.size()) - 1) * kVocab;
    std::vector<float> sorted(row, row + kVocab);
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    min_gap = std::min(min_gap, static_cast<double>(sorted[0] - sorted[1]));
    out.push_back(argmax_row(row));
    seq.push_back(out.back());
  }
  return out;
}

void check_decode_logits(Family family) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(family);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(77);
  double gap = 1e9;
  const Tokens start = prompt(6, 1);
  Tokens seq = start;
  const Tokens greedy = greedy_by_recompute(model, seq, 20, gap);
  seq.insert(seq.end(), greedy.begin(), greedy.end());
  const std::vector<float> reference = full_logits(model, seq);

  loom::model::KvCache cache = model.make_kv_cache(1, 32);
  const Tensor& prefill = model.forward_decode(ids_of(start), cache, 0);
  BOOST_REQUIRE_EQUAL(prefill.dim(1), 6);
  double worst = 0.0;
  for (std::int64_t t = 0; t < 6; ++t) {
    worst = std::max(worst, row_relative_error(prefill.data<float>() + t * kVocab, reference.data() + t * kVocab));
  }
  for (std::int64_t pos = 6; pos < static_cast<std::int64_t>(seq.size()); ++pos) {
    const Tensor& step = model.forward_decode(ids_of({seq[static_cast<std::size_t>(pos)]}), cache, pos);
    worst = std::max(worst, row_relative_error(step.data<float>(), reference.data() + pos * kVocab));
  }
  BOOST_TEST_MESSAGE(loom::model::family_name(family) << ": worst decode relative error " << worst);
  BOOST_CHECK_LT(worst, 1e-4);
  BOOST_CHECK_EQUAL(cache.length(), static_cast<std::int64_t>(seq.size()));
}

void check_greedy_generation(Family family) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(family);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(2024);
  // Ragged prompts: the shorter ones are fed their remaining tokens during decode.
  const std::vector<Tokens> prompts = {prompt(5, 1), prompt(9, 2), prompt(7, 3)};
  GenerationConfig config;
  config.max_new_tokens = 20;
  config.sampling.temperature = 0.0f;
  const auto result = loom::model::generate(model, prompts, config);
  BOOST_REQUIRE_EQUAL(result.tokens.size(), prompts.size());
  BOOST_CHECK_EQUAL(result.new_tokens, 60);
  BOOST_CHECK_GT(result.tokens_per_second, 0.0);
  BOOST_TEST_MESSAGE(loom::model::family_name(family) << ": " << result.tokens_per_second << " new tokens/s (B=3)");
  double gap = 1e9;
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    const Tokens expected = greedy_by_recompute(model, prompts[b], 20, gap);
    BOOST_CHECK_EQUAL_COLLECTIONS(result.tokens[b].begin(), result.tokens[b].end(), expected.begin(), expected.end());
    BOOST_CHECK(!result.stopped[b]);
  }
  BOOST_TEST_MESSAGE(loom::model::family_name(family) << ": smallest greedy top-1/top-2 logit gap " << gap);
  BOOST_CHECK_GT(gap, 1e-3);  // otherwise the comparison would hinge on rounding

  // Stop tokens end a sequence right after the stop token is emitted.
  GenerationConfig stop = config;
  stop.stop_tokens = {result.tokens[1][3]};
  const auto stopped = loom::model::generate(model, {prompts[1]}, stop);
  const auto first = std::find(result.tokens[1].begin(), result.tokens[1].end(), stop.stop_tokens[0]);
  const auto expected_len = static_cast<std::size_t>(first - result.tokens[1].begin()) + 1;
  BOOST_CHECK_EQUAL(stopped.tokens[0].size(), expected_len);
  BOOST_CHECK(stopped.stopped[0]);
  BOOST_CHECK(std::equal(stopped.tokens[0].begin(), stopped.tokens[0].end(), result.tokens[1].begin()));
}

}  // namespace

BOOST_AUTO_TEST_CASE(cached_attention_matches_full_attention) {
  auto backend = loom::make_cpu_backend();
  const std::int64_t B = 2, T = 7, Hq = 4, Hkv = 2, D = 8, W = (Hq + 2 * Hkv) * D;
  Tensor qkv = Tensor::empty({B, T, W});
  float* x = qkv.data<float>();
  for (std::int64_t i = 0; i < qkv.numel(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i) + 0.1f) * 1.5f;
  Tensor full = Tensor::empty({B, T, Hq * D}), lse = Tensor::empty({B, Hq, T});
  backend->attention_forward(qkv, {B, T, Hq, Hkv, D}, full, lse);

  Tensor k_cache = Tensor::zeros({B, Hkv, 10, D}), v_cache = Tensor::zeros({B, Hkv, 10, D});
  // Positions [0, 4) in one call, then one token at a time.
  std::vector<std::pair<std::int64_t, std::int64_t>> chunks = {{0, 4}, {4, 1}, {5, 1}, {6, 1}};
  double worst = 0.0;
  for (const auto& [pos, len] : chunks) {
    Tensor part = Tensor::empty({B, len, W});
    for (std::int64_t b = 0; b < B; ++b) {
      std::copy_n(x + (b * T + pos) * W, len * W, part.data<float>() + b * len * W);
    }
    Tensor out = Tensor::empty({B, len, Hq * D});
    backend->attention_cached_forward(part, {B, len, Hq, Hkv, D}, pos, k_cache, v_cache, out);
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t i = 0; i < len * Hq * D; ++i) {
        const float got = out.data<float>()[b * len * Hq * D + i];
        const float want = full.data<float>()[(b * T + pos) * Hq * D + i];
        worst = std::max(worst, static_cast<double>(std::fabs(got - want)));
      }
    }
  }
  BOOST_CHECK_LT(worst, 1e-5);
  // The cache holds the k heads of the tokens: k head 1 of token 5 of sequence 1.
  BOOST_CHECK_EQUAL(k_cache.data<float>()[((1 * Hkv + 1) * 10 + 5) * D + 3], x[(1 * T + 5) * W + (Hq + 1) * D + 3]);
  Tensor out = Tensor::empty({B, 4, Hq * D});
  BOOST_CHECK_THROW(backend->attention_cached_forward(Tensor::empty({B, 4, W}), {B, 4, Hq, Hkv, D}, 7, k_cache, v_cache,
                                                      out),
                    std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(gpt2_decode_logits_match_recompute) { check_decode_logits(Family::GPT2); }
BOOST_AUTO_TEST_CASE(llama_decode_logits_match_recompute) { check_decode_logits(Family::Llama); }
BOOST_AUTO_TEST_CASE(gpt2_greedy_generation_matches_recompute) { check_greedy_generation(Family::GPT2); }
BOOST_AUTO_TEST_CASE(llama_greedy_generation_matches_recompute) { check_greedy_generation(Family::Llama); }

BOOST_AUTO_TEST_CASE(sampler_is_seeded_and_batch_independent) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(Family::Llama);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(5);
  const std::vector<Tokens> prompts = {prompt(4, 1), prompt(6, 2)};
  GenerationConfig config;
  config.max_new_tokens = 16;
  config.sampling = {1.0f, 40, 0.95f, 7};
  const auto a = loom::model::generate(model, prompts, config);
  const auto b = loom::model::generate(model, prompts, config);
  BOOST_CHECK(a.tokens == b.tokens);
  config.sampling.seed = 8;
  const auto other = loom::model::generate(model, prompts, config);
  BOOST_CHECK(other.tokens != a.tokens);

  // Same ids, swapped batch order: each sequence's sample is unchanged.
  config.sampling.seed = 7;
  config.sequence_ids = {1, 0};
  const auto swapped = loom::model::generate(model, {prompts[1], prompts[0]}, config);
  BOOST_CHECK(swapped.tokens[0] == a.tokens[1]);
  BOOST_CHECK(swapped.tokens[1] == a.tokens[0]);
}

BOOST_AUTO_TEST_CASE(sample_token_filters) {
  // p = {0.25, 0.75}: sorted, token 1 covers [0, 0.75) of the draw, token 0 the rest.
  const float logits[2] = {0.0f, std::log(3.0f)};
  loom::model::SamplingConfig s{1.0f, 0, 1.0f, 0};
  BOOST_CHECK_EQUAL(loom::model::sample_token(logits, 2, s, 0.2), 1);
  BOOST_CHECK_EQUAL(loom::model::sample_token(logits, 2, s, 0.8), 0);
  s.top_k = 1;
  BOOST_CHECK_EQUAL(loom::model::sample_token(logits, 2, s, 0.99), 1);
  s.top_k = 0;
  s.top_p = 0.5f;
  BOOST_CHECK_EQUAL(loom::model::sample_token(logits, 2, s, 0.99), 1);
  s.temperature = 0.0f;
  BOOST_CHECK_EQUAL(loom::model::sample_token(logits, 2, s, 0.99), 1);
  s = {1.0f, 0, 1.5f, 0};
  BOOST_CHECK_THROW(loom::model::sample_token(logits, 2, s, 0.5), std::invalid_argument);
  const double u = loom::model::sampling_uniform(3, 4, 5);
  BOOST_CHECK(u >= 0.0 && u < 1.0);
  BOOST_CHECK_EQUAL(u, loom::model::sampling_uniform(3, 4, 5));
  BOOST_CHECK_NE(u, loom::model::sampling_uniform(3, 4, 6));
}

BOOST_AUTO_TEST_CASE(decode_rejects_unsupported_shards) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(Family::GPT2);
  Transformer stage(c, ShardSpec{0, 1, 0, 1}, HeadKind::LM, *backend);
  loom::model::KvCache cache(stage.dims(), 1, 8, loom::Device::CPU);
  BOOST_CHECK_THROW(stage.forward_decode(ids_of({1, 2}), cache, 0), std::logic_error);
  Transformer whole(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  BOOST_CHECK_THROW(whole.make_kv_cache(1, 65), std::invalid_argument);
  loom::model::KvCache ok = whole.make_kv_cache(1, 8);
  BOOST_CHECK_THROW(whole.forward_decode(ids_of({1, 2}), ok, 1), std::invalid_argument);  // cache is empty
}

// Two pipeline stages in one process (layers [0, 1) and [1, 2), same seed) driven by the
// decode stage steps give the whole model's logits bit for bit: the same ops on the same
// weights in the same order; each stage's cache holds only its own layer.
BOOST_AUTO_TEST_CASE(decode_stage_steps_compose_to_forward_decode) {
  auto backend = loom::make_cpu_backend();
  for (Family family : {Family::GPT2, Family::Llama}) {
    const ModelConfig c = small(family);
    Transformer whole(c, ShardSpec::whole(c), HeadKind::LM, *backend);
    Transformer first(c, ShardSpec{0, 1, 0, 1}, HeadKind::LM, *backend);
    Transformer last(c, ShardSpec{1, 2, 0, 1}, HeadKind::LM, *backend);
    whole.init_weights(9);
    first.init_weights(9);
    last.init_weights(9);
    loom::model::KvCache whole_cache = whole.make_kv_cache(1, 8);
    loom::model::KvCache first_cache = first.make_kv_cache(1, 8), last_cache = last.make_kv_cache(1, 8);
    BOOST_CHECK_EQUAL(first_cache.layers(), 1);
    const std::vector<Tokens> steps = {{3, 14, 15, 9}, {26}, {5}};
    std::int64_t pos = 0;
    for (const Tokens& step : steps) {
      const Tensor ids = ids_of(step);
      const Tensor& want = whole.forward_decode(ids, whole_cache, pos);
      const Tensor& hidden = first.decode_blocks(first.decode_embed(ids, pos), first_cache, pos);
      Tensor& received = last.decode_input(1, ids.dim(1));
      backend->copy(hidden, received);
      const Tensor& got = last.decode_head(last.decode_blocks(received, last_cache, pos));
      BOOST_REQUIRE_EQUAL(got.numel(), want.numel());
      BOOST_CHECK(std::equal(got.data<float>(), got.data<float>() + got.numel(), want.data<float>()));
      pos += ids.dim(1);
      BOOST_CHECK_EQUAL(first_cache.length(), pos);
      BOOST_CHECK_EQUAL(last_cache.length(), pos);
    }
    BOOST_CHECK_THROW(last.decode_embed(ids_of({1}), 0), std::logic_error);
    BOOST_CHECK_THROW(first.decode_head(first.decode_input(1, 1)), std::logic_error);
  }
}

// GenerationSteps on a rank without logits, fed each step's choice, ends with the same
// result as the rank that chose.
BOOST_AUTO_TEST_CASE(generation_steps_apply_replays_choices) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = small(Family::Llama);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(4);
  const std::vector<Tokens> prompts = {prompt(3, 1), prompt(6, 2)};
  GenerationConfig config;
  config.max_new_tokens = 5;
  config.sampling = {1.0f, 20, 1.0f, 3};
  loom::model::GenerationSteps chooser(prompts, config, kVocab), follower(prompts, config, kVocab);
  BOOST_CHECK_EQUAL(chooser.prefill_length(), 3);
  BOOST_CHECK_EQUAL(chooser.capacity(), 11);
  loom::model::KvCache cache = model.make_kv_cache(2, chooser.capacity());
  const Tensor* logits = &model.forward_decode(chooser.prefill_ids(), cache, 0);
  int steps = 0;
  for (std::int64_t pos = chooser.prefill_length();; ++pos, ++steps) {
    chooser.choose(*logits, pos);
    Tensor received = Tensor::empty({2 * 2 + 1}, DType::I32);
    std::copy_n(chooser.choice().data<std::int32_t>(), received.numel(), received.data<std::int32_t>());
    follower.apply(received);
    BOOST_CHECK_EQUAL(follower.finished(), chooser.finished());
    if (chooser.finished()) break;
    logits = &model.forward_decode(chooser.step_ids(), cache, pos);
  }
  // Sequence 1 feeds 3 more prompt tokens first, then both make 5 tokens: 3 + 5 choices.
  BOOST_CHECK_EQUAL(steps + 1, 8);
  BOOST_CHECK(follower.result().tokens == chooser.result().tokens);
  BOOST_CHECK_EQUAL(follower.result().new_tokens, 10);
  BOOST_CHECK(chooser.result().tokens == loom::model::generate(model, prompts, config).tokens);
  BOOST_CHECK_THROW(follower.apply(Tensor::empty({4}, DType::I32)), std::invalid_argument);
}
