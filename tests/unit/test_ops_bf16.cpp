// bf16 storage on the CPU backend: every op that the CUDA backend runs on bf16 tensors runs
// on the CPU too, with the same per-op dtype rules (docs/cuda.md "Dtypes").
//
// The semantics are "bf16 storage, f32 arithmetic": a bf16 call reads its bf16 tensors as f32,
// runs the f32 kernel and rounds each bf16 output once. So each case runs one call twice on
// the same values (random, rounded to bf16): once with f32 tensors, once with bf16 tensors in
// every floating slot. Every bf16 tensor afterwards must hold exactly to_bf16 of its f32
// twin, bit for bit, and every always-f32 or integer tensor must equal its twin bit for bit.
// Outputs start from random non-zero values, so an accumulating op that forgot to read its
// output, or an overwriting op that left elements unwritten, fails; each written tensor must
// also have changed. Then the dtype combinations the CUDA backend refuses must throw
// std::invalid_argument naming the op and the tensor.
#define BOOST_TEST_MODULE ops_bf16
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/mix64.h"
#include "core/tensor.h"

namespace loom::test {
namespace {

Backend& cpu() {
  static std::unique_ptr<Backend> backend = make_cpu_backend();
  return *backend;
}

// Uniform in [-scale, scale), a pure function of (seed, index), rounded to bf16 when asked.
Tensor random(const Shape& shape, std::uint64_t seed, float scale = 1.0f, bool round = true) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const auto bits = mix64(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(i)) >> 40;
    p[i] = scale * (2.0f * static_cast<float>(bits) / 16777216.0f - 1.0f);
    if (round) p[i] = from_bf16(to_bf16(p[i]));
  }
  return t;
}

// The same values in a bf16 tensor (converted here, not by the backend under test).
Tensor as_bf16(const Tensor& f32) {
  Tensor t = Tensor::empty(f32.shape(), DType::BF16);
  for (std::int64_t i = 0; i < f32.numel(); ++i) t.data<bf16>()[i] = to_bf16(f32.data<float>()[i]);
  return t;
}

// t with every element rounded to bf16 (a copy, still f32).
Tensor rounded(const Tensor& t) {
  Tensor r = t.clone();
  for (std::int64_t i = 0; i < r.numel(); ++i) r.data<float>()[i] = from_bf16(to_bf16(r.data<float>()[i]));
  return r;
}

Tensor ints(const std::vector<std::int32_t>& values) {
  Tensor t = Tensor::empty({static_cast<std::int64_t>(values.size())}, DType::I32);
  std::memcpy(t.raw(), values.data(), values.size() * sizeof(std::int32_t));
  return t;
}

// One tensor of a call. Floating tensors are f32 in one run and bf16 in the other; Fixed
// ones (always-f32 tensors, ids) are the same in both. Undefined values stand for an absent
// optional tensor.
struct Arg {
  enum Kind { Floating, Fixed };
  std::string name;
  Kind kind;
  Tensor value;
  bool written;
};
Arg in(const std::string& name, const Tensor& value) { return {name, Arg::Floating, value, false}; }
Arg out(const std::string& name, const Tensor& value) { return {name, Arg::Floating, value, true}; }
Arg fixed_in(const std::string& name, const Tensor& value) { return {name, Arg::Fixed, value, false}; }
Arg fixed_out(const std::string& name, const Tensor& value) { return {name, Arg::Fixed, value, true}; }
Arg absent(const std::string& name) { return {name, Arg::Floating, Tensor(), false}; }

using Call = std::function<void(Backend&, std::vector<Tensor>&)>;

std::int64_t count_changed(const Tensor& before, const Tensor& after) {
  std::int64_t changed = 0;
  for (std::int64_t i = 0; i < before.numel(); ++i) {
    changed += before.data<float>()[i] != after.data<float>()[i] ? 1 : 0;
  }
  return changed;
}

