#include "compress/algo/gptq.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace loom::compress {
namespace {

using Index = std::int64_t;
using quant::GroupParams;

void check_options(Index rows, Index cols, Index col_offset, const HessianFactor& f, const GptqOptions& o) {
  o.scheme.validate();
  if (o.block_size <= 0)
    throw std::invalid_argument("gptq_quantize: block_size must be positive, got " + std::to_string(o.block_size));
  if (o.act_order != !f.perm.empty())
    throw std::invalid_argument(std::string("gptq_quantize: options.act_order is ") + (o.act_order ? "true" : "false") +
                                " but the HessianFactor was built " + (f.perm.empty() ? "without" : "with") +
                                " act order");
  const Index g = o.scheme.group_size;
  if (g > 0 && col_offset % g != 0)
    throw std::invalid_argument("gptq_quantize: col_offset " + std::to_string(col_offset) +
                                " is not a multiple of group_size " + std::to_string(g));
  if (g > 0 && cols % g != 0 && col_offset + cols != f.n)
    throw std::invalid_argument("gptq_quantize: a slice of " + std::to_string(cols) +
                                " columns that does not end the layer must hold whole groups of " + std::to_string(g));
  if (!o.row_params.empty() && (g != 0 || static_cast<Index>(o.row_params.size()) != rows))
    throw std::invalid_argument("gptq_quantize: row_params needs group_size 0 and one entry per row (" +
                                std::to_string(rows) + "), got " + std::to_string(o.row_params.size()) +
                                " entries with group_size " + std::to_string(g));
}

}  // namespace

quant::QuantizedMatrix gptq_quantize(float* w, std::int64_t rows, std::int64_t cols, std::int64_t col_offset,
                                     const HessianFactor& f, const GptqOptions& options, const BlockErrorSink& sink,
                                     double* loss) {
  detail::check_slice("gptq_quantize", rows, cols, col_offset, f);
  check_options(rows, cols, col_offset, f, options);
  const quant::Scheme& scheme = options.scheme;
  const Index group = scheme.group_size;
  const int maxq = scheme.max_code();
  const bool act_order = !f.perm.empty();
  quant::QuantizedMatrix q = quant::QuantizedMatrix::empty(rows, cols, scheme);

  // gptq.py takes per-channel parameters before zeroing dead columns.
  if (group == 0)
    for (Index r = 0; r < rows; ++r)
      q.set_params(r, 0,
                   options.row_params.empty() ? quant::find_params(w + r * cols, cols, scheme)
                                              : options.row_params[static_cast<std::size_t>(r)]);
  for (Index c = 0; c < cols; ++c)
    if (f.dead[static_cast<std::size_t>(col_offset + c)] != 0)
      for (Index r = 0; r < rows; ++r) w[r * cols + c] = 0.0f;
  if (act_order && group > 0)
    for (Index r = 0; r < rows; ++r)
      for (Index g = 0; g < q.groups(); ++g)
        q.set_params(r, g, quant::find_params(w + r * cols + g * group, std::min(group, cols - g * group), scheme));

  // The working matrix holds local column j at processing position col_offset + j.
  std::vector<float> permuted;
  float* work = w;
  if (act_order) {
    permuted.resize(static_cast<std::size_t>(rows * cols));
    for (Index r = 0; r < rows; ++r)
      for (Index p = 0; p < cols; ++p)
        permuted[static_cast<std::size_t>(r * cols + p)] = w[r * cols + f.perm[static_cast<std::size_t>(p)]];
    work = permuted.data();
  }

  const Index block = options.block_size;
  std::vector<float> err(static_cast<std::size_t>(rows * std::min(block, cols)));
  std::vector<double> row_loss(static_cast<std::size_t>(rows), 0.0);
  for (Index j0 = 0; j0 < cols; j0 += block) {
    const Index j1 = std::min(cols, j0 + block), count = j1 - j0;
    const Index b0 = col_offset + j0, b1 = col_offset + j1;
#pragma omp parallel
    {
      std::vector<float> w1(static_cast<std::size_t>(count));
#pragma omp for schedule(static)
      for (Index r = 0; r < rows; ++r) {
        float* wr = work + r * cols;
        std::copy(wr + j0, wr + j1, w1.begin());
        double lost = 0.0;
        for (Index i = 0; i < count; ++i) {
          const Index j = j0 + i, p = col_offset + j;
          const Index natural = act_order ? f.perm[static_cast<std::size_t>(p)] : j;
          // wr still holds the block's values as of its start: gptq.py reads groups from W, not W1.
          if (group > 0 && !act_order && p % group == 0)
            q.set_params(r, j / group, quant::find_params(wr + j, std::min(group, cols - j), scheme));
          const GroupParams params = q.params(r, scheme.group_of(natural));
          const int code = quant::quantize_value(w1[static_cast<std::size_t>(i)], params, maxq);
          q.set_code(r, natural, code);
          const float deq = quant::dequantize_value(code, params);
          const float d = f.diagonal(p);
          const float diff = w1[static_cast<std::size_t>(i)] - deq;
          lost += static_cast<double>(diff * diff / (d * d));
          const float e = diff / d;
          const float* up = f.u.data() + p * f.n + b0;
          for (Index k = i + 1; k < count; ++k) w1[static_cast<std::size_t>(k)] -= e * up[k];
          w1[static_cast<std::size_t>(i)] = deq;
          err[static_cast<std::size_t>(r * count + i)] = e;
        }
        std::copy(w1.begin(), w1.end(), wr + j0);
        row_loss[static_cast<std::size_t>(r)] += lost;
      }
    }
    if (sink) sink(b0, b1, err.data());
    detail::apply_block_error_positions(work, rows, cols, cols, col_offset, f, b0, b1, err.data());
  }

  if (act_order)
    for (Index r = 0; r < rows; ++r)
      for (Index p = 0; p < cols; ++p)
        w[r * cols + f.perm[static_cast<std::size_t>(p)]] = permuted[static_cast<std::size_t>(r * cols + p)];
  if (loss != nullptr) {
    double total = 0.0;
    for (const double l : row_loss) total += l;
    *loss = total / 2.0;
  }
  return q;
}

}  // namespace loom::compress
