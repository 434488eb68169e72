#!/usr/bin/python3
"""Step checkpoints under faults: corrupt files, signals, the walltime, a hung rank,
non-finite steps and unwritable or full disks, end to end with loom-sft (1, 2 or 4 ranks).

What is checked, and why:
- Corruption (2 ranks, tp2, checkpoints at steps 4, 8, 12). On copies of the run, the newest
  checkpoint gets (a) a truncated shard, (b) one flipped mantissa bit inside a tensor's data
  (byte offset from h5py's dataset.id.get_offset(); the value stays finite, so only the XXH64
  can notice), (c) no index.json, (d) the same rank's shard of step 8. train.resume=auto must
  print the problem naming the file (and for (b) the tensor), say it skips the checkpoint,
  resume from step 8 and finish with the original run's losses exactly (same layout, same
  arithmetic); loom-ckpt verify reports the same problem (exit 1) and passes step 8.
  (e) train.resume=<the corrupt dir> fails with exit 1 naming it. Each rank verifies a share
  of the shards, so these runs keep every rank's stderr in its own file (mpirun splices
  concurrent lines of several ranks otherwise).
- view.h5 (4 ranks, tp2 x pp2): h5py opens the virtual datasets; model/<name> equals the
  tensor in model.h5 exactly (both are copies of the same floats), and the AdamW moments
  exist with the model's shapes, finite and not all zero.
- Stops: SIGUSR1 to ONE rank process of a dp2 x pp2 job, the walltime (train.walltime with
  train.save_before_walltime, and $LOOM_JOB_END_TIME), SIGTERM and SIGINT to one process:
  every rank stops at the same step, exit 75 (130 for SIGINT), run.json names the cause, a
  checkpoint of exactly that step is committed, and a restart resumes from it. Nine more
  stops at scattered moments must all exit cleanly: a regression test for stop signals that
  land inside oneDNN's JIT sgemm, which runs with rsp pointing into the heap.
- Watchdog: rank 1 of 2 sleeps 120 s at step 3 with train.watchdog_timeout=4: the job ends
  with exit 86 well before the sleep would (within 40 s: the timeout plus a heartbeat period,
  timeout / 4, plus start-up) and stderr names rank 1 in "debug sleep".
- Save reports: with a save every step, every committed checkpoint has its metrics line
  (a regression test: the save that the next one finishes lost its report).
- Non-finite: one NaN-gradient batch is skipped (no rollback, exit 0); three in a row roll
  back to the last checkpoint and never train on those batches; with no checkpoint the run
  exits 65.
- I/O faults: checkpoint.dir under a regular file (ENOTDIR) and an immutable directory
  (chattr +i, where the filesystem has it): every save reports checkpoint_ok=false naming the
  path; on_error=continue trains on to exit 0, on_error=stop exits 74. A full disk (a small
  tmpfs, or a file-size limit via prlimit where mounting is not allowed): the first save fits,
  later ones fail and are reported, training finishes, and the earlier checkpoint still
  resumes with the same losses.

Usage: test_checkpoint_faults.py BUILD_DIR WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import MPI_FLAGS, metrics, prepare_brown, run, tiny_sft  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/dist-checkpoint-faults"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-512.json")
RUNS = os.path.join(WORK, "runs")
MPI = [MPIEXEC, *MPI_FLAGS]
EXIT_REQUEUE, EXIT_INTERRUPTED, EXIT_NON_FINITE, EXIT_SAVE_FAILED, EXIT_WATCHDOG = 75, 130, 65, 74, 86

COMMON = ["model.family=llama", "model.n_kv_heads=1", "model.tie_embeddings=false"]


def sft_args(run_dir, *extra):
    return tiny_sft(BIN, WORK, TOKENIZER, run_dir, *COMMON, *extra)


def mpi(ranks, args):
    return args if ranks == 1 else [*MPI, str(ranks), *args]


def run_per_rank_stderr(ranks, args, log_dir, timeout=240):
    """Runs under mpirun with each rank's stderr in log_dir/rank-R.txt; returns (exit code, [stderr by rank])."""
    shutil.rmtree(log_dir, ignore_errors=True)
    os.makedirs(log_dir)
    script = f"exec {shlex.join(args)} 2>{shlex.quote(log_dir)}/rank-$OMPI_COMM_WORLD_RANK.txt"
    proc = subprocess.run([*MPI, str(ranks), "sh", "-c", script], capture_output=True, text=True, timeout=timeout)
    logs = []
    for rank in range(ranks):
        with open(os.path.join(log_dir, f"rank-{rank}.txt")) as f:
            logs.append(f.read())
    return proc.returncode, logs