// Runs `call` on f32 and on bf16 tensors holding the same values and checks every tensor.
void check_bf16_matches_f32(const std::string& what, const std::vector<Arg>& args, const Call& call) {
  std::vector<Tensor> f32, bf;
  for (const Arg& a : args) {
    f32.push_back(a.value.defined() ? a.value.clone() : Tensor());
    bf.push_back(!a.value.defined() ? Tensor() : (a.kind == Arg::Floating ? as_bf16(a.value) : a.value.clone()));
  }
  call(cpu(), f32);
  call(cpu(), bf);
  for (std::size_t k = 0; k < args.size(); ++k) {
    const Arg& a = args[k];
    if (!a.value.defined()) continue;
    const std::string label = what + ": " + a.name;
    if (a.kind == Arg::Fixed) {
      BOOST_CHECK_MESSAGE(std::memcmp(f32[k].raw(), bf[k].raw(), f32[k].nbytes()) == 0,
                          label << " differs between the f32 and the bf16 call");
    } else {
      BOOST_REQUIRE_MESSAGE(bf[k].dtype() == DType::BF16, label << " is no longer bf16");
      std::int64_t mismatches = 0, first = -1;
      for (std::int64_t i = 0; i < f32[k].numel(); ++i) {
        if (bf[k].data<bf16>()[i].bits != to_bf16(f32[k].data<float>()[i]).bits) {
          if (mismatches++ == 0) first = i;
        }
      }
      BOOST_CHECK_MESSAGE(mismatches == 0, label << ": " << mismatches << " of " << f32[k].numel()
                                                 << " elements are not to_bf16 of the f32 result, first [" << first
                                                 << "]: bf16 "
                                                 << (first >= 0 ? from_bf16(bf[k].data<bf16>()[first]) : 0.0f)
                                                 << ", f32 " << (first >= 0 ? f32[k].data<float>()[first] : 0.0f));
    }
    if (a.written && a.value.dtype() == DType::F32) {
      BOOST_CHECK_MESSAGE(count_changed(a.value, f32[k]) > 0, label << " was not written by the op");
    }
  }
}

// `call` throws std::invalid_argument whose message names the op and the tensor.
void expect_refused(const std::string& op, const std::string& tensor, const std::function<void()>& call) {
  try {
    call();
    BOOST_ERROR(op << " accepted a wrong dtype of " << tensor);
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    BOOST_CHECK_MESSAGE(message.find(op) != std::string::npos && message.find(tensor) != std::string::npos,
                        "message for " << op << "/" << tensor << " does not name both: " << message);
  }
}

Tensor empty(const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype); }

constexpr std::int64_t kRows = 7, kCols = 33;

}  // namespace

BOOST_AUTO_TEST_CASE(name_mentions_bf16) { BOOST_CHECK_NE(cpu().name().find("bf16"), std::string::npos); }

BOOST_AUTO_TEST_CASE(memory_ops) {
  const Shape s{kRows, kCols};
  for (float value : {0.3f, 0.0f, -0.0f}) {
    check_bf16_matches_f32("fill " + std::to_string(value), {out("x", random(s, 1))},
                           [=](Backend& be, std::vector<Tensor>& t) { be.fill(t[0], value); });
  }
  check_bf16_matches_f32("add_inplace", {out("y", random(s, 2)), in("x", random(s, 3))},
                         [](Backend& be, std::vector<Tensor>& t) { be.add_inplace(t[0], t[1], -0.37f); });
  check_bf16_matches_f32("add_inplace aliased", {out("y", random(s, 4))},
                         [](Backend& be, std::vector<Tensor>& t) { be.add_inplace(t[0], t[0], 0.5f); });
  check_bf16_matches_f32("scale_inplace", {out("x", random(s, 5))},
                         [](Backend& be, std::vector<Tensor>& t) { be.scale_inplace(t[0], 0.31f); });

  const Tensor big = random({100003}, 6, 3.0f);
  BOOST_CHECK_EQUAL(cpu().sum_squares(as_bf16(big)), cpu().sum_squares(big));
  BOOST_CHECK(cpu().all_finite(as_bf16(big)));
  Tensor bad = big.clone();
  for (float v : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    bad.data<float>()[77777] = v;
    BOOST_CHECK(!cpu().all_finite(as_bf16(bad)));
  }
}

