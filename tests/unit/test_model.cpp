// Unit tests of core/model that need no reference file: configuration (validation,
// parameter counts, FLOPs), the parameter layout (names, decay groups, tp slices),
// layout-independent init, pipeline-stage steps against the whole model, activation
// slots, gradient accumulation and buffer reuse. Numerical parity with PyTorch lives in
// tests/reference/test_model_parity.cpp.
#define BOOST_TEST_MODULE model
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/model/init.h"
#include "core/model/parameter_layout.h"
#include "core/model/transformer.h"
#include "core/optim/adamw.h"
#include "core/optim/grad_clip.h"

namespace {

using loom::DType;
using loom::Tensor;
using loom::model::Family;
using loom::model::HeadKind;
using loom::model::ModelConfig;
using loom::model::ParameterSet;
using loom::model::ShardSpec;
using loom::model::Transformer;

ModelConfig tiny(Family family) {
  ModelConfig c = family == Family::GPT2 ? ModelConfig::from_family(family, 64, 32, 2, 4, 4, 128, 16)
                                         : ModelConfig::from_family(family, 64, 32, 2, 4, 2, 48, 16);
  c.validate();
  return c;
}

Tensor tokens(std::int64_t batch, std::int64_t seq, int salt, std::int32_t vocab, bool ignore_some) {
  Tensor t = Tensor::empty({batch, seq}, DType::I32);
  std::int32_t* p = t.data<std::int32_t>();
  for (std::int64_t i = 0; i < batch * seq; ++i) p[i] = static_cast<std::int32_t>((i * 7 + salt * 13 + 3) % vocab);
  if (ignore_some) {
    p[0] = -100;
    p[batch * seq - 1] = -1;
  }
  return t;
}

std::vector<float> to_vector(const Tensor& t) {
  const float* p = t.data<float>();
  return std::vector<float>(p, p + t.numel());
}

double max_relative_difference(const Tensor& a, const Tensor& b) {
  double worst = 0.0;
  const float* x = a.data<float>();
  const float* y = b.data<float>();
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    worst = std::max(worst, std::fabs(x[i] - y[i]) / (std::fabs(y[i]) + 1e-6));
  }
  return worst;
}

}  // namespace

BOOST_AUTO_TEST_CASE(gpt2_124m_size_and_flops) {
  const ModelConfig c = ModelConfig::gpt2_124m();
  c.validate();
  BOOST_CHECK_EQUAL(c.parameter_count(), 124439808);
  // 6·(N − position table) + 12·L·C·T with the tied head counted once.
  const double expected = 6.0 * (124439808.0 - 1024.0 * 768.0) + 12.0 * 12 * 768 * 1024;
  BOOST_CHECK_CLOSE(c.training_flops_per_token(1024), expected, 1e-9);
  // A scalar head replaces nothing (the LM head is tied) and adds C + 1.
  BOOST_CHECK_EQUAL(c.parameter_count(HeadKind::Scalar), 124439808 + 768 + 1);
}

