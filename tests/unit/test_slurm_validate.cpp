// loom-submit job validation (slurm/job_spec.h): each bad input is refused with file:line,
// the key and what was expected; unknown keys name the closest known one.
#define BOOST_TEST_MODULE slurm_validate
#include <boost/test/unit_test.hpp>

#include "slurm/job_spec.h"
#include "slurm/shell_words.h"
#include "test_slurm_support.h"

using namespace loom::slurm;
using namespace slurm_test;

namespace {

const std::string kJob = R"(name: tiny-sft
template: train
program: loom-sft
config: configs/tiny-wordnet-sft.yaml
run_dir: runs/tiny-sft
slurm:
  partition: debug
  mem: 4G
  time: "00:30:00"
  extra: ["--exclusive"]
environment:
  modules: [openmpi/4.1]
)";

// The error of loading kJob with `from` replaced by `to` ("" when it loads).
std::string error_of(const std::string& from, const std::string& to) {
  Scratch scratch;
  std::string text = kJob;
  const std::size_t at = text.find(from);
  BOOST_TEST_REQUIRE(at != std::string::npos, from);
  text.replace(at, from.size(), to);
  write_file(scratch / "job.yaml", text);
  try {
    load_job(scratch / "job.yaml");
  } catch (const JobError& e) {
    std::string message = e.what();
    const std::string prefix = (scratch / "job.yaml").string();
    return message.rfind(prefix, 0) == 0 ? "job.yaml" + message.substr(prefix.size()) : message;
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_example_job_loads_with_its_values_and_defaults) {
  BOOST_TEST(error_of("name: tiny-sft", "name: tiny-sft") == "");
  Scratch scratch;
  write_file(scratch / "job.yaml", kJob);
  const JobSpec job = load_job(scratch / "job.yaml");
  BOOST_TEST(job.slurm.mem == "4G");
  BOOST_TEST(job.slurm.nodes == 1);
  BOOST_TEST(job.slurm.max_restarts == 3);
  BOOST_TEST(job.slurm.requeue);
  BOOST_TEST(job.bin_dir == "build/bin");
  BOOST_TEST(job.environment.modules.size() == 1u);
  BOOST_TEST(job.script_path() == fs::current_path() / "runs/tiny-sft/slurm/tiny-sft.sbatch");
}

BOOST_AUTO_TEST_CASE(unknown_keys_name_the_closest) {
  BOOST_TEST(error_of("run_dir:", "rundir:") == "job.yaml:5: unknown key \"rundir\" (did you mean \"run_dir\"?)");
  BOOST_TEST(error_of("  mem: 4G", "  memory: 4G") ==
             "job.yaml:8: unknown key \"slurm.memory\" (did you mean \"slurm.mem\"?)");
  BOOST_TEST(error_of("  modules:", "  module:") ==
             "job.yaml:12: unknown key \"environment.module\" (did you mean \"environment.modules\"?)");
  BOOST_TEST(error_of("slurm:\n", "slurm:\n  zzzzzzzzzzzz: 1\n").find("job.yaml:7: unknown key \"slurm.zzzzzzzzzzzz\" "
                                                                    "(known keys: partition, account") == 0);
}

BOOST_AUTO_TEST_CASE(bad_time_and_memory) {
  BOOST_TEST(error_of("\"00:30:00\"", "\"30 minutes\"").find("job.yaml:9: slurm.time: expected a Slurm time") == 0);
  BOOST_TEST(error_of("\"00:30:00\"", "\"00:61:00\"").find("job.yaml:9: slurm.time:") == 0);
  BOOST_TEST(error_of("\"00:30:00\"", "\"1-24:00:00\"").find("job.yaml:9: slurm.time:") == 0);
  for (const char* good : {"\"90\"", "\"90:30\"", "\"1-12\"", "\"1-12:30\"", "\"2-00:00:00\"", "UNLIMITED", "30"}) {
    BOOST_TEST(error_of("\"00:30:00\"", good) == "", good);
  }
  BOOST_TEST(error_of("mem: 4G", "mem: 4GB") == "job.yaml:8: slurm.mem: expected a number with an optional unit K, M, "
                                                "G or T (4G, 16000M), got \"4GB\"");
  BOOST_TEST(error_of("mem: 4G", "mem: -4G").find("job.yaml:8: slurm.mem:") == 0);
  BOOST_TEST(error_of("mem: 4G", "mem: 16000") == "");
}

BOOST_AUTO_TEST_CASE(bad_extra_option_and_module_name) {
  BOOST_TEST(error_of("\"--exclusive\"", "\"--exclusive --wrap=x\"")
                 .find("job.yaml:10: slurm.extra[0]: expected one sbatch option") == 0);
  BOOST_TEST(error_of("\"--exclusive\"", "\"-x\"").find("job.yaml:10: slurm.extra[0]:") == 0);
  BOOST_TEST(error_of("\"--exclusive\"", "\"--output=/tmp/$(id)\"").find("job.yaml:10: slurm.extra[0]:") == 0);
  BOOST_TEST(error_of("\"--exclusive\"", "\"--constraint=a100&nvlink\"").find("job.yaml:10: slurm.extra[0]:") == 0);
  BOOST_TEST(error_of("\"--exclusive\"", "\"--gres=gpu:a100:4\", \"--exclusive\"") == "");
  BOOST_TEST(error_of("[openmpi/4.1]", "[\"openmpi 4.1\"]") ==
             "job.yaml:12: environment.modules[0]: expected a module name of [A-Za-z0-9._/+-], got \"openmpi 4.1\"");
  BOOST_TEST(error_of("[openmpi/4.1]", "[\"gcc;id\"]").find("job.yaml:12: environment.modules[0]:") == 0);
}

BOOST_AUTO_TEST_CASE(numbers_names_programs_and_cross_checks) {
  BOOST_TEST(error_of("  mem: 4G", "  nodes: 0\n  mem: 4G") == "job.yaml:8: slurm.nodes: expected 1 <= x <= 100000, got 0");
  BOOST_TEST(error_of("  mem: 4G", "  nodes: two\n  mem: 4G") ==
             "job.yaml:8: slurm.nodes: expected an integer, got \"two\"");
  BOOST_TEST(error_of("  mem: 4G", "  gpus_per_node: 2\n  tasks_per_node: 4\n  mem: 4G")
                 .find("job.yaml:9: slurm.tasks_per_node: each task is bound to one GPU") == 0);
  BOOST_TEST(error_of("  mem: 4G", "  requeue: maybe\n  mem: 4G") ==
             "job.yaml:8: slurm.requeue: expected true or false, got \"maybe\"");
  BOOST_TEST(error_of("name: tiny-sft", "name: \"x; rm -rf ~\"").find("job.yaml:1: name: expected 1 to 64 of") == 0);
  BOOST_TEST(error_of("name: tiny-sft", "name: " + std::string(65, 'a')).find("job.yaml:1: name:") == 0);
  BOOST_TEST(error_of("program: loom-sft", "program: loom-eval") ==
             "job.yaml:3: program: a train job runs one of loom-sft, loom-rm, loom-dpo, loom-ppo, loom-grpo, got "
             "\"loom-eval\"");
  BOOST_TEST(error_of("template: train", "template: training") ==
             "job.yaml:2: template: expected one of train, eval, eval-array, quantize, got \"training\"");
  BOOST_TEST(error_of("config: configs/tiny-wordnet-sft.yaml\n", "").find("job.yaml:1: config: a training job") == 0);
  BOOST_TEST(error_of("run_dir: runs/tiny-sft\n", "run_dir: runs/tiny-sft\noverrides: [\"train lr=1\"]\n") ==
             "job.yaml:6: overrides[0]: expected key=value with a key of [a-z0-9_.], got \"train lr=1\"");
  BOOST_TEST(error_of("run_dir: runs/tiny-sft\n", "run_dir: runs/tiny-sft\noverrides: [run_dir=runs/other]\n")
                 .find("job.yaml:6: overrides[0]: run_dir is the job's top-level run_dir key") == 0);
  BOOST_TEST(error_of("run_dir: runs/tiny-sft\n", "run_dir: runs/tiny-sft\noverrides: [\"x={{stage.a.model}}\"]\n")
                 .find("job.yaml:6: overrides[0]: stage references like {{stage.NAME.run_dir}} work only in pipeline") ==
             0);
  // out= would take quantized.h5 away from run_dir, where {{stage.NAME.model}} of a quantize stage points.
  BOOST_TEST(error_of("template: train\nprogram: loom-sft\n", "template: quantize\n").empty());
  BOOST_TEST(error_of("template: train\nprogram: loom-sft\n",
                      "template: quantize\noverrides: [model=runs/x/model.h5, out=runs/elsewhere]\n") ==
             "job.yaml:3: overrides[1]: a quantize job writes quantized.h5 to its run_dir (passed as run_dir=); set "
             "the top-level run_dir key instead of out");
  BOOST_TEST(error_of("run_dir: runs/tiny-sft\n", "run_dir: runs/tiny-sft\noverrides: [out=runs/o]\n").empty());
  BOOST_TEST(error_of("run_dir: runs/tiny-sft\n", "run_dir: runs/tiny-sft\neval: {model: x}\n") ==
             "job.yaml:6: eval: only the eval and eval-array templates read it, this job's template is train");
  BOOST_TEST(error_of("config: configs/tiny-wordnet-sft.yaml", "config: \"a\\tb\"")
                 .find("job.yaml:4: config: control characters") == 0);
}

BOOST_AUTO_TEST_CASE(eval_array_needs_steps_and_something_to_compare) {
  Scratch scratch;
  auto load = [&](const std::string& eval) -> std::string {
    write_file(scratch / "e.yaml", "name: e\ntemplate: eval-array\nrun_dir: runs/e\neval:\n" + eval);
    try {
      load_job(scratch / "e.yaml");
    } catch (const JobError& e) {
      return std::string(e.what()).substr((scratch / "e.yaml").string().size());
    }
    return "";
  };
  BOOST_TEST(load("  model: runs/x\n  tasks: [a]\n") ==
             ":5: eval.steps: an eval-array job needs the steps, one array task each");
  BOOST_TEST(load("  model: runs/x\n  tasks: [a]\n  steps: [10, 10]\n") == ":7: eval.steps[1]: step 10 is listed twice");
  BOOST_TEST(load("  model: runs/x\n  tasks: [a]\n  steps: [10]\n  gate: g.yaml\n")
                 .find(":8: eval.gate: with one step there is nothing to compare") == 0);
  BOOST_TEST(load("  model: runs/x\n  tasks: [a]\n  steps: [10]\n  gate: g.yaml\n  baseline: b.json\n") == "");
  BOOST_TEST(load("  model: runs/x\n  steps: [10]\n").find(":5: eval.tasks: name the tasks") == 0);
  BOOST_TEST(load("  model: runs/x\n  steps: [10]\n  tasks: [\"a,b\"]\n").find(":7: eval.tasks[0]: expected a task") == 0);
  BOOST_TEST(load("  modle: runs/x\n") == ":5: unknown key \"eval.modle\" (did you mean \"eval.model\"?)");
}

BOOST_AUTO_TEST_CASE(format_patterns) {
  BOOST_TEST(shell_quote("it's") == "'it'\\''s'");
  BOOST_TEST(shell_quote("") == "''");
  BOOST_TEST(is_slurm_time("00:30:00"));
  BOOST_TEST(is_slurm_time("1-0"));
  BOOST_TEST(!is_slurm_time("1:2:3:4"));
  BOOST_TEST(!is_slurm_time(""));
  BOOST_TEST(is_sbatch_option("--mail-type=END,FAIL"));
  BOOST_TEST(!is_sbatch_option("--mail-user=a b"));
  BOOST_TEST(is_job_name("a.b_c-1"));
  BOOST_TEST(!is_job_name("$(reboot)"));
  BOOST_TEST(is_variable_name("_X1"));
  BOOST_TEST(!is_variable_name("1X"));
  BOOST_TEST(!is_variable_name("path"));
}