BOOST_AUTO_TEST_CASE(copy_converts) {
  const Tensor x = random({1000}, 7, 3.0f, false);  // not on the bf16 grid: rounding matters
  Tensor x16 = empty({1000}, DType::BF16);
  cpu().copy(x, x16);
  std::int64_t mismatches = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    mismatches += x16.data<bf16>()[i].bits != to_bf16(x.data<float>()[i]).bits ? 1 : 0;
  }
  BOOST_CHECK_EQUAL(mismatches, 0);
  Tensor back = empty({10, 100}, DType::F32);
  cpu().copy(x16, back);
  Tensor again = empty({1000}, DType::BF16);
  cpu().copy(x16, again);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    mismatches += back.data<float>()[i] != from_bf16(x16.data<bf16>()[i]) ? 1 : 0;
    mismatches += again.data<bf16>()[i].bits != x16.data<bf16>()[i].bits ? 1 : 0;
  }
  BOOST_CHECK_EQUAL(mismatches, 0);
  // bf16 halves of one buffer converted into an overlapping f32 view of the same bytes.
  Tensor buffer = Tensor::zeros({1000});
  Tensor head16 = Tensor::wrap(buffer.raw(), {1000}, DType::BF16);
  cpu().copy(x16, head16);
  Tensor head32 = buffer.view(0, {1000});
  cpu().copy(head16, head32);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    mismatches += head32.data<float>()[i] != from_bf16(x16.data<bf16>()[i]) ? 1 : 0;
  }
  BOOST_CHECK_EQUAL(mismatches, 0);
}

BOOST_AUTO_TEST_CASE(matmul_and_linear) {
  const std::int64_t m = 7, n = 33, k = 65;
  for (int variant = 0; variant < 4; ++variant) {
    const bool ta = (variant & 1) != 0, tb = (variant & 2) != 0;
    for (float beta : {0.0f, 1.0f, -0.5f}) {
      check_bf16_matches_f32(
          "matmul ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta),
          {in("a", random(ta ? Shape{k, m} : Shape{m, k}, 10 + variant)),
           in("b", random(tb ? Shape{n, k} : Shape{k, n}, 20 + variant)), out("c", random({m, n}, 30 + variant))},
          [=](Backend& be, std::vector<Tensor>& t) { be.matmul(t[0], ta, t[1], tb, t[2], 0.5f, beta); });
    }
  }
  const Tensor x = random({m, k}, 40), w = random({n, k}, 41), bias = random({n}, 42);
  check_bf16_matches_f32("linear_forward bias",
                         {in("x", x), in("w", w), in("bias", bias), out("y", random({m, n}, 43))},
                         [](Backend& be, std::vector<Tensor>& t) { be.linear_forward(t[0], t[1], t[2], t[3]); });
  check_bf16_matches_f32("linear_forward no bias",
                         {in("x", x), in("w", w), absent("bias"), out("y", random({m, n}, 44))},
                         [](Backend& be, std::vector<Tensor>& t) { be.linear_forward(t[0], t[1], t[2], t[3]); });
  const Tensor dy = random({m, n}, 45);
  check_bf16_matches_f32(
      "linear_backward",
      {in("dy", dy), in("x", x), in("w", w), out("dx", random({m, k}, 46)), out("dw", random({n, k}, 47)),
       out("dbias", random({n}, 48))},
      [](Backend& be, std::vector<Tensor>& t) { be.linear_backward(t[0], t[1], t[2], t[3], t[4], t[5]); });
  check_bf16_matches_f32(
      "linear_backward dx only",
      {in("dy", dy), in("x", x), in("w", w), out("dx", random({m, k}, 49)), absent("dw"), absent("dbias")},
      [](Backend& be, std::vector<Tensor>& t) { be.linear_backward(t[0], t[1], t[2], t[3], t[4], t[5]); });
}

BOOST_AUTO_TEST_CASE(embedding_and_rows) {
  const std::int64_t vocab = 50, c = kCols;
  const Tensor ids = ints({3, 7, 3, 49, 0, 12, 3, 59, -1, 7, 20});  // repeats, and ids outside [10, 60)
  const std::int64_t n = ids.numel();
  for (bool accumulate : {false, true}) {
    check_bf16_matches_f32(
        std::string("embedding_forward") + (accumulate ? " accumulate" : ""),
        {fixed_in("ids", ids), in("table", random({vocab, c}, 50)), out("out", random({n, c}, 51))},
        [=](Backend& be, std::vector<Tensor>& t) { be.embedding_forward(t[0], t[1], t[2], 10, accumulate); });
  }
  check_bf16_matches_f32("embedding_backward",
                         {fixed_in("ids", ids), in("dout", random({n, c}, 52)), out("dtable", random({vocab, c}, 53))},
                         [](Backend& be, std::vector<Tensor>& t) { be.embedding_backward(t[0], t[1], t[2], 0); });
  const Tensor index = ints({19, 0, 5, 5, 12});
  check_bf16_matches_f32("gather_rows",
                         {in("x", random({20, c}, 54)), fixed_in("index", index), out("out", random({5, c}, 55))},
                         [](Backend& be, std::vector<Tensor>& t) { be.gather_rows(t[0], t[1], t[2]); });
  check_bf16_matches_f32("scatter_add_rows",
                         {in("dout", random({5, c}, 56)), fixed_in("index", index), out("dx", random({20, c}, 57))},
                         [](Backend& be, std::vector<Tensor>& t) { be.scatter_add_rows(t[0], t[1], t[2]); });
}

