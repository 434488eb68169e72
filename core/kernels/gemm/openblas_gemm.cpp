#include <cblas.h>
#include <omp.h>

#include <string>

#include "core/kernels/gemm/gemm_backends.h"

namespace loom::cpu::gemm_backend {

void openblas_sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                    float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                    float beta, float* c, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void openblas_set_threads(int threads) {
  // The OpenMP build re-reads omp_get_max_threads() on every call and resizes to it, so
  // setting only OpenBLAS's own count would be undone at the next GEMM.
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
}

std::string openblas_threading() {
  switch (openblas_get_parallel()) {
    case 0: return "serial";
    case 1: return "pthread";
    case 2: return "openmp";
    default: return "unknown";
  }
}

std::string openblas_describe() {
  std::string config = openblas_get_config();
  while (!config.empty() && config.back() == ' ') config.pop_back();
  return config + " core=" + openblas_get_corename() + " threading=" + openblas_threading();
}

}  // namespace loom::cpu::gemm_backend
