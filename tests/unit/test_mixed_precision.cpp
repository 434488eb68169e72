// bf16 mixed precision in the model (ParameterSet, activations, heads, AdamW), on the CPU
// backend's bf16 storage: the compute copy is exactly the masters rounded to bf16; a bf16
// model's loss, gradients, scalar values and decode logits stay close to the f32 model's
// from the same weights (and are not the f32 numbers: the bf16 path is really taken); a bf16
// training run follows the f32 run's loss curve; activations take about half the memory.
#define BOOST_TEST_MODULE mixed_precision
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/model/activations.h"
#include "core/model/transformer.h"
#include "core/optim/adamw.h"

namespace {

using loom::DType;
using loom::Tensor;
using loom::model::Family;
using loom::model::HeadKind;
using loom::model::ModelConfig;
using loom::model::ShardSpec;
using loom::model::Transformer;

constexpr std::int64_t kVocab = 96;

ModelConfig tiny(Family family) {
  ModelConfig c = family == Family::GPT2 ? ModelConfig::from_family(family, kVocab, 64, 2, 4, 4, 256, 32)
                                         : ModelConfig::from_family(family, kVocab, 64, 2, 4, 2, 96, 32);
  c.validate();
  return c;
}

// A learnable pattern: token t+1 follows from token t (a fixed permutation) with a little noise.
Tensor batch_tokens(std::int64_t batch, std::int64_t seq, int salt) {
  Tensor t = Tensor::empty({batch, seq + 1}, DType::I32);
  std::int32_t* p = t.data<std::int32_t>();
  for (std::int64_t b = 0; b < batch; ++b) {
    std::int64_t x = (b * 31 + salt * 17) % kVocab;
    for (std::int64_t i = 0; i <= seq; ++i) {
      p[b * (seq + 1) + i] = static_cast<std::int32_t>(x);
      x = (x * 5 + 7 + ((i + salt) % 11 == 0 ? b : 0)) % kVocab;
    }
  }
  return t;
}

// ids = tokens[:, :-1], targets = tokens[:, 1:].
std::pair<Tensor, Tensor> ids_and_targets(const Tensor& tokens) {
  const std::int64_t B = tokens.dim(0), T = tokens.dim(1) - 1;
  Tensor ids = Tensor::empty({B, T}, DType::I32), targets = Tensor::empty({B, T}, DType::I32);
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t i = 0; i < T; ++i) {
      ids.data<std::int32_t>()[b * T + i] = tokens.data<std::int32_t>()[b * (T + 1) + i];
      targets.data<std::int32_t>()[b * T + i] = tokens.data<std::int32_t>()[b * (T + 1) + i + 1];
    }
  }
  return {ids, targets};
}

// The gradients as f32 (bf16 ones widened).
std::vector<float> grads_of(const Transformer& model) {
  const Tensor& g = model.params().grads();
  std::vector<float> out(static_cast<std::size_t>(g.numel()));
  for (std::int64_t i = 0; i < g.numel(); ++i) {
    out[static_cast<std::size_t>(i)] =
        g.dtype() == DType::F32 ? g.data<float>()[i] : loom::from_bf16(g.data<loom::bf16>()[i]);
  }
  return out;
}

struct Agreement {
  double relative_l2 = 0.0;  // ||a - b|| / ||b||
  double cosine = 0.0;
};

Agreement agreement(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0.0, aa = 0.0, bb = 0.0, ab = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
    aa += a[i] * static_cast<double>(a[i]);
    bb += b[i] * static_cast<double>(b[i]);
    ab += a[i] * static_cast<double>(b[i]);
  }
  return {std::sqrt(diff / bb), ab / std::sqrt(aa * bb)};
}

// An f32 and a bf16 model of one family with the same initial weights.
struct Pair {
  std::unique_ptr<loom::Backend> backend = loom::make_cpu_backend();
  ModelConfig config;
  std::unique_ptr<Transformer> f32, bf16;

