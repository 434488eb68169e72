#include "slurm/render.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "slurm/embedded_templates.h"
#include "slurm/shell_words.h"

namespace loom::slurm {

namespace fs = std::filesystem;

namespace {

std::string words(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : " ") + item;
  return out;
}

std::string comma_list(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

std::string lines(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : "\n") + item;
  return out;
}

std::string results_of(const std::string& dir) { return (fs::path(dir) / "results.json").string(); }

std::string step_dir(const std::string& out, std::int64_t step) {
  std::string digits = std::to_string(step);
  if (digits.size() < 8) digits.insert(0, 8 - digits.size(), '0');
  return (fs::path(out) / ("step-" + digits)).string();
}

// #SBATCH lines for what is optional: omitted values get no line at all.
std::vector<std::string> scheduling_options(const SlurmResources& slurm) {
  std::vector<std::string> out;
  if (!slurm.partition.empty()) out.push_back("#SBATCH --partition=" + slurm.partition);
  if (!slurm.account.empty()) out.push_back("#SBATCH --account=" + slurm.account);
  if (!slurm.qos.empty()) out.push_back("#SBATCH --qos=" + slurm.qos);
  return out;
}

std::string environment_lines(const JobEnvironment& environment) {
  std::vector<std::string> out;
  if (!environment.modules.empty()) {
    // Batch shells are not login shells: on most clusters `module` is defined by the profile.
    out.push_back("command -v module >/dev/null 2>&1 || . /etc/profile");
    for (const std::string& module : environment.modules) out.push_back("module load " + shell_quote(module) + " || exit 1");
  }
  for (const auto& [name, value] : environment.variables) out.push_back("export " + name + "=" + shell_quote(value));
  return lines(out);
}

}  // namespace

std::map<std::string, std::string> placeholder_values(const JobSpec& job) {
  const SlurmResources& slurm = job.slurm;
  const EvalSpec& eval = job.eval;
  const fs::path log_dir = job.absolute_run_dir() / "slurm";
  std::map<std::string, std::string> v;
  v["job_name"] = job.name;
  v["nodes"] = std::to_string(slurm.nodes);
  v["tasks_per_node"] = std::to_string(slurm.tasks_per_node);
  v["cpus_per_task"] = std::to_string(slurm.cpus_per_task);
  v["gpus_per_node"] = std::to_string(slurm.gpus_per_node);
  v["time"] = slurm.time;
  v["signal_seconds"] = std::to_string(slurm.signal_seconds);
  v["requeue_option"] = slurm.requeue ? "--requeue" : "--no-requeue";
  v["requeue"] = slurm.requeue ? "1" : "0";
  v["max_restarts"] = std::to_string(slurm.max_restarts);
  v["log"] = (log_dir / (job.name + (job.kind == JobTemplate::eval_array ? "-%A_%a.out" : "-%j.out"))).string();
  v["gate_log"] = (log_dir / (job.name + "-gate-%j.out")).string();

  std::vector<std::string> options = scheduling_options(slurm);
  v["gate_sbatch_options"] = lines(options);
  if (slurm.gpus_per_node > 0) options.push_back("#SBATCH --gpus-per-node=" + std::to_string(slurm.gpus_per_node));
  if (!slurm.mem.empty()) options.push_back("#SBATCH --mem=" + slurm.mem);
  for (const std::string& extra : slurm.extra) options.push_back("#SBATCH " + extra);
  v["sbatch_options"] = lines(options);

  v["environment"] = environment_lines(job.environment);
  v["workdir"] = shell_quote(job.absolute_workdir().string());
  v["bin_dir"] = shell_quote(job.bin_dir);
  v["program"] = shell_quote(job.program);
  v["config"] = shell_quote(job.config);
  v["config_args"] = job.config.empty() ? "" : "--config " + shell_quote(job.config);
  v["run_dir_arg"] = shell_quote("run_dir=" + job.run_dir);
  std::vector<std::string> overrides;
  for (const auto& [key, value] : job.overrides) overrides.push_back(shell_quote(key + "=" + value));
  v["overrides"] = words(overrides);

  v["model"] = shell_quote(eval.model);
  std::vector<std::string> steps;
  for (const std::int64_t step : eval.steps) steps.push_back(std::to_string(step));
  v["steps"] = words(steps);
  v["steps_arg"] = steps.empty() ? "" : shell_quote("steps=" + comma_list(steps));
  v["array"] = steps.empty() ? "0" : "0-" + std::to_string(steps.size() - 1);
  v["tasks_arg"] = eval.tasks.empty() ? "" : shell_quote("tasks=" + comma_list(eval.tasks));
  v["out"] = shell_quote(eval.out);
  v["out_arg"] = eval.out.empty() ? "" : shell_quote("out=" + eval.out);
  v["gate"] = shell_quote(eval.gate);
  v["baseline"] = shell_quote(eval.baseline);
  v["results"] = shell_quote(results_of(eval.out));
  v["compare_markdown"] = shell_quote((fs::path(eval.out) / "compare.md").string());
  // The gate job compares the newest step with the baseline, or with the step before it.
  std::vector<std::int64_t> sorted = eval.steps;
  std::sort(sorted.begin(), sorted.end());
  std::string gate_new, gate_baseline = eval.baseline;
  if (!sorted.empty()) gate_new = results_of(step_dir(eval.out, sorted.back()));
  if (gate_baseline.empty() && sorted.size() >= 2) gate_baseline = results_of(step_dir(eval.out, sorted[sorted.size() - 2]));
  v["gate_new"] = shell_quote(gate_new);
  v["gate_baseline"] = shell_quote(gate_baseline);
  return v;
}

