#include "eval/task.h"

#include "eval/task_sources.h"
#include "eval/task_template.h"
#include "io/config/value.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>

#include <yaml-cpp/yaml.h>

namespace loom::eval {

namespace {

namespace fs = std::filesystem;

constexpr const char* kTypeNames[] = {"perplexity", "multiple_choice", "generate_until", "reward"};
constexpr const char* kNormalizeSteps[] = {"strip", "lower", "punctuation", "whitespace"};

std::string in_quotes(std::string_view text) { return nlohmann::json(std::string(text)).dump(); }

std::string one_of(const auto& names) {
  std::string out;
  for (const char* name : names) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

// What a node holds, for "…, got X" messages.
std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return in_quotes(node.Scalar());
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  return "nothing";
}

// Reads one task file's keys into a TaskConfig; every error names file:line and the key.
class TaskReader {
 public:
  explicit TaskReader(const fs::path& file) : file_(file) {}

  [[noreturn]] void fail(int line, const std::string& message) const {
    throw std::runtime_error(file_.string() + ":" + std::to_string(line) + ": " + message);
  }
  static int line_of(const YAML::Node& node) { return node.Mark().line + 1; }

  std::string string(const std::string& key, const YAML::Node& value) const {
    if (!value.IsScalar()) fail(line_of(value), "key " + in_quotes(key) + " must be a string, got " + describe(value));
    return value.Scalar();
  }

  std::int64_t integer(const std::string& key, const YAML::Node& value, std::int64_t min, std::int64_t max) const {
    std::int64_t out = 0;
    const bool parsed = value.IsScalar() && YAML::convert<std::int64_t>::decode(value, out);
    if (!parsed || out < min || out > max) {
      std::string range = "an integer >= " + std::to_string(min);
      if (max < std::numeric_limits<int>::max()) range = "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
      fail(line_of(value), "key " + in_quotes(key) + " must be " + range + ", got " + describe(value));
    }
    return out;
  }

  std::vector<std::string> strings(const std::string& key, const YAML::Node& value) const {
    if (!value.IsSequence()) {
      fail(line_of(value), "key " + in_quotes(key) + " must be a list of strings, got " + describe(value));
    }
    std::vector<std::string> out;
    for (const YAML::Node& item : value) {
      if (!item.IsScalar()) {
        fail(line_of(item), "key " + in_quotes(key) + " must be a list of strings, got an item " + describe(item));
      }
      out.push_back(item.Scalar());
    }
    return out;
  }

  TaskType type(const YAML::Node& value) const {
    const std::string name = string("type", value);
    for (std::size_t i = 0; i < std::size(kTypeNames); ++i) {
      if (name == kTypeNames[i]) return static_cast<TaskType>(i);
    }
    fail(line_of(value), "key \"type\" must be one of " + one_of(kTypeNames) + ", got " + in_quotes(name));
  }

  std::vector<std::string> normalize(const YAML::Node& value) const {
    std::vector<std::string> steps = strings("normalize", value);
    for (const std::string& step : steps) {
      if (std::find(std::begin(kNormalizeSteps), std::end(kNormalizeSteps), step) == std::end(kNormalizeSteps)) {
        fail(line_of(value), "key \"normalize\": each step must be one of " + one_of(kNormalizeSteps) + ", got " +
                                 in_quotes(step));
      }
    }
    return steps;
  }

  std::string source(const std::string& key, const YAML::Node& value) const {
    const std::string name = string(key, value);
    if (name.empty()) fail(line_of(value), "key " + in_quotes(key) + " must name a .jsonl file or a builtin: source");
    if (!is_builtin_source(name)) return name;
    std::string base = name;
    if (base.ends_with(kTrainSuffix)) base.resize(base.size() - kTrainSuffix.size());
    const auto known = builtin_source_names();
    if (std::find(known.begin(), known.end(), base) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail(line_of(value), "key " + in_quotes(key) + " must be a .jsonl path or one of " + list +
                               " (each also with \":train\"), got " + in_quotes(name));
    }
    return name;
  }

