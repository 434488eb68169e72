#include "io/data/jsonl.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace loom::io {

namespace {

using nlohmann::json;

const char* json_type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "binary";
  }
}

class LineContext {
 public:
  LineContext(std::string_view name, std::int64_t line) : name_(name), line_(line) {}

  [[noreturn]] void fail(const std::string& message) const {
    throw std::runtime_error(std::string(name_) + ":" + std::to_string(line_) + ": " + message);
  }
  const json& require(const json& object, const char* key, const char* format) const {
    const auto it = object.find(key);
    if (it == object.end()) {
      fail(std::string("missing key \"") + key + "\" (format \"" + format + "\" needs it)");
    }
    return *it;
  }
  std::string string_at(const json& object, const char* key, const char* format) const {
    const json& value = require(object, key, format);
    if (!value.is_string()) {
      fail(std::string("key \"") + key + "\" must be a string, got " + json_type_name(value));
    }
    return value.get<std::string>();
  }

 private:
  std::string_view name_;
  std::int64_t line_;
};

JsonlFormat detect(const json& object) {
  if (object.contains("messages")) return JsonlFormat::Chat;
  if (object.contains("chosen") || object.contains("rejected")) return JsonlFormat::Preference;
  if (object.contains("completion")) return JsonlFormat::Completion;
  if (object.contains("text")) return JsonlFormat::Text;
  if (object.contains("prompt")) return JsonlFormat::Prompt;
  return JsonlFormat::Auto;
}

std::vector<ChatMessage> parse_messages(const json& object, const LineContext& at) {
  const json& messages = at.require(object, "messages", "chat");
  if (!messages.is_array()) at.fail(std::string("key \"messages\" must be an array, got ") + json_type_name(messages));
  if (messages.empty()) at.fail("key \"messages\" must hold at least one message, got an empty array");
  std::vector<ChatMessage> out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const json& message = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!message.is_object()) at.fail(where + " must be an object with \"role\" and \"content\", got " + json_type_name(message));
    for (const char* key : {"role", "content"}) {
      const auto it = message.find(key);
      if (it == message.end()) at.fail(where + " is missing key \"" + key + "\"");
      if (!it->is_string()) at.fail(where + " key \"" + key + "\" must be a string, got " + json_type_name(*it));
    }
    ChatMessage parsed{message["role"].get<std::string>(), message["content"].get<std::string>()};
    if (parsed.role != kRoleSystem && parsed.role != kRoleUser && parsed.role != kRoleAssistant) {
      at.fail(where + " key \"role\" must be \"system\", \"user\" or \"assistant\", got \"" + parsed.role + "\"");
    }
    out.push_back(std::move(parsed));
  }
  return out;
}

JsonlRecord parse_record(const json& object, JsonlFormat format, const LineContext& at) {
  JsonlRecord record;
  record.format = format;
  switch (format) {
    case JsonlFormat::Text:
      record.text = at.string_at(object, "text", "text");
      break;
    case JsonlFormat::Completion:
      record.prompt = at.string_at(object, "prompt", "completion");
      record.completion = at.string_at(object, "completion", "completion");
      break;
    case JsonlFormat::Chat:
      record.messages = parse_messages(object, at);
      break;
    case JsonlFormat::Preference:
      record.prompt = at.string_at(object, "prompt", "preference");
      record.chosen = at.string_at(object, "chosen", "preference");
      record.rejected = at.string_at(object, "rejected", "preference");
      break;
    case JsonlFormat::Prompt:
      record.prompt = at.string_at(object, "prompt", "prompt");
      if (const auto it = object.find("answer"); it != object.end() && !it->is_null()) {
        if (!it->is_string()) at.fail(std::string("key \"answer\" must be a string, got ") + json_type_name(*it));
        record.answer = it->get<std::string>();
      }
      break;
    case JsonlFormat::Auto:
      break;
  }
  return record;
}

}  // namespace

