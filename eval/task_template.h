// Task templates and documents: `{{field}}` substitution over a record's fields (no logic,
// no filters, nothing else), few-shot example selection, and the Documents of a task.
//
//   prompt: "Q: {{question}}\nA:"   with {"question": "2+2?"}  →  "Q: 2+2?\nA:"
//
// Spaces inside the braces are allowed ({{ question }}); a field must be a string or a
// number (integers print without a decimal point, other numbers as JSON writes them).
//
// Few-shot: a document's num_fewshot examples come from the few-shot source (fewshot_source,
// else the task's own source for a JSONL file, else the built-in's ":train" side), picked
// without replacement by a hash of (fewshot_seed, document id), never the document itself
// when the two sources are the same. Each example is its prompt followed by its gold
// continuation (multiple_choice: the gold choice; otherwise the rendered target); the
// examples and then the document's prompt are joined with fewshot_separator.
//
// Thread safety: reentrant; results are plain values.
#pragma once

#include "eval/task.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::eval {

// The field names a template refers to, in order of appearance. Throws std::invalid_argument
// for an unclosed "{{", an empty "{{}}" or a field name holding braces.
std::vector<std::string> template_fields(std::string_view text);

// Fills in the template from `record`. `where` prefixes messages (the record's source and
// line) and `what` names the template ("prompt \"{{q}}\" of configs/eval/x.yaml"). Throws
// std::runtime_error "<where>: key \"q\" used by <what> is missing" (or must be a string or
// a number).
std::string render_template(std::string_view text, const nlohmann::json& record, const std::string& where,
                            const std::string& what);

// The few-shot source the task draws from: fewshot_source, else the source itself for a
// JSONL file, else "<builtin>:train".
std::string effective_fewshot_source(const TaskConfig& task);

// `count` distinct indices into a pool of `pool_size`, picked by a hash of (seed, document
// id), skipping `exclude`. Throws std::invalid_argument when the pool is too small.
std::vector<std::size_t> pick_fewshot(std::uint64_t seed, std::int64_t document_id, std::size_t pool_size,
                                      int count, std::optional<std::size_t> exclude);

}  // namespace loom::eval