std::string template_text(const std::string& name) {
  if (const char* dir = std::getenv("LOOM_SLURM_TEMPLATES"); dir != nullptr && *dir != '\0') {
    const fs::path file = fs::path(dir) / (name + ".sbatch");
    std::ifstream in(file);
    if (!in) throw JobError(file.string() + ": cannot read the template (LOOM_SLURM_TEMPLATES=" + dir + ")");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  for (const EmbeddedTemplate& entry : embedded_templates()) {
    if (name == entry.name) return std::string(entry.text);
  }
  throw JobError("no template named " + name + " is compiled into loom-submit");
}

std::string fill_template(std::string_view text, const std::map<std::string, std::string>& values,
                          const std::string& template_name) {
  std::string out;
  std::size_t line_number = 1;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    std::string rendered;
    bool only_placeholder = false;
    std::size_t pos = 0;
    while (pos < line.size()) {
      const std::size_t open = line.find("{{", pos);
      if (open == std::string_view::npos) {
        rendered += line.substr(pos);
        break;
      }
      const std::size_t close = line.find("}}", open);
      if (close == std::string_view::npos) {
        throw JobError(template_name + ".sbatch:" + std::to_string(line_number) + ": unclosed {{");
      }
      const std::string key(line.substr(open + 2, close - open - 2));
      const auto found = values.find(key);
      if (found == values.end()) {
        throw JobError(template_name + ".sbatch:" + std::to_string(line_number) + ": unknown placeholder {{" + key +
                       "}}");
      }
      only_placeholder = open == 0 && close + 2 == line.size();
      rendered += std::string(line.substr(pos, open - pos)) + found->second;
      pos = close + 2;
      // An empty word between blanks leaves one blank, not two.
      if (found->second.empty() && !rendered.empty() && rendered.back() == ' ' && pos < line.size() && line[pos] == ' ') {
        ++pos;
      }
    }
    // Trailing blanks are outside any quotes (a quoted word ends in '): left by empty placeholders.
    while (!rendered.empty() && rendered.back() == ' ') rendered.pop_back();
    if (!(only_placeholder && rendered.empty())) out += rendered + (end < text.size() ? "\n" : "");
    at = end + 1;
    ++line_number;
  }
  return out;
}

RenderedJob render_job(const JobSpec& job) {
  const std::map<std::string, std::string> values = placeholder_values(job);
  RenderedJob rendered;
  const std::string name = template_name(job.kind);
  rendered.script = fill_template(template_text(name), values, name);
  if (job.has_gate_job()) rendered.gate_script = fill_template(template_text("eval-gate"), values, "eval-gate");
  return rendered;
}

}  // namespace loom::slurm