BOOST_AUTO_TEST_CASE(norms) {
  const Shape s{kRows, kCols};
  const Tensor x = random(s, 60, 2.0f), w = random({kCols}, 61), b = random({kCols}, 62), dy = random(s, 63);
  Tensor mean = Tensor::empty({kRows}), rstd = Tensor::empty({kRows}), y = Tensor::empty(s);
  cpu().layernorm_forward(x, w, b, 1e-5f, y, mean, rstd);
  check_bf16_matches_f32(
      "layernorm_forward",
      {in("x", x), in("weight", w), in("bias", b), out("y", random(s, 64)), fixed_out("mean", random({kRows}, 65)),
       fixed_out("rstd", random({kRows}, 66))},
      [](Backend& be, std::vector<Tensor>& t) { be.layernorm_forward(t[0], t[1], t[2], 1e-5f, t[3], t[4], t[5]); });
  check_bf16_matches_f32(
      "layernorm_forward no bias",
      {in("x", x), in("weight", w), absent("bias"), out("y", random(s, 67)), fixed_out("mean", random({kRows}, 68)),
       fixed_out("rstd", random({kRows}, 69))},
      [](Backend& be, std::vector<Tensor>& t) { be.layernorm_forward(t[0], t[1], t[2], 1e-5f, t[3], t[4], t[5]); });
  check_bf16_matches_f32(
      "layernorm_backward",
      {in("dy", dy), in("x", x), in("weight", w), fixed_in("mean", mean), fixed_in("rstd", rstd),
       out("dx", random(s, 70)), out("dweight", random({kCols}, 71)), out("dbias", random({kCols}, 72))},
      [](Backend& be, std::vector<Tensor>& t) {
        be.layernorm_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
      });
  check_bf16_matches_f32("layernorm_backward dx only",
                         {in("dy", dy), in("x", x), in("weight", w), fixed_in("mean", mean), fixed_in("rstd", rstd),
                          out("dx", random(s, 73)), absent("dweight"), absent("dbias")},
                         [](Backend& be, std::vector<Tensor>& t) {
                           be.layernorm_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
                         });
  cpu().rmsnorm_forward(x, w, 1e-6f, y, rstd);
  check_bf16_matches_f32(
      "rmsnorm_forward", {in("x", x), in("weight", w), out("y", random(s, 74)), fixed_out("rstd", random({kRows}, 75))},
      [](Backend& be, std::vector<Tensor>& t) { be.rmsnorm_forward(t[0], t[1], 1e-6f, t[2], t[3]); });
  check_bf16_matches_f32(
      "rmsnorm_backward",
      {in("dy", dy), in("x", x), in("weight", w), fixed_in("rstd", rstd), out("dx", random(s, 76)),
       out("dweight", random({kCols}, 77))},
      [](Backend& be, std::vector<Tensor>& t) { be.rmsnorm_backward(t[0], t[1], t[2], t[3], t[4], t[5]); });
}

BOOST_AUTO_TEST_CASE(activations_and_dropout) {
  const Shape s{kRows, kCols};
  const Tensor x = random(s, 80, 4.0f), up = random(s, 81), dy = random(s, 82);
  check_bf16_matches_f32("gelu_forward", {in("x", x), out("y", random(s, 83))},
                         [](Backend& be, std::vector<Tensor>& t) { be.gelu_forward(t[0], t[1]); });
  check_bf16_matches_f32("gelu_backward", {in("dy", dy), in("x", x), out("dx", random(s, 84))},
                         [](Backend& be, std::vector<Tensor>& t) { be.gelu_backward(t[0], t[1], t[2]); });
  check_bf16_matches_f32("swiglu_forward", {in("gate", x), in("up", up), out("out", random(s, 85))},
                         [](Backend& be, std::vector<Tensor>& t) { be.swiglu_forward(t[0], t[1], t[2]); });
  check_bf16_matches_f32(
      "swiglu_backward",
      {in("dout", dy), in("gate", x), in("up", up), out("dgate", random(s, 86)), out("dup", random(s, 87))},
      [](Backend& be, std::vector<Tensor>& t) { be.swiglu_backward(t[0], t[1], t[2], t[3], t[4]); });
  check_bf16_matches_f32("swiglu_backward dgate only",
                         {in("dout", dy), in("gate", x), in("up", up), out("dgate", random(s, 88)), absent("dup")},
                         [](Backend& be, std::vector<Tensor>& t) { be.swiglu_backward(t[0], t[1], t[2], t[3], t[4]); });
  Backend::DropoutArgs args;
  args.p = 0.3f;
  args.key = 12345;
  args.token0 = 5;
  args.features = 80;
  args.feature0 = 11;
  for (bool accumulate : {false, true}) {
    check_bf16_matches_f32(
        std::string("dropout_forward") + (accumulate ? " accumulate" : ""), {in("x", x), out("y", random(s, 89))},
        [=](Backend& be, std::vector<Tensor>& t) { be.dropout_forward(t[0], t[1], args, accumulate); });
  }
}

