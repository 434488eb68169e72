#include "eval/metrics.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "io/record/fingerprint.h"

namespace loom::eval {
namespace {

nlohmann::json metric(double value, std::optional<double> stderr_value, bool higher_is_better) {
  return {{"value", value},
          {"stderr", stderr_value ? nlohmann::json(*stderr_value) : nlohmann::json(nullptr)},
          {"higher_is_better", higher_is_better}};
}

const nlohmann::json& result_of(const TaskConfig& task, const RequestResults& results, std::int64_t doc,
                                std::int64_t part) {
  const auto it = results.find({doc, part});
  if (it == results.end()) {
    throw std::runtime_error("task " + task.name + ": no result for document " + std::to_string(doc) + " part " +
                             std::to_string(part) + " (the evaluation did not finish)");
  }
  return it->second;
}

std::string prompt_hash(const Document& d) { return record::hex64(record::xxh64(d.context)); }

// Ratio estimator R = Σ a / Σ b over documents and its standard error by the delta method.
std::pair<double, std::optional<double>> ratio_and_stderr(const std::vector<double>& a, const std::vector<double>& b) {
  double sa = 0, sb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) sa += a[i], sb += b[i];
  const double r = sa / sb;
  const auto n = static_cast<double>(a.size());
  if (a.size() < 2) return {r, std::nullopt};
  double ss = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ss += (a[i] - r * b[i]) * (a[i] - r * b[i]);
  const double mean_b = sb / n;
  return {r, std::sqrt(ss / (n - 1) / n) / mean_b};
}

TaskScores perplexity(const TaskConfig& task, const std::vector<Document>& documents, const RequestResults& results) {
  TaskScores scores;
  std::vector<double> logp, tokens, words, bytes;
  for (const Document& d : documents) {
    double lp = 0;
    std::int64_t n = 0;
    for (std::int64_t part = 0;; ++part) {
      const auto it = results.find({d.id, part});
      if (it == results.end()) break;
      lp += it->second.at("logp").get<double>();
      n += it->second.at("tokens").get<std::int64_t>();
    }
    if (n == 0) result_of(task, results, d.id, 0);  // throws: nothing was scored
    const std::int64_t w = count_words(d.text);
    logp.push_back(lp), tokens.push_back(static_cast<double>(n)), words.push_back(static_cast<double>(w));
    bytes.push_back(static_cast<double>(d.text.size()));
    scores.sample_records.push_back({{"doc", d.id}, {"prompt_hash", prompt_hash(d)}, {"target", nullptr},
                                     {"response", nullptr},
                                     {"scores", {{"logp", lp}, {"tokens", n}, {"words", w}, {"bytes", d.text.size()}}}});
  }
  std::vector<double> neg(logp.size());
  for (std::size_t i = 0; i < logp.size(); ++i) neg[i] = -logp[i];
  const auto [per_word, se_word] = ratio_and_stderr(neg, words);
  const auto [per_token, se_token] = ratio_and_stderr(neg, tokens);
  const auto [per_byte, se_byte] = ratio_and_stderr(neg, bytes);
  const auto times = [](std::optional<double> se, double factor) {
    return se ? std::optional<double>(*se * factor) : std::nullopt;
  };
  scores.samples = static_cast<std::int64_t>(documents.size());
  scores.metrics["word_perplexity"] = metric(std::exp(per_word), times(se_word, std::exp(per_word)), false);
  scores.metrics["token_perplexity"] = metric(std::exp(per_token), times(se_token, std::exp(per_token)), false);
  scores.metrics["bits_per_byte"] = metric(per_byte / std::numbers::ln2, times(se_byte, 1 / std::numbers::ln2), false);
  return scores;
}

TaskScores multiple_choice(const TaskConfig& task, const std::vector<Document>& documents,
                           const RequestResults& results) {
  TaskScores scores;
  std::vector<double> acc, acc_norm;
  for (const Document& d : documents) {
    std::vector<double> lls;
    std::int64_t best = 0, best_norm = 0;
    double best_value = -INFINITY, best_norm_value = -INFINITY;
    for (std::size_t c = 0; c < d.choices.size(); ++c) {
      const double ll = result_of(task, results, d.id, static_cast<std::int64_t>(c)).at("logp").get<double>();
      const double norm = ll / static_cast<double>(std::max<std::size_t>(1, d.choices[c].size()));
      lls.push_back(ll);
      if (ll > best_value) best_value = ll, best = static_cast<std::int64_t>(c);
      if (norm > best_norm_value) best_norm_value = norm, best_norm = static_cast<std::int64_t>(c);
    }
    acc.push_back(best == d.gold ? 1.0 : 0.0);
    acc_norm.push_back(best_norm == d.gold ? 1.0 : 0.0);
    scores.sample_records.push_back(
        {{"doc", d.id}, {"prompt_hash", prompt_hash(d)}, {"target", d.gold}, {"response", best},
         {"scores", {{"acc", acc.back()}, {"acc_norm", acc_norm.back()}, {"logp", lls}, {"response_norm", best_norm}}}});
  }
  const auto [a, se_a] = mean_and_stderr(acc);
  const auto [an, se_an] = mean_and_stderr(acc_norm);
  scores.samples = static_cast<std::int64_t>(documents.size());
  scores.metrics["acc"] = metric(a, se_a, true);
  scores.metrics["acc_norm"] = metric(an, se_an, true);
  return scores;
}

TaskScores generate_until(const TaskConfig& task, const std::vector<Document>& documents,
                          const RequestResults& results) {
  TaskScores scores;
  std::vector<double> em;
  for (const Document& d : documents) {
    const std::string response = result_of(task, results, d.id, 0).at("response").get<std::string>();
    const std::string answer = normalize_answer(extract_answer(response, task.regex), task.normalize);
    const std::string target = normalize_answer(d.target, task.normalize);
    em.push_back(answer == target ? 1.0 : 0.0);
    scores.sample_records.push_back({{"doc", d.id}, {"prompt_hash", prompt_hash(d)}, {"target", d.target},
                                     {"response", response},
                                     {"scores", {{"exact_match", em.back()}, {"extracted", answer}}}});
  }
  const auto [value, se] = mean_and_stderr(em);
  scores.samples = static_cast<std::int64_t>(documents.size());
  scores.metrics["exact_match"] = metric(value, se, true);
  return scores;
}

TaskScores reward(const TaskConfig& task, const std::vector<Document>& documents, const RequestResults& results) {
  TaskScores scores;
  std::vector<double> rewards, baseline, wins;
  const bool with_baseline = !task.baseline_model.empty();
  for (const Document& d : documents) {
    const nlohmann::json& r = result_of(task, results, d.id, 0);
    nlohmann::json sample_scores = {{"reward", r.at("reward")}};
    rewards.push_back(r.at("reward").get<double>());
    if (with_baseline) {
      baseline.push_back(r.at("baseline_reward").get<double>());
      const double win = rewards.back() > baseline.back() ? 1.0 : rewards.back() == baseline.back() ? 0.5 : 0.0;
      wins.push_back(win);
      sample_scores["baseline_reward"] = baseline.back();
      sample_scores["baseline_response"] = r.at("baseline_response");
      sample_scores["win"] = win;
    }
    scores.sample_records.push_back({{"doc", d.id}, {"prompt_hash", prompt_hash(d)},
                                     {"target", d.target.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.target)},
                                     {"response", r.at("response")}, {"scores", sample_scores}});
  }
  scores.samples = static_cast<std::int64_t>(documents.size());
  const auto [mean, se] = mean_and_stderr(rewards);
  scores.metrics["reward"] = metric(mean, se, true);
  if (with_baseline) {
    const auto [bm, bse] = mean_and_stderr(baseline);
    const auto [w, wse] = mean_and_stderr(wins);
    scores.metrics["baseline_reward"] = metric(bm, bse, true);
    scores.metrics["win_rate"] = metric(w, wse, true);
  }
  return scores;
}

}  // namespace

std::pair<double, std::optional<double>> mean_and_stderr(const std::vector<double>& values) {
  if (values.empty()) return {NAN, std::nullopt};
  double sum = 0;
  for (const double v : values) sum += v;
  const auto n = static_cast<double>(values.size());
  const double mean = sum / n;
  if (values.size() < 2) return {mean, std::nullopt};
  double ss = 0;
  for (const double v : values) ss += (v - mean) * (v - mean);
  return {mean, std::sqrt(ss / (n - 1) / n)};
}

std::int64_t count_words(const std::string& text) {
  std::int64_t words = 0;
  bool in_word = false;
  for (const char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

TaskScores score_task(const TaskConfig& task, const std::vector<Document>& documents, const RequestResults& results) {
  switch (task.type) {
    case TaskType::Perplexity: return perplexity(task, documents, results);
    case TaskType::MultipleChoice: return multiple_choice(task, documents, results);
    case TaskType::GenerateUntil: return generate_until(task, documents, results);
    case TaskType::Reward: return reward(task, documents, results);
  }
  throw std::logic_error("score_task: unknown task type");
}

}  // namespace loom::eval
