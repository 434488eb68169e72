// Every op of the CUDA backend against the CPU backend (the reference), at f32 and at bf16.
//
// Inputs are drawn on the CPU from a fixed seed. For bf16 the inputs are rounded through
// bf16 first and the CPU runs on those rounded values in f32, so the only differences left
// are the GPU's bf16 storage of outputs and its summation order. Tolerances are relative to
// the largest magnitude of the reference output: ~1e-5 for elementwise f32 ops, ~1e-4 where
// long sums differ in order (GEMM, attention, cross-entropy), 2e-2 for bf16. Backward ops
// run on non-zero pre-filled gradients (they add into them). Embedding, attention and
// cross-entropy backward must also be bit-identical across two runs.
//
// Without a GPU the test prints "test_cuda_ops: skipped: <reason>" and exits 77 (CTest
// reports it as skipped).
#define BOOST_TEST_MODULE cuda_ops
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "tests/gpu/gpu_test_util.h"
#include "core/mix64.h"
#include "core/tensor.h"

using loom::AttentionShape;
using loom::Backend;
using loom::Device;
using loom::DType;
using loom::RopeConfig;
using loom::Shape;
using loom::Tensor;

namespace {

using loom::gpu_test::cpu;
using loom::gpu_test::down;
using loom::gpu_test::expect_bit_identical;
using loom::gpu_test::expect_close;
using loom::gpu_test::gpu;
using loom::gpu_test::random;
using loom::gpu_test::rounded;
using loom::gpu_test::up;

const DType kDtypes[] = {DType::F32, DType::BF16};

Tensor ints(const std::vector<std::int32_t>& values) {
  Tensor t = Tensor::empty({static_cast<std::int64_t>(values.size())}, DType::I32);
  std::memcpy(t.raw(), values.data(), values.size() * sizeof(std::int32_t));
  return t;
}

double tolerance(DType dtype, double f32_tolerance) { return dtype == DType::F32 ? f32_tolerance : 2e-2; }

std::string label(const char* op, DType dtype) { return std::string(op) + " " + loom::dtype_name(dtype); }

}  // namespace

BOOST_AUTO_TEST_CASE(memory_ops) {
  for (DType dt : kDtypes) {
    const Tensor x = rounded(random({7, 33}, 1), dt);
    const Tensor y = rounded(random({7, 33}, 2), dt);
    Tensor gx = up(x, dt);
    expect_close(label("copy round trip", dt), gx, x, 0.0);

    Tensor gf = up(x, dt);
    gpu().fill(gf, 0.25f);
    Tensor ones = Tensor::empty({7, 33});
    cpu().fill(ones, 0.25f);
    expect_close(label("fill", dt), gf, ones, 0.0);

    Tensor cy = y.clone();
    Tensor gy = up(y, dt);
    cpu().add_inplace(cy, x, -0.5f);
    gpu().add_inplace(gy, gx, -0.5f);
    expect_close(label("add_inplace", dt), gy, cy, tolerance(dt, 1e-6));
    cpu().scale_inplace(cy, 3.0f);
    gpu().scale_inplace(gy, 3.0f);
    expect_close(label("scale_inplace", dt), gy, cy, tolerance(dt, 1e-6));

    const Tensor big = rounded(random({100003}, 3), dt);
    const double want = cpu().sum_squares(big);
    const double got = gpu().sum_squares(up(big, dt));
    BOOST_CHECK_CLOSE(got, want, 1e-9);
    BOOST_CHECK(gpu().all_finite(up(big, dt)));
    Tensor bad = big.clone();
    bad.data<float>()[77777] = std::numeric_limits<float>::infinity();
    BOOST_CHECK(!gpu().all_finite(up(bad, dt)));
    bad.data<float>()[77777] = std::numeric_limits<float>::quiet_NaN();
    BOOST_CHECK(!gpu().all_finite(up(bad, dt)));
  }
  // f32 -> bf16 on the device rounds exactly as loom::to_bf16 on the host.
  const Tensor x = random({1000}, 4, 3.0f);
  Tensor g32 = up(x, DType::F32);
  Tensor g16 = Tensor::empty({1000}, DType::BF16, Device::CUDA);
  gpu().copy(g32, g16);
  Tensor host16 = Tensor::empty({1000}, DType::BF16);
  gpu().copy(g16, host16);
  std::int64_t mismatches = 0;
  for (std::int64_t i = 0; i < 1000; ++i) {
    mismatches += host16.data<loom::bf16>()[i].bits != loom::to_bf16(x.data<float>()[i]).bits ? 1 : 0;
  }
  BOOST_CHECK_EQUAL(mismatches, 0);
  Tensor gi = up(ints({3, -1, 7}));
  gpu().fill(gi, 5.0f);
  const Tensor hi = down(gi);
  BOOST_CHECK_EQUAL(hi.data<std::int32_t>()[1], 5);
}

