// Unit tests of LoRA (core/model/lora_config.h, layers.h LoraAdapter, lora.h): the settings'
// checks, the adapters' place in the parameter layout under tensor parallelism, one adapted
// linear's forward and backward (dropout included) against plain loops, the whole model's
// adapter gradients against finite differences with the base frozen, a fresh adapter
// (B = 0) leaving the model unchanged, and the merged model equal to the adapter model.
#define BOOST_TEST_MODULE lora
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/mix64.h"
#include "core/model/layers.h"
#include "core/model/lora.h"
#include "core/model/parameter_layout.h"
#include "core/model/transformer.h"

namespace {

using loom::DType;
using loom::Tensor;
using loom::model::Family;
using loom::model::HeadKind;
using loom::model::LoraAdapter;
using loom::model::LoraConfig;
using loom::model::LoraDropout;
using loom::model::LoraTarget;
using loom::model::ModelConfig;
using loom::model::ParameterEntry;
using loom::model::ParameterSet;
using loom::model::ShardSpec;
using loom::model::TpSplit;
using loom::model::Transformer;

ModelConfig tiny(Family family) {
  return family == Family::GPT2 ? ModelConfig::from_family(family, 64, 32, 2, 4, 4, 128, 16)
                                : ModelConfig::from_family(family, 64, 32, 2, 4, 2, 48, 16);
}

LoraConfig lora_all(const ModelConfig& config, float dropout) {
  LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8.0f;
  lora.dropout = dropout;
  lora.targets = {"attn.qkv", "attn.out", "mlp.up", "mlp.down"};
  if (config.family == Family::Llama) lora.targets.push_back("mlp.gate");
  return lora;
}

// Deterministic values in [-scale, scale).
void fill_random(Tensor t, std::uint64_t seed, float scale) {
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const double u = static_cast<double>(loom::mix64(seed * 1000003u + static_cast<std::uint64_t>(i)) >> 11) /
                     9007199254740992.0;
    p[i] = static_cast<float>((2.0 * u - 1.0) * scale);
  }
}

Tensor tokens(std::int64_t batch, std::int64_t seq, int salt, std::int32_t vocab) {
  Tensor t = Tensor::empty({batch, seq}, DType::I32);
  std::int32_t* p = t.data<std::int32_t>();
  for (std::int64_t i = 0; i < batch * seq; ++i) p[i] = static_cast<std::int32_t>((i * 7 + salt * 13 + 3) % vocab);
  return t;
}

// B of every adapter made non-zero, so the adapters change the model.
void randomise_adapters(Transformer& model, std::uint64_t seed) {
  for (const ParameterEntry& e : model.params().entries()) {
    if (loom::model::is_lora_parameter(e.name)) fill_random(model.params().value(e), seed++, 0.2f);
  }
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  BOOST_REQUIRE_EQUAL(a.numel(), b.numel());
  double worst = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
  }
  return worst;
}

// The keep bit Backend::dropout_forward documents, written out.
bool kept(std::uint64_t key, std::int64_t token, std::int64_t features, std::int64_t feature, float p) {
  const std::uint64_t bits = loom::mix64(key + static_cast<std::uint64_t>(token * features + feature)) >> 11;
  return static_cast<double>(bits) / 9007199254740992.0 >= static_cast<double>(p);
}

}  // namespace

BOOST_AUTO_TEST_CASE(settings_are_checked_with_the_valid_choices_named) {
  LoraConfig lora;
  lora.rank = 8;
  lora.targets = {"attn.qkv", "mlp.fc"};
  try {
    lora.validate();
    BOOST_FAIL("an unknown target was accepted");
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    BOOST_TEST(message.find("mlp.fc") != std::string::npos);
    BOOST_TEST(message.find("attn.qkv, attn.out, mlp.gate, mlp.up, mlp.down") != std::string::npos);
  }
  lora.targets = {"attn.out", "attn.out"};
  BOOST_CHECK_THROW(lora.validate(), std::invalid_argument);
  lora.targets = {"attn.out"};
  lora.dropout = 1.0f;
  BOOST_CHECK_THROW(lora.validate(), std::invalid_argument);
  lora.dropout = 0.1f;
  lora.rank = -1;
  BOOST_CHECK_THROW(lora.validate(), std::invalid_argument);
  lora.rank = 0;
  BOOST_TEST(!lora.has(LoraTarget::Out));  // rank 0: off whatever the targets say
  LoraConfig gate;
  gate.rank = 2;
  gate.targets = {"mlp.gate"};
  BOOST_CHECK_THROW(loom::model::parameter_specs(tiny(Family::GPT2), ShardSpec{}, HeadKind::LM, gate),
                    std::invalid_argument);
  BOOST_CHECK_NO_THROW(loom::model::parameter_specs(tiny(Family::Llama), ShardSpec{}, HeadKind::LM, gate));
}

