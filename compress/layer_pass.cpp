#include "compress/layer_pass.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <iostream>
#include <stdexcept>

#include "compress/algo/gptq.h"
#include "compress/algo/hessian.h"
#include "compress/algo/input_stats.h"
#include "compress/algo/pruning.h"
#include "compress/algo/smoothquant.h"
#include "compress/algo/sparsegpt.h"
#include "compress/distributed.h"
#include "launch/mpi_runtime.h"

namespace loom::compress {
namespace {

using launch::GroupAxis;

// The four inputs of a block's linear layers.
enum Input { kAttnIn = 0, kAttnOut = 1, kMlpIn = 2, kMlpAct = 3 };
constexpr int kInputs = 4;

Input input_of(const std::string& linear) {
  if (linear == "qkv") return kAttnIn;
  if (linear == "out") return kAttnOut;
  if (linear == "down") return kMlpAct;
  return kMlpIn;
}

struct Captured {
  std::int64_t width = 0;
  std::vector<float> x;  // [tokens, width]
};

std::vector<std::string> block_linears(const model::ModelConfig& config) {
  if (config.family == model::Family::Llama) return {"qkv", "out", "gate", "up", "down"};
  return {"qkv", "out", "up", "down"};
}

// Per-row parameters over whole rows whose columns are split over `tp`: find_params only
// reads the range [min(min w, 0), max(max w, 0)], so the all-reduced ends give the whole row's.
std::vector<quant::GroupParams> whole_row_params(const std::vector<float>& w, std::int64_t rows, std::int64_t cols,
                                                 const quant::Scheme& scheme, MPI_Comm tp) {
  std::vector<float> lo(static_cast<std::size_t>(rows), 0.0f), hi(static_cast<std::size_t>(rows), 0.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = w[static_cast<std::size_t>(r * cols + c)];
      lo[static_cast<std::size_t>(r)] = std::min(lo[static_cast<std::size_t>(r)], v);
      hi[static_cast<std::size_t>(r)] = std::max(hi[static_cast<std::size_t>(r)], v);
    }
  }
  all_reduce_min(lo, tp);
  all_reduce_max(hi, tp);
  std::vector<quant::GroupParams> params(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float ends[2] = {lo[static_cast<std::size_t>(r)], hi[static_cast<std::size_t>(r)]};
    params[static_cast<std::size_t>(r)] = quant::find_params(ends, 2, scheme);
  }
  return params;
}

// Round-to-nearest of a slice; whole-row parameters when a per-channel row is split over tp.
quant::QuantizedMatrix rtn_slice(const std::vector<float>& w, std::int64_t rows, std::int64_t cols,
                                 const quant::Scheme& scheme, bool split_columns, MPI_Comm tp) {
  if (!(split_columns && scheme.group_size == 0)) return quant::quantize_rtn(w.data(), rows, cols, scheme);
  const std::vector<quant::GroupParams> params = whole_row_params(w, rows, cols, scheme, tp);
  quant::QuantizedMatrix q = quant::QuantizedMatrix::empty(rows, cols, scheme);
  for (std::int64_t r = 0; r < rows; ++r) {
    const quant::GroupParams& p = params[static_cast<std::size_t>(r)];
    q.set_params(r, 0, p);
    for (std::int64_t c = 0; c < cols; ++c) {
      q.set_code(r, c, quant::quantize_value(w[static_cast<std::size_t>(r * cols + c)], p, scheme.max_code()));
    }
  }
  return q;
}

double all_reduce_sum_double(double value, MPI_Comm comm) {
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_SUM, comm));
  return value;
}

}  // namespace

std::string LayerCompressor::parameter_prefix(const std::string& linear) {
  return (linear == "qkv" || linear == "out" ? "attn." : "mlp.") + linear;
}

nlohmann::json LayerOutcome::to_json() const {
  nlohmann::json j = {{"layer", layer}, {"seconds", seconds}};
  for (const LinearOutcome& l : linears) {
    nlohmann::json e = {{"loss", l.loss}};
    if (!l.keep.empty()) e["sparsity"] = sparsity_of(l.keep);
    j["linears"][l.name] = e;
  }
  return j;
}

