// Encoding, decoding and lookups over a frozen Tokenizer::State, plus the pieces of the
// state itself (token registry, word cache).
#include "io/tokenizer/tokenizer.h"

#include <stdexcept>

#include "io/tokenizer/byte_level.h"
#include "io/tokenizer/pretokenize.h"
#include "io/tokenizer/tokenizer_state.h"

namespace loom::io {

bool WordCache::append_cached(std::string_view word, std::size_t hash,
                              std::vector<std::int32_t>& out) const {
  const Shard& shard = shards_[hash % kShards];
  std::lock_guard lock(shard.mutex);
  const auto it = shard.words.find(word);
  if (it == shard.words.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void WordCache::insert(std::string_view word, std::size_t hash,
                       const std::vector<std::int32_t>& ids) {
  Shard& shard = shards_[hash % kShards];
  std::lock_guard lock(shard.mutex);
  if (shard.words.size() >= kMaxWordsPerShard) shard.words.clear();
  shard.words.emplace(std::string(word), ids);
}

void Tokenizer::State::add_token(std::int32_t id, std::string bytes, TokenKind kind) {
  if (id < 0) {
    throw std::runtime_error(source + ": token id " + std::to_string(id) + " is negative");
  }
  const auto index = static_cast<std::size_t>(id);
  if (index >= token_kind.size()) {
    token_kind.resize(index + 1, TokenKind::kAbsent);
    token_bytes.resize(index + 1);
  }
  if (token_kind[index] != TokenKind::kAbsent) {
    throw std::runtime_error(source + ": token id " + std::to_string(id) +
                             " is used by two tokens ('" + token_bytes[index] + "' and '" + bytes +
                             "')");
  }
  if (kind == TokenKind::kOrdinary) {
    if (!ordinary_ids.emplace(bytes, id).second) {
      throw std::runtime_error(source + ": token '" + byte_level::encode(bytes) +
                               "' appears twice (ids " + std::to_string(ordinary_ids[bytes]) +
                               " and " + std::to_string(id) + ")");
    }
  } else {
    special_ids.emplace(bytes, id);
  }
  token_kind[index] = kind;
  token_bytes[index] = std::move(bytes);
}

void Tokenizer::State::finish() {
  for (int b = 0; b < 256; ++b) {
    const char byte = static_cast<char>(b);
    const auto it = ordinary_ids.find(std::string_view(&byte, 1));
    byte_ids[b] = it == ordinary_ids.end() ? -1 : it->second;
  }
}

Tokenizer make_tokenizer(std::shared_ptr<const Tokenizer::State> state) {
  Tokenizer tokenizer;
  tokenizer.state_ = std::move(state);
  return tokenizer;
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "tokenizer.json")) {
      return make_tokenizer(load_hf_tokenizer_json(path / "tokenizer.json"));
    }
    if (fs::exists(path / "encoder.json") && fs::exists(path / "vocab.bpe")) {
      return make_tokenizer(load_gpt2_files(path / "encoder.json", path / "vocab.bpe"));
    }
    throw std::runtime_error("tokenizer directory " + path.string() +
                             " holds neither tokenizer.json nor encoder.json + vocab.bpe");
  }
  if (!fs::exists(path, ec)) {
    throw std::runtime_error("tokenizer file " + path.string() + " does not exist");
  }
  const std::string name = path.filename().string();
  if (name == "encoder.json" || name == "vocab.bpe") {
    const fs::path dir = path.parent_path();
    return make_tokenizer(load_gpt2_files(dir / "encoder.json", dir / "vocab.bpe"));
  }
  return make_tokenizer(load_hf_tokenizer_json(path));
}

const Tokenizer::State& Tokenizer::state() const {
  if (!state_) {
    throw std::logic_error("Tokenizer used before Tokenizer::load() or BpeTrainer::train()");
  }
  return *state_;
}

namespace {

[[noreturn]] void throw_missing_byte(const Tokenizer::State& s, unsigned char byte) {
  static const char* hex = "0123456789abcdef";
  throw std::runtime_error("tokenizer " + s.source + ": byte 0x" + hex[byte >> 4] + hex[byte & 15] +
                           " has no one-byte token, so it cannot be encoded");
}

void encode_word(const Tokenizer::State& s, std::string_view word, std::vector<std::int32_t>& out) {
  if (word.size() == 1) {
    const std::int32_t id = s.byte_ids[static_cast<unsigned char>(word[0])];
    if (id < 0) throw_missing_byte(s, static_cast<unsigned char>(word[0]));
    out.push_back(id);
    return;
  }
  const std::size_t hash = StringHash{}(word);
  if (s.cache.append_cached(word, hash, out)) return;
  std::vector<std::int32_t> symbols;
  const auto whole = s.ignore_merges ? s.ordinary_ids.find(word) : s.ordinary_ids.end();
  if (whole != s.ordinary_ids.end()) {
    symbols.push_back(whole->second);
  } else {
    symbols.reserve(word.size());
    for (const char c : word) {
      const std::int32_t id = s.byte_ids[static_cast<unsigned char>(c)];
      if (id < 0) throw_missing_byte(s, static_cast<unsigned char>(c));
      symbols.push_back(id);
    }
    apply_merges(s.merges, symbols);
  }
  s.cache.insert(word, hash, symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

}  // namespace

std::vector<std::int32_t> Tokenizer::encode(std::string_view text) const {
  const State& s = state();
  std::vector<std::int32_t> ids;
  if (text.empty()) return ids;
  ids.reserve(text.size() / 3 + 4);
  std::string prefixed;
  if (s.add_prefix_space && text.front() != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(text);
    text = prefixed;
  }
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t end = next_pretoken_end(text, pos);
    encode_word(s, text.substr(pos, end - pos), ids);
    pos = end;
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  std::string text;
  text.reserve(ids.size() * 4);
  for (const std::int32_t id : ids) text.append(token_bytes(id));
  return text;
}

std::string_view Tokenizer::token_bytes(std::int32_t id) const {
  const State& s = state();
  if (id < 0 || static_cast<std::size_t>(id) >= s.token_kind.size() ||
      s.token_kind[id] == TokenKind::kAbsent) {
    throw std::out_of_range("tokenizer " + s.source + ": token id " + std::to_string(id) +
                            " is not in the vocabulary (size " +
                            std::to_string(s.token_kind.size()) + ")");
  }
  return s.token_bytes[id];
}

bool Tokenizer::is_special(std::int32_t id) const {
  const State& s = state();
  return id >= 0 && static_cast<std::size_t>(id) < s.token_kind.size() &&
         s.token_kind[id] == TokenKind::kSpecial;
}

std::int32_t Tokenizer::vocab_size() const {
  return static_cast<std::int32_t>(state().token_kind.size());
}

std::optional<std::int32_t> Tokenizer::special_id(std::string_view token) const {
  const State& s = state();
  const auto it = s.special_ids.find(token);
  if (it == s.special_ids.end()) return std::nullopt;
  return it->second;
}

std::int32_t Tokenizer::eos_id() const {
  if (const auto id = special_id(kEndOfText)) return *id;
  throw std::runtime_error("tokenizer " + state().source + " has no " + std::string(kEndOfText) +
                           " token");
}

std::vector<std::pair<std::string, std::string>> Tokenizer::merges() const {
  const State& s = state();
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(s.merges.size());
  for (const MergeTable::Entry& e : s.merges.entries()) {
    pairs.emplace_back(s.token_bytes[e.left], s.token_bytes[e.right]);
  }
  return pairs;
}

}  // namespace loom::io
