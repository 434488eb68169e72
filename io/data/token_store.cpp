#include "io/data/token_store.h"

#include "io/data/fingerprint.h"
#include "io/h5/h5_check.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace loom::io {

namespace {

namespace fs = std::filesystem;
using h5::H5Handle;

constexpr hsize_t kChunkElements = hsize_t{1} << 18;

std::uint64_t content_fingerprint(const std::vector<std::int64_t>& offsets, const std::vector<std::int32_t>& tokens,
                                  const std::vector<std::uint8_t>& mask, const std::vector<std::string>& answers) {
  Fingerprint fp;
  fp.add_span(std::span<const std::int64_t>(offsets));
  fp.add_span(std::span<const std::int32_t>(tokens));
  fp.add_span(std::span<const std::uint8_t>(mask));
  for (const auto& answer : answers) {
    fp.add_u64(answer.size());
    fp.add(answer);
  }
  return fp.value();
}

template <typename T>
void write_number_attribute(hid_t object, const char* name, T value, hid_t file_type, hid_t memory_type,
                            const std::string& ctx) {
  H5Handle space(H5_CHECK(H5Screate(H5S_SCALAR), ctx), H5Sclose);
  H5Handle attribute(H5_CHECK(H5Acreate2(object, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT), ctx), H5Aclose);
  H5_CHECK(H5Awrite(attribute, memory_type, &value), ctx);
}

template <typename T = std::int64_t>
T read_int_attribute(hid_t object, const char* name, const std::string& ctx, hid_t memory_type = H5T_NATIVE_INT64) {
  H5Handle attribute = h5::open_attribute(object, name, ctx);
  H5Handle stored(H5_CHECK(H5Aget_type(attribute), ctx), H5Tclose);
  if (H5Tget_class(stored) != H5T_INTEGER) throw std::runtime_error(ctx + ": attribute \"" + name + "\" must be an integer");
  T value = 0;
  H5_CHECK(H5Aread(attribute, memory_type, &value), ctx);
  return value;
}

template <typename T>
void write_dataset(hid_t file, const char* name, const std::vector<T>& values, hid_t file_type, hid_t memory_type,
                   const std::string& ctx, bool compress = true) {
  const hsize_t n = values.size();
  H5Handle space(H5_CHECK(H5Screate_simple(1, &n, nullptr), ctx), H5Sclose);
  H5Handle create(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), ctx), H5Pclose);
  if (n > 0 && compress) {
    const hsize_t chunk = std::min(n, kChunkElements);
    H5_CHECK(H5Pset_chunk(create, 1, &chunk), ctx);
    H5_CHECK(H5Pset_shuffle(create), ctx);
    H5_CHECK(H5Pset_deflate(create, 4), ctx);
    H5_CHECK(H5Pset_fletcher32(create), ctx);  // last, so it checks the stored (compressed) bytes
  }
  H5Handle dataset(H5_CHECK(H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, create, H5P_DEFAULT), ctx), H5Dclose);
  if (n > 0) H5_CHECK(H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), ctx);
}

H5Handle open_dataset(hid_t file, const char* name, hsize_t& length, const std::string& ctx) {
  if (H5_CHECK(H5Lexists(file, name, H5P_DEFAULT), ctx) <= 0) {
    throw std::runtime_error(ctx + ": missing dataset \"/" + std::string(name) + "\" (is this a loom token store?)");
  }
  H5Handle dataset(H5_CHECK(H5Dopen2(file, name, H5P_DEFAULT), ctx), H5Dclose);
  H5Handle space(H5_CHECK(H5Dget_space(dataset), ctx), H5Sclose);
  if (H5_CHECK(H5Sget_simple_extent_ndims(space), ctx) != 1) {
    throw std::runtime_error(ctx + ": dataset \"/" + std::string(name) + "\" must be one-dimensional");
  }
  H5_CHECK(H5Sget_simple_extent_dims(space, &length, nullptr), ctx);
  return dataset;
}

template <typename T>
std::vector<T> read_dataset(hid_t file, const char* name, hid_t memory_type, std::int64_t expected_length,
                            const std::string& ctx) {
  hsize_t length = 0;
  H5Handle dataset = open_dataset(file, name, length, ctx);
  H5Handle stored(H5_CHECK(H5Dget_type(dataset), ctx), H5Tclose);
  if (H5Tget_class(stored) != H5T_INTEGER) {
    throw std::runtime_error(ctx + ": dataset \"/" + std::string(name) + "\" must hold integers");
  }
  if (static_cast<std::int64_t>(length) != expected_length) {
    throw std::runtime_error(ctx + ": dataset \"/" + std::string(name) + "\" has " + std::to_string(length) +
                             " elements, expected " + std::to_string(expected_length) +
                             " from the file's attributes (truncated or inconsistent file)");
  }
  std::vector<T> values(length);
  if (length > 0) H5_CHECK(H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), ctx);
  return values;
}

