// align-reference-driver IN.json OUT.json — runs loom's alignment losses (core/align) on the
// cases test_align_reference.py writes and writes loom's outputs for it to compare with
// PyTorch. IN: {"cases": [{"name", "op", <scalar parameters>, <f32 arrays>}]}; OUT:
// {"cases": [{"name", "outputs": {key: number | [numbers]}}]} in the same order. The
// Python script owns the meaning of each case; this file only maps JSON to the C++ API.
// Exit 1 with a message naming the case and key on any bad input.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/align/losses.h"
#include "core/align/rl.h"

using nlohmann::json;
using namespace loom::align;

namespace {

const json& field(const json& c, const char* key) {
  if (!c.contains(key))
    throw std::runtime_error("case '" + c.value("name", std::string("?")) + "': missing key '" + key + "'");
  return c.at(key);
}

template <typename T>
std::vector<T> array_of(const json& c, const char* key) {
  return field(c, key).get<std::vector<T>>();
}

json to_json(const std::vector<float>& v) { return json(std::vector<double>(v.begin(), v.end())); }

json run_case(const json& c) {
  const std::string op = field(c, "op").get<std::string>();
  json out;
  if (op == "rm") {
    const auto rc = array_of<float>(c, "r_chosen"), rr = array_of<float>(c, "r_rejected");
    std::vector<float> dc(rc.size()), dr(rr.size());
    const RmStats s = rm_loss(rc, rr, field(c, "margin").get<float>(), dc, dr);
    out = {{"loss", s.loss}, {"accuracy", s.accuracy}, {"mean_margin", s.mean_margin},
           {"d_chosen", to_json(dc)}, {"d_rejected", to_json(dr)}};
  } else if (op == "preference") {
    const PreferenceLoss kind = parse_preference_loss(field(c, "kind").get<std::string>());
    const auto pc = array_of<float>(c, "policy_chosen"), pr = array_of<float>(c, "policy_rejected");
    const auto rc = array_of<float>(c, "reference_chosen"), rr = array_of<float>(c, "reference_rejected");
    const auto lc = array_of<int>(c, "length_chosen"), lr = array_of<int>(c, "length_rejected");
    PreferenceParams params;
    params.label_smoothing = field(c, "label_smoothing").get<double>();
    params.simpo_gamma = field(c, "simpo_gamma").get<double>();
    std::vector<float> gc(pc.size()), gr(pr.size());
    const PreferenceStats s =
        preference_loss(kind, field(c, "beta").get<double>(), params, {pc, pr, rc, rr, lc, lr}, {gc, gr});
    out = {{"loss", s.loss}, {"reward_chosen", s.reward_chosen}, {"reward_rejected", s.reward_rejected},
           {"reward_margin", s.reward_margin}, {"accuracy", s.accuracy},
           {"d_policy_chosen", to_json(gc)}, {"d_policy_rejected", to_json(gr)}};
  } else if (op == "gae") {
    const auto rewards = array_of<float>(c, "rewards"), values = array_of<float>(c, "values");
    const auto mask = array_of<std::uint8_t>(c, "mask");
    std::vector<float> adv(rewards.size()), ret(rewards.size());
    gae(rewards, values, mask, field(c, "seq_len").get<std::size_t>(), field(c, "gamma").get<double>(),
        field(c, "lambda").get<double>(), adv, ret);
    out = {{"advantages", to_json(adv)}, {"returns", to_json(ret)}};
  } else if (op == "whiten") {
    auto adv = array_of<float>(c, "advantages");
    whiten(adv, array_of<std::uint8_t>(c, "mask"), field(c, "eps").get<double>());
    out = {{"whitened", to_json(adv)}};
  } else if (op == "ppo_policy") {
    const auto lnew = array_of<float>(c, "logp_new");
    std::vector<float> d(lnew.size());
    const PolicyLossStats s = ppo_policy_loss(lnew, array_of<float>(c, "logp_old"), array_of<float>(c, "advantages"),
                                              array_of<std::uint8_t>(c, "mask"), field(c, "clip_eps").get<double>(), d);
    out = {{"loss", s.loss}, {"clip_fraction", s.clip_fraction}, {"approx_kl", s.approx_kl},
           {"d_logp_new", to_json(d)}};
  } else if (op == "ppo_value") {
    const auto v = array_of<float>(c, "values_new");
    std::vector<float> d(v.size());
    const ValueLossStats s = ppo_value_loss(v, array_of<float>(c, "values_old"), array_of<float>(c, "returns"),
                                            array_of<std::uint8_t>(c, "mask"), field(c, "clip_eps").get<double>(), d);
    out = {{"loss", s.loss}, {"clip_fraction", s.clip_fraction}, {"d_values", to_json(d)}};
  } else if (op == "kl_k1" || op == "kl_k3") {
    const auto logp = array_of<float>(c, "logp"), ref = array_of<float>(c, "logp_ref");
    std::vector<float> kl(logp.size()), d(logp.size());
    (op == "kl_k1" ? kl_k1 : kl_k3)(logp, ref, kl, d);
    out = {{"kl", to_json(kl)}, {"d_logp", to_json(d)}};
  } else if (op == "kl_controller") {
    AdaptiveKlController controller(field(c, "init_coef").get<double>(), field(c, "target").get<double>(),
                                    field(c, "horizon").get<double>());
    const auto kls = array_of<double>(c, "kls");
    const auto steps = array_of<std::int64_t>(c, "n_steps");
    std::vector<double> coefs;
    for (std::size_t i = 0; i < kls.size(); ++i) {
      controller.update(kls[i], steps.at(i));
      coefs.push_back(controller.value());
    }
    out = {{"coefs", coefs}};
  } else if (op == "grpo_advantages") {
    const auto rewards = array_of<float>(c, "rewards");
    std::vector<float> adv(rewards.size());
    grpo_advantages(rewards, field(c, "group_size").get<std::size_t>(), field(c, "eps").get<double>(), adv);
    out = {{"advantages", to_json(adv)}};
  } else if (op == "grpo_loss") {
    const auto lnew = array_of<float>(c, "logp_new");
    std::vector<float> d(lnew.size());
    const GrpoLossStats s =
        grpo_loss(lnew, array_of<float>(c, "logp_old"), array_of<float>(c, "logp_ref"),
                  array_of<float>(c, "seq_advantages"), array_of<std::uint8_t>(c, "mask"),
                  field(c, "clip_eps").get<double>(), field(c, "beta").get<double>(), d);
    out = {{"loss", s.loss}, {"clip_fraction", s.clip_fraction}, {"kl", s.kl}, {"d_logp_new", to_json(d)}};
  } else {
    throw std::runtime_error("unknown op '" + op + "'");
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: align-reference-driver IN.json OUT.json\n";
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
    std::cerr << "align-reference-driver: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
