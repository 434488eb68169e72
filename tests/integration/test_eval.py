#!/usr/bin/python3
"""loom-eval end to end with the real executables, on a tiny model loom trained on Brown.

Checks:
- a multiple-choice task with known answers (every choice the same text, so the tie goes to
  the first choice: gold 0 scores 1, gold 1 scores 0) gives exactly acc = 0.75;
- results.json's task section is identical for batch sizes 1, 4 and 16 and for 1, 2 and 4
  ranks (dp), and within 1e-5 relative under tp 2 and pp 2;
- an evaluation stopped by SIGTERM (exit 75) or killed by SIGKILL mid-way resumes from its
  journal — with another rank count — and gives the same results as an uninterrupted run;
- steps=all writes one result set per committed checkpoint, each naming its step;
- `loom-eval compare` prints the table, plots the steps (PNG) and gates with exit 1 on a
  regression past the threshold, 0 within it;
- a malformed task file or JSONL line fails with exit 2 and a message naming file and line.

Usage: test_eval.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import MPI_FLAGS, prepare_brown, run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/integration-eval"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-1k.json")
MODEL = ["model.d_model=64", "model.d_ff=0", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2",
         "model.max_seq_len=64"]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def tasks_of(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)["tasks"]


def close(a, b, rel=1e-5):
    """Task sections equal up to `rel` in every metric value."""
    if set(a) != set(b):
        return False
    for name in a:
        for metric, value in a[name]["metrics"].items():
            other = b[name]["metrics"][metric]["value"]
            if abs(value["value"] - other) > rel * abs(other) + 1e-9:
                return False
    return True


class Eval(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(os.path.join(WORK, "runs"), ignore_errors=True)
        shutil.rmtree(os.path.join(WORK, "eval"), ignore_errors=True)
        os.makedirs(WORK, exist_ok=True)
        if not os.path.exists(TOKENIZER):
            prepare_brown(BIN, WORK, TOKENIZER, 1024)
        cls.run_dir = f"{WORK}/runs/brown"
        run(f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={cls.run_dir}",
            f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/brown/train.h5", f"data.val={WORK}/brown/val.h5",
            "data.seq_len=64", "train.batch_size=8", "train.micro_batch_size=0", "train.max_steps=20",
            "train.warmup_steps=2",
            "train.max_time=0", "eval.every=0", "eval.batches=2", "checkpoint.every=10", "train.threads=1", *MODEL)
        cls.model = f"{cls.run_dir}/model.h5"
        mc = "".join(json.dumps({"prompt": f"Question {i}:", "choices": [" yes", " yes", " yes"],
                                 "gold": 0 if i < 6 else 1}) + "\n" for i in range(8))
        write(f"{WORK}/tasks/known.jsonl", mc)
        cls.known = write(f"{WORK}/tasks/known.yaml",
                          f"task: known\ntype: multiple_choice\nsource: {WORK}/tasks/known.jsonl\n"
                          "prompt: \"{{prompt}}\"\nchoices: choices\ngold: gold\n")
        cls.ppl = write(f"{WORK}/tasks/ppl.yaml",
                        "task: brown-ppl\ntype: perplexity\nsource: builtin:brown-heldout\nlimit: 2\n")
        cls.mc = write(f"{WORK}/tasks/mc.yaml",
                       "task: wordnet-mc\ntype: multiple_choice\nsource: builtin:wordnet-definition-mc\n"
                       "limit: 12\nnum_fewshot: 1\nchoices: choices\ngold: gold\n")
        cls.gen = write(f"{WORK}/tasks/gen.yaml",
                        "task: arith\ntype: generate_until\nsource: builtin:arithmetic\nlimit: 12\n"
                        "until: [\"\\n\"]\nmax_new_tokens: 4\nregex: \"(-?\\\\d+)\"\nnormalize: [strip]\n")
        # A reward model (2 steps from the same weights) and a reward task whose baseline is the
        # model itself: identical responses, so every comparison ties and win_rate is exactly 0.5.
        run(f"{BIN}/loom-prep", "wordnet-pairs", "--tokenizer", TOKENIZER, "--out", f"{WORK}/pairs")
        cls.rm = f"{WORK}/runs/rm"
        run(f"{BIN}/loom-rm", "--config", "configs/tiny-wordnet-rm.yaml", f"run_dir={cls.rm}",
            f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/pairs/train.h5", f"data.val={WORK}/pairs/val.h5",
            f"train.init_from={cls.model}", "train.max_steps=2", "train.batch_size=4", "train.micro_batch_size=4",
            "data.seq_len=48", "eval.every=0", "train.max_time=0", "train.threads=1", *MODEL)
        cls.reward = write(f"{WORK}/tasks/reward.yaml",
                           "task: reward\ntype: reward\nsource: builtin:wordnet-definition-mc\nlimit: 6\ntarget: \"\"\n"
                           f"max_new_tokens: 6\nuntil: [\"\\n\"]\nreward_model: {cls.rm}/model.h5\n"
                           f"baseline_model: {cls.model}\n")
        cls.tasks = f"tasks=[{cls.known}, {cls.ppl}, {cls.mc}, {cls.gen}, {cls.reward}]"
        cls.reference = f"{WORK}/eval/reference"
        run(f"{BIN}/loom-eval", "--model", cls.model, cls.tasks, "--out", cls.reference, "batch_size=16",
            "threads=1")

    def eval(self, out, *extra, ranks=1, expect=0):
        args = [f"{BIN}/loom-eval", "--model", self.model, self.tasks, "--out", out, "threads=1", *extra]
        if ranks > 1:
            args = ["mpirun", *MPI_FLAGS, str(ranks), *args]
        return run(*args, expect=expect, timeout=600)

    def test_known_answers_score_exactly(self):
        known = tasks_of(self.reference)["known"]
        self.assertEqual(known["samples"], 8)
        self.assertEqual(known["metrics"]["acc"]["value"], 0.75)
        self.assertEqual(known["metrics"]["acc_norm"]["value"], 0.75)
        with open(f"{self.reference}/samples/known.jsonl") as f:
            samples = [json.loads(line) for line in f]
        self.assertEqual([s["response"] for s in samples], [0] * 8)
        self.assertEqual([s["scores"]["acc"] for s in samples], [1.0] * 6 + [0.0] * 2)
        tasks = tasks_of(self.reference)
        self.assertEqual(tasks["reward"]["metrics"]["win_rate"]["value"], 0.5)
        self.assertEqual(tasks["reward"]["metrics"]["reward"]["value"],
                         tasks["reward"]["metrics"]["baseline_reward"]["value"])
        self.assertGreater(tasks["brown-ppl"]["metrics"]["word_perplexity"]["value"], 1.0)
        self.assertIsNotNone(tasks["brown-ppl"]["metrics"]["bits_per_byte"]["stderr"])

    def test_results_do_not_depend_on_batch_size_or_rank_count(self):
        want = tasks_of(self.reference)
        for batch in (1, 4):
            out = f"{WORK}/eval/batch{batch}"
            self.eval(out, f"batch_size={batch}")
            self.assertEqual(tasks_of(out), want, f"batch size {batch}")
        for ranks in (2, 4):
            out = f"{WORK}/eval/ranks{ranks}"
            self.eval(out, "batch_size=4", ranks=ranks)
            self.assertEqual(tasks_of(out), want, f"{ranks} ranks")
        for layout in ("parallel.tp=2", "parallel.pp=2"):
            out = f"{WORK}/eval/{layout[9:]}"
            self.eval(out, "batch_size=4", layout, ranks=2)
            self.assertTrue(close(tasks_of(out), want), f"{layout}: {tasks_of(out)} vs {want}")

    def wait_for_journal(self, out, records):
        """Polls the journal files until they hold at least `records` result lines."""
        deadline = time.time() + 120
        while time.time() < deadline:
            lines = 0
            for name in os.listdir(f"{out}/journal") if os.path.isdir(f"{out}/journal") else []:
                with open(f"{out}/journal/{name}") as f:
                    lines += max(0, sum(1 for _ in f) - 1)
            if lines >= records:
                return lines
            time.sleep(0.05)
        self.fail(f"the journal in {out} never reached {records} records")

    def test_resume_after_sigterm_and_sigkill_with_another_rank_count(self):
        want = tasks_of(self.reference)
        for sig, ranks, expect in ((signal.SIGTERM, 2, None), (signal.SIGKILL, 1, -signal.SIGKILL)):
            out = f"{WORK}/eval/killed-{sig.name}"
            shutil.rmtree(out, ignore_errors=True)
            args = [f"{BIN}/loom-eval", "--model", self.model, self.tasks, "--out", out, "threads=1",
                    "batch_size=1", "debug.batch_delay=0.05"]
            if ranks > 1:
                args = ["mpirun", *MPI_FLAGS, str(ranks), *args]
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.wait_for_journal(out, 10)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
            if expect is not None:
                self.assertEqual(proc.returncode, expect, err)
            else:
                self.assertNotEqual(proc.returncode, 0, err)
                self.assertIn("stopped by SIGTERM", err)
            self.assertFalse(os.path.exists(f"{out}/results.json"))
            resumed = self.eval(out, "batch_size=4", ranks=3 - ranks)
            self.assertIn("requests from the journal", resumed.stdout)
            self.assertEqual(tasks_of(out), want, f"resumed after {sig.name}")

    def test_every_committed_step_gets_a_result_set(self):
        out = f"{WORK}/eval/steps"
        run(f"{BIN}/loom-eval", "--model", self.run_dir, "steps=all", self.tasks, "--out", out, "threads=1")
        steps = sorted(os.listdir(out))
        self.assertEqual(steps, ["step-00000010", "step-00000020"])
        for name in steps:
            with open(f"{out}/{name}/results.json") as f:
                results = json.load(f)
            self.assertEqual(results["model"]["step"], int(name[5:]))
            self.assertEqual(results["model"]["kind"], "checkpoint")
            for key in ("git_commit", "date", "layout"):
                self.assertIn(key, results["run"])
        # The final checkpoint holds the weights model.h5 was written from.
        self.assertEqual(tasks_of(f"{out}/step-00000020"), tasks_of(self.reference))

    def test_compare_table_plot_and_gate(self):
        out = f"{WORK}/eval/steps"
        if not os.path.exists(f"{out}/step-00000020/results.json"):
            self.test_every_committed_step_gets_a_result_set()
        a, b = f"{out}/step-00000010/results.json", f"{out}/step-00000020/results.json"
        proc = run(f"{BIN}/loom-eval", "compare", a, b, "--plot", f"{WORK}/eval/steps.png")
        self.assertIn("brown-ppl", proc.stdout)
        with open(f"{WORK}/eval/steps.png", "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # Step 10 → 20 lowers perplexity; read backwards (20 as the baseline) it is a regression.
        gate = write(f"{WORK}/eval/gate.yaml", "metrics:\n  brown-ppl/word_perplexity: {max_regression: 0.1%}\n")
        run(f"{BIN}/loom-eval", "compare", a, b, "--gate", gate, expect=0)
        proc = run(f"{BIN}/loom-eval", "compare", b, a, "--gate", gate, expect=1)
        self.assertIn("word_perplexity", proc.stdout + proc.stderr)

    def test_malformed_inputs_name_file_and_line(self):
        bad_yaml = write(f"{WORK}/tasks/bad.yaml", "task: bad\ntype: multiple_choice\nsource: x.jsonl\nnum_fewshots: 2\n")
        proc = run(f"{BIN}/loom-eval", "--model", self.model, f"tasks=[{bad_yaml}]", "--out", f"{WORK}/eval/bad",
                   expect=2)
        self.assertIn(f"{bad_yaml}:4", proc.stderr)
        self.assertIn("num_fewshot", proc.stderr)
        write(f"{WORK}/tasks/bad.jsonl", json.dumps({"prompt": "a", "choices": [" x"], "gold": 0}) + "\n{not json\n")
        bad_data = write(f"{WORK}/tasks/bad-data.yaml",
                         f"task: bad-data\ntype: multiple_choice\nsource: {WORK}/tasks/bad.jsonl\n")
        proc = run(f"{BIN}/loom-eval", "--model", self.model, f"tasks=[{bad_data}]", "--out", f"{WORK}/eval/bad",
                   expect=2)
        self.assertIn(f"{WORK}/tasks/bad.jsonl:2", proc.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
