// GEMM-shaped ops of the CUDA backend: matmul and the linear layer on cuBLASLt.
//
// loom is row-major and cuBLASLt column-major: a row-major [r, c] matrix is the column-major
// [c, r] matrix with the same memory, so c = op(a) op(b) is computed as cᵀ = op(b)ᵀ op(a)ᵀ,
// i.e. cuBLASLt's "A" is loom's b and its "B" is loom's a, with the same transpose flags.
// f32 operands compute in pure fp32 (CUBLAS_COMPUTE_32F, never TF32: parity with the CPU
// backend), bf16 operands store bf16 and accumulate in fp32. Descriptors and the heuristic's
// algorithm are cached per (dtype, shape, leading dims, pointer alignment); a fixed algorithm
// on a fixed GPU gives bit-identical results run to run.
//
// linear_forward adds its bias in the GEMM's epilogue (CUBLASLT_EPILOGUE_BIAS: one pass
// over y instead of two, and in bf16 one rounding of x·Wᵀ + b, as the CPU backend's staged
// bf16 does); a bias that is not 16-byte aligned falls back to a small kernel after the GEMM.
// The bias gradient sums each column over all rows in a fixed order (no atomics).
#include <cuda_bf16.h>

#include <cstdint>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 256;
constexpr int kSumRowsLanes = 8;  // threads per column in the bias gradient

template <typename T>
__global__ void add_bias_kernel(T* y, const T* bias, std::int64_t rows, std::int64_t cols) {
  const std::int64_t n = rows * cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    store(y + i, load(y + i) + load(bias + i % cols));
  }
}

// out[j] += Σ_r dy[r, j]. Block (32, kSumRowsLanes): each thread sums every kSumRowsLanes-th
// row of one column, then thread y = 0 adds the lanes in order.
template <typename T>
__global__ void add_column_sums_kernel(const T* dy, std::int64_t rows, std::int64_t cols, T* out) {
  __shared__ float partial[kSumRowsLanes][33];
  const std::int64_t j = blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (j < cols) {
    for (std::int64_t r = threadIdx.y; r < rows; r += kSumRowsLanes) s += load(dy + r * cols + j);
  }
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    float total = 0.0f;
    for (int lane = 0; lane < kSumRowsLanes; ++lane) total += partial[lane][threadIdx.x];
    store(out + j, load(out + j) + total);
  }
}

// The largest power of two (up to 256) dividing the address: cuBLASLt only picks kernels
// whose vector loads fit the operands' alignment, which views (slice_rows) can lower.
int alignment_of(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  int alignment = 256;
  while (alignment > 1 && address % static_cast<std::uintptr_t>(alignment) != 0) alignment /= 2;
  return alignment;
}

std::string gemm_string(const char* what, std::int64_t m, std::int64_t n, std::int64_t k, bool ta, bool tb, DType d) {
  return std::string(what) + " m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
         (ta ? " a transposed" : "") + (tb ? " b transposed" : "") + " " + dtype_name(d);
}

template <typename T>
void launch_column_sums(const Tensor& dy, std::int64_t rows, std::int64_t cols, Tensor& out, cudaStream_t stream) {
  const dim3 block(32, kSumRowsLanes);
  const auto grid = static_cast<unsigned>((cols + 31) / 32);
  add_column_sums_kernel<<<grid, block, 0, stream>>>(ptr<T>(dy), rows, cols, ptr<T>(out));
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace

const CudaBackend::MatmulPlan& CudaBackend::matmul_plan(const PlanKey& key) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;
  const auto [dtype_int, trans_a, trans_b, m, n, k, lda, ldb, ldc, align_a, align_b, align_c, bias] = key;
  const DType dtype = static_cast<DType>(dtype_int);
  const cudaDataType_t type = dtype == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
  MatmulPlan plan;
  LOOM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // column-major A is loom's b
  const cublasOperation_t op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // column-major B is loom's a
  LOOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  LOOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  if (bias) {
    // Column-major D is loom's cᵀ [n, m]: the bias runs along its n rows, i.e. c's columns.
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    LOOM_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    LOOM_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &type, sizeof type));
  }
  const auto u = [](std::int64_t x) { return static_cast<std::uint64_t>(x); };
  LOOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, type, u(trans_b ? k : n), u(trans_b ? n : k), ldb));
  LOOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, type, u(trans_a ? m : k), u(trans_a ? k : m), lda));
  LOOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.c, type, u(n), u(m), ldc));

  cublasLtMatmulPreference_t preference = nullptr;
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const std::uint64_t workspace = workspace_bytes_;
  const std::uint32_t a_bytes = static_cast<std::uint32_t>(align_b);  // column-major A = loom's b
  const std::uint32_t b_bytes = static_cast<std::uint32_t>(align_a);
  const std::uint32_t c_bytes = static_cast<std::uint32_t>(align_c);
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace, sizeof workspace));
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                         &a_bytes, sizeof a_bytes));
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                         &b_bytes, sizeof b_bytes));
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                         &c_bytes, sizeof c_bytes));
  LOOM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                         &c_bytes, sizeof c_bytes));
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(lt_, plan.op, plan.a, plan.b, plan.c, plan.c,
                                                               preference, 1, &result, &returned);
  cublasLtMatmulPreferenceDestroy(preference);
  if (status != CUBLAS_STATUS_SUCCESS || returned == 0) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    cublasLtMatmulDescDestroy(plan.op);
    throw std::runtime_error("cuBLASLt found no algorithm for " +
                             gemm_string("GEMM", m, n, k, trans_a, trans_b, dtype) + " (lda=" + std::to_string(lda) +
                             ", ldb=" + std::to_string(ldb) + ", alignments " + std::to_string(align_a) + "/" +
                             std::to_string(align_b) + "/" + std::to_string(align_c) + " bytes): " +
                             cublasLtGetStatusString(status));
  }
  plan.algo = result.algo;
  return plans_.emplace(key, plan).first->second;
}

