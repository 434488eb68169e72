// Dataset preparation shared by loom-prep and tests: records (from JSONL or the built-in
// corpora) → rendered token sequences → a TokenStoreWriter.
//
// How each JSONL format becomes store documents (ChatTemplate gives the masks):
//   text        one document, render_text                       kind "text"
//   completion  one document, render_completion                 kind "sft"
//   chat        one document, render_chat                       kind "sft"
//   preference  two documents per record: 2i = prompt+chosen,   kind "preference"
//               2i+1 = prompt+rejected (render_completion each)
//   prompt      one document: encode(prompt), mask 0, no eos;    kind "prompt"
//               the answer (or "") goes to the store's answers
// A file must hold one format, so a store has one kind.
//
// Thread safety: tokenize_records renders records on all OpenMP threads (the tokenizer
// is const and thread-safe) and appends them in record order, so output is deterministic.
#pragma once

#include "io/data/brown.h"
#include "io/data/chat_template.h"
#include "io/data/jsonl.h"
#include "io/data/token_store.h"
#include "io/data/wordnet.h"

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace loom::io {

// The store kind a JSONL format produces (Auto is an error).
std::string_view store_kind_for(JsonlFormat format);

// Called now and then with (records done, records total).
using ProgressCallback = std::function<void(std::size_t, std::size_t)>;

// Renders every record (all of one format) and adds the documents to a writer whose info
// is `info` with kind and vocab_size filled in from the records and the template.
TokenStoreWriter tokenize_records(std::span<const JsonlRecord> records, const ChatTemplate& chat_template,
                                  TokenStoreInfo info, const ProgressCallback& progress = {});

// Built-in corpora as records: Brown documents → text; definition pairs → completion.
std::vector<JsonlRecord> brown_records(std::span<const BrownDocument> docs);
std::vector<JsonlRecord> definition_records(std::span<const DefinitionPair> pairs);

// Fingerprint of the files Tokenizer::load(path) reads: the file itself, or a directory's
// tokenizer.json, or its encoder.json + vocab.bpe.
std::uint64_t tokenizer_fingerprint(const std::filesystem::path& path);

// Every string a record holds (text, prompt, completion, …, message contents), for
// training a tokenizer on the data it will encode.
std::vector<std::string> record_texts(std::span<const JsonlRecord> records);

}  // namespace loom::io