def step_lines(run_dir):
    return [r for r in metrics(run_dir) if "loss" in r]


def save_lines(run_dir):
    return [r for r in metrics(run_dir) if "checkpoint_ok" in r]


def results(run_dir):
    with open(os.path.join(run_dir, "run.json")) as f:
        return json.load(f)


def step_dir(root, step):
    return os.path.join(root, f"step-{step:08d}")


def committed_steps(root):
    return sorted(int(n[5:]) for n in os.listdir(root) if re.fullmatch(r"step-\d{8}", n))


def wait_for_steps(proc, run_dir, steps, timeout=120):
    """Until metrics.jsonl holds `steps` training lines (the stop handlers are installed by then)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"loom-sft ended early with exit {proc.returncode}")
        try:
            if len(step_lines(run_dir)) >= steps:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"{run_dir}: {steps} steps not reached in {timeout} s")


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def world_rank_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    return int(env[b"OMPI_COMM_WORLD_RANK"])


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_soon(pid, seconds=10):
    """True once pid has exited: mpirun may return while a rank is still being torn down."""
    deadline = time.time() + seconds
    while alive(pid):
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def release_leftovers():
    """What an interrupted earlier run of this file may have left: the small tmpfs still
    mounted, the immutable directory still immutable (either would stop the clean-up)."""
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for mount in mounts:
        if mount.startswith(RUNS + "/"):
            subprocess.run(["umount", mount], check=True)
    if os.path.isdir(os.path.join(RUNS, "immutable")):
        subprocess.run(["chattr", "-i", os.path.join(RUNS, "immutable")], check=True)


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        release_leftovers()
        shutil.rmtree(RUNS, ignore_errors=True)
        os.makedirs(RUNS)
        if not os.path.exists(f"{WORK}/brown/val.h5"):
            prepare_brown(BIN, WORK, TOKENIZER, 512)

    def check_committed(self, run_dir, step):
        """A complete checkpoint of exactly `step`, named by latest and by run.json."""
        root = os.path.join(run_dir, "checkpoints")
        directory = step_dir(root, step)
        with open(os.path.join(directory, "index.json")) as f:
            self.assertEqual(json.load(f)["step"], step)
        with open(os.path.join(root, "latest")) as f:
            self.assertEqual(f.read(), f"step-{step:08d}\n")
        self.assertEqual(results(run_dir)["results"]["checkpoint"], directory)
        self.assertFalse([n for n in os.listdir(root) if ".tmp-" in n])
        return directory

    # ---- corruption ------------------------------------------------------------------------

    CORRUPT_ARGS = ["parallel.tp=2", "train.max_steps=12", "checkpoint.every=4", "checkpoint.keep_last=5"]

    def corruption_base(self):
        base = os.path.join(RUNS, "corrupt-base")
        if not os.path.exists(os.path.join(base, "model.h5")):
            run(*mpi(2, sft_args(base, *self.CORRUPT_ARGS)))
        self.assertEqual(committed_steps(os.path.join(base, "checkpoints")), [4, 8, 12])
        return base

    def corrupt_copy(self, case, damage):
        """A copy of the base run whose step-12 checkpoint `damage` spoils; resumed with auto."""
        base = self.corruption_base()
        run_dir = os.path.join(RUNS, f"corrupt-{case}")
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(base, run_dir)
        newest = step_dir(os.path.join(run_dir, "checkpoints"), 12)
        expected = damage(newest)
        # loom-ckpt verify finds the same problem; the older checkpoint is fine.
        checked = run(f"{BIN}/loom-ckpt", "verify", newest, expect=1)
        self.assertTrue(all(e in checked.stdout + checked.stderr for e in expected), checked.stdout + checked.stderr)
        run(f"{BIN}/loom-ckpt", "verify", step_dir(os.path.join(run_dir, "checkpoints"), 8))
        code, logs = run_per_rank_stderr(2, sft_args(run_dir, *self.CORRUPT_ARGS), run_dir + ".logs")
        everything = "\n".join(logs)
        self.assertEqual(code, 0, everything)
        lines = everything.splitlines()
        self.assertTrue(any(line.startswith("loom: checkpoint problem: ") and all(e in line for e in expected)
                            for line in lines), f"{case}: no problem line with {expected}:\n{everything}")
        self.assertIn(f"loom: skipping {newest}: ", logs[0])
        older = step_dir(os.path.join(run_dir, "checkpoints"), 8)
        self.assertIn(f"loom-sft: resumed from {older} at step 8 (", logs[0])
        self.assertEqual(results(run_dir)["resumed_from"], older)
        # Steps 9..12 again, in the same layout from the same state: the same losses exactly.
        want = [(r["step"], r["loss"]) for r in step_lines(base)]
        self.assertEqual([(r["step"], r["loss"]) for r in step_lines(run_dir)], want)
        # The run saved step 12 again, replacing the damaged one.
        self.check_committed(run_dir, 12)
        return newest

    def test_truncated_shard(self):
        def damage(newest):
            shard = os.path.join(newest, "shard-00001.h5")
            os.truncate(shard, os.path.getsize(shard) // 2)
            return [shard, "truncated"]
        self.corrupt_copy("truncated", damage)

    def test_flipped_bit_in_tensor_data(self):
        def damage(newest):
            shard = os.path.join(newest, "shard-00000.h5")
            tensor = "model/layers.2.mlp.down.weight"
            with h5py.File(shard, "r") as f:
                dataset = f[f"{tensor}/0"]
                offset = dataset.id.get_offset()
                before = dataset[()].ravel()[5]
            self.assertIsNotNone(offset, "the piece is not stored contiguously")
            with open(shard, "r+b") as f:
                f.seek(offset + 5 * 4)  # the lowest mantissa byte of element 5 (little-endian f32)
                byte = f.read(1)[0]
                f.seek(offset + 5 * 4)
                f.write(bytes([byte ^ 0x04]))
            with h5py.File(shard, "r") as f:
                after = f[f"{tensor}/0"][()].ravel()[5]
            self.assertTrue(np.isfinite(after) and after != before and abs(after - before) < 1e-5 * abs(before))
            return [shard, f"tensor {tensor} ", "checksum"]
        self.corrupt_copy("bitflip", damage)

    def test_missing_index(self):
        def damage(newest):
            os.remove(os.path.join(newest, "index.json"))
            return [os.path.join(newest, "index.json"), "missing"]
        self.corrupt_copy("no-index", damage)

    def test_shard_of_the_previous_step(self):
        def damage(newest):
            shard = os.path.join(newest, "shard-00001.h5")
            shutil.copyfile(step_dir(os.path.dirname(newest), 8) + "/shard-00001.h5", shard)
            return [shard, "another save (step 8"]
        self.corrupt_copy("old-shard", damage)

    def test_explicit_resume_of_a_corrupt_checkpoint_fails(self):
        base = self.corruption_base()
        source = os.path.join(RUNS, "corrupt-explicit-source")
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(base, source)
        newest = step_dir(os.path.join(source, "checkpoints"), 12)
        os.truncate(os.path.join(newest, "shard-00000.h5"), 4096)
        run_dir = os.path.join(RUNS, "corrupt-explicit")
        code, logs = run_per_rank_stderr(2, sft_args(run_dir, *self.CORRUPT_ARGS, f"train.resume={newest}"),
                                         run_dir + ".logs")
        self.assertEqual(code, 1, "\n".join(logs))
        self.assertIn(f"{newest}: checkpoint does not verify", "\n".join(logs))
        self.assertIn(os.path.join(newest, "shard-00000.h5"), "\n".join(logs))
        self.assertFalse(os.path.exists(os.path.join(run_dir, "metrics.jsonl")))

    # ---- view.h5 ---------------------------------------------------------------------------

    def test_view_reads_with_h5py(self):
        run_dir = os.path.join(RUNS, "view")
        run(*mpi(4, sft_args(run_dir, "parallel.tp=2", "parallel.pp=2", "train.max_steps=6")))
        directory = self.check_committed(run_dir, 6)
        with h5py.File(os.path.join(run_dir, "model.h5"), "r") as f:
            model = {}
            f.visititems(lambda n, o: model.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        self.assertGreater(len(model), 20)
        with h5py.File(os.path.join(directory, "view.h5"), "r") as view:
            self.assertEqual(int(view.attrs["step"]), 6)
            self.assertEqual(view.attrs["format"], b"loom-checkpoint")
            self.assertEqual(json.loads(view.attrs["model_config"])["n_layers"], 4)
            for name, value in model.items():
                self.assertTrue(view[f"model/{name}"].is_virtual, name)
                np.testing.assert_array_equal(view[f"model/{name}"][()], value, err_msg=name)
                for moment in ("exp_avg", "exp_avg_sq"):
                    data = view[f"optim/{moment}/{name}"][()]
                    self.assertEqual(data.shape, value.shape, f"{moment} {name}")
                    self.assertTrue(np.isfinite(data).all(), f"{moment} {name}")
                    self.assertGreater(float(np.abs(data).max()), 0.0, f"{moment} {name}")

    # ---- stop requests ---------------------------------------------------------------------

    def test_sigusr1_to_one_rank_stops_every_rank(self):
        run_dir = os.path.join(RUNS, "sigusr1")
        args = mpi(4, sft_args(run_dir, "parallel.pp=2", "train.max_steps=300", "checkpoint.every=0"))
        with open(run_dir + ".stderr", "w") as err:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
            wait_for_steps(proc, run_dir, 10)
            ranks = {world_rank_of(pid): pid for pid in children(proc.pid)}
            self.assertEqual(sorted(ranks), [0, 1, 2, 3])
            os.kill(ranks[3], signal.SIGUSR1)
            proc.wait(timeout=120)
        with open(run_dir + ".stderr") as f:
            stderr = f.read()
        self.assertEqual(proc.returncode, EXIT_REQUEUE, stderr)
        for pid in ranks.values():
            self.assertTrue(gone_soon(pid), f"rank process {pid} still runs after mpirun returned")
        record = results(run_dir)["results"]
        self.assertEqual(record["stopped_by"], "SIGUSR1")
        self.assertEqual(record["exit_code"], EXIT_REQUEUE)
        steps = record["steps"]
        self.assertTrue(10 <= steps < 300, steps)
        self.assertEqual(step_lines(run_dir)[-1]["step"], steps)
        self.check_committed(run_dir, steps)
        self.assertTrue(save_lines(run_dir)[-1]["checkpoint_ok"])
        again = run(*args)
        self.assertIn("loom-sft: resumed from", again.stderr)
        self.assertEqual(results(run_dir)["resumed_from"], step_dir(os.path.join(run_dir, "checkpoints"), steps))
        self.assertEqual(results(run_dir)["results"]["steps"], 300)
        self.assertEqual([r["step"] for r in step_lines(run_dir)], list(range(1, 301)))

    def check_walltime_stop(self, run_dir, walltime, save_before, proc):
        self.assertEqual(proc.returncode, EXIT_REQUEUE, proc.stderr)
        record = results(run_dir)["results"]
        self.assertEqual(record["stopped_by"], "walltime")
        # It stops one step (a few ms here, more on a loaded machine) before save_before
        # seconds are left, and ends, saved, before the walltime.
        self.assertGreater(record["seconds"], walltime - save_before - 2)
        self.assertLess(record["seconds"], walltime)
        self.check_committed(run_dir, record["steps"])

    def test_walltime_checkpoints_and_requeues(self):
        run_dir = os.path.join(RUNS, "walltime")
        proc = run(*mpi(4, sft_args(run_dir, "parallel.pp=2", "train.max_steps=100000", "train.walltime=5",
                                    "train.save_before_walltime=2")), expect=EXIT_REQUEUE)
        self.check_walltime_stop(run_dir, 5, 2, proc)
        self.assertIn("exit code 75: checkpointed; requeue the job", proc.stderr)
        # The deadline can also come from the scheduler's environment (epoch seconds).
        run_dir = os.path.join(RUNS, "walltime-env")
        env = dict(os.environ, LOOM_JOB_END_TIME=str(int(time.time()) + 6))
        start = time.time()
        proc = subprocess.run(sft_args(run_dir, "train.max_steps=100000", "train.save_before_walltime=3"),
                              capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(proc.returncode, EXIT_REQUEUE, proc.stderr)
        self.assertEqual(results(run_dir)["results"]["stopped_by"], "walltime")
        self.assertLess(time.time() - start, 6)
        self.check_committed(run_dir, results(run_dir)["results"]["steps"])

    def test_sigterm_then_sigint_one_process(self):
        run_dir = os.path.join(RUNS, "sigterm")
        args = sft_args(run_dir, "train.max_steps=100000", "checkpoint.every=0")
        stops = []
        for signo, code in ((signal.SIGTERM, EXIT_REQUEUE), (signal.SIGINT, EXIT_INTERRUPTED)):
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wait_for_steps(proc, run_dir, (stops[-1] if stops else 0) + 5)
            proc.send_signal(signo)
            _, stderr = proc.communicate(timeout=60)
            self.assertEqual(proc.returncode, code, stderr)
            record = results(run_dir)
            self.assertEqual(record["results"]["stopped_by"], signal.Signals(signo).name)
            if stops:
                # The SIGINT run resumed from the SIGTERM run's checkpoint.
                self.assertIn("loom-sft: resumed from", stderr)
                self.assertEqual(record["resumed_from"], step_dir(os.path.join(run_dir, "checkpoints"), stops[-1]))
            stops.append(record["results"]["steps"])
            self.check_committed(run_dir, stops[-1])
            self.assertEqual([r["step"] for r in step_lines(run_dir)], list(range(1, stops[-1] + 1)))
        self.assertLess(stops[0], stops[1])

    def test_stop_signals_mid_step_leave_the_heap_intact(self):
        # Regression: oneDNN 2.x's JIT sgemm kernels point rsp into the heap, so a signal
        # landing inside one writes its frame over malloc's chunks; one such stop in three
        # ended in "free(): invalid pointer" or SIGSEGV instead of exit 75 (oneDNN issue
        # 4845). Nine stops at scattered moments of the GEMM-bound steps must all be clean.
        outcomes = []
        for i, signo in enumerate([signal.SIGTERM, signal.SIGUSR1, signal.SIGINT] * 3):
            run_dir = os.path.join(RUNS, f"stop-{i}")
            proc = subprocess.Popen(sft_args(run_dir, "train.max_steps=100000", "checkpoint.every=0"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wait_for_steps(proc, run_dir, 3 + i % 4)
            time.sleep(0.004 * i)
            proc.send_signal(signo)
            _, stderr = proc.communicate(timeout=60)
            expected = EXIT_INTERRUPTED if signo == signal.SIGINT else EXIT_REQUEUE
            outcomes.append((signo.name, proc.returncode, expected, stderr))
        failed = [(name, code) for name, code, expected, _ in outcomes if code != expected]
        first = next((stderr for _, code, expected, stderr in outcomes if code != expected), "")
        self.assertEqual(failed, [], f"stops that did not exit cleanly (signal, exit code); the first's stderr:\n"
                                     f"{first[-3000:]}")

    # ---- watchdog --------------------------------------------------------------------------

    def test_watchdog_ends_a_hung_rank(self):
        run_dir = os.path.join(RUNS, "watchdog")
        start = time.time()
        proc = subprocess.run(mpi(2, sft_args(run_dir, "train.max_steps=50", "debug.sleep_rank=1",
                                              "debug.sleep_at_step=3", "debug.sleep_seconds=120",
                                              "train.watchdog_timeout=4")),
                              capture_output=True, text=True, timeout=150)
        elapsed = time.time() - start
        print(f"\n  watchdog: exit {proc.returncode} after {elapsed:.1f} s", end="")
        self.assertEqual(proc.returncode, EXIT_WATCHDOG, proc.stderr)
        self.assertLess(elapsed, 40)
        self.assertRegex(proc.stderr, r'loom: watchdog: .*rank 1 \(host \S+, pid \d+\)[^;]* "debug sleep"')
        for name in os.listdir(os.path.join(run_dir, "heartbeats")):
            if name.startswith("rank-") and name.endswith(".json"):
                with open(os.path.join(run_dir, "heartbeats", name)) as f:
                    pid = json.load(f)["pid"]
                self.assertTrue(gone_soon(pid), f"{name}: pid {pid} still runs")

    # ---- non-finite steps ------------------------------------------------------------------

    def test_one_nan_batch_is_skipped(self):
        run_dir = os.path.join(RUNS, "nan-one")
        run(*sft_args(run_dir, "train.max_steps=8", "debug.nan_batches=[4]"))
        lines = step_lines(run_dir)
        self.assertEqual([r["batch"] for r in lines], list(range(8)))
        skipped = [r for r in lines if r["grad_norm"] is None]
        self.assertEqual([r["batch"] for r in skipped], [4])
        self.assertEqual([r["skipped_steps"] for r in lines], [0] * 4 + [1] * 4)
        self.assertFalse([r for r in metrics(run_dir) if "rollback_to" in r])
        record = results(run_dir)["results"]
        self.assertEqual((record["skipped_steps"], record["rollbacks"], record["exit_code"]), (1, 0, 0))

    def test_nan_run_rolls_back_to_the_last_checkpoint(self):
        run_dir = os.path.join(RUNS, "nan-rollback")
        proc = run(*mpi(2, sft_args(run_dir, "parallel.pp=2", "train.max_steps=16", "checkpoint.every=4",
                                    "train.max_bad_steps=3", "debug.nan_batches=[9,10,11]")))
        rows = metrics(run_dir)
        rollbacks = [i for i, r in enumerate(rows) if "rollback_to" in r]
        self.assertEqual(len(rollbacks), 1, rows)
        rollback = rows[rollbacks[0]]
        self.assertEqual((rollback["step"], rollback["rollback_to"], rollback["condemned_batches"]),
                         (12, 8, [9, 10, 11]))
        self.assertIn("rolled back to", proc.stderr)
        before = [r for r in rows[:rollbacks[0]] if "loss" in r]
        after = [r for r in rows[rollbacks[0]:] if "loss" in r]
        self.assertEqual([r["batch"] for r in before if r["grad_norm"] is None], [9, 10, 11])
        self.assertEqual([r["step"] for r in after], list(range(9, 17)))
        self.assertEqual([r["batch"] for r in after], [8] + list(range(12, 19)))
        self.assertTrue(all(r["grad_norm"] is not None for r in after))
        # Back at step 8's weights, batch 8 gives the loss it gave the first time.
        self.assertEqual(after[0]["loss"], before[8]["loss"])
        record = results(run_dir)["results"]
        self.assertEqual((record["rollbacks"], record["skipped_steps"], record["steps"], record["exit_code"]),
                         (1, 3, 16, 0))

    def test_nan_run_without_a_checkpoint_exits_65(self):
        run_dir = os.path.join(RUNS, "nan-no-checkpoint")
        proc = run(*sft_args(run_dir, "train.max_steps=16", "checkpoint.every=0", "train.max_bad_steps=3",
                             "debug.nan_batches=[9,10,11]"), expect=EXIT_NON_FINITE)
        self.assertIn("no checkpoint to roll back to", proc.stderr)
        record = results(run_dir)["results"]
        self.assertEqual((record["stopped_by"], record["steps"], record["exit_code"]), ("non_finite", 12, 65))
        self.assertFalse(os.path.exists(os.path.join(run_dir, "checkpoints")))

    # ---- save reports ----------------------------------------------------------------------

    def test_a_save_finished_by_the_next_save_is_reported(self):
        # Regression: with saves closer together than one save takes (checkpoint.every=1
        # here; a loaded machine does it at every=3), the next save() finished the one in
        # flight and dropped its report: a committed checkpoint with no metrics line.
        run_dir = os.path.join(RUNS, "save-every-step")
        run(*sft_args(run_dir, "train.max_steps=12", "checkpoint.every=1", "checkpoint.keep_last=100"))
        root = os.path.join(run_dir, "checkpoints")
        self.assertEqual(committed_steps(root), list(range(1, 13)))
        lines = save_lines(run_dir)
        self.assertEqual([r["step"] for r in lines], list(range(1, 13)))
        self.assertTrue(all(r["checkpoint_ok"] and r["checkpoint"] == step_dir(root, r["step"]) for r in lines))

    # ---- I/O faults ------------------------------------------------------------------------

    def check_failed_saves(self, run_dir, path, cause, saves):
        lines = save_lines(run_dir)
        self.assertEqual([r["step"] for r in lines], saves)
        for line in lines:
            self.assertFalse(line["checkpoint_ok"])
            self.assertIn(path, line["checkpoint_error"])
            self.assertIn(cause, line["checkpoint_error"])
        self.assertNotIn("checkpoint", results(run_dir)["results"])

    def test_checkpoint_dir_under_a_regular_file(self):
        blocker = os.path.join(RUNS, "not-a-directory")
        with open(blocker, "w") as f:
            f.write("a file where the checkpoint directory's parent should be\n")
        root = os.path.join(blocker, "checkpoints")
        run_dir = os.path.join(RUNS, "enotdir-continue")
        run(*sft_args(run_dir, "train.max_steps=8", "checkpoint.every=3", f"checkpoint.dir={root}"))
        self.check_failed_saves(run_dir, root, "Not a directory", [3, 6, 8])
        self.assertEqual(len(step_lines(run_dir)), 8)
        run_dir = os.path.join(RUNS, "enotdir-stop")
        run(*mpi(2, sft_args(run_dir, "train.max_steps=8", "checkpoint.every=3", f"checkpoint.dir={root}",
                             "checkpoint.on_error=stop")), expect=EXIT_SAVE_FAILED)
        self.check_failed_saves(run_dir, root, "Not a directory", [3])
        record = results(run_dir)["results"]
        self.assertEqual((record["stopped_by"], record["exit_code"]), ("checkpoint_error", EXIT_SAVE_FAILED))
        self.assertLess(record["steps"], 8)

    def test_immutable_checkpoint_dir(self):
        root = os.path.join(RUNS, "immutable")
        os.makedirs(root)
        if subprocess.run(["chattr", "+i", root], capture_output=True).returncode != 0:
            self.skipTest("chattr +i is not supported here")
        self.addCleanup(subprocess.run, ["chattr", "-i", root], check=True)
        run_dir = os.path.join(RUNS, "immutable-continue")
        run(*sft_args(run_dir, "train.max_steps=8", "checkpoint.every=3", f"checkpoint.dir={root}"))
        self.check_failed_saves(run_dir, root, "Operation not permitted", [3, 6, 8])
        run_dir = os.path.join(RUNS, "immutable-stop")
        run(*sft_args(run_dir, "train.max_steps=8", "checkpoint.every=3", f"checkpoint.dir={root}",
                      "checkpoint.on_error=stop"), expect=EXIT_SAVE_FAILED)
        self.check_failed_saves(run_dir, root, "Operation not permitted", [3])

    def test_full_disk(self):
        mount = os.path.join(RUNS, "small-disk")
        os.makedirs(mount)
        # One checkpoint of this model is ~3.1 MiB (parameters and two moments, 242k floats
        # each, plus view.h5 and index.json): 4 MiB holds one, not two.
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mount],
                                 capture_output=True).returncode == 0
        if mounted:
            self.addCleanup(subprocess.run, ["umount", mount], check=True)
        root = os.path.join(mount, "checkpoints")
        run_dir = os.path.join(RUNS, "full-disk")
        args = sft_args(run_dir, "train.max_steps=10", "checkpoint.every=3", f"checkpoint.dir={root}",
                        "checkpoint.keep_last=5")
        if mounted:
            run(*args)
            cause = "No space left on device"
        else:
            # No mount here: the first save in a first run, then a 2 MiB file-size limit
            # (the shard is 3 MiB; model.h5 1 MiB) fails the later ones with EFBIG.
            run(*sft_args(run_dir, "train.max_steps=3", f"checkpoint.dir={root}"))
            run("prlimit", "--fsize=2097152", *args)
            cause = "File too large"
        print(f"\n  full disk via {'tmpfs' if mounted else 'prlimit --fsize'}", end="")
        lines = save_lines(run_dir)
        self.assertTrue(lines[0]["checkpoint_ok"], lines[0])
        self.assertEqual(lines[0]["step"], 3)
        self.assertEqual([r["step"] for r in lines[1:]], [6, 9, 10])
        for line in lines[1:]:
            self.assertFalse(line["checkpoint_ok"])
            self.assertIn(root, line["checkpoint_error"])
            self.assertIn(cause, line["checkpoint_error"])
        self.assertEqual(committed_steps(root), [3])
        run(f"{BIN}/loom-ckpt", "verify", step_dir(root, 3))
        self.assertFalse([n for n in os.listdir(root) if ".tmp-" in n])
        self.assertEqual(results(run_dir)["results"]["steps"], 10)
        self.assertEqual(results(run_dir)["results"]["checkpoint"], step_dir(root, 3))
        # The step-3 checkpoint is intact: a fresh run resumed from it trains as the first did.
        again = os.path.join(RUNS, "full-disk-resumed")
        proc = run(*sft_args(again, "train.max_steps=10", f"train.resume={step_dir(root, 3)}",
                             "checkpoint.at_end=false"))
        self.assertIn("loom-sft: resumed from", proc.stderr)
        self.assertEqual([(r["step"], r["loss"]) for r in step_lines(again)],
                         [(r["step"], r["loss"]) for r in step_lines(run_dir) if r["step"] > 3])


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