BOOST_AUTO_TEST_CASE(rope_and_attention) {
  const AttentionShape s{2, 9, 4, 2, 16};
  const std::int64_t width = (s.q_heads + 2 * s.kv_heads) * s.head_dim;
  const Shape qkv_shape{s.batch, s.seq, width}, out_shape{s.batch, s.seq, s.q_heads * s.head_dim};
  std::vector<RopeConfig> configs(3);
  configs[1].scaling = RopeConfig::Scaling::Linear;
  configs[1].factor = 4.0f;
  configs[2].rotary_dim = 8;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    const RopeConfig rope = configs[i];
    check_bf16_matches_f32("rope_forward config " + std::to_string(i), {out("qkv", random(qkv_shape, 90 + i))},
                           [=](Backend& be, std::vector<Tensor>& t) { be.rope_forward(t[0], s, rope, 100); });
    check_bf16_matches_f32("rope_backward config " + std::to_string(i), {out("dqkv", random(qkv_shape, 95 + i))},
                           [=](Backend& be, std::vector<Tensor>& t) { be.rope_backward(t[0], s, rope, 100); });
  }
  const Tensor qkv = random(qkv_shape, 100, 2.0f);
  check_bf16_matches_f32("attention_forward",
                         {in("qkv", qkv), out("out", random(out_shape, 101)), fixed_out("lse", random({2, 4, 9}, 102))},
                         [=](Backend& be, std::vector<Tensor>& t) { be.attention_forward(t[0], s, t[1], t[2]); });
  Tensor o = Tensor::empty(out_shape), lse = Tensor::empty({2, 4, 9});
  cpu().attention_forward(qkv, s, o, lse);
  check_bf16_matches_f32(
      "attention_backward",
      {in("dout", random(out_shape, 103)), in("qkv", qkv), in("out", rounded(o)), fixed_in("lse", lse),
       out("dqkv", random(qkv_shape, 104))},
      [=](Backend& be, std::vector<Tensor>& t) { be.attention_backward(t[0], t[1], t[2], t[3], s, t[4]); });

  // Generation: a prompt of 5 tokens at position 0, then 3 more at position 5, into bf16 caches.
  const std::int64_t capacity = 12;
  const Shape cache_shape{s.batch, s.kv_heads, capacity, s.head_dim};
  AttentionShape prompt = s, next = s;
  prompt.seq = 5;
  next.seq = 3;
  check_bf16_matches_f32("attention_cached_forward",
                         {in("qkv prompt", random({2, 5, width}, 105)), in("qkv next", random({2, 3, width}, 106)),
                          out("k_cache", random(cache_shape, 107)), out("v_cache", random(cache_shape, 108)),
                          out("out prompt", random({2, 5, s.q_heads * s.head_dim}, 109)),
                          out("out next", random({2, 3, s.q_heads * s.head_dim}, 110))},
                         [=](Backend& be, std::vector<Tensor>& t) {
                           be.attention_cached_forward(t[0], prompt, 0, t[2], t[3], t[4]);
                           be.attention_cached_forward(t[1], next, 5, t[2], t[3], t[5]);
                         });
}

