// loom-submit rendering (slurm/render.h): the important lines of each template, and every
// string field of a job set to injection payloads — each is refused with a message naming
// file:line and the key, or reaches the script only inside single quotes (checked with a
// shell-word parser, `bash -n` on the whole script and bash's own reading of the word).
#define BOOST_TEST_MODULE slurm_render
#include <boost/test/unit_test.hpp>

#include <yaml-cpp/yaml.h>

#include <regex>

#include "slurm/embedded_templates.h"
#include "slurm/job_spec.h"
#include "slurm/render.h"
#include "test_slurm_support.h"

using namespace loom::slurm;
using namespace slurm_test;

namespace {

const char* kTrainJob = R"(name: tiny-sft
template: train
program: loom-sft
config: configs/tiny-wordnet-sft.yaml
overrides: [train.max_steps=100, checkpoint.every=20]
run_dir: runs/tiny-sft
bin_dir: build/bin
workdir: .
slurm:
  partition: debug
  account: proj1
  qos: ""
  nodes: 2
  tasks_per_node: 4
  gpus_per_node: 4
  cpus_per_task: 8
  mem: 64G
  time: "02:00:00"
  signal_seconds: 120
  requeue: true
  max_restarts: 5
  extra: ["--exclusive", "--constraint=a100"]
environment:
  modules: [openmpi/4.1, cuda/12.2]
  variables: {OMP_PROC_BIND: close, NCCL_DEBUG: WARN}
)";

const char* kEvalArrayJob = R"(name: nightly
template: eval-array
run_dir: runs/nightly
slurm: {partition: debug, tasks_per_node: 2, time: "00:20:00"}
eval:
  model: runs/tiny-sft
  steps: [200, 100, 300]
  tasks: [brown-heldout, wordnet-definition-mc]
  out: runs/tiny-sft/eval
  gate: configs/eval/gate.yaml
)";

JobSpec job_from(const Scratch& scratch, const std::string& text, const std::string& name = "job.yaml") {
  write_file(scratch / name, text);
  return load_job(scratch / name);
}

bool has_line(const std::string& script, const std::string& line) {
  std::istringstream lines(script);
  for (std::string l; std::getline(lines, l);) {
    if (l == line) return true;
  }
  return false;
}

int count_prefix(const std::string& script, const std::string& prefix) {
  std::istringstream lines(script);
  int count = 0;
  for (std::string l; std::getline(lines, l);) count += l.rfind(prefix, 0) == 0;
  return count;
}

std::string bash_syntax_check(const std::string& script) {
  Scratch scratch;
  write_file(scratch / "job.sbatch", script);
  return run_command("bash -n " + (scratch / "job.sbatch").string(), scratch / "out.txt");
}

}  // namespace

BOOST_AUTO_TEST_CASE(train_template_has_the_options_launch_and_requeue_logic) {
  Scratch scratch;
  const JobSpec job = job_from(scratch, kTrainJob);
  const std::string script = render_job(job).script;
  const std::string log_dir = (fs::current_path() / "runs/tiny-sft/slurm").string();
  for (const std::string& line : std::vector<std::string>
       {"#!/bin/bash", "#SBATCH --job-name=tiny-sft", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=8", "#SBATCH --time=02:00:00", "#SBATCH --signal=B:USR1@120", "#SBATCH --requeue",
        "#SBATCH --open-mode=append", "#SBATCH --partition=debug", "#SBATCH --account=proj1",
        "#SBATCH --gpus-per-node=4", "#SBATCH --mem=64G", "#SBATCH --exclusive", "#SBATCH --constraint=a100",
        "module load 'openmpi/4.1' || exit 1", "module load 'cuda/12.2' || exit 1",
        "export OMP_PROC_BIND='close'", "export NCCL_DEBUG='WARN'", "export OMP_NUM_THREADS=8",
        "cd '" + fs::current_path().string() + "' || exit 1", "LOOM_BIN='build/bin'", "gpus_per_node=4",
        "requeue=1", "max_restarts=5", "trap 'forward_signal USR1' USR1",
        "  srun --mpi=pmix --cpus-per-task=8 \"$@\" &",
        "    set -- bash -c 'export CUDA_VISIBLE_DEVICES=\"$SLURM_LOCALID\"; exec \"$@\"' loom-task \"$@\"",
        "      if scontrol requeue \"$SLURM_JOB_ID\"; then exit 0; fi",
        "#SBATCH --output=" + log_dir + "/tiny-sft-%j.out",
        "run_step \"$LOOM_BIN\"/'loom-sft' --config 'configs/tiny-wordnet-sft.yaml' 'run_dir=runs/tiny-sft' "
        "'train.max_steps=100' 'checkpoint.every=20'",
        "finish $?"}) {
    BOOST_TEST(has_line(script, line), "missing line: " << line);
  }
  BOOST_TEST(script.find("--qos") == std::string::npos);  // empty: omitted
  BOOST_TEST(count_prefix(script, "#SBATCH ") == 15);
  BOOST_TEST(script.find("{{") == std::string::npos);
  BOOST_TEST(bash_syntax_check(script) == "status 0\n");
  // Every #SBATCH line comes before the first command, or sbatch ignores it.
  const std::size_t last_sbatch = script.rfind("\n#SBATCH");
  const std::size_t first_command = script.find("\nmodule");
  BOOST_TEST(last_sbatch < first_command);
}

