// train.device (train/device.h): the setting's declaration and what make_backend builds.
// cpu gives the CPU backend; cuda gives a GPU backend where one is usable, else a clear
// error: a config::ConfigError in a build without CUDA, a std::runtime_error naming the
// rank where CUDA is built but sees no device (this test's usual machine).
#define BOOST_TEST_MODULE train_device
#include <boost/test/unit_test.hpp>

#include <stdexcept>
#include <string>

#include "core/transfer.h"
#include "io/config/config.h"
#include "train/device.h"

#if LOOM_HAVE_CUDA
#include "core/kernels/cuda/cuda_backend.h"
#endif

using loom::Device;
using loom::DType;
using loom::Tensor;
namespace config = loom::config;

namespace {

config::Config with_device(const std::string& device) {
  config::Schema schema;
  loom::train::add_device_setting(schema);
  config::Config c(schema);
  config::apply_override(c, "train.device=" + device);
  return c;
}

bool gpu_usable() {
#if LOOM_HAVE_CUDA
  return loom::cuda::device_count() > 0;
#else
  return false;
#endif
}

}  // namespace

BOOST_AUTO_TEST_CASE(default_is_cpu_and_values_are_checked) {
  config::Schema schema;
  loom::train::add_device_setting(schema);
  const config::Config c(schema);
  BOOST_TEST(c.get_string("train.device") == "cpu");
  config::Config bad(schema);
  BOOST_CHECK_THROW(config::apply_override(bad, "train.device=tpu"), config::ConfigError);
}

BOOST_AUTO_TEST_CASE(cpu_gives_the_cpu_backend) {
  auto backend = loom::train::make_backend(with_device("cpu"), "loom-test");
  BOOST_TEST((backend->device() == Device::CPU));
}

BOOST_AUTO_TEST_CASE(cuda_without_a_gpu_says_why) {
  if (gpu_usable()) return;  // covered by the gpu tests
  const config::Config c = with_device("cuda");
  std::string message;
  try {
    loom::train::make_backend(c, "loom-test");
  } catch (const config::ConfigError& e) {
    BOOST_TEST(!loom::train::built_with_cuda());
    message = e.what();
    BOOST_TEST(message ==
               "train.device=cuda: this loom was built without CUDA (CMake found no CUDA toolkit; see docs/cuda.md)");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(loom::train::built_with_cuda());
    message = e.what();
  }
  BOOST_TEST_INFO("message: " << message);
  BOOST_TEST(!message.empty());
}

BOOST_AUTO_TEST_CASE(transfers_are_free_on_the_cpu) {
  auto backend = loom::make_cpu_backend();
  Tensor ids = Tensor::zeros({2, 3}, DType::I32);
  Tensor device_buffer, host_buffer;
  BOOST_TEST(loom::to_backend(*backend, ids, device_buffer).raw() == ids.raw());
  BOOST_TEST(loom::to_host(*backend, ids, host_buffer).raw() == ids.raw());
  BOOST_TEST(!device_buffer.defined());
  BOOST_TEST(!host_buffer.defined());
  // fit_buffer keeps storage whose size fits and reshapes it.
  Tensor buffer = Tensor::empty({6}, DType::I32);
  const void* storage = buffer.raw();
  BOOST_TEST(loom::fit_buffer(buffer, ids, Device::CPU).raw() == storage);
  BOOST_TEST(buffer.dim(0) == 2);
  BOOST_TEST(loom::fit_buffer(buffer, Tensor::zeros({7}, DType::I32), Device::CPU).numel() == 7);
}
