#!/usr/bin/python3
"""Sharded step checkpoints survive SIGKILL at any moment and resume into any layout.

Kill test. A 4-rank run of N steps (dp2 x tp2, and pp2 x dp2; a Llama with ONE kv head so tp
replicates it, untied head; checkpoint.every=3, asynchronous saves) is started in its own
session and every process of that session (mpirun and each rank: Open MPI gives every rank
its own process group, so one killpg would miss them) gets SIGKILL at chosen moments: after
a random step line in metrics.jsonl, right after the line of a checkpoint step (the save is
starting), or while a step-N.tmp-* directory exists (mid-save, before the commit). The same
command (train.resume=auto) is restarted after every kill, at least five times per layout.
Every restart must say "resumed from" the newest committed step directory that the kill
left, and the finished run must have the uninterrupted run's loss at every step 1..N EXACTLY
(==) and a bit-identical model.h5: a resume in the same layout repeats the same arithmetic,
so any difference means state was lost (a moment, the loader position, the step counter).
Every checkpoint the kills left must pass loom-ckpt verify, with no temporary save left.
The kill points are printed; LOOM_KILL_SEED replays a sequence.

Resharding. From the uninterrupted dp2 x tp2 run's checkpoint at step S, fresh run dirs
resume with train.resume=<step-S> in (4,1,1), (1,1,4), (1,2,2), ZeRO-1 (2,2,1) and one
process; and a checkpoint written by the ZeRO-1 run (its moments sharded over dp) resumes in
plain dp (4,1,1). Steps S+1..N must consume the same global batches (the "batch" numbers are
identical) and give the reference losses within relative 1e-5: only the floating-point
summation order differs between layouts, as in test_sft_layouts.py (worst seen ~1e-6; the
worst is printed).

Usage: test_checkpoint_resume.py BUILD_DIR WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import MPI_FLAGS, h5_tensors, metrics, prepare_brown, run, tiny_sft  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/dist-checkpoint-resume"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-512.json")
MPI = [MPIEXEC, *MPI_FLAGS]

STEPS = 30
EVERY = 3
RESHARD_FROM = 15  # S: a checkpoint of the reference run
ZERO1_SAVE = 20    # a checkpoint the ZeRO-1 resumed run writes (it saves every 5 steps)
MIN_KILLS = 5
LOSS_RTOL = 1e-5
SEED = int(os.environ.get("LOOM_KILL_SEED", time.time_ns() % 1_000_000))

COMMON = [f"train.max_steps={STEPS}", "model.family=llama", "model.n_kv_heads=1", "model.tie_embeddings=false",
          "checkpoint.keep_last=20", "checkpoint.async=true"]


def sft_args(run_dir, *extra):
    return tiny_sft(BIN, WORK, TOKENIZER, run_dir, *COMMON, *extra)


def command(layout, run_dir, *extra):
    """loom-sft in layout (dp, tp, pp[, "zero1"]); one process runs without mpirun."""
    dp, tp, pp = layout[:3]
    settings = [f"parallel.tp={tp}", f"parallel.pp={pp}", *(["parallel.zero1=true"] if "zero1" in layout else [])]
    ranks = dp * tp * pp
    args = sft_args(run_dir, *settings, *extra)
    return args if ranks == 1 else [*MPI, str(ranks), *args]


def resumed_from(run_dir, stderr):
    """The checkpoint a run resumed from (run.json "resumed_from"), once stderr has said so.
    The stderr line itself is not parsed: under mpirun other ranks' lines can split it."""
    if "loom-sft: resumed from" not in stderr:
        return None
    with open(os.path.join(run_dir, "run.json")) as f:
        return json.load(f)["resumed_from"]


def step_lines(run_dir):
    return [r for r in metrics(run_dir) if "loss" in r]


def step_dir(root, step):
    return os.path.join(root, f"step-{step:08d}")


def committed_steps(root):
    if not os.path.isdir(root):
        return []
    return sorted(int(n[5:]) for n in os.listdir(root) if re.fullmatch(r"step-\d{8}", n))


def temporaries(root):
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if ".tmp-" in n)


def last_step_line(run_dir):
    """The highest step of a training line in metrics.jsonl so far (0 when none)."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    steps = [0]
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if "loss" in record:
            steps.append(record["step"])
    return max(steps)


def session_pids(sid):
    """Live (not zombie) processes of session `sid`: mpirun and every rank it started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found


