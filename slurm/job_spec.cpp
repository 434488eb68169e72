#include "slurm/job_spec.h"

#include <algorithm>
#include <fstream>

#include "slurm/shell_words.h"
#include "slurm/yaml_reader.h"

namespace loom::slurm {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kTopKeys = {"name",    "template", "program", "config", "overrides", "run_dir",
                                           "bin_dir", "workdir",  "slurm",   "environment", "eval"};
const std::vector<std::string> kSlurmKeys = {"partition",     "account",       "qos",  "nodes",
                                             "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem",
                                             "time",          "signal_seconds", "requeue", "max_restarts", "extra"};
const std::vector<std::string> kEnvironmentKeys = {"modules", "variables"};
const std::vector<std::string> kEvalKeys = {"model", "steps", "tasks", "out", "gate", "baseline"};
const std::vector<std::string> kTrainPrograms = {"loom-sft", "loom-rm", "loom-dpo", "loom-ppo", "loom-grpo"};

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

class JobReader {
 public:
  JobReader(const fs::path& file, const JobReadOptions& options) : reader_(file), options_(options) {}

  JobSpec read(const YAML::Node& root) {
    reader_.check_map(root, "", kTopKeys, options_.ignored);
    JobSpec job;
    job.file = reader_.file();
    job.name = required_string(root, "name");
    if (!is_job_name(job.name)) {
      reader_.fail(root["name"], "name: expected 1 to 64 of [A-Za-z0-9._-] (it becomes the Slurm job name and file "
                                 "names), got " + in_quotes(job.name));
    }
    read_template(root, job);
    read_program(root, job);
    if (root["config"]) job.config = resolved(root["config"], "config");
    if (job.kind == JobTemplate::train && job.config.empty()) {
      reader_.fail(root, "config: a training job needs the trainer's config file");
    }
    job.run_dir = required_string(root, "run_dir");
    if (root["overrides"]) read_overrides(root["overrides"], job);
    if (root["bin_dir"]) job.bin_dir = non_empty(root["bin_dir"], "bin_dir");
    if (root["workdir"]) job.workdir = non_empty(root["workdir"], "workdir");
    if (root["slurm"]) read_slurm(root["slurm"], job.slurm);
    if (root["environment"]) read_environment(root["environment"], job.environment);
    read_eval(root, job);
    check_log_path(root, job);
    return job;
  }

 private:
  std::string required_string(const YAML::Node& map, const std::string& key) {
    if (!map[key]) reader_.fail(map, "missing key " + in_quotes(key));
    return non_empty(map[key], key);
  }

  std::string non_empty(const YAML::Node& node, const std::string& key) {
    std::string value = reader_.string(node, key);
    if (value.empty()) reader_.fail(node, key + ": must not be empty");
    return value;
  }

  // {{stage.NAME.run_dir}} / {{stage.NAME.model}} replaced by the pipeline's resolver.
  std::string resolve(const YAML::Node& node, const std::string& key, const std::string& text) {
    std::string out;
    std::size_t at = 0;
    while (true) {
      const std::size_t open = text.find("{{", at);
      if (open == std::string::npos) break;
      const std::size_t close = text.find("}}", open);
      if (close == std::string::npos) reader_.fail(node, key + ": unclosed {{ in " + in_quotes(text));
      if (!options_.resolve_stage) {
        reader_.fail(node, key + ": stage references like {{stage.NAME.run_dir}} work only in pipeline files "
                                 "(loom-submit pipeline), got " + in_quotes(text));
      }
      std::string value;
      try {
        value = options_.resolve_stage(text.substr(open + 2, close - open - 2));
      } catch (const std::invalid_argument& e) {
        reader_.fail(node, key + ": " + e.what());
      }
      out += text.substr(at, open - at) + value;
      at = close + 2;
    }
    return out + text.substr(at);
  }

  std::string resolved(const YAML::Node& node, const std::string& key) {
    return resolve(node, key, reader_.string(node, key));
  }

  void read_template(const YAML::Node& root, JobSpec& job) {
    const std::string name = required_string(root, "template");
    for (const JobTemplate kind : {JobTemplate::train, JobTemplate::eval, JobTemplate::eval_array,
                                   JobTemplate::quantize}) {
      if (name == template_name(kind)) {
        job.kind = kind;
        return;
      }
    }
    reader_.fail(root["template"], "template: expected one of train, eval, eval-array, quantize, got " +
                                       in_quotes(name));
  }

