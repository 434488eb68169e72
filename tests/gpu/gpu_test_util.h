// What the single-process GPU tests share: the CPU backend (the reference) and the CUDA
// backend on device 0, each made once, and a main that skips the test where no GPU is usable.
//
// A test defines BOOST_TEST_MODULE and BOOST_TEST_NO_MAIN, includes boost/test/unit_test.hpp
// and this header, and ends with LOOM_GPU_TEST_MAIN(name): without a GPU it prints
// "<name>: skipped: <reason>" and exits 77, which CTest reports as skipped.
// Threads: one test thread.
#pragma once

#include <iostream>
#include <memory>

#include "core/backend.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/model/model_config.h"

namespace loom::gpu_test {

inline Backend& cpu() {
  static std::unique_ptr<Backend> backend = make_cpu_backend();
  return *backend;
}

inline Backend& gpu() {
  static std::unique_ptr<Backend> backend = cuda::make_cuda_backend(0);
  return *backend;
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
