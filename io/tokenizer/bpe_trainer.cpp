// BpeTrainer::train: byte-level BPE training with GPT-2 pre-tokenisation.
//
// The corpus is reduced to distinct pre-tokens with counts. Each word is a sequence of
// token ids (initially its bytes, numbered in GPT-2's byte order so the first 256 ids match
// GPT-2's). Pair counts are kept incrementally: merging a pair only revisits the words that
// contain it (an index pair → words) and adjusts the counts of the pairs next to each
// occurrence, so a merge costs time proportional to where the pair occurs, not to the corpus.
// The most frequent pair comes from a lazy max-heap: entries may hold stale (too high)
// counts and are re-queued with the current count when popped. Ties go to the pair whose
// (left bytes, right bytes) is lexicographically smallest, which makes training
// deterministic.
#include <algorithm>
#include <functional>
#include <queue>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "io/tokenizer/byte_level.h"
#include "io/tokenizer/pretokenize.h"
#include "io/tokenizer/tokenizer.h"
#include "io/tokenizer/tokenizer_state.h"

namespace loom::io {
namespace {

using PairKey = std::uint64_t;

PairKey pair_key(std::int32_t left, std::int32_t right) {
  return (PairKey{static_cast<std::uint32_t>(left)} << 32) | static_cast<std::uint32_t>(right);
}
std::int32_t key_left(PairKey key) { return static_cast<std::int32_t>(key >> 32); }
std::int32_t key_right(PairKey key) { return static_cast<std::int32_t>(key & 0xFFFFFFFFu); }

struct Word {
  std::vector<std::int32_t> symbols;
  std::int64_t count;
};

struct HeapEntry {
  std::int64_t count;
  PairKey pair;
};

void validate(const BpeTrainer::Options& options) {
  std::set<std::string> seen;
  for (const std::string& special : options.special_tokens) {
    if (special.empty()) throw std::invalid_argument("BpeTrainer: a special token is empty");
    if (!seen.insert(special).second) {
      throw std::invalid_argument("BpeTrainer: special token '" + special + "' is listed twice");
    }
  }
  const auto minimum = static_cast<std::int64_t>(256 + options.special_tokens.size());
  if (options.vocab_size < minimum) {
    throw std::invalid_argument("BpeTrainer: vocab_size " + std::to_string(options.vocab_size) +
                                " is below the " + std::to_string(minimum) +
                                " needed for 256 byte tokens plus the special tokens");
  }
  if (options.min_pair_frequency < 1) {
    throw std::invalid_argument("BpeTrainer: min_pair_frequency must be at least 1, got " +
                                std::to_string(options.min_pair_frequency));
  }
}

// Distinct pre-tokens of the corpus with their counts, sorted by bytes so that nothing
// downstream depends on hash-table order. One-byte words hold no pair and are left out.
std::vector<Word> count_words(std::span<const std::string> documents) {
  StringMap<std::int64_t> counts;
  for (const std::string& document : documents) {
    for (std::size_t pos = 0; pos < document.size();) {
      const std::size_t end = next_pretoken_end(document, pos);
      if (end - pos > 1) {
        const std::string_view word(document.data() + pos, end - pos);
        const auto it = counts.find(word);
        if (it == counts.end()) {
          counts.emplace(std::string(word), 1);
        } else {
          ++it->second;
        }
      }
      pos = end;
    }
  }
  std::vector<std::pair<std::string, std::int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [text, count] : sorted) {
    Word word{{}, count};
    word.symbols.reserve(text.size());
    for (const char c : text)
      word.symbols.push_back(byte_level::byte_rank(static_cast<std::uint8_t>(c)));
    words.push_back(std::move(word));
  }
  return words;
}

class Trainer {
 public:
  Trainer(std::vector<Word> words, std::int64_t min_count)
      : words_(std::move(words)),
        min_count_(min_count),
        heap_([this](const HeapEntry& a, const HeapEntry& b) { return ranks_below(a, b); }) {
    for (std::int32_t rank = 0; rank < 256; ++rank) {
      const char byte = static_cast<char>(byte_level::byte_at_rank(rank));
      add_token(std::string(1, byte));
    }
    for (std::size_t w = 0; w < words_.size(); ++w) {
      const Word& word = words_[w];
      for (std::size_t i = 0; i + 1 < word.symbols.size(); ++i) {
        const PairKey key = pair_key(word.symbols[i], word.symbols[i + 1]);
        pair_counts_[key] += word.count;
        note_word(key, static_cast<std::int32_t>(w));
      }
    }
    for (const auto& [key, count] : pair_counts_) push(key);
  }

