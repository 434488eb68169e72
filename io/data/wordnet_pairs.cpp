#include "io/data/wordnet_pairs.h"

#include "io/data/fingerprint.h"

#include <algorithm>
#include <iterator>
#include <stdexcept>

namespace loom::io {

namespace {

bool is_hypernym(const WordNetPointer& pointer) {
  return pointer.symbol == kHypernym || pointer.symbol == kInstanceHypernym;
}

bool is_hyponym(const WordNetPointer& pointer) {
  return pointer.symbol == kHyponym || pointer.symbol == kInstanceHyponym;
}

// Synset-to-synset targets of the pointers `keep` accepts, in pointer order, without repeats.
template <typename Keep>
void append_targets(const WordNet& wordnet, const Synset& synset, Keep keep, std::vector<const Synset*>& out) {
  for (const auto& pointer : synset.pointers) {
    if (!keep(pointer)) continue;
    const Synset* target = wordnet.find(pointer.pos, pointer.offset);
    if (target != nullptr && std::find(out.begin(), out.end(), target) == out.end()) out.push_back(target);
  }
}

std::uint64_t synset_hash(std::uint64_t seed, const Synset& synset) {
  const std::uint64_t key =
      (static_cast<std::uint64_t>(static_cast<unsigned char>(synset.file_pos())) << 32) | synset.offset;
  return mix64(mix64(seed) ^ key);
}

}  // namespace

std::string_view rejected_source_name(RejectedSource source) {
  return source == RejectedSource::Sibling ? "sibling" : "hypernym";
}

WordNetPairSplit wordnet_preference_pairs(const WordNet& wordnet, const WordNetPairOptions& options) {
  const double fraction = options.validation_fraction;
  if (!(fraction >= 0.0 && fraction <= 1.0)) {
    throw std::invalid_argument("wordnet_preference_pairs: validation_fraction must be in [0, 1], got " +
                                std::to_string(fraction));
  }
  WordNetPairSplit split;
  std::vector<const Synset*> hypernyms, siblings, candidates;
  for (const Synset& synset : wordnet.synsets()) {
    if (synset.definition.empty() || synset.lemmas.empty()) continue;
    const bool validation = wordnet_in_validation(synset.file_pos(), synset.offset, fraction);
    const auto usable = [&](const Synset* other) {
      if (other == &synset || other->definition.empty() || other->definition == synset.definition) return false;
      return validation || !wordnet_in_validation(other->file_pos(), other->offset, fraction);
    };

    hypernyms.clear();
    siblings.clear();
    append_targets(wordnet, synset, is_hypernym, hypernyms);
    for (const Synset* hypernym : hypernyms) append_targets(wordnet, *hypernym, is_hyponym, siblings);

    RejectedSource source = RejectedSource::Sibling;
    candidates.clear();
    std::copy_if(siblings.begin(), siblings.end(), std::back_inserter(candidates), usable);
    if (candidates.empty()) {
      source = RejectedSource::Hypernym;
      std::copy_if(hypernyms.begin(), hypernyms.end(), std::back_inserter(candidates), usable);
    }
    if (candidates.empty()) {
      ++split.skipped;
      continue;
    }
    const Synset& rejected = *candidates[synset_hash(options.seed, synset) % candidates.size()];

    WordNetPreferencePair pair;
    pair.prompt = definition_prompt(synset);
    pair.chosen = " " + synset.definition;
    pair.rejected = " " + rejected.definition;
    pair.pos = synset.file_pos();
    pair.offset = synset.offset;
    pair.rejected_pos = rejected.file_pos();
    pair.rejected_offset = rejected.offset;
    pair.source = source;
    ++(source == RejectedSource::Sibling ? split.siblings : split.hypernyms);
    (validation ? split.validation : split.train).push_back(std::move(pair));
  }
  return split;
}

std::vector<JsonlRecord> preference_records(std::span<const WordNetPreferencePair> pairs) {
  std::vector<JsonlRecord> records;
  records.reserve(pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    JsonlRecord record;
    record.format = JsonlFormat::Preference;
    record.line = static_cast<std::int64_t>(i + 1);
    record.prompt = pairs[i].prompt;
    record.chosen = pairs[i].chosen;
    record.rejected = pairs[i].rejected;
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace loom::io
