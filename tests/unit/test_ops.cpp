// The table-driven op test: every Backend op is one entry of op_table() (inputs, forward,
// scalar reference, backward, tolerances, op-specific extras), and every entry runs on
// every compiled backend (compiled_backends()). op_check.h holds the machinery,
// op_reference.h the scalar loops. A self-test proves the finite-difference checker
// rejects wrong gradients, so a pass means something.
#define BOOST_TEST_MODULE ops
#include <cstring>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "tests/unit/op_check.h"
#include "tests/unit/op_reference.h"

namespace loom::test {
namespace {

std::vector<std::unique_ptr<Backend>> compiled_backends() {
  std::vector<std::unique_ptr<Backend>> list;
  list.push_back(make_cpu_backend());
  // A CUDA backend, when built, is appended here and runs the same table.
  return list;
}

using Expected = std::vector<std::vector<double>>;

std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

Tensor copy_on(Backend& backend, const Tensor& t) {
  Tensor c = device_empty(backend, t.shape(), t.dtype());
  backend.copy(t, c);
  return c;
}

// ---- GEMM ------------------------------------------------------------------------------

// The backward of c = alpha op(a) op(b) + beta c0 is itself written with matmul (beta = 1
// accumulates), which exercises every transpose combination a second time.
OpCase matmul_case(bool ta, bool tb, float alpha, float beta) {
  const std::int64_t m = 5, k = 7, n = 6;
  OpCase c;
  c.name = std::string("matmul ") + (ta ? "T" : "N") + (tb ? "T" : "N") + " alpha=" + number(alpha) +
           " beta=" + number(beta);
  c.input_names = {"a", "b", "c0"};
  c.output_names = {"c"};
  c.make_inputs = [=](Rng& rng) {
    return Tensors{rng.tensor(ta ? Shape{k, m} : Shape{m, k}), rng.tensor(tb ? Shape{n, k} : Shape{k, n}),
                   rng.tensor({m, n})};
  };
  c.forward = [=](Backend& be, const Tensors& in) {
    Tensor out = copy_on(be, in[2]);
    be.matmul(in[0], ta, in[1], tb, out, alpha, beta);
    return Tensors{out};
  };
  c.reference = [=](const Tensors& in) { return Expected{ref_matmul(in[0], ta, in[1], tb, in[2], alpha, beta)}; };
  c.wrt = {0, 1, 2};
  c.backward = [=](Backend& be, const Tensors& in, const Tensors&, const Tensors& dy, Tensors& g) {
    if (ta) be.matmul(in[1], tb, dy[0], true, g[0], alpha, 1.0f);
    else be.matmul(dy[0], false, in[1], !tb, g[0], alpha, 1.0f);
    if (tb) be.matmul(dy[0], true, in[0], ta, g[1], alpha, 1.0f);
    else be.matmul(in[0], !ta, dy[0], false, g[1], alpha, 1.0f);
    be.add_inplace(g[2], dy[0], beta);
  };
  c.thread_invariant = false;
  return c;
}

// out = 70 crosses the 64-column blocks of the bias gradient; x is 3-D to test flattening.
OpCase linear_case(bool with_bias) {
  OpCase c;
  c.name = with_bias ? "linear (bias)" : "linear (no bias)";
  c.input_names = {"x", "w", "bias"};
  c.output_names = {"y"};
  c.make_inputs = [=](Rng& rng) {
    Tensors in{rng.tensor({2, 3, 6}), rng.tensor({70, 6})};
    if (with_bias) in.push_back(rng.tensor({70}));
    return in;
  };
  c.forward = [=](Backend& be, const Tensors& in) {
    Tensor y = device_empty(be, {2, 3, 70});
    be.linear_forward(in[0], in[1], with_bias ? in[2] : Tensor(), y);
    return Tensors{y};
  };
  c.reference = [=](const Tensors& in) { return Expected{ref_linear(in[0], in[1], with_bias ? &in[2] : nullptr)}; };
  c.wrt = with_bias ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1};
  c.backward = [=](Backend& be, const Tensors& in, const Tensors&, const Tensors& dy, Tensors& g) {
    Tensor none;
    be.linear_backward(dy[0], in[0], in[1], g[0], g[1], with_bias ? g[2] : none);
  };
  c.thread_invariant = false;
  if (with_bias) {
    c.extra = [](Backend& be, const Tensors& host) {
      Rng rng("linear undefined grads");
      const Tensors in = upload_all(be, host);
      const Tensor dy = upload(be, rng.tensor({2, 3, 70}));
      Tensor dx = device_empty(be, {2, 3, 6}), dw_full = device_empty(be, {70, 6}), db = device_empty(be, {70});
      Tensor dw_only = device_empty(be, {70, 6}), none;
      for (Tensor* t : {&dx, &dw_full, &db, &dw_only}) be.fill(*t, 0.0f);
      be.linear_backward(dy, in[0], in[1], dx, dw_full, db);
      be.linear_backward(dy, in[0], in[1], none, dw_only, none);
      return std::vector<CheckResult>{exact_check("linear (bias)", "undefined dx/dbias skipped, dw same bits",
                                                  bit_identical(download_all(be, {dw_full}), download_all(be, {dw_only})),
                                                  "dw differs when dx and dbias are undefined")};
    };
  }
  return c;
}

// ---- lookups ---------------------------------------------------------------------------

// Table rows hold ids [3, 10); ids 2, 10 and -1 fall outside and must give zero rows.
const std::vector<std::int32_t> kEmbeddingIds = {3, 5, 9, 2, 10, 3, -1, 7};
constexpr std::int64_t kEmbeddingOffset = 3;

OpCase embedding_case(bool accumulate) {
  OpCase c;
  c.name = accumulate ? "embedding (accumulate)" : "embedding (row_offset 3)";
  c.input_names = {"ids", "table", "base"};
  c.output_names = {"out"};
  c.make_inputs = [=](Rng& rng) {
    Tensors in{rng.ids(kEmbeddingIds), rng.tensor({7, 5})};
    if (accumulate) in.push_back(rng.tensor({8, 5}));
    return in;
  };
  c.forward = [=](Backend& be, const Tensors& in) {
    Tensor out = accumulate ? copy_on(be, in[2]) : device_empty(be, {8, 5});
    if (!accumulate) be.fill(out, std::nanf(""));  // zero rows must be written, not left
    be.embedding_forward(in[0], in[1], out, kEmbeddingOffset, accumulate);
    return Tensors{out};
  };
  c.reference = [=](const Tensors& in) {
    return Expected{ref_embedding(in[0], in[1], kEmbeddingOffset, accumulate ? &in[2] : nullptr)};
  };
  c.forward_tol = {0.0, 1e-7};
  c.wrt = {1};
  c.backward = [](Backend& be, const Tensors& in, const Tensors&, const Tensors& dy, Tensors& g) {
    be.embedding_backward(in[0], dy[0], g[0], kEmbeddingOffset);
  };
  return c;
}

OpCase gather_case() {
  OpCase c;
  c.name = "gather_rows / scatter_add_rows";
  c.input_names = {"x", "index"};
  c.output_names = {"out"};
  c.make_inputs = [](Rng& rng) { return Tensors{rng.tensor({6, 4}), rng.ids({4, 0, 4, 2, 5})}; };
  c.forward = [](Backend& be, const Tensors& in) {
    Tensor out = device_empty(be, {5, 4});
    be.gather_rows(in[0], in[1], out);
    return Tensors{out};
  };
  c.reference = [](const Tensors& in) { return Expected{ref_gather(in[0], in[1])}; };
  c.forward_tol = {0.0, 0.0};
  c.wrt = {0};
  c.backward = [](Backend& be, const Tensors& in, const Tensors&, const Tensors& dy, Tensors& g) {
    be.scatter_add_rows(dy[0], in[1], g[0]);
  };
  return c;
}

// ---- normalisation and activations -----------------------------------------------------

constexpr float kEps = 1e-5f;

// 24 rows make three row chunks, so the chunked dweight/dbias reduction is exercised.
OpCase layernorm_case(bool with_bias) {
  OpCase c;
  c.name = with_bias ? "layernorm" : "layernorm (no bias)";
  c.input_names = {"x", "weight", "bias"};
  c.output_names = {"y", "mean", "rstd"};
  c.make_inputs = [=](Rng& rng) {
    Tensors in{rng.tensor({3, 8, 10}, -2.0, 2.0), rng.tensor({10}, 0.5, 1.5)};
    if (with_bias) in.push_back(rng.tensor({10}, -0.5, 0.5));
    return in;
  };
  c.forward = [=](Backend& be, const Tensors& in) {
    Tensor y = device_empty(be, {3, 8, 10}), mean = device_empty(be, {24}), rstd = device_empty(be, {24});
    be.layernorm_forward(in[0], in[1], with_bias ? in[2] : Tensor(), kEps, y, mean, rstd);
    return Tensors{y, mean, rstd};
  };
  c.reference = [=](const Tensors& in) { return ref_norm(in[0], in[1], with_bias ? &in[2] : nullptr, kEps, false); };
  c.wrt = with_bias ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1};
  c.backward = [=](Backend& be, const Tensors& in, const Tensors& out, const Tensors& dy, Tensors& g) {
    Tensor none;
    be.layernorm_backward(dy[0], in[0], in[1], out[1], out[2], g[0], g[1], with_bias ? g[2] : none);
  };
  return c;
}

