// Readers for the two vocabulary formats: GPT-2's encoder.json + vocab.bpe and Hugging
// Face's tokenizer.json (byte-level BPE). Both store tokens in GPT-2's byte→unicode display
// form; they are turned into raw bytes here. Errors name the file, the key or line, and
// what was expected.
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "io/tokenizer/byte_level.h"
#include "io/tokenizer/tokenizer_state.h"

namespace loom::io {
namespace {

using nlohmann::json;

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open tokenizer file " + file.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

json parse_json(const std::filesystem::path& file) {
  try {
    return json::parse(read_file(file));
  } catch (const json::parse_error& e) {
    throw std::runtime_error(file.string() + ": not valid JSON (" + e.what() + ")");
  }
}

std::string shown_to_raw(const std::string& shown, const std::string& where) {
  std::optional<std::string> raw = byte_level::decode(shown);
  if (!raw) {
    throw std::runtime_error(where + ": token '" + shown +
                             "' uses characters outside GPT-2's byte-level alphabet");
  }
  return std::move(*raw);
}

// Adds the merge "left right" (display form); `where` locates it for messages.
void add_merge(Tokenizer::State& state, const std::string& left, const std::string& right,
               const std::string& where) {
  const auto lookup = [&](const std::string& raw, const std::string& shown) {
    const auto it = state.ordinary_ids.find(raw);
    if (it == state.ordinary_ids.end()) {
      throw std::runtime_error(where + ": merge '" + left + " " + right + "' needs token '" +
                               shown + "', which is not in the vocabulary");
    }
    return it->second;
  };
  const std::string left_raw = shown_to_raw(left, where);
  const std::string right_raw = shown_to_raw(right, where);
  const std::int32_t left_id = lookup(left_raw, left);
  const std::int32_t right_id = lookup(right_raw, right);
  state.merges.add(left_id, right_id, lookup(left_raw + right_raw, left + right));
}

// "a b" → {a, b}; exactly one space between two non-empty parts.
std::pair<std::string, std::string> split_merge(std::string_view line, const std::string& where) {
  const std::size_t space = line.find(' ');
  if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
      line.find(' ', space + 1) != std::string_view::npos) {
    throw std::runtime_error(where +
                             ": expected a merge of two tokens separated by one space, got '" +
                             std::string(line) + "'");
  }
  return {std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
}

bool is_loom_special(std::string_view token) {
  return token == kEndOfText || token == kImStart || token == kImEnd;
}

const json& require(const json& object, const char* key, json::value_t type,
                    const std::string& where, const char* expected) {
  const auto it = object.find(key);
  if (it == object.end()) throw std::runtime_error(where + ": missing key '" + key + "'");
  if (it->type() != type) {
    throw std::runtime_error(where + ": key '" + key + "' must be " + expected + ", found " +
                             it->type_name());
  }
  return *it;
}

std::int32_t require_id(const json& value, const std::string& where) {
  if (!value.is_number_integer() || value.get<std::int64_t>() < 0 ||
      value.get<std::int64_t>() > INT32_MAX) {
    throw std::runtime_error(where + ": expected a non-negative integer token id, found " +
                             value.dump());
  }
  return value.get<std::int32_t>();
}

// Options that change what the byte-level BPE model computes must be ones loom implements.
void check_pipeline(const json& root, Tokenizer::State& state, const std::string& file) {
  const auto normalizer = root.find("normalizer");
  if (normalizer != root.end() && !normalizer->is_null()) {
    throw std::runtime_error(file + ": normalizer " + normalizer->value("type", std::string("?")) +
                             " is not supported (loom reads byte-level BPE without a normalizer)");
  }
  const auto pre = root.find("pre_tokenizer");
  if (pre == root.end() || !pre->is_object()) {
    throw std::runtime_error(file + ": pre_tokenizer must be a ByteLevel pre-tokenizer object");
  }
  const json* byte_level = &*pre;
  if (pre->value("type", std::string()) == "Sequence") {
    const json& parts =
        require(*pre, "pretokenizers", json::value_t::array, file + ": pre_tokenizer", "an array");
    if (parts.size() != 1) {
      throw std::runtime_error(file + ": pre_tokenizer Sequence of " +
                               std::to_string(parts.size()) +
                               " steps is not supported (only a single ByteLevel step)");
    }
    byte_level = &parts[0];
  }
  const std::string type = byte_level->value("type", std::string("(none)"));
  if (type != "ByteLevel") {
    throw std::runtime_error(file + ": pre_tokenizer type '" + type +
                             "' is not supported (expected 'ByteLevel')");
  }
  if (!byte_level->value("use_regex", true)) {
    throw std::runtime_error(file +
                             ": pre_tokenizer ByteLevel with use_regex=false is not "
                             "supported (loom splits with GPT-2's pattern)");
  }
  state.add_prefix_space = byte_level->value("add_prefix_space", false);
}

void check_model_options(const json& model, const std::string& where) {
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() && *it != "") {
      throw std::runtime_error(where + ": " + key + " " + it->dump() +
                               " is not supported by byte-level BPE (expected \"\" or null)");
    }
  }
}

}  // namespace

