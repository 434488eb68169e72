// HDF5 token store: the tokenized documents of one dataset split in one file, with a loss
// mask per token. Layout (format_version 1; docs/data-format.md is the reference):
//
//   /tokens      int32  [n_tokens]          every document's tokens, concatenated
//   /offsets     int64  [n_documents + 1]   document i = tokens[offsets[i], offsets[i+1])
//   /loss_mask   uint8  [n_tokens]          1 = the model is trained to predict this token
//   /answer_offsets int64 [n_documents + 1]  optional (prompt stores): answer i is
//   /answer_bytes   uint8 [total bytes]        answer_bytes[answer_offsets[i], …[i+1]) (UTF-8)
//   attributes on /: format_version=1, kind, source, tokenizer, tokenizer_fingerprint,
//                    inputs_fingerprint, vocab_size, n_documents, n_tokens,
//                    content_fingerprint
//
// Strings are fixed-length UTF-8 attributes. Every byte HDF5 reads is covered by a
// checksum (1.8+ file format metadata checksums, fletcher32 on chunks) or by
// content_fingerprint.
// Writing goes to "<file>.tmp", is flushed and fsynced, then renamed over <file>, so a
// reader sees either the old file or the complete new one. Opening verifies the format
// version, every shape and offset, and recomputes content_fingerprint; any mismatch is an
// error naming the file.
//
// Ownership: TokenStore holds the whole store in memory (a few bytes per token) and is
// immutable once opened: share it as std::shared_ptr<const TokenStore> across threads.
// TokenStoreWriter is single-threaded. Neither calls MPI; each rank opens its own copy.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace loom::io {

inline constexpr int kTokenStoreFormatVersion = 1;

// Store kinds loom-prep writes.
inline constexpr std::string_view kKindText = "text";              // pre-training text
inline constexpr std::string_view kKindSft = "sft";                // completion or chat
inline constexpr std::string_view kKindPreference = "preference";  // docs 2i (chosen), 2i+1 (rejected)
inline constexpr std::string_view kKindPrompt = "prompt";          // generation prompts (+ answers)

// What the writer records about where the store came from.
struct TokenStoreInfo {
  std::string kind;                   // one of the kinds above
  std::string source;                 // human-readable origin ("brown train split", a path)
  std::string tokenizer;              // path of the tokenizer used
  std::string tokenizer_fingerprint;  // fingerprint_hex() of the tokenizer file(s)
  std::string inputs_fingerprint;     // loom-prep's fingerprint of all its inputs + options
  std::int32_t vocab_size = 0;        // tokenizer vocabulary size; every token is below it
};

// The attributes alone, read without loading the datasets.
struct TokenStoreSummary {
  TokenStoreInfo info;
  int format_version = 0;
  std::int64_t n_documents = 0;
  std::int64_t n_tokens = 0;
  std::uint64_t content_fingerprint = 0;
  bool has_answers = false;
};

struct DocumentView {
  std::span<const std::int32_t> tokens;
  std::span<const std::uint8_t> loss_mask;  // same length as tokens
};

class TokenStore {
 public:
  // Reads and verifies a store; throws std::runtime_error naming the file.
  static std::shared_ptr<const TokenStore> open(const std::filesystem::path& file);
  static TokenStoreSummary read_summary(const std::filesystem::path& file);

  std::int64_t n_documents() const { return static_cast<std::int64_t>(offsets_.size()) - 1; }
  std::int64_t n_tokens() const { return static_cast<std::int64_t>(tokens_.size()); }
  std::int64_t document_length(std::int64_t i) const;
  // Throws std::out_of_range naming the store for i outside [0, n_documents).
  DocumentView document(std::int64_t i) const;
  bool has_answers() const { return !answers_.empty(); }
  const std::string& answer(std::int64_t i) const;

  // XXH64 over offsets, tokens, loss_mask (native little-endian bytes) and, when present,
  // each answer's u64 length and bytes.
  std::uint64_t fingerprint() const { return fingerprint_; }
  const TokenStoreInfo& info() const { return info_; }
  // The file it was read from; empty for a store built in memory.
  const std::filesystem::path& path() const { return path_; }

 private:
  friend class TokenStoreWriter;
  TokenStore() = default;
  std::string name() const;

  std::filesystem::path path_;
  TokenStoreInfo info_;
  std::vector<std::int32_t> tokens_;
  std::vector<std::int64_t> offsets_{0};
  std::vector<std::uint8_t> loss_mask_;
  std::vector<std::string> answers_;
  std::uint64_t fingerprint_ = 0;
};

class TokenStoreWriter {
 public:
  explicit TokenStoreWriter(TokenStoreInfo info);

  // Appends one document. The mask must have the tokens' length; tokens must be in
  // [0, info.vocab_size) when vocab_size > 0. Throws std::invalid_argument otherwise.
  void add(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> loss_mask);
  // With a reference answer (prompt stores). Either every document has one or none does.
  void add(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> loss_mask,
           std::string_view answer);

  std::int64_t n_documents() const { return store_.n_documents(); }
  std::int64_t n_tokens() const { return store_.n_tokens(); }

  // Writes the store atomically (see above), creating the parent directory; returns the
  // content fingerprint.
  std::uint64_t write(const std::filesystem::path& file) const;
  // The store as a reader would see it, without touching the disk (tests, tools).
  std::shared_ptr<const TokenStore> to_store() const;

 private:
  // Validates, then appends (so a rejected document leaves the writer unchanged).
  void append(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> loss_mask);

  TokenStore store_;
};

}  // namespace loom::io