OpCase rmsnorm_case() {
  OpCase c;
  c.name = "rmsnorm";
  c.input_names = {"x", "weight"};
  c.output_names = {"y", "rstd"};
  c.make_inputs = [](Rng& rng) { return Tensors{rng.tensor({24, 10}, -2.0, 2.0), rng.tensor({10}, 0.5, 1.5)}; };
  c.forward = [](Backend& be, const Tensors& in) {
    Tensor y = device_empty(be, {24, 10}), rstd = device_empty(be, {24});
    be.rmsnorm_forward(in[0], in[1], kEps, y, rstd);
    return Tensors{y, rstd};
  };
  c.reference = [](const Tensors& in) {
    auto r = ref_norm(in[0], in[1], nullptr, kEps, true);
    return Expected{r[0], r[2]};
  };
  c.wrt = {0, 1};
  c.backward = [](Backend& be, const Tensors& in, const Tensors& out, const Tensors& dy, Tensors& g) {
    be.rmsnorm_backward(dy[0], in[0], in[1], out[1], g[0], g[1]);
  };
  return c;
}

OpCase gelu_case() {
  OpCase c;
  c.name = "gelu";
  c.input_names = {"x"};
  c.output_names = {"y"};
  c.make_inputs = [](Rng& rng) { return Tensors{rng.tensor({4, 25}, -5.0, 5.0)}; };
  c.forward = [](Backend& be, const Tensors& in) {
    Tensor y = device_empty(be, {4, 25});
    be.gelu_forward(in[0], y);
    return Tensors{y};
  };
  c.reference = [](const Tensors& in) { return Expected{ref_gelu(in[0])}; };
  c.forward_tol = {2e-6, 1e-5};
  c.wrt = {0};
  c.backward = [](Backend& be, const Tensors& in, const Tensors&, const Tensors& dy, Tensors& g) {
    be.gelu_backward(dy[0], in[0], g[0]);
  };
  return c;
}

