// Helpers of the loom-submit tests (test_slurm_*.cpp): a scratch directory, files, a small
// shell-word parser that records where each character of a word came from (single quotes,
// double quotes, a backslash escape or bare text), and running bash on a rendered line.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "run_command.h"

namespace slurm_test {

namespace fs = std::filesystem;

// A fresh directory under /tmp, removed with the object.
class Scratch {
 public:
  Scratch() {
    std::string pattern = (fs::temp_directory_path() / "loom-slurm-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~Scratch() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_file(const fs::path& path, const std::string& text, bool executable = false) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
  if (executable) fs::permissions(path, fs::perms::owner_all, fs::perm_options::add);
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

enum class Origin { bare, single_quoted, double_quoted, escaped };

struct ShellWord {
  std::string text;             // the word as bash would pass it (no expansion done)
  std::vector<Origin> origins;  // per character of text
  std::string raw;              // the word as written
  bool expands = false;         // holds a $ or ` outside single quotes
};

// Splits one line into words like bash's tokenizer for simple commands: blanks separate
// words; '…' is literal; "…" keeps \" \\ \$ \` escapes; a bare backslash escapes the next
// character; ; & | ( ) < > and # (at a word start) end the command (returned as their own
// bare word, then parsing goes on).
inline std::vector<ShellWord> split_words(const std::string& line) {
  std::vector<ShellWord> words;
  ShellWord word;
  bool in_word = false;
  auto add = [&](char c, Origin origin) {
    word.text += c;
    word.origins.push_back(origin);
    in_word = true;
  };
  auto end_word = [&] {
    if (in_word) words.push_back(word);
    word = ShellWord();
    in_word = false;
  };
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    const std::size_t start = i;
    if (c == ' ' || c == '\t') {
      end_word();
      continue;
    }
    if (c == '#' && !in_word) break;
    if (c == '\'') {
      const std::size_t close = line.find('\'', i + 1);
      if (close == std::string::npos) throw std::runtime_error("unclosed ' in: " + line);
      for (std::size_t k = i + 1; k < close; ++k) add(line[k], Origin::single_quoted);
      in_word = true;
      i = close;
    } else if (c == '"') {
      std::size_t k = i + 1;
      for (; k < line.size() && line[k] != '"'; ++k) {
        if (line[k] == '\\' && k + 1 < line.size() && std::string("\"\\$`").find(line[k + 1]) != std::string::npos) {
          add(line[++k], Origin::escaped);
        } else {
          if (line[k] == '$' || line[k] == '`') word.expands = true;
          add(line[k], Origin::double_quoted);
        }
      }
      if (k >= line.size()) throw std::runtime_error("unclosed \" in: " + line);
      in_word = true;
      i = k;
    } else if (c == '\\' && i + 1 < line.size()) {
      add(line[++i], Origin::escaped);
    } else if (std::string(";&|()<>").find(c) != std::string::npos) {
      end_word();
      add(c, Origin::bare);
      end_word();
      continue;
    } else {
      if (c == '$' || c == '`') word.expands = true;
      add(c, Origin::bare);
    }
    word.raw += line.substr(start, i - start + 1);
  }
  end_word();
  return words;
}

// What bash prints for `printf '%s\n' WORD` with WORD written as in a script.
inline std::string bash_printf(const std::string& raw_word) {
  Scratch scratch;
  write_file(scratch / "word.sh", "printf '%s\\n' " + raw_word + "\n");
  const std::string output = run_command("bash " + (scratch / "word.sh").string(), scratch / "out.txt");
  // "status 0\n" + output without its last newline
  const std::size_t header = output.find('\n');
  std::string printed = output.substr(header + 1);
  if (!printed.empty() && printed.back() == '\n') printed.pop_back();
  return output.substr(0, header) == "status 0" ? printed : "<bash failed: " + output + ">";
}

}  // namespace slurm_test