  void read_program(const YAML::Node& root, JobSpec& job) {
    if (job.kind == JobTemplate::train) {
      job.program = required_string(root, "program");
      if (std::find(kTrainPrograms.begin(), kTrainPrograms.end(), job.program) == kTrainPrograms.end()) {
        reader_.fail(root["program"], "program: a train job runs one of " + join(kTrainPrograms) + ", got " +
                                          in_quotes(job.program));
      }
      return;
    }
    const std::string expected = job.kind == JobTemplate::quantize ? "loom-quantize" : "loom-eval";
    job.program = root["program"] ? non_empty(root["program"], "program") : expected;
    if (job.program != expected) {
      reader_.fail(root["program"], std::string("program: the ") + template_name(job.kind) + " template runs " +
                                        expected + ", got " + in_quotes(job.program));
    }
  }

  void read_overrides(const YAML::Node& node, JobSpec& job) {
    const std::vector<std::string> entries = reader_.string_list(node, "overrides");
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const YAML::Node item = node[i];
      const std::string where = "overrides[" + std::to_string(i) + "]";
      const std::size_t equals = entries[i].find('=');
      const std::string key = entries[i].substr(0, equals);
      if (equals == std::string::npos || !is_override_key(key)) {
        reader_.fail(item, where + ": expected key=value with a key of [a-z0-9_.], got " + in_quotes(entries[i]));
      }
      const std::string value = resolve(item, where, entries[i].substr(equals + 1));
      if (key == "run_dir" && value != job.run_dir) {
        reader_.fail(item, where + ": run_dir is the job's top-level run_dir key (" + in_quotes(job.run_dir) +
                               "); set it there, not as an override");
      }
      // loom-quantize prefers out= to run_dir=, which would move quantized.h5 away from where
      // {{stage.NAME.model}} points.
      if (key == "out" && job.kind == JobTemplate::quantize) {
        reader_.fail(item, where + ": a quantize job writes quantized.h5 to its run_dir (passed as run_dir=); set the "
                               "top-level run_dir key instead of out");
      }
      if (key != "run_dir") job.overrides.emplace_back(key, value);
    }
  }

  int integer(const YAML::Node& map, const std::string& key, int min, int max) {
    return static_cast<int>(reader_.integer(map[key], "slurm." + key, min, max));
  }

  void read_slurm(const YAML::Node& node, SlurmResources& slurm) {
    reader_.check_map(node, "slurm", kSlurmKeys);
    auto name = [&](const std::string& key, std::string& out, bool allow_list) {
      if (!node[key]) return;
      out = reader_.string(node[key], "slurm." + key);
      if (!out.empty() && !is_slurm_name(out, allow_list)) {
        reader_.fail(node[key], "slurm." + key + ": expected [A-Za-z0-9._-]+" + (allow_list ? " (or a,b)" : "") +
                                    " or \"\" to omit it, got " + in_quotes(out));
      }
    };
    name("partition", slurm.partition, true);
    name("account", slurm.account, false);
    name("qos", slurm.qos, false);
    if (node["nodes"]) slurm.nodes = integer(node, "nodes", 1, 100000);
    if (node["tasks_per_node"]) slurm.tasks_per_node = integer(node, "tasks_per_node", 1, 1024);
    if (node["gpus_per_node"]) slurm.gpus_per_node = integer(node, "gpus_per_node", 0, 64);
    if (node["cpus_per_task"]) slurm.cpus_per_task = integer(node, "cpus_per_task", 1, 1024);
    if (slurm.gpus_per_node > 0 && slurm.tasks_per_node > slurm.gpus_per_node) {
      reader_.fail(node["tasks_per_node"] ? node["tasks_per_node"] : node,
                   "slurm.tasks_per_node: each task is bound to one GPU by its local rank, so it must not exceed "
                   "slurm.gpus_per_node (" + std::to_string(slurm.gpus_per_node) + "), got " +
                       std::to_string(slurm.tasks_per_node));
    }
    if (node["mem"]) {
      slurm.mem = reader_.string(node["mem"], "slurm.mem");
      if (!slurm.mem.empty() && !is_memory(slurm.mem)) {
        reader_.fail(node["mem"], "slurm.mem: expected a number with an optional unit K, M, G or T (4G, 16000M), "
                                  "got " + in_quotes(slurm.mem));
      }
    }
    if (node["time"]) {
      slurm.time = reader_.string(node["time"], "slurm.time");
      if (!is_slurm_time(slurm.time)) {
        reader_.fail(node["time"], "slurm.time: expected a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, "
                                   "D-HH:MM:SS or UNLIMITED; quote it in YAML: \"00:30:00\"), got " +
                                       in_quotes(slurm.time));
      }
    }
    if (node["signal_seconds"]) slurm.signal_seconds = integer(node, "signal_seconds", 1, 65535);
    if (node["requeue"]) slurm.requeue = reader_.boolean(node["requeue"], "slurm.requeue");
    if (node["max_restarts"]) slurm.max_restarts = integer(node, "max_restarts", 0, 10000);
    if (node["extra"]) {
      slurm.extra = reader_.string_list(node["extra"], "slurm.extra");
      for (std::size_t i = 0; i < slurm.extra.size(); ++i) {
        if (!is_sbatch_option(slurm.extra[i])) {
          reader_.fail(node["extra"][i], "slurm.extra[" + std::to_string(i) + "]: expected one sbatch option "
                                         "--name or --name=value (value of [A-Za-z0-9_.:,/@%+-]), got " +
                                             in_quotes(slurm.extra[i]));
        }
      }
    }
  }