OpCase swiglu_case() {
  OpCase c;
  c.name = "swiglu";
  c.input_names = {"gate", "up"};
  c.output_names = {"out"};
  c.make_inputs = [](Rng& rng) { return Tensors{rng.tensor({4, 25}, -6.0, 6.0), rng.tensor({4, 25}, -2.0, 2.0)}; };
  c.forward = [](Backend& be, const Tensors& in) {
    Tensor out = device_empty(be, {4, 25});
    be.swiglu_forward(in[0], in[1], out);
    return Tensors{out};
  };
  c.reference = [](const Tensors& in) { return Expected{ref_swiglu(in[0], in[1])}; };
  c.wrt = {0, 1};
  c.backward = [](Backend& be, const Tensors& in, const Tensors&, const Tensors& dy, Tensors& g) {
    be.swiglu_backward(dy[0], in[0], in[1], g[0], g[1]);
  };
  return c;
}

// ---- attention family ------------------------------------------------------------------

OpCase rope_case(const std::string& label, RopeConfig cfg, std::int64_t offset) {
  const AttentionShape shape{2, 5, 4, 2, 8};
  OpCase c;
  c.name = "rope " + label;
  c.input_names = {"qkv"};
  c.output_names = {"qkv"};
  c.make_inputs = [](Rng& rng) { return Tensors{rng.tensor({2, 5, 64})}; };
  c.forward = [=](Backend& be, const Tensors& in) {
    Tensor q = copy_on(be, in[0]);
    be.rope_forward(q, shape, cfg, offset);
    return Tensors{q};
  };
  c.reference = [=](const Tensors& in) { return Expected{ref_rope(in[0], shape, cfg, offset)}; };
  c.forward_tol = {2e-6, 1e-5};
  c.wrt = {0};
  // rope_backward transforms dqkv in place; the table's gradients accumulate, so add it.
  c.backward = [=](Backend& be, const Tensors&, const Tensors&, const Tensors& dy, Tensors& g) {
    Tensor d = copy_on(be, dy[0]);
    be.rope_backward(d, shape, cfg, offset);
    be.add_inplace(g[0], d);
  };
  c.extra = [=](Backend& be, const Tensors& host) {
    Tensor q = upload(be, host[0]);
    be.rope_forward(q, shape, cfg, offset);
    be.rope_backward(q, shape, cfg, offset);
    return std::vector<CheckResult>{
        compare(c.name, "backward(forward(x)) == x", values_of(download(be, q)), values_of(host[0]), {2e-6, 0.0})};
  };
  return c;
}

