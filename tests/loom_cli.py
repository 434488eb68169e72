"""Helpers the Python end-to-end tests share: run a loom executable and check its exit code,
read a run's metrics and the tensors of an HDF5 file, prepare a small BPE tokenizer plus the Brown token stores, and the
tiny model the distributed tests train (4 layers, d_model 64, sequences of 64, batch 8 in
micro-batches of 2, so every dp x tp x pp layout up to 8 ranks fits).

Imported by tests/integration/*.py and tests/dist/*.py (they add tests/ to sys.path).
"""
import json
import os
import subprocess

MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "-np"]

TINY = ["model.d_model=64", "model.d_ff=0", "model.n_layers=4", "model.n_heads=4", "model.max_seq_len=64",
        "data.seq_len=64", "train.batch_size=8", "train.micro_batch_size=2", "eval.every=0", "eval.batches=2",
        "eval.at_start=false", "train.log_every=1", "train.max_time=0", "train.threads=1"]


def tiny_sft(bin_dir, work, tokenizer, run_dir, *extra):
    """loom-sft on the Brown stores of prepare_brown(work) with the TINY model, plus `extra`."""
    return [f"{bin_dir}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={run_dir}",
            f"data.tokenizer={tokenizer}", f"data.train={work}/brown/train.h5", f"data.val={work}/brown/val.h5",
            *TINY, *extra]


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


def train_losses(run_dir):
    """The loss of every training line of the run's metrics.jsonl, in order."""
    return [r["loss"] for r in metrics(run_dir) if "loss" in r]


def h5_tensors(path):
    """Every dataset of an HDF5 file (model.h5, a checkpoint shard) as {name: numpy array}."""
    import h5py  # only the tests that read HDF5 need it
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def prepare_brown(bin_dir, work, tokenizer, vocab_size):
    """A BPE tokenizer of vocab_size trained on Brown, and WORK/brown/{train,val}.h5."""
    run(f"{bin_dir}/loom-prep", "train-tokenizer", "--corpus", "brown", "--vocab-size", str(vocab_size),
        "--out", tokenizer)
    run(f"{bin_dir}/loom-prep", "brown", "--tokenizer", tokenizer, "--out", f"{work}/brown")