BOOST_AUTO_TEST_CASE(adapters_follow_the_base_parameters_with_the_right_tp_splits) {
  // Llama with 2 kv heads: under tp = 4 each kv head is replicated on two ranks, and B of
  // attn.qkv inherits those replicated sections.
  const ModelConfig config = tiny(Family::Llama);
  const LoraConfig lora = lora_all(config, 0.0f);
  for (int tp : {1, 2, 4}) {
    for (int rank = 0; rank < tp; ++rank) {
      const auto specs = loom::model::parameter_specs(config, ShardSpec{0, -1, rank, tp}, HeadKind::LM, lora);
      const auto plain = loom::model::parameter_specs(config, ShardSpec{0, -1, rank, tp}, HeadKind::LM);
      BOOST_REQUIRE_EQUAL(specs.size(), plain.size() + 2 * 5 * 2);  // 2 layers x 5 targets x (A, B)
      for (std::size_t i = 0; i < plain.size(); ++i) BOOST_TEST(specs[i].name == plain[i].name);
      for (std::size_t i = plain.size(); i < specs.size(); ++i) {
        const auto& s = specs[i];
        BOOST_TEST_CONTEXT(s.name << " tp " << tp) {
          BOOST_TEST(loom::model::is_lora_parameter(s.name));
          BOOST_TEST(s.decay);
          const bool column = s.name.find("attn.qkv") != std::string::npos ||
                              s.name.find("mlp.gate") != std::string::npos || s.name.find("mlp.up") != std::string::npos;
          const bool is_a = s.name.ends_with(".lora_a");
          BOOST_TEST(s.global_shape[is_a ? 0 : 1] == 4);
          if (is_a) {
            BOOST_TEST((s.split == (column ? TpSplit::None : TpSplit::Cols)));
            BOOST_TEST((s.init == loom::model::InitKind::Normal));
          } else {
            BOOST_TEST((s.split == (column ? TpSplit::Rows : TpSplit::None)));
            BOOST_TEST((s.init == loom::model::InitKind::Zeros));
          }
        }
      }
    }
    // Every element of every adapter is saved by exactly one tp rank, whatever the layout.
    const auto whole = loom::model::parameter_specs(config, ShardSpec{}, HeadKind::LM, lora);
    for (std::size_t i = 0; i < whole.size(); ++i) {
      if (!loom::model::is_lora_parameter(whole[i].name)) continue;
      std::int64_t saved = 0;
      for (int rank = 0; rank < tp; ++rank) {
        const auto spec = loom::model::parameter_specs(config, ShardSpec{0, -1, rank, tp}, HeadKind::LM, lora)[i];
        for (const auto& box : loom::model::slice_boxes(spec, rank, tp, 0, loom::shape_numel(spec.shape))) {
          if (box.tp_owner) saved += box.numel();
        }
      }
      BOOST_TEST(saved == loom::shape_numel(whole[i].global_shape), whole[i].name << " under tp " << tp);
    }
  }
  auto backend = loom::make_cpu_backend();
  Transformer model(config, ShardSpec::whole(config), HeadKind::LM, *backend, lora);
  const auto range = model.trainable_range();
  BOOST_TEST(range.end == model.params().numel());
  for (const ParameterEntry& e : model.params().entries()) {
    const bool inside = e.offset >= range.begin;
    BOOST_TEST(inside == loom::model::is_lora_parameter(e.name), e.name);
  }
}