// head_dim 6 and seq 20 take the remainder paths of the kernel's 4-row and 16-lane blocks;
// seq 70 crosses backward's 64-row query block and head_dim 50 its 64-channel blocks.
OpCase attention_case(const std::string& label, std::int64_t hq, std::int64_t hkv, std::int64_t batch = 2,
                      std::int64_t seq = 6, std::int64_t dim = 8) {
  const AttentionShape shape{batch, seq, hq, hkv, dim};
  const Shape qkv_shape{batch, seq, (hq + 2 * hkv) * dim};
  const Shape out_shape{batch, seq, hq * dim}, lse_shape{batch, hq, seq};
  OpCase c;
  c.name = "attention " + label;
  c.input_names = {"qkv"};
  c.output_names = {"out", "lse"};
  c.make_inputs = [=](Rng& rng) { return Tensors{rng.tensor(qkv_shape, -2.0, 2.0)}; };
  c.forward = [=](Backend& be, const Tensors& in) {
    Tensor out = device_empty(be, out_shape), lse = device_empty(be, lse_shape);
    be.attention_forward(in[0], shape, out, lse);
    return Tensors{out, lse};
  };
  c.reference = [=](const Tensors& in) { return ref_attention(in[0], shape); };
  c.wrt = {0};
  c.backward = [=](Backend& be, const Tensors& in, const Tensors& out, const Tensors& dy, Tensors& g) {
    be.attention_backward(dy[0], in[0], out[0], out[1], shape, g[0]);
  };
  // Causality: new keys and values at the last position change only the last output row.
  c.extra = [=](Backend& be, const Tensors& host) {
    const std::int64_t width = (hq + 2 * hkv) * dim, t_last = shape.seq - 1, row = hq * dim;
    Tensor changed = host[0].clone();
    Rng rng(c.name + " causal");
    for (std::int64_t b = 0; b < shape.batch; ++b) {
      float* token = changed.data<float>() + (b * shape.seq + t_last) * width;
      for (std::int64_t i = hq * dim; i < width; ++i) token[i] = rng.uniform(-2.0, 2.0);
    }
    auto outputs = [&](const Tensor& qkv) {
      Tensor out = device_empty(be, out_shape), lse = device_empty(be, lse_shape);
      be.attention_forward(upload(be, qkv), shape, out, lse);
      return download(be, out);
    };
    const Tensor before = outputs(host[0]), after = outputs(changed);
    bool past_same = true, last_changed = false;
    for (std::int64_t b = 0; b < shape.batch; ++b) {
      for (std::int64_t t = 0; t < shape.seq; ++t) {
        const std::size_t offset = static_cast<std::size_t>((b * shape.seq + t) * row);
        const bool same = std::memcmp(before.data<float>() + offset, after.data<float>() + offset,
                                      static_cast<std::size_t>(row) * sizeof(float)) == 0;
        if (t < t_last) past_same = past_same && same;
        else last_changed = last_changed || !same;
      }
    }
    return std::vector<CheckResult>{exact_check(c.name, "causal: future k/v leave past rows", past_same && last_changed,
                                                "earlier rows changed or the last row did not")};
  };
  return c;
}

// ---- loss ------------------------------------------------------------------------------

OpCase cross_entropy_case() {
  OpCase c;
  c.name = "cross_entropy";
  c.input_names = {"logits", "targets"};
  c.output_names = {"losses"};
  c.make_inputs = [](Rng& rng) { return Tensors{rng.tensor({6, 37}, -3.0, 3.0), rng.ids({5, -1, 36, 0, 17, -1})}; };
  c.forward = [](Backend& be, const Tensors& in) {
    Tensor losses = device_empty(be, {6});
    be.cross_entropy_forward(in[0], in[1], losses);
    return Tensors{losses};
  };
  c.reference = [](const Tensors& in) { return Expected{ref_cross_entropy(in[0], in[1])}; };
  c.wrt = {0};
  c.backward = [](Backend& be, const Tensors& in, const Tensors&, const Tensors& dy, Tensors& g) {
    be.cross_entropy_backward(in[0], in[1], dy[0], g[0]);
  };
  // dlogits aliasing logits: the logits become exactly their gradient (zero for ignored rows).
  c.extra = [](Backend& be, const Tensors& host) {
    Rng rng("cross_entropy alias");
    const Tensor dloss = rng.tensor({6});
    const Tensor targets = upload(be, host[1]), dl = upload(be, dloss);
    Tensor aliased = upload(be, host[0]);
    be.cross_entropy_backward(aliased, targets, dl, aliased);
    Tensor separate = device_empty(be, {6, 37});
    be.fill(separate, 0.0f);
    be.cross_entropy_backward(upload(be, host[0]), targets, dl, separate);
    const Tensor got = download(be, aliased);
    return std::vector<CheckResult>{
        compare("cross_entropy", "aliased dlogits vs reference", values_of(got),
                ref_cross_entropy_grad(host[0], host[1], dloss), {1e-6, 1e-5}),
        exact_check("cross_entropy", "aliased == separate (bits)", bit_identical({got}, {download(be, separate)}),
                    "the aliased gradient differs from the separate one")};
  };
  return c;
}

