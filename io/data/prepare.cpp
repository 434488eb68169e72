#include "io/data/prepare.h"

#include "io/data/fingerprint.h"

#include <stdexcept>

namespace loom::io {

std::string_view store_kind_for(JsonlFormat format) {
  switch (format) {
    case JsonlFormat::Text: return kKindText;
    case JsonlFormat::Completion:
    case JsonlFormat::Chat: return kKindSft;
    case JsonlFormat::Preference: return kKindPreference;
    case JsonlFormat::Prompt: return kKindPrompt;
    case JsonlFormat::Auto: break;
  }
  throw std::invalid_argument("store_kind_for: the format must be resolved (not auto)");
}

namespace {

struct RenderedRecord {
  RenderedSequence first;
  RenderedSequence second;  // preference: the rejected side
};

RenderedRecord render(const JsonlRecord& record, const ChatTemplate& chat_template) {
  RenderedRecord out;
  switch (record.format) {
    case JsonlFormat::Text: out.first = chat_template.render_text(record.text); break;
    case JsonlFormat::Completion: out.first = chat_template.render_completion(record.prompt, record.completion); break;
    case JsonlFormat::Chat: out.first = chat_template.render_chat(record.messages); break;
    case JsonlFormat::Preference:
      out.first = chat_template.render_completion(record.prompt, record.chosen);
      out.second = chat_template.render_completion(record.prompt, record.rejected);
      break;
    case JsonlFormat::Prompt: out.first.append(chat_template.tokenizer().encode(record.prompt), false); break;
    case JsonlFormat::Auto: throw std::invalid_argument("tokenize_records: record with unresolved format");
  }
  return out;
}

}  // namespace

TokenStoreWriter tokenize_records(std::span<const JsonlRecord> records, const ChatTemplate& chat_template,
                                  TokenStoreInfo info, const ProgressCallback& progress) {
  if (records.empty()) throw std::invalid_argument("tokenize_records: no records");
  const JsonlFormat format = records.front().format;
  for (const auto& record : records) {
    if (record.format != format) {
      throw std::invalid_argument("tokenize_records: line " + std::to_string(record.line) + " has format \"" +
                                  std::string(jsonl_format_name(record.format)) + "\" but line " +
                                  std::to_string(records.front().line) + " has \"" +
                                  std::string(jsonl_format_name(format)) + "\"");
    }
  }
  info.kind = std::string(store_kind_for(format));
  info.vocab_size = chat_template.tokenizer().vocab_size();
  TokenStoreWriter writer(std::move(info));

  // Render in blocks so memory stays bounded and progress is reported between blocks.
  const std::size_t block = 4096;
  std::vector<RenderedRecord> rendered;
  for (std::size_t begin = 0; begin < records.size(); begin += block) {
    const std::size_t end = std::min(records.size(), begin + block);
    rendered.assign(end - begin, RenderedRecord{});
#pragma omp parallel for schedule(dynamic, 16)
    for (std::size_t i = begin; i < end; ++i) rendered[i - begin] = render(records[i], chat_template);
    for (std::size_t i = begin; i < end; ++i) {
      const RenderedRecord& r = rendered[i - begin];
      if (format == JsonlFormat::Prompt) {
        writer.add(r.first.tokens, r.first.loss_mask, records[i].answer.value_or(""));
      } else {
        writer.add(r.first.tokens, r.first.loss_mask);
        if (format == JsonlFormat::Preference) writer.add(r.second.tokens, r.second.loss_mask);
      }
    }
    if (progress) progress(end, records.size());
  }
  return writer;
}

std::vector<JsonlRecord> brown_records(std::span<const BrownDocument> docs) {
  std::vector<JsonlRecord> records;
  records.reserve(docs.size());
  for (std::size_t i = 0; i < docs.size(); ++i) {
    JsonlRecord record;
    record.format = JsonlFormat::Text;
    record.line = static_cast<std::int64_t>(i + 1);
    record.text = docs[i].text;
    records.push_back(std::move(record));
  }
  return records;
}

std::vector<JsonlRecord> definition_records(std::span<const DefinitionPair> pairs) {
  std::vector<JsonlRecord> records;
  records.reserve(pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    JsonlRecord record;
    record.format = JsonlFormat::Completion;
    record.line = static_cast<std::int64_t>(i + 1);
    record.prompt = pairs[i].prompt;
    record.completion = pairs[i].completion;
    records.push_back(std::move(record));
  }
  return records;
}

std::uint64_t tokenizer_fingerprint(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return fingerprint_path(path);
  if (fs::exists(path / "tokenizer.json", ec)) return fingerprint_path(path / "tokenizer.json");
  Fingerprint fp;
  fp.add_u64(fingerprint_path(path / "encoder.json"));
  fp.add_u64(fingerprint_path(path / "vocab.bpe"));
  return fp.value();
}

std::vector<std::string> record_texts(std::span<const JsonlRecord> records) {
  std::vector<std::string> texts;
  for (const auto& record : records) {
    for (const std::string* field : {&record.text, &record.prompt, &record.completion, &record.chosen, &record.rejected}) {
      if (!field->empty()) texts.push_back(*field);
    }
    if (record.answer && !record.answer->empty()) texts.push_back(*record.answer);
    for (const auto& message : record.messages) texts.push_back(message.content);
  }
  return texts;
}

}  // namespace loom::io
