// loom-submit submission (slurm/submit.h, slurm/pipeline.h, slurm/status.h, submit_main.cpp)
// against fake Slurm clients: an sbatch that records its arguments and prints ids from 101
// on, a squeue and an scontrol that answer from files. No cluster is needed.
#define BOOST_TEST_MODULE slurm_submit
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "slurm/pipeline.h"
#include "slurm/render.h"
#include "slurm/submit.h"
#include "test_slurm_support.h"

using namespace loom::slurm;
using namespace slurm_test;

namespace {

// A workdir with fake programs in bin/ and fake Slurm clients in slurm-bin/.
struct FakeCluster {
  Scratch scratch;
  FakeCluster() {
    for (const char* program : {"loom-sft", "loom-rm", "loom-dpo", "loom-eval"}) {
      write_file(scratch / "bin" / program, "#!/bin/sh\nexit 0\n", true);
    }
    write_file(scratch / "slurm-bin/sbatch",
               "#!/bin/sh\n"
               "dir=$(dirname \"$0\")\n"
               "echo \"$@\" >> \"$dir/sbatch.log\"\n"
               "if [ -f \"$dir/fail\" ]; then echo 'sbatch: error: Invalid partition name specified' >&2; exit 1; fi\n"
               "n=$(cat \"$dir/counter\" 2>/dev/null || echo 100); n=$((n + 1)); echo $n > \"$dir/counter\"\n"
               "echo \"$n;cluster\"\n",
               true);
    write_file(scratch / "slurm-bin/squeue",
               "#!/bin/sh\n# squeue -h -j ID -o %T\ncat \"$(dirname \"$0\")/queue-$3\" 2>/dev/null\nexit 0\n", true);
    write_file(scratch / "slurm-bin/scontrol",
               "#!/bin/sh\n# scontrol show job ID\nf=\"$(dirname \"$0\")/job-$3\"\n"
               "if [ -f \"$f\" ]; then cat \"$f\"; else echo \"slurm_load_jobs error: Invalid job id specified\" >&2; "
               "exit 1; fi\n",
               true);
  }
  std::string sbatch() const { return (scratch / "slurm-bin/sbatch").string(); }
  std::vector<std::string> sbatch_calls() const {
    std::istringstream lines(read_file(scratch / "slurm-bin/sbatch.log"));
    std::vector<std::string> calls;
    for (std::string line; std::getline(lines, line);) calls.push_back(line);
    return calls;
  }
  // loom-submit ARGS run in the workdir; "status N\n" + its output (stdout only when quiet).
  std::string loom_submit(const std::string& args, bool quiet = false) const {
    const char* build = std::getenv("LOOM_BUILD_DIR");
    BOOST_TEST_REQUIRE(build != nullptr, "LOOM_BUILD_DIR is unset: run through ctest");
    const std::string command = "cd " + scratch.path().string() + " && { PATH=" + (scratch / "slurm-bin").string() +
                                ":$PATH " + std::string(build) + "/bin/loom-submit " + args +
                                (quiet ? " 2>/dev/null; }" : "; }");
    return run_command(command, scratch / "loom-submit.out");
  }
};

const char* kPipeline = R"(name: tiny
stages:
  - name: sft
    template: train
    program: loom-sft
    config: configs/tiny-wordnet-sft.yaml
    overrides: [train.max_steps=40]
    run_dir: runs/sft
    bin_dir: bin
  - name: eval
    template: eval
    bin_dir: bin
    run_dir: runs/eval
    eval: {model: "{{stage.sft.model}}", tasks: [wordnet-definition-mc], out: runs/eval/out}
  - name: steps
    template: eval-array
    after: [sft]
    bin_dir: bin
    run_dir: runs/steps
    eval: {model: "{{stage.sft.run_dir}}", steps: [20, 40], tasks: [brown-heldout], out: runs/steps/out,
           gate: configs/eval/gate.yaml}
  - name: dpo
    template: train
    program: loom-dpo
    config: configs/tiny-wordnet-dpo.yaml
    after: [eval, steps]
    overrides: ["train.init_from={{stage.sft.model}}"]
    bin_dir: bin
    run_dir: runs/dpo
)";

}  // namespace

