// Rendering a job (slurm/job_spec.h) into sbatch scripts from the templates in
// slurm/templates/ (train, eval, eval-array, quantize, and eval-gate for the array's
// dependent compare job). Placeholders {{name}} are replaced, in one pass, by words the
// renderer has shell-quoted (paths, config values, overrides, environment values) or by
// values a pattern has checked (names, numbers, times, sbatch options); a line holding only a
// placeholder that renders empty is dropped. An unknown placeholder is an error, so an edited
// template cannot silently lose a value.
//
// The templates are compiled into loom-submit (slurm/CMakeLists.txt); LOOM_SLURM_TEMPLATES=DIR
// reads DIR/<name>.sbatch instead, for a centre that adapts them without rebuilding.
//
// Thread safety: reentrant (reads the environment and, with LOOM_SLURM_TEMPLATES, files).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "slurm/job_spec.h"

namespace loom::slurm {

struct RenderedJob {
  std::string script;       // the job's sbatch script
  std::string gate_script;  // eval-array with eval.gate: the dependent compare job, else empty
};

RenderedJob render_job(const JobSpec& job);

// The text of template `name` ("train", "eval-gate", …): LOOM_SLURM_TEMPLATES/<name>.sbatch
// when that variable is set, else the copy compiled in. Throws JobError when missing.
std::string template_text(const std::string& name);

// Fills {{key}} from `values` (one pass: values are not scanned again). Throws JobError naming
// `template_name` for a placeholder `values` lacks.
std::string fill_template(std::string_view text, const std::map<std::string, std::string>& values,
                          const std::string& template_name);

// The placeholder values of `job` for every template (also those a given template ignores).
std::map<std::string, std::string> placeholder_values(const JobSpec& job);

}  // namespace loom::slurm
