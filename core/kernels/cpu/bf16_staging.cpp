// Bf16Staging (bf16_staging.h): bf16 <-> f32 scratch copies around the CPU backend's f32 ops.
#include "core/kernels/cpu/bf16_staging.h"

#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu::detail {

namespace {

void widen(const bf16* from, float* to, std::int64_t n) {
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t i = 0; i < n; ++i) to[i] = from_bf16(from[i]);
}

void narrow(const float* from, bf16* to, std::int64_t n) {
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n))
  for (std::int64_t i = 0; i < n; ++i) to[i] = to_bf16(from[i]);
}

}  // namespace

Tensor Bf16Staging::input(const char* name, const Tensor& t) { return stage(name, t, true, false); }

Tensor Bf16Staging::optional_input(const char* name, const Tensor& t) {
  return t.defined() ? input(name, t) : Tensor();
}

Tensor Bf16Staging::output(const char* name, Tensor& t, Use use) { return stage(name, t, use == Use::Update, true); }

Tensor Bf16Staging::optional_output(const char* name, Tensor& t, Use use) {
  return t.defined() ? output(name, t, use) : Tensor();
}

Tensor Bf16Staging::stage(const char* name, const Tensor& t, bool read, bool written) {
  require(op_, name, t, DType::BF16);
  const auto* begin = static_cast<const char*>(t.raw());
  const auto bytes = static_cast<std::int64_t>(t.nbytes());
  for (Entry& e : entries_) {
    const auto* other = static_cast<const char*>(e.original.raw());
    const auto other_bytes = static_cast<std::int64_t>(e.original.nbytes());
    if (bytes == 0 || other_bytes == 0) continue;
    if (other == begin && other_bytes == bytes) {
      if (read && !e.filled) {
        widen(t.data<bf16>(), e.scratch.data<float>(), t.numel());
        e.filled = true;
      }
      e.written = e.written || written;
      return e.scratch.reshape(t.shape());
    }
    if ((written || e.written) && begin < other + other_bytes && other < begin + bytes) {
      fail(op_, std::string(name) + " " + t.describe() + " partly overlaps " + e.name + " " +
                    e.original.describe() + "; bf16 tensors of one call must alias exactly or not at all");
    }
  }
  Tensor scratch = Tensor::empty(t.shape(), DType::F32);
  if (read) widen(t.data<bf16>(), scratch.data<float>(), t.numel());
  entries_.push_back(Entry{name, t, scratch, read, written});
  return scratch;
}

void Bf16Staging::write_back() {
  for (Entry& e : entries_) {
    if (e.written) narrow(e.scratch.data<float>(), e.original.data<bf16>(), e.original.numel());
  }
}

}  // namespace loom::cpu::detail
