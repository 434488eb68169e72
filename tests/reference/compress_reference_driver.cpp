// compress-reference-driver IN.json OUT.json — runs loom's GPTQ and SparseGPT
// (compress/algo) on the cases test_compress_reference.py writes and writes loom's results for
// it to compare with PyTorch.
// IN:  {"hessians": {key: [n·n doubles]}, "cases": [{"name", "method": "gptq" | "sparsegpt",
//       "rows", "n", "w": [rows·n], "hessian": key, "percdamp", "block_size",
//       gptq: "bits", "group_size", "symmetric", "act_order";
//       sparsegpt: "sparsity", "prune_n", "prune_m"}]}
// OUT: {"cases": [{"name", "u": [n·n], "perm": [n] (empty: natural), "dead": [n], "damp",
//       "w": [rows·n] (final weights), "loss", gptq: "codes", "scales", "zeros";
//       sparsegpt: "keep"}]} in the same order.
// The Python script owns the meaning of each case; this file only maps JSON to the C++ API.
// Exit 1 with a message naming the case and key on any bad input.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "compress/algo/gptq.h"
#include "compress/algo/hessian.h"
#include "compress/algo/selection.h"
#include "compress/algo/sparsegpt.h"

using nlohmann::json;
using namespace loom;
using namespace loom::compress;

namespace {

const json& field(const json& c, const char* key) {
  if (!c.contains(key))
    throw std::runtime_error("case '" + c.value("name", std::string("?")) + "': missing key '" + key + "'");
  return c.at(key);
}

json run_case(const json& c, const json& hessians) {
  const std::string method = field(c, "method").get<std::string>();
  const std::int64_t rows = field(c, "rows").get<std::int64_t>(), n = field(c, "n").get<std::int64_t>();
  std::vector<float> w = field(c, "w").get<std::vector<float>>();
  const std::string key = field(c, "hessian").get<std::string>();
  if (!hessians.contains(key))
    throw std::runtime_error("case '" + c.at("name").get<std::string>() + "': no hessian '" + key + "'");
  const std::vector<double> h = hessians.at(key).get<std::vector<double>>();
  if (static_cast<std::int64_t>(w.size()) != rows * n || static_cast<std::int64_t>(h.size()) != n * n)
    throw std::runtime_error("case '" + c.at("name").get<std::string>() + "': 'w' or hessian '" + key +
                             "' does not match rows x n = " + std::to_string(rows) + " x " + std::to_string(n));
  const bool act_order = c.value("act_order", false);
  const double percdamp = field(c, "percdamp").get<double>();
  const HessianFactor f = factor_hessian(h.data(), n, percdamp, act_order);
  json out = {{"u", f.u}, {"perm", f.perm}, {"dead", f.dead}, {"damp", f.damp}};
  double loss = 0.0;
  if (method == "gptq") {
    GptqOptions o;
    o.scheme = {field(c, "bits").get<int>(), field(c, "group_size").get<std::int64_t>(),
                field(c, "symmetric").get<bool>()};
    o.percdamp = percdamp;
    o.block_size = field(c, "block_size").get<std::int64_t>();
    o.act_order = act_order;
    const quant::QuantizedMatrix q = gptq_quantize(w.data(), rows, n, 0, f, o, {}, &loss);
    std::vector<int> codes(static_cast<std::size_t>(rows * n));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t col = 0; col < n; ++col) codes[static_cast<std::size_t>(r * n + col)] = q.code(r, col);
    out["codes"] = codes;
    out["scales"] = q.scales;
    out["zeros"] = q.zeros;
  } else if (method == "sparsegpt") {
    SparseGptOptions o;
    o.sparsity = field(c, "sparsity").get<double>();
    o.prune_n = field(c, "prune_n").get<int>();
    o.prune_m = field(c, "prune_m").get<int>();
    o.percdamp = percdamp;
    o.block_size = field(c, "block_size").get<std::int64_t>();
    out["keep"] = sparsegpt_prune(w.data(), rows, n, 0, f, o, Selector{}, {}, &loss);
  } else {
    throw std::runtime_error("case '" + c.at("name").get<std::string>() + "': unknown method '" + method +
                             "' (expected gptq or sparsegpt)");
  }
  out["w"] = w;
  out["loss"] = loss;
  out["name"] = c.at("name");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: compress-reference-driver IN.json OUT.json\n";
    return 2;
  }
  try {
    std::ifstream in(argv[1]);
    if (!in) throw std::runtime_error(std::string("cannot open ") + argv[1]);
    const json input = json::parse(in);
    json cases = json::array();
    for (const json& c : field(input, "cases")) {
      try {
        cases.push_back(run_case(c, field(input, "hessians")));
      } catch (const std::exception& e) {
        const std::string what = e.what();
        if (what.rfind("case '", 0) == 0) throw;
        throw std::runtime_error("case '" + c.value("name", std::string("?")) + "': " + what);
      }
    }
    std::ofstream out(argv[2]);
    if (!out) throw std::runtime_error(std::string("cannot write ") + argv[2]);
    out << json{{"cases", cases}}.dump();
  } catch (const std::exception& e) {
    std::cerr << "compress-reference-driver: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
