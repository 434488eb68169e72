// The machinery of the table-driven op test (test_ops.cpp), in the spirit of ggml's
// test-backend-ops: an OpCase describes one op (inputs, forward, scalar reference,
// backward); run_case() runs it on one backend and returns one CheckResult per comparison:
//   * forward outputs against the f64 scalar reference (op_reference.h), atol + rtol·|ref|;
//   * every gradient against a central finite difference of L = Σ r ⊙ y (r fixed random),
//     with the backward writing into gradients pre-filled with kGradBase, so an op that
//     overwrites instead of adding fails;
//   * bit-identical results on a repeat run and (for non-GEMM ops) on 1 vs 3 threads.
// Inputs are built on the host and moved with upload()/download(); for a non-CPU backend
// those rely on Backend::copy moving data between host and device tensors.
#pragma once

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"

namespace loom::test {

using Tensors = std::vector<Tensor>;

struct Tol {
  double atol = 1e-5;
  double rtol = 1e-5;
};

struct CheckResult {
  std::string backend, op, check;
  std::int64_t count = 0;
  std::int64_t failures = 0;
  double max_abs = 0.0;     // max |got - want|
  double max_rel = 0.0;     // max |got - want| / |want| over elements with |want| >= 10 atol
  double worst = 0.0;       // max |got - want| / (atol + rtol |want|): must stay <= 1
  std::string first_failure;
  bool passed() const { return failures == 0; }
};

// Gradient buffers start at this value; backward must add to it.
inline constexpr float kGradBase = 0.375f;

// Uniform values on a 2^-12 grid, so x ± h and x ± 2h are exact in f32 for power-of-two h.
class Rng {
 public:
  explicit Rng(const std::string& name) {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a: a fixed seed per case name
    for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    engine_.seed(h);
  }
  float uniform(double lo, double hi) {
    const double v = std::uniform_real_distribution<double>(lo, hi)(engine_);
    return static_cast<float>(std::round(v * 4096.0) / 4096.0);
  }
  std::int32_t integer(std::int32_t lo, std::int32_t hi) {
    return std::uniform_int_distribution<std::int32_t>(lo, hi)(engine_);
  }
  Tensor tensor(const Shape& shape, double lo = -1.0, double hi = 1.0) {
    Tensor t = Tensor::empty(shape);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = uniform(lo, hi);
    return t;
  }
  Tensor ids(const std::vector<std::int32_t>& values) {
    Tensor t = Tensor::empty({static_cast<std::int64_t>(values.size())}, DType::I32);
    std::memcpy(t.raw(), values.data(), values.size() * sizeof(std::int32_t));
    return t;
  }

 private:
  std::mt19937_64 engine_;
};

inline Tensor upload(Backend& backend, const Tensor& host) {
  if (backend.device() == Device::CPU) return host.clone();
  Tensor t = Tensor::empty(host.shape(), host.dtype(), backend.device());
  backend.copy(host, t);
  return t;
}

inline Tensor download(Backend& backend, const Tensor& t) {
  if (t.device() == Device::CPU) return t.clone();
  Tensor host = Tensor::empty(t.shape(), t.dtype(), Device::CPU);
  backend.copy(t, host);
  return host;
}

inline Tensor device_empty(Backend& backend, const Shape& shape, DType dtype = DType::F32) {
  return Tensor::empty(shape, dtype, backend.device());
}

inline std::vector<double> values_of(const Tensor& host) {
  std::vector<double> v(static_cast<std::size_t>(host.numel()));
  for (std::int64_t i = 0; i < host.numel(); ++i) v[static_cast<std::size_t>(i)] = host.data<float>()[i];
  return v;
}

inline CheckResult compare(const std::string& op, const std::string& check, const std::vector<double>& got,
                           const std::vector<double>& want, Tol tol) {
  CheckResult r;
  r.op = op;
  r.check = check;
  r.count = static_cast<std::int64_t>(want.size());
  if (got.size() != want.size()) {
    r.failures = 1;
    r.first_failure = "size " + std::to_string(got.size()) + " != expected " + std::to_string(want.size());
    return r;
  }
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    const double bound = tol.atol + tol.rtol * std::fabs(want[i]);
    r.max_abs = std::max(r.max_abs, err);
    if (std::fabs(want[i]) >= 10.0 * tol.atol) r.max_rel = std::max(r.max_rel, err / std::fabs(want[i]));
    r.worst = std::max(r.worst, err / bound);
    if (!(err <= bound)) {  // also catches NaN
      if (r.failures == 0) {
        r.first_failure = "[" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
                          std::to_string(want[i]);
      }
      ++r.failures;
    }
  }
  return r;
}