// V = 1300 spans three 512-wide online-softmax blocks; row 2 rises so its max sits in the
// last block (the running sum is rescaled twice), row 4 peaks in the first block.
OpCase cross_entropy_large_case() {
  OpCase c;
  c.name = "cross_entropy V=1300";
  c.input_names = {"logits", "targets"};
  c.output_names = {"losses"};
  c.make_inputs = [](Rng& rng) {
    Tensor logits = rng.tensor({5, 1300}, -20.0, 20.0);
    for (std::int64_t j = 0; j < 1300; ++j) logits.data<float>()[2 * 1300 + j] = static_cast<float>(j) / 40.0f;
    logits.data<float>()[4 * 1300 + 3] = 35.0f;
    return Tensors{logits, rng.ids({7, 1299, -1, 640, 0})};
  };
  c.forward = [](Backend& be, const Tensors& in) {
    Tensor losses = device_empty(be, {5});
    be.cross_entropy_forward(in[0], in[1], losses);
    return Tensors{losses};
  };
  c.reference = [](const Tensors& in) { return Expected{ref_cross_entropy(in[0], in[1])}; };
  c.extra = [](Backend& be, const Tensors& host) {
    Rng rng("cross_entropy V=1300 backward");
    const Tensor dloss = rng.tensor({5});
    Tensor grad = device_empty(be, {5, 1300});
    be.fill(grad, kGradBase);
    be.cross_entropy_backward(upload(be, host[0]), upload(be, host[1]), upload(be, dloss), grad);
    std::vector<double> got = values_of(download(be, grad));
    for (double& v : got) v -= kGradBase;
    return std::vector<CheckResult>{compare("cross_entropy V=1300", "grad vs analytic reference", got,
                                            ref_cross_entropy_grad(host[0], host[1], dloss), {1e-6, 1e-4})};
  };
  return c;
}

// ---- optimizer and memory ops ------------------------------------------------------------

// Three AdamW steps against the formula in core/backend.h, evaluated in f64.
OpCase adamw_case() {
  constexpr std::int64_t n = 1000;
  Backend::AdamWArgs args;
  args.lr = 1e-2f;
  args.weight_decay = 0.1f;
  args.grad_scale = 0.5f;
  OpCase c;
  c.name = "adamw (3 steps)";
  c.input_names = {"param", "grads", "m", "v"};
  c.output_names = {"param", "m", "v"};
  c.make_inputs = [](Rng& rng) {
    return Tensors{rng.tensor({n}), rng.tensor({3, n}, -2.0, 2.0), rng.tensor({n}, -0.1, 0.1), rng.tensor({n}, 0.0, 0.01)};
  };
  c.forward = [=](Backend& be, const Tensors& in) {
    Tensor p = copy_on(be, in[0]), m = copy_on(be, in[2]), v = copy_on(be, in[3]);
    for (std::int64_t step = 1; step <= 3; ++step) {
      Backend::AdamWArgs a = args;
      a.step = step;
      be.adamw_update(p, in[1].slice_rows(step - 1, step).reshape({n}), m, v, a);
    }
    return Tensors{p, m, v};
  };
  c.reference = [=](const Tensors& in) {
    Expected out{values_of(in[0]), values_of(in[2]), values_of(in[3])};
    for (std::int64_t step = 1; step <= 3; ++step) {
      const double b1 = args.beta1, b2 = args.beta2;
      for (std::int64_t i = 0; i < n; ++i) {
        double& p = out[0][i];
        double& m = out[1][i];
        double& v = out[2][i];
        const double g = at(in[1], (step - 1) * n + i) * double(args.grad_scale);
        m = b1 * m + (1 - b1) * g;
        v = b2 * v + (1 - b2) * g * g;
        const double m_hat = m / (1 - std::pow(b1, double(step))), v_hat = v / (1 - std::pow(b2, double(step)));
        p -= double(args.lr) * (m_hat / (std::sqrt(v_hat) + double(args.eps)) + double(args.weight_decay) * p);
      }
    }
    return out;
  };
  c.forward_tol = {1e-6, 1e-5};
  return c;
}

