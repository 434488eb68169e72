#!/usr/bin/python3
"""LoRA fine-tuning end to end: loom-prep (tokenizer, Brown, WordNet) → a short loom-sft
pre-training → loom-sft on WordNet definitions with lora.rank=8 from those weights.

Checks: the training and held-out loss fall; model.h5 is a plain model (the adapters are
merged, no lora entries) whose untargeted tensors (embeddings, norms) are bit-identical to
the starting weights while the targeted ones moved; resuming a LoRA run from its step-10
checkpoint ends bit-identical to the uninterrupted run; a bad lora.targets fails with exit
code 2 naming the valid targets; `loom-ckpt export` takes the merged model.h5 and refuses a
checkpoint's unmerged adapters.

Usage: test_lora_sft.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import glob
import os
import shutil
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import metrics, prepare_brown, run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/integration-lora"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-1k.json")

MODEL = ["model.d_model=64", "model.d_ff=0", "train.micro_batch_size=0", "model.n_layers=2", "model.n_heads=4",
         "model.n_kv_heads=2", "model.max_seq_len=64"]
TARGETS = ["attn.qkv", "attn.out", "mlp.gate", "mlp.up", "mlp.down"]
LORA = ["lora.rank=8", "lora.alpha=16", "lora.dropout=0.05", "lora.targets=" + ", ".join(TARGETS)]


def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = np.array(obj)
        f.visititems(visit)
    return out


class LoraSft(unittest.TestCase):
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
            "train.max_time=0", "eval.every=0", "eval.batches=2", "checkpoint.at_end=false", *MODEL)
        cls.sft_args = ["--config", "configs/tiny-wordnet-sft.yaml", f"data.tokenizer={TOKENIZER}",
                        f"data.train={WORK}/wordnet/train.h5", f"data.val={WORK}/wordnet/val.h5",
                        f"train.init_from={cls.pretrain}/model.h5", "data.seq_len=48", "train.batch_size=16",
                        "train.warmup_steps=5", "train.max_time=0", "train.lr=5e-3", "train.min_lr=5e-4",
                        "eval.batches=4", "train.log_every=5", *MODEL, *LORA]
        cls.sft = f"{WORK}/runs/lora"
        run(f"{BIN}/loom-sft", *cls.sft_args, f"run_dir={cls.sft}", "train.max_steps=60", "eval.every=30",
            "checkpoint.every=10")

    def test_loss_falls(self):
        lines = metrics(self.sft)
        train = [m["loss"] for m in lines if "loss" in m]
        val = [(m["step"], m["val_loss"]) for m in lines if "val_loss" in m]
        self.assertEqual(val[0][0], 0)
        self.assertLess(val[-1][1], val[0][1] - 0.05, f"validation {val}")
        # Logged every 5 steps over 60 (13 lines): single batches are noisy, so compare the
        # first and last four.
        self.assertLess(np.mean(train[-4:]), np.mean(train[:4]) - 0.03, f"training {train}")

    def test_export_is_a_merged_plain_model_with_the_base_frozen(self):
        before = tensors(f"{self.pretrain}/model.h5")
        after = tensors(f"{self.sft}/model.h5")
        self.assertFalse([k for k in after if "lora" in k])
        self.assertEqual(sorted(before), sorted(after))
        moved = [k for k in after if not np.array_equal(before[k], after[k])]
        self.assertTrue(moved)
        for name in moved:
            self.assertTrue(any(name.endswith(t + ".weight") for t in TARGETS), name)
        self.assertEqual(len(moved), 2 * len(TARGETS))  # every adapted weight of both layers

    def test_resume_from_a_lora_checkpoint_is_bit_exact(self):
        straight = f"{WORK}/runs/lora-20"
        run(f"{BIN}/loom-sft", *self.sft_args, f"run_dir={straight}", "train.max_steps=20", "eval.every=0",
            "checkpoint.every=10")
        step10 = sorted(glob.glob(f"{straight}/checkpoints/*10"))
        self.assertEqual(len(step10), 1, glob.glob(f"{straight}/checkpoints/*"))
        resumed = f"{WORK}/runs/lora-resumed"
        run(f"{BIN}/loom-sft", *self.sft_args, f"run_dir={resumed}", "train.max_steps=20", "eval.every=0",
            f"train.resume={step10[0]}")
        a, b = tensors(f"{straight}/model.h5"), tensors(f"{resumed}/model.h5")
        for name in a:
            self.assertTrue(np.array_equal(a[name], b[name]), name)

    def test_export_takes_the_merged_model_and_refuses_a_bare_checkpoint(self):
        run(f"{BIN}/loom-ckpt", "export", "--from", f"{self.sft}/model.h5", "--out", f"{WORK}/runs/lora-hf")
        self.assertTrue(os.path.exists(f"{WORK}/runs/lora-hf/model.safetensors"))
        last = sorted(glob.glob(f"{self.sft}/checkpoints/step-*"))[-1]
        proc = run(f"{BIN}/loom-ckpt", "export", "--from", last, "--out", f"{WORK}/runs/lora-hf-ckpt", expect=1)
        self.assertIn("LoRA adapters", proc.stderr)

    def test_bad_target_names_the_valid_ones(self):
        proc = run(f"{BIN}/loom-sft", *self.sft_args, f"run_dir={WORK}/runs/bad", "lora.targets=attn.qkv,mlp.fc",
                   expect=2)
        self.assertIn("mlp.fc", proc.stderr)
        self.assertIn("attn.qkv, attn.out, mlp.gate, mlp.up, mlp.down", proc.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
