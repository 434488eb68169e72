#include "eval/runner.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include "eval/journal.h"
#include "eval/metrics.h"
#include "eval/scorer.h"
#include "io/data/fingerprint.h"
#include "io/data/prepare.h"
#include "io/record/fingerprint.h"
#include "io/record/progress.h"
#include "io/record/run_record.h"
#include "launch/stop_signal.h"

namespace loom::eval {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

struct Request {
  std::int32_t task = 0;
  std::int64_t doc = 0, part = 0;
  std::int64_t cost = 0;  // tokens: the unit of balance and progress
  LoglikRequest loglik{};  // perplexity, multiple_choice
  std::shared_ptr<const std::vector<std::int32_t>> prompt{};  // generate_until, reward
  std::int64_t max_new_tokens = 0;
  std::int64_t bucket = 0;  // log-likelihood requests: padded length; generations: prompt length
};

bool is_generation(TaskType type) { return type == TaskType::GenerateUntil || type == TaskType::Reward; }

std::vector<Request> build_requests(std::int32_t t, const TaskData& task, const io::Tokenizer& tokenizer,
                                    std::int64_t window) {
  std::vector<Request> out;
  const TaskType type = task.config.type;
  for (const Document& d : task.documents) {
    if (type == TaskType::Perplexity) {
      std::vector<std::int32_t> s{tokenizer.eos_id()};
      const std::vector<std::int32_t> tokens = tokenizer.encode(d.text);
      s.insert(s.end(), tokens.begin(), tokens.end());
      std::int64_t part = 0;
      for (std::size_t start = 0; start + 1 < s.size(); start += static_cast<std::size_t>(window), ++part) {
        const std::size_t end = std::min(s.size(), start + static_cast<std::size_t>(window) + 1);
        Request r{.task = t, .doc = d.id, .part = part};
        r.loglik.context = {s[start]};
        r.loglik.continuation.assign(s.begin() + static_cast<std::ptrdiff_t>(start) + 1,
                                     s.begin() + static_cast<std::ptrdiff_t>(end));
        r.cost = static_cast<std::int64_t>(end - start - 1);
        r.bucket = loglik_bucket(r.loglik, window);
        out.push_back(std::move(r));
      }
    } else if (type == TaskType::MultipleChoice) {
      const std::vector<std::int32_t> context = tokenizer.encode(d.context);
      for (std::size_t c = 0; c < d.choices.size(); ++c) {
        Request r{.task = t, .doc = d.id, .part = static_cast<std::int64_t>(c)};
        r.loglik.context = context.empty() ? std::vector<std::int32_t>{tokenizer.eos_id()} : context;
        r.loglik.continuation = tokenizer.encode(d.choices[c]);
        if (r.loglik.continuation.empty()) {
          throw std::runtime_error(task.config.file.string() + ": task " + task.config.name + " document " +
                                   std::to_string(d.id) + " has an empty choice " + std::to_string(c));
        }
        r.cost = static_cast<std::int64_t>(r.loglik.context.size() + r.loglik.continuation.size());
        r.bucket = loglik_bucket(r.loglik, window);
        out.push_back(std::move(r));
      }
    } else {
      Request r{.task = t, .doc = d.id, .part = 0};
      auto prompt = std::make_shared<std::vector<std::int32_t>>(tokenizer.encode(d.context));
      if (prompt->empty()) prompt->push_back(tokenizer.eos_id());
      r.max_new_tokens = task.config.max_new_tokens;
      r.cost = static_cast<std::int64_t>(prompt->size()) + r.max_new_tokens;
      r.bucket = static_cast<std::int64_t>(prompt->size());
      r.prompt = std::move(prompt);
      out.push_back(std::move(r));
    }
  }
  return out;
}

std::string journal_fingerprint(const EvalModel& model, const fs::path& tokenizer_path, const std::vector<TaskData>& tasks) {
  record::Xxh64 h;
  const auto add = [&](const std::string& s) { h.update(s.data(), s.size()), h.update("\n", 1); };
  add(model.to_json().dump());
  add(io::fingerprint_hex(io::tokenizer_fingerprint(tokenizer_path)));
  for (const TaskData& t : tasks) {
    add(t.config.to_json().dump());
    add(std::to_string(t.documents.size()));
  }
  return record::hex64(h.digest());
}

// The journal's records of each task, by (document, part); records of other tasks are ignored.
std::vector<RequestResults> journaled_results(const fs::path& dir, const std::string& fingerprint,
                                              const std::vector<TaskData>& tasks) {
  std::map<std::string, std::size_t> task_index;
  for (std::size_t t = 0; t < tasks.size(); ++t) task_index[tasks[t].config.name] = t;
  std::vector<RequestResults> results(tasks.size());
  for (const nlohmann::json& r : read_journals(dir, fingerprint).records) {
    const auto it = task_index.find(r.value("task", std::string()));
    if (it == task_index.end()) continue;
    results[it->second][{r.at("doc").get<std::int64_t>(), r.at("part").get<std::int64_t>()}] = r;
  }
  return results;
}

// Frozen engines a reward task needs, in the policy's layout.
std::unique_ptr<train::Engine> frozen_engine(const train::Engine& like, Backend& backend, const std::string& path,
                                             model::HeadKind head, const std::string& task) {
  const std::vector<EvalModel> found = resolve_models(path);
  const EvalModel& m = found.front();
  train::EngineOptions options = like.options();
  options.head = head;
  options.zero1 = false;
  options.lora = {};
  if (head == model::HeadKind::Scalar && m.head != "scalar") {
    throw std::runtime_error("task " + task + ": reward_model " + path + " has no scalar head (a loom-rm model is needed)");
  }
  auto engine = std::make_unique<train::Engine>(m.config, options, backend);
  load_model(m, *engine);
  return engine;
}

}  // namespace