BOOST_AUTO_TEST_CASE(matmul_and_linear) {
  const std::int64_t m = 7, n = 33, k = 65;
  for (DType dt : kDtypes) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool ta = (variant & 1) != 0, tb = (variant & 2) != 0;
      const Tensor a = rounded(random(ta ? Shape{k, m} : Shape{m, k}, 10 + variant), dt);
      const Tensor b = rounded(random(tb ? Shape{n, k} : Shape{k, n}, 20 + variant), dt);
      Tensor c = rounded(random({m, n}, 30 + variant), dt);
      Tensor gc = up(c, dt);
      cpu().matmul(a, ta, b, tb, c, 0.5f, 1.0f);
      gpu().matmul(up(a, dt), ta, up(b, dt), tb, gc, 0.5f, 1.0f);
      expect_close(label("matmul", dt) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb), gc, c,
                   tolerance(dt, 1e-4));
    }
    const Tensor x = rounded(random({m, k}, 40), dt);
    const Tensor w = rounded(random({n, k}, 41), dt);
    const Tensor bias = rounded(random({n}, 42), dt);
    for (bool with_bias : {true, false}) {
      Tensor y = Tensor::empty({m, n});
      Tensor gy = Tensor::empty({m, n}, dt, Device::CUDA);
      const Tensor no_bias;
      cpu().linear_forward(x, w, with_bias ? bias : no_bias, y);
      gpu().linear_forward(up(x, dt), up(w, dt), with_bias ? up(bias, dt) : no_bias, gy);
      expect_close(label("linear_forward", dt) + (with_bias ? " bias" : " no bias"), gy, y, tolerance(dt, 1e-4));
    }
    const Tensor dy = rounded(random({m, n}, 43), dt);
    Tensor dx = rounded(random({m, k}, 44), dt), dw = rounded(random({n, k}, 45), dt),
           db = rounded(random({n}, 46), dt);
    Tensor gdx = up(dx, dt), gdw = up(dw, dt), gdb = up(db, dt);
    cpu().linear_backward(dy, x, w, dx, dw, db);
    gpu().linear_backward(up(dy, dt), up(x, dt), up(w, dt), gdx, gdw, gdb);
    expect_close(label("linear_backward dx", dt), gdx, dx, tolerance(dt, 1e-4));
    expect_close(label("linear_backward dw", dt), gdw, dw, tolerance(dt, 1e-4));
    expect_close(label("linear_backward dbias", dt), gdb, db, tolerance(dt, 1e-5));
    Tensor none;
    Tensor gdx2 = up(dx, dt);
    gpu().linear_backward(up(dy, dt), up(x, dt), up(w, dt), gdx2, none, none);  // frozen weight
    cpu().linear_backward(dy, x, w, dx, none, none);
    expect_close(label("linear_backward dx only", dt), gdx2, dx, tolerance(dt, 1e-4));
  }
}

