// `loom-submit status`: the state of each stage of a submitted pipeline, from its state file
// (slurm/pipeline.h) and the Slurm clients — `squeue -h -j ID -o %T` while the job is queued
// or running, else `scontrol show job ID` (JobState=, ExitCode=) for a finished one still in
// slurmctld's memory. Accounting (sacct) is not needed.
//
// Thread safety: reentrant (runs squeue and scontrol).
#pragma once

#include <filesystem>
#include <ostream>
#include <string>

namespace loom::slurm {

struct JobState {
  std::string state;      // PENDING, RUNNING, COMPLETED, FAILED, …; "UNKNOWN" when Slurm no longer knows it
  std::string exit_code;  // "0:0" (code:signal) from scontrol, empty while queued
  std::string reason;     // scontrol's Reason= when not "None"
};

// One job (an array reports its tasks' states, distinct ones joined with ',').
JobState query_job(const std::string& job_id);

// Prints one line per stage (and per gate job): name, job id, state, exit code, and the
// stages it runs after. Throws JobError for a missing or malformed state file.
void print_status(const std::filesystem::path& state_file, std::ostream& out);

}  // namespace loom::slurm
