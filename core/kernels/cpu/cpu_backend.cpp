// The CpuBackend factory and the argument checks every CPU kernel shares (kernel_util.h).
#include "core/kernels/cpu/cpu_backend.h"

#include <stdexcept>

#include "core/kernels/cpu/kernel_util.h"
#include "core/kernels/gemm/gemm.h"

namespace loom {

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<cpu::CpuBackend>(); }

namespace cpu {

std::string CpuBackend::name() const {
  return std::string("cpu (f32 arithmetic, f32/bf16 storage, gemm: ") + gemm_library() + ")";
}

namespace detail {

void fail(const char* op, const std::string& message) {
  throw std::invalid_argument(std::string("cpu backend ") + op + ": " + message);
}

std::string describe(const Tensor& t) { return t.defined() ? t.describe() : std::string("undefined"); }

void require(const char* op, const char* name, const Tensor& t, DType dtype) {
  if (!t.defined() || t.device() != Device::CPU || t.dtype() != dtype) {
    fail(op, std::string(name) + " must be a " + dtype_name(dtype) + " cpu tensor, got " + describe(t));
  }
}

void require_matrix(const char* op, const char* name, const Tensor& t, std::int64_t rows, std::int64_t cols,
                    const std::string& context) {
  require_f32(op, name, t);
  if (cols_of(t) != cols || rows_of(t) != rows) {
    fail(op, std::string(name) + " is " + t.describe() + ", expected " + std::to_string(rows) + " rows of " +
                 std::to_string(cols) + " (leading dims flattened) to match " + context);
  }
}

void require_numel(const char* op, const char* name, const Tensor& t, std::int64_t numel,
                   const std::string& context) {
  require_f32(op, name, t);
  if (t.numel() != numel) {
    fail(op, std::string(name) + " is " + t.describe() + ", expected " + std::to_string(numel) +
                 " elements to match " + context);
  }
}

void require_attention(const char* op, const AttentionShape& s, const char* qkv_name, const Tensor& qkv) {
  if (s.batch <= 0 || s.seq <= 0 || s.q_heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 ||
      s.q_heads % s.kv_heads != 0) {
    fail(op, "bad AttentionShape batch=" + std::to_string(s.batch) + " seq=" + std::to_string(s.seq) +
                 " q_heads=" + std::to_string(s.q_heads) + " kv_heads=" + std::to_string(s.kv_heads) +
                 " head_dim=" + std::to_string(s.head_dim) +
                 " (all must be positive and q_heads a multiple of kv_heads)");
  }
  require_numel(op, qkv_name, qkv, s.batch * s.seq * qkv_width(s),
                "[batch, seq, (q_heads + 2 kv_heads) * head_dim] = [" + std::to_string(s.batch) + ", " +
                    std::to_string(s.seq) + ", " + std::to_string(qkv_width(s)) + "]");
}

void add_chunk_partials(const float* partials, std::int64_t count, std::int64_t cols, float* out) {
#pragma omp parallel for simd schedule(static) if(parallel : worth_parallel(count * cols))
  for (std::int64_t c = 0; c < cols; ++c) {
    float s = 0.0f;
    for (std::int64_t k = 0; k < count; ++k) s += partials[k * cols + c];
    out[c] += s;
  }
}

}  // namespace detail
}  // namespace cpu
}  // namespace loom
