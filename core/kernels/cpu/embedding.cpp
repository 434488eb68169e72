// Row lookups of the CPU backend: token embedding forward/backward and gather/scatter of
// rows. The backward passes may add several source rows into one destination row, so they
// split the work by column block: each thread owns its columns and visits the source rows
// in order, which keeps the sums deterministic without atomics or per-thread copies.
// bf16 tables and rows run the f32 loops on staged copies (bf16_staging.h).
#include <algorithm>
#include <cstring>

#include "core/kernels/cpu/bf16_staging.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"

namespace loom::cpu {

using namespace detail;

namespace {

constexpr std::int64_t kColumnBlock = 64;

// dst[dst_row(n), :] += src[n, :] for every n whose dst_row(n) is >= 0.
template <typename RowOf>
void add_rows_by_column_block(const float* src, std::int64_t src_rows, std::int64_t cols, float* dst,
                              RowOf dst_row) {
  const std::int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(src_rows * cols))
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t begin = b * kColumnBlock;
    const std::int64_t width = std::min(kColumnBlock, cols - begin);
    for (std::int64_t n = 0; n < src_rows; ++n) {
      const std::int64_t row = dst_row(n);
      if (row < 0) continue;
      const float* s = src + n * cols + begin;
      float* d = dst + row * cols + begin;
#pragma omp simd
      for (std::int64_t j = 0; j < width; ++j) d[j] += s[j];
    }
  }
}

void check_index(const char* op, const Tensor& index, std::int64_t rows, const Tensor& table) {
  const std::int32_t* ip = index.data<std::int32_t>();
  for (std::int64_t m = 0; m < index.numel(); ++m) {
    if (ip[m] < 0 || ip[m] >= rows) {
      fail(op, "index[" + std::to_string(m) + "] = " + std::to_string(ip[m]) + " is outside the " +
                   std::to_string(rows) + " rows of " + table.describe());
    }
  }
}

}  // namespace

void CpuBackend::embedding_forward(const Tensor& ids, const Tensor& table, Tensor& out, std::int64_t row_offset,
                                   bool accumulate) {
  if (is_bf16(table)) {
    Bf16Staging staging("embedding_forward");
    const Tensor table32 = staging.input("table", table);
    Tensor out32 = staging.output("out", out, accumulate ? Bf16Staging::Use::Update : Bf16Staging::Use::Overwrite);
    return staging.run([&] { embedding_forward(ids, table32, out32, row_offset, accumulate); });
  }
  const char* op = "embedding_forward";
  require_i32(op, "ids", ids);
  require_f32(op, "table", table);
  const std::int64_t n = ids.numel();
  const std::int64_t vocab = rows_of(table);
  const std::int64_t c = cols_of(table);
  require_matrix(op, "out", out, n, c, "ids " + ids.describe() + " and table " + table.describe());
  const std::int32_t* idp = ids.data<std::int32_t>();
  const float* tp = table.data<float>();
  float* op_out = out.data<float>();
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(n * c))
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t row = static_cast<std::int64_t>(idp[i]) - row_offset;
    float* dst = op_out + i * c;
    const bool inside = row >= 0 && row < vocab;
    if (accumulate) {
      if (inside) axpy(1.0f, tp + row * c, dst, c);
    } else if (inside) {
      std::memcpy(dst, tp + row * c, static_cast<std::size_t>(c) * sizeof(float));
    } else {
      std::memset(dst, 0, static_cast<std::size_t>(c) * sizeof(float));
    }
  }
}

void CpuBackend::embedding_backward(const Tensor& ids, const Tensor& dout, Tensor& dtable,
                                    std::int64_t row_offset) {
  if (is_bf16(dtable)) {
    Bf16Staging staging("embedding_backward");
    Tensor dtable32 = staging.output("dtable", dtable, Bf16Staging::Use::Update);
    const Tensor dout32 = staging.input("dout", dout);
    return staging.run([&] { embedding_backward(ids, dout32, dtable32, row_offset); });
  }
  const char* op = "embedding_backward";
  require_i32(op, "ids", ids);
  require_f32(op, "dtable", dtable);
  const std::int64_t vocab = rows_of(dtable);
  const std::int64_t c = cols_of(dtable);
  require_matrix(op, "dout", dout, ids.numel(), c, "ids " + ids.describe() + " and dtable " + dtable.describe());
  const std::int32_t* idp = ids.data<std::int32_t>();
  add_rows_by_column_block(dout.data<float>(), ids.numel(), c, dtable.data<float>(), [&](std::int64_t i) {
    const std::int64_t row = static_cast<std::int64_t>(idp[i]) - row_offset;
    return row >= 0 && row < vocab ? row : std::int64_t{-1};
  });
}

void CpuBackend::gather_rows(const Tensor& x, const Tensor& index, Tensor& out) {
  if (is_bf16(x)) {
    Bf16Staging staging("gather_rows");
    const Tensor x32 = staging.input("x", x);
    Tensor out32 = staging.output("out", out, Bf16Staging::Use::Overwrite);
    return staging.run([&] { gather_rows(x32, index, out32); });
  }
  const char* op = "gather_rows";
  require_f32(op, "x", x);
  require_i32(op, "index", index);
  const std::int64_t rows = rows_of(x);
  const std::int64_t c = cols_of(x);
  require_matrix(op, "out", out, index.numel(), c, "index " + index.describe() + " and x " + x.describe());
  check_index(op, index, rows, x);
  const std::int32_t* ip = index.data<std::int32_t>();
  const float* xp = x.data<float>();
  float* outp = out.data<float>();
  const std::int64_t m = index.numel();
#pragma omp parallel for schedule(static) if(parallel : worth_parallel(m * c))
  for (std::int64_t i = 0; i < m; ++i) {
    std::memcpy(outp + i * c, xp + static_cast<std::int64_t>(ip[i]) * c, static_cast<std::size_t>(c) * sizeof(float));
  }
}

void CpuBackend::scatter_add_rows(const Tensor& dout, const Tensor& index, Tensor& dx) {
  if (is_bf16(dx)) {
    Bf16Staging staging("scatter_add_rows");
    Tensor dx32 = staging.output("dx", dx, Bf16Staging::Use::Update);
    const Tensor dout32 = staging.input("dout", dout);
    return staging.run([&] { scatter_add_rows(dout32, index, dx32); });
  }
  const char* op = "scatter_add_rows";
  require_f32(op, "dx", dx);
  require_i32(op, "index", index);
  const std::int64_t c = cols_of(dx);
  require_matrix(op, "dout", dout, index.numel(), c, "index " + index.describe() + " and dx " + dx.describe());
  check_index(op, index, rows_of(dx), dx);
  const std::int32_t* ip = index.data<std::int32_t>();
  add_rows_by_column_block(dout.data<float>(), index.numel(), c, dx.data<float>(),
                           [ip](std::int64_t i) { return static_cast<std::int64_t>(ip[i]); });
}

}  // namespace loom::cpu
