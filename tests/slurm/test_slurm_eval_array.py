#!/usr/bin/python3
"""The evaluation array and its gate on a real Slurm (loom-submit's eval-array template).

A tiny loom-sft run (no Slurm, one process, 30 steps, checkpoints at 10, 20 and 30) is
evaluated as a job array with one task per committed step: every task must end COMPLETED and
leave out/step-0000000N/results.json for its step, evaluated at that step. The gate job that
loom-submit chains after the array (afterok) compares the two newest results:
  - with a gate the trained-longer model passes (max_regression 10%) → COMPLETED, 0:0;
  - with an impossible gate (max_regression 0) against a baseline that is better on every
    brown-heldout metric (eval.baseline: the step-30 results, while the array evaluates steps
    10 and 20, so the newest is step 20) → the gate job FAILED with exit 1:0.

Usage: test_slurm_eval_array.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import json
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slurm_cluster as sc  # noqa: E402
from loom_cli import run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/slurm-eval-array"
BIN = os.path.join(BUILD, "bin")
STEPS = [10, 20, 30]


def write_gate(name, max_regression):
    path = os.path.join(WORK, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(f"default: {{max_regression: {max_regression}}}\nrequire_significance: false\n")
    return path


class EvalArray(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        tokenizer = sc.prepare_brown(BIN, WORK)
        cls.run_dir = os.path.join(WORK, "runs", "trained")
        run(f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={cls.run_dir}",
            *sc.tiny_overrides(WORK, tokenizer, STEPS[-1], 10))
        cls.best = os.path.join(WORK, "runs", "best")
        run(f"{BIN}/loom-eval", "--model", cls.run_dir, f"steps={STEPS[-1]}", "tasks=brown-heldout",
            f"out={cls.best}", "limit=8", "threads=1")

    def submit_array(self, name, steps, gate, baseline=""):
        out = os.path.join(WORK, "runs", name)
        job = sc.eval_job(name, BIN, os.path.join(WORK, "runs", f"{name}-job"), self.run_dir, out,
                          template="eval-array", steps=steps, gate=gate, baseline=baseline)
        array_id, gate_id = sc.submit_job(BIN, sc.write_yaml(os.path.join(WORK, "jobs", f"{name}.yaml"), job))
        self.assertIsNotNone(gate_id, "an eval-array job with a gate must submit a gate job")
        self.assertIn(f"afterok:{array_id}", sc.job(gate_id).get("Dependency", ""), sc.describe(gate_id))
        return array_id, gate_id, out

    def check_array(self, array_id, steps, out):
        tasks = sc.wait_terminal(array_id, timeout=300)
        self.assertEqual(sorted(int(t["ArrayTaskId"]) for t in tasks), list(range(len(steps))),
                         sc.describe(array_id))
        for task in tasks:
            self.assertEqual((task["JobState"], task["ExitCode"]), ("COMPLETED", "0:0"), sc.describe(array_id))
        for step in steps:
            path = os.path.join(out, f"step-{step:08d}", "results.json")
            self.assertTrue(os.path.exists(path), f"{path} missing:\n{sc.describe(array_id)}")
            with open(path) as f:
                results = json.load(f)
            self.assertEqual(results["model"]["step"], step, path)
            self.assertIn("brown-heldout", results["tasks"], path)

    def test_array_evaluates_every_step_and_the_gate_passes(self):
        start = time.monotonic()
        array_id, gate_id, out = self.submit_array("eval-pass", STEPS, write_gate("gate-pass", "10%"))
        self.check_array(array_id, STEPS, out)
        gate = sc.wait_terminal(gate_id, timeout=120)[0]
        print(f"array + gate: {time.monotonic() - start:.1f} s", flush=True)
        self.assertEqual((gate["JobState"], gate["ExitCode"]), ("COMPLETED", "0:0"), sc.describe(gate_id))

    def test_an_impossible_gate_fails_the_gate_job(self):
        steps = STEPS[:-1]
        array_id, gate_id, out = self.submit_array("eval-fail", steps, write_gate("gate-strict", 0),
                                                   baseline=os.path.join(self.best, "results.json"))
        self.check_array(array_id, steps, out)
        gate = sc.wait_terminal(gate_id, timeout=120)[0]
        self.assertEqual((gate["JobState"], gate["ExitCode"]), ("FAILED", "1:0"), sc.describe(gate_id))
        log = sc.job_log(gate)
        self.assertIn("gate FAILED", log)
        self.assertIn(f"step-{steps[-1]:08d}/results.json", log)


if __name__ == "__main__":
    sc.cluster_or_skip()
    unittest.main(argv=sys.argv[:1])
