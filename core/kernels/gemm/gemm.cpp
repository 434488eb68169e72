#include "core/kernels/gemm/gemm.h"

#if defined(LOOM_GEMM_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
#else
#include <cblas.h>
#endif

namespace loom::cpu {

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc) {
#if defined(LOOM_GEMM_ONEDNN)
  dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda),
              b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
#endif
}

const char* gemm_library() {
#if defined(LOOM_GEMM_ONEDNN)
  return "onednn";
#else
  return "openblas";
#endif
}

}  // namespace loom::cpu
