// DataLoader: the epoch permutation, packing (targets shifted by one, masked where the loss
// mask is 0) against a naive reference over several epochs, unpacked rows and groups, dp
// slices that concatenate to the dp=1 batch, and save → restore (also across dp sizes).
#define BOOST_TEST_MODULE data_loader
#include <boost/test/unit_test.hpp>

#include "io/data/loader.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

using namespace loom::io;
using Ids = std::vector<std::int32_t>;

namespace {

// Documents of varied lengths whose tokens are all distinct (token = 1000·doc + position),
// so every position of a batch identifies where it came from. Every 5th token has no loss.
std::shared_ptr<const TokenStore> make_store(int documents = 23, int salt = 0) {
  TokenStoreInfo info;
  info.kind = std::string(kKindText);
  TokenStoreWriter writer(info);
  for (int d = 0; d < documents; ++d) {
    Ids tokens;
    std::vector<std::uint8_t> mask;
    const int length = 3 + (d * 7 + salt) % 11;
    for (int t = 0; t < length; ++t) {
      tokens.push_back(1000 * d + t);
      mask.push_back((d + t) % 5 != 0);
    }
    writer.add(tokens, mask);
  }
  return writer.to_store();
}

Ids row(const loom::Tensor& t, std::int64_t r) {
  const auto* p = t.data<std::int32_t>() + r * t.dim(1);
  return Ids(p, p + t.dim(1));
}

// The packed sample order written out directly from the definition in loader.h.
struct NaivePacked {
  const TokenStore& store;
  LoaderOptions options;

  std::pair<Ids, Ids> sample(std::int64_t global_index) const {
    Ids stream;
    std::vector<std::uint8_t> mask;
    std::int64_t epoch = 0;
    std::int64_t samples = (store.n_tokens() - 1) / options.seq_len;
    epoch = global_index / samples;
    const std::int64_t k = global_index % samples;
    for (std::int64_t d : epoch_permutation(store.n_documents(), options.seed, epoch)) {
      const auto doc = store.document(d);
      stream.insert(stream.end(), doc.tokens.begin(), doc.tokens.end());
      mask.insert(mask.end(), doc.loss_mask.begin(), doc.loss_mask.end());
    }
    Ids ids, targets;
    for (std::int64_t j = 0; j < options.seq_len; ++j) {
      const std::int64_t at = k * options.seq_len + j;
      ids.push_back(stream[at]);
      targets.push_back(mask[at + 1] ? stream[at + 1] : -1);
    }
    return {ids, targets};
  }
};

LoaderOptions packed_options(int dp_rank = 0, int dp_size = 1) {
  LoaderOptions options;
  options.seq_len = 8;
  options.global_batch = 4;
  options.seed = 1234;
  options.dp_rank = dp_rank;
  options.dp_size = dp_size;
  return options;
}

}  // namespace

BOOST_AUTO_TEST_CASE(epoch_permutation_is_a_deterministic_permutation) {
  const auto a = epoch_permutation(100, 7, 0);
  BOOST_TEST((std::set<std::int64_t>(a.begin(), a.end()).size() == 100u));
  BOOST_TEST(*std::min_element(a.begin(), a.end()) == 0);
  BOOST_TEST(*std::max_element(a.begin(), a.end()) == 99);
  BOOST_TEST((a == epoch_permutation(100, 7, 0)));
  BOOST_TEST((a != epoch_permutation(100, 7, 1)));
  BOOST_TEST((a != epoch_permutation(100, 8, 0)));
  BOOST_TEST((epoch_permutation(1, 7, 3) == std::vector<std::int64_t>{0}));
  BOOST_TEST(epoch_permutation(0, 7, 3).empty());
}

BOOST_AUTO_TEST_CASE(packed_without_shuffle_follows_the_document_stream) {
  const auto store = make_store();
  LoaderOptions options = packed_options();
  options.shuffle = false;
  DataLoader loader(store, options);
  const Batch batch = loader.next();
  BOOST_TEST((batch.ids.shape() == loom::Shape{4, 8}));
  BOOST_TEST((batch.targets.shape() == loom::Shape{4, 8}));
  // Document 0 has 3 tokens, document 1 has 10: the stream starts 0 1 2 1000 1001 …
  BOOST_TEST(row(batch.ids, 0) == (Ids{0, 1, 2, 1000, 1001, 1002, 1003, 1004}), boost::test_tools::per_element());
  // Targets are the next tokens; 1004 (d=1, t=4) and 2003 … have mask 0 where (d + t) % 5 == 0.
  BOOST_TEST(row(batch.targets, 0) == (Ids{1, 2, 1000, 1001, 1002, 1003, -1, 1005}), boost::test_tools::per_element());
  BOOST_TEST(row(batch.ids, 1).front() == 1005);  // windows overlap by one token: stride seq_len
  BOOST_TEST(batch.documents[0] == 0);
  BOOST_TEST(batch.documents[1] == 1);
  std::int64_t counted = 0;
  for (std::int64_t r = 0; r < 4; ++r) {
    const Ids ids = row(batch.ids, r), targets = row(batch.targets, r);
    for (int j = 0; j < 8; ++j) counted += targets[j] >= 0;
    for (int j = 0; j + 1 < 8; ++j) {
      if (targets[j] >= 0) BOOST_TEST(targets[j] == ids[j + 1]);
    }
  }
  BOOST_TEST(batch.target_tokens == counted);
}

