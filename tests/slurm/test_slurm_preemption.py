#!/usr/bin/python3
"""Preemption on a real Slurm: signal → checkpoint → exit 75 → requeue → resume, bit-exact.

A tiny loom-sft run (the TINY model of tests/loom_cli.py on Brown, 60 steps, a checkpoint
every 5, 2 tasks under `srun --mpi=pmix`) is submitted with loom-submit's train template. Once
its run_dir holds a committed checkpoint, `scancel --signal=USR1 --batch` plays the
preemption warning: the batch shell forwards USR1 to the ranks, they checkpoint at the next
step and exit 75, and the script requeues the job. The requeued job (Restarts=1; it waits with
Reason=BeginTime, which the test lifts with `scontrol update StartTime=now+2`) resumes from the
newest checkpoint and finishes. Its model.h5 must equal, tensor by tensor and bit for bit, that
of the same run without Slurm (mpirun -np 2) and without a signal.

A job whose program fails for real (an unknown setting: loom-sft exits 2) is not requeued:
FAILED, ExitCode 2:0, Restarts 0.

Usage: test_slurm_preemption.py BUILD_DIR WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slurm_cluster as sc  # noqa: E402
from loom_cli import MPI_FLAGS, run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/slurm-preemption"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
BIN = os.path.join(BUILD, "bin")
STEPS = 60
EVERY = 5


def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.array(obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def committed_steps(run_dir):
    """Steps of the committed checkpoints (step-N; a save in progress is step-N.tmp-*)."""
    names = (os.path.basename(p) for p in glob.glob(os.path.join(run_dir, "checkpoints", "step-*")))
    return sorted(int(m.group(1)) for m in (re.fullmatch(r"step-(\d+)", n) for n in names) if m)


class Preemption(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        cls.tokenizer = sc.prepare_brown(BIN, WORK)
        cls.overrides = sc.tiny_overrides(WORK, cls.tokenizer, STEPS, EVERY)

    def test_usr1_checkpoints_requeues_and_resumes_bit_exact(self):
        reference = os.path.join(WORK, "runs", "reference")
        start = time.monotonic()
        run(MPIEXEC, *MPI_FLAGS, "2", f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml",
            *self.overrides, f"run_dir={reference}")
        print(f"reference run without Slurm: {time.monotonic() - start:.1f} s", flush=True)

        run_dir = os.path.join(WORK, "runs", "preempted")
        job_yaml = sc.write_yaml(os.path.join(WORK, "jobs", "preempted.yaml"),
                                 sc.train_job("preempted", BIN, WORK, run_dir, self.overrides))
        start = time.monotonic()
        job_id, _ = sc.submit_job(BIN, job_yaml)
        deadline = time.monotonic() + 120
        while not committed_steps(run_dir):
            state = sc.job(job_id)["JobState"]
            if state in sc.TERMINAL or time.monotonic() > deadline:
                self.fail(f"no committed checkpoint in {run_dir} while the job ran ({state}):\n{sc.describe(job_id)}")
            time.sleep(0.05)
        signalled_after = committed_steps(run_dir)[-1]
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True, timeout=30)
        print(f"job {job_id}: USR1 after the step-{signalled_after} checkpoint, "
              f"{time.monotonic() - start:.1f} s after submission", flush=True)

        sc.wait_until(job_id, lambda r: r.get("Restarts") == "1", "requeue (Restarts=1)", timeout=120)
        record = sc.wait_terminal(job_id, timeout=300)[0]
        log = sc.job_log(record)
        print(f"job {job_id}: {record['JobState']} {time.monotonic() - start:.1f} s after submission", flush=True)
        self.assertEqual(record["JobState"], "COMPLETED", sc.describe(job_id))
        self.assertEqual(record["ExitCode"], "0:0", sc.describe(job_id))
        self.assertEqual(record["Restarts"], "1", sc.describe(job_id))
        # One output file for both incarnations (--open-mode=append): the stop, then the resume.
        self.assertIn("exit code 75", log)
        self.assertIn("requeueing job", log)
        self.assertIn("restart 1", log)
        self.assertIn("loom-sft: resumed from", log)
        with open(os.path.join(run_dir, "run.json")) as f:
            resumed_from = json.load(f).get("resumed_from") or ""
        resumed_step = int(re.search(r"step-(\d+)", resumed_from).group(1))
        self.assertGreaterEqual(resumed_step, signalled_after)
        self.assertLess(resumed_step, STEPS, "the signal must stop the run before its end")

        want, got = tensors(f"{reference}/model.h5"), tensors(f"{run_dir}/model.h5")
        self.assertEqual(sorted(want), sorted(got))
        for name in want:
            self.assertTrue(np.array_equal(want[name], got[name]), f"{name} differs after the requeue")

    def test_a_real_failure_is_not_requeued(self):
        run_dir = os.path.join(WORK, "runs", "bad-override")
        job_yaml = sc.write_yaml(os.path.join(WORK, "jobs", "bad-override.yaml"),
                                 sc.train_job("bad-override", BIN, WORK, run_dir,
                                              [*self.overrides, "train.no_such_setting=1"]))
        job_id, _ = sc.submit_job(BIN, job_yaml)
        record = sc.wait_terminal(job_id, timeout=120)[0]
        self.assertEqual(record["JobState"], "FAILED", sc.describe(job_id))
        self.assertEqual(record["ExitCode"], "2:0", sc.describe(job_id))
        self.assertEqual(record["Restarts"], "0", sc.describe(job_id))
        self.assertIn("train.no_such_setting", sc.job_log(record))
        time.sleep(2)  # a requeue would show up as a new state and Restarts=1 by now
        record = sc.job(job_id)
        self.assertEqual((record["JobState"], record["Restarts"]), ("FAILED", "0"), sc.describe(job_id))


if __name__ == "__main__":
    sc.cluster_or_skip()
    unittest.main(argv=sys.argv[:1])
