// Memory ops of the CPU backend: fill, copy, add, scale, sum of squares, finiteness.
// sum_squares adds fixed 8192-element blocks in f64 and then the block sums in order, so
// the gradient norm it feeds (clipping) does not depend on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

namespace {
constexpr std::int64_t kSumBlock = 8192;
constexpr std::int64_t kCopyBlock = 1 << 20;  // bytes per memcpy task
}  // namespace

void CpuBackend::fill(Tensor& x, float value) {
  if (!x.defined() || x.device() != Device::CPU) fail("fill", "x must be a cpu tensor, got " + describe(x));
  const std::int64_t n = x.numel();
  if (x.dtype() == DType::F32) {
    float* p = x.data<float>();
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) p[i] = value;
  } else if (x.dtype() == DType::I32) {
    std::int32_t* p = x.data<std::int32_t>();
    const auto v = static_cast<std::int32_t>(value);
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) p[i] = v;
  } else {
    fail("fill", "x must be f32 or i32, got " + x.describe());
  }
}

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  if (!src.defined() || !dst.defined() || src.device() != Device::CPU || dst.device() != Device::CPU ||
      src.dtype() != dst.dtype() || src.numel() != dst.numel()) {
    fail("copy", "src " + describe(src) + " and dst " + describe(dst) +
                     " must be cpu tensors of one dtype and the same number of elements");
  }
  const auto* from = static_cast<const char*>(src.raw());
  auto* to = static_cast<char*>(dst.raw());
  const auto bytes = static_cast<std::int64_t>(src.nbytes());
  if (from == to || bytes == 0) return;
  if (from < to + bytes && to < from + bytes) {  // overlapping views of one buffer
    std::memmove(to, from, static_cast<std::size_t>(bytes));
    return;
  }
  const std::int64_t blocks = (bytes + kCopyBlock - 1) / kCopyBlock;
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t begin = b * kCopyBlock;
    const std::int64_t len = std::min(kCopyBlock, bytes - begin);
    std::memcpy(to + begin, from + begin, static_cast<std::size_t>(len));
  }
}

void CpuBackend::add_inplace(Tensor& y, const Tensor& x, float alpha) {
  require_f32("add_inplace", "y", y);
  require_numel("add_inplace", "x", x, y.numel(), "y " + y.describe());
  float* yp = y.data<float>();
  const float* xp = x.data<float>();
  const std::int64_t n = y.numel();
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) yp[i] += alpha * xp[i];
}

void CpuBackend::scale_inplace(Tensor& x, float alpha) {
  require_f32("scale_inplace", "x", x);
  float* p = x.data<float>();
  const std::int64_t n = x.numel();
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < n; ++i) p[i] *= alpha;
}

double CpuBackend::sum_squares(const Tensor& x) {
  require_f32("sum_squares", "x", x);
  const float* p = x.data<float>();
  const std::int64_t n = x.numel();
  const std::int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(static_cast<std::size_t>(blocks));
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t begin = b * kSumBlock;
    const std::int64_t end = std::min(n, begin + kSumBlock);
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (std::int64_t i = begin; i < end; ++i) s += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    partial[static_cast<std::size_t>(b)] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

bool CpuBackend::all_finite(const Tensor& x) {
  require_f32("all_finite", "x", x);
  const auto* bits = static_cast<const std::uint32_t*>(x.raw());
  const std::int64_t n = x.numel();
  std::uint32_t non_finite = 0;
#pragma omp parallel for simd schedule(static) reduction(| : non_finite)
  for (std::int64_t i = 0; i < n; ++i) non_finite |= ((bits[i] & 0x7f800000u) == 0x7f800000u) ? 1u : 0u;
  return non_finite == 0;
}

}  // namespace loom::cpu
