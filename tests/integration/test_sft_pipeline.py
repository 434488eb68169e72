#!/usr/bin/python3
"""End-to-end: loom-prep (tokenizer, Brown, WordNet) → loom-sft pre-training → loom-sft SFT
from the pre-trained weights, on the real corpora, with the real executables.

Checks what a user relies on: the loss falls, validation runs, metrics.jsonl / run.json /
model.h5 have the documented fields and readable contents, SFT starts from the pre-trained
weights and lowers the held-out completion loss, and bad configurations fail with one
clear message and exit code 2.

Usage: test_sft_pipeline.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import metrics, prepare_brown, run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/integration-sft"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-1k.json")

MODEL = ["model.d_model=64", "model.d_ff=0", "train.micro_batch_size=0", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2", "model.max_seq_len=64"]


class Pipeline(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(os.path.join(WORK, "runs"), ignore_errors=True)
        os.makedirs(WORK, exist_ok=True)
        prepare_brown(BIN, WORK, TOKENIZER, 1024)
        run(f"{BIN}/loom-prep", "wordnet", "--tokenizer", TOKENIZER, "--out", f"{WORK}/wordnet")
        cls.pretrain = f"{WORK}/runs/pretrain"
        run(f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={cls.pretrain}",
            f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/brown/train.h5", f"data.val={WORK}/brown/val.h5",
            "data.seq_len=64", "train.batch_size=8", "train.max_steps=60", "train.warmup_steps=5",
            "train.max_time=0", "eval.every=30", "eval.batches=4", "train.log_every=5", *MODEL)
        cls.sft = f"{WORK}/runs/sft"
        run(f"{BIN}/loom-sft", "--config", "configs/tiny-wordnet-sft.yaml", f"run_dir={cls.sft}",
            f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/wordnet/train.h5", f"data.val={WORK}/wordnet/val.h5",
            f"train.init_from={cls.pretrain}/model.h5", "data.seq_len=48", "train.batch_size=16",
            "train.max_steps=40", "train.warmup_steps=5", "train.max_time=0", "eval.every=20", "eval.batches=4",
            "train.log_every=5", *MODEL)
        # The same SFT run from a random init, stopped after one step: its step-0 validation
        # loss is what the pre-trained start must beat.
        cls.scratch = f"{WORK}/runs/sft-scratch"
        run(f"{BIN}/loom-sft", "--config", "configs/tiny-wordnet-sft.yaml", f"run_dir={cls.scratch}",
            f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/wordnet/train.h5", f"data.val={WORK}/wordnet/val.h5",
            "train.init_from=", "data.seq_len=48", "train.batch_size=16", "train.max_steps=1", "train.max_time=0",
            "eval.batches=4", *MODEL)

    def test_pretraining_loss_falls_and_is_logged(self):
        rows = metrics(self.pretrain)
        train = [r for r in rows if "loss" in r]
        self.assertEqual(train[0]["step"], 1)
        self.assertEqual(train[-1]["step"], 60)
        for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "gflops"):
            self.assertIn(key, train[-1])
        # ln(1024) = 6.93 at the start; a working model is far below that after 60 steps.
        self.assertGreater(train[0]["loss"], 6.0)
        self.assertLess(train[-1]["loss"], train[0]["loss"] - 1.0)
        val = [r for r in rows if "val_loss" in r]
        self.assertEqual([r["step"] for r in val], [0, 30, 60])
        self.assertLess(val[-1]["val_loss"], val[0]["val_loss"] - 1.0)
        self.assertAlmostEqual(val[-1]["val_ppl"], np.exp(val[-1]["val_loss"]), places=3)

    def test_run_record(self):
        with open(os.path.join(self.pretrain, "run.json")) as f:
            record = json.load(f)
        self.assertEqual(record["config"]["train"]["max_steps"], 60)
        self.assertEqual(record["layout"]["dp"], 1)
        self.assertEqual(len(record["data"]["train"]["fingerprint"]), 16)
        self.assertIn("hostname", record["host"])
        self.assertTrue(record["git_commit"])
        self.assertEqual(record["results"]["steps"], 60)
        self.assertEqual(record["model"]["parameters"], record["model"]["parameters"])

    def test_weights_file_reads_without_loom(self):
        with h5py.File(os.path.join(self.pretrain, "model.h5"), "r") as f:
            meta = json.loads(f.attrs["metadata"])
            self.assertEqual(meta["model"]["family"], "llama")
            self.assertEqual(meta["model"]["d_model"], 64)
            emb = f["embed.tokens.weight"][()]
            self.assertEqual(emb.shape, (1024, 64))
            self.assertTrue(np.isfinite(emb).all())
            self.assertGreater(float(np.abs(emb).mean()), 1e-3)

    def test_sft_starts_from_pretrained_weights_and_improves(self):
        rows = metrics(self.sft)
        val = [r for r in rows if "val_loss" in r]
        self.assertEqual(val[0]["step"], 0)
        self.assertLess(val[-1]["val_loss"], val[0]["val_loss"])
        # Starting from the Brown weights beats starting from random weights before any SFT step.
        scratch = [r for r in metrics(self.scratch) if "val_loss" in r]
        self.assertEqual(scratch[0]["step"], 0)
        self.assertLess(val[0]["val_loss"], scratch[0]["val_loss"] - 0.5)

    def test_unknown_key_is_one_clear_error(self):
        proc = run(f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", "train.max_step=3", expect=2)
        self.assertIn('unknown setting "train.max_step"', proc.stderr)
        self.assertIn('did you mean "train.max_steps"', proc.stderr)

    def test_wrong_type_and_missing_file(self):
        proc = run(f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", "train.max_steps=abc", expect=2)
        self.assertIn("train.max_steps", proc.stderr)
        proc = run(f"{BIN}/loom-sft", "--config", "configs/does-not-exist.yaml", expect=2)
        self.assertIn("configs/does-not-exist.yaml", proc.stderr)
        proc = run(f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={WORK}/runs/bad",
                   f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/missing.h5", expect=1)
        self.assertIn("missing.h5", proc.stderr)

    def test_sigterm_stops_at_a_step_boundary_and_saves(self):
        run_dir = f"{WORK}/runs/sigterm"
        proc = subprocess.Popen(
            [f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={run_dir}",
             f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/brown/train.h5", f"data.val={WORK}/brown/val.h5",
             "data.seq_len=64", "train.batch_size=8", "train.max_steps=100000", "train.max_time=0",
             "eval.every=0", "eval.batches=2", "train.log_every=1", *MODEL],
            stderr=subprocess.PIPE, text=True)
        metrics_file = os.path.join(run_dir, "metrics.jsonl")
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(metrics_file):
                with open(metrics_file) as f:
                    if sum(1 for _ in f) >= 4:
                        break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        # 75 (EX_TEMPFAIL): checkpointed, requeue the job.
        self.assertEqual(proc.returncode, 75, stderr)
        with open(os.path.join(run_dir, "run.json")) as f:
            results = json.load(f)["results"]
        self.assertEqual(results["stopped_by"], "SIGTERM")
        self.assertLess(results["steps"], 100000)
        self.assertGreaterEqual(results["steps"], 3)
        with h5py.File(os.path.join(run_dir, "model.h5"), "r") as f:
            self.assertEqual(json.loads(f.attrs["metadata"])["step"], results["steps"])
        # A committed checkpoint of exactly the stop step, which `latest` names.
        checkpoint = os.path.join(run_dir, "checkpoints", f"step-{results['steps']:08d}")
        self.assertEqual(results["checkpoint"], checkpoint)
        with open(os.path.join(checkpoint, "index.json")) as f:
            self.assertEqual(json.load(f)["step"], results["steps"])
        with open(os.path.join(run_dir, "checkpoints", "latest")) as f:
            self.assertEqual(f.read().strip(), os.path.basename(checkpoint))

    def test_help_lists_every_setting(self):
        proc = run(f"{BIN}/loom-sft", "--help")
        for key in ("train.max_steps", "data.seq_len", "model.family", "eval.every", "run_dir"):
            self.assertIn(key, proc.stdout)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