BOOST_AUTO_TEST_CASE(embedding_and_rows) {
  const std::int64_t vocab = 50, c = 33;
  const Tensor ids = ints({3, 7, 3, 49, 0, 12, 3, 60, -1, 7, 20});  // repeats, and ids outside [10, 60)
  const std::int64_t n = ids.numel();
  for (DType dt : kDtypes) {
    const Tensor table = rounded(random({vocab, c}, 50), dt);
    for (bool accumulate : {false, true}) {
      Tensor out = rounded(random({n, c}, 51), dt);
      Tensor gout = up(out, dt);
      cpu().embedding_forward(ids, table, out, 10, accumulate);
      gpu().embedding_forward(up(ids), up(table, dt), gout, 10, accumulate);
      expect_close(label("embedding_forward", dt) + (accumulate ? " accumulate" : ""), gout, out, tolerance(dt, 1e-6));
    }
    const Tensor dout = rounded(random({n, c}, 52), dt);
    Tensor dtable = rounded(random({vocab, c}, 53), dt);
    Tensor gdtable = up(dtable, dt), gdtable2 = up(dtable, dt);
    cpu().embedding_backward(ids, dout, dtable, 0);
    gpu().embedding_backward(up(ids), up(dout, dt), gdtable, 0);
    gpu().embedding_backward(up(ids), up(dout, dt), gdtable2, 0);
    expect_close(label("embedding_backward", dt), gdtable, dtable, tolerance(dt, 1e-6));
    expect_bit_identical(label("embedding_backward", dt), gdtable, gdtable2);

    const Tensor x = rounded(random({20, c}, 54), dt);
    const Tensor index = ints({19, 0, 5, 5, 12});
    Tensor gathered = Tensor::empty({5, c});
    Tensor ggathered = Tensor::empty({5, c}, dt, Device::CUDA);
    cpu().gather_rows(x, index, gathered);
    gpu().gather_rows(up(x, dt), up(index), ggathered);
    expect_close(label("gather_rows", dt), ggathered, gathered, 0.0);
    Tensor dx = rounded(random({20, c}, 55), dt);
    Tensor gdx = up(dx, dt);
    const Tensor drows = rounded(random({5, c}, 56), dt);
    cpu().scatter_add_rows(drows, index, dx);
    gpu().scatter_add_rows(up(drows, dt), up(index), gdx);
    expect_close(label("scatter_add_rows", dt), gdx, dx, tolerance(dt, 1e-6));
  }
}

BOOST_AUTO_TEST_CASE(norms) {
  const std::int64_t n = 7, c = 33;
  for (DType dt : kDtypes) {
    const double tol = tolerance(dt, 1e-5);
    const Tensor x = rounded(random({n, c}, 60, 2.0f), dt);
    const Tensor w = rounded(random({c}, 61), dt);
    const Tensor b = rounded(random({c}, 62), dt);
    const Tensor dy = rounded(random({n, c}, 63), dt);
    for (bool with_bias : {true, false}) {
      const Tensor bias = with_bias ? b : Tensor();
      Tensor y = Tensor::empty({n, c}), mean = Tensor::empty({n}), rstd = Tensor::empty({n});
      Tensor gy = Tensor::empty({n, c}, dt, Device::CUDA);
      Tensor gmean = Tensor::empty({n}, DType::F32, Device::CUDA), grstd = Tensor::empty({n}, DType::F32, Device::CUDA);
      cpu().layernorm_forward(x, w, bias, 1e-5f, y, mean, rstd);
      gpu().layernorm_forward(up(x, dt), up(w, dt), with_bias ? up(bias, dt) : Tensor(), 1e-5f, gy, gmean, grstd);
      expect_close(label("layernorm_forward y", dt), gy, y, tol);
      expect_close(label("layernorm_forward mean", dt), gmean, mean, 1e-5);
      expect_close(label("layernorm_forward rstd", dt), grstd, rstd, 1e-5);
      Tensor dx = rounded(random({n, c}, 64), dt), dw = rounded(random({c}, 65), dt), db = rounded(random({c}, 66), dt);
      Tensor gdx = up(dx, dt), gdw = up(dw, dt), gdb = up(db, dt);
      Tensor db_or_none = with_bias ? db : Tensor();
      Tensor gdb_or_none = with_bias ? gdb : Tensor();
      cpu().layernorm_backward(dy, x, w, mean, rstd, dx, dw, db_or_none);
      gpu().layernorm_backward(up(dy, dt), up(x, dt), up(w, dt), gmean, grstd, gdx, gdw, gdb_or_none);
      expect_close(label("layernorm_backward dx", dt), gdx, dx, tol);
      expect_close(label("layernorm_backward dweight", dt), gdw, dw, tol);
      if (with_bias) expect_close(label("layernorm_backward dbias", dt), gdb, db, tol);
    }
    Tensor y = Tensor::empty({n, c}), rstd = Tensor::empty({n});
    Tensor gy = Tensor::empty({n, c}, dt, Device::CUDA), grstd = Tensor::empty({n}, DType::F32, Device::CUDA);
    cpu().rmsnorm_forward(x, w, 1e-6f, y, rstd);
    gpu().rmsnorm_forward(up(x, dt), up(w, dt), 1e-6f, gy, grstd);
    expect_close(label("rmsnorm_forward y", dt), gy, y, tol);
    expect_close(label("rmsnorm_forward rstd", dt), grstd, rstd, 1e-5);
    Tensor dx = rounded(random({n, c}, 67), dt), dw = rounded(random({c}, 68), dt);
    Tensor gdx = up(dx, dt), gdw = up(dw, dt);
    cpu().rmsnorm_backward(dy, x, w, rstd, dx, dw);
    gpu().rmsnorm_backward(up(dy, dt), up(x, dt), up(w, dt), grstd, gdx, gdw);
    expect_close(label("rmsnorm_backward dx", dt), gdx, dx, tol);
    expect_close(label("rmsnorm_backward dweight", dt), gdw, dw, tol);
  }
}

