// Unit tests of core/align (area: losses): hand-computed values, finite-difference checks of
// every gradient, and the error messages for bad arguments. PyTorch parity is in
// tests/reference/test_align_reference.py.
#define BOOST_TEST_MODULE align
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "core/align/losses.h"
#include "core/align/rl.h"
#include "tests/unit/error_of.h"

using namespace loom::align;

namespace {

std::vector<float> random_vector(std::size_t n, std::uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = shift + scale * dist(rng);
  return v;
}

// Central differences of loss(x) w.r.t. each x[i], against the analytic gradient. The step
// actually taken in f32 is used as the denominator.
void check_gradient(std::vector<float>& x, const std::vector<float>& analytic, const std::function<double()>& loss,
                    float step = 1e-2f, double tol = 2e-4) {
  BOOST_REQUIRE_EQUAL(x.size(), analytic.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + step;
    const float up = x[i];
    const double loss_up = loss();
    x[i] = saved - step;
    const float down = x[i];
    const double loss_down = loss();
    x[i] = saved;
    const double numeric = (loss_up - loss_down) / (static_cast<double>(up) - static_cast<double>(down));
    BOOST_TEST(std::fabs(numeric - analytic[i]) <= tol * (1.0 + std::fabs(numeric)),
               "element " << i << ": numeric " << numeric << " analytic " << analytic[i]);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(rm_loss_equal_rewards_is_log2) {
  std::vector<float> c{0.5f, -1.0f}, r{0.5f, -1.0f}, dc(2), dr(2);
  const RmStats s = rm_loss(c, r, 0.0f, dc, dr);
  BOOST_TEST(s.loss == std::log(2.0), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(s.accuracy == 0.0);
  BOOST_TEST(s.mean_margin == 0.0);
  BOOST_TEST(dc[0] == -0.25f);
  BOOST_TEST(dr[1] == 0.25f);
}

BOOST_AUTO_TEST_CASE(rm_loss_large_margin_stays_finite_and_gradient_matches) {
  std::vector<float> c{60.0f, -60.0f}, r{0.0f, 0.0f}, dc(2), dr(2);
  const RmStats s = rm_loss(c, r, 0.0f, dc, dr);
  BOOST_TEST(s.loss == 0.5 * (60.0 + std::log1p(std::exp(-60.0))), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(s.accuracy == 0.5);
  BOOST_TEST(dc[1] == -0.5f);

  c = random_vector(5, 1);
  r = random_vector(5, 2);
  dc.assign(5, 0);
  dr.assign(5, 0);
  rm_loss(c, r, 0.3f, dc, dr);
  std::vector<float> sc(5), sr(5);
  check_gradient(c, dc, [&] { return rm_loss(c, r, 0.3f, sc, sr).loss; });
  check_gradient(r, dr, [&] { return rm_loss(c, r, 0.3f, sc, sr).loss; });
}

BOOST_AUTO_TEST_CASE(preference_losses_at_reference_policy) {
  // Policy == reference: h = 0, rewards 0, sigmoid loss log 2, IPO loss 1/(4β²).
  std::vector<float> pc{-10.0f, -20.0f}, pr{-12.0f, -8.0f}, gc(2), gr(2);
  const PreferenceInputs in{pc, pr, pc, pr, {}, {}};
  const double beta = 0.1;
  PreferenceStats s = preference_loss(PreferenceLoss::sigmoid, beta, {}, in, {gc, gr});
  BOOST_TEST(s.loss == std::log(2.0), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(s.reward_margin == 0.0);
  BOOST_TEST(s.accuracy == 0.0);
  BOOST_TEST(gc[0] == static_cast<float>(-beta * 0.5 / 2), boost::test_tools::tolerance(1e-7f));
  s = preference_loss(PreferenceLoss::ipo, beta, {}, in, {gc, gr});
  BOOST_TEST(s.loss == 25.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(gc[1] == -5.0f, boost::test_tools::tolerance(1e-6f));  // 2·(0 - 5)/2
  BOOST_TEST(gr[1] == 5.0f, boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(preference_gradients_match_finite_differences) {
  const std::size_t b = 4;
  std::vector<float> pc = random_vector(b, 3, 5.0f, -40.0f), pr = random_vector(b, 4, 5.0f, -40.0f);
  const std::vector<float> rc = random_vector(b, 5, 5.0f, -40.0f), rr = random_vector(b, 6, 5.0f, -40.0f);
  const std::vector<int> lc{7, 12, 30, 1}, lr{9, 3, 25, 14};
  PreferenceParams params;
  params.label_smoothing = 0.1;
  params.simpo_gamma = 0.5;
  for (PreferenceLoss kind : {PreferenceLoss::sigmoid, PreferenceLoss::ipo, PreferenceLoss::cdpo, PreferenceLoss::simpo}) {
    BOOST_TEST_CONTEXT(preference_loss_name(kind)) {
      const double beta = kind == PreferenceLoss::simpo ? 2.0 : 0.1;
      std::vector<float> gc(b), gr(b), sc(b), sr(b);
      auto loss = [&] {
        return preference_loss(kind, beta, params, {pc, pr, rc, rr, lc, lr}, {sc, sr}).loss;
      };
      preference_loss(kind, beta, params, {pc, pr, rc, rr, lc, lr}, {gc, gr});
      check_gradient(pc, gc, loss);
      check_gradient(pr, gr, loss);
    }
  }
}

BOOST_AUTO_TEST_CASE(preference_loss_errors_name_the_argument) {
  std::vector<float> a{1.0f, 2.0f}, b3{1.0f, 2.0f, 3.0f}, g(2), g2(2);
  const PreferenceInputs in{a, a, a, a, {}, {}};
  BOOST_TEST(error_of([&] { preference_loss(PreferenceLoss::sigmoid, 0.0, {}, in, {g, g2}); }).find("beta") !=
             std::string::npos);
  BOOST_TEST(error_of([&] { preference_loss(PreferenceLoss::sigmoid, 0.1, {}, {a, b3, a, a, {}, {}}, {g, g2}); })
                 .find("policy_rejected has 3 elements, expected 2") != std::string::npos);
  BOOST_TEST(error_of([&] { preference_loss(PreferenceLoss::simpo, 0.1, {}, in, {g, g2}); }).find("length_chosen") !=
             std::string::npos);
  PreferenceParams bad;
  bad.label_smoothing = 0.7;
  BOOST_TEST(error_of([&] { preference_loss(PreferenceLoss::cdpo, 0.1, bad, in, {g, g2}); }).find("label_smoothing") !=
             std::string::npos);
  BOOST_TEST(error_of([] { parse_preference_loss("kto"); }).find("sigmoid, ipo, cdpo, simpo") != std::string::npos);
  BOOST_TEST((parse_preference_loss("cdpo") == PreferenceLoss::cdpo));
}

BOOST_AUTO_TEST_CASE(gae_hand_computed_with_masked_prompt_and_padding) {
  // One row, T = 5: prompt at 0, generated tokens 1..3, padding at 4; bootstrap column 0.5.
  const std::vector<float> rewards{9.0f, 0.0f, 0.0f, 1.0f, 9.0f};
  const std::vector<float> values{9.0f, 0.2f, 0.4f, 0.6f, 9.0f, 0.5f};
  const std::vector<std::uint8_t> mask{0, 1, 1, 1, 0};
  std::vector<float> adv(5), ret(5);
  const double g = 0.9, l = 0.8;
  gae(rewards, values, mask, 5, g, l, adv, ret);
  const double d3 = 1.0 + g * 0.5 - 0.6, d2 = 0.0 + g * 0.6 - 0.4, d1 = 0.0 + g * 0.4 - 0.2;
  const double a3 = d3, a2 = d2 + g * l * a3, a1 = d1 + g * l * a2;
  BOOST_TEST(adv[3] == a3, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(adv[2] == a2, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(adv[1] == a1, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(ret[1] == a1 + 0.2, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(adv[0] == 0.0f);
  BOOST_TEST(ret[4] == 0.0f);
  // Without the bootstrap column the row is terminal.
  const std::vector<float> values_t{9.0f, 0.2f, 0.4f, 0.6f, 9.0f};
  gae(rewards, values_t, mask, 5, g, l, adv, ret);
  BOOST_TEST(adv[3] == 1.0 - 0.6, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(error_of([&] { gae(rewards, values, mask, 4, g, l, adv, ret); }).find("seq_len 4") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(whiten_gives_zero_mean_unit_unbiased_variance) {
  std::vector<float> a = random_vector(12, 7, 3.0f, 2.0f);
  std::vector<std::uint8_t> mask(12, 1);
  mask[0] = mask[11] = 0;
  whiten(a, mask, 0.0);
  double sum = 0, squares = 0;
  for (std::size_t i = 1; i < 11; ++i) sum += a[i];
  for (std::size_t i = 1; i < 11; ++i) squares += (a[i] - sum / 10) * (a[i] - sum / 10);
  BOOST_TEST(sum / 10 == 0.0, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(std::fabs(squares / 9 - 1.0) < 1e-5);
  BOOST_TEST(a[0] == 0.0f);
}

BOOST_AUTO_TEST_CASE(ppo_policy_loss_values_clipping_and_gradient) {
  // ρ = e^0.5 > 1.2 with A > 0: clipped (gradient 0); ρ = 1 with A = -2: unclipped.
  const std::vector<float> lnew{0.5f, 0.0f, 7.0f}, lold{0.0f, 0.0f, 0.0f}, adv{1.0f, -2.0f, 5.0f};
  const std::vector<std::uint8_t> mask{1, 1, 0};
  std::vector<float> d(3);
  const PolicyLossStats s = ppo_policy_loss(lnew, lold, adv, mask, 0.2, d);
  BOOST_TEST(s.loss == (-1.2 + 2.0) / 2, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(s.clip_fraction == 0.5);
  BOOST_TEST(s.approx_kl == (std::exp(0.5) - 1 - 0.5) / 2, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(d[0] == 0.0f);
  BOOST_TEST(d[1] == 1.0f);
  BOOST_TEST(d[2] == 0.0f);

  std::vector<float> x = random_vector(16, 8, 0.1f), old = random_vector(16, 9, 0.1f);
  const std::vector<float> a = random_vector(16, 10);
  std::vector<std::uint8_t> m(16, 1);
  m[3] = 0;
  std::vector<float> grad(16), scratch(16);
  ppo_policy_loss(x, old, a, m, 0.2, grad);
  check_gradient(x, grad, [&] { return ppo_policy_loss(x, old, a, m, 0.2, scratch).loss; }, 1e-3f, 1e-3);
}

BOOST_AUTO_TEST_CASE(ppo_value_loss_values_and_gradient) {
  const std::vector<float> v{1.0f, 0.05f}, v_old{0.0f, 0.0f}, ret{0.0f, 1.0f};
  const std::vector<std::uint8_t> mask{1, 1};
  std::vector<float> d(2);
  const ValueLossStats s = ppo_value_loss(v, v_old, ret, mask, 0.2, d);
  // token 0: unclipped error 1 > clipped 0.2 → 0.5; token 1: inside the clip range, 0.5·0.95².
  BOOST_TEST(s.loss == 0.5 * (0.5 + 0.5 * 0.95 * 0.95), boost::test_tools::tolerance(1e-6));
  BOOST_TEST(s.clip_fraction == 0.0);
  BOOST_TEST(d[0] == 0.5f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(d[1] == -0.475f, boost::test_tools::tolerance(1e-6f));

  std::vector<float> x = random_vector(16, 11), old = random_vector(16, 12);
  const std::vector<float> r = random_vector(16, 13);
  std::vector<std::uint8_t> m(16, 1);
  std::vector<float> grad(16), scratch(16);
  ppo_value_loss(x, old, r, m, 0.2, grad);
  check_gradient(x, grad, [&] { return ppo_value_loss(x, old, r, m, 0.2, scratch).loss; }, 1e-3f, 1e-3);
}

BOOST_AUTO_TEST_CASE(kl_estimators_and_their_gradients) {
  const std::vector<float> logp{-1.0f, -2.0f}, ref{-1.5f, -2.0f};
  std::vector<float> kl(2), d(2);
  kl_k1(logp, ref, kl, d);
  BOOST_TEST(kl[0] == 0.5f);
  BOOST_TEST(d[1] == 1.0f);
  kl_k3(logp, ref, kl, d);
  BOOST_TEST(kl[0] == std::exp(-0.5) + 0.5 - 1.0, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(kl[1] == 0.0f);
  BOOST_TEST(d[0] == 1.0 - std::exp(-0.5), boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(adaptive_kl_controller_follows_ziegler) {
  AdaptiveKlController c(0.2, 6.0, 10000);
  c.update(12.0, 256);  // error clipped to 0.2
  BOOST_TEST(c.value() == 0.2 * (1 + 0.2 * 256 / 10000.0), boost::test_tools::tolerance(1e-12));
  c.update(5.4, 1000);  // error -0.1
  BOOST_TEST(c.value() == 0.2 * (1 + 0.2 * 256 / 10000.0) * (1 - 0.1 * 0.1), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(error_of([] { AdaptiveKlController(0.2, 0.0, 10); }).find("target") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(grpo_advantages_population_std) {
  const std::vector<float> rewards{1.0f, 0.0f, 1.0f, 0.0f, 2.0f, 2.0f, 2.0f, 2.0f};
  std::vector<float> adv(8);
  grpo_advantages(rewards, 4, 1e-6, adv);
  BOOST_TEST(adv[0] == 0.5 / (0.5 + 1e-6), boost::test_tools::tolerance(1e-6));
  BOOST_TEST(adv[1] == -0.5 / (0.5 + 1e-6), boost::test_tools::tolerance(1e-6));
  BOOST_TEST(adv[5] == 0.0f);
  BOOST_TEST(error_of([&] { grpo_advantages(rewards, 3, 1e-6, adv); }).find("group_size 3") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(grpo_loss_gradient_matches_finite_differences) {
  const std::size_t b = 3, t = 5;
  std::vector<float> x = random_vector(b * t, 14, 0.1f, -1.0f);
  const std::vector<float> old = random_vector(b * t, 15, 0.1f, -1.0f), ref = random_vector(b * t, 16, 0.3f, -1.0f);
  const std::vector<float> adv = random_vector(b, 17);
  std::vector<std::uint8_t> m(b * t, 1);
  m[0] = m[14] = 0;
  std::vector<float> grad(b * t), scratch(b * t);
  const GrpoLossStats s = grpo_loss(x, old, ref, adv, m, 0.2, 0.04, grad);
  BOOST_TEST(s.kl > 0.0);
  BOOST_TEST(grad[0] == 0.0f);
  check_gradient(x, grad, [&] { return grpo_loss(x, old, ref, adv, m, 0.2, 0.04, scratch).loss; }, 1e-3f, 1e-3);
  BOOST_TEST(error_of([&] { grpo_loss(x, old, ref, adv, m, 0.2, -1.0, grad); }).find("beta") != std::string::npos);
  const std::vector<std::uint8_t> none(b * t, 0);
  BOOST_TEST(error_of([&] { grpo_loss(x, old, ref, adv, none, 0.2, 0.04, grad); }).find("no unmasked") !=
             std::string::npos);
}
