// slice_boxes (core/model/parameter_layout.h): every element of every box maps to the global
// element that global_element_index names, and the owner boxes of all tp ranks cover each
// global element of each tensor exactly once. Checked for both families with kv heads split
// and replicated, for whole slices and for arbitrary element ranges (ZeRO-1 shards).
#define BOOST_TEST_MODULE slice_boxes
#include <boost/test/unit_test.hpp>

#include <random>
#include <vector>

#include "core/model/parameter_layout.h"

using namespace loom;
using namespace loom::model;

namespace {

ModelConfig llama(std::int64_t heads, std::int64_t kv_heads) {
  ModelConfig c;
  c.family = Family::Llama;
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.d_ff = 48;
  c.max_seq_len = 16;
  c.tie_embeddings = false;
  c.bias = true;
  return c;
}

ModelConfig gpt2() {
  ModelConfig c;
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.d_ff = 64;
  c.max_seq_len = 16;
  return c;
}

std::int64_t numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// Checks one range of one slice; adds the owner boxes' elements to `covered`.
void check_range(const ParameterSpec& spec, int tp_rank, int tp_size, std::int64_t begin, std::int64_t end,
                 std::vector<int>& covered) {
  const std::int64_t global_cols = spec.global_shape.size() > 1 ? spec.global_shape[1] : 1;
  std::int64_t expected_offset = begin;
  for (const SliceBox& box : slice_boxes(spec, tp_rank, tp_size, begin, end)) {
    BOOST_REQUIRE_EQUAL(box.local_offset, expected_offset);
    for (std::int64_t r = 0; r < box.rows; ++r) {
      for (std::int64_t c = 0; c < box.cols; ++c) {
        const std::int64_t local = box.local_offset + r * box.cols + c;
        const std::int64_t global = (box.row0 + r) * global_cols + box.col0 + c;
        BOOST_REQUIRE_EQUAL(global_element_index(spec, local, tp_rank, tp_size), global);
        if (box.tp_owner) ++covered[static_cast<std::size_t>(global)];
      }
    }
    expected_offset += box.numel();
  }
  BOOST_REQUIRE_EQUAL(expected_offset, end);
}

void check_model(const ModelConfig& config, int tp_size, bool random_ranges) {
  const auto whole = parameter_specs(config, ShardSpec::whole(config), HeadKind::LM);
  std::mt19937 rng(7);
  for (std::size_t i = 0; i < whole.size(); ++i) {
    std::vector<int> covered(static_cast<std::size_t>(numel(whole[i].global_shape)), 0);
    for (int r = 0; r < tp_size; ++r) {
      const auto specs = parameter_specs(config, ShardSpec{0, -1, r, tp_size}, HeadKind::LM);
      const ParameterSpec& spec = specs[i];
      BOOST_REQUIRE_EQUAL(spec.name, whole[i].name);
      const std::int64_t n = numel(spec.shape);
      if (!random_ranges) {
        check_range(spec, r, tp_size, 0, n, covered);
        continue;
      }
      // Cut the slice at random points, as ZeRO-1 shard edges fall anywhere.
      std::vector<std::int64_t> cuts = {0, n};
      for (int k = 0; k < 4; ++k) cuts.push_back(std::uniform_int_distribution<std::int64_t>(0, n)(rng));
      std::sort(cuts.begin(), cuts.end());
      for (std::size_t k = 0; k + 1 < cuts.size(); ++k) check_range(spec, r, tp_size, cuts[k], cuts[k + 1], covered);
    }
    for (std::size_t e = 0; e < covered.size(); ++e) {
      if (covered[e] != 1) BOOST_FAIL(whole[i].name << " element " << e << " saved " << covered[e] << " times");
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(whole_slices_cover_every_element_once) {
  for (int tp : {1, 2, 4}) {
    check_model(llama(4, 2), tp, false);  // tp 4: kv heads replicated
    check_model(llama(4, 4), tp, false);
    check_model(gpt2(), tp, false);
  }
}

BOOST_AUTO_TEST_CASE(arbitrary_ranges_cover_every_element_once) {
  for (int tp : {1, 2, 4}) {
    check_model(llama(4, 1), tp, true);
    check_model(gpt2(), tp, true);
  }
}

BOOST_AUTO_TEST_CASE(range_outside_the_slice_is_refused) {
  const ModelConfig config = gpt2();
  const auto specs = parameter_specs(config, ShardSpec::whole(config), HeadKind::LM);
  BOOST_CHECK_THROW(slice_boxes(specs[0], 0, 1, 0, numel(specs[0].shape) + 1), std::out_of_range);
}
