// Row lookups of the CUDA backend: token embedding forward/backward and gather/scatter of
// rows. The backward passes may add several source rows into one destination row. Rather
// than atomics, each thread owns one column of the destination rows of one bucket
// (row mod kBuckets) and walks the source rows in order, adding those that land in its
// bucket: every destination element has one owner and one summation order, as in the CPU
// backend, while kBuckets × (columns / 128) blocks keep the GPU busy. A bf16 destination is
// summed in an f32 copy and rounded once, as the CPU backend's staging does: adding each
// source row straight into bf16 would round after every addition, and a token repeated
// hundreds of times in a batch would lose its small contributions to the running sum.
//
// Indices are not validated against the table on the host (that would need a device
// synchronisation): embedding ids outside the table give zero rows as the contract says,
// gather_rows writes a NaN row for an index outside x (visible to all_finite), and
// scatter_add_rows skips such an index.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/kernels/cuda/cuda_backend_impl.h"
#include "core/kernels/cuda/cuda_check.h"
#include "core/kernels/cuda/device_util.cuh"

namespace loom::cuda {

using namespace detail;

namespace {

constexpr int kThreads = 128;
constexpr int kBuckets = 64;

// out[i] (=|+=) table[ids[i] - row_offset], or zeros (overwrite only) outside the table.
template <typename T>
__global__ void embedding_forward_kernel(const std::int32_t* ids, const T* table, T* out, std::int64_t tokens,
                                         std::int64_t vocab, std::int64_t cols, std::int64_t row_offset,
                                         bool accumulate) {
  for (std::int64_t i = blockIdx.x; i < tokens; i += gridDim.x) {
    const std::int64_t row = static_cast<std::int64_t>(ids[i]) - row_offset;
    const bool inside = row >= 0 && row < vocab;
    T* dst = out + i * cols;
    for (std::int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float v = inside ? load(table + row * cols + j) : 0.0f;
      if (accumulate) {
        if (inside) store(dst + j, load(dst + j) + v);
      } else {
        store(dst + j, v);
      }
    }
  }
}

// dst[row(n), j] += src[n, j] for every source row n whose destination row(n) is in [0, rows)
// (row(n) = index[n] - row_offset), one owner thread per (column, bucket), rows in order.
template <typename S, typename D>
__global__ void add_rows_bucketed(const std::int32_t* index, const S* src, std::int64_t src_rows, D* dst,
                                  std::int64_t rows, std::int64_t cols, std::int64_t row_offset) {
  const std::int64_t j = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  const std::int64_t bucket = blockIdx.y;
  if (j >= cols) return;
  for (std::int64_t n = 0; n < src_rows; ++n) {
    const std::int64_t row = static_cast<std::int64_t>(index[n]) - row_offset;
    if (row < 0 || row >= rows || row % kBuckets != bucket) continue;
    D* d = dst + row * cols + j;
    store(d, load(d) + load(src + n * cols + j));
  }
}

template <typename T>
__global__ void gather_rows_kernel(const T* x, const std::int32_t* index, T* out, std::int64_t m, std::int64_t rows,
                                   std::int64_t cols) {
  for (std::int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const std::int64_t row = index[i];
    const bool inside = row >= 0 && row < rows;
    for (std::int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      store(out + i * cols + j, inside ? load(x + row * cols + j) : NAN);
    }
  }
}

template <typename S, typename D>
__global__ void convert_rows_kernel(const S* src, D* dst, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    store(dst + i, load(src + i));
  }
}

unsigned row_grid(std::int64_t rows) { return static_cast<unsigned>(rows < 1 ? 1 : (rows > 65535 ? 65535 : rows)); }

// The f32 copy of a bf16 destination is made in chunks of rows of at most this many elements
// (256 MiB: GPT-2's 50257 x 768 table in one chunk), so a large vocabulary does not need
// twice its table's size in scratch memory; each chunk walks the source rows once more.
constexpr std::int64_t kStagedElementsMax = std::int64_t{1} << 26;

template <typename T>
void launch_add_rows(const Tensor& index, const Tensor& src, Tensor& dst, std::int64_t row_offset,
                     cudaStream_t stream) {
  const std::int64_t rows = rows_of(dst);
  const std::int64_t cols = cols_of(dst);
  const dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads), kBuckets);
  const auto* ids = ptr<std::int32_t>(index);
  if constexpr (std::is_same_v<T, float>) {
    add_rows_bucketed<<<grid, kThreads, 0, stream>>>(ids, ptr<float>(src), index.numel(), ptr<float>(dst), rows, cols,
                                                     row_offset);
    LOOM_CUDA_CHECK_LAUNCH();
  } else {
    const std::int64_t chunk_rows = std::max<std::int64_t>(1, std::min(rows, kStagedElementsMax / cols));
    Tensor staged = Tensor::empty({chunk_rows * cols}, DType::F32, Device::CUDA);
    float* f32 = ptr<float>(staged);
    for (std::int64_t begin = 0; begin < rows; begin += chunk_rows) {
      const std::int64_t count = std::min(chunk_rows, rows - begin);
      const std::int64_t elements = count * cols;
      T* part = ptr<T>(dst) + begin * cols;
      convert_rows_kernel<<<grid_for(elements, kThreads), kThreads, 0, stream>>>(part, f32, elements);
      LOOM_CUDA_CHECK_LAUNCH();
      add_rows_bucketed<<<grid, kThreads, 0, stream>>>(ids, ptr<T>(src), index.numel(), f32, count, cols,
                                                       row_offset + begin);
      LOOM_CUDA_CHECK_LAUNCH();
      convert_rows_kernel<<<grid_for(elements, kThreads), kThreads, 0, stream>>>(f32, part, elements);
      LOOM_CUDA_CHECK_LAUNCH();
    }
  }
}

}  // namespace

