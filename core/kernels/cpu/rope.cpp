// Rotary position embedding of the CPU backend, in place on the q and k heads of a packed
// qkv (rotate-half form: channel i < d/2 pairs with i + d/2, d = rotary_dim).
// Each call builds its own cos/sin table for its T positions, in f64 then rounded, so long
// positions keep their accuracy and nothing is cached between calls. Backward is the
// inverse rotation (the same table with sin negated). A bf16 qkv is rotated as a staged f32
// copy and rounded back once (bf16_staging.h).
#include <cmath>
#include <vector>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

namespace {

struct RopeTable {
  std::int64_t half = 0;
  std::vector<float> cos;  // [T, half]
  std::vector<float> sin;  // [T, half]
};

RopeTable build_table(const char* op, const AttentionShape& shape, const RopeConfig& rope,
                      std::int64_t position_offset) {
  const std::int64_t d = rope.rotary_dim == 0 ? shape.head_dim : rope.rotary_dim;
  if (d <= 0 || d % 2 != 0 || d > shape.head_dim) {
    fail(op, "rotary_dim " + std::to_string(rope.rotary_dim) + " must be even and at most head_dim " +
                 std::to_string(shape.head_dim));
  }
  if (!(rope.theta > 0.0f)) fail(op, "rope theta must be positive, got " + std::to_string(rope.theta));
  double theta = rope.theta;
  double position_scale = 1.0;
  if (rope.scaling != RopeConfig::Scaling::None) {
    if (!(rope.factor > 0.0f)) fail(op, "rope scaling factor must be positive, got " + std::to_string(rope.factor));
    if (rope.scaling == RopeConfig::Scaling::Linear) {
      position_scale = 1.0 / rope.factor;
    } else {
      if (d <= 2) fail(op, "NTK rope scaling needs rotary_dim > 2, got " + std::to_string(d));
      theta *= std::pow(static_cast<double>(rope.factor), static_cast<double>(d) / static_cast<double>(d - 2));
    }
  }
  RopeTable table;
  table.half = d / 2;
  const std::int64_t t_count = shape.seq;
  table.cos.resize(static_cast<std::size_t>(t_count * table.half));
  table.sin.resize(static_cast<std::size_t>(t_count * table.half));
  std::vector<double> inv_freq(static_cast<std::size_t>(table.half));
  for (std::int64_t i = 0; i < table.half; ++i) {
    inv_freq[static_cast<std::size_t>(i)] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(d));
  }
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(t_count * table.half))
  for (std::int64_t t = 0; t < t_count; ++t) {
    const double position = static_cast<double>(position_offset + t) * position_scale;
    for (std::int64_t i = 0; i < table.half; ++i) {
      const double angle = position * inv_freq[static_cast<std::size_t>(i)];
      table.cos[static_cast<std::size_t>(t * table.half + i)] = static_cast<float>(std::cos(angle));
      table.sin[static_cast<std::size_t>(t * table.half + i)] = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

// Rotates every q and k head by the table's angle times `direction` (+1 forward, -1 inverse).
void rotate(Tensor& qkv, const AttentionShape& shape, const RopeTable& table, float direction) {
  float* base = qkv.data<float>();
  const std::int64_t width = qkv_width(shape);
  const std::int64_t heads = shape.q_heads + shape.kv_heads;  // v heads are not rotated
  const std::int64_t half = table.half;
  const std::int64_t tokens = shape.batch * shape.seq;
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(tokens * heads * half))
  for (std::int64_t token = 0; token < tokens; ++token) {
    const std::int64_t t = token % shape.seq;
    const float* c = table.cos.data() + t * half;
    const float* s = table.sin.data() + t * half;
    for (std::int64_t h = 0; h < heads; ++h) {
      float* x1 = base + token * width + h * shape.head_dim;
      float* x2 = x1 + half;
#pragma omp simd
      for (std::int64_t i = 0; i < half; ++i) {
        const float a = x1[i];
        const float b = x2[i];
        const float sn = direction * s[i];
        x1[i] = a * c[i] - b * sn;
        x2[i] = b * c[i] + a * sn;
      }
    }
  }
}

}  // namespace

void CpuBackend::rope_forward(Tensor& qkv, const AttentionShape& shape, const RopeConfig& rope,
                              std::int64_t position_offset) {
  if (is_bf16(qkv)) {
    Bf16Staging staging("rope_forward");
    Tensor qkv32 = staging.output("qkv", qkv, Bf16Staging::Use::Update);
    return staging.run([&] { rope_forward(qkv32, shape, rope, position_offset); });
  }
  require_attention("rope_forward", shape, "qkv", qkv);
  rotate(qkv, shape, build_table("rope_forward", shape, rope, position_offset), 1.0f);
}

void CpuBackend::rope_backward(Tensor& dqkv, const AttentionShape& shape, const RopeConfig& rope,
                               std::int64_t position_offset) {
  if (is_bf16(dqkv)) {
    Bf16Staging staging("rope_backward");
    Tensor dqkv32 = staging.output("dqkv", dqkv, Bf16Staging::Use::Update);
    return staging.run([&] { rope_backward(dqkv32, shape, rope, position_offset); });
  }
  require_attention("rope_backward", shape, "dqkv", dqkv);
  rotate(dqkv, shape, build_table("rope_backward", shape, rope, position_offset), -1.0f);
}

}  // namespace loom::cpu
