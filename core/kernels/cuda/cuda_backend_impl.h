// CudaBackend: the class behind make_cuda_backend (cuda_backend.h), shared by the op files
// of this folder (memory_ops.cu, gemm_ops.cpp, embedding.cu, norms.cu, activations.cu,
// dropout.cu, rope.cu, attention.cu, attention_cached.cu, cross_entropy.cu, adamw.cu).
// Internal to loom_cuda: other code sees only Backend, cuda_backend.h and cuda_stream.h.
//
// Ownership: the backend owns its stream, cuBLASLt handle, GEMM workspace and the matmul
// descriptors it caches per shape (matmul_plan), and frees them when destroyed.
// Threads: one thread at a time, as every Backend.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "core/backend.h"

namespace loom::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::CUDA; }
  std::string name() const override;
  cudaStream_t stream() const { return stream_; }

  void fill(Tensor& x, float value) override;
  void copy(const Tensor& src, Tensor& dst) override;
  void add_inplace(Tensor& y, const Tensor& x, float alpha) override;
  void scale_inplace(Tensor& x, float alpha) override;
  double sum_squares(const Tensor& x) override;
  bool all_finite(const Tensor& x) override;

  void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
              float beta) override;
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) override;
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                       Tensor& dbias) override;

  void embedding_forward(const Tensor& ids, const Tensor& table, Tensor& out, std::int64_t row_offset,
                         bool accumulate) override;
  void embedding_backward(const Tensor& ids, const Tensor& dout, Tensor& dtable,
                          std::int64_t row_offset) override;

  void layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& y,
                         Tensor& mean, Tensor& rstd) override;
  void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                          const Tensor& rstd, Tensor& dx, Tensor& dweight, Tensor& dbias) override;
  void rmsnorm_forward(const Tensor& x, const Tensor& weight, float eps, Tensor& y, Tensor& rstd) override;
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                        Tensor& dx, Tensor& dweight) override;

  void gelu_forward(const Tensor& x, Tensor& y) override;
  void gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) override;
  void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor& dgate,
                       Tensor& dup) override;

  void dropout_forward(const Tensor& x, Tensor& y, const DropoutArgs& args, bool accumulate) override;

  void rope_forward(Tensor& qkv, const AttentionShape& shape, const RopeConfig& rope,
                    std::int64_t position_offset) override;
  void rope_backward(Tensor& dqkv, const AttentionShape& shape, const RopeConfig& rope,
                     std::int64_t position_offset) override;

  void attention_forward(const Tensor& qkv, const AttentionShape& shape, Tensor& out, Tensor& lse) override;
  void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                          const AttentionShape& shape, Tensor& dqkv) override;
  void attention_cached_forward(const Tensor& qkv, const AttentionShape& shape, std::int64_t position,
                                Tensor& k_cache, Tensor& v_cache, Tensor& out) override;

  void cross_entropy_forward(const Tensor& logits, const Tensor& targets, Tensor& losses) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& dloss,
                              Tensor& dlogits) override;
  void cross_entropy_shard_stats(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                 Tensor& stats) override;
  void cross_entropy_shard_combine(const Tensor& all_stats, const Tensor& targets, Tensor& lse,
                                   Tensor& losses) override;
  void cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets, std::int64_t vocab_offset,
                                    const Tensor& lse, const Tensor& dloss, Tensor& dlogits) override;
  void gather_rows(const Tensor& x, const Tensor& index, Tensor& out) override;
  void scatter_add_rows(const Tensor& dout, const Tensor& index, Tensor& dx) override;

  void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWArgs& args) override;

 private:
  // One cached cuBLASLt plan: descriptors and the heuristic's algorithm for one GEMM shape.
  struct MatmulPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  // dtype, trans_a, trans_b, m, n, k, lda, ldb, ldc, alignment of a, b, c in bytes, and
  // whether the plan adds a bias row in its epilogue
  using PlanKey = std::tuple<int, bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, int, int, int, bool>;

  // Column-major cuBLASLt call for a row-major c = alpha op(a) op(b) + beta c (gemm_ops.cu);
  // with `bias` ([n], c's dtype, 16-byte aligned) c's rows also get bias added in the GEMM's
  // epilogue, before c is rounded to its dtype.
  void gemm(DType dtype, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
            const void* a, std::int64_t lda, const void* b, std::int64_t ldb, float beta, void* c,
            const void* bias = nullptr);
  const MatmulPlan& matmul_plan(const PlanKey& key);

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  std::map<PlanKey, MatmulPlan> plans_;
};

namespace detail {

[[noreturn]] void fail(const char* op, const std::string& message);
std::string describe(const Tensor& t);

// t is defined, on the GPU and of dtype `dtype`.
void require(const char* op, const char* name, const Tensor& t, DType dtype);
// t is defined, on the GPU and f32 or bf16; returns its dtype.
DType require_float(const char* op, const char* name, const Tensor& t);
// t is on the GPU, of dtype `dtype` and holds `numel` elements (any shape).
void require_numel(const char* op, const char* name, const Tensor& t, DType dtype, std::int64_t numel,
                   const std::string& context);
// t is on the GPU, of dtype `dtype` and holds `rows` rows of `cols` (leading dims flattened).
void require_matrix(const char* op, const char* name, const Tensor& t, DType dtype, std::int64_t rows,
                    std::int64_t cols, const std::string& context);
// The geometry is positive, q_heads a multiple of kv_heads, head_dim <= kMaxHeadDim, and qkv
// a [B, T, (Hq + 2 Hkv) D] f32 or bf16 GPU tensor; returns its dtype.
DType require_attention(const char* op, const AttentionShape& shape, const char* qkv_name, const Tensor& qkv);

inline std::int64_t cols_of(const Tensor& t) { return t.ndim() == 0 ? 1 : t.dim(-1); }
inline std::int64_t rows_of(const Tensor& t) {
  const std::int64_t c = cols_of(t);
  return c == 0 ? 0 : t.numel() / c;
}
inline std::int64_t qkv_width(const AttentionShape& s) { return (s.q_heads + 2 * s.kv_heads) * s.head_dim; }

inline constexpr std::int64_t kMaxHeadDim = 128;

// Blocks of `threads` covering n items, for 1-D grid-stride kernels; capped so the grid
// size depends only on n (never on the device), which keeps per-block sums reproducible.
inline unsigned grid_for(std::int64_t n, int threads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

}  // namespace detail
}  // namespace loom::cuda