  // Merges until `token_limit` tokens exist or no pair occurs min_count times.
  void run(std::size_t token_limit) {
    while (tokens_.size() < token_limit && !heap_.empty()) {
      const HeapEntry top = heap_.top();
      heap_.pop();
      const auto it = pair_counts_.find(top.pair);
      const std::int64_t current = it == pair_counts_.end() ? 0 : it->second;
      if (current != top.count) {
        if (current >= min_count_) heap_.push({current, top.pair});
        continue;
      }
      if (current < min_count_) break;
      merge(top.pair);
    }
  }

  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::vector<MergeTable::Entry>& merges() const { return merges_; }

 private:
  // Heap order: a below b when a has the smaller count, or the same count and the
  // lexicographically larger pair.
  bool ranks_below(const HeapEntry& a, const HeapEntry& b) const {
    if (a.count != b.count) return a.count < b.count;
    const std::string& a_left = tokens_[key_left(a.pair)];
    const std::string& b_left = tokens_[key_left(b.pair)];
    if (a_left != b_left) return a_left > b_left;
    return tokens_[key_right(a.pair)] > tokens_[key_right(b.pair)];
  }

  std::int32_t add_token(std::string bytes) {
    const auto [it, inserted] =
        token_ids_.emplace(std::move(bytes), static_cast<std::int32_t>(tokens_.size()));
    if (inserted) tokens_.push_back(it->first);
    return it->second;
  }

  void note_word(PairKey key, std::int32_t w) {
    std::vector<std::int32_t>& list = words_with_pair_[key];
    if (list.empty() || list.back() != w) list.push_back(w);
  }

  void push(PairKey key) {
    const std::int64_t count = pair_counts_[key];
    if (count >= min_count_) heap_.push({count, key});
  }

  void change(PairKey key, std::int64_t delta) { pair_counts_[key] += delta; }

  void merge(PairKey pair) {
    const std::int32_t left = key_left(pair);
    const std::int32_t right = key_right(pair);
    // Two merge paths may spell the same bytes ("a"+"bc", "ab"+"c"): reuse the token.
    const std::int32_t merged = add_token(tokens_[left] + tokens_[right]);
    merges_.push_back({left, right, merged});

    std::vector<std::int32_t> affected = std::move(words_with_pair_[pair]);
    words_with_pair_.erase(pair);
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());

    std::vector<PairKey> grown;
    std::vector<std::int32_t> out;
    for (const std::int32_t w : affected) {
      Word& word = words_[w];
      const std::vector<std::int32_t>& s = word.symbols;
      const std::int64_t f = word.count;
      out.clear();
      // Counts are adjusted against the partly merged sequence, so that consecutive
      // occurrences (a b a b) telescope into the right totals.
      for (std::size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
          if (!out.empty()) {
            change(pair_key(out.back(), left), -f);
            change(pair_key(out.back(), merged), f);
            grown.push_back(pair_key(out.back(), merged));
            note_word(pair_key(out.back(), merged), w);
          }
          if (i + 2 < s.size()) {
            change(pair_key(right, s[i + 2]), -f);
            change(pair_key(merged, s[i + 2]), f);
            grown.push_back(pair_key(merged, s[i + 2]));
            note_word(pair_key(merged, s[i + 2]), w);
          }
          change(pair, -f);
          out.push_back(merged);
          i += 2;
        } else {
          out.push_back(s[i]);
          ++i;
        }
      }
      word.symbols.assign(out.begin(), out.end());
    }
    pair_counts_.erase(pair);
    std::sort(grown.begin(), grown.end());
    grown.erase(std::unique(grown.begin(), grown.end()), grown.end());
    for (const PairKey key : grown) push(key);
  }

  std::vector<Word> words_;
  std::int64_t min_count_;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int32_t> token_ids_;
  std::vector<MergeTable::Entry> merges_;
  std::unordered_map<PairKey, std::int64_t> pair_counts_;
  std::unordered_map<PairKey, std::vector<std::int32_t>> words_with_pair_;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>,
                      std::function<bool(const HeapEntry&, const HeapEntry&)>>
      heap_;
};

}  // namespace

Tokenizer BpeTrainer::train(std::span<const std::string> documents, const Options& options) {
  validate(options);
  Trainer trainer(count_words(documents), options.min_pair_frequency);
  trainer.run(static_cast<std::size_t>(options.vocab_size) - options.special_tokens.size());

  auto state = std::make_shared<Tokenizer::State>();
  state->source = "<trained>";
  const std::vector<std::string>& tokens = trainer.tokens();
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    state->add_token(static_cast<std::int32_t>(id), tokens[id], TokenKind::kOrdinary);
  }
  for (const MergeTable::Entry& e : trainer.merges()) state->merges.add(e.left, e.right, e.merged);
  auto next_id = static_cast<std::int32_t>(tokens.size());
  for (const std::string& special : options.special_tokens) {
    state->add_token(next_id++, special, TokenKind::kSpecial);
  }
  state->finish();
  return make_tokenizer(std::move(state));
}

}  // namespace loom::io
