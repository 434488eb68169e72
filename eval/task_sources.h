// The records an evaluation task is built from: the lines of a JSONL file, or a built-in
// source made from the real corpora (eval/task.h lists them). A record is a JSON object;
// which of its fields matter is up to the task (its templates, choices, gold and text keys),
// so this layer checks only that each line is an object and leaves field checks to the task.
//
// Built-in sources (each also as "<name>:train", its training side, for few-shot examples):
//   builtin:brown-heldout          split_brown(read_brown(...)).validation: {"id", "text"}
//   builtin:wordnet-definition-mc  synsets held out of the SFT definition task
//                                  (wordnet_in_validation(pos, offset, 0.02)):
//                                  {"prompt", "choices": [4 × " definition"], "gold", "id"}
//   builtin:wordnet-hypernym       held-out noun synsets with a hypernym (@):
//                                  {"prompt": "\"dog\" is a kind of", "answer", "id"}
//   builtin:arithmetic             arithmetic_problems(ArithmeticOptions{}): {"prompt", "answer"}
// The WordNet sources keep the first kWordNetTaskCap synsets in a stable hash order (a
// sample across parts of speech that does not depend on file order).
//
// Thread safety: reentrant. The parsed WordNet and Brown corpora are cached per directory
// behind a mutex and never change after loading.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::eval {

inline constexpr std::string_view kBuiltinPrefix = "builtin:";
inline constexpr std::string_view kTrainSuffix = ":train";
inline constexpr std::size_t kWordNetTaskCap = 500;
// The SFT definition task's held-out fraction (io/data/wordnet.h DefinitionOptions).
inline constexpr double kWordNetValidationFraction = 0.02;

struct SourceRecord {
  nlohmann::json fields;  // a JSON object
  std::int64_t line = 0;  // 1-based line in a JSONL file; 1-based record number for a built-in
};

struct TaskSource {
  std::string name;  // the source as written: a path or "builtin:…"
  std::vector<SourceRecord> records;

  // "data/x.jsonl:17" or "builtin:arithmetic:17", the prefix of a message about a record.
  std::string where(const SourceRecord& record) const;
};

// True for "builtin:…".
bool is_builtin_source(std::string_view source);

// The names of the built-in sources without the :train suffix.
std::vector<std::string> builtin_source_names();

// Reads every record of a source. A JSONL path is relative to the working directory; blank
// lines are skipped. Throws std::runtime_error: "file:line: …" for a line that is not a JSON
// object, a missing file or one without records, or an unknown built-in (listing the known).
TaskSource read_task_source(const std::string& source);

}  // namespace loom::eval
