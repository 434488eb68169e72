#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <omp.h>

#include <bit>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "core/kernels/gemm/gemm_backends.h"

#define LOOM_DNNL_CHECK(call)                                                                      \
  do {                                                                                             \
    dnnl_status_t status_ = (call);                                                                \
    if (status_ != dnnl_success)                                                                   \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " +   \
                               #call + " failed: " + dnnl_status2str(status_) +                    \
                               " (is libdnnl2 the version loom was built against?)");             \
  } while (0)

namespace loom::cpu::gemm_backend {
namespace {

// oneDNN fixes a primitive's work split for the thread count current at creation, so the
// thread count is part of the key.
struct MatmulKey {
  int threads;
  bool trans_a, trans_b;
  std::int64_t m, n, k, lda, ldb, ldc;
  std::uint32_t alpha_bits, beta_bits;
  bool operator==(const MatmulKey&) const = default;
};

struct MatmulKeyHash {
  std::size_t operator()(const MatmulKey& key) const {
    std::size_t h = static_cast<std::size_t>(key.threads) * 4u + key.trans_a * 2u + key.trans_b;
    for (std::int64_t v : {key.m, key.n, key.k, key.lda, key.ldb, key.ldc,
                           std::int64_t{key.alpha_bits}, std::int64_t{key.beta_bits}})
      h = h * 1000003u ^ std::hash<std::int64_t>{}(v);
    return h;
  }
};

// One created primitive plus memory objects whose data handles are re-pointed per call.
struct Matmul {
  dnnl_primitive_desc_t pd = nullptr;
  dnnl_primitive_t primitive = nullptr;
  dnnl_memory_t a = nullptr, b = nullptr, c = nullptr;
  Matmul() = default;
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;
  ~Matmul() {
    for (dnnl_memory_t mem : {a, b, c})
      if (mem) dnnl_memory_destroy(mem);
    if (primitive) dnnl_primitive_destroy(primitive);
    if (pd) dnnl_primitive_desc_destroy(pd);
  }
};

struct Context {
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
  std::mutex mutex;
  std::unordered_map<MatmulKey, std::unique_ptr<Matmul>, MatmulKeyHash> cache;
  Context() {
    LOOM_DNNL_CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    LOOM_DNNL_CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
  }
};

// Never destroyed: oneDNN's own statics may already be gone when ours would run at exit.
Context& context() {
  static Context* ctx = new Context();
  return *ctx;
}

// A row-major matrix of logical shape [rows, cols]; transposed storage swaps the strides.
dnnl_memory_desc_t matrix_desc(std::int64_t rows, std::int64_t cols, std::int64_t ld, bool transposed) {
  dnnl_memory_desc_t md;
  dnnl_dims_t dims = {rows, cols};
  dnnl_dims_t strides = {transposed ? 1 : ld, transposed ? ld : 1};
  LOOM_DNNL_CHECK(dnnl_memory_desc_init_by_strides(&md, 2, dims, dnnl_f32, strides));
  return md;
}

std::unique_ptr<Matmul> create_matmul(const MatmulKey& key, float alpha, float beta) {
  Context& ctx = context();
  dnnl_memory_desc_t a_md = matrix_desc(key.m, key.k, key.lda, key.trans_a);
  dnnl_memory_desc_t b_md = matrix_desc(key.k, key.n, key.ldb, key.trans_b);
  dnnl_memory_desc_t c_md = matrix_desc(key.m, key.n, key.ldc, false);
  dnnl_matmul_desc_t desc;
  LOOM_DNNL_CHECK(dnnl_matmul_desc_init(&desc, &a_md, &b_md, nullptr, &c_md));

  dnnl_primitive_attr_t attr;
  LOOM_DNNL_CHECK(dnnl_primitive_attr_create(&attr));
  std::unique_ptr<dnnl_primitive_attr, decltype(&dnnl_primitive_attr_destroy)> attr_owner(
      attr, dnnl_primitive_attr_destroy);
  if (alpha != 1.0f) LOOM_DNNL_CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha));
  if (beta != 0.0f) {
    dnnl_post_ops_t post_ops;
    LOOM_DNNL_CHECK(dnnl_post_ops_create(&post_ops));
    std::unique_ptr<dnnl_post_ops, decltype(&dnnl_post_ops_destroy)> post_ops_owner(
        post_ops, dnnl_post_ops_destroy);
    LOOM_DNNL_CHECK(dnnl_post_ops_append_sum(post_ops, beta));
    LOOM_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, post_ops));
  }

  auto matmul = std::make_unique<Matmul>();
  LOOM_DNNL_CHECK(dnnl_primitive_desc_create(&matmul->pd, &desc, attr, ctx.engine, nullptr));
  LOOM_DNNL_CHECK(dnnl_primitive_create(&matmul->primitive, matmul->pd));
  LOOM_DNNL_CHECK(dnnl_memory_create(&matmul->a, &a_md, ctx.engine, DNNL_MEMORY_NONE));
  LOOM_DNNL_CHECK(dnnl_memory_create(&matmul->b, &b_md, ctx.engine, DNNL_MEMORY_NONE));
  LOOM_DNNL_CHECK(dnnl_memory_create(&matmul->c, &c_md, ctx.engine, DNNL_MEMORY_NONE));
  return matmul;
}

