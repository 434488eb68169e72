// wanda-reference-driver IN.json OUT.json — runs loom's calibration statistics, pruning masks
// and SmoothQuant (compress/algo) on the cases test_wanda_reference.py writes, and writes
// loom's outputs for it to compare with PyTorch.
//
// IN:  {"cases": [{"name", "rows", "cols", "w" [rows*cols], "w2_rows", "w2" [w2_rows*cols],
//                  "samples": [{"tokens", "x" [tokens*cols]}], "sparsity", "alphas": [...],
//                  "norm_weight" [cols], "norm_bias" [cols]}]}
// OUT: {"cases": [{"name", "outputs": {key: [numbers]}}]} in the same order, keys:
//   absmax, sq_sum, wanda, wanda_2_4, magnitude, magnitude_2_4 (keep-masks, 1 = kept),
//   smooth_scales_<alpha>, smoothed_norm_weight_<alpha>, smoothed_norm_bias_<alpha>,
//   smoothed_w_<alpha>, smoothed_w2_<alpha>, act_int8, act_scales (per-token int8 of the
//   first sample).
// The Python script owns the meaning of each case; this file only maps JSON to the C++ API.
// Exit 1 with a message naming the case and key on any bad input.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/algo/input_stats.h"
#include "compress/algo/pruning.h"
#include "compress/algo/smoothquant.h"

using nlohmann::json;
using namespace loom::compress;

namespace {

const json& field(const json& c, const char* key) {
  if (!c.contains(key)) throw std::runtime_error(std::string("missing key '") + key + "'");
  return c.at(key);
}

template <typename T>
std::vector<T> array_of(const json& c, const char* key, std::size_t expected) {
  auto v = field(c, key).get<std::vector<T>>();
  if (v.size() != expected)
    throw std::runtime_error(std::string("key '") + key + "': " + std::to_string(v.size()) + " values, expected " +
                             std::to_string(expected));
  return v;
}

template <typename T>
json to_json(const std::vector<T>& v) {
  return json(std::vector<double>(v.begin(), v.end()));
}

json run_case(const json& c) {
  const auto rows = field(c, "rows").get<std::int64_t>(), cols = field(c, "cols").get<std::int64_t>();
  const auto w2_rows = field(c, "w2_rows").get<std::int64_t>();
  const auto w = array_of<float>(c, "w", static_cast<std::size_t>(rows * cols));
  const auto w2 = array_of<float>(c, "w2", static_cast<std::size_t>(w2_rows * cols));
  const double sparsity = field(c, "sparsity").get<double>();

  std::vector<std::vector<float>> xs;
  std::vector<std::int64_t> tokens;
  for (const json& s : field(c, "samples")) {
    tokens.push_back(field(s, "tokens").get<std::int64_t>());
    xs.push_back(array_of<float>(s, "x", static_cast<std::size_t>(tokens.back() * cols)));
  }
  InputStatsAccumulator acc(cols, false);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) acc.observe_absmax(xs[i].data(), tokens[i]), total += tokens[i];
  acc.begin_sums(acc.absmax(), total);
  for (std::size_t i = 0; i < xs.size(); ++i) acc.add_sample(xs[i].data(), tokens[i]);
  const InputStats stats = acc.finish();

  const Selector local;
  json out;
  out["absmax"] = to_json(stats.absmax);
  out["sq_sum"] = to_json(stats.sq_sum);
  out["wanda"] = to_json(wanda_mask(w.data(), rows, cols, 0, cols, stats.sq_sum, sparsity, local));
  out["wanda_2_4"] = to_json(nm_mask(wanda_metric(w.data(), rows, cols, stats.sq_sum).data(), rows, cols, 2, 4));
  out["magnitude"] = to_json(magnitude_mask(w.data(), rows, cols, rows * cols, sparsity, local));
  out["magnitude_2_4"] = to_json(nm_mask(magnitude_metric(w.data(), rows, cols).data(), rows, cols, 2, 4));

  std::vector<float> weight_max = column_absmax(w.data(), rows, cols);
  const std::vector<float> w2_max = column_absmax(w2.data(), w2_rows, cols);
  for (std::int64_t j = 0; j < cols; ++j) weight_max[j] = std::max(weight_max[j], w2_max[j]);
  for (const json& a : field(c, "alphas")) {
    const double alpha = a.get<double>();
    const std::string suffix = std::string(1, '_').append(a.dump());
    const std::vector<float> s = smooth_scales(stats.absmax, weight_max, alpha);
    auto norm_weight = array_of<float>(c, "norm_weight", static_cast<std::size_t>(cols));
    auto norm_bias = array_of<float>(c, "norm_bias", static_cast<std::size_t>(cols));
    std::vector<float> sw = w, sw2 = w2;
    const std::vector<SmoothedLinear> linears{{sw.data(), rows}, {sw2.data(), w2_rows}};
    apply_smoothing(norm_weight, norm_bias.data(), s, linears);
    out["smooth_scales" + suffix] = to_json(s);
    out["smoothed_norm_weight" + suffix] = to_json(norm_weight);
    out["smoothed_norm_bias" + suffix] = to_json(norm_bias);
    out["smoothed_w" + suffix] = to_json(sw);
    out["smoothed_w2" + suffix] = to_json(sw2);
  }

  std::vector<std::int8_t> q(xs.at(0).size());
  std::vector<float> scales(static_cast<std::size_t>(tokens[0]));
  quantize_activations_per_token(xs[0].data(), tokens[0], cols, q.data(), scales.data());
  out["act_int8"] = to_json(q);
  out["act_scales"] = to_json(scales);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: wanda-reference-driver IN.json OUT.json\n";
    return 2;
  }
  try {
    std::ifstream in(argv[1]);
    if (!in) throw std::runtime_error(std::string("cannot open ") + argv[1]);
    const json input = json::parse(in);
    json cases = json::array();
    for (const json& c : field(input, "cases")) {
      try {
        cases.push_back({{"name", c.at("name")}, {"outputs", run_case(c)}});
      } catch (const std::exception& e) {
        throw std::runtime_error("case '" + c.value("name", std::string("?")) + "': " + e.what());
      }
    }
    std::ofstream out(argv[2]);
    out << json{{"cases", cases}}.dump() << '\n';
    if (!out) throw std::runtime_error(std::string("cannot write ") + argv[2]);
  } catch (const std::exception& e) {
    std::cerr << "wanda-reference-driver: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