// One adapted linear against loops: y += s·B·(A·drop(x)), then dA, dB and dx.
BOOST_AUTO_TEST_CASE(adapter_forward_and_backward_match_plain_loops) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig config = tiny(Family::GPT2);
  for (const float p : {0.0f, 0.3f}) {
    const LoraConfig lora = lora_all(config, p);
    ParameterSet params(loom::model::parameter_specs(config, ShardSpec::whole(config), HeadKind::LM, lora), *backend);
    LoraAdapter adapter = LoraAdapter::bind(params, "layers.1.mlp.down", LoraTarget::Down, 1, lora.scale());
    BOOST_REQUIRE(adapter.defined());
    const std::int64_t N = 6, in = 128, out = 32, r = 4;
    fill_random(adapter.a, 1, 0.5f);
    fill_random(adapter.b, 2, 0.5f);
    Tensor x = Tensor::empty({N, in}, DType::F32), y = Tensor::empty({N, out}, DType::F32);
    Tensor u = Tensor::empty({N, r}, DType::F32), xd = Tensor::empty({N, in}, DType::F32);
    fill_random(x, 3, 1.0f);
    fill_random(y, 4, 1.0f);
    std::vector<float> y0(y.data<float>(), y.data<float>() + y.numel());
    LoraDropout dropout{p, 0x1234u, 100};
    adapter.forward(*backend, x, y, u, xd, dropout);

    const float* A = adapter.a.data<float>();
    const float* B = adapter.b.data<float>();
    const float* X = x.data<float>();
    const std::uint64_t key = loom::mix64(dropout.key ^ adapter.salt);
    std::vector<double> dropped(static_cast<std::size_t>(N * in));
    std::int64_t zeros = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t j = 0; j < in; ++j) {
        const bool keep = p == 0.0f || kept(key, dropout.token0 + n, in, j, p);
        zeros += keep ? 0 : 1;
        dropped[static_cast<std::size_t>(n * in + j)] = keep ? X[n * in + j] / (1.0 - p) : 0.0;
      }
    }
    if (p > 0) BOOST_TEST(std::fabs(static_cast<double>(zeros) / (N * in) - p) < 0.08);
    std::vector<double> ref_u(static_cast<std::size_t>(N * r), 0.0);
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t k = 0; k < r; ++k) {
        for (std::int64_t j = 0; j < in; ++j) ref_u[n * r + k] += A[k * in + j] * dropped[n * in + j];
      }
    }
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t o = 0; o < out; ++o) {
        double v = y0[n * out + o];
        for (std::int64_t k = 0; k < r; ++k) v += lora.scale() * B[o * r + k] * ref_u[n * r + k];
        BOOST_TEST(std::fabs(y.data<float>()[n * out + o] - v) < 1e-4, "y[" << n << ", " << o << "] p " << p);
      }
    }

    Tensor dy = Tensor::empty({N, out}, DType::F32), dx = Tensor::empty({N, in}, DType::F32);
    Tensor du = Tensor::empty({N, r}, DType::F32), scratch = Tensor::empty({N, in}, DType::F32);
    fill_random(dy, 5, 1.0f);
    backend->fill(dx, 0.0f);
    backend->fill(adapter.da, 0.0f);
    backend->fill(adapter.db, 0.0f);
    adapter.backward(*backend, dy, x, u, xd, dx, du, scratch, dropout);
    const float* DY = dy.data<float>();
    std::vector<double> ref_du(static_cast<std::size_t>(N * r), 0.0);
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t k = 0; k < r; ++k) {
        for (std::int64_t o = 0; o < out; ++o) ref_du[n * r + k] += lora.scale() * DY[n * out + o] * B[o * r + k];
      }
    }
    for (std::int64_t o = 0; o < out; ++o) {
      for (std::int64_t k = 0; k < r; ++k) {
        double v = 0;
        for (std::int64_t n = 0; n < N; ++n) v += lora.scale() * DY[n * out + o] * ref_u[n * r + k];
        BOOST_TEST(std::fabs(adapter.db.data<float>()[o * r + k] - v) < 1e-4, "dB p " << p);
      }
    }
    for (std::int64_t k = 0; k < r; ++k) {
      for (std::int64_t j = 0; j < in; ++j) {
        double v = 0;
        for (std::int64_t n = 0; n < N; ++n) v += ref_du[n * r + k] * dropped[n * in + j];
        BOOST_TEST(std::fabs(adapter.da.data<float>()[k * in + j] - v) < 1e-4, "dA p " << p);
      }
    }
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t j = 0; j < in; ++j) {
        double v = 0;
        for (std::int64_t k = 0; k < r; ++k) v += ref_du[n * r + k] * A[k * in + j];
        const bool keep = p == 0.0f || kept(key, dropout.token0 + n, in, j, p);
        v = keep ? v / (1.0 - p) : 0.0;
        BOOST_TEST(std::fabs(dx.data<float>()[n * in + j] - v) < 1e-4, "dx p " << p);
      }
    }
  }
}

