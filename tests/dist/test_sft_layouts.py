#!/usr/bin/python3
"""loom-sft under every parallel layout against one process.

For (dp, tp, pp) in (2,1,1), (1,2,1), (1,1,2), (2,2,1), (1,2,2), (2,1,2), (2,2,2), (4,1,2)
and both model families (a Llama with ONE kv head, so tp=2 replicates it, untied head; a
GPT-2 with tied embeddings, biases and learned positions), 5 training steps on Brown must
give the single-process losses at every step and the same final weights. Also: ZeRO-1
matches plain data parallelism, GPipe matches 1F1B, two runs in one layout are
bit-identical, rank 0 alone writes, and every layout error stops every rank with exit 2.

Tolerances. Only the floating-point summation order differs between layouts (GEMMs over
C/tp, all-reduces over ranks, gradient sums over micro-batches), so losses agree to f32
rounding: relative 1e-5. Weights after 5 AdamW steps: absolute 2e-5. Adam divides each
gradient by its own running RMS, so an element whose gradient is tiny can turn a rounding
difference of ~1e-7 relative into a visible fraction of one step (lr <= 6e-4 here); the
worst seen is ~4e-6 (tp) and ~4e-7 (dp), printed by the test.

Usage: test_sft_layouts.py BUILD_DIR WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import json
import os
import shutil
import subprocess
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import MPI_FLAGS, h5_tensors, metrics, prepare_brown, run, tiny_sft, train_losses  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/dist-sft"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-512.json")
MPI = [MPIEXEC, *MPI_FLAGS]
STEPS = 5

COMMON = [f"train.max_steps={STEPS}"]
FAMILIES = {
    "llama": ["model.family=llama", "model.n_kv_heads=1", "model.tie_embeddings=false"],
    "gpt2": ["model.family=gpt2", "model.n_kv_heads=4"],
}
LAYOUTS = [(2, 1, 1), (1, 2, 1), (1, 1, 2), (2, 2, 1), (1, 2, 2), (2, 1, 2), (2, 2, 2), (4, 1, 2)]
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 2e-5


def sft_args(run_dir, family, *extra):
    return tiny_sft(BIN, WORK, TOKENIZER, run_dir, *COMMON, *FAMILIES[family], *extra)


def layout_args(dp, tp, pp):
    return [f"parallel.tp={tp}", f"parallel.pp={pp}"]


def name_of(layout):
    return "dp{}_tp{}_pp{}".format(*layout)


class Layouts(unittest.TestCase):
    runs = {}
    errors_seen = 0

    @classmethod
    def setUpClass(cls):
        shutil.rmtree(os.path.join(WORK, "runs"), ignore_errors=True)
        os.makedirs(WORK, exist_ok=True)
        if not os.path.exists(f"{WORK}/brown/val.h5"):
            prepare_brown(BIN, WORK, TOKENIZER, 512)
        for family in FAMILIES:
            cls.start(family, "single", None)
            for layout in LAYOUTS:
                cls.start(family, name_of(layout), layout)
        cls.start("llama", "dp2_tp1_pp1_zero1", (2, 1, 1), "parallel.zero1=true")
        cls.start("llama", "dp2_tp2_pp2_zero1", (2, 2, 2), "parallel.zero1=true")
        cls.start("gpt2", "dp2_tp1_pp2_zero1", (2, 1, 2), "parallel.zero1=true")
        cls.start("llama", "dp1_tp1_pp2_gpipe", (1, 1, 2), "parallel.schedule=gpipe")
        cls.start("llama", "dp2_tp2_pp2_again", (2, 2, 2))
        cls.start("gpt2", "dp2_tp1_pp2_zero1_again", (2, 1, 2), "parallel.zero1=true")

    @classmethod
    def start(cls, family, name, layout, *extra):
        run_dir = f"{WORK}/runs/{family}/{name}"
        if layout is None:
            proc = run(*sft_args(run_dir, family, *extra))
        else:
            ranks = layout[0] * layout[1] * layout[2]
            proc = run(*MPI, str(ranks), *sft_args(run_dir, family, *layout_args(*layout), *extra))
        cls.runs[(family, name)] = (run_dir, proc)

    def dir(self, family, name):
        return self.runs[(family, name)][0]

    def compare(self, family, name, reference="single", exact=False):
        a, b = self.dir(family, reference), self.dir(family, name)
        la, lb = train_losses(a), train_losses(b)
        self.assertEqual(len(la), STEPS)
        self.assertEqual(len(lb), STEPS, f"{family} {name}")
        worst_loss = max(abs(x - y) / abs(x) for x, y in zip(la, lb))
        wa, wb = h5_tensors(f"{a}/model.h5"), h5_tensors(f"{b}/model.h5")
        self.assertEqual(sorted(wa), sorted(wb))
        worst_weight = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
        print(f"\n  {family:5} {name:24} vs {reference:18}: max rel loss diff {worst_loss:.2e}, "
              f"max abs weight diff {worst_weight:.2e}", end="")
        if exact:
            self.assertEqual(la, lb, f"{family} {name}: losses are not bit-identical to {reference}")
            for k in wa:
                self.assertTrue(np.array_equal(wa[k], wb[k]), f"{family} {name}: {k} not bit-identical")
        else:
            self.assertLessEqual(worst_loss, LOSS_RTOL, f"{family} {name}: losses {lb} vs {la}")
            self.assertLessEqual(worst_weight, WEIGHT_ATOL, f"{family} {name}: weights")
        return worst_weight

    def test_every_layout_matches_one_process(self):
        for family in FAMILIES:
            for layout in LAYOUTS:
                with self.subTest(family=family, layout=layout):
                    self.compare(family, name_of(layout))
            # The runs learn, so agreement is not two copies of the initial loss.
            losses = train_losses(self.dir(family, "single"))
            self.assertLess(losses[-1], losses[0] - 0.1, f"{family}: {losses}")

    def test_zero1_matches_plain_data_parallelism(self):
        self.compare("llama", "dp2_tp1_pp1_zero1", "dp2_tp1_pp1")
        self.compare("llama", "dp2_tp2_pp2_zero1", "dp2_tp2_pp2")
        self.compare("gpt2", "dp2_tp1_pp2_zero1", "dp2_tp1_pp2")

    def test_gpipe_matches_1f1b(self):
        self.compare("llama", "dp1_tp1_pp2_gpipe", "dp1_tp1_pp2")

    def test_repeated_runs_are_bit_identical(self):
        self.compare("llama", "dp2_tp2_pp2_again", "dp2_tp2_pp2", exact=True)
        self.compare("gpt2", "dp2_tp1_pp2_zero1_again", "dp2_tp1_pp2_zero1", exact=True)

    def test_rank_zero_alone_writes_and_reports_memory(self):
        run_dir, proc = self.runs[("llama", "dp2_tp2_pp2")]
        # Rank 0 alone writes the run's files; every rank writes its checkpoint shard and heartbeat.
        self.assertEqual(sorted(os.listdir(run_dir)),
                         ["checkpoints", "heartbeats", "metrics.jsonl", "model.h5", "run.json"])
        self.assertEqual(len(os.listdir(os.path.join(run_dir, "heartbeats"))), 8)
        steps = [r["step"] for r in metrics(run_dir) if "loss" in r]
        self.assertEqual(steps, list(range(1, STEPS + 1)))
        with open(os.path.join(run_dir, "run.json")) as f:
            record = json.load(f)
        self.assertEqual({k: record["layout"][k] for k in ("world_size", "dp", "tp", "pp")},
                         {"world_size": 8, "dp": 2, "tp": 2, "pp": 2})
        self.assertEqual(record["results"]["steps"], STEPS)
        self.assertEqual(proc.stderr.count("results in"), 1, proc.stderr)
        # Every rank of a small world reports its memory once.
        self.assertEqual(proc.stderr.count("loom-sft: memory of rank"), 8, proc.stderr)

    def test_memory_per_rank_falls_as_tp_and_pp_grow(self):
        def rank0_total(family, name):
            with open(os.path.join(self.dir(family, name), "run.json")) as f:
                return sum(json.load(f)["layout"]["memory_bytes_rank0"].values())
        for family in FAMILIES:
            one = rank0_total(family, "single")
            self.assertLess(rank0_total(family, "dp1_tp2_pp1"), one)
            self.assertLess(rank0_total(family, "dp1_tp1_pp2"), one)
            self.assertLess(rank0_total(family, "dp1_tp2_pp2"), rank0_total(family, "dp1_tp2_pp1"))

    def expect_error(self, ranks, message, *settings):
        """Every rank exits 2 before training, and the message appears (once, from rank 0)."""
        Layouts.errors_seen += 1
        run_dir = f"{WORK}/runs/errors/{Layouts.errors_seen}"
        rc_dir = f"{run_dir}.rc"
        shutil.rmtree(rc_dir, ignore_errors=True)
        os.makedirs(rc_dir)
        command = " ".join(f"'{a}'" for a in sft_args(run_dir, "llama", *settings))
        # Each rank records its own exit code: mpirun only reports the first failing one.
        wrapper = f"{command}; echo $? > {rc_dir}/rank.$OMPI_COMM_WORLD_RANK"
        proc = subprocess.run([*MPI, str(ranks), "sh", "-c", wrapper], capture_output=True, text=True, timeout=120)
        codes = []
        for name in os.listdir(rc_dir):
            with open(os.path.join(rc_dir, name)) as f:
                codes.append(int(f.read()))
        codes.sort()
        self.assertEqual(codes, [2] * ranks, proc.stderr)
        self.assertEqual(proc.stderr.count(message), 1, proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(run_dir, "metrics.jsonl")))

    def test_layout_errors_stop_every_rank(self):
        self.expect_error(3, "world size 3 is not divisible by tp*pp = 2", "parallel.tp=2")
        self.expect_error(4, "n_heads (2) not divisible by tp_size", "parallel.tp=4", "model.n_heads=2")
        self.expect_error(2, "vocab_size (513) not divisible by tp_size", "parallel.tp=2", "model.vocab_size=513")
        self.expect_error(2, "the model has 1 layers, fewer than the 2 pipeline stages", "parallel.pp=2",
                          "model.n_layers=1")
        self.expect_error(2, "parallel.stage_layers has 2 entries summing to 3", "parallel.pp=2",
                          "parallel.stage_layers=[1,2]")
        self.expect_error(2, "train.batch_size = 8 is not a multiple of data-parallel ranks x "
                             "train.micro_batch_size = 2 x 3", "train.micro_batch_size=3")

    def test_a_rank_failing_alone_stops_the_job(self):
        # Rank 1 reads a training file that does not exist while rank 0 goes on into the
        # first collective: the job must end with rank 1's message instead of hanging.
        good = " ".join(f"'{a}'" for a in sft_args(f"{WORK}/runs/alone", "llama", "parallel.pp=2"))
        bad = good.replace(f"data.train={WORK}/brown/train.h5", f"data.train={WORK}/missing.h5")
        script = f'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then {bad}; else {good}; fi'
        proc = subprocess.run([*MPI, "2", "sh", "-c", script], capture_output=True, text=True, timeout=120)
        self.assertNotEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("[rank 1] loom-sft: error:", proc.stderr)
        self.assertIn("missing.h5", proc.stderr)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
