// Unit tests of core/optim: learning-rate schedule values at known steps, global-norm
// clipping, and AdamW (decay groups, grad_scale, ZeRO-style ranges) against a scalar loop
// that spells out torch.optim.AdamW in double precision.
#define BOOST_TEST_MODULE optim
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <vector>

#include "core/backend.h"
#include "core/model/parameter_set.h"
#include "core/optim/adamw.h"
#include "core/optim/grad_clip.h"
#include "core/optim/lr_schedule.h"

namespace {

using loom::Tensor;
using loom::model::ParameterSet;
using loom::model::ParameterSpec;
using loom::optim::DecayKind;
using loom::optim::LrSchedule;

LrSchedule schedule(DecayKind decay) {
  LrSchedule s;
  s.max_lr = 1e-3f;
  s.min_lr = 1e-4f;
  s.warmup_steps = 10;
  s.total_steps = 100;
  s.decay = decay;
  s.validate();
  return s;
}

ParameterSpec spec(const std::string& name, loom::Shape shape, bool decay) {
  ParameterSpec s;
  s.name = name;
  s.global_shape = shape;
  s.shape = shape;
  s.decay = decay;
  return s;
}

// Three tensors whose sizes leave padding between them: decay, no decay, decay.
std::vector<ParameterSpec> small_specs() {
  return {spec("a.weight", {5, 7}, true), spec("a.bias", {5}, false), spec("b.weight", {3, 6}, true)};
}

void fill_random(ParameterSet& set, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& e : set.entries()) {
    float* v = set.value(e).data<float>();
    float* g = set.grad(e).data<float>();
    for (std::int64_t i = 0; i < e.numel; ++i) {
      v[i] = normal(rng);
      g[i] = normal(rng);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(cosine_schedule_at_known_steps) {
  const LrSchedule s = schedule(DecayKind::Cosine);
  BOOST_CHECK_CLOSE(s.at(0), 1e-4f, 1e-4);   // (0+1)/10 of max: warmup never starts at 0
  BOOST_CHECK_CLOSE(s.at(4), 5e-4f, 1e-4);
  BOOST_CHECK_CLOSE(s.at(9), 1e-3f, 1e-4);
  BOOST_CHECK_CLOSE(s.at(10), 1e-3f, 1e-4);  // decay starts at max
  BOOST_CHECK_CLOSE(s.at(55), 5.5e-4f, 1e-3);  // half way: cos(pi/2) = 0
  BOOST_CHECK_CLOSE(s.at(32), 1e-4f + 0.5f * (1.0f + std::cos(3.14159265f * 0.2444444f)) * 9e-4f, 1e-3);
  BOOST_CHECK_CLOSE(s.at(100), 1e-4f, 1e-3);
  BOOST_CHECK_CLOSE(s.at(1000), 1e-4f, 1e-4);
}

BOOST_AUTO_TEST_CASE(linear_and_constant_schedules) {
  const LrSchedule linear = schedule(DecayKind::Linear);
  BOOST_CHECK_CLOSE(linear.at(28), 1e-3f - 0.2f * 9e-4f, 1e-3);
  BOOST_CHECK_CLOSE(linear.at(55), 5.5e-4f, 1e-3);
  BOOST_CHECK_CLOSE(linear.at(101), 1e-4f, 1e-4);
  const LrSchedule constant = schedule(DecayKind::Constant);
  BOOST_CHECK_CLOSE(constant.at(4), 5e-4f, 1e-4);
  BOOST_CHECK_CLOSE(constant.at(500), 1e-3f, 1e-4);
  LrSchedule no_warmup = schedule(DecayKind::Cosine);
  no_warmup.warmup_steps = 0;
  BOOST_CHECK_CLOSE(no_warmup.at(0), 1e-3f, 1e-4);
}

BOOST_AUTO_TEST_CASE(schedule_rejects_bad_settings) {
  LrSchedule s = schedule(DecayKind::Cosine);
  s.min_lr = 2e-3f;
  BOOST_CHECK_THROW(s.validate(), std::invalid_argument);
  s = schedule(DecayKind::Cosine);
  s.warmup_steps = 101;
  BOOST_CHECK_THROW(s.validate(), std::invalid_argument);
  BOOST_CHECK(loom::optim::parse_decay_kind("linear") == DecayKind::Linear);
  BOOST_CHECK_THROW(loom::optim::parse_decay_kind("cosin"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(clip_scale_follows_pytorch) {
  BOOST_CHECK_CLOSE(loom::optim::clip_scale(10.0, 1.0f), 1.0 / (10.0 + 1e-6), 1e-4);
  BOOST_CHECK_EQUAL(loom::optim::clip_scale(0.5, 1.0f), 1.0f);
  BOOST_CHECK_EQUAL(loom::optim::clip_scale(50.0, 0.0f), 1.0f);  // clipping off
  BOOST_CHECK(std::isnan(loom::optim::clip_scale(NAN, 1.0f)));
}

BOOST_AUTO_TEST_CASE(clip_grad_norm_scales_the_flat_buffer) {
  auto backend = loom::make_cpu_backend();
  ParameterSet set(small_specs(), *backend);
  fill_random(set, 7);
  double expected_sq = 0.0;
  for (const auto& e : set.entries()) {
    const float* g = set.grad(e).data<float>();
    for (std::int64_t i = 0; i < e.numel; ++i) expected_sq += static_cast<double>(g[i]) * g[i];
  }
  const double expected_norm = std::sqrt(expected_sq);
  const float first = set.grad("a.weight").data<float>()[0];

  const loom::optim::ClipResult r = loom::optim::clip_grad_norm(*backend, set.grads(), 2.0f);
  BOOST_CHECK_CLOSE(r.norm, expected_norm, 1e-5);
  BOOST_CHECK_CLOSE(r.scale, 2.0 / (expected_norm + 1e-6), 1e-4);
  BOOST_CHECK_CLOSE(set.grad("a.weight").data<float>()[0], first * r.scale, 1e-4);
  BOOST_CHECK_CLOSE(loom::optim::grad_norm(*backend, set.grads()), 2.0, 1e-3);

  // Under the threshold nothing changes.
  const loom::optim::ClipResult again = loom::optim::clip_grad_norm(*backend, set.grads(), 10.0f);
  BOOST_CHECK_EQUAL(again.scale, 1.0f);
}

BOOST_AUTO_TEST_CASE(adamw_matches_a_scalar_loop) {
  auto backend = loom::make_cpu_backend();
  ParameterSet set(small_specs(), *backend);
  fill_random(set, 11);
  loom::optim::AdamWConfig config;
  config.beta1 = 0.8f;
  config.beta2 = 0.9f;
  config.eps = 1e-6f;
  config.weight_decay = 0.25f;
  loom::optim::AdamW adam(set, config, *backend);

  // The scalar reference, in double, over each entry's elements.
  struct Ref { double p, m = 0, v = 0; };
  std::vector<std::vector<Ref>> ref;
  for (const auto& e : set.entries()) {
    std::vector<Ref> r;
    for (std::int64_t i = 0; i < e.numel; ++i) r.push_back(Ref{set.value(e).data<float>()[i]});
    ref.push_back(r);
  }
  const float lrs[] = {0.1f, 0.05f, 0.02f};
  const float grad_scales[] = {1.0f, 0.5f, 2.0f};
  for (int step = 1; step <= 3; ++step) {
    const float lr = lrs[step - 1], gs = grad_scales[step - 1];
    adam.step(lr, gs);
    for (std::size_t k = 0; k < set.entries().size(); ++k) {
      const auto& e = set.entries()[k];
      const double wd = e.decay ? config.weight_decay : 0.0;
      const float* grad = set.grad(e).data<float>();
      for (std::int64_t i = 0; i < e.numel; ++i) {
        Ref& r = ref[k][static_cast<std::size_t>(i)];
        const double g = static_cast<double>(grad[i]) * gs;
        r.p *= 1.0 - lr * wd;
        r.m = config.beta1 * r.m + (1 - config.beta1) * g;
        r.v = config.beta2 * r.v + (1 - config.beta2) * g * g;
        const double m_hat = r.m / (1 - std::pow(config.beta1, step));
        const double v_hat = r.v / (1 - std::pow(config.beta2, step));
        r.p -= lr * m_hat / (std::sqrt(v_hat) + config.eps);
      }
    }
  }
  BOOST_CHECK_EQUAL(adam.steps_taken(), 3);
  double worst = 0.0;
  for (std::size_t k = 0; k < set.entries().size(); ++k) {
    const auto& e = set.entries()[k];
    const float* p = set.value(e).data<float>();
    for (std::int64_t i = 0; i < e.numel; ++i) {
      worst = std::max(worst, std::fabs(p[i] - ref[k][static_cast<std::size_t>(i)].p));
    }
  }
  BOOST_TEST_MESSAGE("adamw worst |loom - scalar loop| = " << worst);
  BOOST_CHECK_LT(worst, 2e-6);

  // The padding after a.weight (35 elements, padded to 48) stays zero.
  const float* flat = set.values().data<float>();
  for (std::int64_t i = 35; i < set.entry("a.bias").offset; ++i) BOOST_CHECK_EQUAL(flat[i], 0.0f);
}

BOOST_AUTO_TEST_CASE(adamw_ranges_compose_to_the_whole_buffer) {
  auto backend = loom::make_cpu_backend();
  ParameterSet whole(small_specs(), *backend);
  ParameterSet split(small_specs(), *backend);
  fill_random(whole, 3);
  fill_random(split, 3);
  loom::optim::AdamWConfig config;
  loom::optim::AdamW adam_whole(whole, config, *backend);
  // A cut inside a.weight: each "rank" updates its own range with its own moments.
  const std::int64_t cut = 20;
  loom::optim::AdamW first(split, config, *backend, 0, cut);
  loom::optim::AdamW second(split, config, *backend, cut, split.numel());
  BOOST_CHECK_EQUAL(second.exp_avg().numel(), split.numel() - cut);
  for (int step = 0; step < 2; ++step) {
    adam_whole.step(0.01f);
    first.step(0.01f);
    second.step(0.01f);
  }
  const float* a = whole.values().data<float>();
  const float* b = split.values().data<float>();
  for (std::int64_t i = 0; i < whole.numel(); ++i) BOOST_REQUIRE_EQUAL(a[i], b[i]);
  BOOST_CHECK_THROW(loom::optim::AdamW(split, config, *backend, 5, split.numel() + 1), std::invalid_argument);
}