// sum_squares over 20000 elements (three 8192 blocks) and all_finite; no gradients.
OpCase reductions_case() {
  OpCase c;
  c.name = "sum_squares / all_finite";
  c.make_inputs = [](Rng& rng) { return Tensors{rng.tensor({20000}, -3.0, 3.0)}; };
  c.extra = [](Backend& be, const Tensors& host) {
    double want = 0.0;
    for (std::int64_t i = 0; i < host[0].numel(); ++i) want += at(host[0], i) * at(host[0], i);
    const Tensor x = upload(be, host[0]);
    std::vector<CheckResult> out;
    out.push_back(compare("sum_squares", "vs f64 loop", {be.sum_squares(x)}, {want}, {0.0, 1e-12}));
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const double one = be.sum_squares(x);
    omp_set_num_threads(3);
    const double three = be.sum_squares(x);
    omp_set_num_threads(threads);
    out.push_back(exact_check("sum_squares", "1 vs 3 threads bit-identical", one == three, "thread-dependent sum"));
    bool ok = be.all_finite(x);
    for (std::int64_t pos : {std::int64_t{0}, std::int64_t{12345}, std::int64_t{19999}}) {
      for (float bad : {std::nanf(""), HUGE_VALF, -HUGE_VALF}) {
        Tensor y = host[0].clone();
        y.data<float>()[pos] = bad;
        ok = ok && !be.all_finite(upload(be, y));
      }
    }
    out.push_back(exact_check("all_finite", "finite / NaN / +-inf at 3 positions", ok, "wrong verdict"));
    return out;
  };
  return c;
}

OpCase memory_case() {
  OpCase c;
  c.name = "fill / copy / add / scale";
  c.make_inputs = [](Rng& rng) { return Tensors{rng.tensor({3, 333}), rng.tensor({999})}; };
  c.extra = [](Backend& be, const Tensors& host) {
    std::vector<CheckResult> out;
    const std::vector<double> x = values_of(host[0]), y = values_of(host[1]);
    Tensor t = device_empty(be, {3, 333});
    be.fill(t, 2.5f);
    out.push_back(compare("fill", "f32 value 2.5", values_of(download(be, t)), std::vector<double>(999, 2.5), {0, 0}));
    Tensor ids = device_empty(be, {17}, DType::I32);
    be.fill(ids, 7.0f);
    const Tensor ids_host = download(be, ids);
    bool ids_ok = true;
    for (std::int64_t i = 0; i < 17; ++i) ids_ok = ids_ok && ids_host.data<std::int32_t>()[i] == 7;
    out.push_back(exact_check("fill", "i32 value 7", ids_ok, "wrong i32 fill"));
    be.copy(upload(be, host[1]), t);  // same numel, different shape
    out.push_back(compare("copy", "exact", values_of(download(be, t)), y, {0, 0}));
    be.add_inplace(t, upload(be, host[0]), -0.5f);
    std::vector<double> want(999);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = y[i] - 0.5 * x[i];
    out.push_back(compare("add_inplace", "y += -0.5 x", values_of(download(be, t)), want, {1e-7, 1e-7}));
    be.scale_inplace(t, 3.0f);
    for (double& v : want) v *= 3.0;
    out.push_back(compare("scale_inplace", "x *= 3", values_of(download(be, t)), want, {3e-7, 3e-7}));
    return out;
  };
  return c;
}

// Bad arguments throw std::invalid_argument naming the op and the offending tensor.
OpCase argument_checks_case() {
  OpCase c;
  c.name = "argument checks";
  c.extra = [](Backend& be, const Tensors&) {
    std::vector<CheckResult> out;
    auto expect_throw = [&](const std::string& what, const std::string& needle, const std::function<void()>& call) {
      std::string message = "no exception";
      bool ok = false;
      try {
        call();
      } catch (const std::invalid_argument& e) {
        message = e.what();
        ok = message.find(needle) != std::string::npos;
      }
      out.push_back(exact_check("argument checks", what, ok, message));
    };
    Tensor x = device_empty(be, {4, 8}), w = device_empty(be, {7}), y = device_empty(be, {4, 8});
    Tensor mean = device_empty(be, {4}), rstd = device_empty(be, {4});
    expect_throw("layernorm weight size", "layernorm_forward: weight is [7] f32",
                 [&] { be.layernorm_forward(x, w, Tensor(), kEps, y, mean, rstd); });
    Tensor a = device_empty(be, {3, 5}), b = device_empty(be, {4, 2}), cc = device_empty(be, {3, 2});
    expect_throw("matmul inner dims", "matmul: op(a) @ op(b) does not fit c: a [3, 5] f32",
                 [&] { be.matmul(a, false, b, false, cc, 1.0f, 0.0f); });
    Tensor qkv = device_empty(be, {1, 2, 5 * 4}), out_t = device_empty(be, {1, 2, 12}), lse = device_empty(be, {1, 3, 2});
    expect_throw("attention q_heads % kv_heads", "q_heads a multiple of kv_heads",
                 [&] { be.attention_forward(qkv, AttentionShape{1, 2, 3, 2, 4}, out_t, lse); });
    Tensor logits = device_empty(be, {2, 5}), targets = upload(be, Rng("t").ids({1, 5})), losses = device_empty(be, {2});
    expect_throw("cross_entropy target >= V", "targets[1] = 5", [&] { be.cross_entropy_forward(logits, targets, losses); });
    Tensor index = upload(be, Rng("i").ids({0, 4})), rows = device_empty(be, {2, 8});
    expect_throw("gather index out of range", "index[1] = 4", [&] { be.gather_rows(x, index, rows); });
    Tensor ints = device_empty(be, {4, 8}, DType::I32);
    expect_throw("dtype", "gelu_forward: x must be a f32 cpu tensor, got [4, 8] i32", [&] { be.gelu_forward(ints, y); });
    return out;
  };
  return c;
}