BOOST_AUTO_TEST_CASE(cross_entropy) {
  const std::int64_t n = 7, vocab = 1000, split = 600;
  const Tensor targets = ints({5, 999, -1, 0, 612, 388, 400});
  const Tensor logits = random({n, vocab}, 120, 6.0f);
  const Tensor dloss = random({n}, 121, 1.0f, false);
  check_bf16_matches_f32("cross_entropy_forward",
                         {in("logits", logits), fixed_in("targets", targets), fixed_out("losses", random({n}, 122))},
                         [](Backend& be, std::vector<Tensor>& t) { be.cross_entropy_forward(t[0], t[1], t[2]); });
  check_bf16_matches_f32(
      "cross_entropy_backward",
      {in("logits", logits), fixed_in("targets", targets), fixed_in("dloss", dloss),
       out("dlogits", random({n, vocab}, 123))},
      [](Backend& be, std::vector<Tensor>& t) { be.cross_entropy_backward(t[0], t[1], t[2], t[3]); });
  check_bf16_matches_f32(
      "cross_entropy_backward aliased",
      {out("logits = dlogits", logits), fixed_in("targets", targets), fixed_in("dloss", dloss)},
      [](Backend& be, std::vector<Tensor>& t) { be.cross_entropy_backward(t[0], t[1], t[2], t[0]); });

  // Vocab-parallel: the second shard (columns [600, 1000)), with the lse of the whole row.
  const Tensor shard = random({n, vocab - split}, 124, 6.0f);
  check_bf16_matches_f32(
      "cross_entropy_shard_stats",
      {in("logits", shard), fixed_in("targets", targets), fixed_out("stats", random({n, 3}, 125))},
      [=](Backend& be, std::vector<Tensor>& t) { be.cross_entropy_shard_stats(t[0], t[1], split, t[2]); });
  const Tensor lse = random({n}, 126, 1.0f, false);
  check_bf16_matches_f32("cross_entropy_shard_backward",
                         {in("logits", shard), fixed_in("targets", targets), fixed_in("lse", lse),
                          fixed_in("dloss", dloss), out("dlogits", random({n, vocab - split}, 127))},
                         [=](Backend& be, std::vector<Tensor>& t) {
                           be.cross_entropy_shard_backward(t[0], t[1], split, t[2], t[3], t[4]);
                         });
  check_bf16_matches_f32(
      "cross_entropy_shard_backward aliased",
      {out("logits = dlogits", shard), fixed_in("targets", targets), fixed_in("lse", lse), fixed_in("dloss", dloss)},
      [=](Backend& be, std::vector<Tensor>& t) {
        be.cross_entropy_shard_backward(t[0], t[1], split, t[2], t[3], t[0]);
      });
}

BOOST_AUTO_TEST_CASE(adamw) {
  const Shape s{1000, 7};
  Backend::AdamWArgs args;
  args.lr = 1e-2f;
  args.weight_decay = 0.1f;
  args.grad_scale = 0.5f;
  args.step = 3;
  Tensor v = random(s, 142, 0.1f, false);
  for (std::int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);
  check_bf16_matches_f32("adamw_update",
                         {fixed_out("param", random(s, 140, 1.0f, false)), in("grad", random(s, 143)),
                          fixed_out("m", random(s, 141, 0.1f, false)), fixed_out("v", v)},
                         [=](Backend& be, std::vector<Tensor>& t) { be.adamw_update(t[0], t[1], t[2], t[3], args); });
}

