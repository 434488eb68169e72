// The two CPU GEMM libraries loom can run on, each behind the same row-major signature as
// loom::cpu::sgemm (gemm.h). loom_gemm calls the one LOOM_GEMM names; bench-gemm links both
// and times exactly these functions, so the benchmark measures the code loom runs.
//
// Arguments are assumed already validated (gemm.cpp's sgemm checks them). Each library keeps
// process-wide state (OpenBLAS's thread count, oneDNN's primitive cache below): call from one
// thread at a time. The *_set_threads functions also set the calling thread's OpenMP thread
// count, since both oneDNN and OpenMP-built OpenBLAS size their parallel regions by it.
#pragma once

#include <cstdint>
#include <string>

namespace loom::cpu::gemm_backend {

// OpenBLAS's cblas_sgemm. Dimensions must fit in int (OpenBLAS's LP64 interface).
void openblas_sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                    float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                    float beta, float* c, std::int64_t ldc);
void openblas_set_threads(int threads);
// e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64 (openmp)".
std::string openblas_describe();
// "pthread", "openmp" or "serial": how the loaded libopenblas.so.0 was built.
std::string openblas_threading();

// oneDNN's dnnl_sgemm (its BLAS-like entry point; packs both operands on every call).
void onednn_sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                  float beta, float* c, std::int64_t ldc);
// oneDNN's matmul primitive, created once per (shape, transposes, leading dims, alpha, beta)
// and reused: alpha is an output scale, beta a sum post-op. The cache is bounded
// (onednn_matmul_cache_limit entries; it is emptied when full).
void onednn_matmul(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                   float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                   float beta, float* c, std::int64_t ldc);
inline constexpr std::size_t onednn_matmul_cache_limit = 256;
// The implementation oneDNN picks for a matmul of this shape, e.g. "brg:avx512_core".
std::string onednn_matmul_impl(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
                               std::int64_t k);
// What loom runs with LOOM_GEMM=onednn: the cached matmul primitive when only B is transposed
// (every forward y = x·Wᵀ), dnnl_sgemm for the other layouts (the backward GEMMs), each the
// faster of the two there in bench-gemm's measurements (docs/performance.md).
void onednn_hybrid(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                   float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                   float beta, float* c, std::int64_t ldc);
void onednn_set_threads(int threads);
// e.g. "oneDNN 2.6.3 (cpu runtime omp)".
std::string onednn_describe();

}  // namespace loom::cpu::gemm_backend
