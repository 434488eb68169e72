// Tokenizer::State: what a loaded or trained tokenizer consists of, shared by the loaders,
// the encoder, the writer and the trainer. Tokens are stored as raw bytes (GPT-2's
// byte→unicode display form exists only in files); special tokens are stored as their text.
//
// Ownership and thread safety: built by one thread, then frozen behind a
// shared_ptr<const State>. The only mutable part is the per-word cache, which is sharded
// and guarded by one mutex per shard so that const encode() may run on many threads.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/tokenizer/bpe_merge.h"
#include "io/tokenizer/tokenizer.h"

namespace loom::io {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

template <class Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

// Maps a pre-token (raw bytes) to its token ids. Bounded: a shard that fills up is cleared,
// which keeps memory flat on endless streams of distinct words.
class WordCache {
 public:
  // Appends the cached ids of `word` to `out`; false when absent.
  bool append_cached(std::string_view word, std::size_t hash, std::vector<std::int32_t>& out) const;
  void insert(std::string_view word, std::size_t hash, const std::vector<std::int32_t>& ids);

 private:
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kMaxWordsPerShard = 1 << 15;
  struct Shard {
    mutable std::mutex mutex;
    StringMap<std::vector<std::int32_t>> words;
  };
  std::array<Shard, kShards> shards_;
};

enum class TokenKind : std::uint8_t { kAbsent, kOrdinary, kSpecial };

struct Tokenizer::State {
  // Where the vocabulary came from, for error messages ("<trained>" for BpeTrainer output).
  std::string source;

  std::vector<std::string> token_bytes;      // id → raw bytes, or the text of a special token
  std::vector<TokenKind> token_kind;         // id → kind; kAbsent marks an id no token uses
  StringMap<std::int32_t> ordinary_ids;      // raw bytes → id, special tokens excluded
  StringMap<std::int32_t> special_ids;       // special text → id
  std::array<std::int32_t, 256> byte_ids{};  // byte → id of its one-byte token, -1 if none
  MergeTable merges;

  // Hugging Face ByteLevel options: a space is put before text that does not start with
  // one; a pre-token that is itself in the vocabulary skips the merges (Llama 3 style).
  bool add_prefix_space = false;
  bool ignore_merges = false;

  mutable WordCache cache;

  // Registers token `id`. Throws std::runtime_error (naming `source`) when the id is
  // negative or already taken, or an ordinary token's bytes repeat.
  void add_token(std::int32_t id, std::string bytes, TokenKind kind);
  // Fills byte_ids; call once all tokens are added and before encoding.
  void finish();
};

// Wraps a finished state; used by the loaders and the trainer.
Tokenizer make_tokenizer(std::shared_ptr<const Tokenizer::State> state);

// Loaders (tokenizer_load.cpp).
std::shared_ptr<Tokenizer::State> load_gpt2_files(const std::filesystem::path& encoder_json,
                                                  const std::filesystem::path& vocab_bpe);
std::shared_ptr<Tokenizer::State> load_hf_tokenizer_json(const std::filesystem::path& file);

}  // namespace loom::io
