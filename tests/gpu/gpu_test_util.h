// What the single-process GPU tests share: the CPU backend (the reference) and the CUDA
// backend on device 0, each made once; random inputs, host<->device copies and the checks that
// compare a GPU result with the CPU's; and a main that skips the test where no GPU is usable.
//
// A test defines BOOST_TEST_MODULE and BOOST_TEST_NO_MAIN, includes boost/test/unit_test.hpp
// and this header, and ends with LOOM_GPU_TEST_MAIN(name): without a GPU it prints
// "<name>: skipped: <reason>" and exits 77, which CTest reports as skipped.
// Threads: one test thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/mix64.h"
#include "core/model/model_config.h"
#include "core/tensor.h"

namespace loom::gpu_test {

inline Backend& cpu() {
  static std::unique_ptr<Backend> backend = make_cpu_backend();
  return *backend;
}

inline Backend& gpu() {
  static std::unique_ptr<Backend> backend = cuda::make_cuda_backend(0);
  return *backend;
}

// Uniform in [-scale, scale), a pure function of (seed, index).
inline Tensor random(const Shape& shape, std::uint64_t seed, float scale = 1.0f) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const auto bits = mix64(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(i)) >> 40;
    p[i] = scale * (2.0f * static_cast<float>(bits) / 16777216.0f - 1.0f);
  }
  return t;
}

// t with every element rounded through `dtype` (a copy; f32 leaves the values as they are).
inline Tensor rounded(const Tensor& t, DType dtype) {
  Tensor out = t.clone();
  if (dtype == DType::BF16) {
    float* p = out.data<float>();
    for (std::int64_t i = 0; i < out.numel(); ++i) p[i] = from_bf16(to_bf16(p[i]));
  }
  return out;
}

inline Tensor up(const Tensor& host, DType dtype) {
  Tensor device = Tensor::empty(host.shape(), dtype, Device::CUDA);
  gpu().copy(host, device);
  return device;
}
inline Tensor up(const Tensor& host) { return up(host, host.dtype()); }

// Device to host; bf16 comes back widened to f32 (copy converts and synchronises).
inline Tensor down(const Tensor& device) {
  const DType dtype = device.dtype() == DType::BF16 ? DType::F32 : device.dtype();
  Tensor host = Tensor::empty(device.shape(), dtype);
  gpu().copy(device, host);
  return host;
}

// max |got - want| <= tol · max|want| (got downloaded from the GPU; a NaN fails).
inline void expect_close(const std::string& what, const Tensor& got_device, const Tensor& want, double tol) {
  const Tensor got = down(got_device);
  BOOST_REQUIRE_EQUAL(got.numel(), want.numel());
  const float* g = got.data<float>();
  const float* w = want.data<float>();
  double scale = 1e-6, err = 0.0;
  std::int64_t worst = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::fabs(static_cast<double>(w[i])));
  for (std::int64_t i = 0; i < want.numel(); ++i) {
    const double e = std::fabs(static_cast<double>(g[i]) - static_cast<double>(w[i]));
    if (!(e <= err)) {
      err = e;
      worst = i;
    }
  }
  BOOST_CHECK_MESSAGE(err <= tol * scale, what << ": max error " << err << " at [" << worst << "] (gpu "
                                                << g[worst] << ", cpu " << w[worst] << ") exceeds " << tol
                                                << " x scale " << scale);
}

// Two GPU results hold the same bytes.
inline void expect_bit_identical(const std::string& what, const Tensor& a_device, const Tensor& b_device) {
  BOOST_REQUIRE_EQUAL(a_device.nbytes(), b_device.nbytes());
  const Tensor a = down(a_device);
  const Tensor b = down(b_device);
  BOOST_CHECK_MESSAGE(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0, what << ": two runs differ");
}

// A two-layer model of the family (d_model 64, 4 heads; Llama with 2 kv heads).
inline model::ModelConfig tiny_model(model::Family family, std::int64_t vocab, std::int64_t max_seq) {
  model::ModelConfig c = family == model::Family::GPT2
                             ? model::ModelConfig::from_family(family, vocab, 64, 2, 4, 4, 128, max_seq)
                             : model::ModelConfig::from_family(family, vocab, 64, 2, 4, 2, 96, max_seq);
  c.validate();
  return c;
}

inline int run_or_skip(const char* name, int argc, char* argv[]) {
  if (cuda::device_count() == 0) {
    std::cout << name << ": skipped: " << cuda::unavailable_reason() << std::endl;
    return 77;
  }
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}

}  // namespace loom::gpu_test

#define LOOM_GPU_TEST_MAIN(name) \
  int main(int argc, char* argv[]) { return loom::gpu_test::run_or_skip(#name, argc, argv); }
