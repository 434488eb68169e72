// Memory ops of the CPU backend: fill, copy, add, scale, sum of squares, finiteness.
// sum_squares adds fixed 8192-element blocks in f64 and then the block sums in order, so
// the gradient norm it feeds (clipping) does not depend on the thread count.
//
// bf16 tensors: fill and copy handle them directly (copy converts f32 <-> bf16 with
// loom::to_bf16 / from_bf16); the other ops run their f32 loops on staged copies
// (bf16_staging.h).
//
// These ops are memory-bound on large buffers (a model's 0.5 GB gradient). Filling with
// zeros goes through memset on one contiguous range per thread: glibc streams large ranges
// past the cache instead of reading every line before writing it, 3x faster than a store
// loop on the GPT-2 124M gradient (docs/performance.md). sum_squares keeps four independent
// f64 accumulators so it runs at read bandwidth rather than at the latency of one add chain.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

namespace {
constexpr std::int64_t kSumBlock = 8192;
constexpr std::int64_t kCopyBlock = 1 << 20;  // bytes per memcpy task

using Floats8 = float __attribute__((vector_size(8 * sizeof(float))));
using Doubles8 = double __attribute__((vector_size(8 * sizeof(double))));

// Σ p[i]² over [0, n) in f64: four 8-lane accumulators, then the lanes in a fixed order.
double block_sum_squares(const float* p, std::int64_t n) {
  Doubles8 acc[4] = {};
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int u = 0; u < 4; ++u) {
      Floats8 x;
      std::memcpy(&x, p + i + 8 * u, sizeof x);
      const Doubles8 d = __builtin_convertvector(x, Doubles8);
      acc[u] += d * d;
    }
  }
  const Doubles8 total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  double s = 0.0;
  for (int lane = 0; lane < 8; ++lane) s += total[lane];
  for (; i < n; ++i) s += static_cast<double>(p[i]) * static_cast<double>(p[i]);
  return s;
}

// memset of [0, bytes) split into one contiguous range per thread.
void parallel_zero(void* data, std::int64_t bytes) {
  auto* base = static_cast<char*>(data);
#pragma omp parallel
  {
    const std::int64_t threads = omp_get_num_threads();
    const std::int64_t t = omp_get_thread_num();
    const std::int64_t begin = bytes * t / threads / 64 * 64;
    const std::int64_t end = t + 1 == threads ? bytes : bytes * (t + 1) / threads / 64 * 64;
    if (end > begin) std::memset(base + begin, 0, static_cast<std::size_t>(end - begin));
  }
}

// Zero-filling a buffer this small is cheaper on the calling thread than waking others.
constexpr std::int64_t kParallelZeroBytes = 1 << 20;

bool is_float(DType dtype) { return dtype == DType::F32 || dtype == DType::BF16; }

// dst = src with f32 <-> bf16 conversion (to_bf16 rounds to nearest even).
void convert(const Tensor& src, Tensor& dst) {
  const auto* from = static_cast<const char*>(src.raw());
  const auto* to = static_cast<const char*>(dst.raw());
  if (from < to + dst.nbytes() && to < from + src.nbytes()) {  // overlapping views: convert a copy
    const Tensor staged = src.clone();
    convert(staged, dst);
    return;
  }
  const std::int64_t n = src.numel();
  if (src.dtype() == DType::F32) {
    const float* s = src.data<float>();
    bf16* d = dst.data<bf16>();
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n))
    for (std::int64_t i = 0; i < n; ++i) d[i] = to_bf16(s[i]);
  } else {
    const bf16* s = src.data<bf16>();
    float* d = dst.data<float>();
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n))
    for (std::int64_t i = 0; i < n; ++i) d[i] = from_bf16(s[i]);
  }
}

}  // namespace

