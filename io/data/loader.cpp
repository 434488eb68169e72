#include "io/data/loader.h"

#include "io/data/fingerprint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace loom::io {

std::vector<std::int64_t> epoch_permutation(std::int64_t n, std::uint64_t seed, std::int64_t epoch) {
  std::vector<std::int64_t> permutation(static_cast<std::size_t>(n));
  std::iota(permutation.begin(), permutation.end(), std::int64_t{0});
  const std::uint64_t stream = mix64(mix64(seed) ^ static_cast<std::uint64_t>(epoch));
  for (std::int64_t i = n - 1; i > 0; --i) {
    const std::uint64_t r = mix64(stream + static_cast<std::uint64_t>(i));
    const auto j = static_cast<std::int64_t>(
        (static_cast<unsigned __int128>(r) * static_cast<unsigned __int128>(i + 1)) >> 64);
    std::swap(permutation[i], permutation[j]);
  }
  return permutation;
}

void to_json(nlohmann::json& out, const LoaderState& state) {
  out = nlohmann::json{{"seed", state.seed},
                       {"epoch", state.epoch},
                       {"cursor", state.cursor},
                       {"store_fingerprint", fingerprint_hex(state.store_fingerprint)},
                       {"samples_per_epoch", state.samples_per_epoch}};
}

void from_json(const nlohmann::json& in, LoaderState& state) {
  if (!in.is_object()) throw std::runtime_error("loader state: expected a JSON object, got " + in.dump());
  auto get = [&](const char* key) -> const nlohmann::json& {
    const auto it = in.find(key);
    if (it == in.end()) throw std::runtime_error(std::string("loader state: missing key \"") + key + "\"");
    return *it;
  };
  auto integer = [&](const char* key) -> const nlohmann::json& {
    const auto& value = get(key);
    if (!value.is_number_integer()) {
      throw std::runtime_error(std::string("loader state: key \"") + key + "\" must be an integer, got " + value.dump());
    }
    return value;
  };
  state.seed = integer("seed").get<std::uint64_t>();
  state.epoch = integer("epoch").get<std::int64_t>();
  state.cursor = integer("cursor").get<std::int64_t>();
  state.samples_per_epoch = in.contains("samples_per_epoch") ? integer("samples_per_epoch").get<std::int64_t>() : 0;
  state.store_fingerprint = 0;
  if (in.contains("store_fingerprint")) {
    const auto& value = get("store_fingerprint");
    if (!value.is_string()) throw std::runtime_error("loader state: key \"store_fingerprint\" must be a hex string");
    state.store_fingerprint = parse_fingerprint_hex(value.get<std::string>());
  }
}

DataLoader::DataLoader(std::shared_ptr<const TokenStore> store, LoaderOptions options)
    : store_(std::move(store)), options_(options), seed_(options.seed) {
  if (!store_) throw std::invalid_argument("DataLoader: no token store");
  auto fail = [&](const std::string& message) { throw std::invalid_argument("DataLoader: " + message); };
  if (options_.seq_len < 1) fail("seq_len must be >= 1, got " + std::to_string(options_.seq_len));
  if (options_.dp_size < 1) fail("dp_size must be >= 1, got " + std::to_string(options_.dp_size));
  if (options_.dp_rank < 0 || options_.dp_rank >= options_.dp_size) {
    fail("dp_rank " + std::to_string(options_.dp_rank) + " outside [0, dp_size = " + std::to_string(options_.dp_size) + ")");
  }
  if (options_.global_batch < 1 || options_.global_batch % options_.dp_size != 0) {
    fail("global_batch (" + std::to_string(options_.global_batch) + ") must be a positive multiple of dp_size (" +
         std::to_string(options_.dp_size) + ")");
  }
  if (options_.group < 1) fail("group must be >= 1");
  if (options_.group > 1) {
    if (options_.pack) fail("group > 1 needs pack = false (grouped documents become separate rows)");
    if ((options_.global_batch / options_.dp_size) % options_.group != 0) {
      fail("rows per rank (" + std::to_string(options_.global_batch / options_.dp_size) +
           ") must be a multiple of group (" + std::to_string(options_.group) + ")");
    }
    if (store_->n_documents() % options_.group != 0) {
      fail("the store's " + std::to_string(store_->n_documents()) + " documents do not split into groups of " +
           std::to_string(options_.group));
    }
  }
  if (store_->n_documents() == 0) fail("the token store " + store_->path().string() + " has no documents");
  if (options_.pack) {
    samples_per_epoch_ = (store_->n_tokens() - 1) / options_.seq_len;
    if (samples_per_epoch_ < 1) {
      fail("the token store holds " + std::to_string(store_->n_tokens()) + " tokens, fewer than seq_len + 1 = " +
           std::to_string(options_.seq_len + 1) + " needed for one packed sample");
    }
  } else {
    samples_per_epoch_ = store_->n_documents();
  }
}

