// GPTQ: post-training weight quantization with Hessian-based error compensation (Frantar et
// al. 2022), as the published gptq.py `fasterquant` does it, on one linear layer's weight
// W [rows = out, cols = in] in f32.
//
// Columns are quantized one at a time in processing order; each column's scaled error
// (w − q) / U[p, p] is spread over the rest of its block at once and over the columns after
// the block lazily, one block of `block_size` positions at a time (apply_block_error).
// Quantization parameters follow gptq.py:
//   group_size 0   one (scale, zero) per row from the rows as given (before dead columns are
//                  zeroed), unless GptqOptions::row_params supplies them;
//   group_size g   at global position p with p % g == 0, find_params on W[:, p : p + g] as of
//                  the start of the current block (the lazily updated W, not the block copy);
//   act order + g  gptq.py's static_groups: every natural group's parameters from the initial W
//                  (after zeroing dead columns), so groups stay natural and QuantizedMatrix
//                  needs no g_idx.
// quant::find_params mirrors symmetric ranges always (see core/quant/quantized.h).
//
// Column slices (tensor parallelism, row-parallel layers): w may be the original columns
// [col_offset, col_offset + cols) of a layer of f.n columns; its first block starts at global
// position col_offset. A driver that runs the slices in column order, handing each slice's
// finished blocks (the sink) to the later slices' apply_block_error, ends bit-identical to one
// call over the whole matrix when slice widths are multiples of block_size (and group sizes).
//
// Thread safety: pure apart from writing w; OpenMP over rows only, so the result does not
// depend on the thread count. The sink is called from the calling thread.
#pragma once

#include <cstdint>
#include <vector>

#include "compress/algo/hessian.h"
#include "core/quant/quantized.h"

namespace loom::compress {

struct GptqOptions {
  quant::Scheme scheme;
  double percdamp = 0.01;  // used by factor_hessian; kept here so one struct describes a run
  std::int64_t block_size = 128;
  bool act_order = false;  // must agree with the factor (f.perm non-empty)
  // [rows] per-channel parameters (group_size 0 only) for a column slice, computed over the
  // whole rows (e.g. find_params on each row's all-reduced {min, max}); empty: from w.
  std::vector<quant::GroupParams> row_params;
};

// GPTQ on w [rows, cols] row-major = original columns [col_offset, col_offset + cols) of a
// layer of f.n columns. w is updated in place and ends holding the dequantized weights (dead
// columns 0). Returns the codes and parameters of the slice (its groups counted from
// col_offset, which must be a multiple of the group size). sink (may be empty) receives every
// finished block's scaled errors, in order. loss (may be null) receives gptq.py's error
// Σ (w − q)² / U[p, p]² / 2 over the slice. Throws std::invalid_argument for inconsistent
// shapes or options.
quant::QuantizedMatrix gptq_quantize(float* w, std::int64_t rows, std::int64_t cols, std::int64_t col_offset,
                                     const HessianFactor& f, const GptqOptions& options,
                                     const BlockErrorSink& sink = {}, double* loss = nullptr);

}  // namespace loom::compress