std::shared_ptr<Tokenizer::State> load_gpt2_files(const std::filesystem::path& encoder_json,
                                                  const std::filesystem::path& vocab_bpe) {
  auto state = std::make_shared<Tokenizer::State>();
  const std::string encoder_name = encoder_json.string();
  state->source = encoder_name;
  const json encoder = parse_json(encoder_json);
  if (!encoder.is_object()) {
    throw std::runtime_error(encoder_name + ": expected a JSON object mapping token → id");
  }
  for (const auto& [shown, id_value] : encoder.items()) {
    const std::int32_t id = require_id(id_value, encoder_name + ": token '" + shown + "'");
    if (is_loom_special(shown)) {
      state->add_token(id, shown, TokenKind::kSpecial);
    } else {
      state->add_token(id, shown_to_raw(shown, encoder_name), TokenKind::kOrdinary);
    }
  }

  const std::string vocab_name = vocab_bpe.string();
  std::istringstream lines(read_file(vocab_bpe));
  std::string line;
  for (std::size_t number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line.starts_with("#version"))) continue;
    const std::string where = vocab_name + ":" + std::to_string(number);
    const auto [left, right] = split_merge(line, where);
    add_merge(*state, left, right, where);
  }
  state->finish();
  return state;
}

std::shared_ptr<Tokenizer::State> load_hf_tokenizer_json(const std::filesystem::path& file) {
  auto state = std::make_shared<Tokenizer::State>();
  const std::string name = file.string();
  state->source = name;
  const json root = parse_json(file);
  if (!root.is_object()) throw std::runtime_error(name + ": expected a JSON object at the top");
  check_pipeline(root, *state, name);

  const json& model = require(root, "model", json::value_t::object, name, "an object");
  const std::string model_where = name + ": model";
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") {
    throw std::runtime_error(model_where + ".type is '" + type + "', expected 'BPE'");
  }
  check_model_options(model, model_where);
  state->ignore_merges = model.value("ignore_merges", false);

  std::unordered_map<std::int32_t, std::string> added;
  const auto added_tokens = root.find("added_tokens");
  if (added_tokens != root.end() && !added_tokens->is_null()) {
    if (!added_tokens->is_array()) {
      throw std::runtime_error(name + ": added_tokens must be an array");
    }
    for (std::size_t i = 0; i < added_tokens->size(); ++i) {
      const std::string where = name + ": added_tokens[" + std::to_string(i) + "]";
      const json& entry = (*added_tokens)[i];
      if (!entry.is_object()) throw std::runtime_error(where + " must be an object");
      const auto id_value = entry.find("id");
      if (id_value == entry.end()) throw std::runtime_error(where + ": missing key 'id'");
      const std::int32_t id = require_id(*id_value, where + ".id");
      const std::string content =
          require(entry, "content", json::value_t::string, where, "a string").get<std::string>();
      added.emplace(id, content);
      state->add_token(id, content, TokenKind::kSpecial);
    }
  }

  const json& vocab = require(model, "vocab", json::value_t::object, model_where, "an object");
  for (const auto& [shown, id_value] : vocab.items()) {
    const std::string where = model_where + ".vocab['" + shown + "']";
    const std::int32_t id = require_id(id_value, where);
    if (added.contains(id)) continue;  // the added token's entry already holds this id
    state->add_token(id, shown_to_raw(shown, where), TokenKind::kOrdinary);
  }

  const json& merges = require(model, "merges", json::value_t::array, model_where, "an array");
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const std::string where = model_where + ".merges[" + std::to_string(i) + "]";
    const json& merge = merges[i];
    if (merge.is_string()) {
      const auto [left, right] = split_merge(merge.get<std::string>(), where);
      add_merge(*state, left, right, where);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      add_merge(*state, merge[0].get<std::string>(), merge[1].get<std::string>(), where);
    } else {
      throw std::runtime_error(
          where + ": expected \"left right\" or [\"left\", \"right\"], found " + merge.dump());
    }
  }
  state->finish();
  return state;
}

}  // namespace loom::io