// The whole model: adapter gradients against central differences of the loss (dropout on, a
// fixed step so every evaluation draws the same mask); base gradients stay exactly zero.
BOOST_AUTO_TEST_CASE(model_adapter_gradients_match_finite_differences_and_the_base_is_frozen) {
  auto backend = loom::make_cpu_backend();
  for (const Family family : {Family::GPT2, Family::Llama}) {
    BOOST_TEST_CONTEXT(loom::model::family_name(family)) {
      const ModelConfig config = tiny(family);
      Transformer model(config, ShardSpec::whole(config), HeadKind::LM, *backend, lora_all(config, 0.2f));
      model.init_weights(7);
      randomise_adapters(model, 50);
      const Tensor ids = tokens(2, 8, 1, 64), targets = tokens(2, 8, 2, 64);
      const Transformer::LoraDropoutStep step{true, 7, 3, 0};
      auto loss = [&]() {
        model.set_lora_dropout(step);
        return model.forward_lm(ids, targets).mean();
      };
      const double base_loss = loss();
      BOOST_TEST(loss() == base_loss);  // the same step draws the same mask
      model.set_lora_dropout({true, 7, 4, 0});
      BOOST_TEST(model.forward_lm(ids, targets).mean() != base_loss);  // another step, another mask
      model.set_lora_dropout({});
      BOOST_TEST(model.forward_lm(ids, targets).mean() != base_loss);  // evaluation: no dropout

      backend->fill(model.params().grads(), 0.0f);
      model.set_lora_dropout(step);
      const loom::model::LossSum sum = model.forward_lm(ids, targets);
      model.backward_lm(1.0f / static_cast<float>(sum.count));
      const auto range = model.trainable_range();
      const float* g = model.params().grads().data<float>();
      bool base_zero = true;
      for (std::int64_t i = 0; i < range.begin; ++i) base_zero = base_zero && g[i] == 0.0f;
      BOOST_TEST(base_zero);

      int checked = 0;
      for (const ParameterEntry& e : model.params().entries()) {
        if (!loom::model::is_lora_parameter(e.name)) continue;
        // The largest-gradient element of each adapter: well above the differencing noise.
        Tensor grad = model.params().grad(e);
        std::int64_t at = 0;
        for (std::int64_t i = 0; i < e.numel; ++i) {
          if (std::fabs(grad.data<float>()[i]) > std::fabs(grad.data<float>()[at])) at = i;
        }
        float* w = model.params().value(e).data<float>() + at;
        const float saved = *w;
        const float h = 1e-2f;
        *w = saved + h;
        const double up = loss();
        *w = saved - h;
        const double down = loss();
        *w = saved;
        const double numeric = (up - down) / (2.0 * h);
        const double analytic = grad.data<float>()[at];
        BOOST_TEST(std::fabs(numeric - analytic) < 2e-3 + 3e-2 * std::fabs(analytic),
                   e.name << "[" << at << "]: analytic " << analytic << " numeric " << numeric);
        ++checked;
      }
      BOOST_TEST(checked == (family == Family::GPT2 ? 16 : 20));
    }
  }
}

BOOST_AUTO_TEST_CASE(fresh_adapters_leave_the_model_unchanged_and_merging_keeps_the_logits) {
  auto backend = loom::make_cpu_backend();
  for (const Family family : {Family::GPT2, Family::Llama}) {
    BOOST_TEST_CONTEXT(loom::model::family_name(family)) {
      const ModelConfig config = tiny(family);
      const Tensor ids = tokens(2, 8, 3, 64), targets = tokens(2, 8, 4, 64);
      Transformer base(config, ShardSpec::whole(config), HeadKind::LM, *backend);
      base.init_weights(11);
      base.forward_lm(ids, targets);
      Transformer adapted(config, ShardSpec::whole(config), HeadKind::LM, *backend, lora_all(config, 0.1f));
      adapted.init_weights(11);  // B = 0
      adapted.forward_lm(ids, targets);
      BOOST_TEST(max_abs_difference(base.lm_logits(), adapted.lm_logits()) == 0.0);

      randomise_adapters(adapted, 90);
      adapted.forward_lm(ids, targets);
      BOOST_TEST(max_abs_difference(base.lm_logits(), adapted.lm_logits()) > 1e-3);  // the adapters matter
      const std::unique_ptr<Transformer> merged = loom::model::merge_lora(adapted, *backend);
      BOOST_TEST(merged->params().entries().size() == base.params().entries().size());
      BOOST_TEST(!merged->lora().enabled());
      merged->forward_lm(ids, targets);
      BOOST_TEST(max_abs_difference(merged->lm_logits(), adapted.lm_logits()) < 1e-5);
    }
  }
}
