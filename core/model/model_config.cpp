#include "core/model/model_config.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/model/parameter_layout.h"

namespace loom::model {

const char* family_name(Family family) { return family == Family::GPT2 ? "gpt2" : "llama"; }

Family parse_family(const std::string& text) {
  if (text == "gpt2") return Family::GPT2;
  if (text == "llama") return Family::Llama;
  throw std::invalid_argument("model family '" + text + "' is not known; expected 'gpt2' or 'llama'");
}

const char* head_kind_name(HeadKind kind) { return kind == HeadKind::LM ? "lm" : "scalar"; }

namespace {

void require(bool ok, const char* field, const std::string& expected) {
  if (!ok) throw std::invalid_argument(std::string("model config: ") + field + " " + expected);
}

// "(a) ... (b)" messages built with append: GCC 12 warns falsely (-Wrestrict) on
// "literal" + std::string&& chains.
std::string parenthesised(std::int64_t value) {
  std::string s = "(";
  s += std::to_string(value);
  s += ")";
  return s;
}

}  // namespace

void ModelConfig::validate() const {
  require(vocab_size > 0, "vocab_size", "must be positive, got " + std::to_string(vocab_size));
  require(d_model > 0, "d_model", "must be positive, got " + std::to_string(d_model));
  require(n_layers > 0, "n_layers", "must be positive, got " + std::to_string(n_layers));
  require(n_heads > 0, "n_heads", "must be positive, got " + std::to_string(n_heads));
  require(d_model % n_heads == 0, "d_model",
          parenthesised(d_model) + " must be divisible by n_heads " + parenthesised(n_heads));
  require(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "n_kv_heads",
          parenthesised(n_kv_heads) + " must be positive and divide n_heads " + parenthesised(n_heads));
  require(d_ff > 0, "d_ff", "must be positive, got " + std::to_string(d_ff));
  require(max_seq_len > 0, "max_seq_len", "must be positive, got " + std::to_string(max_seq_len));
  require(norm_eps > 0.0f && std::isfinite(norm_eps), "norm_eps", "must be a positive number");
  require(init_std > 0.0f && std::isfinite(init_std), "init_std", "must be a positive number");
  if (family == Family::GPT2) {
    require(n_kv_heads == n_heads, "n_kv_heads",
            "must equal n_heads for the gpt2 family (grouped-query attention is a llama feature)");
  } else {
    require(head_dim() % 2 == 0, "d_model",
            "/ n_heads (head_dim " + std::to_string(head_dim()) + ") must be even for rotary embeddings");
    require(rope.theta > 0.0f, "rope.theta", "must be positive");
    require(rope.factor >= 1.0f, "rope.factor", "must be >= 1 (1 means no scaling)");
  }
}

std::int64_t ModelConfig::parameter_count(HeadKind head) const {
  std::int64_t total = 0;
  for (const ParameterSpec& spec : parameter_specs(*this, ShardSpec::whole(*this), head)) {
    total += shape_numel(spec.global_shape);
  }
  return total;
}

double ModelConfig::training_flops_per_token(std::int64_t seq_len) const {
  double matmul_params = 0.0;
  for (const ParameterSpec& spec : parameter_specs(*this, ShardSpec::whole(*this), HeadKind::LM)) {
    if (spec.name == "embed.tokens.weight" || spec.name == "embed.positions.weight" ||
        spec.name == "lm_head.weight") {
      continue;
    }
    matmul_params += static_cast<double>(shape_numel(spec.global_shape));
  }
  matmul_params += static_cast<double>(vocab_size) * static_cast<double>(d_model);
  const double attention = 12.0 * static_cast<double>(n_layers) * static_cast<double>(n_heads * head_dim()) *
                           static_cast<double>(seq_len);
  return 6.0 * matmul_params + attention;
}

ModelConfig ModelConfig::gpt2_124m() {
  return from_family(Family::GPT2, 50257, 768, 12, 12, 12, 3072, 1024);
}

ModelConfig ModelConfig::from_family(Family family, std::int64_t vocab_size, std::int64_t d_model,
                                     std::int64_t n_layers, std::int64_t n_heads, std::int64_t n_kv_heads,
                                     std::int64_t d_ff, std::int64_t max_seq_len) {
  ModelConfig c;
  c.family = family;
  c.vocab_size = vocab_size;
  c.d_model = d_model;
  c.n_layers = n_layers;
  c.n_heads = n_heads;
  c.n_kv_heads = n_kv_heads;
  c.d_ff = d_ff;
  c.max_seq_len = max_seq_len;
  if (family == Family::GPT2) {
    c.norm_eps = 1e-5f;
    c.tie_embeddings = true;
    c.bias = true;
  } else {
    c.norm_eps = 1e-5f;
    c.tie_embeddings = false;
    c.bias = false;
  }
  return c;
}

ShardSpec ShardSpec::resolved(const ModelConfig& config) const {
  ShardSpec s = *this;
  if (s.layer_end < 0) s.layer_end = config.n_layers;
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("shard spec (layers [" + std::to_string(s.layer_begin) + ", " +
                                std::to_string(s.layer_end) + "), tp " + std::to_string(s.tp_rank) + "/" +
                                std::to_string(s.tp_size) + "): " + what);
  };
  if (s.layer_begin < 0 || s.layer_begin >= s.layer_end || s.layer_end > config.n_layers) {
    fail("layer range must be a non-empty part of [0, " + std::to_string(config.n_layers) + ")");
  }
  if (s.tp_size < 1 || s.tp_rank < 0 || s.tp_rank >= s.tp_size) fail("tp_rank must lie in [0, tp_size)");
  const std::int64_t tp = s.tp_size;
  if (config.n_heads % tp != 0) fail("n_heads (" + std::to_string(config.n_heads) + ") not divisible by tp_size");
  if (config.n_kv_heads % tp != 0 && tp % config.n_kv_heads != 0) {
    fail("n_kv_heads (" + std::to_string(config.n_kv_heads) + ") must divide by tp_size or divide it (fewer kv "
         "heads than tp ranks are replicated)");
  }
  if (config.d_ff % tp != 0) fail("d_ff (" + std::to_string(config.d_ff) + ") not divisible by tp_size");
  if (config.vocab_size % tp != 0) {
    fail("vocab_size (" + std::to_string(config.vocab_size) + ") not divisible by tp_size; pad the vocabulary");
  }
  return s;
}

}  // namespace loom::model