BOOST_AUTO_TEST_CASE(a_job_is_written_and_submitted_and_its_id_printed) {
  FakeCluster cluster;
  write_file(cluster.scratch / "job.yaml", "name: tiny-sft\ntemplate: train\nprogram: loom-sft\nconfig: c.yaml\n"
                                           "run_dir: runs/tiny-sft\nbin_dir: bin\n");
  const std::string output = cluster.loom_submit("job.yaml --sbatch " + cluster.sbatch(), true);
  BOOST_TEST(output == "status 0\n101\n");
  const fs::path script = cluster.scratch / "runs/tiny-sft/slurm/tiny-sft.sbatch";
  BOOST_TEST(fs::is_regular_file(script));
  BOOST_TEST(cluster.sbatch_calls() == std::vector<std::string>{"--parsable " + script.string()});
  BOOST_TEST(read_file(script).find("#SBATCH --job-name=tiny-sft\n") != std::string::npos);
  // The script cds to the workdir the job file named, made absolute.
  BOOST_TEST(read_file(script).find("\ncd '" + cluster.scratch.path().string() + "' || exit 1\n") != std::string::npos);

  // sbatch on PATH (no --sbatch) is found the same way.
  BOOST_TEST(cluster.loom_submit("job.yaml", true) == "status 0\n102\n");
  // --dry-run prints the script and submits nothing.
  const std::string dry = cluster.loom_submit("job.yaml --dry-run --sbatch " + cluster.sbatch());
  BOOST_TEST(dry.rfind("status 0\n#!/bin/bash\n", 0) == 0);
  BOOST_TEST(cluster.sbatch_calls().size() == 2u);
}

BOOST_AUTO_TEST_CASE(errors_exit_2_for_bad_input_and_1_for_sbatch_failures) {
  FakeCluster cluster;
  write_file(cluster.scratch / "job.yaml", "name: x\ntemplate: train\nprogram: loom-sft\nconfig: c.yaml\n"
                                           "run_dir: runs/x\nbin_dir: bin\nslurm: {mem: 4 GB}\n");
  BOOST_TEST(cluster.loom_submit("job.yaml --sbatch " + cluster.sbatch()) ==
             "status 2\nloom-submit: job.yaml:7: slurm.mem: expected a number with an optional unit K, M, G or T "
             "(4G, 16000M), got \"4 GB\"\n");
  write_file(cluster.scratch / "job.yaml", "name: x\ntemplate: train\nprogram: loom-grpo\nconfig: c.yaml\n"
                                           "run_dir: runs/x\nbin_dir: bin\n");
  BOOST_TEST(cluster.loom_submit("job.yaml --sbatch " + cluster.sbatch()).find("status 2\nloom-submit: job.yaml: " +
                                                                              (cluster.scratch / "bin/loom-grpo").string() +
                                                                              " is not an executable file") == 0);
  BOOST_TEST(cluster.loom_submit("job.yaml --dry-run").rfind("status 0\n", 0) == 0);  // rendering needs no binary
  write_file(cluster.scratch / "job.yaml", "name: x\ntemplate: train\nprogram: loom-sft\nconfig: c.yaml\n"
                                           "run_dir: runs/x\nbin_dir: bin\n");
  write_file(cluster.scratch / "slurm-bin/fail", "");
  BOOST_TEST(cluster.loom_submit("job.yaml --sbatch " + cluster.sbatch()) ==
             "status 1\nloom-submit: " + cluster.sbatch() + " --parsable " +
                 (cluster.scratch / "runs/x/slurm/x.sbatch").string() +
                 " failed (exit 1): \"sbatch: error: Invalid partition name specified\"\n");
  BOOST_TEST(cluster.loom_submit("missing.yaml").rfind("status 2\nloom-submit: missing.yaml: cannot read", 0) == 0);
  BOOST_TEST(cluster.loom_submit("job.yaml --no-such-flag").rfind("status 2\n", 0) == 0);
}