  explicit Pair(Family family, HeadKind head = HeadKind::LM) : config(tiny(family)) {
    f32 = std::make_unique<Transformer>(config, ShardSpec::whole(config), head, *backend);
    bf16 = std::make_unique<Transformer>(config, ShardSpec::whole(config), head, *backend, loom::model::LoraConfig{},
                                         DType::BF16);
    f32->init_weights(11);
    bf16->init_weights(11);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(compute_copy_is_the_masters_rounded) {
  Pair pair(Family::Llama);
  const loom::model::ParameterSet& p = pair.bf16->params();
  BOOST_REQUIRE(p.mixed_precision());
  BOOST_CHECK(p.values().dtype() == DType::F32);
  BOOST_CHECK(p.grads().dtype() == DType::BF16);
  BOOST_REQUIRE(p.compute_values().dtype() == DType::BF16);
  std::int64_t mismatches = 0, inexact = 0;
  for (std::int64_t i = 0; i < p.numel(); ++i) {
    const float master = p.values().data<float>()[i];
    const loom::bf16 copy = p.compute_values().data<loom::bf16>()[i];
    mismatches += copy.bits != loom::to_bf16(master).bits ? 1 : 0;
    inexact += loom::from_bf16(copy) != master ? 1 : 0;
  }
  BOOST_CHECK_EQUAL(mismatches, 0);
  BOOST_CHECK_GT(inexact, p.numel() / 2);  // the masters keep precision the copy lacks
  // Same masters as the f32 model: the init does not depend on the compute dtype.
  const Tensor& f = pair.f32->params().values();
  BOOST_CHECK(std::equal(f.data<float>(), f.data<float>() + f.numel(), p.values().data<float>()));
  // f32 models compute with the masters themselves.
  BOOST_CHECK_EQUAL(pair.f32->params().compute_values().raw(), pair.f32->params().values().raw());
}

BOOST_AUTO_TEST_CASE(loss_and_gradients_close_to_f32) {
  for (const Family family : {Family::GPT2, Family::Llama}) {
    Pair pair(family);
    const auto [ids, targets] = ids_and_targets(batch_tokens(4, 32, 1));
    const double loss32 = pair.f32->forward_lm(ids, targets).mean();
    const double loss16 = pair.bf16->forward_lm(ids, targets).mean();
    pair.f32->backward_lm(1.0f / static_cast<float>(ids.numel()));
    pair.bf16->backward_lm(1.0f / static_cast<float>(ids.numel()));
    const Agreement g = agreement(grads_of(*pair.bf16), grads_of(*pair.f32));
    BOOST_TEST_MESSAGE(loom::model::family_name(family) << ": loss f32 " << loss32 << " bf16 " << loss16
                                                        << "; gradient relative L2 " << g.relative_l2 << ", cosine "
                                                        << g.cosine);
    BOOST_CHECK_NE(loss16, loss32);  // the bf16 path really ran
    BOOST_CHECK_LT(std::fabs(loss16 - loss32) / loss32, 1e-3);
    BOOST_CHECK_LT(g.relative_l2, 0.02);
    BOOST_CHECK_GT(g.cosine, 0.9995);
  }
}

BOOST_AUTO_TEST_CASE(training_follows_the_f32_loss_curve) {
  for (const Family family : {Family::GPT2, Family::Llama}) {
    Pair pair(family);
    loom::optim::AdamWConfig adamw;
    adamw.weight_decay = 0.0f;
    loom::optim::AdamW opt32(pair.f32->params(), adamw, *pair.backend);
    loom::optim::AdamW opt16(pair.bf16->params(), adamw, *pair.backend);
    double first32 = 0.0, last32 = 0.0, last16 = 0.0, worst = 0.0;
    constexpr int kSteps = 40;
    for (int step = 0; step < kSteps; ++step) {
      const auto [ids, targets] = ids_and_targets(batch_tokens(4, 32, step % 4));
      const float dloss = 1.0f / static_cast<float>(ids.numel());
      pair.f32->zero_grads();
      pair.bf16->zero_grads();
      const double l32 = pair.f32->forward_lm(ids, targets).mean();
      const double l16 = pair.bf16->forward_lm(ids, targets).mean();
      pair.f32->backward_lm(dloss);
      pair.bf16->backward_lm(dloss);
      opt32.step(3e-3f);
      opt16.step(3e-3f);
      if (step == 0) first32 = l32;
      last32 = l32;
      last16 = l16;
      worst = std::max(worst, std::fabs(l16 - l32) / l32);
    }
    BOOST_TEST_MESSAGE(loom::model::family_name(family) << ": loss " << first32 << " -> f32 " << last32 << ", bf16 "
                                                        << last16 << "; worst relative gap " << worst);
    BOOST_CHECK_LT(last32, 0.5 * first32);  // the run learns
    BOOST_CHECK_LT(last16, 0.5 * first32);
    BOOST_CHECK_LT(worst, 0.02);
    // The compute copy tracks the updated masters.
    const loom::model::ParameterSet& p = pair.bf16->params();
    std::int64_t stale = 0;
    for (std::int64_t i = 0; i < p.numel(); ++i) {
      stale += p.compute_values().data<loom::bf16>()[i].bits != loom::to_bf16(p.values().data<float>()[i]).bits;
    }
    BOOST_CHECK_EQUAL(stale, 0);
  }
}

BOOST_AUTO_TEST_CASE(scalar_values_are_f32_and_close) {
  Pair pair(Family::Llama, HeadKind::Scalar);
  const auto [ids, targets] = ids_and_targets(batch_tokens(2, 16, 3));
  const Tensor v32 = pair.f32->forward_scalar(ids).clone();
  const Tensor& v16 = pair.bf16->forward_scalar(ids);
  BOOST_REQUIRE(v16.dtype() == DType::F32);
  double worst = 0.0, scale = 0.0;
  for (std::int64_t i = 0; i < v32.numel(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(v16.data<float>()[i] - v32.data<float>()[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(v32.data<float>()[i])));
  }
  BOOST_TEST_MESSAGE("scalar head: worst |bf16 - f32| " << worst << " of values up to " << scale);
  BOOST_CHECK_LT(worst, 0.03 * scale + 1e-3);
  Tensor dvalues = Tensor::empty({2, 16}, DType::F32);
  for (std::int64_t i = 0; i < dvalues.numel(); ++i) dvalues.data<float>()[i] = 0.01f * static_cast<float>(i % 5);
  pair.f32->backward_scalar(dvalues);
  pair.bf16->backward_scalar(dvalues);
  const Agreement g = agreement(grads_of(*pair.bf16), grads_of(*pair.f32));
  BOOST_CHECK_GT(g.cosine, 0.995);
}

BOOST_AUTO_TEST_CASE(decode_logits_follow_the_full_forward) {
  Pair pair(Family::Llama);
  const auto [ids, targets] = ids_and_targets(batch_tokens(1, 12, 5));
  loom::model::KvCache cache = pair.bf16->make_kv_cache(1, 16);
  const Tensor& logits16 = pair.bf16->forward_decode(ids, cache, 0);
  BOOST_REQUIRE(logits16.dtype() == DType::F32);
  const std::vector<float> got(logits16.data<float>(), logits16.data<float>() + logits16.numel());
  loom::model::KvCache cache32 = pair.f32->make_kv_cache(1, 16);
  const Tensor& logits32 = pair.f32->forward_decode(ids, cache32, 0);
  const std::vector<float> want(logits32.data<float>(), logits32.data<float>() + logits32.numel());
  const Agreement a = agreement(got, want);
  BOOST_TEST_MESSAGE("decode logits bf16 vs f32: relative L2 " << a.relative_l2);
  BOOST_CHECK_GT(a.relative_l2, 0.0);
  BOOST_CHECK_LT(a.relative_l2, 0.02);
}

BOOST_AUTO_TEST_CASE(activations_take_about_half_the_memory) {
  const ModelConfig c = tiny(Family::GPT2);
  loom::model::ShardDims d32 = loom::model::ShardDims::of(c, ShardSpec::whole(c).resolved(c));
  loom::model::ShardDims d16 = d32;
  d16.dtype = DType::BF16;
  const double f32 = static_cast<double>(loom::model::SlotActivations::bytes_for(d32, true, 8, 32));
  const double bf16 = static_cast<double>(loom::model::SlotActivations::bytes_for(d16, true, 8, 32));
  BOOST_TEST_MESSAGE("activation bytes per slot: f32 " << f32 << ", bf16 " << bf16);
  BOOST_CHECK_LT(bf16, 0.56 * f32);
  BOOST_CHECK_GT(bf16, 0.5 * f32);
}
