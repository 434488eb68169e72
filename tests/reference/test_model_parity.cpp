// PyTorch parity of the transformer (both families, LM and scalar heads) and of the
// optimizer stack (AdamW with decay groups, global-norm clipping, warmup + cosine schedule).
//
// Golden files come from tests/reference/make_reference.py (the ctest fixture
// reference_data writes them into $LOOM_REFERENCE_DIR, default <build>/reference). Each case
// loads the reference weights into loom by parameter name, runs forward and backward, and
// compares logits/values, the loss and EVERY gradient with |a-b| <= atol + rtol·|b|; LM
// cases then replay a 10-step training trajectory and compare the losses, learning rates,
// gradient norms and final weights.
//
// LOOM_REFERENCE_PERTURB=<parameter name> adds an error to one element of that gradient
// before comparing: ctest runs the suite once that way, expecting it to FAIL, which proves a
// wrong gradient cannot pass.
#define BOOST_TEST_MODULE model_parity
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/model/transformer.h"
#include "core/optim/adamw.h"
#include "core/optim/grad_clip.h"
#include "core/optim/lr_schedule.h"
#include "tests/reference/compare.h"
#include "tests/reference/reference_file.h"

namespace {

using loom::DType;
using loom::Tensor;
using loom::model::HeadKind;
using loom::model::ModelConfig;
using loom::model::ShardSpec;
using loom::model::Transformer;
using loom::reference::Comparison;
using loom::reference::ReferenceFile;
using loom::reference::Tolerance;

// float32 loom against a float64 reference; the measured worst cases use 5-50% of these
// allowances (the test log prints the worst element of every category).
constexpr Tolerance kLogits{1e-5, 1e-4};
constexpr Tolerance kLoss{1e-6, 1e-5};
constexpr Tolerance kGrads{1e-6, 2e-3};
constexpr Tolerance kValues{2e-5, 1e-4};
constexpr Tolerance kTrajectoryLoss{1e-5, 1e-3};
constexpr Tolerance kTrajectoryNorm{1e-5, 1e-3};
constexpr Tolerance kLearningRate{0.0, 1e-6};
constexpr Tolerance kFinalWeights{1e-4, 1e-3};

std::string reference_path(const std::string& case_name) {
  std::string dir;
  if (const char* env = std::getenv("LOOM_REFERENCE_DIR")) {
    dir = env;
  } else if (const char* build = std::getenv("LOOM_BUILD_DIR")) {
    dir = std::string(build) + "/reference";
  } else {
    dir = "build/reference";
  }
  return dir + "/" + case_name + ".h5";
}

ModelConfig config_from(const ReferenceFile& f) {
  ModelConfig c;
  c.family = loom::model::parse_family(f.attr_string("config", "family"));
  c.vocab_size = f.attr_int("config", "vocab_size");
  c.d_model = f.attr_int("config", "d_model");
  c.n_layers = f.attr_int("config", "n_layers");
  c.n_heads = f.attr_int("config", "n_heads");
  c.n_kv_heads = f.attr_int("config", "n_kv_heads");
  c.d_ff = f.attr_int("config", "d_ff");
  c.max_seq_len = f.attr_int("config", "max_seq_len");
  c.norm_eps = static_cast<float>(f.attr_double("config", "norm_eps"));
  c.rope.theta = static_cast<float>(f.attr_double("config", "rope_theta"));
  c.rope.factor = static_cast<float>(f.attr_double("config", "rope_factor"));
  const std::string scaling = f.attr_string("config", "rope_scaling");
  c.rope.scaling = scaling == "ntk"      ? loom::RopeConfig::Scaling::NTK
                   : scaling == "linear" ? loom::RopeConfig::Scaling::Linear
                                         : loom::RopeConfig::Scaling::None;
  c.tie_embeddings = f.attr_int("config", "tie_embeddings") != 0;
  c.bias = f.attr_int("config", "bias") != 0;
  c.validate();
  return c;
}

// Copies group/<name> into every loom parameter; the two name sets must be identical.
void load_weights(Transformer& model, const ReferenceFile& f, const std::string& group) {
  std::vector<std::string> reference_names = f.members(group);
  std::vector<std::string> loom_names;
  for (const auto& e : model.params().entries()) loom_names.push_back(e.name);
  std::sort(reference_names.begin(), reference_names.end());
  std::sort(loom_names.begin(), loom_names.end());
  BOOST_REQUIRE_MESSAGE(reference_names == loom_names,
                        f.path() << ": parameter names differ between loom (" << loom_names.size()
                                 << ") and the reference (" << reference_names.size() << ")");
  for (const auto& e : model.params().entries()) {
    std::vector<std::int64_t> shape;
    std::vector<float> values = f.floats(group + "/" + e.name, &shape);
    BOOST_REQUIRE_MESSAGE(shape == e.shape, e.name << ": reference shape " << loom::shape_string(shape)
                                                   << ", loom " << loom::shape_string(e.shape));
    Tensor dst = model.params().value(e);
    model.backend().copy(Tensor::wrap(values.data(), e.shape, DType::F32), dst);
  }
}

Tensor int_tensor(const ReferenceFile& f, const std::string& name) {
  std::vector<std::int64_t> shape;
  std::vector<std::int32_t> values = f.ints(name, &shape);
  Tensor t = Tensor::empty(shape, DType::I32);
  std::memcpy(t.raw(), values.data(), values.size() * sizeof(std::int32_t));
  return t;
}

// The error added by LOOM_REFERENCE_PERTURB: larger than any allowance kGrads gives.
void perturb_gradient(Transformer& model, const std::string& name, std::int64_t index) {
  Tensor g = model.params().grad(name);
  float* element = g.data<float>() + index;
  *element += 1e-3f + 1e-2f * std::fabs(*element);
}

void check(const Comparison& c) { BOOST_CHECK_MESSAGE(c.ok(), c.describe()); }

// Compares every parameter's gradient with group/<name>; reports the worst tensor.
std::vector<Comparison> compare_tensors(const Transformer& model, const ReferenceFile& f, const std::string& group,
                                        bool gradients, Tolerance tol) {
  std::vector<Comparison> all;
  for (const auto& e : model.params().entries()) {
    const Tensor t = gradients ? model.params().grad(e) : model.params().value(e);
    all.push_back(loom::reference::compare_values(group + "/" + e.name, t.data<float>(),
                                                  f.doubles(group + "/" + e.name), tol));
  }
  return all;
}

void check_all(const std::vector<Comparison>& all, const std::string& label) {
  const Comparison* worst = &all.front();
  for (const Comparison& c : all) {
    check(c);
    if (c.worst_ratio > worst->worst_ratio || std::isnan(c.worst_ratio)) worst = &c;
  }
  BOOST_TEST_MESSAGE("  " << label << " worst: " << worst->describe());
}

Comparison compare_scalar(const std::string& name, double actual, double expected, Tolerance tol) {
  return loom::reference::compare_values(name, &actual, std::vector<double>{expected}, tol);
}

void apply_perturbation_from_env(Transformer& model) {
  if (const char* name = std::getenv("LOOM_REFERENCE_PERTURB")) {
    if (model.params().contains(name)) {
      BOOST_TEST_MESSAGE("  perturbing gradient " << name << "[0] as LOOM_REFERENCE_PERTURB asks");
      perturb_gradient(model, name, 0);
    }
  }
}

void run_trajectory(const ReferenceFile& f, const ModelConfig& config, const Tensor& ids, const Tensor& targets) {
  auto backend = loom::make_cpu_backend();
  Transformer model(config, ShardSpec::whole(config), HeadKind::LM, *backend);
  load_weights(model, f, "weights");

  loom::optim::AdamWConfig adam;
  adam.beta1 = static_cast<float>(f.attr_double("trajectory", "beta1"));
  adam.beta2 = static_cast<float>(f.attr_double("trajectory", "beta2"));
  adam.eps = static_cast<float>(f.attr_double("trajectory", "eps"));
  adam.weight_decay = static_cast<float>(f.attr_double("trajectory", "weight_decay"));
  loom::optim::AdamW optimizer(model.params(), adam, *backend);
  loom::optim::LrSchedule schedule;
  schedule.max_lr = static_cast<float>(f.attr_double("trajectory", "max_lr"));
  schedule.min_lr = static_cast<float>(f.attr_double("trajectory", "min_lr"));
  schedule.warmup_steps = f.attr_int("trajectory", "warmup_steps");
  schedule.total_steps = f.attr_int("trajectory", "total_steps");
  schedule.decay = loom::optim::parse_decay_kind(f.attr_string("trajectory", "decay"));
  schedule.validate();
  const auto max_norm = static_cast<float>(f.attr_double("trajectory", "max_grad_norm"));
  const std::int64_t steps = f.attr_int("trajectory", "steps");

  std::vector<double> losses, lrs, norms;
  for (std::int64_t step = 0; step < steps; ++step) {
    model.zero_grads();
    const loom::model::LossSum loss = model.forward_lm(ids, targets);
    model.backward_lm(1.0f / static_cast<float>(loss.count));
    const loom::optim::ClipResult clip = loom::optim::clip_grad_norm(*backend, model.params().grads(), max_norm);
    const float lr = schedule.at(step);
    optimizer.step(lr);
    losses.push_back(loss.mean());
    lrs.push_back(lr);
    norms.push_back(clip.norm);
  }
  const Comparison loss_cmp =
      loom::reference::compare_values("trajectory/losses", losses.data(), f.doubles("trajectory/losses"),
                                      kTrajectoryLoss);
  check(loss_cmp);
  BOOST_TEST_MESSAGE("  " << loss_cmp.describe());
  check(loom::reference::compare_values("trajectory/lrs", lrs.data(), f.doubles("trajectory/lrs"), kLearningRate));
  check(loom::reference::compare_values("trajectory/grad_norms", norms.data(), f.doubles("trajectory/grad_norms"),
                                        kTrajectoryNorm));
  check_all(compare_tensors(model, f, "trajectory/final_weights", false, kFinalWeights), "final weights");
}

void run_lm_case(const std::string& case_name) {
  const ReferenceFile f(reference_path(case_name));
  BOOST_REQUIRE_EQUAL(f.attr_string("/", "head"), "lm");
  const ModelConfig config = config_from(f);
  auto backend = loom::make_cpu_backend();
  Transformer model(config, ShardSpec::whole(config), HeadKind::LM, *backend);
  load_weights(model, f, "weights");
  const Tensor ids = int_tensor(f, "inputs/ids");
  const Tensor targets = int_tensor(f, "inputs/targets");

  model.zero_grads();
  const loom::model::LossSum loss = model.forward_lm(ids, targets);
  const Comparison logits = loom::reference::compare_values("outputs/logits", model.lm_logits().data<float>(),
                                                            f.doubles("outputs/logits"), kLogits);
  check(logits);
  BOOST_TEST_MESSAGE("  " << logits.describe());
  BOOST_CHECK_EQUAL(loss.count, static_cast<std::int64_t>(f.scalar("outputs/count")));
  check(compare_scalar("outputs/loss", loss.mean(), f.scalar("outputs/loss"), kLoss));
  check(compare_scalar("outputs/loss_sum", loss.sum, f.scalar("outputs/loss_sum"), kLoss));

  model.backward_lm(1.0f / static_cast<float>(loss.count));
  apply_perturbation_from_env(model);
  check_all(compare_tensors(model, f, "grads", true, kGrads), "gradients");

  run_trajectory(f, config, ids, targets);
}

void run_scalar_case(const std::string& case_name) {
  const ReferenceFile f(reference_path(case_name));
  BOOST_REQUIRE_EQUAL(f.attr_string("/", "head"), "scalar");
  const ModelConfig config = config_from(f);
  auto backend = loom::make_cpu_backend();
  Transformer model(config, ShardSpec::whole(config), HeadKind::Scalar, *backend);
  load_weights(model, f, "weights");
  const Tensor ids = int_tensor(f, "inputs/ids");
  std::vector<std::int64_t> shape;
  std::vector<float> dvalues_host = f.floats("inputs/dvalues", &shape);
  const Tensor dvalues = Tensor::wrap(dvalues_host.data(), shape, DType::F32);

  model.zero_grads();
  const Tensor& values = model.forward_scalar(ids);
  BOOST_REQUIRE(values.shape() == shape);
  const Comparison values_cmp =
      loom::reference::compare_values("outputs/values", values.data<float>(), f.doubles("outputs/values"), kValues);
  check(values_cmp);
  BOOST_TEST_MESSAGE("  " << values_cmp.describe());

  model.backward_scalar(dvalues);
  apply_perturbation_from_env(model);
  check_all(compare_tensors(model, f, "grads", true, kGrads), "gradients");
}

}  // namespace

