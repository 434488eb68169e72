// loom-submit: render loom's Slurm templates from a job YAML and submit them, chain the stages
// of a pipeline with afterok dependencies, and show a submitted pipeline's state
// (docs/slurm.md).
//
//   loom-submit JOB.yaml [--dry-run] [--sbatch PATH]
//   loom-submit pipeline PIPELINE.yaml [--dry-run] [--state FILE] [--sbatch PATH]
//   loom-submit status [--state FILE]
//
// Exit codes: 0 done; 1 sbatch (or squeue/scontrol) failed, its stderr quoted; 2 bad input.
#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>
#include <string>

#include "slurm/job_spec.h"
#include "slurm/pipeline.h"
#include "slurm/render.h"
#include "slurm/status.h"
#include "slurm/submit.h"

namespace loom::slurm {
namespace {

namespace fs = std::filesystem;

constexpr int kExitSubmitFailed = 1;
constexpr int kExitBadInput = 2;

int parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitBadInput;
  }
  return -1;
}

int job_command(int argc, char** argv) {
  CLI::App app{"Render a loom Slurm job (slurm/templates/) from a job YAML and submit it with sbatch; prints the "
               "job id (for an eval-array job with a gate: the gate job's, which runs after the array). "
               "Subcommands: `loom-submit pipeline --help`, `loom-submit status --help`",
               "loom-submit"};
  std::string file, sbatch = "sbatch";
  bool dry_run = false;
  app.add_option("job", file, "The job YAML (docs/slurm.md, configs/slurm/)")->required();
  app.add_flag("--dry-run", dry_run, "Print the rendered script(s) instead of writing and submitting them");
  app.add_option("--sbatch", sbatch, "The sbatch program to run")->capture_default_str();
  if (const int code = parse(app, argc, argv); code >= 0) return code;
  const JobSpec job = load_job(file);
  const RenderedJob rendered = render_job(job);
  if (dry_run) {
    std::cout << rendered.script;
    if (!rendered.gate_script.empty()) {
      std::cout << "\n# ---- then, after the array (--dependency=afterok), " << job.gate_script_path().string()
                << ":\n" << rendered.gate_script;
    }
    return 0;
  }
  check_program(job);
  const SubmittedJob submitted = submit_job(job, rendered, {}, sbatch);
  std::cerr << "loom-submit: " << job.name << " submitted as job " << submitted.job_id << " ("
            << submitted.script.string() << ")";
  if (!submitted.gate_job_id.empty()) {
    std::cerr << ", its gate as job " << submitted.gate_job_id << " after it (" << submitted.gate_script.string() << ")";
  }
  std::cerr << "\n";
  std::cout << submitted.final_id() << "\n";
  return 0;
}

int pipeline_command(int argc, char** argv) {
  CLI::App app{"Submit the stages of a pipeline YAML in order, each with --dependency=afterok on the stages it runs "
               "after (a failed stage cancels the rest); prints `STAGE JOBID` per stage and writes a state file "
               "for `loom-submit status`",
               "loom-submit pipeline"};
  std::string file, state, sbatch = "sbatch";
  bool dry_run = false;
  app.add_option("pipeline", file, "The pipeline YAML (docs/slurm.md, configs/slurm/)")->required();
  app.add_flag("--dry-run", dry_run, "Print every stage's rendered script instead of submitting");
  app.add_option("--state", state, "The state file to write (default: <first stage's run_dir>/../pipeline-<name>.json)");
  app.add_option("--sbatch", sbatch, "The sbatch program to run")->capture_default_str();
  if (const int code = parse(app, argc, argv); code >= 0) return code;
  const Pipeline pipeline = load_pipeline(file);
  if (dry_run) {
    for (const PipelineStage& stage : pipeline.stages) {
      const RenderedJob rendered = render_job(stage.job);
      std::string after;
      for (const std::string& name : stage.after) after += (after.empty() ? "" : ", ") + name;
      std::cout << "# ==== stage " << stage.job.name << " (after: " << (after.empty() ? "none" : after) << "): "
                << stage.job.script_path().string() << "\n" << rendered.script;
      if (!rendered.gate_script.empty()) {
        std::cout << "# ==== stage " << stage.job.name << ", gate (after the array): "
                  << stage.job.gate_script_path().string() << "\n" << rendered.gate_script;
      }
    }
    return 0;
  }
  const fs::path state_file = state.empty() ? pipeline.default_state_path() : fs::path(state);
  const std::vector<SubmittedJob> submitted = submit_pipeline(pipeline, state_file, sbatch);
  for (std::size_t i = 0; i < submitted.size(); ++i) {
    std::cout << pipeline.stages[i].job.name << " " << submitted[i].job_id << "\n";
    if (!submitted[i].gate_job_id.empty()) {
      std::cout << pipeline.stages[i].job.name << "-gate " << submitted[i].gate_job_id << "\n";
    }
  }
  std::cerr << "loom-submit: pipeline " << pipeline.name << " submitted; state in " << state_file.string()
            << " (loom-submit status --state " << state_file.string() << ")\n";
  return 0;
}

// Without --state: the newest runs/pipeline-*.json, where pipelines of run_dir runs/X write it.
fs::path newest_state_file() {
  fs::path newest;
  fs::file_time_type newest_time;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("runs", error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("pipeline-", 0) != 0 || entry.path().extension() != ".json") continue;
    if (newest.empty() || entry.last_write_time() > newest_time) {
      newest = entry.path();
      newest_time = entry.last_write_time();
    }
  }
  if (newest.empty()) throw JobError("no runs/pipeline-*.json here: name the state file with --state FILE");
  return newest;
}

int status_command(int argc, char** argv) {
  CLI::App app{"Show each stage of a submitted pipeline: job id, Slurm state, exit code and what it runs after",
               "loom-submit status"};
  std::string state;
  app.add_option("--state", state, "The pipeline's state file (default: the newest runs/pipeline-*.json)");
  if (const int code = parse(app, argc, argv); code >= 0) return code;
  print_status(state.empty() ? newest_state_file() : fs::path(state), std::cout);
  return 0;
}

}  // namespace
}  // namespace loom::slurm

int main(int argc, char** argv) {
  using namespace loom::slurm;
  try {
    if (argc > 1 && std::strcmp(argv[1], "pipeline") == 0) return pipeline_command(argc - 1, argv + 1);
    if (argc > 1 && std::strcmp(argv[1], "status") == 0) return status_command(argc - 1, argv + 1);
    return job_command(argc, argv);
  } catch (const JobError& e) {
    std::cerr << "loom-submit: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const SubmitError& e) {
    std::cerr << "loom-submit: " << e.what() << "\n";
    return kExitSubmitFailed;
  } catch (const std::exception& e) {
    std::cerr << "loom-submit: " << e.what() << "\n";
    return kExitSubmitFailed;
  }
}