void CpuBackend::fill(Tensor& x, float value) {
  if (!x.defined() || x.device() != Device::CPU) fail("fill", "x must be a cpu tensor, got " + describe(x));
  const std::int64_t n = x.numel();
  const bool zero_bits = value == 0.0f && !std::signbit(value);
  if (zero_bits && (x.dtype() == DType::F32 || x.dtype() == DType::I32 || x.dtype() == DType::BF16)) {
    const auto bytes = static_cast<std::int64_t>(x.nbytes());
    if (bytes >= kParallelZeroBytes) {
      parallel_zero(x.raw(), bytes);
    } else if (bytes > 0) {
      std::memset(x.raw(), 0, static_cast<std::size_t>(bytes));
    }
  } else if (x.dtype() == DType::F32) {
    float* p = x.data<float>();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
    for (std::int64_t i = 0; i < n; ++i) p[i] = value;
  } else if (x.dtype() == DType::I32) {
    std::int32_t* p = x.data<std::int32_t>();
    const auto v = static_cast<std::int32_t>(value);
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
    for (std::int64_t i = 0; i < n; ++i) p[i] = v;
  } else if (x.dtype() == DType::BF16) {
    bf16* p = x.data<bf16>();
    const bf16 v = to_bf16(value);
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
    for (std::int64_t i = 0; i < n; ++i) p[i] = v;
  } else {
    fail("fill", "x must be f32, bf16 or i32, got " + x.describe());
  }
}

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  const bool defined = src.defined() && dst.defined();
  const bool converted = defined && src.dtype() != dst.dtype() && is_float(src.dtype()) && is_float(dst.dtype());
  if (!defined || src.device() != Device::CPU || dst.device() != Device::CPU ||
      (src.dtype() != dst.dtype() && !converted) || src.numel() != dst.numel()) {
    fail("copy", "src " + describe(src) + " and dst " + describe(dst) +
                     " must be cpu tensors of the same number of elements and one dtype (or be f32/bf16, converted)");
  }
  if (converted) return convert(src, dst);
  const auto* from = static_cast<const char*>(src.raw());
  auto* to = static_cast<char*>(dst.raw());
  const auto bytes = static_cast<std::int64_t>(src.nbytes());
  if (from == to || bytes == 0) return;
  if (from < to + bytes && to < from + bytes) {  // overlapping views of one buffer
    std::memmove(to, from, static_cast<std::size_t>(bytes));
    return;
  }
  const std::int64_t blocks = (bytes + kCopyBlock - 1) / kCopyBlock;
#pragma omp parallel for schedule(static) if(parallel : blocks > 1)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t begin = b * kCopyBlock;
    const std::int64_t len = std::min(kCopyBlock, bytes - begin);
    std::memcpy(to + begin, from + begin, static_cast<std::size_t>(len));
  }
}

void CpuBackend::add_inplace(Tensor& y, const Tensor& x, float alpha) {
  if (is_bf16(y)) {
    Bf16Staging staging("add_inplace");
    Tensor y32 = staging.output("y", y, Bf16Staging::Use::Update);
    const Tensor x32 = staging.input("x", x);
    return staging.run([&] { add_inplace(y32, x32, alpha); });
  }
  require_f32("add_inplace", "y", y);
  require_numel("add_inplace", "x", x, y.numel(), "y " + y.describe());
  float* yp = y.data<float>();
  const float* xp = x.data<float>();
  const std::int64_t n = y.numel();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t i = 0; i < n; ++i) yp[i] += alpha * xp[i];
}

void CpuBackend::scale_inplace(Tensor& x, float alpha) {
  if (is_bf16(x)) {
    Bf16Staging staging("scale_inplace");
    Tensor x32 = staging.output("x", x, Bf16Staging::Use::Update);
    return staging.run([&] { scale_inplace(x32, alpha); });
  }
  require_f32("scale_inplace", "x", x);
  float* p = x.data<float>();
  const std::int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t i = 0; i < n; ++i) p[i] *= alpha;
}

double CpuBackend::sum_squares(const Tensor& x) {
  if (is_bf16(x)) return sum_squares(Bf16Staging("sum_squares").input("x", x));
  require_f32("sum_squares", "x", x);
  const float* p = x.data<float>();
  const std::int64_t n = x.numel();
  const std::int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(static_cast<std::size_t>(blocks));
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t begin = b * kSumBlock;
    const std::int64_t end = std::min(n, begin + kSumBlock);
    partial[static_cast<std::size_t>(b)] = block_sum_squares(p + begin, end - begin);
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

bool CpuBackend::all_finite(const Tensor& x) {
  if (is_bf16(x)) return all_finite(Bf16Staging("all_finite").input("x", x));
  require_f32("all_finite", "x", x);
  const auto* bits = static_cast<const std::uint32_t*>(x.raw());
  const std::int64_t n = x.numel();
  std::uint32_t non_finite = 0;
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(n)) reduction(| : non_finite)
  for (std::int64_t i = 0; i < n; ++i) non_finite |= ((bits[i] & 0x7f800000u) == 0x7f800000u) ? 1u : 0u;
  return non_finite == 0;
}

}  // namespace loom::cpu
