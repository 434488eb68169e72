// Greedy generation with the KV cache in GPU memory gives the CPU backend's tokens: tiny
// GPT-2 and Llama models with identical weights, prompts of different lengths (the batch is
// prefilled to the shortest and fed the rest one position at a time), f32. Sampling runs on
// the host from the last position's logits copied back each step.
//
// Without a GPU the test prints "test_gpu_generation: skipped: <reason>" and exits 77.
#define BOOST_TEST_MODULE gpu_generation
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <iostream>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "tests/gpu/gpu_test_util.h"
#include "core/model/generation.h"
#include "core/model/transformer.h"

using loom::Backend;
using loom::Device;
using loom::model::Family;
using loom::model::GenerationConfig;
using loom::model::HeadKind;
using loom::model::ModelConfig;
using loom::model::ShardSpec;
using loom::model::Transformer;

namespace {

using loom::gpu_test::cpu;
using loom::gpu_test::gpu;

ModelConfig tiny(Family family) { return loom::gpu_test::tiny_model(family, 80, 48); }

}  // namespace

BOOST_AUTO_TEST_CASE(greedy_tokens_match_cpu) {
  const std::vector<std::vector<std::int32_t>> prompts = {{5, 17, 3, 44, 9}, {1, 2}, {70, 8, 8, 31}};
  for (Family family : {Family::GPT2, Family::Llama}) {
    const ModelConfig c = tiny(family);
    Transformer on_cpu(c, ShardSpec::whole(c), HeadKind::LM, cpu());
    Transformer on_gpu(c, ShardSpec::whole(c), HeadKind::LM, gpu());
    on_cpu.init_weights(7);
    on_gpu.init_weights(7);
    GenerationConfig config;
    config.max_new_tokens = 16;
    config.sampling.temperature = 0.0f;  // greedy
    const auto want = loom::model::generate(on_cpu, prompts, config);
    const auto got = loom::model::generate(on_gpu, prompts, config);
    BOOST_TEST(want.new_tokens == 48);
    BOOST_TEST(got.new_tokens == want.new_tokens);
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      BOOST_TEST_INFO("family " << static_cast<int>(family) << ", sequence " << b);
      BOOST_TEST(got.tokens[b] == want.tokens[b], boost::test_tools::per_element());
    }
  }
}

BOOST_AUTO_TEST_CASE(cache_lives_on_the_gpu_zeroed) {
  const ModelConfig c = tiny(Family::Llama);
  Transformer on_gpu(c, ShardSpec::whole(c), HeadKind::LM, gpu());
  loom::model::KvCache cache = on_gpu.make_kv_cache(2, 16);
  BOOST_TEST(cache.layers() == 2);
  BOOST_TEST((cache.k(0).device() == Device::CUDA));
  loom::Tensor host = loom::Tensor::empty(cache.v(1).shape());
  cpu().fill(host, 1.0f);
  gpu().copy(cache.v(1), host);
  BOOST_TEST(cpu().sum_squares(host) == 0.0);
}

LOOM_GPU_TEST_MAIN(test_gpu_generation)
