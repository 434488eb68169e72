#include "slurm/status.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "slurm/job_spec.h"
#include "slurm/process.h"

namespace loom::slurm {

namespace {

// The value of `Key=` in scontrol's `Key=value Key=value` output, or "".
std::string field(const std::string& text, const std::string& key) {
  std::size_t at = 0;
  while ((at = text.find(key + "=", at)) != std::string::npos) {
    if (at == 0 || std::isspace(static_cast<unsigned char>(text[at - 1]))) {
      const std::size_t begin = at + key.size() + 1;
      std::size_t end = begin;
      while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
      return text.substr(begin, end - begin);
    }
    at += key.size();
  }
  return "";
}

std::string join_unique(std::istringstream lines) {
  std::string out, line;
  std::vector<std::string> seen;
  while (std::getline(lines, line)) {
    if (line.empty() || std::find(seen.begin(), seen.end(), line) != seen.end()) continue;
    seen.push_back(line);
    out += (out.empty() ? "" : ",") + line;
  }
  return out;
}

std::string stage_line(const std::string& name, const std::string& id, const std::string& after) {
  const JobState state = query_job(id);
  std::ostringstream line;
  line << std::left << std::setw(20) << name << " job " << std::setw(10) << id << " " << std::setw(12) << state.state;
  if (!state.exit_code.empty()) line << " exit " << state.exit_code;
  if (!state.reason.empty()) line << " (" << state.reason << ")";
  if (!after.empty()) line << "  after " << after;
  return line.str();
}

}  // namespace

JobState query_job(const std::string& job_id) {
  JobState state;
  const ProcessResult queued = run_process({"squeue", "-h", "-j", job_id, "-o", "%T"});
  if (queued.status == 0) state.state = join_unique(std::istringstream(queued.out));
  const ProcessResult shown = run_process({"scontrol", "show", "job", job_id});
  if (shown.status == 0) {
    if (state.state.empty()) state.state = field(shown.out, "JobState");
    state.exit_code = field(shown.out, "ExitCode");
    const std::string reason = field(shown.out, "Reason");
    if (!reason.empty() && reason != "None") state.reason = reason;
  }
  if (state.state.empty()) state.state = "UNKNOWN";
  return state;
}

void print_status(const std::filesystem::path& state_file, std::ostream& out) {
  std::ifstream in(state_file);
  if (!in) throw JobError(state_file.string() + ": cannot read the pipeline state file (see --state)");
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(in);
    if (state.at("format") != "loom-submit-pipeline/1") throw JobError("");
    out << "pipeline " << state.at("pipeline").get<std::string>() << " (" << state_file.string() << ")\n";
    std::map<std::string, std::string> ids;
    for (const nlohmann::json& stage : state.at("stages")) {
      const std::string name = stage.at("name").get<std::string>();
      std::string after;
      for (const nlohmann::json& other : stage.at("after")) {
        const std::string other_name = other.get<std::string>();
        after += (after.empty() ? "" : ", ") + other_name + (ids.contains(other_name) ? " " + ids[other_name] : "");
      }
      const std::string id = stage.at("job_id").get<std::string>();
      out << stage_line(name, id, after) << "\n";
      ids[name] = id;
      if (stage.contains("gate_job_id")) {
        const std::string gate = stage.at("gate_job_id").get<std::string>();
        out << stage_line(name + " (gate)", gate, name + " " + id) << "\n";
        ids[name] = gate;
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw JobError(state_file.string() + ": not a loom-submit pipeline state file: " + e.what());
  } catch (const JobError&) {
    throw JobError(state_file.string() + ": not a loom-submit pipeline state file (format loom-submit-pipeline/1)");
  }
}

}  // namespace loom::slurm
