#include "train/rollout.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <sstream>

#include "core/mix64.h"
#include "io/data/verifier.h"
#include "train/generator.h"

namespace loom::train {

RolloutOptions rollout_options(const config::Config& config, const io::Tokenizer& tokenizer) {
  RolloutOptions options;
  options.seq_len = config.get_int("data.seq_len");
  options.generation.max_new_tokens = config.get_int("rollout.max_new_tokens");
  options.generation.sampling.temperature = static_cast<float>(config.get_float("rollout.temperature"));
  options.generation.sampling.top_k = config.get_int("rollout.top_k");
  options.generation.sampling.top_p = static_cast<float>(config.get_float("rollout.top_p"));
  options.generation.sampling.seed = static_cast<std::uint64_t>(config.get_int("train.seed"));
  options.generation.stop_tokens = {tokenizer.eos_id()};
  options.format_weight = config.get_float("rollout.format_weight");
  return options;
}

std::int64_t Rollout::completion_tokens_total() const {
  std::int64_t total = 0;
  for (const std::int64_t n : completion_tokens) total += n;
  return total;
}

Rollout make_rollout(Engine& policy, const io::TokenStore& prompts, const io::Tokenizer& tokenizer,
                     std::span<const std::int64_t> documents, int group, const RolloutOptions& options,
                     std::int64_t step, bool greedy) {
  const std::int64_t T = options.seq_len;
  std::vector<std::vector<std::int32_t>> inputs;
  model::GenerationConfig generation = options.generation;
  generation.sequence_ids.clear();
  generation.sampling.seed = mix64(options.generation.sampling.seed ^ mix64(static_cast<std::uint64_t>(step) + 1));
  if (greedy) generation.sampling.temperature = 0.0f;
  for (const std::int64_t doc : documents) {
    const auto tokens = prompts.document(doc).tokens;
    if (static_cast<std::int64_t>(tokens.size()) + generation.max_new_tokens > T) {
      throw std::invalid_argument(prompts.path().string() + ": prompt " + std::to_string(doc) + " has " +
                                  std::to_string(tokens.size()) + " tokens; with rollout.max_new_tokens = " +
                                  std::to_string(generation.max_new_tokens) + " it does not fit data.seq_len = " +
                                  std::to_string(T));
    }
    for (int g = 0; g < group; ++g) {
      inputs.emplace_back(tokens.begin(), tokens.end());
      generation.sequence_ids.push_back(static_cast<std::uint64_t>(doc) * static_cast<std::uint64_t>(group) +
                                        static_cast<std::uint64_t>(g));
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const model::GenerationResult result = generate(policy, inputs, generation);
  Rollout rollout;
  rollout.generate_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rollout.new_tokens = result.new_tokens;
  const std::int64_t rows = static_cast<std::int64_t>(inputs.size());
  rollout.rows = rows;
  rollout.seq = T;
  rollout.ids = Tensor::empty({rows, T}, DType::I32);
  rollout.targets = Tensor::empty({rows, T}, DType::I32);
  rollout.mask.assign(static_cast<std::size_t>(rows * T), 0);
  std::int32_t* ids = rollout.ids.data<std::int32_t>();
  std::int32_t* targets = rollout.targets.data<std::int32_t>();
  std::fill(ids, ids + rows * T, tokenizer.eos_id());
  std::fill(targets, targets + rows * T, -1);
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto& prompt = inputs[static_cast<std::size_t>(r)];
    std::vector<std::int32_t> completion = result.tokens[static_cast<std::size_t>(r)];
    const auto P = static_cast<std::int64_t>(prompt.size()), R = static_cast<std::int64_t>(completion.size());
    std::int32_t* row = ids + r * T;
    std::copy(prompt.begin(), prompt.end(), row);
    std::copy(completion.begin(), completion.end(), row + P);
    for (std::int64_t j = P - 1; j < P + R - 1; ++j) {
      targets[r * T + j] = row[j + 1];
      rollout.mask[static_cast<std::size_t>(r * T + j)] = 1;
    }
    rollout.last.push_back(std::max<std::int64_t>(P + R - 1, 0));
    rollout.completion_tokens.push_back(R);
    if (result.stopped[static_cast<std::size_t>(r)] && !completion.empty()) completion.pop_back();
    std::string text = tokenizer.decode(completion);
    const std::int64_t doc = documents[static_cast<std::size_t>(r / group)];
    const std::string answer = prompts.has_answers() ? prompts.answer(doc) : std::string();
    const float exact = static_cast<float>(io::exact_match(text, answer));
    const float format = static_cast<float>(io::format_ok(text, answer));
    rollout.exact.push_back(exact);
    rollout.format.push_back(format);
    rollout.reward.push_back(exact + static_cast<float>(options.format_weight) * format);
    rollout.completions.push_back(std::move(text));
  }
  return rollout;
}

Validation held_out_validation(const HeldOutScores& s) {
  std::ostringstream phrase;
  phrase << std::setprecision(3) << "held-out exact match " << s.exact_match << " greedy, " << s.sampled_exact_match
         << " sampled; reward " << s.reward << " greedy, " << s.sampled_reward << " sampled ("
         << static_cast<std::int64_t>(s.prompts) << " prompts)";
  return Validation{-s.sampled_reward,
                    {{"val_reward", s.reward}, {"val_exact_match", s.exact_match}, {"val_format", s.format},
                     {"val_completion_length", s.length}, {"val_prompts", s.prompts},
                     {"val_sampled_reward", s.sampled_reward}, {"val_sampled_exact_match", s.sampled_exact_match}},
                    record::Progress::Field{"val_em", s.exact_match},
                    phrase.str()};
}

nlohmann::json held_out_results(const std::optional<HeldOutScores>& scores) {
  if (!scores) return nlohmann::json::object();
  return {{"val_reward", scores->reward},
          {"val_exact_match", scores->exact_match},
          {"val_sampled_reward", scores->sampled_reward},
          {"val_sampled_exact_match", scores->sampled_exact_match}};
}

io::LoaderOptions prompt_loader_options(const config::Config& config, const Engine& engine, std::int64_t prompts,
                                        std::int32_t pad_id) {
  io::LoaderOptions options;
  options.seq_len = config.get_int("data.seq_len");
  options.global_batch = prompts;
  options.seed = static_cast<std::uint64_t>(config.get_int("train.seed"));
  options.pack = false;
  options.shuffle = config.get_bool("data.shuffle");
  options.pad_id = pad_id;
  options.dp_rank = engine.dp_rank();
  options.dp_size = engine.dp_size();
  return options;
}

HeldOutScores held_out_scores(Engine& policy, const io::TokenStore& store, const io::Tokenizer& tokenizer,
                              const RolloutOptions& options, std::int64_t count, std::int64_t batch) {
  const std::int64_t n = count > 0 ? std::min(count, store.n_documents()) : store.n_documents();
  // Prompt i goes to dp rank i mod dp; each rank decodes its share in batches.
  std::vector<std::int64_t> mine;
  for (std::int64_t i = policy.dp_rank(); i < n; i += policy.dp_size()) mine.push_back(i);
  constexpr int kSamples = 4;
  constexpr std::int64_t kHeldOutStep = -1;  // the sampler's step for held-out draws: never a training step
  double sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  // Nothing crosses dp inside generate: each dp rank decodes its own share.
  const std::size_t prompts_per_batch = static_cast<std::size_t>(std::max<std::int64_t>(1, batch / kSamples));
  for (std::size_t at = 0; at < mine.size(); at += prompts_per_batch) {
    const std::size_t end = std::min(mine.size(), at + prompts_per_batch);
    const auto part = std::span<const std::int64_t>(mine).subspan(at, end - at);
    const Rollout greedy = make_rollout(policy, store, tokenizer, part, 1, options, kHeldOutStep, /*greedy=*/true);
    for (std::int64_t i = 0; i < greedy.rows; ++i) {
      const auto row = static_cast<std::size_t>(i);
      sums[0] += greedy.reward[row], sums[1] += greedy.exact[row], sums[2] += greedy.format[row];
      sums[3] += static_cast<double>(greedy.completion_tokens[row]);
      sums[4] += 1;
    }
    const Rollout sampled = make_rollout(policy, store, tokenizer, part, kSamples, options, kHeldOutStep);
    for (std::int64_t i = 0; i < sampled.rows; ++i) {
      const auto row = static_cast<std::size_t>(i);
      sums[5] += sampled.reward[row], sums[6] += sampled.exact[row], sums[7] += 1;
    }
  }
  sum_over_replicas(policy, sums);
  const double k = std::max(1.0, sums[4]), ks = std::max(1.0, sums[7]);
  return HeldOutScores{sums[0] / k, sums[1] / k, sums[2] / k, sums[3] / k, sums[4], sums[5] / ks, sums[6] / ks};
}

}  // namespace loom::train
