#include "slurm/pipeline.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "slurm/render.h"
#include "slurm/shell_words.h"
#include "slurm/yaml_reader.h"

namespace loom::slurm {

namespace fs = std::filesystem;

namespace {

YAML::Node load_yaml(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw JobError(file.string() + ": cannot read the file");
  try {
    return YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw JobError(file.string() + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
}

// What the first pass knows of a stage before its body is validated.
struct StageOutline {
  std::string name;
  fs::path file;         // the file its body is in
  YAML::Node body;       // the job's map
  YAML::Node entry;      // the stage entry in the pipeline file
  std::string run_dir;       // as written
  std::string workdir;       // as written
  std::string job_template;  // as written: which file {{stage.NAME.model}} names
  std::vector<std::string> after;
  std::set<std::string> ancestors;  // every stage it runs after, directly or not
};

std::string scalar_or_empty(const YAML::Node& node) { return node && node.IsScalar() ? node.Scalar() : ""; }

StageOutline outline(const YamlReader& reader, const YAML::Node& entry, std::size_t index,
                     const std::vector<StageOutline>& earlier) {
  StageOutline stage;
  stage.entry = entry;
  const std::string where = "stages[" + std::to_string(index) + "]";
  if (!entry.IsMap()) reader.fail(entry, where + ": expected a job body or job: FILE");
  if (entry["job"]) {
    reader.check_map(entry, where, {"job", "after"});
    stage.file = reader.string(entry["job"], where + ".job");
    stage.body = load_yaml(stage.file);
  } else {
    stage.file = reader.file();
    stage.body = entry;
  }
  stage.name = scalar_or_empty(stage.body["name"]);
  stage.run_dir = scalar_or_empty(stage.body["run_dir"]);
  stage.job_template = scalar_or_empty(stage.body["template"]);
  stage.workdir = stage.body["workdir"] ? scalar_or_empty(stage.body["workdir"]) : ".";
  for (const StageOutline& other : earlier) {
    if (!stage.name.empty() && other.name == stage.name) {
      reader.fail(entry, where + ": stage name " + in_quotes(stage.name) + " is used twice");
    }
  }
  if (entry["after"]) {
    stage.after = reader.string_list(entry["after"], where + ".after");
  } else if (!earlier.empty()) {
    stage.after = {earlier.back().name};
  }
  for (std::size_t i = 0; i < stage.after.size(); ++i) {
    const auto found = std::find_if(earlier.begin(), earlier.end(),
                                    [&](const StageOutline& other) { return other.name == stage.after[i]; });
    if (found == earlier.end()) {
      reader.fail(entry["after"][i], where + ".after[" + std::to_string(i) + "]: no earlier stage is named " +
                                         in_quotes(stage.after[i]) + " (stages run after stages listed before them)");
    }
    stage.ancestors.insert(found->name);
    stage.ancestors.insert(found->ancestors.begin(), found->ancestors.end());
  }
  return stage;
}

// The model file a stage leaves in its run directory: loom-quantize writes quantized.h5 there
// (run_dir= is its output directory), the trainers model.h5.
std::string model_file(const std::string& job_template) {
  return job_template == template_name(JobTemplate::quantize) ? "quantized.h5" : "model.h5";
}

// {{stage.NAME.run_dir}} / {{stage.NAME.model}} for a stage whose ancestors are `stage.ancestors`.
std::string resolve_reference(const std::string& reference, const StageOutline& stage,
                              const std::vector<StageOutline>& earlier) {
  const std::string prefix = "stage.";
  const std::size_t last_dot = reference.rfind('.');
  if (reference.rfind(prefix, 0) != 0 || last_dot <= prefix.size()) {
    throw std::invalid_argument("expected {{stage.NAME.run_dir}} or {{stage.NAME.model}}, got {{" + reference + "}}");
  }
  const std::string name = reference.substr(prefix.size(), last_dot - prefix.size());
  const std::string output = reference.substr(last_dot + 1);
  if (output != "run_dir" && output != "model") {
    throw std::invalid_argument("{{" + reference + "}}: a stage's outputs are run_dir and model, not " + output);
  }
  if (!stage.ancestors.contains(name)) {
    throw std::invalid_argument("{{" + reference + "}}: stage " + in_quotes(stage.name) + " does not run after a stage " +
                                in_quotes(name) + " (add it to after:), so its outputs may not exist yet");
  }
  const auto found = std::find_if(earlier.begin(), earlier.end(), [&](const StageOutline& s) { return s.name == name; });
  // Relative run directories are relative to each job's workdir: name another one absolutely.
  fs::path run_dir = found->run_dir;
  if (absolute_path(found->workdir) != absolute_path(stage.workdir)) {
    run_dir = absolute_path(absolute_path(found->workdir) / found->run_dir);
  }
  return output == "model" ? (run_dir / model_file(found->job_template)).string() : run_dir.string();
}

void write_file(const fs::path& path, const std::string& text) {
  std::error_code error;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), error);
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << text;
    if (!out.flush()) throw SubmitError("cannot write the state file " + temporary.string());
  }
  fs::rename(temporary, path, error);
  if (error) throw SubmitError("cannot write the state file " + path.string() + ": " + error.message());
}

}  // namespace

