#!/usr/bin/python3
"""loom-sft data parallelism: the same tiny Llama trained on Brown by one process and by
`mpirun -np 2` (global batch 8 = 2 ranks x 4 rows) must follow the same curve — per-step
train losses, validation losses and final weights equal to a relative 1e-4 (only the
floating-point summation order differs) — with rank 0 alone writing files and speaking.
Layouts the trainer cannot run fail once, on rank 0, with exit code 2.

Usage: test_sft_dp.py BUILD_DIR WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import json
import os
import shutil
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import metrics, prepare_brown, run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/dist-sft"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-512.json")
MPI = [MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np"]

SETTINGS = ["model.d_model=64", "model.d_ff=0", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2",
            "model.max_seq_len=64", "data.seq_len=64", "train.batch_size=8", "train.micro_batch_size=4",
            "train.max_steps=15", "eval.every=5", "eval.batches=2", "train.log_every=1", "train.max_time=0",
            "train.threads=1"]


def sft_args(run_dir, *extra):
    return [f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={run_dir}",
            f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/brown/train.h5", f"data.val={WORK}/brown/val.h5",
            *SETTINGS, *extra]


class DataParallel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(os.path.join(WORK, "runs"), ignore_errors=True)
        os.makedirs(WORK, exist_ok=True)
        prepare_brown(BIN, WORK, TOKENIZER, 512)
        cls.single = f"{WORK}/runs/single"
        run(*sft_args(cls.single))
        cls.dp = f"{WORK}/runs/dp2"
        cls.dp_proc = run(*MPI, "2", *sft_args(cls.dp))

    def assert_close(self, a, b, what):
        self.assertLessEqual(abs(a - b), 1e-4 * max(abs(a), abs(b)), f"{what}: {a} vs {b}")

    def test_train_and_val_losses_agree(self):
        single, dp = metrics(self.single), metrics(self.dp)
        train_single = [r for r in single if "loss" in r]
        train_dp = [r for r in dp if "loss" in r]
        self.assertEqual([r["step"] for r in train_single], list(range(1, 16)))
        self.assertEqual([r["step"] for r in train_dp], list(range(1, 16)))
        for a, b in zip(train_single, train_dp):
            self.assert_close(a["loss"], b["loss"], f"train loss at step {a['step']}")
            self.assert_close(a["grad_norm"], b["grad_norm"], f"grad_norm at step {a['step']}")
            self.assertEqual(a["tokens"], b["tokens"])
        val_single = [r for r in single if "val_loss" in r]
        val_dp = [r for r in dp if "val_loss" in r]
        self.assertEqual([r["step"] for r in val_single], [0, 5, 10, 15])
        self.assertEqual([r["step"] for r in val_dp], [0, 5, 10, 15])
        for a, b in zip(val_single, val_dp):
            self.assertEqual(a["val_tokens"], b["val_tokens"])
            self.assert_close(a["val_loss"], b["val_loss"], f"val loss at step {a['step']}")
        # The run learned something, so agreement is not two copies of the initial loss.
        self.assertLess(train_dp[-1]["loss"], train_dp[0]["loss"] - 0.3)

    def test_final_weights_agree(self):
        with h5py.File(os.path.join(self.single, "model.h5"), "r") as a, \
                h5py.File(os.path.join(self.dp, "model.h5"), "r") as b:
            names = []
            a.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            self.assertGreater(len(names), 5)
            for name in names:
                x, y = a[name][()], b[name][()]
                self.assertEqual(x.shape, y.shape, name)
                scale = max(float(np.abs(x).max()), 1e-6)
                self.assertLessEqual(float(np.abs(x - y).max()), 1e-4 * scale, name)

    def test_rank_zero_alone_writes_and_speaks(self):
        self.assertEqual(sorted(os.listdir(self.dp)), ["metrics.jsonl", "model.h5", "run.json"])
        steps = [r["step"] for r in metrics(self.dp) if "loss" in r]
        self.assertEqual(len(steps), len(set(steps)), "two ranks wrote metrics.jsonl")
        with open(os.path.join(self.dp, "run.json")) as f:
            record = json.load(f)
        self.assertEqual(record["layout"]["world_size"], 2)
        self.assertEqual(record["layout"]["dp"], 2)
        self.assertEqual(record["results"]["steps"], 15)
        self.assertEqual(self.dp_proc.stderr.count("parameters,"), 1, self.dp_proc.stderr)
        self.assertEqual(self.dp_proc.stderr.count("results in"), 1, self.dp_proc.stderr)

    def test_layout_errors(self):
        proc = run(*MPI, "2", *sft_args(f"{WORK}/runs/pp2", "parallel.pp=2"), expect=2)
        self.assertEqual(proc.stderr.count("parallel.pp = 2: pipeline parallelism is not wired into the trainer yet"),
                         1, proc.stderr)
        proc = run(*MPI, "3", *sft_args(f"{WORK}/runs/tp2", "parallel.tp=2"), expect=2)
        self.assertEqual(proc.stderr.count("world size 3 is not divisible by tp*pp = 2"), 1, proc.stderr)
        self.assertIn("parallel.tp = 2", proc.stderr)
        self.assertFalse(os.path.exists(f"{WORK}/runs/pp2"))

    def test_global_batch_must_divide(self):
        proc = run(*MPI, "2", *sft_args(f"{WORK}/runs/odd", "train.batch_size=6"), expect=2)
        self.assertEqual(proc.stderr.count("train.batch_size = 6 is not a multiple of data-parallel ranks x "
                                           "train.micro_batch_size = 2 x 4"), 1, proc.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
