// Counter-based dropout of the CPU backend (see Backend::dropout_forward). Each element's
// keep bit is hashed from its global (token, feature) index rather than drawn from a
// sequential stream, so the loop parallelises freely and any slice of a tensor (a tp rank's
// columns, a data-parallel rank's rows) sees the mask the whole tensor would.
// bf16 tensors run the f32 loop on staged copies (bf16_staging.h).
#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/mix64.h"

namespace loom::cpu {

using namespace detail;

void CpuBackend::dropout_forward(const Tensor& x, Tensor& y, const DropoutArgs& args, bool accumulate) {
  if (is_bf16(x)) {
    Bf16Staging staging("dropout_forward");
    const Tensor x32 = staging.input("x", x);
    Tensor y32 = staging.output("y", y, accumulate ? Bf16Staging::Use::Update : Bf16Staging::Use::Overwrite);
    return staging.run([&] { dropout_forward(x32, y32, args, accumulate); });
  }
  require_f32("dropout_forward", "x", x);
  require_numel("dropout_forward", "y", y, x.numel(), "x " + x.describe());
  if (!(args.p >= 0.0f && args.p < 1.0f)) {
    fail("dropout_forward", "p must be in [0, 1), got " + std::to_string(args.p));
  }
  const std::int64_t rows = rows_of(x), cols = cols_of(x);
  if (args.features < args.feature0 + cols) {
    fail("dropout_forward", "features " + std::to_string(args.features) + " cannot hold columns [" +
                                std::to_string(args.feature0) + ", " + std::to_string(args.feature0 + cols) + ")");
  }
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  const float keep_scale = 1.0f / (1.0f - args.p);
  // keep when u >= p, u = bits / 2^53: compare the 53-bit integer against p · 2^53.
  const auto threshold = static_cast<std::uint64_t>(static_cast<double>(args.p) * 9007199254740992.0);
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(rows * cols))
  for (std::int64_t n = 0; n < rows; ++n) {
    const std::uint64_t base = args.key + static_cast<std::uint64_t>((args.token0 + n) * args.features + args.feature0);
    const float* xr = xp + n * cols;
    float* yr = yp + n * cols;
    for (std::int64_t j = 0; j < cols; ++j) {
      const bool keep = (mix64(base + static_cast<std::uint64_t>(j)) >> 11) >= threshold;
      const float v = keep ? xr[j] * keep_scale : 0.0f;
      yr[j] = accumulate ? yr[j] + v : v;
    }
  }
}

}  // namespace loom::cpu