BOOST_AUTO_TEST_CASE(activations_and_dropout) {
  const Shape shape{7, 33};
  for (DType dt : kDtypes) {
    const double tol = tolerance(dt, 1e-5);
    const Tensor x = rounded(random(shape, 70, 4.0f), dt);
    const Tensor up_in = rounded(random(shape, 71), dt);
    const Tensor dy = rounded(random(shape, 72), dt);
    Tensor y = Tensor::empty(shape), gy = Tensor::empty(shape, dt, Device::CUDA);
    cpu().gelu_forward(x, y);
    gpu().gelu_forward(up(x, dt), gy);
    expect_close(label("gelu_forward", dt), gy, y, tol);
    Tensor dx = rounded(random(shape, 73), dt);
    Tensor gdx = up(dx, dt);
    cpu().gelu_backward(dy, x, dx);
    gpu().gelu_backward(up(dy, dt), up(x, dt), gdx);
    expect_close(label("gelu_backward", dt), gdx, dx, tol);

    cpu().swiglu_forward(x, up_in, y);
    gpu().swiglu_forward(up(x, dt), up(up_in, dt), gy);
    expect_close(label("swiglu_forward", dt), gy, y, tol);
    Tensor dg = rounded(random(shape, 74), dt), du = rounded(random(shape, 75), dt);
    Tensor gdg = up(dg, dt), gdu = up(du, dt);
    cpu().swiglu_backward(dy, x, up_in, dg, du);
    gpu().swiglu_backward(up(dy, dt), up(x, dt), up(up_in, dt), gdg, gdu);
    expect_close(label("swiglu_backward dgate", dt), gdg, dg, tol);
    expect_close(label("swiglu_backward dup", dt), gdu, du, tol);

    Backend::DropoutArgs args;
    args.p = 0.3f;
    args.key = 12345;
    args.token0 = 5;
    args.features = 80;
    args.feature0 = 11;
    for (bool accumulate : {false, true}) {
      Tensor out = rounded(random(shape, 76), dt);
      Tensor gout = up(out, dt);
      cpu().dropout_forward(x, out, args, accumulate);
      gpu().dropout_forward(up(x, dt), gout, args, accumulate);
      expect_close(label("dropout_forward", dt) + (accumulate ? " accumulate" : ""), gout, out, tolerance(dt, 1e-6));
    }
  }
}

BOOST_AUTO_TEST_CASE(rope) {
  AttentionShape s{2, 9, 4, 2, 64};
  const Shape shape{s.batch, s.seq, (s.q_heads + 2 * s.kv_heads) * s.head_dim};
  std::vector<RopeConfig> configs(4);
  configs[1].scaling = RopeConfig::Scaling::Linear;
  configs[1].factor = 4.0f;
  configs[2].scaling = RopeConfig::Scaling::NTK;
  configs[2].factor = 2.0f;
  configs[2].theta = 500000.0f;
  configs[3].rotary_dim = 16;
  for (DType dt : kDtypes) {
    for (std::size_t i = 0; i < configs.size(); ++i) {
      Tensor qkv = rounded(random(shape, 80 + i), dt);
      Tensor gqkv = up(qkv, dt);
      cpu().rope_forward(qkv, s, configs[i], 1000);
      gpu().rope_forward(gqkv, s, configs[i], 1000);
      expect_close(label("rope_forward", dt) + " config " + std::to_string(i), gqkv, qkv, tolerance(dt, 1e-5));
      Tensor d = rounded(random(shape, 90 + i), dt);
      Tensor gd = up(d, dt);
      cpu().rope_backward(d, s, configs[i], 1000);
      gpu().rope_backward(gd, s, configs[i], 1000);
      expect_close(label("rope_backward", dt) + " config " + std::to_string(i), gd, d, tolerance(dt, 1e-5));
    }
  }
}