std::string_view jsonl_format_name(JsonlFormat format) {
  switch (format) {
    case JsonlFormat::Auto: return "auto";
    case JsonlFormat::Text: return "text";
    case JsonlFormat::Completion: return "completion";
    case JsonlFormat::Chat: return "chat";
    case JsonlFormat::Preference: return "preference";
    case JsonlFormat::Prompt: return "prompt";
  }
  return "?";
}

JsonlFormat parse_jsonl_format(std::string_view name) {
  for (auto format : {JsonlFormat::Auto, JsonlFormat::Text, JsonlFormat::Completion, JsonlFormat::Chat,
                      JsonlFormat::Preference, JsonlFormat::Prompt}) {
    if (jsonl_format_name(format) == name) return format;
  }
  throw std::invalid_argument("unknown JSONL format \"" + std::string(name) +
                              "\" (expected auto, text, completion, chat, preference or prompt)");
}

std::vector<JsonlRecord> parse_jsonl(std::string_view content, std::string_view name, JsonlFormat format) {
  std::vector<JsonlRecord> records;
  std::int64_t line_number = 0;
  std::int64_t detected_at = 0;
  std::size_t pos = 0;
  while (pos < content.size()) {
    std::size_t end = content.find('\n', pos);
    if (end == std::string_view::npos) end = content.size();
    std::string_view line = content.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;

    const LineContext at(name, line_number);
    json object;
    try {
      object = json::parse(line);
    } catch (const json::parse_error& error) {
      at.fail(std::string("invalid JSON: ") + error.what());
    }
    if (!object.is_object()) at.fail(std::string("expected a JSON object, got ") + json_type_name(object));

    if (format == JsonlFormat::Auto) {
      format = detect(object);
      if (format == JsonlFormat::Auto) {
        at.fail("cannot detect the format: expected one of the keys \"text\", \"prompt\"+\"completion\", "
                "\"messages\", \"prompt\"+\"chosen\"+\"rejected\", \"prompt\"");
      }
      detected_at = line_number;
    }
    try {
      records.push_back(parse_record(object, format, at));
    } catch (const std::runtime_error& error) {
      if (detected_at == 0 || detected_at == line_number) throw;
      throw std::runtime_error(std::string(error.what()) + " (format \"" + std::string(jsonl_format_name(format)) +
                               "\" was detected from line " + std::to_string(detected_at) + ")");
    }
    records.back().line = line_number;
  }
  if (records.empty()) throw std::runtime_error(std::string(name) + ": no JSONL records (the file is empty or blank)");
  return records;
}

std::string jsonl_line(const JsonlRecord& record) {
  // Keys in the order people read them (prompt before its responses).
  using ordered = nlohmann::ordered_json;
  ordered object = ordered::object();
  switch (record.format) {
    case JsonlFormat::Text: object["text"] = record.text; break;
    case JsonlFormat::Completion:
      object["prompt"] = record.prompt;
      object["completion"] = record.completion;
      break;
    case JsonlFormat::Chat:
      object["messages"] = ordered::array();
      for (const auto& message : record.messages) {
        object["messages"].push_back({{"role", message.role}, {"content", message.content}});
      }
      break;
    case JsonlFormat::Preference:
      object["prompt"] = record.prompt;
      object["chosen"] = record.chosen;
      object["rejected"] = record.rejected;
      break;
    case JsonlFormat::Prompt:
      object["prompt"] = record.prompt;
      if (record.answer) object["answer"] = *record.answer;
      break;
    case JsonlFormat::Auto: throw std::invalid_argument("jsonl_line: record with unresolved format");
  }
  return object.dump();
}

void write_jsonl(const std::filesystem::path& file, std::span<const JsonlRecord> records) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(file.string() + ": cannot open for writing a JSONL file");
  for (const auto& record : records) out << jsonl_line(record) << '\n';
  out.flush();
  if (!out) throw std::runtime_error(file.string() + ": write failed (disk full?)");
}

std::vector<JsonlRecord> read_jsonl(const std::filesystem::path& file, JsonlFormat format) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open JSONL file");
  std::ostringstream content;
  content << in.rdbuf();
  return parse_jsonl(content.str(), file.string(), format);
}

}  // namespace loom::io
