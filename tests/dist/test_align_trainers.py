#!/usr/bin/python3
"""The alignment trainers (loom-rm, loom-dpo, loom-grpo, loom-ppo) end to end: parallel
layouts against one process, bit-exact resume, and their configuration errors.

Setup (once): a 512-token BPE tokenizer on Brown, the WordNet preference store, the
arithmetic prompt stores (+ their SFT completions), a tiny Llama (4 layers, d_model 64)
trained by loom-sft on the arithmetic completions as every trainer's train.init_from (the
preference runs use the same weights: the shape is the same), and a short loom-rm run whose
model.h5 is the reward model of the PPO runs with rollout.reward=model.

Layouts. Each trainer runs 3 steps in one process and under mpirun in dp2, tp2, pp2 and one
4-rank layout; PPO also with the reward model (one process and dp2 x tp2). Every field of
every training line (loss, accuracy, rewards, kl, grad_norm, ...; not the timings) must
agree with the single process within |a - b| <= ATOL + RTOL * |a|. Only the f32 summation
order differs between layouts (GEMMs over C/tp, all-reduces over ranks, sums over
micro-batches): about 1e-7 relative per operation, a few 1e-6 after 3 AdamW steps; RTOL =
1e-4 leaves margin while a lost or doubled gradient share (a factor of 2 somewhere) is far
outside it. ATOL = 1e-5 covers fields that are differences of nearly equal quantities
(DPO's rewards are beta x (sum log p - sum log p_ref); the k1/k3 KLs and approx_kl compare
per-token log-probs of policy and reference; PPO's value loss starts near 0): their rounding
is relative to the per-token log-probs (|log p| up to ~10, so ~1e-6 after 3 steps; worst
seen ~2e-6, GRPO's kl under tp2), not to the small result. The largest share of its
tolerance that a field used is printed per layout (at most ~16%, GRPO's kl under tp2).
Validation lines of RM and DPO (deterministic forwards) are held to the same. The lr is
raised to 1e-3 with no warmup so that steps 2-3 differ visibly from step 1 (an update
applied wrongly would show there, not only in the grad_norm of step 1).
GRPO and PPO sample their completions from the policy's logits; step 1 samples from
identical weights, so its rollout statistics (completion_length, exact_match, format,
tokens and the verifier's reward) must be EQUAL: the sampler is a counter-based function of
(seed, step, prompt, sample) and sums of the verifier's rewards are exact in f64. The
reward model's scores are f32 forwards, so its reward is only close. Later steps sample
from weights that differ by rounding and are held to the tolerance. PPO under dp2 is the
regression test for PPO mini-batches that were made of each dp rank's first rows, so their
composition (and the whole run) changed with the number of dp ranks.

Resume. Each trainer in one process, and PPO (two trained models, the adaptive KL
coefficient as trainer state) also under mpirun tp2: run A has max_steps=6 and
checkpoint.every=3; then its step-6 checkpoint and model.h5 (critic.h5) are deleted and the
same command runs again. It must report that it resumed from step 3, write tensors that are
bit-identical to A's (compared with h5py: the files themselves carry times and so differ),
and rewrite metrics.jsonl's lines of steps 4-6 exactly as A wrote them, timing fields
aside.

bf16. Each trainer also runs 3 steps in one process with train.precision=bf16 (bf16 weights,
activations and gradients over f32 masters; the CPU backend's bf16 storage), PPO also under
tp2. Every number is finite, the runs change the model, and RM's and DPO's step-1 loss (the
same weights as the f32 run, data in the same order) is within 1% of the f32 one, their
gradient norm within 25% (a lost or doubled share would be 50% or more). The gradient norm is
ill-conditioned here: the gradient is the difference of the chosen and the rejected sequence's
gradients, which mostly cancel. Rounding only the weights to bf16 (arithmetic still f32) moves
DPO's step-1 norm by 3% (71.6 -> 69.5); with bf16 activations and gradients it is 6% off in the
Release build and 11% in the sanitizer build (whose SFT initial model differs), 3% and 1.5% for
RM. The language-model loss's gradient, without that cancellation, is within 0.5% in bf16
(test_mixed_precision).

Errors: loom-dpo on a prompt store exits 2 naming data.train and both kinds; loom-grpo with
grpo.beta > 0 and neither train.init_from nor rollout.reference exits 2 naming grpo.beta.

Usage: test_align_trainers.py BUILD_DIR WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import json
import os
import shutil
import sys
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import MPI_FLAGS, TINY, h5_tensors, metrics, run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/dist-align"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-512.json")
SFT_MODEL = os.path.join(WORK, "sft", "model.h5")
REWARD_MODEL = os.path.join(WORK, "reward-model", "model.h5")
MPI = [MPIEXEC, *MPI_FLAGS]

STEPS = 3
RTOL = 1e-4
ATOL = 1e-5
# Fields that measure time, not arithmetic.
TIMING = {"elapsed_s", "step_s", "tokens_per_s", "generate_tokens_per_s", "comm_fraction", "checkpoint_wait_s",
          "save_stall_s", "save_write_s", "save_bytes"}
# Step 1's rollout statistics: the same samples in every layout.
ROLLOUT_EXACT = ("completion_length", "exact_match", "format", "tokens")

PAIRS = [f"data.train={WORK}/pairs/train.h5", f"data.val={WORK}/pairs/val.h5"]
ARITH = [f"data.train={WORK}/arith/train.h5", f"data.val={WORK}/arith/val.h5", "data.seq_len=32"]
FAST = ["train.lr=1e-3", "train.min_lr=1e-3", "train.warmup_steps=0"]
TRAINERS = {
    "rm": ("tiny-wordnet-rm.yaml", PAIRS),
    "dpo": ("tiny-wordnet-dpo.yaml", PAIRS),
    "grpo": ("tiny-arith-grpo.yaml", ARITH + ["train.batch_size=4", "grpo.group_size=4", "rollout.eval_prompts=16"]),
    "ppo": ("tiny-arith-ppo.yaml", ARITH + ["rollout.eval_prompts=16"]),
}
WITH_REWARD_MODEL = ["rollout.reward=model", f"rollout.reward_model={REWARD_MODEL}"]
# (trainer, name, (dp, tp, pp), extra settings): every trainer in dp2, tp2, pp2 and 4 ranks.
LAYOUT_RUNS = [
    ("rm", "dp2", (2, 1, 1), []), ("rm", "tp2", (1, 2, 1), []), ("rm", "pp2", (1, 1, 2), []),
    ("rm", "dp2_tp2", (2, 2, 1), []),
    ("dpo", "dp2", (2, 1, 1), []), ("dpo", "tp2", (1, 2, 1), []), ("dpo", "pp2", (1, 1, 2), []),
    ("dpo", "tp2_pp2", (1, 2, 2), []),
    ("grpo", "dp2", (2, 1, 1), []), ("grpo", "tp2", (1, 2, 1), []), ("grpo", "pp2", (1, 1, 2), []),
    ("grpo", "dp2_pp2", (2, 1, 2), []),
    ("ppo", "dp2", (2, 1, 1), []), ("ppo", "tp2", (1, 2, 1), []), ("ppo", "pp2", (1, 1, 2), []),
    ("ppo", "tp2_pp2", (1, 2, 2), []),
    ("ppo", "rm_dp2_tp2", (2, 2, 1), WITH_REWARD_MODEL),
]
BF16 = ["train.precision=bf16"]
BF16_RUNS = [(trainer, "bf16", None, BF16) for trainer in TRAINERS] + [("ppo", "bf16_tp2", (1, 2, 1), BF16)]


def trainer_args(trainer, run_dir, *extra):
    config, data = TRAINERS[trainer]
    return [f"{BIN}/loom-{trainer}", "--config", f"configs/{config}", f"run_dir={run_dir}",
            f"data.tokenizer={TOKENIZER}", f"train.init_from={SFT_MODEL}", *TINY, *data, *FAST, *extra]


def command(trainer, run_dir, layout, *extra):
    """The trainer in layout (dp, tp, pp); None or one rank runs without mpirun."""
    dp, tp, pp = layout or (1, 1, 1)
    args = trainer_args(trainer, run_dir, f"parallel.tp={tp}", f"parallel.pp={pp}", *extra)
    return args if dp * tp * pp == 1 else [*MPI, str(dp * tp * pp), *args]


def step_lines(run_dir):
    return [r for r in metrics(run_dir) if "loss" in r]


def val_lines(run_dir):
    return [r for r in metrics(run_dir) if any(k.startswith("val_") for k in r)]


def untimed(line):
    return {k: v for k, v in line.items() if k not in TIMING}


def prepare():
    """Tokenizer and stores (kept between runs of the test), the SFT model and the reward
    model (made again each time: a few seconds, and never stale)."""
    os.makedirs(WORK, exist_ok=True)
    if not os.path.exists(TOKENIZER):
        run(f"{BIN}/loom-prep", "train-tokenizer", "--corpus", "brown", "--vocab-size", "512", "--out", TOKENIZER)
    if not os.path.exists(f"{WORK}/pairs/val.h5"):
        run(f"{BIN}/loom-prep", "wordnet-pairs", "--tokenizer", TOKENIZER, "--out", f"{WORK}/pairs")
    if not os.path.exists(f"{WORK}/arith/sft/val.h5"):
        run(f"{BIN}/loom-prep", "arithmetic", "--tokenizer", TOKENIZER, "--out", f"{WORK}/arith", "--max-operand",
            "30", "--ops", "+,-", "--train", "400", "--val", "100", "--sft")
    # Enough steps that completions look like answers (" 42"), so rewards vary and GRPO's
    # group advantages are not all zero.
    shutil.rmtree(os.path.dirname(SFT_MODEL), ignore_errors=True)
    run(f"{BIN}/loom-sft", "--config", "configs/tiny-arith-sft.yaml", f"run_dir={os.path.dirname(SFT_MODEL)}",
        f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/arith/sft/train.h5", f"data.val={WORK}/arith/sft/val.h5",
        "train.init_from=", *TINY, "data.seq_len=32", "train.max_steps=120", "train.batch_size=16",
        "train.micro_batch_size=16", "train.lr=3e-3", "train.warmup_steps=10", "checkpoint.every=0",
        "checkpoint.at_end=false")
    shutil.rmtree(os.path.dirname(REWARD_MODEL), ignore_errors=True)
    run(*trainer_args("rm", os.path.dirname(REWARD_MODEL), "train.max_steps=10", "checkpoint.every=0",
                      "checkpoint.at_end=false"))


class AlignTrainers(unittest.TestCase):
    runs = {}

    @classmethod
    def setUpClass(cls):
        start = time.time()
        prepare()
        shutil.rmtree(os.path.join(WORK, "runs"), ignore_errors=True)
        for trainer in TRAINERS:
            cls.start(trainer, "single", None, [])
        cls.start("ppo", "rm_single", None, WITH_REWARD_MODEL)
        for trainer, name, layout, extra in LAYOUT_RUNS + BF16_RUNS:
            cls.start(trainer, name, layout, extra)
        print(f"\n  setup and {len(cls.runs)} layout runs: {time.time() - start:.1f} s", flush=True)

    @classmethod
    def start(cls, trainer, name, layout, extra):
        run_dir = f"{WORK}/runs/{trainer}/{name}"
        run(*command(trainer, run_dir, layout, f"train.max_steps={STEPS}", *extra))
        cls.runs[(trainer, name)] = run_dir

    # ---- layouts -------------------------------------------------------------------------

    def assert_close_lines(self, label, want, got, exact_fields=()):
        """Every untimed field of got's lines within tolerance of want's; returns the largest
        share of its tolerance that a float field used (for the printout)."""
        self.assertEqual([r["step"] for r in got], [r["step"] for r in want], label)
        worst = 0.0
        for a, b in zip(want, got):
            a, b = untimed(a), untimed(b)
            self.assertEqual(sorted(a), sorted(b), f"{label} step {a['step']}: other fields")
            for key, x in a.items():
                y = b[key]
                where = f"{label} step {a['step']} {key}: {y} vs one process {x}"
                if key in exact_fields or not isinstance(x, float):
                    self.assertEqual(x, y, where)
                    continue
                self.assertLessEqual(abs(x - y), ATOL + RTOL * abs(x), where)
                worst = max(worst, abs(x - y) / (ATOL + RTOL * abs(x)))
        return worst

    def compare_layout(self, trainer, name, reference="single", exact_reward=True):
        want, got = step_lines(self.runs[(trainer, reference)]), step_lines(self.runs[(trainer, name)])
        self.assertEqual([r["step"] for r in want], list(range(1, STEPS + 1)))
        label = f"{trainer} {name}"
        exact = ()
        if trainer in ("grpo", "ppo"):
            exact = ROLLOUT_EXACT + (("reward",) if exact_reward else ())
            for key in exact:
                self.assertEqual(got[0][key], want[0][key], f"{label} step 1 rollout {key}")
        worst = self.assert_close_lines(label, want[:1], got[:1], exact)
        worst = max(worst, self.assert_close_lines(label, want[1:], got[1:]))
        if trainer in ("rm", "dpo"):
            val_want, val_got = val_lines(self.runs[(trainer, reference)]), val_lines(self.runs[(trainer, name)])
            worst = max(worst, self.assert_close_lines(f"{label} validation", val_want, val_got))
        print(f"\n  {label:16} vs {reference:10}: at most {worst:.1%} of the tolerance", end="")

    def test_layouts_match_one_process(self):
        for trainer, name, _, extra in LAYOUT_RUNS:
            with self.subTest(trainer=trainer, layout=name):
                if extra == WITH_REWARD_MODEL:
                    self.compare_layout(trainer, name, "rm_single", exact_reward=False)
                else:
                    self.compare_layout(trainer, name)

    def test_runs_learn_and_sample(self):
        """The compared numbers are not trivially equal: the steps change the models, and the
        rollouts hold varied completions scored by the verifier or the reward model."""
        for trainer in TRAINERS:
            lines = step_lines(self.runs[(trainer, "single")])
            self.assertNotEqual(lines[0]["loss"], lines[-1]["loss"], trainer)
            self.assertGreater(lines[0]["grad_norm"], 0, trainer)
        for name in ("single", "rm_single"):
            first = step_lines(self.runs[("ppo", name)])[0]
            self.assertGreater(first["completion_length"], 0, name)
        verifier = step_lines(self.runs[("ppo", "single")])[0]["reward"]
        model = step_lines(self.runs[("ppo", "rm_single")])[0]["reward"]
        self.assertNotEqual(verifier, model, "the reward model's scores are not the verifier's")
        with open(os.path.join(self.runs[("ppo", "rm_single")], "run.json")) as f:
            self.assertEqual(json.load(f)["reward"], REWARD_MODEL)
        grpo = step_lines(self.runs[("grpo", "single")])
        self.assertGreater(max(abs(r["loss"]) for r in grpo), 1e-4, "every GRPO group had equal rewards")

    def test_bf16_runs_every_trainer(self):
        for trainer, name, _, _ in BF16_RUNS:
            with self.subTest(trainer=trainer, run=name):
                lines = step_lines(self.runs[(trainer, name)])
                self.assertEqual([r["step"] for r in lines], list(range(1, STEPS + 1)))
                for line in lines:
                    for key, value in untimed(line).items():
                        if isinstance(value, float):
                            self.assertTrue(np.isfinite(value), f"{trainer} {name} step {line['step']} {key}")
                self.assertNotEqual(lines[0]["loss"], lines[-1]["loss"], f"{trainer} {name}")
                f32 = step_lines(self.runs[(trainer, "single")])[0]
                if trainer in ("rm", "dpo"):
                    # DPO's step-1 loss is log 2 in both (policy = reference); its gradient is not.
                    for key, rtol in (("loss", 1e-2), ("grad_norm", 0.25)):
                        gap = abs(lines[0][key] - f32[key]) / abs(f32[key])
                        print(f"\n  {trainer} bf16 step-1 {key} {lines[0][key]:.5f} vs f32 {f32[key]:.5f}", end="")
                        self.assertLess(gap, rtol, f"{trainer}: bf16 {key} {lines[0][key]} vs f32 {f32[key]}")
                    self.assertNotEqual(lines[0]["grad_norm"], f32["grad_norm"], f"{trainer}: the bf16 path did not run")
                else:
                    self.assertGreater(lines[0]["completion_length"], 0, f"{trainer} {name}")

    # ---- resume --------------------------------------------------------------------------

    def check_resume(self, trainer, layout, *extra):
        name = "single" if layout is None else "dp{}_tp{}_pp{}".format(*layout)
        run_dir = f"{WORK}/runs/resume-{trainer}-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        args = command(trainer, run_dir, layout, "train.max_steps=6", "checkpoint.every=3", *extra)
        files = ["model.h5", "critic.h5"] if trainer == "ppo" else ["model.h5"]
        run(*args)
        first = {f: h5_tensors(os.path.join(run_dir, f)) for f in files}
        first_lines = metrics(run_dir)
        shutil.rmtree(os.path.join(run_dir, "checkpoints", "step-00000006"))
        for f in files:
            os.remove(os.path.join(run_dir, f))
        proc = run(*args)
        label = f"{trainer} {name}"
        step3 = os.path.join(run_dir, "checkpoints", "step-00000003")
        self.assertIn(f"loom-{trainer}: resumed from", proc.stderr, label)
        with open(os.path.join(run_dir, "run.json")) as f:
            self.assertEqual(json.load(f)["resumed_from"], step3, label)
        for f in files:
            again = h5_tensors(os.path.join(run_dir, f))
            self.assertEqual(sorted(again), sorted(first[f]), f"{label} {f}")
            for key, tensor in first[f].items():
                self.assertEqual(tensor.dtype, again[key].dtype, f"{label} {f} {key}")
                self.assertTrue(np.array_equal(tensor, again[key]), f"{label} {f}: {key} is not bit-identical")
        want = [untimed(r) for r in first_lines if r["step"] > 3]
        got = [untimed(r) for r in metrics(run_dir) if r["step"] > 3]
        self.assertEqual(len([r for r in got if "loss" in r]), 3, label)
        self.assertEqual(got, want, f"{label}: metrics of steps 4-6 differ")
        # The lines of steps 1-3 are the first run's (kept, not rewritten).
        self.assertEqual([r for r in metrics(run_dir) if r["step"] <= 3], [r for r in first_lines if r["step"] <= 3])
        return want

    def test_resume_is_bit_exact(self):
        for trainer in TRAINERS:
            with self.subTest(trainer=trainer):
                self.check_resume(trainer, None)

    def test_resume_ppo_under_mpirun_with_adaptive_kl(self):
        # With a KL target the coefficient moves every step: the trainer state the checkpoint
        # must carry besides both models.
        lines = self.check_resume("ppo", (1, 2, 1), "ppo.kl_target=0.01", *WITH_REWARD_MODEL)
        coefs = [r["kl_coef"] for r in lines if "loss" in r]
        self.assertEqual(len(set(coefs)), 3, coefs)

    # ---- errors --------------------------------------------------------------------------

    def expect_error(self, args, *phrases):
        proc = run(*args, expect=2)
        for phrase in phrases:
            self.assertIn(phrase, proc.stderr)
        return proc

    def test_dpo_on_a_prompt_store(self):
        run_dir = f"{WORK}/runs/errors/dpo"
        self.expect_error(trainer_args("dpo", run_dir, f"data.train={WORK}/arith/train.h5"),
                          "data.train", '"prompt"', '"preference"')
        self.assertFalse(os.path.exists(os.path.join(run_dir, "metrics.jsonl")))

    def test_grpo_kl_without_a_reference(self):
        run_dir = f"{WORK}/runs/errors/grpo"
        self.expect_error(trainer_args("grpo", run_dir, "train.init_from=", "grpo.beta=0.04"),
                          "grpo.beta", "needs a reference model")
        self.assertFalse(os.path.exists(os.path.join(run_dir, "metrics.jsonl")))


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