LayerCompressor::LayerCompressor(train::Engine& engine, const QuantizeSpec& spec) : engine_(engine), spec_(spec) {
  const launch::ProcessGroups& g = engine.groups();
  if (g.pp_size() != 1) {
    throw std::invalid_argument("loom-quantize runs layer by layer on whole layers: parallel.pp must be 1 (got " +
                                std::to_string(g.pp_size()) + "); use tp and dp");
  }
  const model::ModelConfig& c = engine.config();
  const bool layer_wide = spec.method == Method::Magnitude || spec.method == Method::SparseGpt;
  if (layer_wide && spec.prune_n == 0 && spec.targeted("qkv") && g.tp_size() > c.n_kv_heads) {
    throw std::invalid_argument("parallel.tp = " + std::to_string(g.tp_size()) + " replicates kv heads (" +
                                std::to_string(c.n_kv_heads) + " of them), so a layer-wide pruning threshold of qkv "
                                "would count them twice: use tp <= " + std::to_string(c.n_kv_heads));
  }
}

void LayerCompressor::forward(std::int64_t layer, std::vector<Tensor>& hidden) {
  model::Transformer& model = engine_.model();
  for (Tensor& h : hidden) {
    const model::LayerActivations& acts = model.layer_forward(layer, h);
    std::copy_n(acts.output.data<float>(), h.numel(), h.data<float>());
  }
}

