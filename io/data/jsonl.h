// JSONL training data in the formats people already use (one JSON object per line):
//   text        {"text": "..."}                                   pre-training / LM
//   completion  {"prompt": "...", "completion": "..."}            SFT
//   chat        {"messages": [{"role": "user", "content": "..."}, …]}   SFT
//   preference  {"prompt": "...", "chosen": "...", "rejected": "..."}   RM / DPO
//   prompt      {"prompt": "...", "answer": "..."?}               PPO / GRPO
// Other keys on a line (ids, metadata) are ignored. Blank lines are skipped.
//
// Auto-detection looks at the first record's keys (messages → chat; chosen+rejected →
// preference; completion → completion; text → text; prompt → prompt) and then holds every
// later line to that format. Errors name file:line, the key and what was expected:
//   data.jsonl:17: key "completion" must be a string, got number
//
// Thread safety: reentrant; records are plain values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace loom::io {

enum class JsonlFormat { Auto, Text, Completion, Chat, Preference, Prompt };

// "auto", "text", "completion", "chat", "preference", "prompt" ↔ JsonlFormat; parsing
// throws std::invalid_argument listing the valid names.
std::string_view jsonl_format_name(JsonlFormat format);
JsonlFormat parse_jsonl_format(std::string_view name);

// Roles a chat message may have.
inline constexpr std::string_view kRoleSystem = "system";
inline constexpr std::string_view kRoleUser = "user";
inline constexpr std::string_view kRoleAssistant = "assistant";

struct ChatMessage {
  std::string role;  // system, user or assistant
  std::string content;
};

// One line of a JSONL file; only the fields of `format` are set.
struct JsonlRecord {
  JsonlFormat format = JsonlFormat::Text;
  std::int64_t line = 0;                  // 1-based line in the file
  std::string text;                       // text
  std::string prompt;                     // completion, preference, prompt
  std::string completion;                 // completion
  std::string chosen, rejected;           // preference
  std::optional<std::string> answer;      // prompt
  std::vector<ChatMessage> messages;      // chat
};

// Reads every record of `file` in the given format (Auto: detected from the first record).
// Throws std::runtime_error ("file:line: …") on the first bad line, and for a file with no
// records at all.
std::vector<JsonlRecord> read_jsonl(const std::filesystem::path& file,
                                    JsonlFormat format = JsonlFormat::Auto);

// The same for text already in memory; `name` stands in for the file name in errors.
std::vector<JsonlRecord> parse_jsonl(std::string_view content, std::string_view name,
                                     JsonlFormat format = JsonlFormat::Auto);

// One record as a JSON line (no newline) holding only its format's keys, so parse_jsonl
// reads it back to an equal record; a prompt record without an answer has no "answer" key.
std::string jsonl_line(const JsonlRecord& record);
// Every record, one line each, creating the parent directory; throws std::runtime_error
// naming the file when it cannot be written.
void write_jsonl(const std::filesystem::path& file, std::span<const JsonlRecord> records);

}  // namespace loom::io