// Answers are stored like documents: their UTF-8 bytes concatenated plus offsets, so they
// get the same chunk checksums and fingerprint as the tokens.
void write_answers(hid_t file, const std::vector<std::string>& answers, const std::string& ctx) {
  std::vector<std::uint8_t> bytes;
  std::vector<std::int64_t> offsets{0};
  for (const auto& answer : answers) {
    bytes.insert(bytes.end(), answer.begin(), answer.end());
    offsets.push_back(static_cast<std::int64_t>(bytes.size()));
  }
  write_dataset(file, "answer_offsets", offsets, H5T_STD_I64LE, H5T_NATIVE_INT64, ctx);
  write_dataset(file, "answer_bytes", bytes, H5T_STD_U8LE, H5T_NATIVE_UINT8, ctx);
}

std::vector<std::string> read_answers(hid_t file, std::int64_t n_documents, const std::string& ctx) {
  const auto offsets = read_dataset<std::int64_t>(file, "answer_offsets", H5T_NATIVE_INT64, n_documents + 1, ctx);
  hsize_t length = 0;
  open_dataset(file, "answer_bytes", length, ctx);
  if (offsets.front() != 0 || offsets.back() != static_cast<std::int64_t>(length)) {
    throw std::runtime_error(ctx + ": /answer_offsets must run from 0 to the length of /answer_bytes");
  }
  const auto bytes = read_dataset<std::uint8_t>(file, "answer_bytes", H5T_NATIVE_UINT8, offsets.back(), ctx);
  std::vector<std::string> answers;
  answers.reserve(static_cast<std::size_t>(n_documents));
  for (std::int64_t i = 0; i < n_documents; ++i) {
    if (offsets[i + 1] < offsets[i]) throw std::runtime_error(ctx + ": /answer_offsets decreases at index " + std::to_string(i + 1));
    answers.emplace_back(reinterpret_cast<const char*>(bytes.data()) + offsets[i], offsets[i + 1] - offsets[i]);
  }
  return answers;
}

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;  // best effort: some file systems refuse directory fds
  ::fsync(fd);
  ::close(fd);
}

H5Handle open_file(const fs::path& file, const std::string& ctx) {
  h5::silence_automatic_errors();
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw std::runtime_error(ctx + ": no such token store file");
  if (H5Fis_hdf5(file.c_str()) <= 0) {
    throw std::runtime_error(ctx + ": not an HDF5 file (truncated or corrupted? rebuild it with loom-prep --force)");
  }
  return H5Handle(H5_CHECK(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), ctx), H5Fclose);
}

TokenStoreSummary read_attributes(hid_t file, const std::string& ctx) {
  TokenStoreSummary summary;
  summary.format_version = static_cast<int>(read_int_attribute(file, "format_version", ctx));
  if (summary.format_version != kTokenStoreFormatVersion) {
    throw std::runtime_error(ctx + ": token store format_version " + std::to_string(summary.format_version) +
                             " is not supported (this loom reads version " +
                             std::to_string(kTokenStoreFormatVersion) + "); rebuild it with loom-prep");
  }
  summary.info.kind = h5::read_string_attribute(file, "kind", ctx);
  summary.info.source = h5::read_string_attribute(file, "source", ctx);
  summary.info.tokenizer = h5::read_string_attribute(file, "tokenizer", ctx);
  summary.info.tokenizer_fingerprint = h5::read_string_attribute(file, "tokenizer_fingerprint", ctx);
  summary.info.inputs_fingerprint = h5::read_string_attribute(file, "inputs_fingerprint", ctx);
  summary.info.vocab_size = static_cast<std::int32_t>(read_int_attribute(file, "vocab_size", ctx));
  summary.n_documents = read_int_attribute(file, "n_documents", ctx);
  summary.n_tokens = read_int_attribute(file, "n_tokens", ctx);
  summary.content_fingerprint =
      read_int_attribute<std::uint64_t>(file, "content_fingerprint", ctx, H5T_NATIVE_UINT64);
  summary.has_answers = H5_CHECK(H5Lexists(file, "answer_offsets", H5P_DEFAULT), ctx) > 0;
  if (summary.n_documents < 0 || summary.n_tokens < 0) {
    throw std::runtime_error(ctx + ": negative n_documents or n_tokens attribute");
  }
  return summary;
}

}  // namespace

