#include "eval/task_template.h"

#include "core/mix64.h"
#include "eval/task_sources.h"

#include <stdexcept>
#include <unordered_set>

namespace loom::eval {

namespace {

constexpr std::uint64_t kFewshotSalt = 0x6576616c2d667368ULL;

std::string in_quotes(std::string_view text) { return nlohmann::json(std::string(text)).dump(); }

std::string_view trim(std::string_view text) {
  const auto begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

// Calls on_text(literal) and on_field(name) for the pieces of a template in order.
template <typename OnText, typename OnField>
void walk_template(std::string_view text, OnText on_text, OnField on_field) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      on_text(text.substr(pos));
      return;
    }
    on_text(text.substr(pos, open - pos));
    const std::size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      throw std::invalid_argument("template " + in_quotes(text) + " has an unclosed \"{{\" at character " +
                                  std::to_string(open + 1));
    }
    const std::string_view name = trim(text.substr(open + 2, close - open - 2));
    if (name.empty() || name.find_first_of("{}") != std::string_view::npos) {
      throw std::invalid_argument("template " + in_quotes(text) + ": expected a field name inside {{…}} at character " +
                                  std::to_string(open + 1));
    }
    on_field(name);
    pos = close + 2;
  }
}

// Numbers as JSON writes them: integers without a decimal point, floats in shortest form.
std::string field_text(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// The record's checked fields for one task document or few-shot example.
struct Rendered {
  std::string prompt;
  std::string continuation;  // mc: the gold choice; otherwise the target
  Document document;
};

const nlohmann::json& required_field(const nlohmann::json& record, const std::string& key, const std::string& where,
                                     const std::string& what) {
  const auto it = record.find(key);
  if (it == record.end()) throw std::runtime_error(where + ": key " + in_quotes(key) + " (" + what + ") is missing");
  return *it;
}

Rendered render_record(const TaskConfig& task, const TaskSource& source, std::size_t index) {
  const SourceRecord& record = source.records[index];
  const std::string where = source.where(record);
  const std::string of_task = " of " + task.file.string();
  Rendered out;
  out.document.id = static_cast<std::int64_t>(index);
  if (task.type == TaskType::Perplexity) {
    const nlohmann::json& text = required_field(record.fields, task.text_field, where, "the text" + of_task);
    if (!text.is_string()) {
      throw std::runtime_error(where + ": key " + in_quotes(task.text_field) + " must be a string, got " + text.type_name());
    }
    out.document.text = text.get<std::string>();
    return out;
  }
  out.prompt = render_template(task.prompt, record.fields, where, "prompt " + in_quotes(task.prompt) + of_task);
  if (task.type == TaskType::MultipleChoice) {
    const nlohmann::json& choices = required_field(record.fields, task.choices_field, where, "the choices" + of_task);
    bool strings = choices.is_array() && choices.size() >= 2;
    for (const auto& choice : choices) strings = strings && choice.is_string();
    if (!strings) {
      throw std::runtime_error(where + ": key " + in_quotes(task.choices_field) +
                               " must be a list of at least 2 strings, got " + choices.dump().substr(0, 80));
    }
    const nlohmann::json& gold = required_field(record.fields, task.gold_field, where, "the gold index" + of_task);
    if (!gold.is_number_integer() || gold.get<std::int64_t>() < 0 ||
        gold.get<std::int64_t>() >= static_cast<std::int64_t>(choices.size())) {
      throw std::runtime_error(where + ": key " + in_quotes(task.gold_field) + " must be an integer index in [0, " +
                               std::to_string(choices.size() - 1) + "] into " + in_quotes(task.choices_field) +
                               ", got " + gold.dump());
    }
    out.document.choices = choices.get<std::vector<std::string>>();
    out.document.gold = gold.get<std::int64_t>();
    out.continuation = out.document.choices[static_cast<std::size_t>(out.document.gold)];
    return out;
  }
  out.document.target = render_template(task.target, record.fields, where, "target " + in_quotes(task.target) + of_task);
  out.continuation = out.document.target;
  return out;
}

}  // namespace

