#include "core/kernels/gemm/gemm_shapes.h"

namespace loom::cpu {

TransformerGemmDims gpt2_124m_gemm_dims() {
  return {.name = "gpt2-124m", .rows = 4 * 64, .hidden = 768, .ffn = 4 * 768, .vocab = 50257,
          .layers = 12, .gated_mlp = false};
}

TransformerGemmDims tiny_llama_gemm_dims() {
  return {.name = "tiny-llama", .rows = 8 * 128, .hidden = 256, .ffn = 688, .vocab = 4096,
          .layers = 4, .gated_mlp = true};
}

namespace {

void add_linear(std::vector<GemmShape>& out, const std::string& name, std::int64_t rows,
                std::int64_t in, std::int64_t features_out, int count) {
  out.push_back({name + ".forward", false, true, rows, features_out, in, 0.0f, count});
  out.push_back({name + ".backward_input", false, false, rows, in, features_out, 0.0f, count});
  out.push_back({name + ".backward_weight", true, false, features_out, in, rows, 1.0f, count});
}

}  // namespace

std::vector<GemmShape> training_step_gemms(const TransformerGemmDims& dims) {
  std::vector<GemmShape> gemms;
  const std::int64_t c = dims.hidden;
  add_linear(gemms, "qkv", dims.rows, c, 3 * c, dims.layers);
  add_linear(gemms, "attn_proj", dims.rows, c, c, dims.layers);
  if (dims.gated_mlp) {
    add_linear(gemms, "gate_up", dims.rows, c, dims.ffn, 2 * dims.layers);
  } else {
    add_linear(gemms, "fc", dims.rows, c, dims.ffn, dims.layers);
  }
  add_linear(gemms, dims.gated_mlp ? "down" : "fc_proj", dims.rows, dims.ffn, c, dims.layers);
  add_linear(gemms, "lm_head", dims.rows, c, dims.vocab, 1);
  return gemms;
}

}  // namespace loom::cpu