std::string TokenStore::name() const { return path_.empty() ? std::string("<in-memory token store>") : path_.string(); }

std::int64_t TokenStore::document_length(std::int64_t i) const {
  if (i < 0 || i >= n_documents()) {
    throw std::out_of_range(name() + ": document " + std::to_string(i) + " out of range [0, " +
                            std::to_string(n_documents()) + ")");
  }
  return offsets_[i + 1] - offsets_[i];
}

DocumentView TokenStore::document(std::int64_t i) const {
  const std::int64_t length = document_length(i);
  const auto begin = static_cast<std::size_t>(offsets_[i]);
  return {std::span<const std::int32_t>(tokens_).subspan(begin, length),
          std::span<const std::uint8_t>(loss_mask_).subspan(begin, length)};
}

const std::string& TokenStore::answer(std::int64_t i) const {
  if (answers_.empty()) throw std::logic_error(name() + ": this token store has no answers");
  document_length(i);
  return answers_[i];
}

TokenStoreSummary TokenStore::read_summary(const fs::path& file) {
  const std::string ctx = file.string();
  H5Handle handle = open_file(file, ctx);
  return read_attributes(handle, ctx);
}

std::shared_ptr<const TokenStore> TokenStore::open(const fs::path& file) {
  const std::string ctx = file.string();
  H5Handle handle = open_file(file, ctx);
  const TokenStoreSummary summary = read_attributes(handle, ctx);

  std::shared_ptr<TokenStore> store(new TokenStore());
  store->path_ = file;
  store->info_ = summary.info;
  store->offsets_ = read_dataset<std::int64_t>(handle, "offsets", H5T_NATIVE_INT64, summary.n_documents + 1, ctx);
  store->tokens_ = read_dataset<std::int32_t>(handle, "tokens", H5T_NATIVE_INT32, summary.n_tokens, ctx);
  store->loss_mask_ = read_dataset<std::uint8_t>(handle, "loss_mask", H5T_NATIVE_UINT8, summary.n_tokens, ctx);
  if (summary.has_answers) store->answers_ = read_answers(handle, summary.n_documents, ctx);

  const auto& offsets = store->offsets_;
  if (offsets.front() != 0 || offsets.back() != summary.n_tokens) {
    throw std::runtime_error(ctx + ": /offsets must start at 0 and end at n_tokens = " +
                             std::to_string(summary.n_tokens) + ", got " + std::to_string(offsets.front()) + " … " +
                             std::to_string(offsets.back()));
  }
  for (std::size_t i = 1; i < offsets.size(); ++i) {
    if (offsets[i] < offsets[i - 1]) {
      throw std::runtime_error(ctx + ": /offsets decreases at index " + std::to_string(i));
    }
  }
  store->fingerprint_ = content_fingerprint(store->offsets_, store->tokens_, store->loss_mask_, store->answers_);
  if (store->fingerprint_ != summary.content_fingerprint) {
    throw std::runtime_error(ctx + ": content fingerprint " + fingerprint_hex(store->fingerprint_) +
                             " does not match the recorded " + fingerprint_hex(summary.content_fingerprint) +
                             " (the file is corrupted; rebuild it with loom-prep --force)");
  }
  return store;
}

TokenStoreWriter::TokenStoreWriter(TokenStoreInfo info) {
  if (info.kind.empty()) throw std::invalid_argument("TokenStoreWriter: info.kind must be set");
  store_.info_ = std::move(info);
}

void TokenStoreWriter::append(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> loss_mask) {
  if (tokens.size() != loss_mask.size()) {
    throw std::invalid_argument("TokenStoreWriter: document " + std::to_string(n_documents()) + " has " +
                                std::to_string(tokens.size()) + " tokens but a loss mask of " +
                                std::to_string(loss_mask.size()));
  }
  const std::int32_t vocab = store_.info_.vocab_size;
  for (std::int32_t token : tokens) {
    if (token < 0 || (vocab > 0 && token >= vocab)) {
      throw std::invalid_argument("TokenStoreWriter: document " + std::to_string(n_documents()) + " has token " +
                                  std::to_string(token) + " outside [0, vocab_size = " + std::to_string(vocab) + ")");
    }
  }
  store_.tokens_.insert(store_.tokens_.end(), tokens.begin(), tokens.end());
  for (std::uint8_t m : loss_mask) store_.loss_mask_.push_back(m != 0 ? 1 : 0);
  store_.offsets_.push_back(static_cast<std::int64_t>(store_.tokens_.size()));
}