BOOST_AUTO_TEST_CASE(eval_array_renders_one_task_per_step_and_a_gate_job) {
  Scratch scratch;
  const JobSpec job = job_from(scratch, kEvalArrayJob);
  const RenderedJob rendered = render_job(job);
  const std::string& script = rendered.script;
  for (const std::string& line : std::vector<std::string>
       {"#SBATCH --array=0-2", "#SBATCH --job-name=nightly", "steps=(200 100 300)",
        "step=${steps[${SLURM_ARRAY_TASK_ID:-0}]}", "out='runs/tiny-sft/eval'/step-$(printf '%08d' \"$step\")",
        "run_step \"$LOOM_BIN\"/'loom-eval' --model 'runs/tiny-sft' \"steps=$step\" "
        "'tasks=brown-heldout,wordnet-definition-mc' \"out=$out\"",
        "#SBATCH --output=" + (fs::current_path() / "runs/nightly/slurm/nightly-%A_%a.out").string(),
        "#SBATCH --signal=B:USR1@60", "#SBATCH --requeue", "  srun --mpi=pmix --cpus-per-task=1 \"$@\" &"}) {
    BOOST_TEST(has_line(script, line), "missing line: " << line);
  }
  BOOST_TEST(script.find("--gpus-per-node") == std::string::npos);
  BOOST_TEST(bash_syntax_check(script) == "status 0\n");
  // The gate compares the newest two steps (300 against 200), whatever the listed order.
  const std::string& gate = rendered.gate_script;
  BOOST_TEST(has_line(gate, "\"$LOOM_BIN\"/'loom-eval' compare 'runs/tiny-sft/eval/step-00000200/results.json' "
                            "'runs/tiny-sft/eval/step-00000300/results.json' --gate 'configs/eval/gate.yaml' "
                            "--markdown 'runs/tiny-sft/eval/compare.md'"));
  BOOST_TEST(has_line(gate, "#SBATCH --job-name=nightly-gate"));
  BOOST_TEST(has_line(gate, "#SBATCH --partition=debug"));
  BOOST_TEST(gate.find("--array") == std::string::npos);
  BOOST_TEST(bash_syntax_check(gate) == "status 0\n");
  BOOST_TEST(job.gate_script_path() == fs::current_path() / "runs/nightly/slurm/nightly-gate.sbatch");

  // With a baseline (the previous night) the gate compares the newest step against it.
  std::string with_baseline = kEvalArrayJob;
  with_baseline += "  baseline: nights/2026-11-20/results.json\n";
  const RenderedJob nightly = render_job(job_from(scratch, with_baseline));
  BOOST_TEST(nightly.gate_script.find("compare 'nights/2026-11-20/results.json' "
                                      "'runs/tiny-sft/eval/step-00000300/results.json'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(eval_and_quantize_templates) {
  Scratch scratch;
  const JobSpec eval = job_from(scratch, R"(name: ev
template: eval
config: configs/eval/suites/tiny.yaml
run_dir: runs/ev
slurm: {requeue: false, max_restarts: 0}
eval: {model: runs/x/model.h5, out: runs/ev/out, gate: configs/eval/gate.yaml, baseline: old/results.json}
)");
  const std::string script = render_job(eval).script;
  BOOST_TEST(has_line(script, "run_step \"$LOOM_BIN\"/'loom-eval' --config 'configs/eval/suites/tiny.yaml' --model "
                              "'runs/x/model.h5' 'out=runs/ev/out'"));
  BOOST_TEST(has_line(script, "  \"$LOOM_BIN\"/'loom-eval' compare 'old/results.json' 'runs/ev/out/results.json' "
                              "--gate \"$gate\" --markdown 'runs/ev/out/compare.md'"));
  BOOST_TEST(has_line(script, "#SBATCH --no-requeue"));
  BOOST_TEST(has_line(script, "requeue=0"));
  BOOST_TEST(bash_syntax_check(script) == "status 0\n");

  const JobSpec quantize = job_from(scratch, R"(name: q
template: quantize
config: configs/quantize.yaml
overrides: [model=runs/dpo/model.h5]
run_dir: runs/q
)");
  const std::string q = render_job(quantize).script;
  BOOST_TEST(has_line(q, "run_step \"$LOOM_BIN\"/'loom-quantize' --config 'configs/quantize.yaml' 'run_dir=runs/q' "
                         "'model=runs/dpo/model.h5'"));
  BOOST_TEST(has_line(q, "#SBATCH --signal=B:USR1@60"));
  BOOST_TEST(bash_syntax_check(q) == "status 0\n");
}

BOOST_AUTO_TEST_CASE(fill_template_refuses_unknown_placeholders_and_drops_empty_lines) {
  const std::map<std::string, std::string> values = {{"a", "'x'"}, {"empty", ""}, {"braces", "{{a}}"}};
  BOOST_TEST(fill_template("one {{a}}\n{{empty}}\ntwo {{braces}}\n", values, "t") == "one 'x'\ntwo {{a}}\n");
  BOOST_CHECK_EXCEPTION(fill_template("x\n{{nope}}\n", values, "t"), JobError, [](const JobError& e) {
    return std::string(e.what()) == "t.sbatch:2: unknown placeholder {{nope}}";
  });
  for (const EmbeddedTemplate& entry : embedded_templates()) {  // every compiled template renders
    BOOST_TEST(entry.text.size() > 200u);
  }
  BOOST_TEST(embedded_templates().size() == 5u);
}

// Every string field, one payload at a time.
BOOST_AUTO_TEST_CASE(injection_payloads_are_refused_or_single_quoted) {
  const std::vector<std::string> payloads = {"PWN; rm -rf ~", "$(PWN)", "`PWN`", "PWN'x", "PWN\nx", "PWN\"x",
                                             "PWN && reboot", "PWN #x"};
  struct Field {
    const char* base;               // kTrainJob or kEvalArrayJob
    std::vector<std::string> path;  // where in the YAML the payload goes ("0" indexes a list)
    std::string key;                // what the error message must name (or `also_key`)
    bool may_be_quoted;             // an accepted value (quoted) is allowed for this field
    std::string also_key = "";      // another key the message may name instead
  };
  const std::vector<Field> fields = {
      {kTrainJob, {"name"}, "name", false},
      {kTrainJob, {"template"}, "template", false},
      {kTrainJob, {"program"}, "program", false},
      {kTrainJob, {"config"}, "config", true},
      {kTrainJob, {"overrides", "0"}, "overrides[0]", true},
      {kTrainJob, {"run_dir"}, "run_dir", false},
      {kTrainJob, {"bin_dir"}, "bin_dir", true},
      {kTrainJob, {"workdir"}, "workdir", false, "run_dir"},  // the log path (workdir + run_dir) is refused
      {kTrainJob, {"slurm", "partition"}, "slurm.partition", false},
      {kTrainJob, {"slurm", "account"}, "slurm.account", false},
      {kTrainJob, {"slurm", "qos"}, "slurm.qos", false},
      {kTrainJob, {"slurm", "mem"}, "slurm.mem", false},
      {kTrainJob, {"slurm", "time"}, "slurm.time", false},
      {kTrainJob, {"slurm", "extra", "0"}, "slurm.extra[0]", false},
      {kTrainJob, {"environment", "modules", "0"}, "environment.modules[0]", false},
      {kTrainJob, {"environment", "variables", "OMP_PROC_BIND"}, "environment.variables.OMP_PROC_BIND", true},
      {kEvalArrayJob, {"eval", "model"}, "eval.model", true},
      {kEvalArrayJob, {"eval", "tasks", "0"}, "eval.tasks[0]", true},
      {kEvalArrayJob, {"eval", "out"}, "eval.out", true},
      {kEvalArrayJob, {"eval", "gate"}, "eval.gate", true},
      {kEvalArrayJob, {"eval", "baseline"}, "eval.baseline", true},
  };
  Scratch scratch;
  int refused = 0, quoted = 0;
  for (const Field& field : fields) {
    for (const std::string& payload : payloads) {
      YAML::Node root = YAML::Load(field.base);
      YAML::Node node = root;
      for (std::size_t i = 0; i + 1 < field.path.size(); ++i) node.reset(node[field.path[i]]);
      const std::string& last = field.path.back();
      const bool is_override = field.path.front() == "overrides";
      const std::string value = is_override ? "train.lr=" + payload : payload;
      if (std::isdigit(static_cast<unsigned char>(last[0]))) {
        node[std::stoi(last)] = value;
      } else {
        node[last] = value;
      }
      YAML::Emitter emitter;
      emitter << root;
      const fs::path file = scratch / "payload.yaml";
      write_file(file, std::string(emitter.c_str()) + "\n");
      const std::string context = field.key + " = " + payload;
      std::string script;
      try {
        const RenderedJob rendered = render_job(load_job(file));
        script = rendered.script + rendered.gate_script;
      } catch (const JobError& e) {
        const std::string message = e.what();
        BOOST_TEST(std::regex_search(message, std::regex("^" + file.string() + ":[0-9]+: ")), context << ": " << message);
        const bool names_key = message.find(field.key + ":") != std::string::npos ||
                               message.find(field.key + "\"") != std::string::npos ||
                               (!field.also_key.empty() && message.find(field.also_key + ":") != std::string::npos);
        BOOST_TEST(names_key, context << ": " << message);
        ++refused;
        continue;
      }
      BOOST_TEST_REQUIRE(field.may_be_quoted, context << " was accepted");
      BOOST_TEST(payload.find('\n') == std::string::npos, context << ": a newline was accepted");
      ++quoted;
      BOOST_TEST(bash_syntax_check(script) == "status 0\n", context);
      std::istringstream lines(script);
      int found = 0;
      for (std::string line; std::getline(lines, line);) {
        if (line.find("PWN") == std::string::npos) continue;
        BOOST_TEST(line.rfind("#SBATCH", 0) != 0, context << " reached an #SBATCH line: " << line);
        for (const ShellWord& word : split_words(line)) {
          const std::size_t at = word.text.find(payload);
          if (word.text.find("PWN") == std::string::npos) continue;
          BOOST_TEST_REQUIRE(at != std::string::npos, context << ": payload split across words in: " << line);
          for (std::size_t k = at; k < at + payload.size(); ++k) {
            const bool safe = word.origins[k] == Origin::single_quoted ||
                              (payload[k - at] == '\'' && word.origins[k] == Origin::escaped);
            BOOST_TEST(safe, context << ": character " << k - at << " outside single quotes in: " << line);
          }
          // bash reads the word as the parser did (words without expansions only).
          if (!word.expands) BOOST_TEST(bash_printf(word.raw) == word.text, context);
          ++found;
        }
      }
      BOOST_TEST(found > 0, context << ": payload not in the script");
    }
  }
  // Both outcomes happen: names and formats refuse, paths and values quote.
  // 12 refusing fields x 8 payloads, plus the newline in each of the 9 quoting fields.
  BOOST_TEST(refused == 12 * 8 + 9);
  BOOST_TEST(quoted == 9 * 7);
}
