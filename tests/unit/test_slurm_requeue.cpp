// The requeue logic of a rendered train.sbatch, run by bash with stand-ins for the Slurm
// clients: `srun` execs its program (so the batch shell's kill reaches the rank directly),
// `scontrol` records its arguments, and the "trainer" checkpoints on USR1/TERM by exiting 75
// (train/run_control.h). Checked: USR1 to the batch shell is forwarded, exit 75 requeues while
// SLURM_RESTART_COUNT < max_restarts, TERM and real failures are never requeued.
#define BOOST_TEST_MODULE slurm_requeue
#include <boost/test/unit_test.hpp>

#include "slurm/job_spec.h"
#include "slurm/render.h"
#include "test_slurm_support.h"

using namespace loom::slurm;
using namespace slurm_test;

namespace {

struct BatchRun {
  Scratch scratch;
  BatchRun() {
    write_file(scratch / "fake/srun", "#!/bin/bash\nwhile [ \"${1#--}\" != \"$1\" ]; do shift; done\nexec \"$@\"\n", true);
    write_file(scratch / "fake/scontrol", "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/scontrol.log\"\n", true);
    write_file(scratch / "bin/loom-sft",
               "#!/bin/bash\n"
               "log=\"$(dirname \"$0\")/../trainer.log\"\n"
               "trap 'echo \"USR1 $*\" >> \"$log\"; kill $sleeper; exit 75' USR1\n"
               "trap 'echo \"TERM $*\" >> \"$log\"; kill $sleeper; exit 75' TERM\n"
               "sleep \"${FAKE_SECONDS:-30}\" & sleeper=$!\n"
               "echo \"started $*\" >> \"$log\"\n"
               "wait $sleeper\n"
               "exit \"${FAKE_EXIT:-0}\"\n",
               true);
    write_file(scratch / "job.yaml", "name: requeue-test\ntemplate: train\nprogram: loom-sft\nconfig: \"it's.yaml\"\n"
                                     "run_dir: runs/r\nbin_dir: bin\nworkdir: " + scratch.path().string() + "\n"
                                     "slurm: {max_restarts: 3, tasks_per_node: 1}\n");
    write_file(scratch / "job.sbatch", render_job(load_job(scratch / "job.yaml")).script);
  }
  // Runs the script as a batch shell with `environment`; sends `signal` (if any) once the
  // trainer has started. Returns "exit N".
  std::string run(const std::string& environment, const std::string& signal) {
    const std::string dir = scratch.path().string();
    std::string command = "cd " + dir + " && { PATH=" + dir + "/fake:$PATH SLURM_JOB_ID=42 " + environment +
                          " bash job.sbatch > batch.out 2>&1 & pid=$!; ";
    if (!signal.empty()) {
      command += "for i in $(seq 200); do grep -q started trainer.log 2>/dev/null && break; sleep 0.05; done; "
                 "kill -s " + signal + " $pid; ";
    }
    command += "wait $pid; echo \"exit $?\"; }";
    const std::string output = run_command(command, scratch / "run.out");
    return output.substr(output.find('\n') + 1, output.rfind('\n') - output.find('\n') - 1);
  }
  std::string scontrol_calls() const { return read_file(scratch / "fake/scontrol.log"); }
  std::string trainer_log() const { return read_file(scratch / "trainer.log"); }
  std::string batch_output() const { return read_file(scratch / "batch.out"); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(usr1_is_forwarded_and_the_job_requeued) {
  BatchRun batch;
  BOOST_TEST(batch.run("SLURM_RESTART_COUNT=0", "USR1") == "exit 0", batch.batch_output());
  BOOST_TEST(batch.trainer_log() == "started --config it's.yaml run_dir=runs/r\nUSR1 --config it's.yaml run_dir=runs/r\n");
  BOOST_TEST(batch.scontrol_calls() == "requeue 42\n");
  BOOST_TEST(batch.batch_output().find("requeueing job 42 (restart 1 of 3)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(no_requeue_past_max_restarts) {
  BatchRun batch;
  BOOST_TEST(batch.run("SLURM_RESTART_COUNT=3", "USR1") == "exit 75");
  BOOST_TEST(batch.scontrol_calls() == "");
  BOOST_TEST(batch.batch_output().find("after 3 restarts (max_restarts 3): not requeued") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_checkpointed_exit_without_a_signal_requeues) {
  BatchRun batch;  // the trainer stopped for the walltime by itself
  BOOST_TEST(batch.run("FAKE_SECONDS=0 FAKE_EXIT=75 SLURM_RESTART_COUNT=2", "") == "exit 0");
  BOOST_TEST(batch.scontrol_calls() == "requeue 42\n");
}

BOOST_AUTO_TEST_CASE(failures_and_term_are_not_requeued) {
  BatchRun failed;
  BOOST_TEST(failed.run("FAKE_SECONDS=0 FAKE_EXIT=1", "") == "exit 1");
  BOOST_TEST(failed.scontrol_calls() == "");
  BatchRun ok;
  BOOST_TEST(ok.run("FAKE_SECONDS=0 FAKE_EXIT=0", "") == "exit 0");
  BOOST_TEST(ok.scontrol_calls() == "");
  BatchRun terminated;  // scancel or the time limit: checkpoint, but leave the job ended
  BOOST_TEST(terminated.run("SLURM_RESTART_COUNT=0", "TERM") == "exit 75");
  BOOST_TEST(terminated.trainer_log().find("TERM ") != std::string::npos);
  BOOST_TEST(terminated.scontrol_calls() == "");
}