BOOST_AUTO_TEST_CASE(validate_names_the_field) {
  ModelConfig c = tiny(Family::Llama);
  c.n_heads = 5;
  try {
    c.validate();
    BOOST_FAIL("expected invalid_argument");
  } catch (const std::invalid_argument& e) {
    BOOST_CHECK(std::string(e.what()).find("d_model") != std::string::npos);
  }
  ModelConfig g = tiny(Family::GPT2);
  g.n_kv_heads = 2;
  BOOST_CHECK_THROW(g.validate(), std::invalid_argument);
  BOOST_CHECK_THROW(loom::model::parse_family("gpt3"), std::invalid_argument);
  ShardSpec bad{0, 2, 0, 3};  // 4 heads do not split 3 ways
  BOOST_CHECK_THROW(bad.resolved(tiny(Family::Llama)), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(parameter_names_groups_and_tp_shapes) {
  const ModelConfig c = tiny(Family::Llama);
  auto specs = loom::model::parameter_specs(c, ShardSpec::whole(c), HeadKind::LM);
  std::vector<std::string> names;
  for (const auto& s : specs) names.push_back(s.name);
  const std::vector<std::string> layer0 = {"layers.0.attn_norm.weight", "layers.0.attn.qkv.weight",
                                           "layers.0.attn.out.weight",  "layers.0.mlp_norm.weight",
                                           "layers.0.mlp.gate.weight",  "layers.0.mlp.up.weight",
                                           "layers.0.mlp.down.weight"};
  BOOST_CHECK_EQUAL(names.front(), "embed.tokens.weight");
  BOOST_CHECK_EQUAL_COLLECTIONS(names.begin() + 1, names.begin() + 8, layer0.begin(), layer0.end());
  BOOST_CHECK_EQUAL(names.back(), "lm_head.weight");
  for (const auto& s : specs) BOOST_CHECK_EQUAL(s.decay, s.global_shape.size() == 2);

  // tp = 2: heads, F and vocab halve; qkv keeps its q/k/v sections.
  auto half = loom::model::parameter_specs(c, ShardSpec{0, -1, 1, 2}, HeadKind::LM);
  for (const auto& s : half) {
    if (s.name == "layers.0.attn.qkv.weight") {
      BOOST_CHECK(s.shape == (loom::Shape{(2 + 1 + 1) * 8, 32}));
      // Local row 16 (first k row of rank 1) is global row 32 + 8 (k section, second half).
      BOOST_CHECK_EQUAL(loom::model::global_element_index(s, 16 * 32 + 5, 1, 2), (32 + 8) * 32 + 5);
    }
    if (s.name == "layers.0.attn.out.weight") BOOST_CHECK(s.shape == (loom::Shape{32, 16}));
    if (s.name == "layers.0.mlp.down.weight") BOOST_CHECK(s.shape == (loom::Shape{32, 24}));
    if (s.name == "lm_head.weight") BOOST_CHECK(s.shape == (loom::Shape{32, 32}));
  }
}

BOOST_AUTO_TEST_CASE(init_is_layout_independent) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = tiny(Family::Llama);
  Transformer whole(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  whole.init_weights(1234);
  // Every tp slice and the second pipeline stage hold exactly the whole model's values.
  for (int rank = 0; rank < 2; ++rank) {
    ParameterSet shard(loom::model::parameter_specs(c, ShardSpec{1, 2, rank, 2}, HeadKind::LM), *backend);
    loom::model::init_parameters(shard, 1234, rank, 2, *backend);
    BOOST_CHECK(!shard.contains("embed.tokens.weight"));
    for (const auto& e : shard.entries()) {
      const float* local = shard.value(e).data<float>();
      const float* global = whole.params().value(e.name).data<float>();
      for (std::int64_t i = 0; i < e.numel; ++i) {
        BOOST_REQUIRE_EQUAL(local[i], global[loom::model::global_element_index(e, i, rank, 2)]);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(init_statistics_and_determinism) {
  auto backend = loom::make_cpu_backend();
  ModelConfig c = ModelConfig::from_family(Family::GPT2, 512, 128, 8, 4, 4, 512, 64);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(7);
  auto stddev = [&](const std::string& name) {
    const std::vector<float> v = to_vector(model.params().value(name));
    double s = 0, s2 = 0;
    for (float x : v) {
      s += x;
      s2 += static_cast<double>(x) * x;
    }
    const double mean = s / v.size();
    return std::sqrt(s2 / v.size() - mean * mean);
  };
  BOOST_CHECK_CLOSE(stddev("embed.tokens.weight"), 0.02, 2.0);
  BOOST_CHECK_CLOSE(stddev("layers.3.mlp.up.weight"), 0.02, 2.0);
  BOOST_CHECK_CLOSE(stddev("layers.3.mlp.down.weight"), 0.02 / 4.0, 2.0);  // 1/sqrt(2·8)
  BOOST_CHECK_CLOSE(stddev("layers.5.attn.out.weight"), 0.02 / 4.0, 3.0);
  // Element values are the documented pure function of (seed, name, global index).
  for (std::int64_t i : {0, 5, 100}) {
    BOOST_CHECK_EQUAL(model.params().value("layers.3.mlp.up.weight").data<float>()[i],
                      0.02f * loom::model::init_normal_sample(7, "layers.3.mlp.up.weight", i));
  }
  BOOST_CHECK_EQUAL(model.params().value("layers.2.attn.qkv.bias").data<float>()[5], 0.0f);
  BOOST_CHECK_EQUAL(model.params().value("layers.2.mlp_norm.weight").data<float>()[5], 1.0f);

  const std::vector<float> first = to_vector(model.params().values());
  model.init_weights(7);
  BOOST_CHECK(first == to_vector(model.params().values()));
  model.init_weights(8);
  BOOST_CHECK(first != to_vector(model.params().values()));
}

BOOST_AUTO_TEST_CASE(pipeline_stages_match_the_whole_model) {
  for (Family family : {Family::GPT2, Family::Llama}) {
    auto backend = loom::make_cpu_backend();
    const ModelConfig c = tiny(family);
    Transformer whole(c, ShardSpec::whole(c), HeadKind::LM, *backend);
    Transformer first(c, ShardSpec{0, 1, 0, 1}, HeadKind::LM, *backend);
    Transformer last(c, ShardSpec{1, 2, 0, 1}, HeadKind::LM, *backend);
    for (Transformer* m : {&whole, &first, &last}) {
      m->init_weights(99);
      m->zero_grads();
    }
    const Tensor ids = tokens(2, 8, 1, 64, false);
    const Tensor targets = tokens(2, 8, 2, 64, true);

    const loom::model::LossSum expected = whole.forward_lm(ids, targets);
    whole.backward_lm(1.0f / static_cast<float>(expected.count));

    const Tensor& sent = first.blocks_forward(first.embed_forward(ids));
    Tensor& received = last.stage_input(2, 8);  // a pipeline receive writes here
    backend->copy(sent, received);
    const loom::model::LossSum loss = last.lm_head_forward(last.blocks_forward(received), targets);
    BOOST_CHECK_EQUAL(loss.count, 14);
    BOOST_CHECK_CLOSE(loss.sum, expected.sum, 1e-5);
    const Tensor& grad_sent = last.blocks_backward(last.lm_head_backward(1.0f / static_cast<float>(loss.count)));
    first.embed_backward(first.blocks_backward(grad_sent));

    for (Transformer* stage : {&first, &last}) {
      for (const auto& e : stage->params().entries()) {
        if (family == Family::GPT2 && e.name == "embed.tokens.weight") continue;  // tied: split over stages
        BOOST_CHECK_MESSAGE(max_relative_difference(stage->params().grad(e), whole.params().grad(e.name)) < 1e-4,
                            loom::model::family_name(family) << " " << e.name);
      }
    }
    if (family == Family::GPT2) {
      // The tied table's gradient is the sum of the first stage's (embedding) and the last
      // stage's replica (head) — what the pipeline's tied-weight all-reduce computes.
      Tensor sum = first.params().grad("embed.tokens.weight").clone();
      backend->add_inplace(sum, last.params().grad("embed.tokens.weight"));
      BOOST_CHECK_LT(max_relative_difference(sum, whole.params().grad("embed.tokens.weight")), 1e-4);
    }
  }
}

BOOST_AUTO_TEST_CASE(slots_keep_micro_batches_apart) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = tiny(Family::Llama);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(5);
  const Tensor ids0 = tokens(2, 8, 0, 64, false), t0 = tokens(2, 8, 1, 64, true);
  const Tensor ids1 = tokens(2, 8, 5, 64, false), t1 = tokens(2, 8, 6, 64, false);

  // Reference: the micro-batches one after the other; gradients accumulate.
  model.zero_grads();
  const double loss0 = model.forward_lm(ids0, t0).sum;
  model.backward_lm(1.0f);
  const double loss1 = model.forward_lm(ids1, t1).sum;
  model.backward_lm(1.0f);
  const Tensor expected = model.params().grads().clone();

  // Both forwards in flight (slots 0 and 1), then the backwards in reverse order.
  model.zero_grads();
  const Tensor& h0 = model.blocks_forward(model.embed_forward(ids0, 0), 0);
  const Tensor& h1 = model.blocks_forward(model.embed_forward(ids1, 1), 1);
  BOOST_CHECK_CLOSE(model.lm_head_forward(h1, t1, 1).sum, loss1, 1e-5);
  BOOST_CHECK_THROW(model.lm_head_backward(1.0f, 0), std::logic_error);  // logits hold slot 1
  model.embed_backward(model.blocks_backward(model.lm_head_backward(1.0f, 1), 1), 1);
  BOOST_CHECK_CLOSE(model.lm_head_forward(h0, t0, 0).sum, loss0, 1e-5);
  model.embed_backward(model.blocks_backward(model.lm_head_backward(1.0f, 0), 0), 0);
  BOOST_CHECK_LT(max_relative_difference(model.params().grads(), expected), 1e-4);
}

BOOST_AUTO_TEST_CASE(gradients_accumulate_and_buffers_are_reused) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = tiny(Family::GPT2);
  Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
  model.init_weights(3);
  const Tensor ids = tokens(2, 8, 0, 64, false), targets = tokens(2, 8, 1, 64, true);
  model.zero_grads();
  model.forward_lm(ids, targets);
  model.backward_lm(0.5f);
  const std::vector<float> once = to_vector(model.params().grads());
  const void* hidden = model.embed_forward(ids).raw();
  model.forward_lm(ids, targets);
  model.backward_lm(0.5f);
  const std::vector<float> twice = to_vector(model.params().grads());
  for (std::size_t i = 0; i < once.size(); ++i) BOOST_REQUIRE_CLOSE(twice[i], 2.0f * once[i], 1e-3);

  // A smaller batch and back: the arena is re-carved, never reallocated.
  model.forward_lm(tokens(1, 4, 0, 64, false), tokens(1, 4, 1, 64, false));
  model.forward_lm(ids, targets);
  BOOST_CHECK_EQUAL(model.embed_forward(ids).raw(), hidden);
}

BOOST_AUTO_TEST_CASE(scalar_head_and_misuse_errors) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = tiny(Family::Llama);
  Transformer model(c, ShardSpec::whole(c), HeadKind::Scalar, *backend);
  model.init_weights(4);
  BOOST_CHECK(model.params().contains("score_head.weight"));
  BOOST_CHECK(!model.params().contains("lm_head.weight"));
  const Tensor& values = model.forward_scalar(tokens(3, 5, 0, 64, false));
  BOOST_CHECK(values.shape() == (loom::Shape{3, 5}));
  BOOST_CHECK(backend->all_finite(values));
  BOOST_CHECK_THROW(model.forward_lm(tokens(3, 5, 0, 64, false), tokens(3, 5, 1, 64, false)), std::logic_error);
  BOOST_CHECK_THROW(model.forward_scalar(tokens(1, 17, 0, 64, false)), std::invalid_argument);  // > max_seq_len

  Transformer sharded(c, ShardSpec{0, -1, 0, 2}, HeadKind::LM, *backend);
  sharded.init_weights(4);
  BOOST_CHECK_THROW(sharded.forward_lm(tokens(1, 4, 0, 64, false), tokens(1, 4, 1, 64, false)), std::logic_error);
}

// The backward overwrites its scratch gradients (dx GEMMs with beta = 0) instead of clearing
// them first: what a previous micro-batch left there must not leak into the next one. A
// model that already ran another batch must give the same bits as a fresh one. Sequence 70
// also crosses the attention kernel's 64-row query blocks.
BOOST_AUTO_TEST_CASE(backward_does_not_read_stale_scratch) {
  auto backend = loom::make_cpu_backend();
  for (Family family : {Family::GPT2, Family::Llama}) {
    const ModelConfig c = ModelConfig::from_family(family, 96, 64, 2, 4, family == Family::GPT2 ? 4 : 2, 128, 80);
    Transformer used(c, ShardSpec::whole(c), HeadKind::LM, *backend);
    Transformer fresh(c, ShardSpec::whole(c), HeadKind::LM, *backend);
    used.init_weights(11);
    fresh.init_weights(11);
    used.zero_grads();
    used.forward_lm(tokens(2, 70, 5, 96, false), tokens(2, 70, 6, 96, false));
    used.backward_lm(0.25f);

    const Tensor ids = tokens(2, 70, 1, 96, false), targets = tokens(2, 70, 2, 96, true);
    for (Transformer* m : {&used, &fresh}) {
      m->zero_grads();
      m->forward_lm(ids, targets);
      m->backward_lm(0.5f);
    }
    BOOST_CHECK_MESSAGE(to_vector(used.params().grads()) == to_vector(fresh.params().grads()),
                        "gradients depend on the previous batch (" << loom::model::family_name(family) << ")");
  }
}

// Training steps (forward, backward, clip, AdamW) are bit-identical run to run for a fixed
// thread count: two models stepped alike end with the same bits.
BOOST_AUTO_TEST_CASE(training_steps_are_bit_identical) {
  auto backend = loom::make_cpu_backend();
  const ModelConfig c = ModelConfig::from_family(Family::GPT2, 96, 64, 2, 4, 4, 256, 80);
  std::vector<std::vector<float>> finals;
  std::vector<double> losses;
  for (int run = 0; run < 2; ++run) {
    Transformer model(c, ShardSpec::whole(c), HeadKind::LM, *backend);
    model.init_weights(5);
    loom::optim::AdamW optimizer(model.params(), loom::optim::AdamWConfig{}, *backend);
    for (int step = 0; step < 3; ++step) {
      model.zero_grads();
      const auto loss = model.forward_lm(tokens(2, 70, step, 96, false), tokens(2, 70, step + 1, 96, true));
      model.backward_lm(1.0f / static_cast<float>(loss.count));
      const double norm = loom::optim::grad_norm(*backend, model.params().grads());
      optimizer.step(1e-3f, loom::optim::clip_scale(norm, 1.0f));
      losses.push_back(loss.mean());
    }
    finals.push_back(to_vector(model.params().values()));
  }
  BOOST_CHECK(finals[0] == finals[1]);
  for (int step = 0; step < 3; ++step) BOOST_CHECK_EQUAL(losses[step], losses[step + 3]);
  BOOST_CHECK_LT(losses[2], losses[0]);  // and the steps do train
}