  void check_template(const std::string& key, const std::string& text, int line) const {
    try {
      template_fields(text);
    } catch (const std::invalid_argument& e) {
      fail(line, "key " + in_quotes(key) + ": " + e.what());
    }
  }

 private:
  const fs::path& file_;
};

using Setter = std::function<void(const TaskReader&, TaskConfig&, const YAML::Node&)>;

const std::vector<std::pair<std::string, Setter>>& task_keys() {
  static const std::vector<std::pair<std::string, Setter>> keys = {
      {"task", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.name = r.string("task", v); }},
      {"type", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.type = r.type(v); }},
      {"source", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.source = r.source("source", v); }},
      {"prompt", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.prompt = r.string("prompt", v); }},
      {"target", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.target = r.string("target", v); }},
      {"text", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.text_field = r.string("text", v); }},
      {"choices", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.choices_field = r.string("choices", v); }},
      {"gold", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.gold_field = r.string("gold", v); }},
      {"num_fewshot",
       [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) {
         t.num_fewshot = static_cast<int>(r.integer("num_fewshot", v, 0, 1000));
       }},
      {"fewshot_source",
       [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.fewshot_source = r.source("fewshot_source", v); }},
      {"fewshot_separator",
       [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.fewshot_separator = r.string("fewshot_separator", v); }},
      {"fewshot_seed",
       [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) {
         t.fewshot_seed = static_cast<std::uint64_t>(r.integer("fewshot_seed", v, 0, std::numeric_limits<std::int64_t>::max()));
       }},
      {"limit",
       [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) {
         t.limit = r.integer("limit", v, 0, std::numeric_limits<std::int64_t>::max());
       }},
      {"until", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.until = r.strings("until", v); }},
      {"max_new_tokens",
       [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) {
         t.max_new_tokens = static_cast<int>(r.integer("max_new_tokens", v, 1, 1 << 20));
       }},
      {"normalize", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.normalize = r.normalize(v); }},
      {"regex", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.regex = r.string("regex", v); }},
      {"reward_model", [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.reward_model = r.string("reward_model", v); }},
      {"baseline_model",
       [](const TaskReader& r, TaskConfig& t, const YAML::Node& v) { t.baseline_model = r.string("baseline_model", v); }},
  };
  return keys;
}

std::string closest_key(const std::string& unknown) {
  std::vector<std::string> names;
  for (const auto& entry : task_keys()) names.push_back(entry.first);
  return config::nearest(unknown, names).name;
}

// Checks that need several keys at once: required keys, type-specific keys, templates, regex.
void check_task(const TaskReader& reader, TaskConfig& task, const YAML::Node& root,
                const std::map<std::string, int>& lines) {
  const int top = TaskReader::line_of(root);
  const auto line = [&](const std::string& key) { return lines.count(key) ? lines.at(key) : top; };
  for (const char* key : {"task", "type", "source"}) {
    if (!lines.count(key)) reader.fail(top, std::string("missing required key ") + in_quotes(key));
  }
  if (task.name.empty() || task.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                      "0123456789._-") != std::string::npos) {
    reader.fail(line("task"), "key \"task\" must be a non-empty name of letters, digits, '.', '_' or '-' "
                              "(it names results and sample files), got " + in_quotes(task.name));
  }
  if (task.type == TaskType::Reward) {
    if (task.reward_model.empty()) reader.fail(line("reward_model"), "a reward task needs key \"reward_model\" (the scoring model)");
    if (!lines.count("target")) task.target.clear();  // a reward task's gold answer is optional
  }
  if (task.type == TaskType::Perplexity && task.num_fewshot > 0) {
    reader.fail(line("num_fewshot"), "key \"num_fewshot\" must be 0 for a perplexity task (it scores whole documents)");
  }
  for (const std::string& stop : task.until) {
    if (stop.empty()) reader.fail(line("until"), "key \"until\" must not hold an empty stop string");
  }
  reader.check_template("prompt", task.prompt, line("prompt"));
  reader.check_template("target", task.target, line("target"));
  if (!task.regex.empty()) {
    try {
      std::regex compiled(task.regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      reader.fail(line("regex"), "key \"regex\" is not a valid ECMAScript regular expression " + in_quotes(task.regex) +
                                     ": " + e.what());
    }
  }
}

}  // namespace