BOOST_AUTO_TEST_CASE(pipeline_chains_afterok_and_writes_the_state) {
  FakeCluster cluster;
  write_file(cluster.scratch / "pipeline.yaml", kPipeline);
  const std::string output = cluster.loom_submit("pipeline pipeline.yaml --sbatch " + cluster.sbatch(), true);
  // sft 101; eval 102 after sft; the array 103 after sft and its gate 104 after the array;
  // dpo 105 after eval and the gate (not the array: the gate must pass first).
  BOOST_TEST(output == "status 0\nsft 101\neval 102\nsteps 103\nsteps-gate 104\ndpo 105\n");
  const fs::path runs = cluster.scratch / "runs";
  const std::vector<std::string> expected = {
      "--parsable " + (runs / "sft/slurm/sft.sbatch").string(),
      "--parsable --dependency=afterok:101 --kill-on-invalid-dep=yes " + (runs / "eval/slurm/eval.sbatch").string(),
      "--parsable --dependency=afterok:101 --kill-on-invalid-dep=yes " + (runs / "steps/slurm/steps.sbatch").string(),
      "--parsable --dependency=afterok:103 --kill-on-invalid-dep=yes " +
          (runs / "steps/slurm/steps-gate.sbatch").string(),
      "--parsable --dependency=afterok:102:104 --kill-on-invalid-dep=yes " + (runs / "dpo/slurm/dpo.sbatch").string()};
  BOOST_TEST(cluster.sbatch_calls() == expected, boost::test_tools::per_element());

  // Stage outputs resolved at render time.
  BOOST_TEST(read_file(runs / "eval/slurm/eval.sbatch").find("--model 'runs/sft/model.h5'") != std::string::npos);
  BOOST_TEST(read_file(runs / "steps/slurm/steps.sbatch").find("--model 'runs/sft'") != std::string::npos);
  BOOST_TEST(read_file(runs / "dpo/slurm/dpo.sbatch").find("'train.init_from=runs/sft/model.h5'") != std::string::npos);

  const nlohmann::json state = nlohmann::json::parse(read_file(runs / "pipeline-tiny.json"));
  BOOST_TEST(state["format"] == "loom-submit-pipeline/1");
  BOOST_TEST(state["pipeline"] == "tiny");
  BOOST_TEST_REQUIRE(state["stages"].size() == 4u);
  BOOST_TEST(state["stages"][0]["name"] == "sft");
  BOOST_TEST(state["stages"][0]["job_id"] == "101");
  BOOST_TEST(state["stages"][0]["script"] == (runs / "sft/slurm/sft.sbatch").string());
  BOOST_TEST(state["stages"][2]["job_id"] == "103");
  BOOST_TEST(state["stages"][2]["gate_job_id"] == "104");
  BOOST_TEST(state["stages"][3]["after"] == nlohmann::json({"eval", "steps"}));
  BOOST_TEST(state["stages"][3]["dependencies"] == nlohmann::json({"102", "104"}));

  // --state puts it elsewhere.
  const std::string again =
      cluster.loom_submit("pipeline pipeline.yaml --state elsewhere/p.json --sbatch " + cluster.sbatch(), true);
  BOOST_TEST(again == "status 0\nsft 106\neval 107\nsteps 108\nsteps-gate 109\ndpo 110\n");
  BOOST_TEST(nlohmann::json::parse(read_file(cluster.scratch / "elsewhere/p.json"))["stages"][0]["job_id"] == "106");
}