  void read_environment(const YAML::Node& node, JobEnvironment& environment) {
    reader_.check_map(node, "environment", kEnvironmentKeys);
    if (node["modules"]) {
      environment.modules = reader_.string_list(node["modules"], "environment.modules");
      for (std::size_t i = 0; i < environment.modules.size(); ++i) {
        if (!is_module_name(environment.modules[i])) {
          reader_.fail(node["modules"][i], "environment.modules[" + std::to_string(i) + "]: expected a module name "
                                           "of [A-Za-z0-9._/+-], got " + in_quotes(environment.modules[i]));
        }
      }
    }
    if (const YAML::Node variables = node["variables"]; variables && !variables.IsNull()) {
      if (!variables.IsMap()) reader_.fail(variables, "environment.variables: expected a map NAME: value");
      for (const auto& entry : variables) {
        const std::string name = entry.first.Scalar();
        if (!is_variable_name(name)) {
          reader_.fail(entry.first, "environment.variables: expected a variable name of [A-Z_][A-Z0-9_]*, got " +
                                        in_quotes(name));
        }
        environment.variables.emplace_back(name, reader_.string(entry.second, "environment.variables." + name));
      }
    }
  }

  void read_eval(const YAML::Node& root, JobSpec& job) {
    const bool evaluates = job.kind == JobTemplate::eval || job.kind == JobTemplate::eval_array;
    const YAML::Node node = root["eval"];
    if (!evaluates) {
      if (node) reader_.fail(node, std::string("eval: only the eval and eval-array templates read it, this job's "
                                               "template is ") + template_name(job.kind));
      return;
    }
    if (!node) reader_.fail(root, std::string("missing key \"eval\" (the ") + template_name(job.kind) +
                                      " template needs at least eval.model)");
    reader_.check_map(node, "eval", kEvalKeys);
    EvalSpec& eval = job.eval;
    if (!node["model"]) reader_.fail(node, "missing key \"eval.model\"");
    eval.model = resolved(node["model"], "eval.model");
    if (eval.model.empty()) reader_.fail(node["model"], "eval.model: must not be empty");
    if (const YAML::Node steps = node["steps"]; steps && !steps.IsNull()) {
      if (!steps.IsSequence()) reader_.fail(steps, "eval.steps: expected a list of checkpoint steps");
      for (std::size_t i = 0; i < steps.size(); ++i) {
        const std::string where = "eval.steps[" + std::to_string(i) + "]";
        const std::int64_t step = reader_.integer(steps[i], where, 0, 1'000'000'000'000LL);
        if (std::find(eval.steps.begin(), eval.steps.end(), step) != eval.steps.end()) {
          reader_.fail(steps[i], where + ": step " + std::to_string(step) + " is listed twice");
        }
        eval.steps.push_back(step);
      }
    }
    if (node["tasks"]) eval.tasks = reader_.string_list(node["tasks"], "eval.tasks");
    for (std::size_t i = 0; i < eval.tasks.size(); ++i) {
      if (eval.tasks[i].empty() || eval.tasks[i].find(',') != std::string::npos) {
        reader_.fail(node["tasks"][i], "eval.tasks[" + std::to_string(i) + "]: expected a task name or file "
                                       "without commas (loom-eval reads tasks=a,b), got " + in_quotes(eval.tasks[i]));
      }
    }
    if (eval.tasks.empty() && job.config.empty()) {
      reader_.fail(node, "eval.tasks: name the tasks here or in the loom-eval config (config: suite.yaml)");
    }
    if (node["out"]) eval.out = reader_.string(node["out"], "eval.out");
    if (node["gate"]) eval.gate = reader_.string(node["gate"], "eval.gate");
    if (node["baseline"]) eval.baseline = resolved(node["baseline"], "eval.baseline");
    if (job.kind == JobTemplate::eval_array) {
      if (eval.steps.empty()) reader_.fail(node, "eval.steps: an eval-array job needs the steps, one array task each");
      if (eval.out.empty()) eval.out = (fs::path(eval.model) / "eval").string();
      if (!eval.gate.empty() && eval.baseline.empty() && eval.steps.size() < 2) {
        reader_.fail(node["gate"], "eval.gate: with one step there is nothing to compare; list two steps or set "
                                   "eval.baseline");
      }
    } else if (!eval.baseline.empty() && eval.gate.empty()) {
      reader_.fail(node["baseline"], "eval.baseline: only used with eval.gate");
    } else if (!eval.gate.empty() && eval.baseline.empty()) {
      reader_.fail(node["gate"], "eval.gate: an eval job compares against eval.baseline; set it (a previous "
                                 "results.json)");
    }
  }