BOOST_AUTO_TEST_CASE(attention) {
  const AttentionShape shapes[] = {{2, 65, 8, 2, 64}, {1, 65, 4, 4, 128}, {2, 7, 2, 1, 32}, {1, 33, 3, 1, 20}};
  for (DType dt : kDtypes) {
    for (const AttentionShape& s : shapes) {
      const std::string name = "attention B=" + std::to_string(s.batch) + " T=" + std::to_string(s.seq) +
                               " Hq=" + std::to_string(s.q_heads) + " Hkv=" + std::to_string(s.kv_heads) +
                               " D=" + std::to_string(s.head_dim) + " " + loom::dtype_name(dt);
      const std::int64_t width = (s.q_heads + 2 * s.kv_heads) * s.head_dim;
      const Tensor qkv = rounded(random({s.batch, s.seq, width}, 100, 2.0f), dt);
      Tensor out = Tensor::empty({s.batch, s.seq, s.q_heads * s.head_dim});
      Tensor lse = Tensor::empty({s.batch, s.q_heads, s.seq});
      cpu().attention_forward(qkv, s, out, lse);
      const Tensor gqkv = up(qkv, dt);
      Tensor gout = Tensor::empty(out.shape(), dt, Device::CUDA);
      Tensor glse = Tensor::empty(lse.shape(), DType::F32, Device::CUDA);
      gpu().attention_forward(gqkv, s, gout, glse);
      expect_close(name + " forward out", gout, out, tolerance(dt, 1e-4));
      expect_close(name + " forward lse", glse, lse, dt == DType::F32 ? 1e-5 : 1e-3);

      // Backward from each side's own forward, as training does.
      const Tensor dout = rounded(random(out.shape(), 101), dt);
      Tensor dqkv = rounded(random(qkv.shape(), 102), dt);
      Tensor gdqkv = up(dqkv, dt), gdqkv2 = up(dqkv, dt);
      cpu().attention_backward(dout, qkv, rounded(out, dt), lse, s, dqkv);
      const Tensor gdout = up(dout, dt);
      gpu().attention_backward(gdout, gqkv, gout, glse, s, gdqkv);
      gpu().attention_backward(gdout, gqkv, gout, glse, s, gdqkv2);
      expect_close(name + " backward dqkv", gdqkv, dqkv, tolerance(dt, 1e-4));
      expect_bit_identical(name + " backward", gdqkv, gdqkv2);
    }
  }
}

BOOST_AUTO_TEST_CASE(attention_cached) {
  const AttentionShape full{2, 65, 8, 2, 64};
  const std::int64_t capacity = 70, first = 40;
  const std::int64_t width = (full.q_heads + 2 * full.kv_heads) * full.head_dim;
  for (DType dt : kDtypes) {
    const Tensor qkv = rounded(random({full.batch, full.seq, width}, 110), dt);
    const Shape cache_shape{full.batch, full.kv_heads, capacity, full.head_dim};
    Tensor kc = Tensor::zeros(cache_shape), vc = Tensor::zeros(cache_shape);
    Tensor gkc = up(kc, dt), gvc = up(vc, dt);
    // Two calls: a prompt of `first` tokens, then the rest at position `first`.
    for (int step = 0; step < 2; ++step) {
      const std::int64_t position = step == 0 ? 0 : first;
      const std::int64_t seq = step == 0 ? first : full.seq - first;
      AttentionShape s = full;
      s.seq = seq;
      Tensor part = Tensor::empty({full.batch, seq, width});
      for (std::int64_t b = 0; b < full.batch; ++b) {
        std::memcpy(part.data<float>() + b * seq * width, qkv.data<float>() + (b * full.seq + position) * width,
                    static_cast<std::size_t>(seq * width) * sizeof(float));
      }
      Tensor out = Tensor::empty({full.batch, seq, full.q_heads * full.head_dim});
      Tensor gout = Tensor::empty(out.shape(), dt, Device::CUDA);
      cpu().attention_cached_forward(part, s, position, kc, vc, out);
      gpu().attention_cached_forward(up(part, dt), s, position, gkc, gvc, gout);
      expect_close(label("attention_cached_forward out", dt) + " step " + std::to_string(step), gout, out,
                   tolerance(dt, 1e-4));
    }
    expect_close(label("attention_cached_forward k_cache", dt), gkc, kc, 0.0);
    expect_close(label("attention_cached_forward v_cache", dt), gvc, vc, 0.0);
  }
}