BOOST_AUTO_TEST_CASE(status_shows_each_stage_from_squeue_or_scontrol) {
  FakeCluster cluster;
  write_file(cluster.scratch / "pipeline.yaml", kPipeline);
  BOOST_TEST(cluster.loom_submit("pipeline pipeline.yaml", true).rfind("status 0\nsft 101\n", 0) == 0);
  const fs::path fake = cluster.scratch / "slurm-bin";
  write_file(fake / "job-101", "JobId=101 JobName=sft\n   JobState=COMPLETED Reason=None Dependency=(null)\n"
                               "   Requeue=1 Restarts=1 BatchFlag=1 Reboot=0 ExitCode=0:0\n");
  write_file(fake / "queue-102", "RUNNING\n");
  write_file(fake / "job-102", "JobId=102 JobName=eval\n   JobState=RUNNING Reason=None ExitCode=0:0\n");
  write_file(fake / "queue-103", "COMPLETED\nRUNNING\nRUNNING\n");
  write_file(fake / "queue-104", "PENDING\n");
  write_file(fake / "job-104", "JobId=104\n   JobState=PENDING Reason=Dependency ExitCode=0:0\n");
  write_file(fake / "job-105", "JobId=105\n   JobState=CANCELLED Reason=DependencyNeverSatisfied ExitCode=0:0\n");
  const std::string output = cluster.loom_submit("status");  // the newest runs/pipeline-*.json
  const std::vector<std::string> expected_lines = {
      "pipeline tiny (runs/pipeline-tiny.json)",
      "sft                  job 101        COMPLETED    exit 0:0",
      "eval                 job 102        RUNNING      exit 0:0  after sft 101",
      "steps                job 103        COMPLETED,RUNNING  after sft 101",
      "steps (gate)         job 104        PENDING      exit 0:0 (Dependency)  after steps 103",
      "dpo                  job 105        CANCELLED    exit 0:0 (DependencyNeverSatisfied)  after eval 102, steps 104"};
  std::string expected = "status 0\n";
  for (const std::string& line : expected_lines) expected += line + "\n";
  BOOST_TEST(output == expected);
  BOOST_TEST(cluster.loom_submit("status --state nowhere.json") ==
             "status 2\nloom-submit: nowhere.json: cannot read the pipeline state file (see --state)\n");
}