  // The log goes on an #SBATCH --output line, which sbatch parses itself: no quoting there.
  void check_log_path(const YAML::Node& root, const JobSpec& job) {
    const std::string log_dir = (job.absolute_run_dir() / "slurm").string();
    if (!is_sbatch_path(log_dir)) {
      reader_.fail(root["run_dir"], "run_dir: the job's log directory " + in_quotes(log_dir) + " (workdir + run_dir) "
                                    "is written on an #SBATCH --output line, which allows only "
                                    "[A-Za-z0-9._/+@%:,=-]; choose a plainer run_dir or workdir");
    }
  }

  YamlReader reader_;
  const JobReadOptions& options_;
};

}  // namespace

const char* template_name(JobTemplate kind) {
  switch (kind) {
    case JobTemplate::train: return "train";
    case JobTemplate::eval: return "eval";
    case JobTemplate::eval_array: return "eval-array";
    case JobTemplate::quantize: return "quantize";
  }
  return "?";
}

fs::path absolute_path(const fs::path& path) {
  fs::path out = fs::absolute(path).lexically_normal();
  if (!out.has_filename() && out != out.root_path()) out = out.parent_path();
  return out;
}

fs::path JobSpec::absolute_workdir() const { return absolute_path(workdir); }

fs::path JobSpec::absolute_run_dir() const { return absolute_path(absolute_workdir() / run_dir); }

fs::path JobSpec::program_path() const { return absolute_path(absolute_workdir() / bin_dir / program); }

fs::path JobSpec::script_path() const { return absolute_run_dir() / "slurm" / (name + ".sbatch"); }

fs::path JobSpec::gate_script_path() const {
  return has_gate_job() ? absolute_run_dir() / "slurm" / (name + "-gate.sbatch") : fs::path();
}

JobSpec read_job(const YAML::Node& node, const fs::path& file, const JobReadOptions& options) {
  return JobReader(file, options).read(node);
}

JobSpec load_job(const fs::path& file, const JobReadOptions& options) {
  std::ifstream in(file);
  if (!in) throw JobError(file.string() + ": cannot read the job file");
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw JobError(file.string() + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  return read_job(root, file, options);
}

}  // namespace loom::slurm