const char* task_type_name(TaskType type) { return kTypeNames[static_cast<std::size_t>(type)]; }

TaskConfig load_task_config(const fs::path& yaml) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml.string());
  } catch (const YAML::BadFile&) {
    throw std::runtime_error(yaml.string() + ": cannot open the task file");
  } catch (const YAML::ParserException& e) {
    throw std::runtime_error(yaml.string() + ":" + std::to_string(e.mark.line + 1) + ":" +
                             std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  }
  TaskConfig task;
  task.file = yaml;
  const TaskReader reader(yaml);
  if (!root.IsMap()) {
    reader.fail(root.IsDefined() && !root.IsNull() ? TaskReader::line_of(root) : 1,
                "expected a map of task keys (task, type, source, …), got " + describe(root));
  }
  std::map<std::string, int> lines;
  for (const auto& entry : root) {
    const std::string key = entry.first.Scalar();
    const int line = TaskReader::line_of(entry.first);
    const auto& keys = task_keys();
    const auto it = std::find_if(keys.begin(), keys.end(), [&](const auto& k) { return k.first == key; });
    if (it == keys.end()) {
      reader.fail(line, "unknown key " + in_quotes(key) + " (did you mean " + in_quotes(closest_key(key)) + "?)");
    }
    if (lines.count(key)) reader.fail(line, "key " + in_quotes(key) + " is set twice");
    lines[key] = line;
    it->second(reader, task, entry.second);
  }
  check_task(reader, task, root, lines);
  return task;
}

nlohmann::json TaskConfig::to_json() const {
  return {{"file", file.string()},
          {"task", name},
          {"type", task_type_name(type)},
          {"source", source},
          {"prompt", prompt},
          {"target", target},
          {"text", text_field},
          {"choices", choices_field},
          {"gold", gold_field},
          {"num_fewshot", num_fewshot},
          {"fewshot_source", fewshot_source},
          {"fewshot_separator", fewshot_separator},
          {"fewshot_seed", fewshot_seed},
          {"limit", limit},
          {"until", until},
          {"max_new_tokens", max_new_tokens},
          {"normalize", normalize},
          {"regex", regex},
          {"reward_model", reward_model},
          {"baseline_model", baseline_model}};
}

std::string normalize_answer(const std::string& text, const std::vector<std::string>& steps) {
  const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  std::string out = text;
  for (const std::string& step : steps) {
    if (step == "strip") {
      const auto begin = std::find_if_not(out.begin(), out.end(), space);
      const auto end = std::find_if_not(out.rbegin(), out.rend(), space).base();
      out = begin < end ? std::string(begin, end) : std::string();
    } else if (step == "lower") {
      for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (step == "punctuation") {
      std::erase_if(out, [](unsigned char c) { return c < 128 && std::ispunct(c); });
    } else if (step == "whitespace") {
      std::string collapsed;
      bool in_space = false;
      for (const char c : out) {
        if (!space(static_cast<unsigned char>(c))) {
          collapsed += c;
        } else if (!in_space) {
          collapsed += ' ';
        }
        in_space = space(static_cast<unsigned char>(c));
      }
      out = std::move(collapsed);
    } else {
      throw std::invalid_argument("normalize_answer: unknown step " + in_quotes(step) + ", expected one of " +
                                  one_of(kNormalizeSteps));
    }
  }
  return out;
}

std::string extract_answer(const std::string& response, const std::string& regex) {
  if (regex.empty()) return response;
  std::regex compiled;
  try {
    compiled = std::regex(regex, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw std::invalid_argument("extract_answer: bad regular expression " + in_quotes(regex) + ": " + e.what());
  }
  std::smatch match;
  if (!std::regex_search(response, match, compiled)) return "";
  return compiled.mark_count() > 0 ? match.str(1) : match.str(0);
}

std::string cut_at_stop(const std::string& text, const std::vector<std::string>& until) {
  std::size_t cut = text.size();
  for (const std::string& stop : until) {
    if (!stop.empty()) cut = std::min(cut, text.find(stop));
  }
  return text.substr(0, cut);
}

}  // namespace loom::eval
