// The GEMMs of one training step of a transformer, as the CPU backend issues them. Used by
// bench-gemm (to compare GEMM libraries on the shapes that matter) and by
// measure_sgemm_gflops (to report the machine's SGEMM rate on those same shapes).
//
// Every linear layer y = x·Wᵀ with x [rows, in] and W [out, in] costs three GEMMs per step:
//   forward   y  = x·Wᵀ     m=rows n=out k=in   (A as stored, B transposed)
//   backward  dx = dy·W     m=rows n=in  k=out  (neither transposed)
//   backward  dW += dyᵀ·x   m=out  n=in  k=rows (A transposed; accumulates, beta = 1)
// Plain values; no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::cpu {

struct GemmShape {
  std::string name;  // e.g. "qkv.forward"
  bool trans_a = false;
  bool trans_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  float beta = 0.0f;
  int count = 1;  // how many times one training step runs it (once per layer, or once)
  double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k); }
};

struct TransformerGemmDims {
  std::string name;
  std::int64_t rows = 0;    // tokens per step: batch × sequence length
  std::int64_t hidden = 0;  // C
  std::int64_t ffn = 0;     // MLP inner width (4C for GPT-2, F for Llama's SwiGLU)
  std::int64_t vocab = 0;
  int layers = 0;
  bool gated_mlp = false;   // Llama: gate and up projections (two [F, C]) instead of one fc
};

// GPT-2 124M at B=4, T=64: rows 256, C 768, 4C 3072, vocab 50257, 12 layers.
TransformerGemmDims gpt2_124m_gemm_dims();
// A tiny Llama at 8 sequences of 128 tokens: rows 1024, C 256, F 688, vocab 4096, 4 layers.
TransformerGemmDims tiny_llama_gemm_dims();

// Forward, input-gradient and weight-gradient GEMMs of every linear layer (qkv, attn-proj,
// MLP projections, lm-head), each listed once with its per-step count.
std::vector<GemmShape> training_step_gemms(const TransformerGemmDims& dims);

}  // namespace loom::cpu