void CudaBackend::embedding_forward(const Tensor& ids, const Tensor& table, Tensor& out, std::int64_t row_offset,
                                   bool accumulate) {
  const char* op = "embedding_forward";
  require(op, "ids", ids, DType::I32);
  const DType dtype = require_float(op, "table", table);
  const std::int64_t n = ids.numel();
  const std::int64_t c = cols_of(table);
  require_matrix(op, "out", out, dtype, n, c, "ids " + ids.describe() + " and table " + table.describe());
  if (n == 0 || c == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    embedding_forward_kernel<<<row_grid(n), kThreads, 0, stream_>>>(ptr<std::int32_t>(ids), ptr<T>(table),
                                                                     ptr<T>(out), n, rows_of(table), c, row_offset,
                                                                     accumulate);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::embedding_backward(const Tensor& ids, const Tensor& dout, Tensor& dtable,
                                    std::int64_t row_offset) {
  const char* op = "embedding_backward";
  require(op, "ids", ids, DType::I32);
  const DType dtype = require_float(op, "dtable", dtable);
  require_matrix(op, "dout", dout, dtype, ids.numel(), cols_of(dtable),
                 "ids " + ids.describe() + " and dtable " + dtable.describe());
  if (ids.numel() == 0 || dtable.numel() == 0) return;
  dispatch_float(dtype, [&](auto tag) { launch_add_rows<decltype(tag)>(ids, dout, dtable, row_offset, stream_); });
}

void CudaBackend::gather_rows(const Tensor& x, const Tensor& index, Tensor& out) {
  const char* op = "gather_rows";
  const DType dtype = require_float(op, "x", x);
  require(op, "index", index, DType::I32);
  const std::int64_t c = cols_of(x);
  const std::int64_t m = index.numel();
  require_matrix(op, "out", out, dtype, m, c, "index " + index.describe() + " and x " + x.describe());
  if (m == 0 || c == 0) return;
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    gather_rows_kernel<<<row_grid(m), kThreads, 0, stream_>>>(ptr<T>(x), ptr<std::int32_t>(index), ptr<T>(out), m,
                                                               rows_of(x), c);
  });
  LOOM_CUDA_CHECK_LAUNCH();
}

void CudaBackend::scatter_add_rows(const Tensor& dout, const Tensor& index, Tensor& dx) {
  const char* op = "scatter_add_rows";
  const DType dtype = require_float(op, "dx", dx);
  require(op, "index", index, DType::I32);
  require_matrix(op, "dout", dout, dtype, index.numel(), cols_of(dx),
                 "index " + index.describe() + " and dx " + dx.describe());
  if (index.numel() == 0 || dx.numel() == 0) return;
  dispatch_float(dtype, [&](auto tag) { launch_add_rows<decltype(tag)>(index, dout, dx, 0, stream_); });
}

}  // namespace loom::cuda
