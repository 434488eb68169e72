#include "core/quant/quant_gemm.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/quant/quant_kernels.h"

namespace loom::quant {
namespace {

std::string shape_of(const QuantizedMatrix& w) {
  return "[" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "] " + w.scheme.name();
}

void check_matrix(const QuantizedMatrix& w, ActivationMode mode) {
  w.scheme.validate();
  if (w.rows <= 0 || w.cols <= 0)
    throw std::invalid_argument("quantized linear: weight must have positive rows and cols, got " + shape_of(w));
  const auto expect = [&](const char* field, std::size_t got, std::int64_t want) {
    if (static_cast<std::int64_t>(got) != want)
      throw std::invalid_argument("quantized linear: weight " + shape_of(w) + " has " + std::to_string(got) + " " +
                                  field + ", expected " + std::to_string(want));
  };
  expect("code bytes", w.codes.size(), w.rows * w.row_bytes());
  expect("scales", w.scales.size(), w.rows * w.groups());
  expect("zeros", w.zeros.size(), w.rows * w.groups());
  if (mode != ActivationMode::Int8) return;
  const std::string what = "quantized linear: int8 activations (W8A8) need 8-bit, symmetric, per-channel weights; ";
  if (w.scheme.bits != 8) throw std::invalid_argument(what + "got bits " + std::to_string(w.scheme.bits));
  if (!w.scheme.symmetric) throw std::invalid_argument(what + "got asymmetric weights (" + w.scheme.name() + ")");
  if (w.scheme.group_size != 0)
    throw std::invalid_argument(what + "got group_size " + std::to_string(w.scheme.group_size));
  for (std::size_t i = 0; i < w.zeros.size(); ++i)
    if (w.zeros[i] != 128)
      throw std::invalid_argument(what + "row " + std::to_string(i) + " has zero point " + std::to_string(w.zeros[i]) +
                                  ", expected 128");
}

void prepare_weight_only(const QuantizedMatrix& w, QuantizedLinearData& d) {
  d.bits = w.scheme.bits;
  d.group_width = w.scheme.group_size == 0 ? w.cols : w.scheme.group_size;
  d.groups = w.groups();
  d.scales = w.scales;
  d.zeros = w.zeros;
  if (d.bits == 8) {
    d.packed_row_bytes = w.cols;
    d.codes = w.codes;
    return;
  }
  const std::int64_t blocks = (w.cols + 31) / 32;
  d.packed_row_bytes = blocks * 16;
  d.codes.assign(static_cast<std::size_t>(w.rows * d.packed_row_bytes), 0);
  for (std::int64_t r = 0; r < w.rows; ++r) {
    std::uint8_t* row = d.codes.data() + r * d.packed_row_bytes;
    for (std::int64_t c = 0; c < w.cols; ++c) {
      const std::int64_t block = c / 32, lane = c % 32;
      const int shift = lane < 16 ? 0 : 4;
      row[block * 16 + lane % 16] |= static_cast<std::uint8_t>(w.code(r, c) << shift);
    }
  }
}

void prepare_int8(const QuantizedMatrix& w, QuantizedLinearData& d) {
  constexpr std::int64_t P = QuantizedLinearData::kPanelRows;
  d.k4 = (w.cols + 3) / 4;
  d.panels = (w.rows + P - 1) / P;
  d.packed.assign(static_cast<std::size_t>(d.panels * d.k4 * P * 4), 0);
  d.compensation.assign(static_cast<std::size_t>(d.panels * P), 0);
  d.row_scales.assign(static_cast<std::size_t>(d.panels * P), 0.0f);
  for (std::int64_t n = 0; n < w.rows; ++n) {
    std::int8_t* panel = d.packed.data() + (n / P) * d.k4 * P * 4;
    std::int32_t sum = 0;
    for (std::int64_t k = 0; k < w.cols; ++k) {
      const int value = w.code(n, k) - 128;
      panel[((k / 4) * P + n % P) * 4 + k % 4] = static_cast<std::int8_t>(value);
      sum += value;
    }
    d.compensation[static_cast<std::size_t>(n)] = 128 * sum;
    d.row_scales[static_cast<std::size_t>(n)] = w.scales[static_cast<std::size_t>(n)];
  }
}

// round_half_even(x / scale) clamped to ±127, as the W8A8 reference quantizes activations.
int quantize_activation(float x, float scale) {
  return static_cast<int>(std::clamp(std::nearbyint(x / scale), -127.0f, 127.0f));
}

}  // namespace

std::vector<Isa> compiled_isas() {
  std::vector<Isa> isas = {Isa::Plain};
#if defined(__AVX2__)
  isas.push_back(Isa::Avx2);
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  isas.push_back(Isa::Avx512);
#endif
  return isas;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Plain: return "plain";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

QuantizedLinear::QuantizedLinear(std::unique_ptr<QuantizedLinearData> data) : data_(std::move(data)) {}
QuantizedLinear::~QuantizedLinear() = default;

std::shared_ptr<const QuantizedLinear> QuantizedLinear::prepare(const QuantizedMatrix& w, ActivationMode mode) {
  check_matrix(w, mode);
  auto d = std::make_unique<QuantizedLinearData>();
  d->mode = mode;
  d->rows = w.rows;
  d->cols = w.cols;
  if (mode == ActivationMode::Int8)
    prepare_int8(w, *d);
  else
    prepare_weight_only(w, *d);
  return std::shared_ptr<const QuantizedLinear>(new QuantizedLinear(std::move(d)));
}

std::int64_t QuantizedLinear::in_features() const { return data_->cols; }
std::int64_t QuantizedLinear::out_features() const { return data_->rows; }
ActivationMode QuantizedLinear::mode() const { return data_->mode; }

std::int64_t QuantizedLinear::bytes() const {
  const QuantizedLinearData& d = *data_;
  return static_cast<std::int64_t>(d.codes.size() + d.scales.size() * sizeof(float) +
                                   d.zeros.size() + d.packed.size() +
                                   d.compensation.size() * sizeof(std::int32_t) + d.row_scales.size() * sizeof(float));
}

void QuantizedLinear::forward(const float* x, std::int64_t tokens, const float* bias, float* y) const {
  forward_using(compiled_isas().back(), x, tokens, bias, y);
}

void QuantizedLinear::forward_using(Isa isa, const float* x, std::int64_t tokens, const float* bias,
                                    float* y) const {
  const std::vector<Isa> isas = compiled_isas();
  if (std::find(isas.begin(), isas.end(), isa) == isas.end())
    throw std::invalid_argument(std::string("quantized linear: instruction set ") + isa_name(isa) +
                                " is not compiled into this build");
  if (tokens < 0) throw std::invalid_argument("quantized linear: tokens must be >= 0, got " + std::to_string(tokens));
  if (tokens == 0) return;
  if (x == nullptr || y == nullptr) throw std::invalid_argument("quantized linear: x and y must not be null");
  if (data_->mode == ActivationMode::Int8)
    int8_gemm(*data_, isa, x, tokens, bias, y);
  else if (tokens <= kFusedGemvMaxTokens)
    fused_gemv(*data_, isa, x, tokens, bias, y);
  else
    dequantized_sgemm(*data_, isa, x, tokens, bias, y);
}

void reference_forward(const QuantizedMatrix& w, ActivationMode mode, const float* x, std::int64_t tokens,
                       const float* bias, float* y) {
  check_matrix(w, mode);
  const std::int64_t in = w.cols, out = w.rows;
  if (mode == ActivationMode::Float) {
    std::vector<float> dequant(static_cast<std::size_t>(in * out));
    dequantize(w, dequant.data());
    for (std::int64_t m = 0; m < tokens; ++m)
      for (std::int64_t n = 0; n < out; ++n) {
        double sum = bias ? bias[n] : 0.0;
        for (std::int64_t k = 0; k < in; ++k) sum += static_cast<double>(x[m * in + k]) * dequant[n * in + k];
        y[m * out + n] = static_cast<float>(sum);
      }
    return;
  }
  std::vector<int> q(static_cast<std::size_t>(in));
  for (std::int64_t m = 0; m < tokens; ++m) {
    const float* row = x + m * in;
    float amax = 0.0f;
    for (std::int64_t k = 0; k < in; ++k) amax = std::max(amax, std::fabs(row[k]));
    const float scale = amax == 0.0f ? 1.0f : amax / 127.0f;
    for (std::int64_t k = 0; k < in; ++k) q[k] = quantize_activation(row[k], scale);
    for (std::int64_t n = 0; n < out; ++n) {
      std::int32_t dot = 0;
      for (std::int64_t k = 0; k < in; ++k) dot += q[k] * (w.code(n, k) - 128);
      // One fused multiply-add, as the kernels' epilogue does, so the two agree bit for bit.
      y[m * out + n] = std::fma(scale * w.scales[n], static_cast<float>(dot), bias ? bias[n] : 0.0f);
    }
  }
}

}  // namespace loom::quant
