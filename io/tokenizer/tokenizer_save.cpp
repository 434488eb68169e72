// Tokenizer::save: writes the Hugging Face tokenizer.json layout of a byte-level BPE
// (GPT-2's), which both load() and the `tokenizers` library read.
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "io/tokenizer/byte_level.h"
#include "io/tokenizer/tokenizer_state.h"

namespace loom::io {

void Tokenizer::save(const std::filesystem::path& file) const {
  // nlohmann::json sorts keys; its insertion-ordered twin is quadratic for a 50k vocabulary.
  using json = nlohmann::json;
  const State& s = state();

  json added_tokens = json::array();
  json vocab = json::object();
  for (std::size_t id = 0; id < s.token_kind.size(); ++id) {
    if (s.token_kind[id] == TokenKind::kOrdinary) {
      vocab[byte_level::encode(s.token_bytes[id])] = id;
    }
  }
  for (std::size_t id = 0; id < s.token_kind.size(); ++id) {
    if (s.token_kind[id] != TokenKind::kSpecial) continue;
    const std::string& content = s.token_bytes[id];
    added_tokens.push_back({{"id", id},
                            {"content", content},
                            {"single_word", false},
                            {"lstrip", false},
                            {"rstrip", false},
                            {"normalized", false},
                            {"special", true}});
    // Hugging Face also lists special tokens in the model vocabulary (GPT-2's file has
    // "<|endoftext|>": 50256), unless the text would clash with an ordinary token.
    if (!vocab.contains(content)) vocab[content] = id;
  }
  json merges = json::array();
  for (const MergeTable::Entry& e : s.merges.entries()) {
    merges.push_back(byte_level::encode(s.token_bytes[e.left]) + " " +
                     byte_level::encode(s.token_bytes[e.right]));
  }
  const json byte_level_step = {{"type", "ByteLevel"},
                                {"add_prefix_space", s.add_prefix_space},
                                {"trim_offsets", true},
                                {"use_regex", true}};
  json root = {{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", std::move(added_tokens)},
               {"normalizer", nullptr},
               {"pre_tokenizer", byte_level_step},
               {"post_processor", byte_level_step},
               {"decoder", byte_level_step},
               {"model",
                {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", nullptr},
                 {"continuing_subword_prefix", ""},
                 {"end_of_word_suffix", ""},
                 {"fuse_unk", false},
                 {"byte_fallback", false},
                 {"ignore_merges", s.ignore_merges},
                 {"vocab", std::move(vocab)},
                 {"merges", std::move(merges)}}}};

  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write tokenizer file " + file.string());
  // Special-token text is arbitrary bytes; replace invalid UTF-8 rather than fail halfway.
  out << root.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
  if (!out.flush()) throw std::runtime_error("error writing tokenizer file " + file.string());
}

}  // namespace loom::io
