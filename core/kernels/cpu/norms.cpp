// LayerNorm and RMSNorm of the CPU backend over the last dim C, forward and backward.
// Forward is parallel over rows (each row is independent). Backward is parallel over the
// fixed row chunks of kernel_util.h: dx rows are written directly, while dweight/dbias are
// summed per chunk into a [chunks, C] buffer and then added in chunk order, so the result
// is the same on any thread count. Any of dx, dweight, dbias may be undefined (skipped);
// so may layernorm's bias.
// bf16 x, weight, bias, y and gradients run these loops on staged f32 copies
// (bf16_staging.h); mean and rstd are always f32.
#include <cmath>
#include <vector>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

namespace {

struct NormShape {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
};

NormShape check_norm(const char* op, const Tensor& x, const Tensor& weight) {
  require_f32(op, "x", x);
  const NormShape s{rows_of(x), cols_of(x)};
  require_numel(op, "weight", weight, s.cols, "the last dim of x " + x.describe());
  return s;
}

std::vector<float> partials_for(const Tensor& grad, const RowChunks& chunks, std::int64_t cols) {
  return grad.defined() ? std::vector<float>(static_cast<std::size_t>(chunks.count * cols), 0.0f)
                        : std::vector<float>();
}

}  // namespace

void CpuBackend::layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& y,
                                   Tensor& mean, Tensor& rstd) {
  if (is_bf16(x)) {
    Bf16Staging staging("layernorm_forward");
    const Tensor x32 = staging.input("x", x);
    const Tensor weight32 = staging.input("weight", weight);
    const Tensor bias32 = staging.optional_input("bias", bias);
    Tensor y32 = staging.output("y", y, Bf16Staging::Use::Overwrite);
    return staging.run([&] { layernorm_forward(x32, weight32, bias32, eps, y32, mean, rstd); });
  }
  const char* op = "layernorm_forward";
  const NormShape s = check_norm(op, x, weight);
  const std::string ctx = "x " + x.describe();
  if (bias.defined()) require_numel(op, "bias", bias, s.cols, ctx);
  require_matrix(op, "y", y, s.rows, s.cols, ctx);
  require_numel(op, "mean", mean, s.rows, "the rows of " + ctx);
  require_numel(op, "rstd", rstd, s.rows, "the rows of " + ctx);
  const float* xp = x.data<float>();
  const float* wp = weight.data<float>();
  const float* bp = bias.defined() ? bias.data<float>() : nullptr;
  float* yp = y.data<float>();
  float* mp = mean.data<float>();
  float* rp = rstd.data<float>();
  const std::int64_t c = s.cols;
  const float inv_c = 1.0f / static_cast<float>(c);
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(s.rows * c))
  for (std::int64_t r = 0; r < s.rows; ++r) {
    const float* xr = xp + r * c;
    float* yr = yp + r * c;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t i = 0; i < c; ++i) sum += xr[i];
    const float mu = sum * inv_c;
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (std::int64_t i = 0; i < c; ++i) sq += (xr[i] - mu) * (xr[i] - mu);
    const float rs = 1.0f / std::sqrt(sq * inv_c + eps);
    if (bp != nullptr) {
#pragma omp simd
      for (std::int64_t i = 0; i < c; ++i) yr[i] = (xr[i] - mu) * rs * wp[i] + bp[i];
    } else {
#pragma omp simd
      for (std::int64_t i = 0; i < c; ++i) yr[i] = (xr[i] - mu) * rs * wp[i];
    }
    mp[r] = mu;
    rp[r] = rs;
  }
}

