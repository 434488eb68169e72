#include "compress/export/gguf.h"

#include <cmath>
#include <stdexcept>

#include "compress/export/gguf_file.h"

namespace loom::compress {
namespace gguf {

std::int64_t llama_rope_source_row(std::int64_t row, std::int64_t head_dim, std::int64_t rotary_dim) {
  const std::int64_t head = row / head_dim, i = row % head_dim;
  if (i >= rotary_dim) return row;
  const std::int64_t pair = i / 2, side = i % 2;
  return head * head_dim + side * (rotary_dim / 2) + pair;
}

std::string gpt2_unicode_text(std::string_view bytes) {
  // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
  // bytes take code points 256, 257, ... in byte order.
  static const std::vector<std::uint32_t> code_points = [] {
    std::vector<std::uint32_t> table(256);
    std::uint32_t next = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      table[b] = printable ? b : next++;
    }
    return table;
  }();
  std::string out;
  for (const char ch : bytes) {
    const std::uint32_t cp = code_points[static_cast<std::uint8_t>(ch)];
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else {  // every code point here is below 0x800: two UTF-8 bytes
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

}  // namespace gguf

namespace {

namespace fs = std::filesystem;
using gguf::GgufFile;
using model::Family;
using model::ModelConfig;

// llama_ftype values (llama.h) for general.file_type.
std::uint32_t file_type_of(GgufType type) {
  switch (type) {
    case GgufType::F32: return 0;   // LLAMA_FTYPE_ALL_F32
    case GgufType::Q4_0: return 2;  // LLAMA_FTYPE_MOSTLY_Q4_0
    case GgufType::Q8_0: return 7;  // LLAMA_FTYPE_MOSTLY_Q8_0
  }
  return 0;
}

// llama_token_type values (llama.h / gguf-py TokenType).
constexpr std::int32_t kTokenNormal = 1, kTokenControl = 3, kTokenUnused = 5;

std::int64_t rotary_dim_of(const ModelConfig& c) { return c.rope.rotary_dim > 0 ? c.rope.rotary_dim : c.head_dim(); }

std::uint32_t u32(std::int64_t value, const char* what) {
  if (value < 0 || value > 0xFFFFFFFFll) throw std::invalid_argument(std::string("GGUF: ") + what + " does not fit u32");
  return static_cast<std::uint32_t>(value);
}

void add_hyperparameters(GgufFile& out, const ModelConfig& c) {
  const std::string arch = c.family == Family::Llama ? "llama" : "gpt2";
  out.add_u32(arch + ".context_length", u32(c.max_seq_len, "max_seq_len"));
  out.add_u32(arch + ".embedding_length", u32(c.d_model, "d_model"));
  out.add_u32(arch + ".block_count", u32(c.n_layers, "n_layers"));
  out.add_u32(arch + ".feed_forward_length", u32(c.d_ff, "d_ff"));
  out.add_u32(arch + ".attention.head_count", u32(c.n_heads, "n_heads"));
  out.add_u32(arch + ".attention.head_count_kv", u32(c.n_kv_heads, "n_kv_heads"));
  if (c.family == Family::GPT2) {
    out.add_f32("gpt2.attention.layer_norm_epsilon", c.norm_eps);
    return;
  }
  out.add_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  out.add_u32("llama.vocab_size", u32(c.vocab_size, "vocab_size"));
  const std::int64_t rotary = rotary_dim_of(c);
  out.add_u32("llama.rope.dimension_count", u32(rotary, "rotary_dim"));
  float base = c.rope.theta;
  if (c.rope.scaling == RopeConfig::Scaling::NTK) {
    // llama.cpp has no static NTK-aware mode; the same frequencies come from the scaled base.
    const auto d = static_cast<double>(rotary);
    base = static_cast<float>(c.rope.theta * std::pow(static_cast<double>(c.rope.factor), d / (d - 2.0)));
  }
  out.add_f32("llama.rope.freq_base", base);
  if (c.rope.scaling == RopeConfig::Scaling::Linear) {
    out.add_string("llama.rope.scaling.type", "linear");
    out.add_f32("llama.rope.scaling.factor", c.rope.factor);
  }
}

void add_tokenizer(GgufFile& out, const ModelConfig& c, const io::Tokenizer& tokenizer) {
  const std::int64_t own = tokenizer.vocab_size();
  if (own > c.vocab_size) {
    throw std::invalid_argument("GGUF: the tokenizer has " + std::to_string(own) + " tokens but the model's vocab_size is " +
                                std::to_string(c.vocab_size) + " (expected the tokenizer to fit the embedding table)");
  }
  std::vector<std::string> tokens;
  std::vector<std::int32_t> types;
  for (std::int32_t id = 0; id < c.vocab_size; ++id) {
    std::string_view bytes;
    bool used = id < own;
    if (used) {
      try {
        bytes = tokenizer.token_bytes(id);
      } catch (const std::out_of_range&) {
        used = false;
      }
    }
    if (!used) {  // embedding rows past the tokenizer's vocabulary (padding), as the converter names them
      tokens.push_back("[PAD" + std::to_string(id) + "]");
      types.push_back(kTokenUnused);
    } else if (tokenizer.is_special(id)) {
      tokens.emplace_back(bytes);
      types.push_back(kTokenControl);
    } else {
      tokens.push_back(gguf::gpt2_unicode_text(bytes));
      types.push_back(kTokenNormal);
    }
  }
  std::vector<std::string> merges;
  for (const auto& [left, right] : tokenizer.merges()) {
    merges.push_back(gguf::gpt2_unicode_text(left) + " " + gguf::gpt2_unicode_text(right));
  }
  out.add_string("tokenizer.ggml.model", "gpt2");
  out.add_string("tokenizer.ggml.pre", "gpt-2");
  out.add_string_array("tokenizer.ggml.tokens", tokens);
  out.add_i32_array("tokenizer.ggml.token_type", types);
  out.add_string_array("tokenizer.ggml.merges", merges);
  if (const auto eos = tokenizer.special_id(io::kEndOfText)) {
    out.add_u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(*eos));
    out.add_u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(*eos));
  }
  // loom's Tokenizer::encode prepends nothing; llama.cpp must not either.
  out.add_bool("tokenizer.ggml.add_bos_token", false);
}

// One GGUF tensor cut from a loom tensor: rows [row_begin, row_begin + rows) of dimension 0
// (elements, for a vector), optionally rope-permuted within heads.
struct Piece {
  std::string gguf_name;
  std::int64_t row_begin = 0;
  std::int64_t rows = 0;
  bool rope_permuted = false;
};

// "layers.N.<module>.<kind>" → (N, module, kind); module has no "layers.N." prefix.
struct LoomName {
  std::string layer, module, kind;
};

LoomName split_name(const std::string& name) {
  const std::size_t last = name.rfind('.');
  LoomName out{"", name.substr(0, last), name.substr(last + 1)};
  if (name.rfind("layers.", 0) == 0) {
    const std::size_t layer_end = name.find('.', 7);
    out.layer = name.substr(7, layer_end - 7);
    out.module = name.substr(layer_end + 1, last - layer_end - 1);
  }
  return out;
}

std::vector<Piece> pieces_of(const ModelConfig& c, const ExportTensor& t) {
  const bool llama = c.family == Family::Llama;
  const LoomName n = split_name(t.name);
  const std::int64_t rows = t.shape[0];
  if (n.layer.empty()) {
    static const std::vector<std::pair<std::string, std::string>> globals = {
        {"embed.tokens", "token_embd"}, {"embed.positions", "position_embd"},
        {"final_norm", "output_norm"},  {"lm_head", "output"}};
    for (const auto& [loom, gguf_name] : globals) {
      if (n.module == loom) return {Piece{gguf_name + "." + n.kind, 0, rows, false}};
    }
    throw std::logic_error("GGUF: no name for " + t.name);
  }
  const std::string blk = "blk." + n.layer + ".";
  if (n.module == "attn.qkv" && llama) {
    const std::int64_t q = c.n_heads * c.head_dim(), kv = c.n_kv_heads * c.head_dim();
    return {Piece{blk + "attn_q." + n.kind, 0, q, true}, Piece{blk + "attn_k." + n.kind, q, kv, true},
            Piece{blk + "attn_v." + n.kind, q + kv, kv, false}};
  }
  static const std::vector<std::pair<std::string, std::string>> modules = {
      {"attn_norm", "attn_norm"}, {"attn.qkv", "attn_qkv"}, {"attn.out", "attn_output"}, {"mlp_norm", "ffn_norm"},
      {"mlp.gate", "ffn_gate"},   {"mlp.up", "ffn_up"},     {"mlp.down", "ffn_down"}};
  for (const auto& [loom, gguf_name] : modules) {
    if (n.module == loom) return {Piece{blk + gguf_name + "." + n.kind, 0, rows, false}};
  }
  throw std::logic_error("GGUF: no name for " + t.name);
}

// Row r of a piece (GGUF order) into `out`: for a matrix one row of its columns, for a vector
// the piece's elements (one row).
GgufFile::RowSource rows_of(const ExportTensor& t, const Piece& piece, std::int64_t head_dim, std::int64_t rotary) {
  return [&t, piece, head_dim, rotary](std::int64_t r, float* out) {
    auto source = [&](std::int64_t i) {
      return piece.row_begin + (piece.rope_permuted ? gguf::llama_rope_source_row(i, head_dim, rotary) : i);
    };
    if (t.shape.size() == 1) {
      for (std::int64_t i = 0; i < piece.rows; ++i) out[i] = t.values[static_cast<std::size_t>(source(i))];
      return;
    }
    const std::int64_t cols = t.shape[1], src = source(r);
    if (t.quantized) {
      for (std::int64_t col = 0; col < cols; ++col) out[col] = t.quantized->dequantized(src, col);
    } else {
      const float* row = t.values.data() + src * cols;
      std::copy(row, row + cols, out);
    }
  };
}

bool follows_type(const std::string& loom_name) {
  return is_block_linear_weight(loom_name) || loom_name == "lm_head.weight";
}

}  // namespace

GgufReport write_gguf(const fs::path& file, const ExportModel& model, const io::Tokenizer& tokenizer, GgufType type) {
  model.validate();
  const ModelConfig& c = model.config;
  const bool llama = c.family == Family::Llama;
  const std::string arch = llama ? "llama" : "gpt2";
  if (!llama && !c.bias) {
    throw std::invalid_argument("GGUF gpt2: llama.cpp's gpt2 graph needs the linear biases, but the model has bias = false");
  }
  GgufFile out;
  out.add_string("general.architecture", arch);
  out.add_string("general.name", model.name.empty() ? "loom-" + arch : model.name);
  out.add_u32("general.file_type", file_type_of(type));
  if (type != GgufType::F32) out.add_u32("general.quantization_version", 2);  // GGML_QNT_VERSION
  out.add_u32("general.alignment", gguf::kAlignment);
  add_hyperparameters(out, c);
  add_tokenizer(out, c, tokenizer);
  if (!model.quantization.is_null()) out.add_string("loom.quantization", model.quantization.dump());

  GgufReport report;
  const std::int64_t head_dim = c.head_dim(), rotary = rotary_dim_of(c);
  auto add = [&](const ExportTensor& t, const Piece& piece, bool quantizable) {
    std::vector<std::int64_t> shape = t.shape;
    shape[0] = piece.rows;
    GgufType stored = GgufType::F32;
    if (quantizable && type != GgufType::F32) {
      if (shape.back() % gguf::kBlockValues == 0) {
        stored = type;
      } else {
        report.kept_f32.push_back(piece.gguf_name);
      }
    }
    out.add_tensor(piece.gguf_name, shape, stored, rows_of(t, piece, head_dim, rotary));
  };
  for (const ExportTensor& t : model.tensors) {
    for (const Piece& piece : pieces_of(c, t)) add(t, piece, follows_type(t.name));
  }
  if (!llama && c.tie_embeddings) {
    const ExportTensor& embedding = model.tensor("embed.tokens.weight");
    add(embedding, Piece{"output.weight", 0, embedding.shape[0], false}, true);
  }
  report.bytes = out.write(file);
  return report;
}

}  // namespace loom::compress
