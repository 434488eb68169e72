// The weighted LM-head backward that preference and policy-gradient losses use
// (Transformer::lm_head_backward(const Tensor& dloss, int slot) with lm_token_losses()):
// on a tiny random whole model of each family, the gradient of
//   L = Σ_t w_t · log p(target_t)      (random w_t; ignored targets carry large weights)
// through the stage steps equals central finite differences of L for chosen parameter
// elements of every kind (embeddings, attention, MLP, norms, head, biases); and a constant
// weight gives bit for bit the gradient of the uniform lm_head_backward(float) path.
#define BOOST_TEST_MODULE weighted_lm_head
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/mix64.h"
#include "core/model/transformer.h"

namespace {

using loom::DType;
using loom::Tensor;
using loom::model::Family;
using loom::model::HeadKind;
using loom::model::ModelConfig;
using loom::model::ShardSpec;
using loom::model::Transformer;

constexpr std::int64_t kBatch = 3, kSeq = 7, kVocab = 40;

ModelConfig tiny(Family family) {
  ModelConfig c = family == Family::GPT2 ? ModelConfig::from_family(family, kVocab, 32, 2, 4, 4, 64, 16)
                                         : ModelConfig::from_family(family, kVocab, 32, 2, 4, 2, 48, 16);
  // Larger than the default 0.02, so that attention and the MLP are not nearly linear and the
  // logits not nearly uniform: the finite differences then test the whole chain rule.
  c.init_std = 0.2f;
  c.validate();
  return c;
}

// A uniform number in [-1, 1) from (salt, index).
float uniform(std::uint64_t salt, std::uint64_t i) {
  return static_cast<float>(static_cast<double>(loom::mix64(salt * 0x9E3779B97F4A7C15ULL + i) >> 11) * 0x1.0p-52 - 1.0);
}

Tensor token_ids(std::uint64_t salt) {
  Tensor t = Tensor::empty({kBatch, kSeq}, DType::I32);
  std::int32_t* p = t.data<std::int32_t>();
  for (std::int64_t i = 0; i < kBatch * kSeq; ++i) {
    p[i] = static_cast<std::int32_t>(loom::mix64(salt + static_cast<std::uint64_t>(i)) % kVocab);
  }
  return t;
}

// Targets with some ignored (-1), among them a whole row's tail, as completions have.
Tensor targets_with_holes() {
  Tensor t = token_ids(77);
  std::int32_t* p = t.data<std::int32_t>();
  const std::int64_t ignored[] = {0, 1, 2, 9, kSeq * 2 + 5, kSeq * 2 + 6};
  for (const std::int64_t i : ignored) p[i] = -1;
  return t;
}

struct Problem {
  Tensor ids = token_ids(5);
  Tensor targets = targets_with_holes();
  std::vector<float> weights;  // w_t
  Problem() {
    for (std::int64_t i = 0; i < kBatch * kSeq; ++i) {
      const bool ignored = targets.data<std::int32_t>()[i] < 0;
      // An ignored target must contribute nothing whatever its weight.
      weights.push_back(ignored ? 100.0f : uniform(3, static_cast<std::uint64_t>(i)));
    }
  }
};

// L = Σ_t w_t · logp_t in f64 from the model's per-token losses (logp_t = -loss_t).
double objective(Transformer& model, const Problem& p) {
  const Tensor& hidden = model.blocks_forward(model.embed_forward(p.ids, 0), 0);
  model.lm_head_forward(hidden, p.targets, 0);
  const Tensor losses = model.lm_token_losses();
  BOOST_REQUIRE_EQUAL(losses.numel(), kBatch * kSeq);
  const float* l = losses.data<float>();
  double sum = 0;
  for (std::int64_t i = 0; i < losses.numel(); ++i) {
    if (p.targets.data<std::int32_t>()[i] < 0) BOOST_REQUIRE_EQUAL(l[i], 0.0f);
    sum += static_cast<double>(p.weights[static_cast<std::size_t>(i)]) * -static_cast<double>(l[i]);
  }
  return sum;
}

// ∂L/∂θ into the model's gradient buffer through the weighted head backward.
void weighted_gradient(Transformer& model, const Problem& p) {
  model.zero_grads();
  objective(model, p);
  Tensor dloss = Tensor::empty({kBatch * kSeq}, DType::F32);
  // L = Σ w_t · logp_t = Σ (-w_t) · loss_t.
  for (std::int64_t i = 0; i < kBatch * kSeq; ++i) dloss.data<float>()[i] = -p.weights[static_cast<std::size_t>(i)];
  model.embed_backward(model.blocks_backward(model.lm_head_backward(dloss, 0), 0), 0);
}

std::vector<float> grads_of(const Transformer& model) {
  const Tensor& g = model.params().grads();
  return std::vector<float>(g.data<float>(), g.data<float>() + g.numel());
}

// Parameters of every kind each family has.
std::vector<std::string> checked_parameters(Family family) {
  std::vector<std::string> names = {"embed.tokens.weight", "layers.0.attn.qkv.weight", "layers.1.attn.out.weight",
                                    "layers.0.mlp.up.weight", "layers.1.mlp.down.weight", "layers.0.attn_norm.weight",
                                    "final_norm.weight"};
  if (family == Family::GPT2) {
    names.insert(names.end(), {"embed.positions.weight", "layers.1.attn.qkv.bias", "final_norm.bias"});
  } else {
    names.insert(names.end(), {"layers.1.mlp.gate.weight", "lm_head.weight"});
  }
  return names;
}

}  // namespace