inline bool bit_identical(const Tensors& a, const Tensors& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].nbytes() != b[i].nbytes() || std::memcmp(a[i].raw(), b[i].raw(), a[i].nbytes()) != 0) return false;
  }
  return true;
}

inline CheckResult exact_check(const std::string& op, const std::string& check, bool ok, const std::string& why) {
  CheckResult r;
  r.op = op;
  r.check = check;
  r.count = 1;
  r.failures = ok ? 0 : 1;
  r.worst = ok ? 0.0 : HUGE_VAL;
  if (!ok) r.first_failure = why;
  return r;
}

struct OpCase {
  std::string name;
  std::vector<std::string> input_names;
  std::vector<std::string> output_names;
  std::function<Tensors(Rng&)> make_inputs;  // host tensors
  // Device inputs -> device outputs; must not modify its inputs.
  std::function<Tensors(Backend&, const Tensors&)> forward;
  // Host inputs -> expected values of the outputs (all of them, in order).
  std::function<std::vector<std::vector<double>>(const Tensors&)> reference;
  // Inputs that have gradients, in the order backward receives their gradient buffers.
  std::vector<int> wrt;
  int loss_outputs = 1;  // the first loss_outputs outputs enter L = Σ r ⊙ y
  // (backend, inputs, outputs, dL/d(loss outputs), gradients to add into)
  std::function<void(Backend&, const Tensors&, const Tensors&, const Tensors&, Tensors&)> backward;
  Tol forward_tol;
  Tol grad_tol{2e-4, 2e-3};
  double fd_step = 1.0 / 64.0;  // a power of two, see Rng
  bool thread_invariant = true;  // GEMM-backed ops may depend on the BLAS thread split
  // Op-specific checks beyond the table's (causal mask, aliasing, ...), given host inputs.
  std::function<std::vector<CheckResult>(Backend&, const Tensors&)> extra;
};

// Applied to each analytic gradient before comparison; the checker's self-test uses it to
// corrupt gradients on purpose.
using GradTamper = std::function<void(std::vector<double>&)>;

inline Tensors upload_all(Backend& backend, const Tensors& host) {
  Tensors dev;
  for (const Tensor& t : host) dev.push_back(upload(backend, t));
  return dev;
}

inline Tensors download_all(Backend& backend, const Tensors& dev) {
  Tensors host;
  for (const Tensor& t : dev) host.push_back(download(backend, t));
  return host;
}

// L = Σ_k Σ_i r_k[i] y_k[i] over the loss outputs, in f64.
inline double objective(const OpCase& c, Backend& backend, const Tensors& dev_inputs,
                        const std::vector<std::vector<double>>& r) {
  const Tensors out = download_all(backend, c.forward(backend, dev_inputs));
  double loss = 0.0;
  for (int k = 0; k < c.loss_outputs; ++k) {
    const float* y = out[static_cast<std::size_t>(k)].data<float>();
    for (std::size_t i = 0; i < r[static_cast<std::size_t>(k)].size(); ++i) loss += r[static_cast<std::size_t>(k)][i] * y[i];
  }
  return loss;
}

// dL/d(input) by the fourth-order central difference (8 (L1 - L-1) - (L2 - L-2)) / 12h.
inline std::vector<double> finite_difference(const OpCase& c, Backend& backend, const Tensors& host_inputs,
                                             int input, const std::vector<std::vector<double>>& r) {
  Tensors dev = upload_all(backend, host_inputs);
  Tensor host = host_inputs[static_cast<std::size_t>(input)].clone();
  float* x = host.data<float>();
  std::vector<double> grad(static_cast<std::size_t>(host.numel()));
  const double h = c.fd_step;
  // Thousands of tiny forwards: one thread avoids paying a parallel region's wake-up each
  // time, which dominates on a loaded machine. The analytic side keeps every thread.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  for (std::int64_t e = 0; e < host.numel(); ++e) {
    const float original = x[e];
    auto at_offset = [&](double steps) {
      x[e] = static_cast<float>(original + steps * h);
      dev[static_cast<std::size_t>(input)] = upload(backend, host);
      return objective(c, backend, dev, r);
    };
    const double l1 = at_offset(1), lm1 = at_offset(-1), l2 = at_offset(2), lm2 = at_offset(-2);
    grad[static_cast<std::size_t>(e)] = (8.0 * (l1 - lm1) - (l2 - lm2)) / (12.0 * h);
    x[e] = original;
  }
  omp_set_num_threads(threads);
  return grad;
}

struct BackwardRun {
  Tensors grads;  // host, with kGradBase subtracted
  Tensors raw;    // host, as the backend left them (for bit comparisons)
};

