// Evaluation tasks: one YAML file per task (configs/eval/*.yaml), in the spirit of
// lm-evaluation-harness task configs, loaded into a TaskConfig, and the task's documents
// built from its data source (a JSONL file or a built-in source from the real corpora).
//
//   task: wordnet-definition-mc          # name: results.json key, samples/<name>.jsonl
//   type: multiple_choice                # perplexity | multiple_choice | generate_until | reward
//   source: builtin:wordnet-definition-mc  # or a .jsonl path (relative to the working dir)
//   prompt: "{{prompt}}"                 # template over the record's fields
//   target: "{{answer}}"                 # gold (generate_until, reward baseline), unused for mc
//   text: text                           # perplexity: the record field holding the document text
//   choices: choices                     # mc: the record field holding the list of choices
//   gold: gold                           # mc: the record field holding the gold index
//   num_fewshot: 0                       # examples prepended, drawn from fewshot_source
//   fewshot_source: ...                  # default: the same source (never the document itself)
//   fewshot_separator: "\n\n"
//   fewshot_seed: 1234
//   limit: 0                             # 0: every document
//   until: ["\n"]                        # generate_until / reward: stop strings
//   max_new_tokens: 32
//   normalize: [strip, lower, punctuation, whitespace]   # exact match normalisation
//   regex: "(-?\\d+)"                    # optional: the first match (group 1 if any) is the answer
//   reward_model: runs/rm/model.h5       # reward: the scoring model
//   baseline_model: runs/sft/model.h5    # reward: optional, win rate against its generations
//
// Built-in sources (real data found through io/data/npm_paths.h):
//   builtin:brown-heldout          Brown held-out documents (split_brown): {"text", "id"}
//   builtin:wordnet-definition-mc  held-out WordNet synsets: prompt `Define "dog" (noun):`,
//                                  4 choices (the true definition, siblings'/hypernym's/other
//                                  held-out definitions), gold index
//   builtin:wordnet-hypernym       held-out noun synsets with a hypernym: prompt
//                                  `"dog" is a kind of`, answer the hypernym's first lemma
//   builtin:arithmetic             the arithmetic task's validation prompts {"prompt","answer"}
//                                  (io/data/arithmetic.h defaults)
//
// Errors (std::runtime_error, one line): the YAML file and line and the key with what was
// expected ("configs/eval/x.yaml:4: key \"type\" must be one of perplexity, …, got \"ppl\"";
// unknown keys name the closest known one); a JSONL source names its file and line
// ("data/x.jsonl:17: key \"choices\" must be a list of strings").
//
// Thread safety: reentrant; TaskConfig and Document are plain values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::eval {

enum class TaskType { Perplexity, MultipleChoice, GenerateUntil, Reward };
// "perplexity", "multiple_choice", "generate_until", "reward".
const char* task_type_name(TaskType type);

struct TaskConfig {
  std::filesystem::path file;  // the YAML it came from (for messages)
  std::string name;
  TaskType type = TaskType::Perplexity;
  std::string source;           // "builtin:…" or a JSONL path
  std::string prompt = "{{prompt}}";
  std::string target = "{{answer}}";
  std::string text_field = "text";  // perplexity: the field holding the document text
  std::string choices_field = "choices";
  std::string gold_field = "gold";
  int num_fewshot = 0;
  std::string fewshot_source;   // empty: `source`
  std::string fewshot_separator = "\n\n";
  std::uint64_t fewshot_seed = 1234;
  std::int64_t limit = 0;
  std::vector<std::string> until;
  int max_new_tokens = 32;
  std::vector<std::string> normalize;  // subset of strip, lower, punctuation, whitespace
  std::string regex;
  std::string reward_model;
  std::string baseline_model;

  nlohmann::json to_json() const;  // every field, for results.json
};

// Reads and checks one task file.
TaskConfig load_task_config(const std::filesystem::path& yaml);

// A task's document with its prompt rendered (few-shot examples prepended).
struct Document {
  std::int64_t id = 0;          // index in the source, stable across runs
  std::string context;          // rendered prompt (with few-shot); empty for perplexity
  std::string text;             // perplexity: the whole document text
  std::string target;           // gold answer / continuation (generate_until, reward)
  std::vector<std::string> choices;  // multiple_choice: continuations, each as it follows the context
  std::int64_t gold = -1;       // multiple_choice: index into choices
};

// The documents of a task, in source order (after `limit`).
std::vector<Document> load_documents(const TaskConfig& task);

// Normalisation for exact match: the task's steps in order (strip: trim; lower: ASCII
// lower-case; punctuation: drop ASCII punctuation; whitespace: collapse runs to one space).
std::string normalize_answer(const std::string& text, const std::vector<std::string>& steps);
// The answer part of a response: the regex's first match (group 1 when it has one) or the
// whole response when regex is empty; "" when the regex does not match.
std::string extract_answer(const std::string& response, const std::string& regex);
// Cuts a generated text at the first of the stop strings.
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& until);

}  // namespace loom::eval
