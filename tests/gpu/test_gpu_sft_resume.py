#!/usr/bin/python3
"""loom-sft with train.device=cuda on a small real store (Brown, a 1k BPE tokenizer):

* 20 steps uninterrupted, and 10 steps + a resume for 10 more from the step-10 checkpoint
  (saved asynchronously through pinned host buffers), give bit-identical final weights;
* the step-20 loss is within 1e-3 relative of the same run with train.device=cpu;
* the same with train.precision=bf16 (bf16 weights, activations and gradients over f32
  masters): bit-exact resume, and the step-20 loss within 1e-2 of the CPU's bf16 run and of
  the f32 run.

Without a GPU it prints "gpu_sft_resume: skipped: <reason>" and exits 77 (CTest: skipped).

Usage: test_gpu_sft_resume.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import ctypes
import os
import shutil
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import h5_tensors, metrics, prepare_brown, run, tiny_sft  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/gpu-sft-resume"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-1k.json")


def gpu_unavailable():
    """Why CUDA cannot run here ("" when a device is usable), asked of the CUDA runtime."""
    names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "/usr/local/cuda/lib64/libcudart.so"]
    for name in names:
        try:
            cudart = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        code = cudart.cudaGetDeviceCount(ctypes.byref(count))
        if code != 0:
            cudart.cudaGetErrorString.restype = ctypes.c_char_p
            return "cudaGetDeviceCount: " + cudart.cudaGetErrorString(code).decode()
        return "" if count.value > 0 else "no CUDA device"
    return "no CUDA runtime library (libcudart) found"


def step_loss(run_dir, step):
    """The loss logged for `step` (the last line for it: a resumed run logs it again)."""
    return [r for r in metrics(run_dir) if r.get("step") == step and "loss" in r][-1]["loss"]


class GpuSftResume(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(WORK, exist_ok=True)
        shutil.rmtree(os.path.join(WORK, "runs"), ignore_errors=True)
        if not os.path.exists(os.path.join(WORK, "brown", "val.h5")):
            prepare_brown(BIN, WORK, TOKENIZER, 1024)

    def sft(self, run_dir, *extra):
        return tiny_sft(BIN, WORK, TOKENIZER, run_dir, "checkpoint.every=10", "checkpoint.keep_last=5", *extra)

    def resumed_run(self, name, *extra):
        """20 steps on the GPU; then again from the step-10 checkpoint, which must end in the
        same bits. As the CPU resume tests do: the same command twice, the second after
        removing the final checkpoint and model, so it resumes with the same LR schedule.
        Returns the step-20 loss."""
        gpu = f"{WORK}/runs/{name}"
        args = self.sft(gpu, "train.device=cuda", "train.max_steps=20", *extra)
        proc = run(*args)
        self.assertIn("loom-sft: rank 0 on GPU", proc.stderr)
        whole = h5_tensors(os.path.join(gpu, "model.h5"))
        whole_loss = step_loss(gpu, 20)
        shutil.rmtree(os.path.join(gpu, "checkpoints", "step-00000020"))
        os.remove(os.path.join(gpu, "model.h5"))
        proc = run(*args)
        self.assertIn("loom-sft: resumed from", proc.stderr)
        again = h5_tensors(os.path.join(gpu, "model.h5"))
        self.assertEqual(sorted(whole), sorted(again))
        self.assertGreater(len(whole), 10)
        for key, tensor in whole.items():
            self.assertTrue(np.array_equal(tensor, again[key]), f"{name}: {key} differs after the resume")
        self.assertEqual(step_loss(gpu, 20), whole_loss)
        return whole_loss

    def cpu_loss(self, name, *extra):
        run_dir = f"{WORK}/runs/{name}"
        run(*self.sft(run_dir, "train.device=cpu", "train.max_steps=20", *extra))
        return step_loss(run_dir, 20)

    def test_resume_is_bit_exact_and_matches_cpu(self):
        got, want = self.resumed_run("cuda"), self.cpu_loss("cpu")
        self.assertLessEqual(abs(got - want), 1e-3 * abs(want), f"step 20 loss: cpu {want}, cuda {got}")

    def test_bf16_resume_is_bit_exact_and_matches_cpu_bf16(self):
        bf16 = ["train.precision=bf16"]
        got, want = self.resumed_run("cuda-bf16", *bf16), self.cpu_loss("cpu-bf16", *bf16)
        self.assertLessEqual(abs(got - want), 1e-2 * abs(want), f"step 20 bf16 loss: cpu {want}, cuda {got}")
        f32 = self.cpu_loss("cpu-f32")
        self.assertLessEqual(abs(got - f32), 1e-2 * abs(f32), f"step 20 loss: bf16 cuda {got}, f32 cpu {f32}")


if __name__ == "__main__":
    reason = gpu_unavailable()
    if reason:
        print(f"gpu_sft_resume: skipped: {reason}")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0]])
