// The tensor-core attention kernels (core/kernels/cuda/attention_tc.h) against the CPU backend.
//
// Inputs are drawn on the CPU from a fixed seed and rounded through bf16; the CPU backend runs
// on those rounded values in f32 and the GPU kernels on the bf16 copies, so what differs is the
// GPU's bf16 probabilities and score gradients, its bf16 outputs and its summation order.
// Tolerance: 2e-2 of the largest magnitude of each reference output (out, lse, dqkv). Backward
// starts from a non-zero dqkv (it adds into it) and runs from each side's own forward, as
// training does. Forward and backward each run twice and must be bit-identical.
// Shapes: B in {1, 2} x T in {1, 15, 64, 65, 130, 300} x D in {64, 128} x (Hq, Hkv) in
// {(4, 4), (8, 2)}: tails shorter than a tile, exactly one tile, one row past it, several tiles.
//
// Without a GPU the test prints "test_cuda_attention_tc: skipped: <reason>" and exits 77.
#define BOOST_TEST_MODULE cuda_attention_tc
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/backend.h"
#include "core/kernels/cuda/attention_tc.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/cuda_stream.h"
#include "core/mix64.h"
#include "core/tensor.h"
#include "tests/gpu/gpu_test_util.h"

using loom::AttentionShape;
using loom::Device;
using loom::DType;
using loom::Shape;
using loom::Tensor;
namespace tc = loom::cuda::detail;

namespace {

using loom::gpu_test::cpu;
using loom::gpu_test::expect_bit_identical;
using loom::gpu_test::gpu;
using loom::gpu_test::up;

constexpr double kTolerance = 2e-2;  // of each output's largest magnitude

// Uniform in [-scale, scale) rounded through bf16, a pure function of (seed, index).
Tensor random_bf16(const Shape& shape, std::uint64_t seed, float scale = 1.0f) {
  return loom::gpu_test::rounded(loom::gpu_test::random(shape, seed, scale), DType::BF16);
}

void expect_close(const std::string& what, const Tensor& got_device, const Tensor& want) {
  loom::gpu_test::expect_close(what, got_device, want, kTolerance);
}

const __nv_bfloat16* bf16_ptr(const Tensor& t) { return static_cast<const __nv_bfloat16*>(t.raw()); }
__nv_bfloat16* bf16_ptr(Tensor& t) { return static_cast<__nv_bfloat16*>(t.raw()); }

std::string name_of(const AttentionShape& s) {
  return "attention_tc B=" + std::to_string(s.batch) + " T=" + std::to_string(s.seq) + " Hq=" +
         std::to_string(s.q_heads) + " Hkv=" + std::to_string(s.kv_heads) + " D=" + std::to_string(s.head_dim);
}

void check_shape(const AttentionShape& s, std::uint64_t seed) {
  const std::string name = name_of(s);
  const cudaStream_t stream = loom::cuda::stream_of(gpu());
  const std::int64_t width = (s.q_heads + 2 * s.kv_heads) * s.head_dim;
  const Tensor qkv = random_bf16({s.batch, s.seq, width}, seed, 2.0f);
  Tensor out = Tensor::empty({s.batch, s.seq, s.q_heads * s.head_dim});
  Tensor lse = Tensor::empty({s.batch, s.q_heads, s.seq});
  cpu().attention_forward(qkv, s, out, lse);

  const Tensor gqkv = up(qkv, DType::BF16);
  Tensor gout = Tensor::empty(out.shape(), DType::BF16, Device::CUDA);
  Tensor gout2 = Tensor::empty(out.shape(), DType::BF16, Device::CUDA);
  Tensor glse = Tensor::empty(lse.shape(), DType::F32, Device::CUDA);
  Tensor glse2 = Tensor::empty(lse.shape(), DType::F32, Device::CUDA);
  tc::attention_forward_tc(bf16_ptr(gqkv), s, bf16_ptr(gout), static_cast<float*>(glse.raw()), stream);
  tc::attention_forward_tc(bf16_ptr(gqkv), s, bf16_ptr(gout2), static_cast<float*>(glse2.raw()), stream);
  expect_close(name + " forward out", gout, out);
  expect_close(name + " forward lse", glse, lse);
  expect_bit_identical(name + " forward out", gout, gout2);
  expect_bit_identical(name + " forward lse", glse, glse2);

  const Tensor dout = random_bf16(out.shape(), seed + 1);
  Tensor dqkv = random_bf16(qkv.shape(), seed + 2);
  Tensor gdqkv = up(dqkv, DType::BF16);
  Tensor gdqkv2 = up(dqkv, DType::BF16);
  cpu().attention_backward(dout, qkv, loom::gpu_test::rounded(out, DType::BF16), lse, s, dqkv);
  const Tensor gdout = up(dout, DType::BF16);
  Tensor scratch = Tensor::empty({tc::attention_backward_tc_scratch(s)}, DType::F32, Device::CUDA);
  for (Tensor* target : {&gdqkv, &gdqkv2}) {
    tc::attention_backward_tc(bf16_ptr(gdout), bf16_ptr(gqkv), bf16_ptr(gout), static_cast<const float*>(glse.raw()),
                              s, bf16_ptr(*target), static_cast<float*>(scratch.raw()), stream);
  }
  expect_close(name + " backward dqkv", gdqkv, dqkv);
  expect_bit_identical(name + " backward dqkv", gdqkv, gdqkv2);
}

}  // namespace

BOOST_AUTO_TEST_CASE(which_shapes_run_on_tensor_cores) {
  BOOST_TEST(tc::tensor_core_attention(DType::BF16, {2, 1024, 16, 16, 64}));
  BOOST_TEST(tc::tensor_core_attention(DType::BF16, {1, 1, 32, 8, 128}));
  BOOST_TEST(!tc::tensor_core_attention(DType::F32, {2, 1024, 16, 16, 64}));
  BOOST_TEST(!tc::tensor_core_attention(DType::BF16, {2, 1024, 16, 16, 96}));
  BOOST_TEST(!tc::tensor_core_attention(DType::BF16, {2, 1024, 6, 4, 64}));
  BOOST_TEST(!tc::tensor_core_attention(DType::BF16, {2, 0, 16, 16, 64}));
}

BOOST_AUTO_TEST_CASE(matches_cpu_backend) {
  const std::int64_t batches[] = {1, 2};
  const std::int64_t seqs[] = {1, 15, 64, 65, 130, 300};
  const std::int64_t dims[] = {64, 128};
  const std::int64_t heads[][2] = {{4, 4}, {8, 2}};
  std::uint64_t seed = 300;
  for (std::int64_t b : batches) {
    for (std::int64_t t : seqs) {
      for (std::int64_t d : dims) {
        for (const auto& h : heads) {
          check_shape(AttentionShape{b, t, h[0], h[1], d}, seed);
          seed += 3;
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(refuses_other_shapes) {
  const AttentionShape odd{1, 8, 4, 4, 96};
  const cudaStream_t stream = loom::cuda::stream_of(gpu());  // the backend registers the GPU allocator
  Tensor qkv = Tensor::empty({1, 8, 12 * 96}, DType::BF16, Device::CUDA);
  Tensor out = Tensor::empty({1, 8, 4 * 96}, DType::BF16, Device::CUDA);
  Tensor lse = Tensor::empty({1, 4, 8}, DType::F32, Device::CUDA);
  BOOST_CHECK_THROW(tc::attention_forward_tc(bf16_ptr(qkv), odd, bf16_ptr(out), static_cast<float*>(lse.raw()), stream),
                    std::invalid_argument);
}

LOOM_GPU_TEST_MAIN(test_cuda_attention_tc)
