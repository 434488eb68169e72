#!/usr/bin/python3
"""loom-eval's log-likelihoods and perplexity metrics against an independent PyTorch reference.

1. builds a small random Llama (grouped-query attention: 4 heads, 2 kv heads; d_model 32,
   2 layers, d_ff 64, max_seq_len 32, GPT-2's vocabulary of 50257, untied head) with the
   PyTorch model of make_reference.py and writes it as a loom whole-model weights file
   (one f32 dataset per loom parameter name, the "metadata" JSON attribute);
2. writes a multiple-choice task (real English prompts, 2-4 choices, some of several
   tokens, one prompt longer than the window so its context is cut from the left) and a
   perplexity task (texts of exactly one full window, one window plus one token, more than
   three windows, and one with non-ASCII characters), and runs loom-eval with tokenizer=gpt2;
3. tokenizes with the gpt-3-encoder package's own JavaScript (gpt2_encode.js), independent
   of loom's tokenizer, and computes in float64 from the float32 weights:
   - multiple choice: log p(choice | prompt), prompt and choice encoded separately, inputs
     (prompt + choice)[:-1] keeping their last max_seq_len tokens;
   - perplexity: s = [eos] + encode(text), windows start = 0, L, 2L, ...: inputs
     s[start:start+L], targets s[start+1:start+L+1], each window on its own;
4. checks every choice, window and document: |loom - torch| <= 1e-4 (1 + |torch|), token
   counts equal (journal records and samples), acc / acc_norm / argmax equal, and
   word_perplexity, token_perplexity and bits_per_byte in results.json within 1e-4 relative
   of the values from the torch sums with Python's own word (str.split) and UTF-8 byte counts;
5. repeats the comparison against deliberately wrong references (each window given one
   extra context token; RoPE theta 500 instead of 10000): each must report mismatches, so
   the comparison is proven able to fail.

Usage: test_eval_reference.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import unittest

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import make_reference  # noqa: E402
from loom_cli import run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/reference-eval"
TOOL = os.path.join(BUILD, "bin", "loom-eval")
ENCODER = os.path.join(HERE, "gpt2_encode.js")
EOS = 50256
RTOL = 1e-4

CONFIG = dict(family="llama", vocab_size=50257, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
              max_seq_len=32, norm_eps=1e-5, rope_theta=10000.0, rope_scaling="none", rope_factor=1.0,
              tie_embeddings=False, bias=False)
WINDOW = CONFIG["max_seq_len"]

MC_DOCS = [
    {"prompt": "The capital of France is", "choices": [" Paris", " London", " Berlin", " Madrid"], "gold": 0},
    {"prompt": "Water freezes at zero degrees", "choices": [" Celsius", " Fahrenheit"], "gold": 0},
    {"prompt": "The opposite of hot is", "choices": [" cold", " warm", " lukewarm"], "gold": 0},
    {"prompt": "A young dog is called a", "choices": [" puppy", " kitten", " calf", " foal"], "gold": 0},
    {"prompt": "The largest planet in our solar system is", "choices": [" Jupiter", " Saturn", " Mercury"],
     "gold": 1},
    {"prompt": "Plants use photosynthesis to turn sunlight into",
     "choices": [" chemical energy stored in sugars", " magnetic fields", " loud thunderous sound waves"],
     "gold": 0},
    {"prompt": "Question: Which instrument has black and white keys? Answer:",
     "choices": [" the piano", " the trumpet", " the violin"], "gold": 2},
    # Longer than the window with its choices: loom keeps the last max_seq_len inputs.
    {"prompt": ("The blacksmith heated the iron bar in the forge until it glowed orange, then carried it "
                "with heavy tongs to the workbench, where he began to strike it with"),
     "choices": [" a hammer", " an anvil", " his bare hands"], "gold": 0},
]

PARAGRAPH = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling after decades of salt and "
    "wind. Every evening the keeper climbed the spiral staircase, one hundred and twelve steps, to light the "
    "great lamp that warned ships away from the rocks below. In winter the storms were so fierce that the "
    "whole tower seemed to tremble, and the keeper would sit by the window with a cup of tea, listening to "
    "the waves crash against the stones. Nobody in the village remembered a time before the lighthouse, and "
    "the children told stories about the ghosts of sailors who had lost their way in the fog.")
NON_ASCII = "The café served crème brûlée to a naïve critic,\nwho wrote a glowing review for the Zürich paper."


def encode(texts):
    """GPT-2 token ids from the gpt-3-encoder package's JavaScript (not loom's tokenizer)."""
    path = os.path.join(WORK, "encode-input.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    proc = subprocess.run(["node", ENCODER, path], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"gpt2_encode.js failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def prefix_with_tokens(words, counts, n):
    """The shortest word prefix of the paragraph encoding to exactly n tokens."""
    for k, count in enumerate(counts):
        if count == n:
            return " ".join(words[:k + 1])
    raise AssertionError(f"no word prefix of the paragraph has exactly {n} tokens")


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_model(path, model):
    """A loom whole-model weights file, laid out as io/weights/weights.cpp writes one."""
    c = model.cfg
    config_json = {"family": c["family"], "vocab_size": c["vocab_size"], "d_model": c["d_model"],
                   "n_layers": c["n_layers"], "n_heads": c["n_heads"], "n_kv_heads": c["n_kv_heads"],
                   "d_ff": c["d_ff"], "max_seq_len": c["max_seq_len"], "norm_eps": c["norm_eps"],
                   "rope": {"theta": c["rope_theta"], "scaling": c["rope_scaling"], "factor": c["rope_factor"]},
                   "tie_embeddings": c["tie_embeddings"], "bias": c["bias"]}
    with h5py.File(path, "w") as f:
        f.attrs["metadata"] = json.dumps({"model": config_json, "head": "lm", "step": 0})
        f.attrs["format"] = "loom-weights"
        f.attrs["format_version"] = np.int32(1)
        for name, p in model.named_parameters():
            f.create_dataset(name, data=p.detach().float().numpy())


class Reference:
    """Log-likelihoods in float64 from the float32 weights, optionally deliberately wrong."""

    def __init__(self, weights32, cfg, extra_context=0):
        self.model = make_reference.Model(cfg, "lm").double()
        self.model.load_state_dict({k: torch.from_numpy(v).double() for k, v in weights32.items()})
        self.model.eval()
        self.extra_context = extra_context

    def logps(self, inputs, targets):
        """log p(targets[i] | inputs[:i+1]) for each i, over one row."""
        with torch.no_grad():
            logits = self.model(torch.tensor([inputs], dtype=torch.int64))[0]
            logp = torch.log_softmax(logits, dim=-1)
        return logp[torch.arange(len(targets)), torch.tensor(targets, dtype=torch.int64)].tolist()

    def choice(self, context, continuation):
        """(Σ logp, tokens) of the continuation; inputs cut from the left to the window."""
        full = context + continuation
        inputs, targets = full[:-1], full[1:]
        drop = max(0, len(inputs) - WINDOW)
        first = len(context) - 1  # input index whose prediction is continuation[0]
        logp = self.logps(inputs[drop:], targets[drop:])
        scored = logp[max(first, drop) - drop:]
        return math.fsum(scored), len(scored)

    def windows(self, tokens):
        """[(Σ logp, tokens)] of each window of [eos] + tokens."""
        s = [EOS] + tokens
        out = []
        for start in range(0, len(s) - 1, WINDOW):
            begin = max(0, start - self.extra_context)
            inputs = s[begin:start + WINDOW]
            targets = s[begin + 1:start + WINDOW + 1]
            logp = self.logps(inputs[:len(targets)], targets)[start - begin:]
            out.append((math.fsum(logp), len(logp)))
        return out


def close(actual, expected):
    return abs(actual - expected) <= RTOL * (1.0 + abs(expected))


def rel_close(actual, expected):
    return abs(actual - expected) <= RTOL * abs(expected)


class EvalReference(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        torch.set_num_threads(1)
        print(f"using {TOOL}")

        model = make_reference.Model(CONFIG, "lm")
        make_reference.randomise(model, torch.Generator().manual_seed(6))
        cls.weights32 = {n: p.detach().float().numpy().copy() for n, p in model.named_parameters()}
        cls.model_file = os.path.join(WORK, "model.h5")
        write_model(cls.model_file, model)

        words = PARAGRAPH.split()
        counts = [len(ids) for ids in encode([" ".join(words[:k + 1]) for k in range(len(words))])]
        # With the leading eos: one full window, and one window plus a single-token window.
        cls.texts = [prefix_with_tokens(words, counts, WINDOW), prefix_with_tokens(words, counts, WINDOW + 1),
                     PARAGRAPH, NON_ASCII, "Short text."]

        tasks = os.path.join(WORK, "tasks")
        os.makedirs(tasks)
        write_jsonl(os.path.join(tasks, "mc.jsonl"), MC_DOCS)
        write_jsonl(os.path.join(tasks, "ppl.jsonl"), [{"text": t} for t in cls.texts])
        with open(os.path.join(tasks, "mc.yaml"), "w") as f:
            f.write(f"task: mc\ntype: multiple_choice\nsource: {tasks}/mc.jsonl\nchoices: choices\ngold: gold\n")
        with open(os.path.join(tasks, "ppl.yaml"), "w") as f:
            f.write(f"task: ppl\ntype: perplexity\nsource: {tasks}/ppl.jsonl\n")

        cls.out = os.path.join(WORK, "out")
        run(TOOL, "--model", cls.model_file, "tokenizer=gpt2", f"tasks=[{tasks}/mc.yaml, {tasks}/ppl.yaml]",
            "--out", cls.out, "threads=1", timeout=240)
        with open(os.path.join(cls.out, "results.json")) as f:
            cls.results = json.load(f)["tasks"]
        cls.samples = {}
        for task in ("mc", "ppl"):
            with open(os.path.join(cls.out, "samples", task + ".jsonl")) as f:
                cls.samples[task] = {r["doc"]: r for r in map(json.loads, f)}
        cls.journal = {}
        for path in glob.glob(os.path.join(cls.out, "journal", "*.jsonl")):
            with open(path) as f:
                for line in f:
                    r = json.loads(line)
                    if "task" in r:
                        cls.journal[(r["task"], r["doc"], r["part"])] = r

        # Token ids from the JavaScript encoder, prompt and each choice separately.
        flat = [d["prompt"] for d in MC_DOCS] + [c for d in MC_DOCS for c in d["choices"]] + cls.texts
        ids = encode(flat)
        cls.prompt_ids = ids[:len(MC_DOCS)]
        ids = ids[len(MC_DOCS):]
        cls.choice_ids = []
        for d in MC_DOCS:
            cls.choice_ids.append(ids[:len(d["choices"])])
            ids = ids[len(d["choices"]):]
        cls.text_ids = ids
        assert len(cls.text_ids) == len(cls.texts)
        assert len(cls.text_ids[2]) + 1 > 3 * WINDOW, "the long text must span more than three windows"
        assert len(cls.prompt_ids[-1]) + 2 > WINDOW + 1, "the last prompt must overflow the window"

    def compare(self, reference):
        """Every mismatch between loom's outputs and the reference, as readable lines."""
        bad, worst = [], {"choice": 0.0, "window": 0.0, "document": 0.0, "metric": 0.0}

        def check(kind, label, actual, expected, relative=False):
            err = abs(actual - expected) / (abs(expected) if relative else 1.0 + abs(expected))
            worst[kind] = max(worst[kind], err)
            if not (rel_close(actual, expected) if relative else close(actual, expected)):
                bad.append(f"{label}: loom {actual!r}, reference {expected!r}")

        mc_acc, mc_acc_norm = [], []
        for i, doc in enumerate(MC_DOCS):
            sample = self.samples["mc"][i]
            sums = []
            for c, choice in enumerate(doc["choices"]):
                logp, tokens = reference.choice(self.prompt_ids[i], self.choice_ids[i][c])
                sums.append(logp)
                check("choice", f"mc doc {i} choice {c} ({choice!r}) logp", sample["scores"]["logp"][c], logp)
                record = self.journal[("mc", i, c)]
                check("choice", f"mc doc {i} choice {c} journal logp", record["logp"], logp)
                if record["tokens"] != tokens:
                    bad.append(f"mc doc {i} choice {c}: loom scored {record['tokens']} tokens, reference {tokens}")
            best = int(np.argmax(sums))
            norm = [s / len(choice.encode("utf-8")) for s, choice in zip(sums, doc["choices"])]
            best_norm = int(np.argmax(norm))
            mc_acc.append(float(best == doc["gold"]))
            mc_acc_norm.append(float(best_norm == doc["gold"]))
            if sample["response"] != best or sample["scores"]["response_norm"] != best_norm:
                bad.append(f"mc doc {i}: loom chose {sample['response']} (norm {sample['scores']['response_norm']}), "
                           f"reference {best} (norm {best_norm})")
        for name, values in (("acc", mc_acc), ("acc_norm", mc_acc_norm)):
            loom = self.results["mc"]["metrics"][name]["value"]
            if abs(loom - sum(values) / len(values)) > 1e-12:
                bad.append(f"mc {name}: loom {loom}, reference {sum(values) / len(values)}")

        total_logp, total_tokens, total_words, total_bytes = [], 0, 0, 0
        for i, text in enumerate(self.texts):
            sample = self.samples["ppl"][i]
            windows = reference.windows(self.text_ids[i])
            for part, (logp, tokens) in enumerate(windows):
                record = self.journal.get(("ppl", i, part))
                if record is None:
                    bad.append(f"ppl doc {i} window {part}: not in loom's journal")
                    continue
                check("window", f"ppl doc {i} window {part} logp", record["logp"], logp)
                if record["tokens"] != tokens:
                    bad.append(f"ppl doc {i} window {part}: loom scored {record['tokens']} tokens, reference {tokens}")
            if ("ppl", i, len(windows)) in self.journal:
                bad.append(f"ppl doc {i}: loom has more than the reference's {len(windows)} windows")
            logp = math.fsum(w[0] for w in windows)
            tokens = sum(w[1] for w in windows)
            words, nbytes = len(text.split()), len(text.encode("utf-8"))
            check("document", f"ppl doc {i} logp", sample["scores"]["logp"], logp)
            for key, value in (("tokens", tokens), ("words", words), ("bytes", nbytes)):
                if sample["scores"][key] != value:
                    bad.append(f"ppl doc {i} {key}: loom {sample['scores'][key]}, reference {value}")
            total_logp.append(logp)
            total_tokens, total_words, total_bytes = total_tokens + tokens, total_words + words, total_bytes + nbytes
        nll = -math.fsum(total_logp)
        expected = {"word_perplexity": math.exp(nll / total_words), "token_perplexity": math.exp(nll / total_tokens),
                    "bits_per_byte": nll / (total_bytes * math.log(2))}
        for name, value in expected.items():
            check("metric", f"ppl {name}", self.results["ppl"]["metrics"][name]["value"], value, relative=True)
        return bad, worst

    def test_matches_torch(self):
        bad, worst = self.compare(Reference(self.weights32, CONFIG))
        print("  max error relative to 1 + |reference|: " +
              ", ".join(f"{kind} {value:.3g}" for kind, value in worst.items() if kind != "metric") +
              f"; metrics (relative) {worst['metric']:.3g}")
        self.assertEqual(bad, [], "\n".join(bad))
        self.assertEqual(self.results["mc"]["samples"], len(MC_DOCS))
        self.assertEqual(self.results["ppl"]["samples"], len(self.texts))
        self.assertEqual(len(self.samples["mc"]), len(MC_DOCS))

    def test_wrong_window_context_is_caught(self):
        bad, _ = self.compare(Reference(self.weights32, CONFIG, extra_context=1))
        print(f"  one extra context token per window: {len(bad)} mismatches, e.g. {bad[:1]}")
        self.assertTrue(any("window 1 logp" in b for b in bad), "an extra context token went unnoticed")
        self.assertFalse(any(b.startswith("mc ") for b in bad), "multiple choice does not use windows")

    def test_wrong_rope_theta_is_caught(self):
        bad, _ = self.compare(Reference(self.weights32, dict(CONFIG, rope_theta=500.0)))
        print(f"  RoPE theta 500: {len(bad)} mismatches, e.g. {bad[:1]}")
        self.assertTrue(any(b.startswith("mc ") and "logp" in b for b in bad), "wrong RoPE unnoticed in choices")
        self.assertTrue(any("ppl doc 2 logp" in b for b in bad), "wrong RoPE unnoticed in perplexity")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