def kill_session(proc):
    """SIGKILL to every process of proc's session at once; returns when all are gone."""
    deadline = time.time() + 30
    while True:
        pids = session_pids(proc.pid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.time() > deadline:
            raise AssertionError(f"processes {pids} of session {proc.pid} survive SIGKILL")
        time.sleep(0.01)
    proc.wait(timeout=30)


class Resume(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(os.path.join(WORK, "runs"), ignore_errors=True)
        os.makedirs(WORK, exist_ok=True)
        if not os.path.exists(f"{WORK}/brown/val.h5"):
            prepare_brown(BIN, WORK, TOKENIZER, 512)
        cls.reference = {}
        for name, layout in (("dp2_tp2", (2, 2, 1)), ("pp2_dp2", (2, 1, 2))):
            run_dir = f"{WORK}/runs/reference-{name}"
            run(*command(layout, run_dir, f"checkpoint.every={EVERY}"))
            cls.reference[name] = run_dir
        print(f"\n  kill seed {SEED} (LOOM_KILL_SEED={SEED} replays it)", flush=True)

    # ---- kill test -------------------------------------------------------------------------

    def next_plan(self, rng, seen, kills):
        """(mode, target step) of the next kill, beyond every step line already in the file
        (an older line must not trigger it before the restart rewrites metrics.jsonl)."""
        modes = ["step", "after_checkpoint_step", "mid_save"]
        mode = modes[kills % 3] if kills < 3 else rng.choice(modes)
        seen = max(seen, EVERY)  # the first kill comes after the first commit (else nothing resumes)
        # Steps left per kill still wanted, so that MIN_KILLS + 1 fit into the run.
        room = (STEPS - 2 - seen) // max(1, MIN_KILLS + 1 - kills)
        if mode == "step":
            target = seen + rng.randint(1, max(1, min(3, room)))
        else:
            target = (seen // EVERY + 1) * EVERY
            if target + EVERY - seen <= room and rng.random() < 0.5:
                target += EVERY
        if target >= STEPS - 1:
            return None
        return mode, target

    def wait_and_kill(self, proc, run_dir, mode, target):
        """Polls the run's files until the kill moment; returns what the files showed then."""
        root = os.path.join(run_dir, "checkpoints")
        tmp = re.compile(rf"step-{target:08d}\.tmp-")
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                return None
            line = last_step_line(run_dir)
            if committed_steps(root):  # a kill before the first commit would restart from scratch
                if mode == "mid_save" and any(tmp.match(n) for n in temporaries(root)):
                    break
                if mode == "mid_save" and line >= target + 2:
                    mode = "mid_save missed: late"  # the save committed between two polls
                    break
                if mode != "mid_save" and line >= target:
                    break
            time.sleep(0.002)
        else:
            raise AssertionError(f"{run_dir}: step {target} not reached in 120 s")
        kill_session(proc)
        return {"mode": mode, "target": target, "last_line": last_step_line(run_dir),
                "committed": committed_steps(root), "temporaries": temporaries(root)}

    def kill_and_restart(self, name, layout, seed):
        rng = random.Random(seed)
        run_dir = f"{WORK}/runs/killed-{name}"
        logs = f"{WORK}/runs/killed-{name}.stderr"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
        os.makedirs(logs)
        # Each save lingers 0.3 s with its temporary directory made (debug.save_delay), so a
        # "mid_save" kill lands inside a save even on a loaded machine; numbers are unchanged.
        args = command(layout, run_dir, f"checkpoint.every={EVERY}", "train.resume=auto", "debug.save_delay=0.3")
        kills = []
        attempt = 0
        while True:
            plan = self.next_plan(rng, last_step_line(run_dir), len(kills))
            with open(f"{logs}/attempt-{attempt}.txt", "w") as err:
                proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
                killed = self.wait_and_kill(proc, run_dir, *plan) if plan else None
                if killed is None:
                    proc.wait(timeout=240)
            with open(f"{logs}/attempt-{attempt}.txt") as f:
                stderr = f.read()
            if attempt > 0:
                # The restart resumed from the newest committed checkpoint the kill left.
                expected = kills[-1]["committed"][-1]
                self.assertEqual(resumed_from(run_dir, stderr),
                                 step_dir(os.path.join(run_dir, "checkpoints"), expected),
                                 f"{name} attempt {attempt}:\n{stderr}")
                kills[-1]["resumed_at"] = expected
            if killed is None:
                self.assertEqual(proc.returncode, 0, f"{name} attempt {attempt}:\n{stderr}")
                break
            kills.append(killed)
            attempt += 1
        print(f"\n  {name}: {len(kills)} kills (seed {seed}):")
        for k in kills:
            print(f"    {k['mode']:22} target {k['target']:2}: killed with step {k['last_line']:2} logged, "
                  f"committed {k['committed']}, in flight {k['temporaries'] or '-'}, resumed at {k['resumed_at']}")
        return run_dir, kills

    def check_killed_layout(self, name, layout, seed):
        run_dir, kills = self.kill_and_restart(name, layout, seed)
        self.assertGreaterEqual(len(kills), MIN_KILLS, kills)
        self.assertTrue(any(k["mode"] == "mid_save" for k in kills))
        self.assertTrue(any(k["temporaries"] for k in kills), "no kill landed while a save was in flight")
        reference = self.reference[name]
        want, got = step_lines(reference), step_lines(run_dir)
        self.assertEqual([r["step"] for r in got], list(range(1, STEPS + 1)))
        self.assertEqual([r["batch"] for r in got], [r["batch"] for r in want])
        self.assertEqual([r["loss"] for r in got], [r["loss"] for r in want], f"{name}: losses differ")
        wa, wb = h5_tensors(f"{reference}/model.h5"), h5_tensors(f"{run_dir}/model.h5")
        self.assertEqual(sorted(wa), sorted(wb))
        for k in wa:
            self.assertTrue(np.array_equal(wa[k], wb[k]), f"{name}: {k} is not bit-identical")
        root = os.path.join(run_dir, "checkpoints")
        self.assertEqual(temporaries(root), [], "a killed save's temporary directory was not removed")
        with open(os.path.join(root, "latest")) as f:
            self.assertEqual(f.read(), f"step-{STEPS:08d}\n")
        # Every checkpoint the kills left behind is whole.
        run(f"{BIN}/loom-ckpt", "verify", *(step_dir(root, s) for s in committed_steps(root)))

    def test_sigkill_dp2_tp2(self):
        self.check_killed_layout("dp2_tp2", (2, 2, 1), SEED)

    def test_sigkill_pp2_dp2(self):
        self.check_killed_layout("pp2_dp2", (2, 1, 2), SEED + 1)

    # ---- resharding ------------------------------------------------------------------------

    def resume_in(self, layout, source, name, *extra):
        run_dir = f"{WORK}/runs/reshard-{name}"
        proc = run(*command(layout, run_dir, f"train.resume={source}", *extra))
        self.assertEqual(resumed_from(run_dir, proc.stderr), source, proc.stderr)
        return run_dir

    def compare_from(self, run_dir, start, label):
        want = [r for r in step_lines(self.reference["dp2_tp2"]) if r["step"] > start]
        got = step_lines(run_dir)
        self.assertEqual([r["step"] for r in got], list(range(start + 1, STEPS + 1)), label)
        self.assertEqual([r["batch"] for r in got], [r["batch"] for r in want], f"{label}: other samples consumed")
        worst = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(want, got))
        print(f"\n  {label:38} steps {start + 1}..{STEPS}: max rel loss diff {worst:.2e}", end="")
        self.assertLessEqual(worst, LOSS_RTOL, f"{label}: {[r['loss'] for r in got]} vs {[r['loss'] for r in want]}")

    def test_resume_into_other_layouts(self):
        source = step_dir(f"{self.reference['dp2_tp2']}/checkpoints", RESHARD_FROM)
        for layout, name in (((4, 1, 1), "dp4"), ((1, 1, 4), "pp4"), ((1, 2, 2), "tp2_pp2"), ((1, 1, 1), "single")):
            with self.subTest(layout=name):
                run_dir = self.resume_in(layout, source, name)
                self.compare_from(run_dir, RESHARD_FROM, f"dp2_tp2 step {RESHARD_FROM} -> {name}")

    def test_resume_into_zero1_and_back_to_plain_dp(self):
        source = step_dir(f"{self.reference['dp2_tp2']}/checkpoints", RESHARD_FROM)
        zero1 = self.resume_in((2, 2, 1, "zero1"), source, "dp2_tp2_zero1", "checkpoint.every=5")
        self.compare_from(zero1, RESHARD_FROM, f"dp2_tp2 step {RESHARD_FROM} -> dp2_tp2 zero1")
        # The ZeRO-1 checkpoint holds each dp rank's share of the moments in its own shard:
        # the model comes from the 2 dp-rank-0 ranks, the moments from all 4.
        sharded = step_dir(f"{zero1}/checkpoints", ZERO1_SAVE)
        with open(os.path.join(sharded, "index.json")) as f:
            tensors = json.load(f)["tensors"]
        files = {kind: {p["file"] for n, t in tensors.items() if n.startswith(kind) for p in t["pieces"]}
                 for kind in ("model/", "optim/")}
        self.assertEqual(len(files["model/"]), 2, files)
        self.assertEqual(len(files["optim/"]), 4, files)
        plain = self.resume_in((4, 1, 1), sharded, "zero1_to_dp4")
        self.compare_from(plain, ZERO1_SAVE, f"dp2_tp2 zero1 step {ZERO1_SAVE} -> dp4")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