void CudaBackend::gemm(DType dtype, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                       float alpha, const void* a, std::int64_t lda, const void* b, std::int64_t ldb, float beta,
                       void* c, const void* bias) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // cuBLASLt rejects k = 0: c = beta c
    Tensor view = Tensor::wrap(c, {m * n}, dtype, Device::CUDA);
    if (beta == 0.0f) {
      fill(view, 0.0f);
    } else {
      scale_inplace(view, beta);
    }
    return;
  }
  const PlanKey key{static_cast<int>(dtype), trans_a, trans_b, m, n, k, lda, ldb, n,
                    alignment_of(a), alignment_of(b), alignment_of(c), bias != nullptr};
  const MatmulPlan& plan = matmul_plan(key);
  if (bias != nullptr) {  // per call: the cached descriptor serves every bias of this shape
    LOOM_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  }
  LOOM_CUBLAS_CHECK(cublasLtMatmul(lt_, plan.op, &alpha, b, plan.a, a, plan.b, &beta, c, plan.c, c, plan.c,
                                   &plan.algo, workspace_, workspace_bytes_, stream_));
}

void CudaBackend::matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
                         float beta) {
  const DType dtype = require_float("matmul", "a", a);
  require("matmul", "b", b, dtype);
  require("matmul", "c", c, dtype);
  const std::int64_t m = trans_a ? cols_of(a) : rows_of(a);
  const std::int64_t k = trans_a ? rows_of(a) : cols_of(a);
  const std::int64_t k_b = trans_b ? cols_of(b) : rows_of(b);
  const std::int64_t n = trans_b ? rows_of(b) : cols_of(b);
  if (k != k_b || rows_of(c) != m || cols_of(c) != n) {
    fail("matmul", std::string("op(a) @ op(b) does not fit c: a ") + a.describe() + (trans_a ? " (transposed)" : "") +
                       ", b " + b.describe() + (trans_b ? " (transposed)" : "") + ", c " + c.describe());
  }
  gemm(dtype, trans_a, trans_b, m, n, k, alpha, a.raw(), cols_of(a), b.raw(), cols_of(b), beta, c.raw());
}

void CudaBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  const char* op = "linear_forward";
  const DType dtype = require_float(op, "x", x);
  require(op, "w", w, dtype);
  const std::int64_t rows = rows_of(x);
  const std::int64_t in = cols_of(x);
  const std::int64_t out = rows_of(w);
  if (cols_of(w) != in) {
    fail(op, "w " + w.describe() + " must be [out, in] with in = " + std::to_string(in) + " from x " + x.describe());
  }
  require_matrix(op, "y", y, dtype, rows, out, "x " + x.describe() + " and w " + w.describe());
  if (bias.defined()) require_numel(op, "bias", bias, dtype, out, "w " + w.describe());
  const bool fused = bias.defined() && alignment_of(bias.raw()) >= 16 && in > 0;
  gemm(dtype, false, true, rows, out, in, 1.0f, x.raw(), in, w.raw(), in, 0.0f, y.raw(), fused ? bias.raw() : nullptr);
  if (fused || !bias.defined() || rows * out == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    add_bias_kernel<<<grid_for(rows * out, kThreads), kThreads, 0, stream_>>>(ptr<T>(y), ptr<T>(bias), rows, out);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                                  Tensor& dbias) {
  const char* op = "linear_backward";
  const DType dtype = require_float(op, "x", x);
  require(op, "w", w, dtype);
  const std::int64_t rows = rows_of(x);
  const std::int64_t in = cols_of(x);
  const std::int64_t out = rows_of(w);
  if (cols_of(w) != in) fail(op, "w " + w.describe() + " must be [out, in] to match x " + x.describe());
  const std::string context = "x " + x.describe() + " and w " + w.describe();
  require_matrix(op, "dy", dy, dtype, rows, out, context);
  if (dx.defined()) require_matrix(op, "dx", dx, dtype, rows, in, "x " + x.describe());
  if (dw.defined()) require_matrix(op, "dw", dw, dtype, out, in, "w " + w.describe());
  if (dbias.defined()) require_numel(op, "dbias", dbias, dtype, out, "w " + w.describe());
  if (dx.defined()) gemm(dtype, false, false, rows, in, out, 1.0f, dy.raw(), out, w.raw(), in, 1.0f, dx.raw());
  if (dw.defined()) gemm(dtype, true, false, out, in, rows, 1.0f, dy.raw(), out, x.raw(), in, 1.0f, dw.raw());
  if (dbias.defined() && out > 0) {
    dispatch_float(dtype, [&](auto tag) { launch_column_sums<decltype(tag)>(dy, rows, out, dbias, stream_); });
  }
}

}  // namespace loom::cuda