void CpuBackend::layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                    const Tensor& rstd, Tensor& dx, Tensor& dweight, Tensor& dbias) {
  if (is_bf16(x)) {
    Bf16Staging staging("layernorm_backward");
    const Tensor x32 = staging.input("x", x);
    const Tensor weight32 = staging.input("weight", weight);
    const Tensor dy32 = staging.input("dy", dy);
    Tensor dx32 = staging.optional_output("dx", dx, Bf16Staging::Use::Update);
    Tensor dweight32 = staging.optional_output("dweight", dweight, Bf16Staging::Use::Update);
    Tensor dbias32 = staging.optional_output("dbias", dbias, Bf16Staging::Use::Update);
    return staging.run([&] { layernorm_backward(dy32, x32, weight32, mean, rstd, dx32, dweight32, dbias32); });
  }
  const char* op = "layernorm_backward";
  const NormShape s = check_norm(op, x, weight);
  const std::string ctx = "x " + x.describe();
  require_matrix(op, "dy", dy, s.rows, s.cols, ctx);
  require_numel(op, "mean", mean, s.rows, "the rows of " + ctx);
  require_numel(op, "rstd", rstd, s.rows, "the rows of " + ctx);
  if (dx.defined()) require_matrix(op, "dx", dx, s.rows, s.cols, ctx);
  if (dweight.defined()) require_numel(op, "dweight", dweight, s.cols, ctx);
  if (dbias.defined()) require_numel(op, "dbias", dbias, s.cols, ctx);

  const std::int64_t c = s.cols;
  const RowChunks chunks = row_chunks(s.rows);
  std::vector<float> dw_part = partials_for(dweight, chunks, c);
  std::vector<float> db_part = partials_for(dbias, chunks, c);
  const float* dyp = dy.data<float>();
  const float* xp = x.data<float>();
  const float* wp = weight.data<float>();
  const float* mp = mean.data<float>();
  const float* rp = rstd.data<float>();
  float* dxp = dx.defined() ? dx.data<float>() : nullptr;
  const float inv_c = 1.0f / static_cast<float>(c);
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(s.rows * c))
  for (std::int64_t k = 0; k < chunks.count; ++k) {
    float* pw = dw_part.empty() ? nullptr : dw_part.data() + k * c;
    float* pb = db_part.empty() ? nullptr : db_part.data() + k * c;
    for (std::int64_t r = chunks.begin(k); r < chunks.end(k); ++r) {
      const float* dyr = dyp + r * c;
      const float* xr = xp + r * c;
      const float mu = mp[r];
      const float rs = rp[r];
      if (dxp != nullptr) {
        float dnorm_sum = 0.0f;
        float dnorm_xhat_sum = 0.0f;
#pragma omp simd reduction(+ : dnorm_sum, dnorm_xhat_sum)
        for (std::int64_t i = 0; i < c; ++i) {
          const float dnorm = dyr[i] * wp[i];
          dnorm_sum += dnorm;
          dnorm_xhat_sum += dnorm * (xr[i] - mu) * rs;
        }
        const float dnorm_mean = dnorm_sum * inv_c;
        const float dnorm_xhat_mean = dnorm_xhat_sum * inv_c;
        float* dxr = dxp + r * c;
#pragma omp simd
        for (std::int64_t i = 0; i < c; ++i) {
          const float xhat = (xr[i] - mu) * rs;
          dxr[i] += (dyr[i] * wp[i] - dnorm_mean - xhat * dnorm_xhat_mean) * rs;
        }
      }
      if (pw != nullptr) {
#pragma omp simd
        for (std::int64_t i = 0; i < c; ++i) pw[i] += dyr[i] * (xr[i] - mu) * rs;
      }
      if (pb != nullptr) {
#pragma omp simd
        for (std::int64_t i = 0; i < c; ++i) pb[i] += dyr[i];
      }
    }
  }
  if (dweight.defined()) add_chunk_partials(dw_part.data(), chunks.count, c, dweight.data<float>());
  if (dbias.defined()) add_chunk_partials(db_part.data(), chunks.count, c, dbias.data<float>());
}