BOOST_AUTO_TEST_CASE(refuses_what_the_cuda_backend_refuses) {
  Backend& be = cpu();
  const Shape s{kRows, kCols};
  const Tensor f = random(s, 150), h = as_bf16(f);
  Tensor f_out = empty(s, DType::F32), h_out = empty(s, DType::BF16);
  const Tensor f_row = random({kCols}, 151), h_row = as_bf16(f_row);
  Tensor f_rows = empty({kRows}, DType::F32), h_rows = empty({kRows}, DType::BF16);

  // Memory: one floating dtype per call; copy converts only between f32 and bf16.
  expect_refused("add_inplace", "x", [&] { be.add_inplace(h_out, f); });
  expect_refused("add_inplace", "x", [&] { be.add_inplace(f_out, h); });
  Tensor i32 = empty(s, DType::I32), i8 = empty(s, DType::I8);
  expect_refused("copy", "src", [&] { be.copy(i32, f_out); });
  expect_refused("copy", "src", [&] { be.copy(h, i8); });
  expect_refused("fill", "x", [&] { be.fill(i8, 1.0f); });
  expect_refused("sum_squares", "x", [&] { (void)be.sum_squares(i32); });

  // GEMM: a, b, c (and x, w, bias, y, gradients) share one dtype.
  Tensor h_square = empty({kCols, kCols}, DType::BF16), f_square = empty({kCols, kCols}, DType::F32);
  expect_refused("matmul", "b", [&] { be.matmul(h, false, f_square, false, h_out, 1.0f, 0.0f); });
  expect_refused("matmul", "c", [&] { be.matmul(h, false, h_square, false, f_out, 1.0f, 0.0f); });
  expect_refused("matmul", "b", [&] { be.matmul(f, false, h_square, false, f_out, 1.0f, 0.0f); });
  expect_refused("linear_forward", "w", [&] { be.linear_forward(h, f_square, Tensor(), h_out); });
  expect_refused("linear_forward", "bias", [&] { be.linear_forward(h, h_square, f_row, h_out); });
  expect_refused("linear_forward", "y", [&] { be.linear_forward(h, h_square, h_row, f_out); });
  Tensor none;
  expect_refused("linear_backward", "dy", [&] { be.linear_backward(f, h, h_square, h_out, none, none); });
  expect_refused("linear_backward", "dw", [&] { be.linear_backward(h, h, h_square, h_out, f_square, none); });

  // Lookups: ids are i32, the table/rows share one floating dtype.
  const Tensor ids = ints({1, 2, 3}), f_ids = random({3}, 152);
  Tensor h3 = empty({3, kCols}, DType::BF16), f3 = empty({3, kCols}, DType::F32);
  expect_refused("embedding_forward", "out", [&] { be.embedding_forward(ids, h, f3, 0, false); });
  expect_refused("embedding_forward", "ids", [&] { be.embedding_forward(f_ids, h, h3, 0, false); });
  expect_refused("embedding_backward", "dout", [&] { be.embedding_backward(ids, f3, h_out, 0); });
  expect_refused("gather_rows", "out", [&] { be.gather_rows(h, ids, f3); });
  expect_refused("scatter_add_rows", "dout", [&] { be.scatter_add_rows(f3, ids, h_out); });

  // Norms: mean and rstd are always f32.
  expect_refused("layernorm_forward", "mean",
                 [&] { be.layernorm_forward(h, h_row, h_row, 1e-5f, h_out, h_rows, f_rows); });
  expect_refused("layernorm_forward", "weight",
                 [&] { be.layernorm_forward(h, f_row, h_row, 1e-5f, h_out, f_rows, f_rows); });
  expect_refused("rmsnorm_forward", "rstd", [&] { be.rmsnorm_forward(h, h_row, 1e-6f, h_out, h_rows); });
  expect_refused("rmsnorm_forward", "y", [&] { be.rmsnorm_forward(h, h_row, 1e-6f, f_out, f_rows); });
  Tensor f_dw = empty({kCols}, DType::F32);
  expect_refused("rmsnorm_backward", "dweight", [&] { be.rmsnorm_backward(h, h, h_row, f_rows, h_out, f_dw); });
  expect_refused("layernorm_backward", "dx",
                 [&] { be.layernorm_backward(h, h, h_row, f_rows, f_rows, f_out, none, none); });

  // Elementwise ops.
  expect_refused("gelu_forward", "y", [&] { be.gelu_forward(h, f_out); });
  expect_refused("gelu_backward", "dy", [&] { be.gelu_backward(f, h, h_out); });
  expect_refused("swiglu_forward", "up", [&] { be.swiglu_forward(h, f, h_out); });
  expect_refused("swiglu_backward", "dup", [&] { be.swiglu_backward(h, h, h, h_out, f_out); });
  expect_refused("dropout_forward", "y", [&] {
    be.dropout_forward(h, f_out, Backend::DropoutArgs{0.1f, 1, 0, kCols, 0});
  });

  // Attention: lse is always f32; qkv, out and dqkv share one dtype; int8 ops take f32 only.
  const AttentionShape a{1, 4, 2, 1, 8};
  Tensor h_qkv = as_bf16(random({1, 4, 32}, 153)), f_qkv = random({1, 4, 32}, 153);
  Tensor h_o = empty({1, 4, 16}, DType::BF16), f_o = empty({1, 4, 16}, DType::F32);
  Tensor f_lse = empty({1, 2, 4}, DType::F32), h_lse = empty({1, 2, 4}, DType::BF16);
  Tensor i8_qkv = empty({1, 4, 32}, DType::I8);
  expect_refused("rope_forward", "qkv", [&] { be.rope_forward(i8_qkv, a, RopeConfig{}, 0); });
  expect_refused("attention_forward", "lse", [&] { be.attention_forward(h_qkv, a, h_o, h_lse); });
  expect_refused("attention_forward", "out", [&] { be.attention_forward(h_qkv, a, f_o, f_lse); });
  expect_refused("attention_backward", "dqkv", [&] { be.attention_backward(h_o, h_qkv, h_o, f_lse, a, f_qkv); });
  expect_refused("attention_backward", "dout", [&] { be.attention_backward(f_o, h_qkv, h_o, f_lse, a, h_qkv); });
  Tensor f_cache = empty({1, 1, 8, 8}, DType::F32), h_cache = empty({1, 1, 8, 8}, DType::BF16);
  expect_refused("attention_cached_forward", "k_cache",
                 [&] { be.attention_cached_forward(h_qkv, a, 0, f_cache, h_cache, h_o); });
  expect_refused("attention_cached_forward", "v_cache",
                 [&] { be.attention_cached_forward(f_qkv, a, 0, f_cache, h_cache, f_o); });
  expect_refused("kv_int8_round_trip", "qkv", [&] { be.kv_int8_round_trip(h_qkv, a); });
  Tensor i8_cache = empty({1, 1, 8, 8}, DType::I8), scales = empty({1, 1, 8}, DType::F32);
  expect_refused("attention_cached_int8_forward", "qkv",
                 [&] { be.attention_cached_int8_forward(h_qkv, a, 0, i8_cache, i8_cache, scales, scales, h_o); });

  // Cross-entropy: losses, stats, lse and dloss are always f32; targets i32.
  const Tensor targets = ints({1, 2, 3, 4, 5, 6, 7});
  expect_refused("cross_entropy_forward", "losses", [&] { be.cross_entropy_forward(h, targets, h_rows); });
  expect_refused("cross_entropy_forward", "targets", [&] { be.cross_entropy_forward(h, f_rows, f_rows); });
  expect_refused("cross_entropy_backward", "dloss", [&] { be.cross_entropy_backward(h, targets, h_rows, h_out); });
  expect_refused("cross_entropy_backward", "dlogits", [&] { be.cross_entropy_backward(h, targets, f_rows, f_out); });
  Tensor h_stats = empty({kRows, 3}, DType::BF16);
  expect_refused("cross_entropy_shard_stats", "stats", [&] { be.cross_entropy_shard_stats(h, targets, 0, h_stats); });
  expect_refused("cross_entropy_shard_combine", "all_stats",
                 [&] { be.cross_entropy_shard_combine(h_stats, targets, f_rows, f_rows); });
  expect_refused("cross_entropy_shard_backward", "lse",
                 [&] { be.cross_entropy_shard_backward(h, targets, 0, h_rows, f_rows, h_out); });
  expect_refused("cross_entropy_shard_backward", "dlogits",
                 [&] { be.cross_entropy_shard_backward(h, targets, 0, f_rows, f_rows, f_out); });

  // AdamW: param, m and v are always f32; only grad may be bf16.
  expect_refused("adamw_update", "param", [&] { be.adamw_update(h_out, h, f_out, f_out, Backend::AdamWArgs{}); });
  expect_refused("adamw_update", "m", [&] { be.adamw_update(f_out, h, h_out, f_out, Backend::AdamWArgs{}); });
  expect_refused("adamw_update", "v", [&] { be.adamw_update(f_out, f, f_out, h_out, Backend::AdamWArgs{}); });
}

BOOST_AUTO_TEST_CASE(bf16_refusals_leave_outputs_untouched) {
  // A shape error found by the f32 path on the staged copies: the bf16 output keeps its bits.
  const Tensor x = as_bf16(random({kRows, kCols}, 160)), w = as_bf16(random({5, kCols}, 161));
  Tensor y = as_bf16(random({kRows, 6}, 162));
  const Tensor before = y.clone();
  expect_refused("linear_forward", "y", [&] { cpu().linear_forward(x, w, Tensor(), y); });
  BOOST_CHECK(std::memcmp(before.raw(), y.raw(), y.nbytes()) == 0);

  // dlogits partly overlapping logits is refused, as on f32 tensors.
  Tensor buffer = as_bf16(random({kRows + 1, 40}, 163));
  const Tensor logits = buffer.slice_rows(0, kRows);
  Tensor dlogits = buffer.slice_rows(1, kRows + 1);
  const Tensor targets = ints({1, 2, 3, 4, 5, 6, 7});
  Tensor dloss = random({kRows}, 164);
  expect_refused("cross_entropy_backward", "dlogits",
                 [&] { cpu().cross_entropy_backward(logits, targets, dloss, dlogits); });
}

}  // namespace loom::test