BOOST_AUTO_TEST_CASE(cross_entropy) {
  const std::int64_t n = 7, vocab = 1000;
  const Tensor targets = ints({5, 999, -1, 0, 612, 388, 400});
  for (DType dt : kDtypes) {
    const double tol = tolerance(dt, 1e-4);
    const Tensor logits = rounded(random({n, vocab}, 120, 6.0f), dt);
    const Tensor dloss = random({n}, 121);
    const Tensor glogits = up(logits, dt);
    Tensor losses = Tensor::empty({n}), glosses = Tensor::empty({n}, DType::F32, Device::CUDA);
    cpu().cross_entropy_forward(logits, targets, losses);
    gpu().cross_entropy_forward(glogits, up(targets), glosses);
    expect_close(label("cross_entropy_forward", dt), glosses, losses, dt == DType::F32 ? 1e-5 : 1e-3);

    Tensor dlogits = rounded(random({n, vocab}, 122), dt);
    Tensor gd = up(dlogits, dt), gd2 = up(dlogits, dt);
    cpu().cross_entropy_backward(logits, targets, dloss, dlogits);
    gpu().cross_entropy_backward(glogits, up(targets), up(dloss), gd);
    gpu().cross_entropy_backward(glogits, up(targets), up(dloss), gd2);
    expect_close(label("cross_entropy_backward", dt), gd, dlogits, tol);
    expect_bit_identical(label("cross_entropy_backward", dt), gd, gd2);

    Tensor aliased = logits.clone();
    Tensor galiased = up(logits, dt);
    cpu().cross_entropy_backward(aliased, targets, dloss, aliased);
    gpu().cross_entropy_backward(galiased, up(targets), up(dloss), galiased);
    expect_close(label("cross_entropy_backward aliased", dt), galiased, aliased, tol);

    // Vocab-parallel: two shards of 600 and 400 columns.
    const std::int64_t split = 600;
    const std::int64_t widths[2] = {split, vocab - split};
    Tensor all_stats = Tensor::empty({2, n, 3});
    Tensor gall_stats = Tensor::empty({2, n, 3}, DType::F32, Device::CUDA);
    std::vector<Tensor> shards;
    for (int k = 0; k < 2; ++k) {
      Tensor shard = Tensor::empty({n, widths[k]});
      for (std::int64_t r = 0; r < n; ++r) {
        std::memcpy(shard.data<float>() + r * widths[k], logits.data<float>() + r * vocab + k * split,
                    static_cast<std::size_t>(widths[k]) * sizeof(float));
      }
      shards.push_back(shard);
      Tensor stats = all_stats.slice_rows(k, k + 1);
      Tensor gstats = gall_stats.slice_rows(k, k + 1);
      cpu().cross_entropy_shard_stats(shard, targets, k * split, stats);
      gpu().cross_entropy_shard_stats(up(shard, dt), up(targets), k * split, gstats);
      expect_close(label("cross_entropy_shard_stats", dt) + " shard " + std::to_string(k), gstats, stats,
                   dt == DType::F32 ? 1e-5 : 1e-3);
    }
    Tensor lse = Tensor::empty({n}), slosses = Tensor::empty({n});
    Tensor glse = Tensor::empty({n}, DType::F32, Device::CUDA), gslosses = Tensor::empty({n}, DType::F32, Device::CUDA);
    cpu().cross_entropy_shard_combine(all_stats, targets, lse, slosses);
    gpu().cross_entropy_shard_combine(up(all_stats), up(targets), glse, gslosses);
    expect_close(label("cross_entropy_shard_combine lse", dt), glse, lse, 1e-6);
    expect_close(label("cross_entropy_shard_combine losses", dt), gslosses, slosses, 1e-5);
    for (int k = 0; k < 2; ++k) {
      Tensor d = rounded(random({n, widths[k]}, 130 + k), dt);
      Tensor gdshard = up(d, dt), gdshard2 = up(d, dt);
      const Tensor gshard = up(shards[static_cast<std::size_t>(k)], dt);
      cpu().cross_entropy_shard_backward(shards[static_cast<std::size_t>(k)], targets, k * split, lse, dloss, d);
      gpu().cross_entropy_shard_backward(gshard, up(targets), k * split, up(lse), up(dloss), gdshard);
      gpu().cross_entropy_shard_backward(gshard, up(targets), k * split, up(lse), up(dloss), gdshard2);
      expect_close(label("cross_entropy_shard_backward", dt) + " shard " + std::to_string(k), gdshard, d, tol);
      expect_bit_identical(label("cross_entropy_shard_backward", dt), gdshard, gdshard2);
    }
  }
}

