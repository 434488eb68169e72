// The CUDA backend's factory, lifetime (stream, cuBLASLt handle, workspace), device queries
// and the argument checks every op of this folder shares (cuda_backend_impl.h).
#include <cuda_runtime.h>

#include <stdexcept>

#include "core/kernels/cuda/caching_allocator.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/cuda_stream.h"

namespace loom::cuda {

namespace {
// cuBLASLt's recommendation for Hopper; smaller GPUs run fine with it too.
constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;
}  // namespace

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorString(status);
  }
  if (count == 0) return "cudaGetDeviceCount: no CUDA device found";
  return "";
}

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

cudaStream_t stream_of(Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda == nullptr) {
    throw std::invalid_argument("stream_of: backend '" + backend.name() + "' is not a CUDA backend");
  }
  return cuda->stream();
}

void synchronize(Backend& backend) { LOOM_CUDA_CHECK(cudaStreamSynchronize(stream_of(backend))); }

std::string device_name(int device) {
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return properties.name;
}

CudaBackend::CudaBackend(int device) : device_(device) {
  const int count = device_count();
  if (device < 0 || device >= count) {
    const std::string why = count == 0 ? " (" + unavailable_reason() + ")" : "";
    throw std::runtime_error("make_cuda_backend: device " + std::to_string(device) + " does not exist; " +
                             std::to_string(count) + " CUDA device(s) visible" + why);
  }
  LOOM_CUDA_CHECK(cudaSetDevice(device));
  LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  LOOM_CUBLAS_CHECK(cublasLtCreate(&lt_));
  workspace_bytes_ = kWorkspaceBytes;
  LOOM_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
  register_caching_allocator();
}

CudaBackend::~CudaBackend() {
  // Destructors must not throw: errors here are ignored (the process is usually ending).
  cudaSetDevice(device_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (auto& [key, plan] : plans_) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    cublasLtMatmulDescDestroy(plan.op);
  }
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (lt_ != nullptr) cublasLtDestroy(lt_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

std::string CudaBackend::name() const {
  cudaDeviceProp prop{};
  std::string gpu = "?";
  if (cudaGetDeviceProperties(&prop, device_) == cudaSuccess) gpu = prop.name;
  return "cuda:" + std::to_string(device_) + " (" + gpu + ", f32/bf16, gemm: cuBLASLt)";
}

namespace detail {

void fail(const char* op, const std::string& message) {
  throw std::invalid_argument(std::string("cuda backend ") + op + ": " + message);
}

std::string describe(const Tensor& t) { return t.defined() ? t.describe() : std::string("undefined"); }

void require(const char* op, const char* name, const Tensor& t, DType dtype) {
  if (!t.defined() || t.device() != Device::CUDA || t.dtype() != dtype) {
    fail(op, std::string(name) + " must be a " + dtype_name(dtype) + " cuda tensor, got " + describe(t));
  }
}

DType require_float(const char* op, const char* name, const Tensor& t) {
  if (!t.defined() || t.device() != Device::CUDA || (t.dtype() != DType::F32 && t.dtype() != DType::BF16)) {
    fail(op, std::string(name) + " must be an f32 or bf16 cuda tensor, got " + describe(t));
  }
  return t.dtype();
}

void require_numel(const char* op, const char* name, const Tensor& t, DType dtype, std::int64_t numel,
                   const std::string& context) {
  require(op, name, t, dtype);
  if (t.numel() != numel) {
    fail(op, std::string(name) + " is " + t.describe() + ", expected " + std::to_string(numel) +
                 " elements to match " + context);
  }
}

void require_matrix(const char* op, const char* name, const Tensor& t, DType dtype, std::int64_t rows,
                    std::int64_t cols, const std::string& context) {
  require(op, name, t, dtype);
  if (cols_of(t) != cols || rows_of(t) != rows) {
    fail(op, std::string(name) + " is " + t.describe() + ", expected " + std::to_string(rows) + " rows of " +
                 std::to_string(cols) + " (leading dims flattened) to match " + context);
  }
}

DType require_attention(const char* op, const AttentionShape& s, const char* qkv_name, const Tensor& qkv) {
  if (s.batch <= 0 || s.seq <= 0 || s.q_heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 ||
      s.q_heads % s.kv_heads != 0 || s.head_dim > kMaxHeadDim) {
    fail(op, "bad AttentionShape batch=" + std::to_string(s.batch) + " seq=" + std::to_string(s.seq) +
                 " q_heads=" + std::to_string(s.q_heads) + " kv_heads=" + std::to_string(s.kv_heads) +
                 " head_dim=" + std::to_string(s.head_dim) +
                 " (all must be positive, q_heads a multiple of kv_heads, head_dim at most " +
                 std::to_string(kMaxHeadDim) + " on the GPU)");
  }
  const DType dtype = require_float(op, qkv_name, qkv);
  require_numel(op, qkv_name, qkv, dtype, s.batch * s.seq * qkv_width(s),
                "[batch, seq, (q_heads + 2 kv_heads) * head_dim] = [" + std::to_string(s.batch) + ", " +
                    std::to_string(s.seq) + ", " + std::to_string(qkv_width(s)) + "]");
  return dtype;
}

}  // namespace detail
}  // namespace loom::cuda