std::vector<OpCase> op_table() {
  RopeConfig none, linear, ntk, partial;
  linear.scaling = RopeConfig::Scaling::Linear;
  linear.factor = 4.0f;
  ntk.scaling = RopeConfig::Scaling::NTK;
  ntk.factor = 8.0f;
  partial.rotary_dim = 4;
  return {
      matmul_case(false, false, 1.0f, 0.0f),
      matmul_case(false, false, 1.5f, 0.5f),
      matmul_case(false, true, 1.5f, 0.5f),
      matmul_case(true, false, 1.5f, 0.5f),
      matmul_case(true, true, 1.5f, 0.5f),
      linear_case(true),
      linear_case(false),
      embedding_case(false),
      embedding_case(true),
      gather_case(),
      layernorm_case(true),
      layernorm_case(false),
      rmsnorm_case(),
      gelu_case(),
      swiglu_case(),
      rope_case("none", none, 0),
      rope_case("linear x4", linear, 7),
      rope_case("NTK x8", ntk, 3),
      rope_case("rotary_dim 4", partial, 2),
      attention_case("MHA Hq=Hkv=2", 2, 2),
      attention_case("GQA Hq=4 Hkv=2", 4, 2),
      attention_case("GQA Hq=4 Hkv=1", 4, 1),
      attention_case("GQA Hq=2 Hkv=1 T=20 D=6", 2, 1, 1, 20, 6),
      attention_case("MHA T=70 D=50", 1, 1, 1, 70, 50),
      cross_entropy_case(),
      cross_entropy_large_case(),
      adamw_case(),
      reductions_case(),
      memory_case(),
      argument_checks_case(),
  };
}

void require_all_pass(const std::vector<CheckResult>& results) {
  for (const CheckResult& r : results) {
    BOOST_CHECK_MESSAGE(r.passed(), r.backend << " | " << r.op << " | " << r.check << ": " << r.failures << " of "
                                              << r.count << " outside tolerance, first " << r.first_failure);
  }
}

const OpCase& find_case(const std::vector<OpCase>& table, const std::string& name) {
  for (const OpCase& c : table) {
    if (c.name == name) return c;
  }
  throw std::runtime_error("no op case named " + name);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_op_on_every_backend) {
  const std::vector<OpCase> table = op_table();
  for (const auto& backend : compiled_backends()) {
    std::vector<CheckResult> results;
    for (const OpCase& c : table) {
      BOOST_TEST_CONTEXT(backend->name() << " " << c.name) {
        try {
          for (CheckResult& r : run_case(c, *backend)) results.push_back(std::move(r));
        } catch (const std::exception& e) {
          BOOST_ERROR(c.name << " threw: " << e.what());
        }
      }
    }
    std::printf("\n== backend %s: %zu table entries, %zu checks", backend->name().c_str(), table.size(), results.size());
    print_results(results);
    require_all_pass(results);
  }
}