std::vector<std::string> template_fields(std::string_view text) {
  std::vector<std::string> fields;
  walk_template(text, [](std::string_view) {}, [&](std::string_view name) { fields.emplace_back(name); });
  return fields;
}

std::string render_template(std::string_view text, const nlohmann::json& record, const std::string& where,
                            const std::string& what) {
  std::string out;
  walk_template(
      text, [&](std::string_view literal) { out += literal; },
      [&](std::string_view name) {
        const std::string key(name);
        const nlohmann::json& value = required_field(record, key, where, "used by " + what);
        if (!value.is_string() && !value.is_number()) {
          throw std::runtime_error(where + ": key " + in_quotes(key) + " (used by " + what +
                                   ") must be a string or a number, got " + value.type_name());
        }
        out += field_text(value);
      });
  return out;
}

std::string effective_fewshot_source(const TaskConfig& task) {
  if (!task.fewshot_source.empty()) return task.fewshot_source;
  if (is_builtin_source(task.source) && !task.source.ends_with(kTrainSuffix)) {
    return task.source + std::string(kTrainSuffix);
  }
  return task.source;
}

std::vector<std::size_t> pick_fewshot(std::uint64_t seed, std::int64_t document_id, std::size_t pool_size, int count,
                                      std::optional<std::size_t> exclude) {
  const std::size_t available = pool_size - (exclude && *exclude < pool_size ? 1 : 0);
  if (count < 0 || static_cast<std::size_t>(count) > available) {
    throw std::invalid_argument("num_fewshot " + std::to_string(count) + " needs " + std::to_string(count) +
                                " records besides the document, the few-shot source has " + std::to_string(available));
  }
  const std::uint64_t base = mix64(mix64(seed ^ kFewshotSalt) ^ static_cast<std::uint64_t>(document_id));
  std::vector<std::size_t> picked;
  std::unordered_set<std::size_t> seen;
  if (exclude) seen.insert(*exclude);
  // Rejection sampling terminates: at least `count` indices remain outside `seen`.
  for (std::uint64_t k = 0; picked.size() < static_cast<std::size_t>(count); ++k) {
    const std::size_t index = mix64(base + k) % pool_size;
    if (seen.insert(index).second) picked.push_back(index);
  }
  return picked;
}

std::vector<Document> load_documents(const TaskConfig& task) {
  const TaskSource source = read_task_source(task.source);
  std::size_t count = source.records.size();
  if (task.limit > 0) count = std::min(count, static_cast<std::size_t>(task.limit));

  const bool fewshot = task.num_fewshot > 0 && task.type != TaskType::Perplexity;
  const std::string fewshot_name = fewshot ? effective_fewshot_source(task) : task.source;
  const bool same_source = fewshot_name == task.source;
  TaskSource fewshot_pool;
  if (fewshot && !same_source) fewshot_pool = read_task_source(fewshot_name);
  const TaskSource& pool = same_source ? source : fewshot_pool;
  std::vector<std::optional<std::string>> examples(fewshot ? pool.records.size() : 0);

  std::vector<Document> documents;
  documents.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    Rendered rendered = render_record(task, source, i);
    Document& document = rendered.document;
    if (task.type != TaskType::Perplexity) document.context = rendered.prompt;
    if (fewshot) {
      std::vector<std::size_t> picks;
      try {
        picks = pick_fewshot(task.fewshot_seed, document.id, pool.records.size(), task.num_fewshot,
                             same_source ? std::optional<std::size_t>(i) : std::nullopt);
      } catch (const std::invalid_argument& e) {
        throw std::runtime_error(task.file.string() + ": " + e.what() + " (" + fewshot_name + ")");
      }
      std::string context;
      for (const std::size_t pick : picks) {
        if (!examples[pick]) {
          const Rendered example = render_record(task, pool, pick);
          examples[pick] = example.prompt + example.continuation;
        }
        context += *examples[pick] + task.fewshot_separator;
      }
      document.context = context + document.context;
    }
    documents.push_back(std::move(document));
  }
  return documents;
}

}  // namespace loom::eval
