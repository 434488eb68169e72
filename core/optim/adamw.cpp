#include "core/optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace loom::optim {

void AdamWConfig::validate() const {
  auto fail = [](const std::string& what) { throw std::invalid_argument("adamw: " + what); };
  if (!(beta1 >= 0.0f && beta1 < 1.0f)) fail("beta1 must lie in [0, 1)");
  if (!(beta2 >= 0.0f && beta2 < 1.0f)) fail("beta2 must lie in [0, 1)");
  if (!(eps > 0.0f) || !std::isfinite(eps)) fail("eps must be a positive number");
  if (!(weight_decay >= 0.0f) || !std::isfinite(weight_decay)) fail("weight_decay must be a number >= 0");
}

AdamW::AdamW(model::ParameterSet& params, const AdamWConfig& config, Backend& backend)
    : AdamW(params, config, backend, 0, params.numel()) {}

AdamW::AdamW(model::ParameterSet& params, const AdamWConfig& config, Backend& backend, std::int64_t begin,
             std::int64_t end)
    : params_(params), config_(config), backend_(backend), begin_(begin), end_(end) {
  config_.validate();
  if (begin < 0 || begin > end || end > params.numel()) {
    throw std::invalid_argument("adamw: range [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") is outside the parameter buffer of " + std::to_string(params.numel()) +
                                " elements");
  }
  // Each entry's span reaches to the next entry's offset, so padding joins the runs.
  const auto& entries = params.entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::int64_t span_begin = std::max(entries[i].offset, begin);
    const std::int64_t next = i + 1 < entries.size() ? entries[i + 1].offset : params.numel();
    const std::int64_t span_end = std::min(next, end);
    if (span_begin >= span_end) continue;
    if (!spans_.empty() && spans_.back().decay == entries[i].decay && spans_.back().end == span_begin) {
      spans_.back().end = span_end;
    } else {
      spans_.push_back(Span{span_begin, span_end, entries[i].decay});
    }
  }
  m_ = Tensor::empty({end - begin}, DType::F32, backend.device());
  v_ = Tensor::empty({end - begin}, DType::F32, backend.device());
  backend.fill(m_, 0.0f);
  backend.fill(v_, 0.0f);
}

void AdamW::step(float lr, float grad_scale) {
  ++steps_;
  Backend::AdamWArgs args;
  args.lr = lr;
  args.beta1 = config_.beta1;
  args.beta2 = config_.beta2;
  args.eps = config_.eps;
  args.grad_scale = grad_scale;
  args.step = steps_;
  for (const Span& span : spans_) {
    const Shape shape = {span.end - span.begin};
    Tensor param = params_.values().view(span.begin, shape);
    const Tensor grad = params_.grads().view(span.begin, shape);
    Tensor m = m_.view(span.begin - begin_, shape);
    Tensor v = v_.view(span.begin - begin_, shape);
    args.weight_decay = span.decay ? config_.weight_decay : 0.0f;
    backend_.adamw_update(param, grad, m, v, args);
  }
  params_.refresh_compute_values(backend_, begin_, end_);  // bf16 models compute with the new masters
}

}  // namespace loom::optim
