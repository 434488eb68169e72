// Submitting rendered jobs with sbatch: the scripts are written to <run_dir>/slurm/ and
// submitted with `sbatch --parsable` (plus --dependency=afterok:ID:ID and
// --kill-on-invalid-dep=yes when a job waits for others), so a failed predecessor cancels it.
// An eval-array job with a gate is two submissions: the array, then its compare job after it.
//
// Thread safety: reentrant (writes the job's own files, runs sbatch).
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "slurm/job_spec.h"
#include "slurm/render.h"

namespace loom::slurm {

// sbatch failed or printed no job id: loom-submit exits 1 with this message (sbatch's stderr quoted).
class SubmitError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SubmittedJob {
  std::string job_id;                    // the job (or the array)
  std::string gate_job_id;               // eval-array with a gate: its compare job, else empty
  std::filesystem::path script;
  std::filesystem::path gate_script;
  std::vector<std::string> dependencies;  // the job ids it was submitted after
  // What later jobs wait for: the gate when there is one (it runs after the array).
  const std::string& final_id() const { return gate_job_id.empty() ? job_id : gate_job_id; }
};

// Throws JobError when <workdir>/<bin_dir>/<program> is not an executable file.
void check_program(const JobSpec& job);

// Runs `sbatch --parsable [--dependency=afterok:A:B --kill-on-invalid-dep=yes] SCRIPT` and
// returns the job id it printed. `sbatch` is the program to run (a name on PATH or a path).
std::string sbatch_submit(const std::string& sbatch, const std::filesystem::path& script,
                          const std::vector<std::string>& after_ids);

// Writes the job's scripts and submits them after `after_ids` (may be empty).
SubmittedJob submit_job(const JobSpec& job, const RenderedJob& rendered, const std::vector<std::string>& after_ids,
                        const std::string& sbatch);

}  // namespace loom::slurm
