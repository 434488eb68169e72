// Pipelines of loom jobs (docs/slurm.md, "Pipelines"): a YAML file with a `name` and a list of
// `stages`, each an inline job body (slurm/job_spec.h) or `job: FILE`, with `after: [names]`
// (default: the stage before; `after: []` for none). A stage may name an earlier stage's
// outputs in its config, overrides, eval.model and eval.baseline values:
// {{stage.NAME.run_dir}} and {{stage.NAME.model}} (= run_dir/model.h5, or run_dir/quantized.h5
// for a quantize stage: loom-quantize's output directory is run_dir), resolved at render
// time since every run directory is known up front — only for stages it runs after
// (directly or through others), so the output exists when it starts.
//
// The state file (default <first run_dir>/../pipeline-<name>.json, format
// loom-submit-pipeline/1) records each stage's job id, script and dependencies for
// `loom-submit status`.
//
// Thread safety: reentrant.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "slurm/job_spec.h"
#include "slurm/submit.h"

namespace loom::slurm {

struct PipelineStage {
  JobSpec job;                     // job.name is the stage's name
  std::vector<std::string> after;  // names of the stages it waits for
};

struct Pipeline {
  std::filesystem::path file;
  std::string name;
  std::vector<PipelineStage> stages;  // in file order, which is a valid submission order
  // <first stage's run_dir>/../pipeline-<name>.json
  std::filesystem::path default_state_path() const;
};

// Reads and validates a pipeline and every stage (job files relative to the current
// directory). Throws JobError naming file:line.
Pipeline load_pipeline(const std::filesystem::path& file);

// The state JSON after `submitted` (one entry per stage submitted so far, in order).
nlohmann::json pipeline_state(const Pipeline& pipeline, const std::vector<SubmittedJob>& submitted);

// Submits every stage in order, each after the final job ids of its `after` stages, writing the
// state file after each submission. Returns the submitted jobs; throws SubmitError on a failed
// sbatch (the state file then lists what was submitted).
std::vector<SubmittedJob> submit_pipeline(const Pipeline& pipeline, const std::filesystem::path& state_file,
                                          const std::string& sbatch);

}  // namespace loom::slurm