fs::path Pipeline::default_state_path() const {
  return stages.front().job.absolute_run_dir().parent_path() / ("pipeline-" + name + ".json");
}

Pipeline load_pipeline(const fs::path& file) {
  const YAML::Node root = load_yaml(file);
  const YamlReader reader(file);
  reader.check_map(root, "", {"name", "stages"});
  Pipeline pipeline;
  pipeline.file = file;
  if (!root["name"]) reader.fail(root, "missing key \"name\" (the pipeline's name, for its state file)");
  pipeline.name = reader.string(root["name"], "name");
  if (!is_job_name(pipeline.name)) {
    reader.fail(root["name"], "name: expected 1 to 64 of [A-Za-z0-9._-], got " + in_quotes(pipeline.name));
  }
  const YAML::Node stages = root["stages"];
  if (!stages || !stages.IsSequence() || stages.size() == 0) {
    reader.fail(stages ? stages : root, "stages: expected a list of at least one stage");
  }
  std::vector<StageOutline> outlines;
  for (std::size_t i = 0; i < stages.size(); ++i) outlines.push_back(outline(reader, stages[i], i, outlines));
  for (std::size_t i = 0; i < outlines.size(); ++i) {
    const StageOutline& stage = outlines[i];
    const std::vector<StageOutline> earlier(outlines.begin(), outlines.begin() + static_cast<std::ptrdiff_t>(i));
    JobReadOptions options;
    options.resolve_stage = [&](const std::string& reference) { return resolve_reference(reference, stage, earlier); };
    if (stage.file == file) options.ignored = {"after"};
    PipelineStage parsed{read_job(stage.body, stage.file, options), stage.after};
    pipeline.stages.push_back(std::move(parsed));
  }
  return pipeline;
}

nlohmann::json pipeline_state(const Pipeline& pipeline, const std::vector<SubmittedJob>& submitted) {
  nlohmann::json stages = nlohmann::json::array();
  for (std::size_t i = 0; i < submitted.size(); ++i) {
    const PipelineStage& stage = pipeline.stages[i];
    const SubmittedJob& job = submitted[i];
    nlohmann::json entry = {{"name", stage.job.name},
                            {"template", template_name(stage.job.kind)},
                            {"job_id", job.job_id},
                            {"script", job.script.string()},
                            {"run_dir", stage.job.absolute_run_dir().string()},
                            {"after", stage.after},
                            {"dependencies", job.dependencies}};
    if (!job.gate_job_id.empty()) {
      entry["gate_job_id"] = job.gate_job_id;
      entry["gate_script"] = job.gate_script.string();
    }
    stages.push_back(entry);
  }
  return {{"format", "loom-submit-pipeline/1"},
          {"pipeline", pipeline.name},
          {"file", fs::absolute(pipeline.file).lexically_normal().string()},
          {"stages", stages}};
}

std::vector<SubmittedJob> submit_pipeline(const Pipeline& pipeline, const fs::path& state_file,
                                          const std::string& sbatch) {
  std::vector<RenderedJob> rendered;
  for (const PipelineStage& stage : pipeline.stages) {
    check_program(stage.job);
    rendered.push_back(render_job(stage.job));
  }
  std::vector<SubmittedJob> submitted;
  std::map<std::string, std::string> final_ids;
  for (std::size_t i = 0; i < pipeline.stages.size(); ++i) {
    const PipelineStage& stage = pipeline.stages[i];
    std::vector<std::string> after_ids;
    for (const std::string& name : stage.after) after_ids.push_back(final_ids.at(name));
    try {
      submitted.push_back(submit_job(stage.job, rendered[i], after_ids, sbatch));
    } catch (const SubmitError& e) {
      if (!submitted.empty()) write_file(state_file, pipeline_state(pipeline, submitted).dump(2) + "\n");
      throw SubmitError("stage " + stage.job.name + ": " + e.what());
    }
    final_ids[stage.job.name] = submitted.back().final_id();
    write_file(state_file, pipeline_state(pipeline, submitted).dump(2) + "\n");
  }
  return submitted;
}

}  // namespace loom::slurm
