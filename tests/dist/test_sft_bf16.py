#!/usr/bin/python3
"""loom-sft with train.precision=bf16 (bf16 weights, activations and gradients over f32
master weights) on the CPU backend's bf16 storage, one process and several layouts.

 * bf16 follows the f32 run: 6 steps on Brown from the same init, losses within 1% at every
   step (bf16 keeps 8 bits of mantissa: activations and gradients round at 2^-9 relative),
   and both learn.
 * Layouts dp2, tp2, pp2, dp2 x tp2 x pp2 and ZeRO-1 dp2 agree with one bf16 process to 1% in
   loss, and their final f32 master weights differ by at most lr/4 in RMS over all elements.
   Not to f32 rounding, as in f32 (test_sft_layouts.py): a bf16 all-reduce rounds every
   partial sum to bf16, and the tp GEMMs round their partial products before the sum. Nor
   element by element: Adam moves an element whose gradient is near zero by up to lr per step
   whichever way the rounding tips its sign (a few elements in a thousand differ by more than
   lr; the worst by 5 lr after 6 steps). A wrong gradient moves every element it touches.
 * Repeats are bit-identical, and a run stopped after its step-3 checkpoint resumes to the
   same bits as the run that never stopped: checkpoints keep the f32 masters, and the bf16
   copy is a function of them.
 * The checkpoint and model.h5 hold f32 masters (h5py reads float32), run.json records the
   precision and the memory report counts bf16 gradients.

Usage: test_sft_bf16.py BUILD_DIR WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import json
import os
import shutil
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import MPI_FLAGS, h5_tensors, prepare_brown, run, tiny_sft, train_losses  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/dist-sft-bf16"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-512.json")
MPI = [MPIEXEC, *MPI_FLAGS]
STEPS = 6

LR = 2e-3
# A constant learning rate, so a run that stops at step 3 and one that goes on see the same lr.
COMMON = [f"train.max_steps={STEPS}", "train.schedule=constant", "train.warmup_steps=0", f"train.lr={LR}",
          "model.family=llama", "model.n_kv_heads=2", "model.tie_embeddings=false", "checkpoint.every=3"]
BF16 = ["train.precision=bf16"]
LAYOUTS = {"dp2": (2, 1, 1), "tp2": (1, 2, 1), "pp2": (1, 1, 2), "dp2_tp2_pp2": (2, 2, 2)}
LOSS_RTOL = 1e-2
WEIGHT_RMS = LR / 4


class Bf16(unittest.TestCase):
    runs = {}

    @classmethod
    def setUpClass(cls):
        shutil.rmtree(os.path.join(WORK, "runs"), ignore_errors=True)
        os.makedirs(WORK, exist_ok=True)
        if not os.path.exists(f"{WORK}/brown/val.h5"):
            prepare_brown(BIN, WORK, TOKENIZER, 512)
        cls.start("f32", None)
        cls.start("bf16", None, *BF16)
        cls.start("bf16_again", None, *BF16)
        for name, layout in LAYOUTS.items():
            cls.start(name, layout, *BF16)
        cls.start("dp2_zero1", (2, 1, 1), *BF16, "parallel.zero1=true")
        # Stopped after the step-3 checkpoint, then resumed to the end in the same directory.
        cls.start("resumed", None, *BF16, "train.max_steps=3")
        cls.start("resumed", None, *BF16, "train.resume=auto")

    @classmethod
    def start(cls, name, layout, *extra):
        run_dir = f"{WORK}/runs/{name}"
        args = tiny_sft(BIN, WORK, TOKENIZER, run_dir, *COMMON, *extra)
        if layout is None:
            proc = run(*args)
        else:
            dp, tp, pp = layout
            proc = run(*MPI, str(dp * tp * pp), *args, f"parallel.tp={tp}", f"parallel.pp={pp}")
        cls.runs[name] = (run_dir, proc)

    def dir(self, name):
        return self.runs[name][0]

    def compare(self, name, reference, loss_rtol=LOSS_RTOL, weight_rms=WEIGHT_RMS):
        la, lb = train_losses(self.dir(reference)), train_losses(self.dir(name))
        self.assertEqual(len(la), STEPS, reference)
        self.assertEqual(len(lb), STEPS, name)
        worst_loss = max(abs(x - y) / abs(x) for x, y in zip(la, lb))
        wa, wb = h5_tensors(f"{self.dir(reference)}/model.h5"), h5_tensors(f"{self.dir(name)}/model.h5")
        self.assertEqual(sorted(wa), sorted(wb))
        diff = np.concatenate([(wa[k] - wb[k]).ravel() for k in wa])
        rms = float(np.sqrt(np.mean(diff.astype(np.float64) ** 2)))
        print(f"\n  {name:12} vs {reference:6}: max rel loss diff {worst_loss:.2e}, weight diff RMS {rms:.2e}, "
              f"max {float(np.abs(diff).max()):.2e}", end="")
        self.assertLessEqual(worst_loss, loss_rtol, f"{name}: losses {lb} vs {reference} {la}")
        self.assertLessEqual(rms, weight_rms, f"{name}: weights")
        return worst_loss

    def assert_identical(self, name, reference):
        self.assertEqual(train_losses(self.dir(name))[-STEPS:], train_losses(self.dir(reference)))
        wa, wb = h5_tensors(f"{self.dir(reference)}/model.h5"), h5_tensors(f"{self.dir(name)}/model.h5")
        for k in wa:
            self.assertTrue(np.array_equal(wa[k], wb[k]), f"{name}: {k} not bit-identical to {reference}")

    def test_bf16_follows_f32(self):
        gap = self.compare("bf16", "f32")
        self.assertGreater(gap, 0.0, "bf16 losses equal the f32 ones: the bf16 path did not run")
        for name in ("f32", "bf16"):
            losses = train_losses(self.dir(name))
            self.assertLess(losses[-1], losses[0] - 0.1, f"{name}: {losses}")

    def test_layouts_match_one_bf16_process(self):
        for name in LAYOUTS:
            with self.subTest(layout=name):
                self.compare(name, "bf16")
        self.compare("dp2_zero1", "dp2")

    def test_repeats_and_resume_are_bit_identical(self):
        self.assert_identical("bf16_again", "bf16")
        _, proc = self.runs["resumed"]
        self.assertIn("resumed from", proc.stderr)
        self.assert_identical("resumed", "bf16")

    def test_files_hold_f32_masters_and_record_the_precision(self):
        for name, array in h5_tensors(f"{self.dir('bf16')}/model.h5").items():
            self.assertEqual(array.dtype, np.float32, name)
        with open(os.path.join(self.dir("bf16"), "run.json")) as f:
            record = json.load(f)
        self.assertEqual(record["config"]["train"]["precision"], "bf16")
        with open(os.path.join(self.dir("f32"), "run.json")) as f:
            f32_record = json.load(f)
        memory, f32_memory = record["layout"]["memory_bytes_rank0"], f32_record["layout"]["memory_bytes_rank0"]
        self.assertEqual(memory["gradients"] * 2, f32_memory["gradients"])
        self.assertLess(memory["activations"], 0.6 * f32_memory["activations"])


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