RunnerReport run_evaluation(train::Engine& engine, Backend& backend, const EvalModel& model,
                            const io::Tokenizer& tokenizer, const std::vector<TaskData>& tasks, const fs::path& out,
                            const RunnerOptions& options) {
  const auto start = Clock::now();
  const auto& groups = engine.groups();
  const int dp = groups.dp_size(), dp_rank = groups.dp_rank();
  const bool writer = engine.last_stage() && groups.tp_rank() == 0;
  const std::int64_t window = engine.config().max_seq_len;
  const std::string fingerprint = journal_fingerprint(model, model.tokenizer, tasks);
  const fs::path journal_dir = out / "journal";

  // Every rank reads the journal before anyone appends to it, so all agree on what is done.
  const std::vector<RequestResults> results = journaled_results(journal_dir, fingerprint, tasks);
  engine.world().barrier();

  RunnerReport report;
  std::vector<std::vector<Request>> mine(tasks.size());  // this replica's requests per task
  std::int64_t my_cost = 0;
  std::vector<std::int64_t> pending(tasks.size(), 0);  // requests not yet journaled, over all replicas
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    std::vector<Request> all = build_requests(static_cast<std::int32_t>(t), tasks[t], tokenizer, window);
    report.requests += static_cast<std::int64_t>(all.size());
    std::erase_if(all, [&](const Request& r) { return results[t].count({r.doc, r.part}) != 0; });
    pending[t] = static_cast<std::int64_t>(all.size());
    report.resumed += static_cast<std::int64_t>(results[t].size());
    std::stable_sort(all.begin(), all.end(), [&](const Request& a, const Request& b) {
      if (a.bucket != b.bucket) return a.bucket > b.bucket;
      if (a.cost != b.cost) return a.cost > b.cost;
      return a.doc != b.doc ? a.doc < b.doc : a.part < b.part;
    });
    std::vector<std::int64_t> load(static_cast<std::size_t>(dp), 0);
    for (Request& r : all) {
      const auto least = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      load[static_cast<std::size_t>(least)] += r.cost;
      if (least == dp_rank) {
        my_cost += r.cost;
        mine[t].push_back(std::move(r));
      }
    }
  }

  // Reward tasks' frozen models, built by every rank together (an engine's construction is
  // collective over the world) before any replica starts.
  std::vector<std::unique_ptr<train::Engine>> reward_models(tasks.size()), baselines(tasks.size());
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    const TaskConfig& task = tasks[t].config;
    if (task.type != TaskType::Reward || pending[t] == 0) continue;
    reward_models[t] = frozen_engine(engine, backend, task.reward_model, model::HeadKind::Scalar, task.name);
    if (!task.baseline_model.empty()) {
      baselines[t] = frozen_engine(engine, backend, task.baseline_model, model::HeadKind::LM, task.name);
    }
  }
  // This replica's batches: per task in order, cut at batch_size and where the bucket changes
  // (log-likelihoods: the padded length; generations: the prompt length), so a request's
  // numbers never depend on its batch (scorer.h).
  struct Batch {
    std::size_t task, begin, end;
  };
  std::vector<Batch> batches;
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    const std::vector<Request>& list = mine[t];
    for (std::size_t at = 0; at < list.size();) {
      const std::size_t limit = std::min(list.size(), at + static_cast<std::size_t>(options.batch_size));
      std::size_t end = at + 1;
      while (end < limit && list[end].bucket == list[at].bucket) ++end;
      batches.push_back({t, at, end});
      at = end;
    }
  }
  double rounds = static_cast<double>(batches.size());
  engine.all_reduce_host(std::span<double>(&rounds, 1), ReduceOp::Max);

  std::optional<Journal> journal;
  if (writer) journal.emplace(journal_dir, dp_rank, dp, fingerprint);
  std::optional<record::Progress> progress;
  if (options.progress && groups.world_rank() == 0) {
    record::ProgressOptions shown;
    shown.unit = "tokens";
    progress.emplace(std::max<std::int64_t>(1, my_cost), options.label, shown);
  }
  const std::int64_t micro = options.micro_batch_size > 0 ? options.micro_batch_size : options.batch_size;
  std::int64_t cost_done = 0, requests_done = 0;
  // Replicas step through rounds together: after each round every rank learns whether any rank
  // was asked to stop, so all of them stop after the same round, with their journals complete.
  for (std::int64_t round = 0; round < static_cast<std::int64_t>(rounds); ++round) {
    if (round < static_cast<std::int64_t>(batches.size())) {
      const Batch& b = batches[static_cast<std::size_t>(round)];
      const TaskConfig& task = tasks[b.task].config;
      const std::vector<Request>& list = mine[b.task];
      std::vector<nlohmann::json> records;
      const auto record_of = [&](const Request& r) {
        return nlohmann::json{{"task", task.name}, {"doc", r.doc}, {"part", r.part}};
      };
      if (!is_generation(task.type)) {
        std::vector<const LoglikRequest*> batch;
        for (std::size_t i = b.begin; i < b.end; ++i) batch.push_back(&list[i].loglik);
        const std::vector<LoglikResult> scored = score_loglik(engine, batch, micro, tokenizer.eos_id());
        for (std::size_t i = b.begin; i < b.end; ++i) {
          nlohmann::json rec = record_of(list[i]);
          rec["logp"] = scored[i - b.begin].logp;
          rec["tokens"] = scored[i - b.begin].tokens;
          records.push_back(std::move(rec));
        }
      } else {
        std::vector<const std::vector<std::int32_t>*> prompts;
        for (std::size_t i = b.begin; i < b.end; ++i) prompts.push_back(list[i].prompt.get());
        const GenerateOptions generate{task.max_new_tokens, task.until};
        const std::vector<std::string> responses = generate_greedy(engine, tokenizer, prompts, generate);
        std::vector<double> rewards, baseline_rewards;
        std::vector<std::string> baseline_responses;
        if (reward_models[b.task]) {
          rewards = score_reward(*reward_models[b.task], tokenizer, prompts, responses, micro);
          if (baselines[b.task]) {
            baseline_responses = generate_greedy(*baselines[b.task], tokenizer, prompts, generate);
            baseline_rewards = score_reward(*reward_models[b.task], tokenizer, prompts, baseline_responses, micro);
          }
        }
        for (std::size_t i = b.begin; i < b.end; ++i) {
          nlohmann::json rec = record_of(list[i]);
          rec["response"] = responses[i - b.begin];
          if (reward_models[b.task]) rec["reward"] = rewards[i - b.begin];
          if (baselines[b.task]) {
            rec["baseline_response"] = baseline_responses[i - b.begin];
            rec["baseline_reward"] = baseline_rewards[i - b.begin];
          }
          records.push_back(std::move(rec));
        }
      }
      if (journal) journal->append(records);
      if (options.batch_delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(options.batch_delay_s));
      for (std::size_t i = b.begin; i < b.end; ++i) cost_done += list[i].cost;
      requests_done += static_cast<std::int64_t>(b.end - b.begin);
      if (progress) progress->update(cost_done, {{"requests", static_cast<double>(requests_done)}});
    }
    double stop = static_cast<double>(launch::stop_requested());
    engine.all_reduce_host(std::span<double>(&stop, 1), ReduceOp::Max);
    if (stop > 0) {
      report.stopped_by = static_cast<int>(stop);
      break;
    }
  }
  if (progress) progress->finish();
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  report.tokens_per_second = report.seconds > 0 ? static_cast<double>(cost_done) / report.seconds : 0;
  engine.world().barrier();  // every journal is complete
  if (report.stopped_by != 0) return report;

  if (groups.world_rank() == 0) {
    const std::vector<RequestResults> final_results = journaled_results(journal_dir, fingerprint, tasks);
    fs::create_directories(out / "samples");
    for (std::size_t t = 0; t < tasks.size(); ++t) {
      const TaskConfig& task = tasks[t].config;
      const TaskScores scores = score_task(task, tasks[t].documents, final_results[t]);
      std::string lines;
      for (const nlohmann::json& s : scores.sample_records) lines += s.dump() + "\n";
      record::write_file_atomic(out / "samples" / (task.name + ".jsonl"), lines);
      report.tasks[task.name] = {{"type", task_type_name(task.type)},
                                 {"samples", scores.samples},
                                 {"metrics", scores.metrics},
                                 {"config", task.to_json()}};
    }
  }
  return report;
}

}  // namespace loom::eval