BOOST_AUTO_TEST_CASE(weighted_gradient_equals_finite_differences) {
  // The forward is f32: L (|L| ~ 30) carries rounding of a few 1e-6, which the quotient
  // divides by 2·eps; the O(eps²) truncation grows with eps on weights of size ~0.2. eps =
  // 3e-3 balances the two: the worst error seen is ~6e-4 absolute (on gradients up to ~6),
  // both families; errors were ~1e-3 at eps = 1e-3 (rounding) and 1e-2 (truncation). The
  // errors use at most ~15% of the tolerance; a wrong sign, scale or missed term is off by
  // O(|gradient|).
  constexpr double kEps = 3e-3, kAtol = 2e-3, kRtol = 2e-2;
  for (const Family family : {Family::Llama, Family::GPT2}) {
    auto backend = loom::make_cpu_backend();
    const ModelConfig c = tiny(family);
    Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
    model.init_weights(2024);
    const Problem p;
    weighted_gradient(model, p);
    const std::vector<float> analytic = grads_of(model);

    double worst = 0, worst_share = 0;  // largest error, and its share of the tolerance
    int checked = 0;
    for (const std::string& name : checked_parameters(family)) {
      const auto& entry = model.params().entry(name);
      const float* g = analytic.data() + entry.offset;
      // The element with the largest gradient, and two more from (name, salt).
      std::vector<std::int64_t> elements = {
          std::max_element(g, g + entry.numel, [](float a, float b) { return std::fabs(a) < std::fabs(b); }) - g};
      for (std::uint64_t k = 0; k < 2; ++k) {
        elements.push_back(static_cast<std::int64_t>(loom::mix64(std::hash<std::string>{}(name) + k) %
                                                     static_cast<std::uint64_t>(entry.numel)));
      }
      float* value = model.params().values().data<float>() + entry.offset;
      for (const std::int64_t e : elements) {
        const float saved = value[e];
        value[e] = static_cast<float>(saved + kEps);
        const double up = objective(model, p);
        value[e] = static_cast<float>(saved - kEps);
        const double down = objective(model, p);
        value[e] = saved;
        // The step actually taken in f32, not the nominal 2·eps.
        const double step = static_cast<double>(static_cast<float>(saved + kEps)) -
                            static_cast<double>(static_cast<float>(saved - kEps));
        const double numeric = (up - down) / step;
        const double error = std::fabs(numeric - g[e]);
        worst = std::max(worst, error);
        worst_share = std::max(worst_share, error / (kAtol + kRtol * std::fabs(numeric)));
        ++checked;
        BOOST_CHECK_MESSAGE(error <= kAtol + kRtol * std::fabs(numeric),
                            loom::model::family_name(family) << " " << name << "[" << e << "]: analytic " << g[e]
                                                             << ", finite difference " << numeric);
      }
    }
    // The largest gradients are far from zero, so agreement is not two zeros.
    double largest = 0;
    for (const float x : analytic) largest = std::max(largest, static_cast<double>(std::fabs(x)));
    BOOST_CHECK_GT(largest, 0.05);
    BOOST_TEST_MESSAGE(loom::model::family_name(family)
                       << ": " << checked << " elements, worst |analytic - numeric| " << worst << " ("
                       << worst_share << " of the tolerance), largest gradient " << largest);
  }
}

