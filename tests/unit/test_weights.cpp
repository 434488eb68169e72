// Whole-model weight files: round trip through HDF5, and the errors a user sees for a file
// that does not fit the model (missing tensor, other shape, other architecture, truncated).
#define BOOST_TEST_MODULE weights
#include <boost/test/unit_test.hpp>

#include "tests/unit/error_of.h"

#include <filesystem>
#include <functional>
#include <unistd.h>
#include <stdexcept>
#include <string>

#include "core/backend.h"
#include "core/model/transformer.h"
#include "io/weights/model_weights.h"
#include "io/weights/weights.h"

namespace fs = std::filesystem;
using namespace loom;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("loom-test-weights-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

model::ModelConfig tiny(model::Family family) {
  return model::ModelConfig::from_family(family, 97, 32, 2, 4, family == model::Family::Llama ? 2 : 4, 64, 16);
}

}  // namespace

BOOST_AUTO_TEST_CASE(model_round_trip_is_exact) {
  auto backend = make_cpu_backend();
  for (auto family : {model::Family::GPT2, model::Family::Llama}) {
    const auto config = tiny(family);
    model::Transformer a(config, model::ShardSpec::whole(config), model::HeadKind::LM, *backend);
    model::Transformer b(config, model::ShardSpec::whole(config), model::HeadKind::LM, *backend);
    a.init_weights(1);
    b.init_weights(2);
    const fs::path file = scratch(std::string(model::family_name(family)) + ".h5");
    io::save_model_weights(file, a, {{"step", 7}});
    BOOST_TEST(!fs::exists(file.string() + ".tmp"));
    const auto metadata = io::load_model_weights(file, b);
    BOOST_TEST(metadata["step"].get<int>() == 7);
    BOOST_TEST(metadata["model"]["family"].get<std::string>() == model::family_name(family));
    const float* va = a.params().values().data<float>();
    const float* vb = b.params().values().data<float>();
    for (std::int64_t i = 0; i < a.params().numel(); ++i) BOOST_REQUIRE(va[i] == vb[i]);
  }
}

BOOST_AUTO_TEST_CASE(mismatches_are_named) {
  auto backend = make_cpu_backend();
  const auto config = tiny(model::Family::Llama);
  model::Transformer m(config, model::ShardSpec::whole(config), model::HeadKind::LM, *backend);
  m.init_weights(3);
  const fs::path file = scratch("llama.h5");
  io::save_model_weights(file, m, {});

  auto wider = config;
  wider.d_ff = 96;
  model::Transformer other(wider, model::ShardSpec::whole(wider), model::HeadKind::LM, *backend);
  const std::string arch = error_of([&] { io::load_model_weights(file, other); });
  BOOST_TEST(arch.find("model.d_ff is 64 in the file but 96") != std::string::npos, arch);

  Tensor t = Tensor::zeros({3, 3});
  std::vector<io::NamedTensor> missing = {{"no.such.weight", t}};
  const std::string absent = error_of([&] { io::load_weights(file, missing); });
  BOOST_TEST(absent.find("has no tensor no.such.weight") != std::string::npos, absent);

  std::vector<io::NamedTensor> shaped = {{"final_norm.weight", t}};
  const std::string shape = error_of([&] { io::load_weights(file, shaped); });
  BOOST_TEST(shape.find("has shape [32], the model expects [3, 3]") != std::string::npos, shape);

  const std::string nofile = error_of([&] { io::read_weights_metadata(scratch("absent.h5")); });
  BOOST_TEST(nofile.find("absent.h5: no such weights file") != std::string::npos, nofile);
}

BOOST_AUTO_TEST_CASE(truncated_file_is_an_error_naming_it) {
  auto backend = make_cpu_backend();
  const auto config = tiny(model::Family::GPT2);
  model::Transformer m(config, model::ShardSpec::whole(config), model::HeadKind::LM, *backend);
  m.init_weights(4);
  const fs::path file = scratch("truncated.h5");
  io::save_model_weights(file, m, {});
  fs::resize_file(file, fs::file_size(file) / 2);
  const std::string message = error_of([&] { io::load_model_weights(file, m); });
  BOOST_TEST(message.find("truncated.h5") != std::string::npos, message);
}