const DataLoader::EpochOrder& DataLoader::order(std::int64_t epoch) {
  if (const auto it = orders_.find(epoch); it != orders_.end()) return it->second;
  while (orders_.size() >= 2) orders_.erase(orders_.begin());
  EpochOrder order;
  const std::int64_t n = store_->n_documents();
  const std::int64_t group = options_.group;
  std::vector<std::int64_t> blocks;
  if (options_.shuffle) {
    blocks = epoch_permutation(n / group, seed_, epoch);
  } else {
    blocks.resize(static_cast<std::size_t>(n / group));
    std::iota(blocks.begin(), blocks.end(), std::int64_t{0});
  }
  order.documents.reserve(static_cast<std::size_t>(n));
  for (std::int64_t block : blocks) {
    for (std::int64_t k = 0; k < group; ++k) order.documents.push_back(block * group + k);
  }
  if (options_.pack) {
    order.starts.resize(order.documents.size() + 1, 0);
    for (std::size_t i = 0; i < order.documents.size(); ++i) {
      order.starts[i + 1] = order.starts[i] + store_->document_length(order.documents[i]);
    }
  }
  return orders_.emplace(epoch, std::move(order)).first->second;
}

void DataLoader::fill_packed_row(const EpochOrder& order, std::int64_t sample, std::int32_t* ids,
                                 std::int32_t* targets, std::int64_t& document) {
  const std::int64_t seq_len = options_.seq_len;
  const std::int64_t start = sample * seq_len;
  auto position = static_cast<std::size_t>(
      std::upper_bound(order.starts.begin(), order.starts.end(), start) - order.starts.begin() - 1);
  document = order.documents[position];
  auto within = static_cast<std::size_t>(start - order.starts[position]);
  DocumentView view = store_->document(document);
  for (std::int64_t j = 0; j <= seq_len; ++j) {
    while (within >= view.tokens.size()) {  // loops past empty documents too
      view = store_->document(order.documents[++position]);
      within = 0;
    }
    const std::int32_t token = view.tokens[within];
    if (j < seq_len) ids[j] = token;
    if (j > 0) targets[j - 1] = view.loss_mask[within] ? token : -1;
    ++within;
  }
}

void DataLoader::fill_document_row(const EpochOrder& order, std::int64_t sample, std::int32_t* ids,
                                   std::int32_t* targets, std::int64_t& document) {
  const std::int64_t seq_len = options_.seq_len;
  document = order.documents[static_cast<std::size_t>(sample)];
  const DocumentView view = store_->document(document);
  const auto length = std::min<std::int64_t>(static_cast<std::int64_t>(view.tokens.size()), seq_len + 1);
  for (std::int64_t j = 0; j < seq_len; ++j) {
    ids[j] = j < length ? view.tokens[j] : options_.pad_id;
    targets[j] = j + 1 < length && view.loss_mask[j + 1] ? view.tokens[j + 1] : -1;
  }
}

Batch DataLoader::next() {
  const std::int64_t rows = options_.global_batch / options_.dp_size;
  const std::int64_t seq_len = options_.seq_len;
  Batch batch;
  batch.ids = Tensor::empty({rows, seq_len}, DType::I32);
  batch.targets = Tensor::empty({rows, seq_len}, DType::I32);
  batch.documents.resize(static_cast<std::size_t>(rows));
  std::int32_t* ids = batch.ids.data<std::int32_t>();
  std::int32_t* targets = batch.targets.data<std::int32_t>();

  const std::int64_t first = cursor_ + options_.dp_rank * rows;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t epoch = epoch_ + (first + r) / samples_per_epoch_;
    const std::int64_t sample = (first + r) % samples_per_epoch_;
    const EpochOrder& epoch_order = order(epoch);
    if (options_.pack) {
      fill_packed_row(epoch_order, sample, ids + r * seq_len, targets + r * seq_len, batch.documents[r]);
    } else {
      fill_document_row(epoch_order, sample, ids + r * seq_len, targets + r * seq_len, batch.documents[r]);
    }
  }
  batch.target_tokens = std::count_if(targets, targets + rows * seq_len, [](std::int32_t t) { return t >= 0; });

  const std::int64_t advanced = cursor_ + options_.global_batch;
  epoch_ += advanced / samples_per_epoch_;
  cursor_ = advanced % samples_per_epoch_;
  return batch;
}

LoaderState DataLoader::state() const {
  return LoaderState{seed_, epoch_, cursor_, store_->fingerprint(), samples_per_epoch_};
}

void DataLoader::restore(const LoaderState& state) {
  const std::string where = store_->path().empty() ? std::string("the token store") : store_->path().string();
  if (state.store_fingerprint != 0 && state.store_fingerprint != store_->fingerprint()) {
    throw std::runtime_error("DataLoader::restore: the state was saved on data with fingerprint " +
                             fingerprint_hex(state.store_fingerprint) + " but " + where + " has " +
                             fingerprint_hex(store_->fingerprint()) + " (the data changed since the checkpoint)");
  }
  if (state.samples_per_epoch != 0 && state.samples_per_epoch != samples_per_epoch_) {
    throw std::runtime_error("DataLoader::restore: the state has " + std::to_string(state.samples_per_epoch) +
                             " samples per epoch but this loader has " + std::to_string(samples_per_epoch_) +
                             " (seq_len, pack or the data changed since the checkpoint)");
  }
  if (state.epoch < 0 || state.cursor < 0 || state.cursor >= samples_per_epoch_) {
    throw std::runtime_error("DataLoader::restore: epoch " + std::to_string(state.epoch) + ", cursor " +
                             std::to_string(state.cursor) + " out of range (samples per epoch: " +
                             std::to_string(samples_per_epoch_) + ")");
  }
  if (state.seed != seed_) orders_.clear();
  seed_ = state.seed;
  epoch_ = state.epoch;
  cursor_ = state.cursor;
}

double DataLoader::epoch_progress() const {
  return static_cast<double>(epoch_) + static_cast<double>(cursor_) / static_cast<double>(samples_per_epoch_);
}

}  // namespace loom::io
