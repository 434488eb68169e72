// The CPU single-precision GEMM every CPU kernel calls: row-major
//   C[M, N] = alpha * op(A) @ op(B) + beta * C,   op(X) = X^T when trans_x,
// with leading dimensions in elements (A is stored [M, K] or, transposed, [K, M]; likewise B
// [K, N] or [N, K]). beta == 0 overwrites C without reading it. Which library runs it
// (OpenBLAS or oneDNN) is fixed at build time by LOOM_GEMM; gemm_library() names it and
// docs/performance.md records the measurement behind the default.
//
// Threads: the library parallelises each call internally (OpenMP pool shared with loom's
// other kernels). Call sgemm from one thread at a time, and not from inside a parallel region.
// Errors: bad dimensions or leading dimensions throw std::invalid_argument naming the argument.
#pragma once

#include <cstdint>

namespace loom::cpu {

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc);

// "openblas" or "onednn".
const char* gemm_library();

// One line naming the library build, e.g. "OpenBLAS 0.3.21 ... core=Cooperlake threading=openmp".
const char* gemm_library_details();

// Sets how many threads each GEMM uses. Also sets the calling thread's OpenMP thread count
// (omp_set_num_threads), because both libraries size their OpenMP regions by it. Set once at
// startup, not per call. threads must be >= 1.
void set_gemm_threads(int threads);

// Times sgemm on the GPT-2 124M training-step GEMMs (one warm-up pass, then passes until about
// 0.3 s have elapsed) with `threads` threads and returns the sustained GFLOP/s. Leaves the
// GEMM thread count at `threads`. Used by the training benchmark to report the machine's
// SGEMM rate measured in the same run.
double measure_sgemm_gflops(int threads);

}  // namespace loom::cpu