void TokenStoreWriter::add(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> loss_mask) {
  if (!store_.answers_.empty()) {
    throw std::invalid_argument("TokenStoreWriter: earlier documents have answers, so every document needs one");
  }
  append(tokens, loss_mask);
}

void TokenStoreWriter::add(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> loss_mask,
                           std::string_view answer) {
  if (store_.answers_.size() != static_cast<std::size_t>(n_documents())) {
    throw std::invalid_argument("TokenStoreWriter: earlier documents have no answers, so none can have one");
  }
  append(tokens, loss_mask);
  store_.answers_.emplace_back(answer);
}

std::shared_ptr<const TokenStore> TokenStoreWriter::to_store() const {
  auto store = std::make_shared<TokenStore>(store_);
  store->fingerprint_ = content_fingerprint(store->offsets_, store->tokens_, store->loss_mask_, store->answers_);
  return store;
}

std::uint64_t TokenStoreWriter::write(const fs::path& file) const {
  h5::silence_automatic_errors();
  const fs::path temporary = fs::path(file.string() + ".tmp");
  const std::string ctx = temporary.string();
  if (file.has_parent_path()) fs::create_directories(file.parent_path());
  std::error_code ec;
  fs::remove(temporary, ec);

  const std::uint64_t fingerprint =
      content_fingerprint(store_.offsets_, store_.tokens_, store_.loss_mask_, store_.answers_);
  {
    // The 1.8 file format (and newer) checksums every piece of metadata, so a flipped bit
    // anywhere in the file is caught by HDF5 (metadata, chunk fletcher32) or by the
    // content fingerprint.
    H5Handle access(H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), ctx), H5Pclose);
    H5_CHECK(H5Pset_libver_bounds(access, H5F_LIBVER_V18, H5F_LIBVER_LATEST), ctx);
    H5Handle handle(H5_CHECK(H5Fcreate(temporary.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access), ctx), H5Fclose);
    const TokenStoreInfo& info = store_.info_;
    write_number_attribute<std::int32_t>(handle, "format_version", kTokenStoreFormatVersion, H5T_STD_I32LE,
                                         H5T_NATIVE_INT32, ctx);
    h5::write_string_attribute(handle, "kind", info.kind, ctx);
    h5::write_string_attribute(handle, "source", info.source, ctx);
    h5::write_string_attribute(handle, "tokenizer", info.tokenizer, ctx);
    h5::write_string_attribute(handle, "tokenizer_fingerprint", info.tokenizer_fingerprint, ctx);
    h5::write_string_attribute(handle, "inputs_fingerprint", info.inputs_fingerprint, ctx);
    write_number_attribute<std::int32_t>(handle, "vocab_size", info.vocab_size, H5T_STD_I32LE, H5T_NATIVE_INT32, ctx);
    write_number_attribute<std::int64_t>(handle, "n_documents", n_documents(), H5T_STD_I64LE, H5T_NATIVE_INT64, ctx);
    write_number_attribute<std::int64_t>(handle, "n_tokens", n_tokens(), H5T_STD_I64LE, H5T_NATIVE_INT64, ctx);
    write_number_attribute<std::uint64_t>(handle, "content_fingerprint", fingerprint, H5T_STD_U64LE,
                                          H5T_NATIVE_UINT64, ctx);
    write_dataset(handle, "tokens", store_.tokens_, H5T_STD_I32LE, H5T_NATIVE_INT32, ctx);
    write_dataset(handle, "offsets", store_.offsets_, H5T_STD_I64LE, H5T_NATIVE_INT64, ctx);
    write_dataset(handle, "loss_mask", store_.loss_mask_, H5T_STD_U8LE, H5T_NATIVE_UINT8, ctx);
    if (!store_.answers_.empty()) write_answers(handle, store_.answers_, ctx);
    H5_CHECK(H5Fflush(handle, H5F_SCOPE_GLOBAL), ctx);
  }
  fsync_path(temporary, O_RDONLY);
  fs::rename(temporary, file);
  fsync_path(file.has_parent_path() ? file.parent_path() : fs::path("."), O_RDONLY | O_DIRECTORY);
  return fingerprint;
}

}  // namespace loom::io
