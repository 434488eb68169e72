#!/usr/bin/python3
"""Pipelines on a real Slurm: `loom-submit pipeline` chains stages with afterok dependencies.

A three-stage pipeline — loom-sft (the TINY model on Brown, 20 steps, 2 tasks) → loom-sft
again from its model.h5 (train.init_from={{stage.pipe-sft.model}}, 10 steps) → loom-eval of the
second model on brown-heldout — must run the stages one after the other (each starts no
earlier than the one before ended, by scontrol's StartTime/EndTime), all COMPLETED, with the
outputs each stage hands on; `loom-submit status` shows every stage COMPLETED.

The same pipeline whose first stage fails (an unknown setting: exit 2) must leave the later
stages cancelled, never run (CANCELLED or held with DependencyNeverSatisfied, no batch log,
no output in their run dirs).

Usage: test_slurm_pipeline.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slurm_cluster as sc  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/slurm-pipeline"
BIN = os.path.join(BUILD, "bin")
STAGES = ["pipe-sft", "pipe-sft2", "pipe-eval"]


class Pipeline(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        cls.tokenizer = sc.prepare_brown(BIN, WORK)

    def pipeline(self, variant, first_extra=()):
        """Writes the three-stage pipeline under WORK/VARIANT; returns (file, run dirs by stage)."""
        runs = {name: os.path.join(WORK, variant, "runs", name) for name in STAGES}
        sft = sc.train_job("pipe-sft", BIN, WORK, runs["pipe-sft"],
                           [*sc.tiny_overrides(WORK, self.tokenizer, 20, 10), *first_extra])
        sft2 = sc.train_job("pipe-sft2", BIN, WORK, runs["pipe-sft2"],
                            [*sc.tiny_overrides(WORK, self.tokenizer, 10, 10),
                             "train.init_from={{stage.pipe-sft.model}}"])
        evaluation = sc.eval_job("pipe-eval", BIN, runs["pipe-eval"], "{{stage.pipe-sft2.model}}",
                                 os.path.join(runs["pipe-eval"], "results"))
        document = {"name": f"pipe-{variant}", "stages": [sft, sft2, evaluation]}
        return sc.write_yaml(os.path.join(WORK, variant, "pipeline.yaml"), document), runs

    def test_stages_run_in_order(self):
        pipeline, runs = self.pipeline("ok")
        state = os.path.join(WORK, "ok", "state.json")
        start = time.monotonic()
        ids = sc.submit_pipeline(BIN, pipeline, state)
        self.assertEqual(sorted(ids), sorted(STAGES))
        # Right after submission the later stages wait on the one before (met, it reads "(null)").
        for before, after in zip(STAGES, STAGES[1:]):
            self.assertIn(f"afterok:{ids[before]}", sc.job(ids[after]).get("Dependency", ""), sc.describe(ids[after]))
        records = {name: sc.wait_terminal(ids[name], timeout=300)[0] for name in STAGES}
        print(f"pipeline finished {time.monotonic() - start:.1f} s after submission", flush=True)
        for name in STAGES:
            self.assertEqual(records[name]["JobState"], "COMPLETED", sc.describe(ids[name]))
            self.assertEqual(records[name]["ExitCode"], "0:0", sc.describe(ids[name]))
        for before, after in zip(STAGES, STAGES[1:]):
            self.assertGreaterEqual(sc.slurm_time(records[after]["StartTime"]),
                                    sc.slurm_time(records[before]["EndTime"]),
                                    f"{after} started before {before} ended")
        self.assertTrue(os.path.exists(os.path.join(runs["pipe-sft2"], "model.h5")))
        self.assertTrue(os.path.exists(os.path.join(runs["pipe-eval"], "results", "results.json")))
        with open(os.path.join(runs["pipe-sft2"], "run.json")) as f:
            init_from = json.load(f)["config"]["train"]["init_from"]
        self.assertEqual(init_from, os.path.join(runs["pipe-sft"], "model.h5"))

        status = sc.loom_submit(BIN, "status", "--state", state).stdout
        for name in STAGES:
            line = next((l for l in status.splitlines() if name + " " in l and ids[name] in l), "")
            self.assertIn("COMPLETED", line, status)

    def test_a_failed_first_stage_cancels_the_rest(self):
        pipeline, runs = self.pipeline("failing", first_extra=["train.no_such_setting=1"])
        state = os.path.join(WORK, "failing", "state.json")
        ids = sc.submit_pipeline(BIN, pipeline, state)
        first = sc.wait_terminal(ids["pipe-sft"], timeout=120)[0]
        self.assertEqual(first["JobState"], "FAILED", sc.describe(ids["pipe-sft"]))
        self.assertEqual(first["ExitCode"], "2:0", sc.describe(ids["pipe-sft"]))

        def never_runs(record):
            return record["JobState"] == "CANCELLED" or (
                record["JobState"] == "PENDING" and record.get("Reason") == "DependencyNeverSatisfied")

        for name in STAGES[1:]:
            record = sc.wait_until(ids[name], never_runs, "cancellation (CANCELLED or DependencyNeverSatisfied)",
                                   timeout=60)
            # Never started: no batch output (Slurm's RunTime of a job cancelled while pending is noise).
            self.assertFalse(os.path.exists(record["StdOut"]), sc.describe(ids[name]))
            self.assertFalse(os.path.exists(os.path.join(runs[name], "model.h5")))
            self.assertFalse(os.path.exists(os.path.join(runs[name], "metrics.jsonl")))
            self.assertFalse(os.path.exists(os.path.join(runs[name], "results")))
            print(f"{name}: {record['JobState']} ({record.get('Reason')})", flush=True)
        status = sc.loom_submit(BIN, "status", "--state", state).stdout
        for name, word in zip(STAGES, ("FAILED", "DependencyNeverSatisfied", "DependencyNeverSatisfied")):
            line = next((l for l in status.splitlines() if name + " " in l and ids[name] in l), "")
            self.assertIn(word, line, status)
        for name in STAGES[1:]:
            if sc.job(ids[name])["JobState"] == "PENDING":
                subprocess.run(["scancel", ids[name]], timeout=30)


if __name__ == "__main__":
    sc.cluster_or_skip()
    unittest.main(argv=sys.argv[:1])
