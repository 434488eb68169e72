// Rotary position embedding of the CUDA backend, in place on the q and k heads of a packed
// qkv (rotate-half form: channel i < d/2 pairs with i + d/2, d = rotary_dim), as the CPU
// backend (core/kernels/cpu/rope.cpp): each call builds a cos/sin table for its T positions
// in f64 and rounds it to f32, so long positions keep their accuracy, then rotates every
// q and k head. Backward is the inverse rotation (sin negated).
#include <cuda_bf16.h>

#include <cmath>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;

struct RopeParams {
  std::int64_t half = 0;
  double theta = 0.0;
  double position_scale = 1.0;
  std::int64_t rotary_dim = 0;
};

RopeParams rope_params(const char* op, const AttentionShape& shape, const RopeConfig& rope) {
  const std::int64_t d = rope.rotary_dim == 0 ? shape.head_dim : rope.rotary_dim;
  if (d <= 0 || d % 2 != 0 || d > shape.head_dim) {
    fail(op, "rotary_dim " + std::to_string(rope.rotary_dim) + " must be even and at most head_dim " +
                 std::to_string(shape.head_dim));
  }
  if (!(rope.theta > 0.0f)) fail(op, "rope theta must be positive, got " + std::to_string(rope.theta));
  RopeParams p;
  p.theta = rope.theta;
  p.rotary_dim = d;
  p.half = d / 2;
  if (rope.scaling != RopeConfig::Scaling::None) {
    if (!(rope.factor > 0.0f)) fail(op, "rope scaling factor must be positive, got " + std::to_string(rope.factor));
    if (rope.scaling == RopeConfig::Scaling::Linear) {
      p.position_scale = 1.0 / rope.factor;
    } else {
      if (d <= 2) fail(op, "NTK rope scaling needs rotary_dim > 2, got " + std::to_string(d));
      p.theta *= std::pow(static_cast<double>(rope.factor), static_cast<double>(d) / static_cast<double>(d - 2));
    }
  }
  return p;
}

// table[t * half + i] = {cos, sin} of position (offset + t) · scale · theta^(-2i/d).
__global__ void rope_table_kernel(float2* table, std::int64_t seq, std::int64_t half, std::int64_t rotary_dim,
                                  double theta, double position_scale, std::int64_t position_offset) {
  const std::int64_t n = seq * half;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t t = e / half;
    const std::int64_t i = e % half;
    const double inv_freq = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dim));
    const double position = static_cast<double>(position_offset + t) * position_scale;
    const double angle = position * inv_freq;
    table[e] = make_float2(static_cast<float>(cos(angle)), static_cast<float>(sin(angle)));
  }
}

// One thread per (token, rotated head, pair i).
template <typename T>
__global__ void rope_rotate_kernel(T* qkv, const float2* table, std::int64_t tokens, std::int64_t seq,
                                   std::int64_t heads, std::int64_t head_dim, std::int64_t width, std::int64_t half,
                                   float direction) {
  const std::int64_t n = tokens * heads * half;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e % half;
    const std::int64_t h = (e / half) % heads;
    const std::int64_t token = e / (half * heads);
    const float2 cs = table[(token % seq) * half + i];
    T* x1 = qkv + token * width + h * head_dim + i;
    T* x2 = x1 + half;
    const float a = load(x1);
    const float b = load(x2);
    const float sn = direction * cs.y;
    store(x1, a * cs.x - b * sn);
    store(x2, b * cs.x + a * sn);
  }
}

void rotate(const char* op, Tensor& qkv, const AttentionShape& shape, const RopeConfig& rope,
            std::int64_t position_offset, float direction, cudaStream_t stream) {
  const DType dtype = require_attention(op, shape, "qkv", qkv);
  const RopeParams p = rope_params(op, shape, rope);
  Tensor table = Tensor::empty({shape.seq * p.half * 2}, DType::F32, Device::CUDA);
  auto* tp = static_cast<float2*>(table.raw());
  rope_table_kernel<<<grid_for(shape.seq * p.half, kThreads), kThreads, 0, stream>>>(
      tp, shape.seq, p.half, p.rotary_dim, p.theta, p.position_scale, position_offset);
  LOOM_CUDA_CHECK_LAUNCH();
  const std::int64_t tokens = shape.batch * shape.seq;
  const std::int64_t heads = shape.q_heads + shape.kv_heads;  // v heads are not rotated
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    rope_rotate_kernel<<<grid_for(tokens * heads * p.half, kThreads), kThreads, 0, stream>>>(
        ptr<T>(qkv), tp, tokens, shape.seq, heads, shape.head_dim, qkv_width(shape), p.half, direction);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void CudaBackend::rope_forward(Tensor& qkv, const AttentionShape& shape, const RopeConfig& rope,
                               std::int64_t position_offset) {
  rotate("rope_forward", qkv, shape, rope, position_offset, 1.0f, stream_);
}

void CudaBackend::rope_backward(Tensor& dqkv, const AttentionShape& shape, const RopeConfig& rope,
                                std::int64_t position_offset) {
  rotate("rope_backward", dqkv, shape, rope, position_offset, -1.0f, stream_);
}

}  // namespace loom::cuda
