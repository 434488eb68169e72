// A loom Slurm job as a job YAML file describes it (docs/slurm.md, "Job files"): what to run
// (template, program, config, overrides), where (run_dir, bin_dir, workdir), on what
// (slurm: resources, preemption), in which environment (modules, variables) and, for the
// evaluation templates, what to evaluate. The reader validates every key — unknown keys name
// the closest known one, every error names file:line and the key — so that whatever reaches
// the renderer (slurm/render.h) is either a checked format or a string it will shell-quote.
//
// Ownership: plain values. Thread safety: reentrant (reads only the given file/node and the
// current directory, to make workdir absolute).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace YAML {
class Node;
}

namespace loom::slurm {

// Bad input in a job or pipeline file: loom-submit exits 2 with this message.
class JobError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class JobTemplate { train, eval, eval_array, quantize };

// "train", "eval", "eval-array", "quantize": also the file name in slurm/templates/.
const char* template_name(JobTemplate kind);

struct SlurmResources {
  std::string partition;  // empty: the cluster's default partition (no #SBATCH line)
  std::string account;    // empty: omitted
  std::string qos;        // empty: omitted
  int nodes = 1;
  int tasks_per_node = 1;
  int gpus_per_node = 0;   // > 0: --gpus-per-node and one GPU per task by local rank
  int cpus_per_task = 1;   // also OMP_NUM_THREADS
  std::string mem;         // sbatch --mem; empty: omitted
  std::string time = "01:00:00";
  int signal_seconds = 60;  // --signal=B:USR1@N: the warning before the time limit
  bool requeue = true;
  int max_restarts = 3;     // requeues from the script after an exit 75
  std::vector<std::string> extra;  // more sbatch options, one per #SBATCH line
};

struct JobEnvironment {
  std::vector<std::string> modules;                            // module load, in order
  std::vector<std::pair<std::string, std::string>> variables;  // export NAME='value', in file order
};

struct EvalSpec {
  std::string model;                 // a run directory (eval-array) or anything loom-eval --model takes
  std::vector<std::int64_t> steps;   // eval-array: one array task each; eval: steps=… when given
  std::vector<std::string> tasks;    // tasks=a,b (empty: the config's)
  std::string out;                   // results directory (eval-array default: <model>/eval)
  std::string gate;                  // loom-eval compare --gate (empty: no gate)
  std::string baseline;              // results.json to gate against (empty: the newest two steps)
};

struct JobSpec {
  std::filesystem::path file;  // where it was read from, for messages
  std::string name;
  JobTemplate kind = JobTemplate::train;
  std::string program;
  std::string config;  // empty: none (eval, quantize)
  std::vector<std::pair<std::string, std::string>> overrides;  // key=value, in file order
  std::string run_dir;
  std::string bin_dir = "build/bin";
  std::string workdir = ".";
  SlurmResources slurm;
  JobEnvironment environment;
  EvalSpec eval;

  // workdir made absolute against the directory loom-submit runs in; run_dir and bin_dir
  // (when relative) are relative to it, as the job sees them after its `cd`.
  std::filesystem::path absolute_workdir() const;
  std::filesystem::path absolute_run_dir() const;
  std::filesystem::path program_path() const;  // <workdir>/<bin_dir>/<program>
  // <run_dir>/slurm/<name>.sbatch: where loom-submit writes the script it submits.
  std::filesystem::path script_path() const;
  // The gate job's script beside it (eval-array with a gate), else empty.
  std::filesystem::path gate_script_path() const;
  bool has_gate_job() const { return kind == JobTemplate::eval_array && !eval.gate.empty(); }
};

// The value of one stage reference, "stage.NAME.run_dir" or "stage.NAME.model" (the text
// between {{ and }}); throws std::invalid_argument with a bare message, which the reader
// prefixes with file:line and the key. Pipelines supply one (slurm/pipeline.h); without it
// a {{ in config, overrides, eval.model or eval.baseline is an error.
using StageResolver = std::function<std::string(const std::string& reference)>;

struct JobReadOptions {
  StageResolver resolve_stage;    // null: stage references are refused
  std::set<std::string> ignored;  // keys the caller reads itself (a pipeline stage's `after`)
};

// `path` made absolute against the current directory, normalised, without a trailing '/'.
std::filesystem::path absolute_path(const std::filesystem::path& path);

// Reads a job from a YAML map; `file` names it in messages. Throws JobError.
JobSpec read_job(const YAML::Node& node, const std::filesystem::path& file, const JobReadOptions& options = {});
// Reads a job file. Throws JobError (also for an unreadable file or bad YAML, with the line).
JobSpec load_job(const std::filesystem::path& file, const JobReadOptions& options = {});

}  // namespace loom::slurm
