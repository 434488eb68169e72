// bench-attention: causal attention forward and backward on GPU 0 at training shapes, the
// tensor-core kernels (core/kernels/cuda/attention_tc.h, called directly) against the SIMT
// ones (CudaBackend::attention_forward/backward with LOOM_CUDA_ATTENTION=simt set before the
// backend is made). bf16, B = 16, T = 1024, (Hq, Hkv, D) = (12, 12, 64) GPT-2 124M,
// (16, 16, 64) GPT-2 350M and (32, 8, 128) a grouped-query Llama-style layer.
//
// Each figure is the median of 10 cudaEvent-timed calls after 3 warm-ups. TFLOP/s counts
// causal FLOPs: forward 2·2·B·Hq·T²·D/2 (QKᵀ and PV over half the score matrix), backward
// 2.5x forward. Backward adds into one dqkv over and over: its values drift, its time does
// not. Each shape also reports the largest |out| and |lse| difference between the two paths,
// a first sanity check on a new GPU. Prints one JSON object; without a GPU it prints
// {"benchmark":"attention","skipped":"<reason>"} and exits 0.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/kernels/cuda/attention_tc.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/cuda_stream.h"
#include "core/mix64.h"
#include "core/tensor.h"

namespace {

using loom::AttentionShape;
using loom::Backend;
using loom::Device;
using loom::DType;
using loom::Tensor;
using nlohmann::json;

constexpr int kWarmups = 3;
constexpr int kRuns = 10;

// Milliseconds of one call of `fn` on `stream`: the median of kRuns after kWarmups.
double time_ms(cudaStream_t stream, const std::function<void()>& fn) {
  for (int i = 0; i < kWarmups; ++i) fn();
  cudaEvent_t start = nullptr, stop = nullptr;
  LOOM_CUDA_CHECK(cudaEventCreate(&start));
  LOOM_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> samples;
  for (int i = 0; i < kRuns; ++i) {
    LOOM_CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    LOOM_CUDA_CHECK(cudaEventRecord(stop, stream));
    LOOM_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    LOOM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    samples.push_back(ms);
  }
  LOOM_CUDA_CHECK(cudaEventDestroy(start));
  LOOM_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(samples.begin(), samples.end());
  return (samples[kRuns / 2 - 1] + samples[kRuns / 2]) / 2.0;
}

// A bf16 GPU tensor of uniform values in [-scale, scale) from `seed`.
Tensor random_device(Backend& backend, const loom::Shape& shape, std::uint64_t seed, float scale) {
  Tensor host = Tensor::empty(shape);
  float* p = host.data<float>();
  for (std::int64_t i = 0; i < host.numel(); ++i) {
    const auto bits = loom::mix64(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(i)) >> 40;
    p[i] = scale * (2.0f * static_cast<float>(bits) / 16777216.0f - 1.0f);
  }
  Tensor device = Tensor::empty(shape, DType::BF16, Device::CUDA);
  backend.copy(host, device);
  return device;
}

double max_abs_difference(Backend& backend, const Tensor& a, const Tensor& b) {
  Tensor ha = Tensor::empty(a.shape()), hb = Tensor::empty(b.shape());
  backend.copy(a, ha);
  backend.copy(b, hb);
  double worst = 0.0;
  for (std::int64_t i = 0; i < ha.numel(); ++i) {
    const double d = std::fabs(static_cast<double>(ha.data<float>()[i]) - hb.data<float>()[i]);
    if (!(d <= worst)) worst = d;  // NaN wins
  }
  return worst;
}

json path_result(double ms, double flops) { return json{{"ms", ms}, {"tflops", flops / (ms * 1e-3) / 1e12}}; }

json bench_shape(Backend& backend, const AttentionShape& s) {
  namespace tc = loom::cuda::detail;
  const cudaStream_t stream = loom::cuda::stream_of(backend);
  const std::int64_t width = (s.q_heads + 2 * s.kv_heads) * s.head_dim;
  const loom::Shape out_shape{s.batch, s.seq, s.q_heads * s.head_dim};
  const Tensor qkv = random_device(backend, {s.batch, s.seq, width}, 1, 1.0f);
  const Tensor dout = random_device(backend, out_shape, 2, 1.0f);
  Tensor dqkv = random_device(backend, {s.batch, s.seq, width}, 3, 1.0f);
  Tensor out_simt = Tensor::empty(out_shape, DType::BF16, Device::CUDA);
  Tensor out_tc = Tensor::empty(out_shape, DType::BF16, Device::CUDA);
  Tensor lse_simt = Tensor::empty({s.batch, s.q_heads, s.seq}, DType::F32, Device::CUDA);
  Tensor lse_tc = Tensor::empty({s.batch, s.q_heads, s.seq}, DType::F32, Device::CUDA);
  Tensor scratch = Tensor::empty({tc::attention_backward_tc_scratch(s)}, DType::F32, Device::CUDA);
  const auto* qkv_p = static_cast<const __nv_bfloat16*>(qkv.raw());
  const auto* dout_p = static_cast<const __nv_bfloat16*>(dout.raw());
  auto* out_tc_p = static_cast<__nv_bfloat16*>(out_tc.raw());
  auto* lse_tc_p = static_cast<float*>(lse_tc.raw());

  const double forward_flops = 2.0 * s.batch * s.q_heads * static_cast<double>(s.seq) * s.seq * s.head_dim;
  const double backward_flops = 2.5 * forward_flops;
  const double simt_forward = time_ms(stream, [&] { backend.attention_forward(qkv, s, out_simt, lse_simt); });
  const double tc_forward = time_ms(stream, [&] { tc::attention_forward_tc(qkv_p, s, out_tc_p, lse_tc_p, stream); });
  const double simt_backward =
      time_ms(stream, [&] { backend.attention_backward(dout, qkv, out_simt, lse_simt, s, dqkv); });
  const double tc_backward = time_ms(stream, [&] {
    tc::attention_backward_tc(dout_p, qkv_p, out_tc_p, lse_tc_p, s, static_cast<__nv_bfloat16*>(dqkv.raw()),
                              static_cast<float*>(scratch.raw()), stream);
  });
  return json{{"batch", s.batch},
              {"seq", s.seq},
              {"q_heads", s.q_heads},
              {"kv_heads", s.kv_heads},
              {"head_dim", s.head_dim},
              {"forward", {{"simt", path_result(simt_forward, forward_flops)},
                           {"tensor_core", path_result(tc_forward, forward_flops)}}},
              {"backward", {{"simt", path_result(simt_backward, backward_flops)},
                            {"tensor_core", path_result(tc_backward, backward_flops)}}},
              {"out_max_abs_diff", max_abs_difference(backend, out_simt, out_tc)},
              {"lse_max_abs_diff", max_abs_difference(backend, lse_simt, lse_tc)}};
}

}  // namespace

int main() {
  json result{{"benchmark", "attention"}};
  if (loom::cuda::device_count() == 0) {
    result["skipped"] = loom::cuda::unavailable_reason();
    std::cout << result.dump() << std::endl;
    return 0;
  }
  try {
    // The backend's own attention must stay on the SIMT kernels for the comparison.
    setenv("LOOM_CUDA_ATTENTION", "simt", 1);
    std::unique_ptr<Backend> backend = loom::cuda::make_cuda_backend(0);
    result["device"] = loom::cuda::device_name(0);
    result["dtype"] = "bf16";
    result["timing"] = "median of 10 cudaEvent-timed calls after 3 warm-ups";
    const AttentionShape shapes[] = {{16, 1024, 12, 12, 64}, {16, 1024, 16, 16, 64}, {16, 1024, 32, 8, 128}};
    json rows = json::array();
    for (const AttentionShape& s : shapes) rows.push_back(bench_shape(*backend, s));
    result["shapes"] = rows;
  } catch (const std::exception& e) {
    std::cerr << "bench-attention: " << e.what() << std::endl;
    return 1;
  }
  std::cout << result.dump(2) << std::endl;
  return 0;
}
