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
using loom::gpu_test::gpu;

// Uniform in [-scale, scale) rounded through bf16, a pure function of (seed, index).
Tensor random_bf16(const Shape& shape, std::uint64_t seed, float scale = 1.0f) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const auto bits = loom::mix64(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(i)) >> 40;
    p[i] = loom::from_bf16(loom::to_bf16(scale * (2.0f * static_cast<float>(bits) / 16777216.0f - 1.0f)));
  }
  return t;
}

Tensor up(const Tensor& host, DType dtype) {
  Tensor device = Tensor::empty(host.shape(), dtype, Device::CUDA);
  gpu().copy(host, device);
  return device;
}

// Device to host as f32 (copy converts bf16 and synchronises).
Tensor down(const Tensor& device) {
  Tensor host = Tensor::empty(device.shape());
  gpu().copy(device, host);
  return host;
}

// t's values rounded through bf16 (what the GPU's bf16 out holds).
Tensor rounded(const Tensor& t) {
  Tensor out = t.clone();
  float* p = out.data<float>();
  for (std::int64_t i = 0; i < out.numel(); ++i) p[i] = loom::from_bf16(loom::to_bf16(p[i]));
  return out;
}

const __nv_bfloat16* bf16_ptr(const Tensor& t) { return static_cast<const __nv_bfloat16*>(t.raw()); }
__nv_bfloat16* bf16_ptr(Tensor& t) { return static_cast<__nv_bfloat16*>(t.raw()); }

// max |got - want| <= 2e-2 · max|want| (got downloaded from the GPU).
void expect_close(const std::string& what, const Tensor& got_device, const Tensor& want) {
  const Tensor got = down(got_device);
  BOOST_REQUIRE_EQUAL(got.numel(), want.numel());
  const float* g = got.data<float>();
  const float* w = want.data<float>();
  double scale = 1e-6, err = 0.0;
  std::int64_t worst = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::fabs(static_cast<double>(w[i])));
  for (std::int64_t i = 0; i < want.numel(); ++i) {
    const double e = std::fabs(static_cast<double>(g[i]) - static_cast<double>(w[i]));
    if (!(e <= err)) {  // also catches NaN
      err = e;
      worst = i;
    }
  }
  BOOST_CHECK_MESSAGE(err <= 2e-2 * scale, what << ": max error " << err << " at [" << worst << "] (gpu " << g[worst]
                                                 << ", cpu " << w[worst] << ") exceeds 2e-2 x scale " << scale);
}

void expect_bit_identical(const std::string& what, const Tensor& a_device, const Tensor& b_device) {
  BOOST_REQUIRE_EQUAL(a_device.nbytes(), b_device.nbytes());
  const Tensor a = down(a_device);
  const Tensor b = down(b_device);
  BOOST_CHECK_MESSAGE(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0, what << ": two runs differ");
}

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
  cpu().attention_backward(dout, qkv, rounded(out), lse, s, dqkv);
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