BOOST_AUTO_TEST_CASE(adamw) {
  const Shape shape{1000, 7};
  Backend::AdamWArgs args;
  args.lr = 1e-2f;
  args.weight_decay = 0.1f;
  args.grad_scale = 0.5f;
  args.step = 3;
  for (DType grad_dtype : kDtypes) {
    Tensor param = random(shape, 140), m = random(shape, 141, 0.1f), v = random(shape, 142, 0.1f);
    for (std::int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);
    const Tensor grad = rounded(random(shape, 143), grad_dtype);
    Tensor gparam = up(param), gm = up(m), gv = up(v);
    cpu().adamw_update(param, grad, m, v, args);
    gpu().adamw_update(gparam, up(grad, grad_dtype), gm, gv, args);
    expect_close(label("adamw param, grad", grad_dtype), gparam, param, 1e-6);
    expect_close(label("adamw m, grad", grad_dtype), gm, m, 1e-6);
    expect_close(label("adamw v, grad", grad_dtype), gv, v, 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(rejects_wrong_devices_and_dtypes) {
  const Tensor host = random({7, 33}, 150);
  Tensor device = up(host);
  Tensor out = Tensor::empty({7, 33}, DType::F32, Device::CUDA);
  BOOST_CHECK_THROW(gpu().gelu_forward(host, out), std::invalid_argument);
  BOOST_CHECK_THROW(gpu().add_inplace(device, up(host, DType::BF16)), std::invalid_argument);
  BOOST_CHECK_THROW(gpu().gather_rows(device, ints({1, 2}), out), std::invalid_argument);
  Tensor w = Tensor::empty({33}, DType::I32, Device::CUDA);
  Tensor rstd = Tensor::empty({7}, DType::F32, Device::CUDA);
  BOOST_CHECK_THROW(gpu().rmsnorm_forward(device, w, 1e-6f, out, rstd), std::invalid_argument);
  AttentionShape too_wide{1, 4, 1, 1, 256};
  Tensor qkv = Tensor::empty({1, 4, 3 * 256}, DType::F32, Device::CUDA);
  Tensor aout = Tensor::empty({1, 4, 256}, DType::F32, Device::CUDA);
  Tensor lse = Tensor::empty({1, 1, 4}, DType::F32, Device::CUDA);
  BOOST_CHECK_THROW(gpu().attention_forward(qkv, too_wide, aout, lse), std::invalid_argument);
  // The int8 KV-cache ops are not implemented on the GPU and say so.
  AttentionShape narrow{1, 4, 1, 1, 64};
  Tensor qkv64 = Tensor::empty({1, 4, 3 * 64}, DType::F32, Device::CUDA);
  BOOST_CHECK_THROW(gpu().kv_int8_round_trip(qkv64, narrow), std::logic_error);
}

LOOM_GPU_TEST_MAIN(test_cuda_ops)
