// write_gguf: an ExportModel as a llama.cpp-compatible GGUF v3 file (architecture "llama" or
// "gpt2"), what `loom-quantize export --format gguf` and `loom-ckpt export --format gguf` write.
//
// Tensor types. Block linears (qkv, attention out, MLP gate/up/down) and the LM head are
// stored as `type`: their f32 values — a quantized matrix's dequantized values, scale·(code −
// zero) — requantized by llama.cpp's reference quantizers (gguf_blocks.h) in blocks of 32
// along the input dimension. A loom group of 128 or a per-channel scale does not map onto
// GGML's 32-value blocks, so the GGUF carries a second rounding on top of loom's; its bound is
// the one gguf_blocks.h states. A linear whose input width is not a multiple of 32 stays F32
// and is named in GgufReport::kept_f32. Embeddings, norms and biases are F32.
//
// Names and layout follow llama.cpp's convert_hf_to_gguf.py:
//   loom                        llama                              gpt2
//   embed.tokens.weight         token_embd.weight                  token_embd.weight
//   embed.positions.weight      —                                  position_embd.weight
//   layers.N.attn_norm.*        blk.N.attn_norm.*                  blk.N.attn_norm.*
//   layers.N.attn.qkv.*         blk.N.attn_q / attn_k / attn_v.*   blk.N.attn_qkv.*
//   layers.N.attn.out.*         blk.N.attn_output.*                blk.N.attn_output.*
//   layers.N.mlp_norm.*         blk.N.ffn_norm.*                   blk.N.ffn_norm.*
//   layers.N.mlp.gate/up/down.* blk.N.ffn_gate / ffn_up / ffn_down.*
//   final_norm.*                output_norm.*                      output_norm.*
//   lm_head.weight              output.weight                      output.weight
// A tied gpt2 head is written as output.weight, a copy of token_embd (as the converter does);
// a tied llama head is left out (llama.cpp then reads token_embd). For llama, q and k rows are
// permuted within each head the way the converter's LlamaModel.permute undoes Hugging Face's
// rotate-half layout, since llama.cpp's "llama" RoPE rotates adjacent pairs: GGUF row 2i + j
// of a head is loom row j·R/2 + i (R = rotary channels, rows past R unchanged).
// Shapes are written as GGML ne, innermost first: an [out, in] weight has ne = {in, out}.
//
// Metadata: general.{architecture, name, file_type, quantization_version, alignment = 32},
// <arch>.{context_length, embedding_length, block_count, feed_forward_length,
// attention.head_count, attention.head_count_kv, attention.layer_norm(_rms)_epsilon}, for
// llama rope.{dimension_count, freq_base} (NTK scaling exported as its equivalent base, linear
// scaling as rope.scaling.type/factor) and vocab_size; tokenizer.ggml.{model = "gpt2",
// pre = "gpt-2", tokens (GPT-2 byte-to-unicode text, as tokenizer.json stores them),
// token_type, merges, bos/eos_token_id (<|endoftext|>), add_bos_token = false}; and
// loom.quantization, the ExportModel's quantization JSON.
//
// Thread safety: reads the model and tokenizer only; one call per output file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "compress/export/export_model.h"
#include "compress/export/gguf_blocks.h"
#include "io/tokenizer/tokenizer.h"

namespace loom::compress {

struct GgufReport {
  std::vector<std::string> kept_f32;  // GGUF names of linears left F32 (input width not a multiple of 32)
  std::int64_t bytes = 0;             // size of the file written
};

// Validates the model (ExportModel::validate), then writes `file` atomically. Throws
// std::invalid_argument when the model cannot be expressed (a tokenizer larger than the
// model's vocabulary, GPT-2 without biases) and std::runtime_error naming the file when
// writing fails.
GgufReport write_gguf(const std::filesystem::path& file, const ExportModel& model, const io::Tokenizer& tokenizer,
                      GgufType type);

namespace gguf {

// The loom row a GGUF q/k row takes within one section (see above): row r of heads of
// head_dim rows whose first rotary_dim rows rotate.
std::int64_t llama_rope_source_row(std::int64_t row, std::int64_t head_dim, std::int64_t rotary_dim);

// A token's raw bytes in GPT-2's byte-to-unicode alphabet, as UTF-8 ("Ġthe" for " the").
std::string gpt2_unicode_text(std::string_view bytes);

}  // namespace gguf
}  // namespace loom::compress
