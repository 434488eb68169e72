// Plain scalar reference loops for the op test (test_ops.cpp): the obviously-correct
// versions every backend's kernels are compared with. They read host tensors, accumulate in
// f64 and return f64 vectors in the op's output layout. Speed is irrelevant here; each one
// follows the formula in core/backend.h as literally as possible.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/backend.h"

namespace loom::test {

using Values = std::vector<double>;

inline double at(const Tensor& t, std::int64_t i) { return t.data<float>()[i]; }
inline std::int64_t id_at(const Tensor& t, std::int64_t i) { return t.data<std::int32_t>()[i]; }
inline std::int64_t cols(const Tensor& t) { return t.dim(-1); }
inline std::int64_t rows(const Tensor& t) { return t.numel() / t.dim(-1); }

// c = alpha op(a) op(b) + beta c0, with a, b stored row-major as given.
inline Values ref_matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c0, double alpha,
                         double beta) {
  const std::int64_t m = ta ? cols(a) : rows(a);
  const std::int64_t k = ta ? rows(a) : cols(a);
  const std::int64_t n = tb ? rows(b) : cols(b);
  Values c(static_cast<std::size_t>(m * n));
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double av = ta ? at(a, p * cols(a) + i) : at(a, i * cols(a) + p);
        const double bv = tb ? at(b, j * cols(b) + p) : at(b, p * cols(b) + j);
        s += av * bv;
      }
      c[static_cast<std::size_t>(i * n + j)] = alpha * s + beta * at(c0, i * n + j);
    }
  }
  return c;
}

inline Values ref_linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  const std::int64_t n = rows(x), in = cols(x), out = rows(w);
  Values y(static_cast<std::size_t>(n * out));
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t o = 0; o < out; ++o) {
      double s = bias ? at(*bias, o) : 0.0;
      for (std::int64_t i = 0; i < in; ++i) s += at(x, r * in + i) * at(w, o * in + i);
      y[static_cast<std::size_t>(r * out + o)] = s;
    }
  }
  return y;
}

// out[n] = base[n] + table[ids[n] - offset] (zero row outside the table); base may be null.
inline Values ref_embedding(const Tensor& ids, const Tensor& table, std::int64_t offset, const Tensor* base) {
  const std::int64_t n = ids.numel(), c = cols(table), v = rows(table);
  Values out(static_cast<std::size_t>(n * c), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t row = id_at(ids, i) - offset;
    for (std::int64_t j = 0; j < c; ++j) {
      double value = base ? at(*base, i * c + j) : 0.0;
      if (row >= 0 && row < v) value += at(table, row * c + j);
      out[static_cast<std::size_t>(i * c + j)] = value;
    }
  }
  return out;
}

inline Values ref_gather(const Tensor& x, const Tensor& index) {
  const std::int64_t c = cols(x);
  Values out;
  for (std::int64_t m = 0; m < index.numel(); ++m) {
    for (std::int64_t j = 0; j < c; ++j) out.push_back(at(x, id_at(index, m) * c + j));
  }
  return out;
}

// Returns {y, mean, rstd}; weight/bias null means 1/0 (rmsnorm passes rms = true).
inline std::vector<Values> ref_norm(const Tensor& x, const Tensor& w, const Tensor* b, double eps, bool rms) {
  const std::int64_t n = rows(x), c = cols(x);
  std::vector<Values> out(3);
  for (std::int64_t r = 0; r < n; ++r) {
    double mean = 0.0;
    if (!rms) {
      for (std::int64_t j = 0; j < c; ++j) mean += at(x, r * c + j);
      mean /= static_cast<double>(c);
    }
    double var = 0.0;
    for (std::int64_t j = 0; j < c; ++j) var += (at(x, r * c + j) - mean) * (at(x, r * c + j) - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(c) + eps);
    for (std::int64_t j = 0; j < c; ++j) {
      out[0].push_back((at(x, r * c + j) - mean) * rstd * at(w, j) + (b ? at(*b, j) : 0.0));
    }
    out[1].push_back(mean);
    out[2].push_back(rstd);
  }
  return out;
}

inline Values ref_gelu(const Tensor& x) {
  Values y;
  const double k = std::sqrt(2.0 / M_PI);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const double v = at(x, i);
    y.push_back(0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v))));
  }
  return y;
}

inline Values ref_swiglu(const Tensor& gate, const Tensor& up) {
  Values y;
  for (std::int64_t i = 0; i < gate.numel(); ++i) {
    const double g = at(gate, i);
    y.push_back(g / (1.0 + std::exp(-g)) * at(up, i));
  }
  return y;
}

