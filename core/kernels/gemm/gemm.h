// The CPU single-precision GEMM every CPU kernel calls: row-major
//   C[M, N] = alpha * op(A) @ op(B) + beta * C,   op(X) = X^T when trans_x,
// with leading dimensions in elements. Which library runs it (OpenBLAS or oneDNN) is fixed
// at build time by LOOM_GEMM; gemm_library() names it. Threads: uses the library's own
// thread pool (OpenMP); call from one thread at a time.
#pragma once

#include <cstdint>

namespace loom::cpu {

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc);

const char* gemm_library();

}  // namespace loom::cpu