BOOST_AUTO_TEST_CASE(packed_matches_naive_reference_across_epochs) {
  const auto store = make_store();
  // A small batch, and one larger than two epochs (so a batch spans three of them).
  for (const std::int64_t global_batch : {4, 64}) {
    LoaderOptions options = packed_options();
    options.global_batch = global_batch;
    DataLoader loader(store, options);
    const NaivePacked naive{*store, options};
    const std::int64_t samples = loader.samples_per_epoch();
    BOOST_TEST(samples == (store->n_tokens() - 1) / 8);
    BOOST_TEST_REQUIRE(samples < 32);
    const std::int64_t batches = 3 * samples / global_batch + 2;
    for (std::int64_t b = 0; b < batches; ++b) {
      const Batch batch = loader.next();
      for (std::int64_t r = 0; r < global_batch; ++r) {
        const auto [ids, targets] = naive.sample(b * global_batch + r);
        BOOST_TEST_CONTEXT("global_batch " << global_batch << " batch " << b << " row " << r) {
          BOOST_TEST(row(batch.ids, r) == ids, boost::test_tools::per_element());
          BOOST_TEST(row(batch.targets, r) == targets, boost::test_tools::per_element());
        }
      }
    }
    const LoaderState state = loader.state();
    BOOST_TEST(state.epoch == (batches * global_batch) / samples);
    BOOST_TEST(state.cursor == (batches * global_batch) % samples);
    BOOST_TEST(loader.epoch_progress() == static_cast<double>(batches * global_batch) / samples,
               boost::test_tools::tolerance(1e-12));
  }
}

BOOST_AUTO_TEST_CASE(dp_slices_concatenate_to_the_dp1_batch) {
  const auto store = make_store();
  DataLoader whole(store, packed_options());
  DataLoader rank0(store, packed_options(0, 2)), rank1(store, packed_options(1, 2));
  for (int b = 0; b < 25; ++b) {
    const Batch all = whole.next(), first = rank0.next(), second = rank1.next();
    BOOST_TEST((first.ids.shape() == loom::Shape{2, 8}));
    for (std::int64_t r = 0; r < 2; ++r) {
      BOOST_TEST(row(first.ids, r) == row(all.ids, r), boost::test_tools::per_element());
      BOOST_TEST(row(second.ids, r) == row(all.ids, r + 2), boost::test_tools::per_element());
      BOOST_TEST(row(first.targets, r) == row(all.targets, r), boost::test_tools::per_element());
      BOOST_TEST(row(second.targets, r) == row(all.targets, r + 2), boost::test_tools::per_element());
    }
    BOOST_TEST(first.target_tokens + second.target_tokens == all.target_tokens);
  }
  BOOST_TEST(rank0.state().cursor == whole.state().cursor);
  BOOST_TEST(rank1.state().epoch == whole.state().epoch);
}

BOOST_AUTO_TEST_CASE(save_and_restore_continue_at_the_same_global_samples) {
  const auto store = make_store();
  DataLoader original(store, packed_options());
  for (int b = 0; b < 7; ++b) original.next();
  const nlohmann::json saved = original.state();
  std::vector<Batch> expected;
  for (int b = 0; b < 9; ++b) expected.push_back(original.next());

  // Same layout, fresh loader with another seed in its options: the state's seed wins.
  LoaderOptions other_seed = packed_options();
  other_seed.seed = 99;
  DataLoader resumed(store, other_seed);
  resumed.restore(saved.get<LoaderState>());
  for (int b = 0; b < 9; ++b) {
    const Batch batch = resumed.next();
    for (std::int64_t r = 0; r < 4; ++r) BOOST_TEST(row(batch.ids, r) == row(expected[b].ids, r));
  }

  // Resumed on 4 dp ranks with one row each.
  std::vector<DataLoader> ranks;
  for (int rank = 0; rank < 4; ++rank) {
    ranks.emplace_back(store, packed_options(rank, 4));
    ranks.back().restore(saved.get<LoaderState>());
  }
  for (int b = 0; b < 9; ++b) {
    for (int rank = 0; rank < 4; ++rank) {
      const Batch batch = ranks[rank].next();
      BOOST_TEST(row(batch.ids, 0) == row(expected[b].ids, rank), boost::test_tools::per_element());
      BOOST_TEST(row(batch.targets, 0) == row(expected[b].targets, rank), boost::test_tools::per_element());
    }
  }
}

