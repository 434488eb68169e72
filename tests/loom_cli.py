"""Helpers the Python end-to-end tests share: run a loom executable and check its exit code,
read a run's metrics, and prepare a small BPE tokenizer plus the Brown token stores.

Imported by tests/integration/*.py and tests/dist/*.py (they add tests/ to sys.path).
"""
import json
import os
import subprocess


def run(*args, expect=0, timeout=240):
    """Runs a command; raises with its whole output unless it exits with `expect`."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != expect:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode} (expected {expect})\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def metrics(run_dir):
    """The run's metrics.jsonl, one dict per line."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def prepare_brown(bin_dir, work, tokenizer, vocab_size):
    """A BPE tokenizer of vocab_size trained on Brown, and WORK/brown/{train,val}.h5."""
    run(f"{bin_dir}/loom-prep", "train-tokenizer", "--corpus", "brown", "--vocab-size", str(vocab_size),
        "--out", tokenizer)
    run(f"{bin_dir}/loom-prep", "brown", "--tokenizer", tokenizer, "--out", f"{work}/brown")
