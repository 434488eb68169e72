// Byte-level BPE tokenizer (GPT-2 style): loads GPT-2's encoder.json + vocab.bpe or a
// Hugging Face tokenizer.json of the byte-level BPE kind, encodes/decodes text, and knows
// the special tokens used for document boundaries and chat templates.
//
// Ownership: a Tokenizer is an immutable value after loading; encode/decode are const and
// safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::io {

// The special tokens loom's chat template and document packing use.
inline constexpr std::string_view kEndOfText = "<|endoftext|>";
inline constexpr std::string_view kImStart = "<|im_start|>";
inline constexpr std::string_view kImEnd = "<|im_end|>";

class Tokenizer {
 public:
  // `path` is a tokenizer.json file, or a directory holding either tokenizer.json or
  // encoder.json + vocab.bpe. Throws std::runtime_error naming the file and what was wrong.
  static Tokenizer load(const std::filesystem::path& path);

  // Plain text → ids. Special-token strings inside `text` are NOT interpreted (they are
  // encoded as ordinary bytes); use special_id() to place special tokens.
  std::vector<std::int32_t> encode(std::string_view text) const;
  // ids → text; special tokens are rendered as their strings. Bytes come back exactly, so
  // ids that split a multi-byte character give partial UTF-8, never U+FFFD.
  std::string decode(std::span<const std::int32_t> ids) const;

  std::int32_t vocab_size() const;
  // Id of a special token such as kEndOfText; nullopt when this vocabulary lacks it.
  std::optional<std::int32_t> special_id(std::string_view token) const;
  // Id of kEndOfText; throws when the vocabulary has none.
  std::int32_t eos_id() const;

  // Writes a Hugging Face tokenizer.json (byte-level BPE) that load() reads back.
  void save(const std::filesystem::path& file) const;

  // Raw bytes of token `id` (a special token's text); throws std::out_of_range for an id
  // outside the vocabulary or one no token uses.
  std::string_view token_bytes(std::int32_t id) const;
  bool is_special(std::int32_t id) const;
  // The merges in rank order, as raw-byte pairs (GPT-2's first is {" ", "t"}).
  std::vector<std::pair<std::string, std::string>> merges() const;

  // Implementation state (vocab, merges, byte maps); defined in tokenizer_state.h.
  struct State;

 private:
  // Throws when this Tokenizer was default-constructed rather than loaded or trained.
  const State& state() const;

  std::shared_ptr<const State> state_;
  friend class BpeTrainer;
  friend Tokenizer make_tokenizer(std::shared_ptr<const State> state);
};

// Trains a byte-level BPE vocabulary (GPT-2 pre-tokenisation, 256 byte tokens, merges
// until vocab_size, then the special tokens appended) on a corpus.
class BpeTrainer {
 public:
  struct Options {
    std::int32_t vocab_size = 4096;
    std::vector<std::string> special_tokens = {std::string(kEndOfText), std::string(kImStart),
                                               std::string(kImEnd)};
    std::int32_t min_pair_frequency = 2;
  };
  static Tokenizer train(std::span<const std::string> documents, const Options& options);
};

}  // namespace loom::io