LayerOutcome LayerCompressor::compress(std::int64_t layer, std::vector<Tensor>& hidden) {
  const auto t0 = std::chrono::steady_clock::now();
  model::Transformer& model = engine_.model();
  model::TransformerBlock& block = model.block(layer);
  const launch::ProcessGroups& groups = engine_.groups();
  MPI_Comm tp = groups.comm(GroupAxis::Tp), dp = groups.comm(GroupAxis::Dp);
  const int tp_rank = groups.tp_rank(), tp_size = groups.tp_size();
  const std::string where = "layer " + std::to_string(layer);

  std::vector<std::string> linears;
  for (const std::string& name : block_linears(engine_.config()))
    if (spec_.targeted(name)) linears.push_back(name);
  std::array<bool, kInputs> used{};
  for (const std::string& name : linears) used[input_of(name)] = true;
  if (spec_.method == Method::SmoothQuant) used[kAttnIn] = used[kMlpIn] = true;

  // 1. The linears' inputs over this rank's calibration tokens.
  std::array<Captured, kInputs> captured;
  std::int64_t seq = hidden.empty() ? 0 : hidden.front().dim(1);
  if (spec_.needs_calibration()) {
    for (Tensor& h : hidden) {
      const model::LayerActivations& a = model.layer_forward(layer, h);
      const Tensor* sources[kInputs] = {&a.attn_norm_out, &a.attn_out, &a.mlp_norm_out, &a.mlp_act};
      for (int i = 0; i < kInputs; ++i) {
        if (!used[i]) continue;
        const Tensor& t = *sources[i];
        captured[i].width = t.dim(t.ndim() - 1);
        captured[i].x.insert(captured[i].x.end(), t.data<float>(), t.data<float>() + t.numel());
      }
    }
  }

  // 2. Their statistics, exact over dp; row-parallel inputs whole when Σ x xᵀ is needed.
  std::array<InputStats, kInputs> stats;
  if (spec_.needs_calibration()) {
    for (int i = 0; i < kInputs; ++i) {
      if (!used[i]) continue;
      Captured& in = captured[i];
      const std::int64_t tokens = in.width > 0 ? static_cast<std::int64_t>(in.x.size()) / in.width : 0;
      if ((i == kAttnOut || i == kMlpAct) && spec_.needs_xtx() && tp_size > 1) {
        in.x = all_gather_columns(in.x.data(), tokens, in.width, tp);
        in.width *= tp_size;
      }
      InputStatsAccumulator acc(in.width, spec_.needs_xtx());
      acc.observe_absmax(in.x.data(), tokens);
      std::vector<float> absmax = acc.absmax();
      all_reduce_max(absmax, dp);
      acc.begin_sums(absmax, all_reduce_sum(acc.observed_tokens(), dp));
      for (std::int64_t t = 0; t < tokens; t += seq) acc.add_sample(in.x.data() + t * in.width, seq);
      all_reduce_sum(acc.fixed_xtx(), dp);
      all_reduce_sum(acc.fixed_sq(), dp);
      stats[i] = acc.finish();
      in.x = {};
    }
  }

  // 3a. SmoothQuant: the scales of each norm's input, folded into the norm and its consumers.
  if (spec_.method == Method::SmoothQuant) {
    auto smooth = [&](model::Norm& norm, const std::vector<std::string>& consumers, Input input) {
      std::vector<float> wmax(static_cast<std::size_t>(norm.weight.numel()), 0.0f);
      std::vector<SmoothedLinear> targets;
      for (const std::string& name : consumers) {
        Tensor& w = block.linear(name).weight;
        const std::vector<float> m = column_absmax(w.data<float>(), w.dim(0), w.dim(1));
        for (std::size_t j = 0; j < m.size(); ++j) wmax[j] = std::max(wmax[j], m[j]);
        targets.push_back({w.data<float>(), w.dim(0)});
      }
      all_reduce_max(wmax, tp);
      const std::vector<float> s = smooth_scales(stats[input].absmax, wmax, spec_.alpha);
      apply_smoothing(std::span<float>(norm.weight.data<float>(), static_cast<std::size_t>(norm.weight.numel())),
                      norm.bias.defined() ? norm.bias.data<float>() : nullptr, s, targets);
    };
    const bool llama = engine_.config().family == model::Family::Llama;
    if (spec_.targeted("qkv")) smooth(block.attn_norm(), {"qkv"}, kAttnIn);
    if (spec_.targeted("up") || (llama && spec_.targeted("gate"))) {
      smooth(block.mlp_norm(), llama ? std::vector<std::string>{"gate", "up"} : std::vector<std::string>{"up"}, kMlpIn);
    }
  }

  // 3b. Each linear on its slice.
  LayerOutcome outcome;
  outcome.layer = layer;
  const Selector local;
  const MpiSelector over_tp(tp);
  for (const std::string& name : linears) {
    Tensor& weight = block.linear(name).weight;
    const std::int64_t rows = weight.dim(0), cols = weight.dim(1);
    const bool split_columns = row_parallel(name) && tp_size > 1;
    const std::int64_t col_offset = split_columns ? tp_rank * cols : 0;
    const std::int64_t width = split_columns ? cols * tp_size : cols;
    const std::string what = where + " " + name;
    std::vector<float> w(weight.data<float>(), weight.data<float>() + weight.numel());
    LinearOutcome out;
    out.name = name;
    const quant::Scheme& scheme = spec_.scheme;
    if (split_columns && spec_.quantizes() && scheme.group_size > 0 && cols % scheme.group_size != 0) {
      throw std::invalid_argument(what + ": the tp slice of " + std::to_string(cols) + " input columns is not a "
                                  "multiple of group_size " + std::to_string(scheme.group_size) +
                                  "; use another group size or tp");
    }
    if (split_columns && (spec_.method == Method::Gptq || spec_.method == Method::SparseGpt) &&
        cols % spec_.block_size != 0 && groups.world_rank() == 0 && layer == 0) {
      std::cerr << "loom-quantize: warning: " << name << "'s tp slice of " << cols << " columns is not a multiple of "
                << "block_size " << spec_.block_size << ": blocks are cut at slice edges, so the result differs "
                << "(slightly) from a single-process run\n";
    }
    // GPTQ / SparseGPT on a row-parallel slice: the ranks run in column order, each handing its
    // finished blocks to the later ones.
    auto in_column_order = [&](const HessianFactor& f, const std::function<void(const BlockErrorSink&)>& run_mine) {
      constexpr int kTag = 9100;
      for (int r = 0; r < tp_size; ++r) {
        if (r == tp_rank) {
          run_mine([&](std::int64_t b0, std::int64_t b1, const float* err) {
            send_to_later_ranks(std::span<const float>(err, static_cast<std::size_t>(rows * (b1 - b0))), tp, kTag);
          });
        } else if (r < tp_rank) {
          std::vector<float> err;
          for (std::int64_t b0 = r * cols; b0 < (r + 1) * cols; b0 += spec_.block_size) {
            const std::int64_t b1 = std::min(b0 + spec_.block_size, (r + 1) * cols);
            err.resize(static_cast<std::size_t>(rows * (b1 - b0)));
            receive_from(err, r, tp, kTag);
            apply_block_error(w.data(), rows, cols, col_offset, f, b0, b1, err.data());
          }
        }
      }
    };
    switch (spec_.method) {
      case Method::Rtn:
      case Method::SmoothQuant:
        out.quantized = rtn_slice(w, rows, cols, scheme, split_columns, tp);
        break;
      case Method::Gptq: {
        if (split_columns && spec_.act_order) {
          throw std::invalid_argument(what + ": act_order reorders columns across the tp slices of a row-parallel "
                                      "layer; run GPTQ with act_order on tp 1 (dp may be any)");
        }
        const HessianFactor f = factor_hessian(stats[input_of(name)].xtx.data(), width, spec_.damp, spec_.act_order);
        GptqOptions options{scheme, spec_.damp, spec_.block_size, spec_.act_order, {}};
        if (split_columns && scheme.group_size == 0) options.row_params = whole_row_params(w, rows, cols, scheme, tp);
        if (split_columns) {
          in_column_order(f, [&](const BlockErrorSink& sink) {
            out.quantized = gptq_quantize(w.data(), rows, cols, col_offset, f, options, sink, &out.loss);
          });
        } else {
          out.quantized = gptq_quantize(w.data(), rows, cols, 0, f, options, {}, &out.loss);
        }
        break;
      }
      case Method::SparseGpt: {
        const HessianFactor f = factor_hessian(stats[input_of(name)].xtx.data(), width, spec_.damp, false);
        SparseGptOptions options{spec_.sparsity, spec_.prune_n, spec_.prune_m, spec_.damp, spec_.block_size, 0};
        if (split_columns) {
          in_column_order(f, [&](const BlockErrorSink& sink) {
            out.keep = sparsegpt_prune(w.data(), rows, cols, col_offset, f, options, local, sink, &out.loss);
          });
        } else {
          options.global_rows = rows * tp_size;
          out.keep = sparsegpt_prune(w.data(), rows, cols, 0, f, options, tp_size > 1 ? static_cast<const Selector&>(over_tp) : local,
                                     {}, &out.loss);
        }
        break;
      }
      case Method::Wanda: {
        const std::vector<double>& sq = stats[input_of(name)].sq_sum;
        if (spec_.prune_n > 0) {
          const std::vector<float> metric = wanda_metric(w.data(), rows, cols, sq);
          out.keep = nm_mask(metric.data(), rows, cols, spec_.prune_n, spec_.prune_m);
        } else {
          out.keep = wanda_mask(w.data(), rows, cols, col_offset, width, sq, spec_.sparsity,
                                split_columns ? static_cast<const Selector&>(over_tp) : local);
        }
        break;
      }
      case Method::Magnitude:
        if (spec_.prune_n > 0) {
          const std::vector<float> metric = magnitude_metric(w.data(), rows, cols);
          out.keep = nm_mask(metric.data(), rows, cols, spec_.prune_n, spec_.prune_m);
        } else {
          out.keep = magnitude_mask(w.data(), rows, cols, rows * cols * tp_size, spec_.sparsity,
                                    tp_size > 1 ? static_cast<const Selector&>(over_tp) : local);
        }
        break;
      case Method::None:
        break;
    }
    if (out.quantized) quant::dequantize(*out.quantized, w.data());
    if (!out.keep.empty()) apply_mask(w.data(), out.keep.data(), static_cast<std::int64_t>(w.size()));
    std::copy(w.begin(), w.end(), weight.data<float>());
    out.loss = all_reduce_sum_double(out.loss, tp);
    outcome.linears.push_back(std::move(out));
  }

  // 4. The layer's outputs with the compressed weights feed the next layer.
  forward(layer, hidden);
  outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return outcome;
}

}  // namespace loom::compress