BOOST_AUTO_TEST_CASE(pipeline_references_must_point_at_earlier_stages_it_runs_after) {
  Scratch scratch;
  auto error_of = [&](const std::string& text) -> std::string {
    write_file(scratch / "p.yaml", text);
    try {
      load_pipeline(scratch / "p.yaml");
    } catch (const JobError& e) {
      return std::string(e.what()).substr((scratch / "p.yaml").string().size());
    }
    return "";
  };
  const std::string a = "name: p\nstages:\n  - {name: a, template: train, program: loom-sft, config: c, run_dir: r/a}\n";
  BOOST_TEST(error_of(a + "  - {name: b, template: eval, run_dir: r/b, eval: {model: \"{{stage.a.model}}\", tasks: [t]}}\n") ==
             "");
  BOOST_TEST(error_of(a + "  - {name: b, template: eval, after: [], run_dir: r/b, "
                          "eval: {model: \"{{stage.a.model}}\", tasks: [t]}}\n") ==
             ":4: eval.model: {{stage.a.model}}: stage \"b\" does not run after a stage \"a\" (add it to after:), so its "
             "outputs may not exist yet");
  BOOST_TEST(error_of(a + "  - {name: b, template: eval, run_dir: r/b, eval: {model: \"{{stage.a.weights}}\", "
                          "tasks: [t]}}\n") ==
             ":4: eval.model: {{stage.a.weights}}: a stage's outputs are run_dir and model, not weights");
  // A quantize stage's model is the quantized.h5 that loom-quantize writes to its run_dir.
  write_file(scratch / "q.yaml", a + "  - {name: q, template: quantize, run_dir: r/q, overrides: [\"model={{stage.a.model}}\"]}\n"
                                     "  - {name: e, template: eval, run_dir: r/e, eval: {model: \"{{stage.q.model}}\", tasks: [t]}}\n"
                                     "  - {name: f, template: eval, after: [q], workdir: /elsewhere, run_dir: r/f,\n"
                                     "     eval: {model: \"{{stage.q.model}}\", tasks: [t], out: \"{{stage.q.run_dir}}/f\"}}\n");
  const Pipeline quantized = load_pipeline(scratch / "q.yaml");
  BOOST_TEST(quantized.stages[1].job.overrides.at(0).second == "r/a/model.h5");
  BOOST_TEST(quantized.stages[2].job.eval.model == "r/q/quantized.h5");
  BOOST_TEST(quantized.stages[3].job.eval.model == (fs::current_path() / "r/q/quantized.h5").string());
  BOOST_TEST(render_job(quantized.stages[1].job).script.find(
                 "\nrun_step \"$LOOM_BIN\"/'loom-quantize' 'run_dir=r/q' 'model=r/a/model.h5'\n") != std::string::npos);
  BOOST_TEST(error_of(a + "  - {name: b, template: eval, after: [c], run_dir: r/b, eval: {model: m, tasks: [t]}}\n") ==
             ":4: stages[1].after[0]: no earlier stage is named \"c\" (stages run after stages listed before them)");
  BOOST_TEST(error_of(a + "  - {name: a, template: eval, run_dir: r/b, eval: {model: m, tasks: [t]}}\n") ==
             ":4: stages[1]: stage name \"a\" is used twice");
  BOOST_TEST(error_of(a + "  - {name: b, template: eval, run_dir: r/b, eval: {model: m, tasks: [t]}, afte: [a]}\n") ==
             ":4: unknown key \"afte\" (did you mean \"after\"?)");
}

BOOST_AUTO_TEST_CASE(example_configs_render) {
  // The files in configs/slurm/ load and render as shipped (paths relative to the repository).
  for (const char* job : {"configs/slurm/tiny-sft.yaml", "configs/slurm/tiny-eval-array.yaml"}) {
    BOOST_TEST(!render_job(load_job(job)).script.empty(), job);
  }
  for (const char* file : {"configs/slurm/tiny-pipeline.yaml", "configs/slurm/wordnet-pipeline.yaml"}) {
    const Pipeline pipeline = load_pipeline(file);
    for (const PipelineStage& stage : pipeline.stages) BOOST_TEST(!render_job(stage.job).script.empty(), file);
  }
  const Pipeline tiny = load_pipeline("configs/slurm/tiny-pipeline.yaml");
  BOOST_TEST(tiny.stages.size() == 3u);
  BOOST_TEST(tiny.stages[1].job.eval.model == "runs/slurm/tiny-sft/model.h5");
  const Pipeline wordnet = load_pipeline("configs/slurm/wordnet-pipeline.yaml");
  BOOST_TEST(wordnet.stages.size() == 6u);
  BOOST_TEST(wordnet.stages[3].after == (std::vector<std::string>{"wordnet-rm", "wordnet-dpo"}));
  // SFT → RM → DPO → eval → quantize (the DPO model) → eval of quantized.h5.
  BOOST_TEST(template_name(wordnet.stages[4].job.kind) == std::string("quantize"));
  BOOST_TEST(wordnet.stages[4].after == (std::vector<std::string>{"wordnet-eval"}));
  BOOST_TEST(wordnet.stages[4].job.overrides.at(0).second == "runs/slurm/wordnet-dpo/model.h5");
  BOOST_TEST(wordnet.stages[5].job.eval.model == "runs/slurm/wordnet-quantize/quantized.h5");
  BOOST_TEST(wordnet.default_state_path() == fs::current_path() / "runs/slurm/pipeline-wordnet.json");
}