BOOST_AUTO_TEST_CASE(ignored_targets_contribute_nothing_whatever_their_weight) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = tiny(Family::Llama);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(7);
  Problem p;
  weighted_gradient(model, p);
  const std::vector<float> heavy = grads_of(model);
  for (std::int64_t i = 0; i < kBatch * kSeq; ++i) {
    if (p.targets.data<std::int32_t>()[i] < 0) p.weights[static_cast<std::size_t>(i)] = 0.0f;
  }
  weighted_gradient(model, p);
  BOOST_CHECK(heavy == grads_of(model));
}

BOOST_AUTO_TEST_CASE(constant_weight_is_the_uniform_backward_bit_for_bit) {
  for (const Family family : {Family::Llama, Family::GPT2}) {
    auto backend = loom::make_cpu_backend();
    const ModelConfig c = tiny(family);
    Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
    model.init_weights(11);
    Problem p;
    const loom::model::LossSum sum = model.forward_lm(p.ids, p.targets);
    BOOST_REQUIRE_EQUAL(sum.count, kBatch * kSeq - 6);
    const float per_token = 1.0f / static_cast<float>(sum.count);  // the mean loss
    model.zero_grads();
    model.backward_lm(per_token);
    const std::vector<float> uniform_path = grads_of(model);

    // L = Σ (1/n) · loss_t as weights: w_t = -1/n on log p, the same on ignored targets.
    std::fill(p.weights.begin(), p.weights.end(), -per_token);
    weighted_gradient(model, p);
    const std::vector<float> weighted_path = grads_of(model);
    BOOST_REQUIRE_EQUAL(uniform_path.size(), weighted_path.size());
    std::int64_t differing = 0;
    for (std::size_t i = 0; i < uniform_path.size(); ++i) differing += uniform_path[i] != weighted_path[i];
    BOOST_CHECK_MESSAGE(differing == 0, loom::model::family_name(family) << ": " << differing
                                                                          << " gradient elements differ");
    BOOST_CHECK(std::any_of(uniform_path.begin(), uniform_path.end(), [](float x) { return x != 0.0f; }));
  }
}

BOOST_AUTO_TEST_CASE(wrong_weights_and_order_are_errors) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = tiny(Family::Llama);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(1);
  const Problem p;
  objective(model, p);
  const Tensor short_weights = Tensor::empty({kBatch * kSeq - 1}, DType::F32);
  BOOST_CHECK_THROW(model.lm_head_backward(short_weights, 0), std::invalid_argument);
  Tensor weights = Tensor::empty({kBatch * kSeq}, DType::F32);
  std::fill(weights.data<float>(), weights.data<float>() + weights.numel(), 0.5f);
  model.lm_head_backward(weights, 0);
  // The logits now hold their gradient: neither the losses nor a second backward are there.
  BOOST_CHECK_THROW(model.lm_token_losses(), std::logic_error);
  BOOST_CHECK_THROW(model.lm_head_backward(weights, 0), std::logic_error);
}
