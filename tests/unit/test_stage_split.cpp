// stage_layer_counts: the pipeline's default split balances forward FLOPs with the LM head
// counted on the last stage, the override is taken as given, and bad requests name the
// setting.
#define BOOST_TEST_MODULE stage_split
#include <boost/test/unit_test.hpp>

#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>

#include "train/engine.h"

using namespace loom;
using Stages = std::vector<std::int64_t>;

namespace {

model::ModelConfig tiny_llama(std::int64_t layers, std::int64_t vocab) {
  return model::ModelConfig::from_family(model::Family::Llama, vocab, 256, layers, 8, 4, 688, 128);
}

void require_error(const std::function<void()>& fn, const std::string& text) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    BOOST_CHECK_MESSAGE(std::string(e.what()).find(text) != std::string::npos, e.what());
    return;
  }
  BOOST_ERROR("no error; expected one containing: " + text);
}

}  // namespace

BOOST_AUTO_TEST_CASE(large_head_gives_the_last_stage_fewer_layers) {
  // A 4096-token head costs about 1.3 layers of the tiny Llama: 8 layers split 5 + 3.
  BOOST_TEST(train::stage_layer_counts(tiny_llama(8, 4096), 2, {}) == Stages({5, 3}), boost::test_tools::per_element());
  // With a small vocabulary the head is cheap and the split is even.
  BOOST_TEST(train::stage_layer_counts(tiny_llama(8, 64), 2, {}) == Stages({4, 4}), boost::test_tools::per_element());
  BOOST_TEST(train::stage_layer_counts(tiny_llama(8, 64), 1, {}) == Stages({8}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(every_stage_gets_a_layer_and_all_layers_are_placed) {
  for (std::int64_t layers : {4, 7, 12, 13}) {
    for (int pp : {1, 2, 3, 4}) {
      for (std::int64_t vocab : {64, 4096, 50304}) {
        const Stages s = train::stage_layer_counts(tiny_llama(layers, vocab), pp, {});
        BOOST_TEST(s.size() == static_cast<std::size_t>(pp));
        BOOST_TEST(std::accumulate(s.begin(), s.end(), std::int64_t{0}) == layers);
        for (std::int64_t n : s) BOOST_TEST(n >= 1);
      }
    }
  }
  // GPT-2 124M: its 50257-token head costs about 4.5 layers (at T = 1024), so with 4
  // stages the head's stage keeps one layer and the others share eleven.
  const Stages gpt2 = train::stage_layer_counts(model::ModelConfig::gpt2_124m(), 4, {});
  BOOST_TEST(gpt2.back() == 1);
  for (std::size_t i = 0; i + 1 < gpt2.size(); ++i) BOOST_TEST((gpt2[i] == 3 || gpt2[i] == 4));
}

BOOST_AUTO_TEST_CASE(override_and_errors) {
  BOOST_TEST(train::stage_layer_counts(tiny_llama(8, 64), 2, {6, 2}) == Stages({6, 2}), boost::test_tools::per_element());
  require_error([] { train::stage_layer_counts(tiny_llama(8, 64), 2, {6, 1}); },
                "parallel.stage_layers has 2 entries summing to 7; expected 2 (one per stage) summing to model.n_layers = 8");
  require_error([] { train::stage_layer_counts(tiny_llama(8, 64), 2, {8, 0}); }, "entries must be >= 1");
  require_error([] { train::stage_layer_counts(tiny_llama(2, 64), 3, {}); }, "the model has 2 layers, fewer than the 3");
}