BOOST_AUTO_TEST_CASE(gpt2_lm) { run_lm_case("gpt2_lm"); }
BOOST_AUTO_TEST_CASE(gpt2_untied_lm) { run_lm_case("gpt2_untied_lm"); }
BOOST_AUTO_TEST_CASE(llama_lm) { run_lm_case("llama_lm"); }
BOOST_AUTO_TEST_CASE(llama_ntk_lm) { run_lm_case("llama_ntk_lm"); }
BOOST_AUTO_TEST_CASE(llama_linear_lm) { run_lm_case("llama_linear_lm"); }
BOOST_AUTO_TEST_CASE(gpt2_scalar) { run_scalar_case("gpt2_scalar"); }
BOOST_AUTO_TEST_CASE(llama_scalar) { run_scalar_case("llama_scalar"); }

// The comparator must flag a single wrong gradient element, and name it.
BOOST_AUTO_TEST_CASE(comparator_catches_a_wrong_gradient) {
  const ReferenceFile f(reference_path("llama_lm"));
  const ModelConfig config = config_from(f);
  auto backend = loom::make_cpu_backend();
  Transformer model(config, ShardSpec::whole(config), HeadKind::LM, *backend);
  load_weights(model, f, "weights");
  const Tensor ids = int_tensor(f, "inputs/ids");
  const Tensor targets = int_tensor(f, "inputs/targets");
  model.zero_grads();
  const loom::model::LossSum loss = model.forward_lm(ids, targets);
  model.backward_lm(1.0f / static_cast<float>(loss.count));

  const std::string name = "layers.1.mlp.up.weight";
  const std::vector<double> expected = f.doubles("grads/" + name);
  const Comparison before =
      loom::reference::compare_values(name, model.params().grad(name).data<float>(), expected, kGrads);
  BOOST_REQUIRE_MESSAGE(before.ok(), before.describe());

  perturb_gradient(model, name, 37);
  const Comparison after =
      loom::reference::compare_values(name, model.params().grad(name).data<float>(), expected, kGrads);
  BOOST_CHECK(!after.ok());
  BOOST_CHECK_EQUAL(after.failures, 1u);
  BOOST_CHECK_EQUAL(after.worst_index, 37u);
  BOOST_TEST_MESSAGE("  perturbed: " << after.describe());

  // A NaN never passes, whatever the tolerance.
  std::vector<float> nan_values(expected.begin(), expected.end());
  nan_values[3] = NAN;
  const Comparison nan_cmp = loom::reference::compare_values(name, nan_values.data(), expected, Tolerance{1.0, 1.0});
  BOOST_CHECK(!nan_cmp.ok());
  BOOST_CHECK_EQUAL(nan_cmp.worst_index, 3u);
}