inline BackwardRun run_backward(const OpCase& c, Backend& backend, const Tensors& dev_inputs,
                                const Tensors& dev_outputs, const Tensors& dy) {
  Tensors grads;
  for (int i : c.wrt) {
    grads.push_back(device_empty(backend, dev_inputs[static_cast<std::size_t>(i)].shape()));
    backend.fill(grads.back(), kGradBase);
  }
  c.backward(backend, dev_inputs, dev_outputs, dy, grads);
  BackwardRun run;
  run.raw = download_all(backend, grads);
  for (const Tensor& g : run.raw) {
    Tensor d = g.clone();
    for (std::int64_t i = 0; i < d.numel(); ++i) d.data<float>()[i] -= kGradBase;
    run.grads.push_back(d);
  }
  return run;
}

// Everything the table checks for one case on one backend.
inline std::vector<CheckResult> run_case(const OpCase& c, Backend& backend, const GradTamper& tamper = nullptr) {
  std::vector<CheckResult> results;
  Rng rng(c.name);
  const Tensors host_inputs = c.make_inputs ? c.make_inputs(rng) : Tensors{};
  if (!c.forward) {  // an op checked only by its extras (sum_squares, fill, ...)
    if (c.extra) results = c.extra(backend, host_inputs);
    for (CheckResult& x : results) x.backend = backend.name();
    return results;
  }
  const Tensors dev_inputs = upload_all(backend, host_inputs);
  const Tensors dev_outputs = c.forward(backend, dev_inputs);
  const Tensors outputs = download_all(backend, dev_outputs);

  if (c.reference) {
    const auto expected = c.reference(host_inputs);
    for (std::size_t k = 0; k < expected.size(); ++k) {
      results.push_back(compare(c.name, "fwd " + c.output_names[k], values_of(outputs[k]), expected[k], c.forward_tol));
    }
  }
  results.push_back(exact_check(c.name, "fwd repeat bit-identical",
                                bit_identical(outputs, download_all(backend, c.forward(backend, dev_inputs))),
                                "a second forward gave different bits"));

  BackwardRun first;
  Tensors dy;
  std::vector<std::vector<double>> r;
  if (c.backward) {
    for (int k = 0; k < c.loss_outputs; ++k) {
      Tensor weights = rng.tensor(outputs[static_cast<std::size_t>(k)].shape());
      r.push_back(values_of(weights));
      dy.push_back(upload(backend, weights));
    }
    first = run_backward(c, backend, dev_inputs, dev_outputs, dy);
    for (std::size_t j = 0; j < c.wrt.size(); ++j) {
      const int input = c.wrt[j];
      std::vector<double> analytic = values_of(first.grads[j]);
      if (tamper) tamper(analytic);
      results.push_back(compare(c.name, "grad " + c.input_names[static_cast<std::size_t>(input)] + " vs FD", analytic,
                                finite_difference(c, backend, host_inputs, input, r), c.grad_tol));
    }
    results.push_back(exact_check(c.name, "bwd repeat bit-identical",
                                  bit_identical(first.raw, run_backward(c, backend, dev_inputs, dev_outputs, dy).raw),
                                  "a second backward gave different bits"));
  }

  if (c.thread_invariant && backend.device() == Device::CPU) {
    const int threads = omp_get_max_threads();
    auto run_with = [&](int n) {
      omp_set_num_threads(n);
      Tensors all = download_all(backend, c.forward(backend, dev_inputs));
      if (c.backward) {
        for (Tensor& g : run_backward(c, backend, dev_inputs, dev_outputs, dy).raw) all.push_back(g);
      }
      return all;
    };
    const Tensors one = run_with(1);
    const Tensors three = run_with(3);
    omp_set_num_threads(threads);
    results.push_back(exact_check(c.name, "1 vs 3 threads bit-identical", bit_identical(one, three),
                                  "results depend on the thread count"));
  }

  if (c.extra) {
    for (CheckResult& x : c.extra(backend, host_inputs)) results.push_back(std::move(x));
  }
  for (CheckResult& x : results) x.backend = backend.name();
  return results;
}

inline void print_results(const std::vector<CheckResult>& results) {
  std::printf("\n%-30s %-34s %7s %11s %11s %9s %s\n", "op", "check", "n", "max_abs", "max_rel", "err/tol",
              "result");
  for (const CheckResult& r : results) {
    std::printf("%-30s %-40s %7lld %11.3e %11.3e %9.3f %s%s\n", r.op.c_str(), r.check.c_str(),
                static_cast<long long>(r.count), r.max_abs, r.max_rel, r.worst, r.passed() ? "ok" : "FAIL ",
                r.passed() ? "" : r.first_failure.c_str());
  }
  std::fflush(stdout);
}

}  // namespace loom::test