void CpuBackend::rmsnorm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& y, Tensor& rstd) {
  if (is_bf16(x)) {
    Bf16Staging staging("rmsnorm_forward");
    const Tensor x32 = staging.input("x", x);
    const Tensor weight32 = staging.input("weight", weight);
    Tensor y32 = staging.output("y", y, Bf16Staging::Use::Overwrite);
    return staging.run([&] { rmsnorm_forward(x32, weight32, eps, y32, rstd); });
  }
  const char* op = "rmsnorm_forward";
  const NormShape s = check_norm(op, x, weight);
  const std::string ctx = "x " + x.describe();
  require_matrix(op, "y", y, s.rows, s.cols, ctx);
  require_numel(op, "rstd", rstd, s.rows, "the rows of " + ctx);
  const float* xp = x.data<float>();
  const float* wp = weight.data<float>();
  float* yp = y.data<float>();
  float* rp = rstd.data<float>();
  const std::int64_t c = s.cols;
  const float inv_c = 1.0f / static_cast<float>(c);
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(s.rows * c))
  for (std::int64_t r = 0; r < s.rows; ++r) {
    const float* xr = xp + r * c;
    float* yr = yp + r * c;
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (std::int64_t i = 0; i < c; ++i) sq += xr[i] * xr[i];
    const float rs = 1.0f / std::sqrt(sq * inv_c + eps);
#pragma omp simd
    for (std::int64_t i = 0; i < c; ++i) yr[i] = xr[i] * rs * wp[i];
    rp[r] = rs;
  }
}

void CpuBackend::rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                  Tensor& dx, Tensor& dweight) {
  if (is_bf16(x)) {
    Bf16Staging staging("rmsnorm_backward");
    const Tensor x32 = staging.input("x", x);
    const Tensor weight32 = staging.input("weight", weight);
    const Tensor dy32 = staging.input("dy", dy);
    Tensor dx32 = staging.optional_output("dx", dx, Bf16Staging::Use::Update);
    Tensor dweight32 = staging.optional_output("dweight", dweight, Bf16Staging::Use::Update);
    return staging.run([&] { rmsnorm_backward(dy32, x32, weight32, rstd, dx32, dweight32); });
  }
  const char* op = "rmsnorm_backward";
  const NormShape s = check_norm(op, x, weight);
  const std::string ctx = "x " + x.describe();
  require_matrix(op, "dy", dy, s.rows, s.cols, ctx);
  require_numel(op, "rstd", rstd, s.rows, "the rows of " + ctx);
  if (dx.defined()) require_matrix(op, "dx", dx, s.rows, s.cols, ctx);
  if (dweight.defined()) require_numel(op, "dweight", dweight, s.cols, ctx);

  const std::int64_t c = s.cols;
  const RowChunks chunks = row_chunks(s.rows);
  std::vector<float> dw_part = partials_for(dweight, chunks, c);
  const float* dyp = dy.data<float>();
  const float* xp = x.data<float>();
  const float* wp = weight.data<float>();
  const float* rp = rstd.data<float>();
  float* dxp = dx.defined() ? dx.data<float>() : nullptr;
  const float inv_c = 1.0f / static_cast<float>(c);
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(s.rows * c))
  for (std::int64_t k = 0; k < chunks.count; ++k) {
    float* pw = dw_part.empty() ? nullptr : dw_part.data() + k * c;
    for (std::int64_t r = chunks.begin(k); r < chunks.end(k); ++r) {
      const float* dyr = dyp + r * c;
      const float* xr = xp + r * c;
      const float rs = rp[r];
      if (dxp != nullptr) {
        float dnorm_xhat_sum = 0.0f;
#pragma omp simd reduction(+ : dnorm_xhat_sum)
        for (std::int64_t i = 0; i < c; ++i) dnorm_xhat_sum += dyr[i] * wp[i] * xr[i] * rs;
        const float dnorm_xhat_mean = dnorm_xhat_sum * inv_c;
        float* dxr = dxp + r * c;
#pragma omp simd
        for (std::int64_t i = 0; i < c; ++i) dxr[i] += (dyr[i] * wp[i] - xr[i] * rs * dnorm_xhat_mean) * rs;
      }
      if (pw != nullptr) {
#pragma omp simd
        for (std::int64_t i = 0; i < c; ++i) pw[i] += dyr[i] * xr[i] * rs;
      }
    }
  }
  if (dweight.defined()) add_chunk_partials(dw_part.data(), chunks.count, c, dweight.data<float>());
}

}  // namespace loom::cpu
