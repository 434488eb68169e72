// JSONL records in the five formats: auto-detection, forced formats, blank lines, extra
// keys, and one test per error message (file:line, the key, what was expected).
#define BOOST_TEST_MODULE data_jsonl
#include <boost/test/unit_test.hpp>

#include "io/data/jsonl.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace loom::io;

namespace {

// Expects parse_jsonl to throw exactly `message`.
void expect_error(const std::string& content, const std::string& message, JsonlFormat format = JsonlFormat::Auto) {
  try {
    parse_jsonl(content, "data.jsonl", format);
    BOOST_ERROR("no error; expected: " << message);
  } catch (const std::runtime_error& error) {
    BOOST_TEST(std::string(error.what()) == message);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(text_records_with_blank_lines_and_extra_keys) {
  const auto records = parse_jsonl("{\"text\": \"hello\"}\n\n   \n{\"text\": \"world\", \"id\": 7}\r\n", "t.jsonl");
  BOOST_TEST_REQUIRE(records.size() == 2u);
  BOOST_TEST((records[0].format == JsonlFormat::Text));
  BOOST_TEST(records[0].text == "hello");
  BOOST_TEST(records[0].line == 1);
  BOOST_TEST(records[1].text == "world");
  BOOST_TEST(records[1].line == 4);
}

BOOST_AUTO_TEST_CASE(completion_chat_preference_prompt_are_detected) {
  auto completion = parse_jsonl(R"({"prompt": "2+2=", "completion": " 4"})", "c");
  BOOST_TEST((completion[0].format == JsonlFormat::Completion));
  BOOST_TEST(completion[0].prompt == "2+2=");
  BOOST_TEST(completion[0].completion == " 4");

  auto chat = parse_jsonl(
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},)"
      R"( {"role": "assistant", "content": "Hello!"}]})",
      "m");
  BOOST_TEST((chat[0].format == JsonlFormat::Chat));
  BOOST_TEST_REQUIRE(chat[0].messages.size() == 3u);
  BOOST_TEST(chat[0].messages[0].role == "system");
  BOOST_TEST(chat[0].messages[2].content == "Hello!");

  auto preference = parse_jsonl(R"({"prompt": "Sky?", "chosen": " blue", "rejected": " green"})", "p");
  BOOST_TEST((preference[0].format == JsonlFormat::Preference));
  BOOST_TEST(preference[0].chosen == " blue");
  BOOST_TEST(preference[0].rejected == " green");

  auto prompts = parse_jsonl("{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n{\"prompt\": \"Say hi\"}\n", "q");
  BOOST_TEST((prompts[0].format == JsonlFormat::Prompt));
  BOOST_TEST(prompts[0].answer.value() == "2");
  BOOST_TEST(!prompts[1].answer.has_value());
}

BOOST_AUTO_TEST_CASE(forced_format_reads_only_its_keys) {
  // Auto would call this completion; forced "prompt" takes just the prompt.
  auto records = parse_jsonl(R"({"prompt": "a", "completion": "b"})", "f", JsonlFormat::Prompt);
  BOOST_TEST((records[0].format == JsonlFormat::Prompt));
  BOOST_TEST(records[0].prompt == "a");
  BOOST_TEST(records[0].completion.empty());
  expect_error(R"({"prompt": "a", "completion": "b"})",
               "data.jsonl:1: missing key \"text\" (format \"text\" needs it)", JsonlFormat::Text);
}

BOOST_AUTO_TEST_CASE(format_names_round_trip) {
  for (auto format : {JsonlFormat::Auto, JsonlFormat::Text, JsonlFormat::Completion, JsonlFormat::Chat,
                      JsonlFormat::Preference, JsonlFormat::Prompt}) {
    BOOST_TEST((parse_jsonl_format(jsonl_format_name(format)) == format));
  }
  BOOST_CHECK_EXCEPTION(parse_jsonl_format("sft"), std::invalid_argument, [](const std::invalid_argument& e) {
    return std::string(e.what()) ==
           "unknown JSONL format \"sft\" (expected auto, text, completion, chat, preference or prompt)";
  });
}

BOOST_AUTO_TEST_CASE(error_wrong_type_names_line_and_key) {
  expect_error("{\"prompt\": \"a\", \"completion\": \"b\"}\n\n{\"prompt\": \"c\", \"completion\": 17}\n",
               "data.jsonl:3: key \"completion\" must be a string, got number (format \"completion\" was detected "
               "from line 1)");
  expect_error(R"({"text": null})", "data.jsonl:1: key \"text\" must be a string, got null");
  expect_error(R"({"prompt": "p", "answer": 4})", "data.jsonl:1: key \"answer\" must be a string, got number");
}

BOOST_AUTO_TEST_CASE(error_missing_key_in_later_line) {
  expect_error("{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"p\", \"chosen\": \"a\"}\n",
               "data.jsonl:2: missing key \"rejected\" (format \"preference\" needs it) (format \"preference\" was "
               "detected from line 1)");
}

BOOST_AUTO_TEST_CASE(error_invalid_json_and_non_object) {
  try {
    parse_jsonl("{\"text\": \"a\"}\n{\"text\": \"unterminated}\n", "data.jsonl");
    BOOST_ERROR("no error for invalid JSON");
  } catch (const std::runtime_error& error) {
    BOOST_TEST(std::string(error.what()).rfind("data.jsonl:2: invalid JSON: ", 0) == 0u);
  }
  expect_error("[1, 2]", "data.jsonl:1: expected a JSON object, got array");
  expect_error(R"({"id": 3})",
               "data.jsonl:1: cannot detect the format: expected one of the keys \"text\", "
               "\"prompt\"+\"completion\", \"messages\", \"prompt\"+\"chosen\"+\"rejected\", \"prompt\"");
}

BOOST_AUTO_TEST_CASE(error_messages_structure) {
  expect_error(R"({"messages": "hi"})", "data.jsonl:1: key \"messages\" must be an array, got string");
  expect_error(R"({"messages": []})", "data.jsonl:1: key \"messages\" must hold at least one message, got an empty array");
  expect_error(R"({"messages": [3]})",
               "data.jsonl:1: messages[0] must be an object with \"role\" and \"content\", got number");
  expect_error(R"({"messages": [{"role": "user"}]})", "data.jsonl:1: messages[0] is missing key \"content\"");
  expect_error(R"({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]})",
               "data.jsonl:1: messages[1] key \"role\" must be \"system\", \"user\" or \"assistant\", got \"bot\"");
  expect_error(R"({"messages": [{"role": "user", "content": ["a"]}]})",
               "data.jsonl:1: messages[0] key \"content\" must be a string, got array");
}

BOOST_AUTO_TEST_CASE(error_empty_file_and_missing_file) {
  expect_error("\n  \n", "data.jsonl: no JSONL records (the file is empty or blank)");
  BOOST_CHECK_EXCEPTION(read_jsonl("/nonexistent/x.jsonl"), std::runtime_error, [](const std::runtime_error& e) {
    return std::string(e.what()) == "/nonexistent/x.jsonl: cannot open JSONL file";
  });
}

BOOST_AUTO_TEST_CASE(read_jsonl_from_file_names_the_file) {
  const fs::path file = fs::temp_directory_path() / ("loom_test_jsonl_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(file) << "{\"text\": \"one\"}\n{\"text\": 2}\n";
  try {
    read_jsonl(file);
    BOOST_ERROR("no error");
  } catch (const std::runtime_error& error) {
    BOOST_TEST(std::string(error.what()) ==
               file.string() + ":2: key \"text\" must be a string, got number (format \"text\" was detected from line 1)");
  }
  std::ofstream(file) << "{\"text\": \"one\"}\n{\"text\": \"two\"}";
  BOOST_TEST(read_jsonl(file, JsonlFormat::Text).size() == 2u);
  fs::remove(file);
}