BOOST_AUTO_TEST_CASE(state_json_round_trip_and_errors) {
  const LoaderState state{42, 3, 17, 0xdeadbeefcafef00dULL, 55};
  const nlohmann::json json = state;
  BOOST_TEST(json.at("store_fingerprint").get<std::string>() == "0xdeadbeefcafef00d");
  const LoaderState back = json.get<LoaderState>();
  BOOST_TEST(back.seed == 42u);
  BOOST_TEST(back.epoch == 3);
  BOOST_TEST(back.cursor == 17);
  BOOST_TEST(back.store_fingerprint == 0xdeadbeefcafef00dULL);
  BOOST_TEST(back.samples_per_epoch == 55);
  BOOST_CHECK_EXCEPTION(nlohmann::json::parse(R"({"seed": 1, "epoch": 0})").get<LoaderState>(), std::runtime_error,
                        [](const std::runtime_error& e) {
                          return std::string(e.what()) == "loader state: missing key \"cursor\"";
                        });
  BOOST_CHECK_EXCEPTION(nlohmann::json::parse(R"({"seed": 1, "epoch": "x", "cursor": 0})").get<LoaderState>(),
                        std::runtime_error, [](const std::runtime_error& e) {
                          return std::string(e.what()) == "loader state: key \"epoch\" must be an integer, got \"x\"";
                        });
}

BOOST_AUTO_TEST_CASE(restore_refuses_changed_data_or_seq_len) {
  const auto store = make_store();
  DataLoader loader(store, packed_options());
  loader.next();
  const LoaderState state = loader.state();

  DataLoader other_data(make_store(23, 1), packed_options());
  BOOST_CHECK_EXCEPTION(other_data.restore(state), std::runtime_error, [](const std::runtime_error& e) {
    return std::string(e.what()).find("the data changed since the checkpoint") != std::string::npos;
  });
  LoaderOptions longer = packed_options();
  longer.seq_len = 16;
  DataLoader other_length(store, longer);
  BOOST_CHECK_EXCEPTION(other_length.restore(state), std::runtime_error, [](const std::runtime_error& e) {
    return std::string(e.what()).find("samples per epoch") != std::string::npos;
  });
  LoaderState bad = state;
  bad.cursor = loader.samples_per_epoch();
  BOOST_CHECK_THROW(loader.restore(bad), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(unpacked_rows_truncate_pad_and_keep_groups) {
  const auto store = make_store(24);
  LoaderOptions options;
  options.seq_len = 6;
  options.global_batch = 4;
  options.seed = 5;
  options.pack = false;
  options.shuffle = false;
  options.pad_id = 77;
  DataLoader loader(store, options);
  BOOST_TEST(loader.samples_per_epoch() == 24);
  const Batch batch = loader.next();
  // Document 0: 3 tokens → ids 0 1 2 then padding; targets 1 2 then -1 (0+1 has loss, 0+2 too).
  BOOST_TEST(row(batch.ids, 0) == (Ids{0, 1, 2, 77, 77, 77}), boost::test_tools::per_element());
  BOOST_TEST(row(batch.targets, 0) == (Ids{1, 2, -1, -1, -1, -1}), boost::test_tools::per_element());
  // Document 1: 10 tokens, truncated to seq_len + 1 = 7; 1004 has no loss.
  BOOST_TEST(row(batch.ids, 1) == (Ids{1000, 1001, 1002, 1003, 1004, 1005}), boost::test_tools::per_element());
  BOOST_TEST(row(batch.targets, 1) == (Ids{1001, 1002, 1003, -1, 1005, 1006}), boost::test_tools::per_element());

  options.shuffle = true;
  options.group = 2;
  DataLoader grouped(store, options);
  for (int b = 0; b < 15; ++b) {  // 60 rows: two and a half epochs of 24 documents
    const Batch g = grouped.next();
    for (std::int64_t r = 0; r < 4; r += 2) {
      BOOST_TEST(g.documents[r] % 2 == 0);
      BOOST_TEST(g.documents[r + 1] == g.documents[r] + 1);
    }
  }
  options.group = 5;
  BOOST_CHECK_THROW(DataLoader(store, options), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(options_are_validated) {
  const auto store = make_store();
  LoaderOptions options = packed_options(0, 3);
  BOOST_CHECK_EXCEPTION(DataLoader(store, options), std::invalid_argument, [](const std::invalid_argument& e) {
    return std::string(e.what()) == "DataLoader: global_batch (4) must be a positive multiple of dp_size (3)";
  });
  options = packed_options(2, 2);
  BOOST_CHECK_THROW(DataLoader(store, options), std::invalid_argument);
  options = packed_options();
  options.seq_len = store->n_tokens();
  BOOST_CHECK_EXCEPTION(DataLoader(store, options), std::invalid_argument, [](const std::invalid_argument& e) {
    return std::string(e.what()).find("fewer than seq_len + 1") != std::string::npos;
  });
}