// Vocab-parallel cross-entropy: the logits cut into 3 column shards (as 3 tensor-parallel
// ranks hold them) give, through stats -> combine -> shard backward, the losses and the
// gradient of the full-vocabulary reference; targets fall in every shard and some are
// ignored. Row 2 has its max in the last shard, row 4 a spike in the first.
BOOST_AUTO_TEST_CASE(vocab_parallel_cross_entropy_matches_full_vocabulary) {
  constexpr std::int64_t kRows = 6, kShards = 3, kWidth = 13, kVocab = kShards * kWidth;
  Rng rng("vocab parallel cross entropy");
  Tensor logits = rng.tensor({kRows, kVocab}, -8.0, 8.0);
  for (std::int64_t j = 0; j < kVocab; ++j) logits.data<float>()[2 * kVocab + j] = static_cast<float>(j) / 3.0f;
  logits.data<float>()[4 * kVocab + 1] = 30.0f;
  const Tensor targets = rng.ids({5, -1, 38, 0, 20, 13});
  const Tensor dloss = rng.tensor({kRows});
  for (const auto& backend : compiled_backends()) {
    Backend& be = *backend;
    const Tensor dev_targets = upload(be, targets), dev_dloss = upload(be, dloss);
    std::vector<Tensor> shards;
    Tensor all_stats = Tensor::empty({kShards, kRows, 3}, DType::F32, Device::CPU);
    for (std::int64_t s = 0; s < kShards; ++s) {
      Tensor shard = Tensor::empty({kRows, kWidth}, DType::F32, Device::CPU);
      for (std::int64_t r = 0; r < kRows; ++r) {
        std::memcpy(shard.data<float>() + r * kWidth, logits.data<float>() + r * kVocab + s * kWidth,
                    sizeof(float) * kWidth);
      }
      shards.push_back(upload(be, shard));
      Tensor stats = device_empty(be, {kRows, 3});
      be.cross_entropy_shard_stats(shards.back(), dev_targets, s * kWidth, stats);
      const Tensor host_stats = download(be, stats);
      std::memcpy(all_stats.data<float>() + s * kRows * 3, host_stats.data<float>(), sizeof(float) * kRows * 3);
    }
    const Tensor dev_all = upload(be, all_stats);
    Tensor lse = device_empty(be, {kRows}), losses = device_empty(be, {kRows});
    be.cross_entropy_shard_combine(dev_all, dev_targets, lse, losses);
    std::vector<CheckResult> results;
    results.push_back(compare("cross_entropy vocab-parallel", "losses vs full reference", values_of(download(be, losses)),
                              ref_cross_entropy(logits, targets), {1e-5, 1e-5}));
    Values grad(static_cast<std::size_t>(kRows * kVocab));
    for (std::int64_t s = 0; s < kShards; ++s) {
      be.cross_entropy_shard_backward(shards[static_cast<std::size_t>(s)], dev_targets, s * kWidth, lse, dev_dloss,
                                      shards[static_cast<std::size_t>(s)]);
      const Tensor g = download(be, shards[static_cast<std::size_t>(s)]);
      for (std::int64_t r = 0; r < kRows; ++r) {
        for (std::int64_t j = 0; j < kWidth; ++j) {
          grad[static_cast<std::size_t>(r * kVocab + s * kWidth + j)] = g.data<float>()[r * kWidth + j];
        }
      }
    }
    results.push_back(compare("cross_entropy vocab-parallel", "dlogits vs full reference", grad,
                              ref_cross_entropy_grad(logits, targets, dloss), {1e-6, 1e-5}));
    Tensor lse_again = device_empty(be, {kRows}), losses_again = device_empty(be, {kRows});
    be.cross_entropy_shard_combine(dev_all, dev_targets, lse_again, losses_again);
    results.push_back(exact_check("cross_entropy vocab-parallel", "combine repeats bit-identically",
                                  bit_identical({download(be, losses)}, {download(be, losses_again)}),
                                  "two combines of the same stats differ"));
    print_results(results);
    require_all_pass(results);
  }
}

// The checker must fail a gradient that is 1% off everywhere, one with a single element off
// by 0.01, and one that forgot the pre-filled buffer; otherwise the table's gradient checks
// would prove nothing.
BOOST_AUTO_TEST_CASE(finite_difference_checker_rejects_wrong_gradients) {
  const std::vector<OpCase> table = op_table();
  auto backend = make_cpu_backend();
  std::vector<CheckResult> shown;
  for (const char* name : {"layernorm", "attention GQA Hq=4 Hkv=2", "linear (bias)", "cross_entropy"}) {
    const OpCase& c = find_case(table, name);
    const GradTamper scaled = [](std::vector<double>& g) {
      for (double& v : g) v *= 1.01;
    };
    const GradTamper one_element = [](std::vector<double>& g) { g[g.size() / 2] += 0.01; };
    // What a backward that overwrites its gradient buffer instead of adding looks like.
    const GradTamper overwrote = [](std::vector<double>& g) {
      for (double& v : g) v -= kGradBase;
    };
    for (const auto& [label, tamper] : {std::pair{"x1.01", scaled}, std::pair{"one element +0.01", one_element},
                                        std::pair{"overwrite, no +=", overwrote}}) {
      for (CheckResult& r : run_case(c, *backend, tamper)) {
        if (r.check.rfind("grad ", 0) != 0) continue;
        BOOST_CHECK_MESSAGE(!r.passed(), name << " " << r.check << " accepted a gradient tampered " << label
                                              << " (worst err/tol " << r.worst << ")");
        r.check += " [" + std::string(label) + "]";
        shown.push_back(std::move(r));
      }
    }
  }
  std::printf("\n== finite-difference self-test (every row must FAIL)");
  print_results(shown);
}

}  // namespace loom::test
