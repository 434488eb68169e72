// WordNet preference pairs for reward-model and DPO training: the definition task's prompt,
// the synset's true definition as `chosen`, and the definition of a RELATED synset as
// `rejected`, a near miss a model must learn to tell apart rather than random noise:
//
//   prompt    Define "dog" (noun):
//   chosen     a member of the genus Canis (probably descended from the common wolf) …
//   rejected   a domesticated animal …        (a sibling: another hyponym of "canine")
//
// Rejected candidates, in order of preference:
//   1. siblings: the other hyponyms (~, ~i) of the synset's hypernyms (@, @i), in pointer order
//   2. the hypernyms themselves
// A candidate is skipped when its definition is empty or equal to the chosen one. One
// candidate of the first non-empty tier is picked by a hash of (seed, synset), so the pairs
// are deterministic for a seed. Synsets with no candidate (most adjectives and adverbs have
// no hypernym) give no pair and are counted in `skipped`.
//
// Split: the definition task's (wordnet_in_validation on the chosen synset), so a synset
// held out of SFT is held out here too. A training pair also never uses a held-out synset's
// definition as its rejected text; validation pairs may use any related synset.
//
// Thread safety: reentrant; results are plain values.
#pragma once

#include "io/data/jsonl.h"
#include "io/data/wordnet.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace loom::io {

struct WordNetPairOptions {
  double validation_fraction = 0.02;  // the definition task's default: keep the two equal
  std::uint64_t seed = 1234;
};

enum class RejectedSource { Sibling, Hypernym };

struct WordNetPreferencePair {
  std::string prompt;    // definition_prompt(synset), no trailing space
  std::string chosen;    // " " + the synset's definition
  std::string rejected;  // " " + the related synset's definition
  char pos;              // chosen synset's file pos (n, v, a, r) and offset
  std::uint32_t offset;
  char rejected_pos;     // related synset's file pos and offset
  std::uint32_t rejected_offset;
  RejectedSource source;
};

struct WordNetPairSplit {
  std::vector<WordNetPreferencePair> train;
  std::vector<WordNetPreferencePair> validation;
  std::size_t siblings = 0;   // pairs whose rejected side is a sibling's definition
  std::size_t hypernyms = 0;  // … a hypernym's
  std::size_t skipped = 0;    // synsets with a definition but no usable related synset
};

// Throws std::invalid_argument for a validation_fraction outside [0, 1].
WordNetPairSplit wordnet_preference_pairs(const WordNet& wordnet, const WordNetPairOptions& options = {});

// "sibling" or "hypernym".
std::string_view rejected_source_name(RejectedSource source);

// As preference records (JsonlFormat::Preference), ready for tokenize_records or write_jsonl.
std::vector<JsonlRecord> preference_records(std::span<const WordNetPreferencePair> pairs);

}  // namespace loom::io
