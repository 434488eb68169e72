#include "slurm/submit.h"

#include <unistd.h>

#include <cctype>
#include <fstream>

#include "slurm/process.h"
#include "slurm/yaml_reader.h"

namespace loom::slurm {

namespace fs = std::filesystem;

namespace {

void write_script(const fs::path& path, const std::string& text) {
  std::error_code error;
  fs::create_directories(path.parent_path(), error);
  if (error) throw SubmitError("cannot create " + path.parent_path().string() + ": " + error.message());
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw SubmitError("cannot write " + temporary.string());
  }
  fs::permissions(temporary, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add, error);
  fs::rename(temporary, path, error);
  if (error) throw SubmitError("cannot write " + path.string() + ": " + error.message());
}

std::string trimmed(const std::string& text) {
  std::size_t begin = 0, end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return text.substr(begin, end - begin);
}

}  // namespace

void check_program(const JobSpec& job) {
  const fs::path program = job.program_path();
  if (!fs::is_regular_file(program) || access(program.c_str(), X_OK) != 0) {
    throw JobError(job.file.string() + ": " + program.string() + " is not an executable file (program " +
                   job.program + " in bin_dir " + job.bin_dir + " under workdir " + job.workdir +
                   "); build it or set bin_dir — or use --dry-run to only render");
  }
}

std::string sbatch_submit(const std::string& sbatch, const fs::path& script, const std::vector<std::string>& after_ids) {
  std::vector<std::string> argv = {sbatch, "--parsable"};
  if (!after_ids.empty()) {
    std::string dependency = "--dependency=afterok";
    for (const std::string& id : after_ids) dependency += ":" + id;
    argv.push_back(dependency);
    argv.push_back("--kill-on-invalid-dep=yes");
  }
  argv.push_back(script.string());
  const ProcessResult result = run_process(argv);
  std::string command;
  for (const std::string& arg : argv) command += (command.empty() ? "" : " ") + arg;
  if (result.status != 0) {
    throw SubmitError(command + " failed (exit " + std::to_string(result.status) + "): " +
                      in_quotes(trimmed(result.err)));
  }
  // --parsable prints "ID" or "ID;CLUSTER"
  const std::string printed = trimmed(result.out);
  const std::string id = printed.substr(0, printed.find(';'));
  bool digits = !id.empty();
  for (const char c : id) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  if (!digits) {
    throw SubmitError(command + " printed no job id: stdout " + in_quotes(printed) + ", stderr " +
                      in_quotes(trimmed(result.err)));
  }
  return id;
}

SubmittedJob submit_job(const JobSpec& job, const RenderedJob& rendered, const std::vector<std::string>& after_ids,
                        const std::string& sbatch) {
  SubmittedJob submitted;
  submitted.script = job.script_path();
  submitted.dependencies = after_ids;
  write_script(submitted.script, rendered.script);
  if (!rendered.gate_script.empty()) {
    submitted.gate_script = job.gate_script_path();
    write_script(submitted.gate_script, rendered.gate_script);
  }
  submitted.job_id = sbatch_submit(sbatch, submitted.script, after_ids);
  if (!rendered.gate_script.empty()) {
    submitted.gate_job_id = sbatch_submit(sbatch, submitted.gate_script, {submitted.job_id});
  }
  return submitted;
}

}  // namespace loom::slurm
