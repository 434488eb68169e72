// One model's evaluation on a list of tasks across the world's data-parallel replicas:
// requests built from the documents, spread over replicas by length, run in length-sorted
// batches, journaled, and scored once every replica is done.
//
// Requests. perplexity: the document's tokens after an eos, cut into windows of the model's
// length, each predicted with one token of context (lm-evaluation-harness's rolling
// log-likelihood); multiple_choice: one log-likelihood request per choice; generate_until:
// one greedy generation; reward: one greedy generation (and one by the baseline model), each
// scored by the reward model.
//
// Balance and batching. Every rank builds the same request list. Per task, requests sorted
// by token count (longest first) go one by one to the replica with the fewest tokens so far,
// so replicas finish together; each replica runs its share in that order in batches of
// batch_size (generations: only prompts of one length share a batch). A request's numbers
// depend only on the request (scorer.h), so results do not depend on batch size or rank count.
//
// Stop. After each batch the ranks agree whether any was signalled (SIGTERM, SIGUSR1,
// SIGINT); all then stop with their journals complete and report the signal.
//
// Resume. Finished requests are journaled (journal.h) under out/journal; a restarted
// evaluation, with any number of ranks, skips what the journal holds. World rank 0 scores
// the tasks from the journal records alone.
//
// Ranks: collective over the world. Threads: the main thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/model_source.h"
#include "eval/task.h"
#include "io/tokenizer/tokenizer.h"
#include "train/engine.h"

namespace loom::eval {

struct TaskData {
  TaskConfig config;
  std::vector<Document> documents;
};

struct RunnerOptions {
  std::int64_t batch_size = 16;       // requests per batch
  std::int64_t micro_batch_size = 0;  // rows per pipeline micro-batch; 0: the whole batch
  bool progress = true;               // the progress line on world rank 0
  std::string label = "eval";         // progress line label
  double batch_delay_s = 0;           // fault injection for tests (debug.batch_delay)
};

struct RunnerReport {
  nlohmann::json tasks = nlohmann::json::object();  // world rank 0: name → {type, samples, metrics, config}
  std::int64_t requests = 0;         // in all
  std::int64_t resumed = 0;          // found in the journal
  double seconds = 0;
  double tokens_per_second = 0;      // scored + generated tokens of this replica per second
  int stopped_by = 0;                // the signal that stopped it early (journal complete), or 0
};

// `engine` holds the model (loaded). Writes out/journal/ and, on world rank 0,
// out/samples/<task>.jsonl. Returns the task results on world rank 0.
RunnerReport run_evaluation(train::Engine& engine, Backend& backend, const EvalModel& model,
                            const io::Tokenizer& tokenizer, const std::vector<TaskData>& tasks,
                            const std::filesystem::path& out, const RunnerOptions& options);

}  // namespace loom::eval