// Rotate-half rotary embedding on the q and k heads of a packed qkv.
inline Values ref_rope(const Tensor& qkv, const AttentionShape& s, const RopeConfig& cfg, std::int64_t offset) {
  const std::int64_t d = cfg.rotary_dim == 0 ? s.head_dim : cfg.rotary_dim;
  const std::int64_t width = (s.q_heads + 2 * s.kv_heads) * s.head_dim;
  double theta = cfg.theta;
  double pos_div = 1.0;
  if (cfg.scaling == RopeConfig::Scaling::Linear) pos_div = cfg.factor;
  if (cfg.scaling == RopeConfig::Scaling::NTK) theta *= std::pow(double(cfg.factor), double(d) / double(d - 2));
  Values y(static_cast<std::size_t>(qkv.numel()));
  for (std::int64_t i = 0; i < qkv.numel(); ++i) y[static_cast<std::size_t>(i)] = at(qkv, i);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t t = 0; t < s.seq; ++t) {
      const double pos = static_cast<double>(offset + t) / pos_div;
      for (std::int64_t h = 0; h < s.q_heads + s.kv_heads; ++h) {
        const std::int64_t base = (b * s.seq + t) * width + h * s.head_dim;
        for (std::int64_t i = 0; i < d / 2; ++i) {
          const double angle = pos * std::pow(theta, -2.0 * double(i) / double(d));
          const double x1 = at(qkv, base + i), x2 = at(qkv, base + i + d / 2);
          y[static_cast<std::size_t>(base + i)] = x1 * std::cos(angle) - x2 * std::sin(angle);
          y[static_cast<std::size_t>(base + i + d / 2)] = x2 * std::cos(angle) + x1 * std::sin(angle);
        }
      }
    }
  }
  return y;
}

// Causal GQA attention the textbook way: full [T, T] scores, -inf above the diagonal,
// softmax, weighted sum. Returns {out [B, T, Hq*D], lse [B, Hq, T]}.
inline std::vector<Values> ref_attention(const Tensor& qkv, const AttentionShape& s) {
  const std::int64_t T = s.seq, D = s.head_dim, width = (s.q_heads + 2 * s.kv_heads) * D;
  const std::int64_t group = s.q_heads / s.kv_heads;
  std::vector<Values> result(2);
  result[0].assign(static_cast<std::size_t>(s.batch * T * s.q_heads * D), 0.0);
  result[1].assign(static_cast<std::size_t>(s.batch * s.q_heads * T), 0.0);
  auto q = [&](std::int64_t b, std::int64_t t, std::int64_t h, std::int64_t i) {
    return at(qkv, (b * T + t) * width + h * D + i);
  };
  auto k = [&](std::int64_t b, std::int64_t t, std::int64_t g, std::int64_t i) {
    return at(qkv, (b * T + t) * width + (s.q_heads + g) * D + i);
  };
  auto v = [&](std::int64_t b, std::int64_t t, std::int64_t g, std::int64_t i) {
    return at(qkv, (b * T + t) * width + (s.q_heads + s.kv_heads + g) * D + i);
  };
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t h = 0; h < s.q_heads; ++h) {
      const std::int64_t g = h / group;
      for (std::int64_t t = 0; t < T; ++t) {
        std::vector<double> score(static_cast<std::size_t>(T));
        double mx = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < T; ++j) {
          double dot = 0.0;
          for (std::int64_t i = 0; i < D; ++i) dot += q(b, t, h, i) * k(b, j, g, i);
          score[static_cast<std::size_t>(j)] = j <= t ? dot / std::sqrt(double(D)) : -std::numeric_limits<double>::infinity();
          mx = std::max(mx, score[static_cast<std::size_t>(j)]);
        }
        double sum = 0.0;
        for (double& sc : score) sum += (sc = std::exp(sc - mx));
        for (std::int64_t i = 0; i < D; ++i) {
          double o = 0.0;
          for (std::int64_t j = 0; j < T; ++j) o += score[static_cast<std::size_t>(j)] / sum * v(b, j, g, i);
          result[0][static_cast<std::size_t>((b * T + t) * s.q_heads * D + h * D + i)] = o;
        }
        result[1][static_cast<std::size_t>((b * s.q_heads + h) * T + t)] = mx + std::log(sum);
      }
    }
  }
  return result;
}

inline double ref_log_sum_exp(const Tensor& logits, std::int64_t r) {
  const std::int64_t v = cols(logits);
  double mx = -std::numeric_limits<double>::infinity();
  for (std::int64_t j = 0; j < v; ++j) mx = std::max(mx, at(logits, r * v + j));
  double sum = 0.0;
  for (std::int64_t j = 0; j < v; ++j) sum += std::exp(at(logits, r * v + j) - mx);
  return mx + std::log(sum);
}

inline Values ref_cross_entropy(const Tensor& logits, const Tensor& targets) {
  Values loss;
  for (std::int64_t r = 0; r < rows(logits); ++r) {
    const std::int64_t t = id_at(targets, r);
    loss.push_back(t < 0 ? 0.0 : ref_log_sum_exp(logits, r) - at(logits, r * cols(logits) + t));
  }
  return loss;
}

// dloss[n] * (softmax - onehot), zero rows for ignored targets.
inline Values ref_cross_entropy_grad(const Tensor& logits, const Tensor& targets, const Tensor& dloss) {
  const std::int64_t v = cols(logits);
  Values grad(static_cast<std::size_t>(logits.numel()), 0.0);
  for (std::int64_t r = 0; r < rows(logits); ++r) {
    const std::int64_t t = id_at(targets, r);
    if (t < 0) continue;
    const double lse = ref_log_sum_exp(logits, r);
    for (std::int64_t j = 0; j < v; ++j) {
      grad[static_cast<std::size_t>(r * v + j)] =
          at(dloss, r) * (std::exp(at(logits, r * v + j) - lse) - (j == t ? 1.0 : 0.0));
    }
  }
  return grad;
}

}  // namespace loom::test
