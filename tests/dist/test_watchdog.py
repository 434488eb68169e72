#!/usr/bin/python3
"""The hang watchdog (launch/watchdog.h) end to end, under mpirun -np 2 and 4.

A job whose last rank sleeps 60 s outside any collective while the others wait in an
all-reduce (timeout 3 s, heartbeat 0.5 s) must end within 15 s with exit code 86 (Open MPI's
mpirun returns the code given to MPI_Abort), print one report naming exactly that rank as
behind, with its step and activity, append the same line to DIR/watchdog-report.txt, and
leave no process behind. A healthy job exits 0 with no report and every rank's last
heartbeat saying "stopped" at the last step. A single process without mpirun stuck past
its timeout ends through std::_Exit(86).

Usage: test_watchdog.py TEST_BINARY WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

BINARY = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/tests/test_dist_watchdog"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/dist-watchdog"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
EXIT_CODE = 86
DEADLINE_S = 15.0  # the sleeping rank would take 60 s; the timeout is 3 s

REPORT = re.compile(r'loom: watchdog: rank (\d+) \(host \S+, pid \d+\) stuck for ([\d.]+) s in "([^"]*)" '
                    r'at step (\d+); ranks behind: (.*); ending the job with exit code 86 '
                    r'\(timeout ([\d.]+) s, heartbeats in (.*)\)$')


def run(scenario, ranks, name):
    directory = os.path.join(WORK, name)
    shutil.rmtree(directory, ignore_errors=True)
    command = [BINARY, scenario, directory]
    if ranks:
        command = [MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not ranks:
        env = {k: v for k, v in env.items() if not k.startswith(("OMPI_", "PMIX_", "SLURM_"))}
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    return done, time.monotonic() - start, directory


def heartbeats(directory, ranks):
    found = []
    for rank in range(ranks):
        with open(os.path.join(directory, f"rank-{rank:05d}.json")) as f:
            found.append(json.load(f))
    return found


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie not yet reaped by its parent counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Watchdog(unittest.TestCase):
    def check_hang(self, ranks):
        done, elapsed, directory = run("hang", ranks, f"hang-np{ranks}")
        print(f"np{ranks} hang: exit {done.returncode} after {elapsed:.1f} s", flush=True)
        print(done.stderr, flush=True)
        self.assertEqual(done.returncode, EXIT_CODE, done.stderr)
        self.assertLess(elapsed, DEADLINE_S)
        self.assertNotIn("FAILED", done.stderr)
        sleeper = ranks - 1
        reports = [m for m in map(REPORT.match, done.stderr.splitlines()) if m]
        self.assertTrue(reports, "no full watchdog report on stderr")
        for report in reports:
            self.assertLess(int(report.group(1)), sleeper)
            stuck = float(report.group(2))
            self.assertGreaterEqual(stuck, 3.0)
            self.assertLess(stuck, 6.0)
            self.assertEqual(report.group(3), "dp all_reduce")
            self.assertEqual(report.group(4), "12")
            self.assertRegex(report.group(5),
                             rf'^rank {sleeper} \(host \S+, pid \d+\) at step 11 in "sleep \(test\)" for [\d.]+ s$')
            self.assertEqual(report.group(6), "3.0")
            self.assertEqual(report.group(7), directory)
        with open(os.path.join(directory, "watchdog-report.txt")) as f:
            written = f.read().splitlines()
        self.assertTrue(written)
        self.assertTrue(all(REPORT.match(line) for line in written), written)
        self.assertTrue(set(written) <= set(done.stderr.splitlines()))
        # mpirun killed the sleeper (and everyone else) rather than waiting out its 60 s.
        beats = heartbeats(directory, ranks)
        self.assertEqual(beats[sleeper]["activity"], "sleep (test)")
        for beat in beats:
            self.assertFalse(alive(beat["pid"]), f"rank {beat['rank']} (pid {beat['pid']}) still runs")

    def check_healthy(self, ranks):
        done, elapsed, directory = run("healthy", ranks, f"healthy-np{ranks}")
        print(f"np{ranks} healthy: exit {done.returncode} after {elapsed:.1f} s", flush=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn("watchdog", done.stderr)
        self.assertFalse(os.path.exists(os.path.join(directory, "watchdog-report.txt")))
        beats = heartbeats(directory, ranks)
        self.assertEqual([b["rank"] for b in beats], list(range(ranks)))
        self.assertEqual({b["activity"] for b in beats}, {"stopped"})
        self.assertEqual({b["step"] for b in beats}, {5})
        self.assertEqual(len({b["pid"] for b in beats}), ranks)

    def test_hang_np2(self):
        self.check_hang(2)

    def test_hang_np4(self):
        self.check_hang(4)

    def test_healthy_np2(self):
        self.check_healthy(2)

    def test_healthy_np4(self):
        self.check_healthy(4)

    def test_single_process_exits_86(self):
        done, elapsed, directory = run("alone", 0, "alone")
        print(f"single process: exit {done.returncode} after {elapsed:.1f} s", flush=True)
        self.assertEqual(done.returncode, EXIT_CODE, done.stderr)
        self.assertLess(elapsed, DEADLINE_S)
        lines = done.stderr.splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        report = REPORT.match(lines[0])
        self.assertIsNotNone(report, lines[0])
        self.assertEqual(report.group(3), "io (test)")
        self.assertEqual(report.group(4), "3")
        self.assertEqual(report.group(5), "none (the only rank)")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