Matmul& cached_matmul(const MatmulKey& key, float alpha, float beta) {
  Context& ctx = context();
  auto found = ctx.cache.find(key);
  if (found != ctx.cache.end()) return *found->second;
  if (ctx.cache.size() >= onednn_matmul_cache_limit) ctx.cache.clear();
  return *ctx.cache.emplace(key, create_matmul(key, alpha, beta)).first->second;
}

// BLAS semantics for an empty reduction, which oneDNN does not follow (dnnl_sgemm leaves C
// as is, matmul rejects k = 0): C = beta * C, and beta = 0 overwrites.
void scale_output(std::int64_t m, std::int64_t n, float beta, float* c, std::int64_t ldc) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

}  // namespace

void onednn_sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                  float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                  float beta, float* c, std::int64_t ldc) {
  if (k == 0) return scale_output(m, n, beta, c, ldc);
  LOOM_DNNL_CHECK(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                             beta, c, ldc));
}

void onednn_matmul(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                   float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                   float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return scale_output(m, n, beta, c, ldc);
  Context& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.mutex);
  MatmulKey key{omp_get_max_threads(), trans_a, trans_b, m, n, k, lda, ldb, ldc,
                std::bit_cast<std::uint32_t>(alpha), std::bit_cast<std::uint32_t>(beta)};
  Matmul& matmul = cached_matmul(key, alpha, beta);
  LOOM_DNNL_CHECK(dnnl_memory_set_data_handle(matmul.a, const_cast<float*>(a)));
  LOOM_DNNL_CHECK(dnnl_memory_set_data_handle(matmul.b, const_cast<float*>(b)));
  LOOM_DNNL_CHECK(dnnl_memory_set_data_handle(matmul.c, c));
  dnnl_exec_arg_t args[3] = {
      {DNNL_ARG_SRC, matmul.a}, {DNNL_ARG_WEIGHTS, matmul.b}, {DNNL_ARG_DST, matmul.c}};
  LOOM_DNNL_CHECK(dnnl_primitive_execute(matmul.primitive, ctx.stream, 3, args));
  LOOM_DNNL_CHECK(dnnl_stream_wait(ctx.stream));
}

void onednn_hybrid(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                   float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                   float beta, float* c, std::int64_t ldc) {
  if (trans_b && !trans_a)
    onednn_matmul(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    onednn_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::string onednn_matmul_impl(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
                               std::int64_t k) {
  Context& ctx = context();
  std::lock_guard<std::mutex> lock(ctx.mutex);
  MatmulKey key{omp_get_max_threads(), trans_a, trans_b, m, n, k, trans_a ? m : k,
                trans_b ? k : n, n, std::bit_cast<std::uint32_t>(1.0f), 0u};
  const char* impl = nullptr;
  LOOM_DNNL_CHECK(dnnl_primitive_desc_query(cached_matmul(key, 1.0f, 0.0f).pd,
                                            dnnl_query_impl_info_str, 0, &impl));
  return impl ? impl : "unknown";
}

void onednn_set_threads(int threads) { omp_set_num_threads(threads); }

std::string onednn_describe() {
  const dnnl_version_t* version = dnnl_version();
  return "oneDNN " + std::to_string(version->major) + "." + std::to_string(version->minor) + "." +
         std::to_string(version->patch) + " (cpu runtime " + dnnl_runtime2str(version->cpu_runtime) + ")";
}

}  // namespace loom::cpu::gemm_backend
