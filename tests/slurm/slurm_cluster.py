"""What the Slurm end-to-end tests share: bring up the local single-node cluster (ci/slurm.sh),
submit job and pipeline YAMLs through loom-submit, and read job states from `scontrol show
job` (accounting is off on the test cluster, so sacct has nothing).

Every test script calls `cluster_or_skip()` first: it starts the cluster when it is not up
(CTest's slurm_cluster_start fixture normally has) and exits 77, which CTest reports as a
skip with the reason printed, when it cannot run (not root, Slurm or munge not installed).
Nothing here stops the cluster: the slurm_cluster_stop fixture does, once the label is done.

Imported by tests/slurm/test_*.py (they add tests/ and tests/slurm/ to sys.path, in that order).
"""
import json
import os
import re
import subprocess
import sys
import time

from loom_cli import TINY

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SKIP = 77
# Finished for good; a requeued job passes through REQUEUED and PENDING, which are not.
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
            "DEADLINE", "PREEMPTED"}
# Pending for one of these, a job will never start on the test cluster: fail at once.
HOPELESS = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "InvalidQOS",
            "InvalidAccount", "DependencyNeverSatisfied"}


def cluster_or_skip():
    """Starts the cluster if needed and exports its SLURM_CONF; exits 77 when it cannot run."""
    proc = subprocess.run([os.path.join(REPO, "ci", "slurm.sh"), "start"], capture_output=True, text=True,
                          timeout=120)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode == SKIP:
        print(f"SKIP: the local Slurm cannot run here: {proc.stdout.strip()}", flush=True)
        sys.exit(SKIP)
    if proc.returncode != 0:
        raise SystemExit(f"ci/slurm.sh start failed ({proc.returncode})")
    match = re.search(r"^export SLURM_CONF=(.+)$", proc.stdout, re.MULTILINE)
    if not match:
        raise SystemExit(f"ci/slurm.sh start printed no SLURM_CONF:\n{proc.stdout}")
    os.environ["SLURM_CONF"] = match.group(1).strip()


def write_yaml(path, document):
    """Writes a job or pipeline file; JSON is YAML, and needs no YAML module here."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")
    return path


def loom_submit(bin_dir, *args, expect=0):
    proc = subprocess.run([os.path.join(bin_dir, "loom-submit"), *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    if proc.returncode != expect:
        raise AssertionError(f"loom-submit {' '.join(args)} exited {proc.returncode} (expected {expect})\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def submit_job(bin_dir, job_yaml):
    """Submits one job file; returns (job id, gate job id or None) as loom-submit reported them."""
    proc = loom_submit(bin_dir, job_yaml)
    main = re.search(r"submitted as job (\d+)", proc.stderr)
    gate = re.search(r"its gate as job (\d+)", proc.stderr)
    if not main:
        raise AssertionError(f"loom-submit said no job id:\n{proc.stderr}")
    printed = proc.stdout.strip()
    expected = gate.group(1) if gate else main.group(1)
    if printed != expected:
        raise AssertionError(f"loom-submit printed {printed!r}, its message says {expected}:\n{proc.stderr}")
    return main.group(1), gate.group(1) if gate else None


def submit_pipeline(bin_dir, pipeline_yaml, state_file):
    """Submits a pipeline; returns {stage name: job id} from loom-submit's `STAGE JOBID` lines."""
    proc = loom_submit(bin_dir, "pipeline", pipeline_yaml, "--state", state_file)
    ids = {}
    for line in proc.stdout.splitlines():
        name, job_id = line.split()
        ids[name] = job_id
    return ids


def job_records(job_id):
    """`scontrol show job -o ID` as one dict per line (an array job: one per task or range)."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"scontrol show job {job_id} failed: {proc.stderr.strip()}")
    records = []
    for line in proc.stdout.splitlines():
        # Values have no spaces except Command/WorkDir/StdOut paths, which ours do not have.
        records.append(dict(field.split("=", 1) for field in line.split() if "=" in field))
    return records


def job(job_id):
    records = job_records(job_id)
    if len(records) != 1:
        raise AssertionError(f"job {job_id}: expected one record, got {len(records)}")
    return records[0]


def job_log(record):
    path = record.get("StdOut", "")
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return f"(no log: {e})"


def describe(job_id):
    """Every record of a job, with its log, for assertion messages."""
    out = []
    for record in job_records(job_id):
        out.append(" ".join(f"{k}={record.get(k, '?')}" for k in
                            ("JobId", "JobName", "JobState", "Reason", "ExitCode", "Restarts", "ArrayTaskId")))
        out.append(f"---- log {record.get('StdOut')}:\n{job_log(record)}")
    return "\n".join(out)


_released = {}  # (job id, restarts) → when its begin time was first moved


def release_begin_time(record):
    """A requeued job waits with Reason=BeginTime; start it in 2 s, as the test cannot wait minutes.

    Not at once: slurmd revoked the old incarnation's credential at the requeue and, comparing
    in whole seconds, refuses a credential issued in that same second ("Killing non-startable
    batch JobId=N: Job credential revoked", the job FAILED with 1:0). Once those 2 s have
    passed, a job still waiting is set to start now, which also wakes the scheduler (else it
    may wait for its next periodic pass, up to a minute).
    """
    if record.get("JobState") != "PENDING" or record.get("Reason") != "BeginTime":
        return
    incarnation = (record["JobId"], record.get("Restarts"))
    if incarnation not in _released:
        _released[incarnation] = time.monotonic()
        start = "now+2"
    elif time.monotonic() - _released[incarnation] > 2.5:
        start = "now"
    else:
        return
    subprocess.run(["scontrol", "update", f"JobId={record['JobId']}", f"StartTime={start}"], capture_output=True,
                   timeout=30)


def wait_terminal(job_id, timeout=300):
    """Waits until every record of the job is in a terminal state; returns the records."""
    deadline = time.monotonic() + timeout
    while True:
        records = job_records(job_id)
        for record in records:
            release_begin_time(record)
        if records and all(r.get("JobState") in TERMINAL for r in records):
            return records
        hopeless = [r for r in records if r.get("JobState") == "PENDING" and r.get("Reason") in HOPELESS]
        if hopeless:
            raise AssertionError(f"job {job_id} can never start ({hopeless[0]['Reason']}):\n{describe(job_id)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not finished after {timeout} s:\n{describe(job_id)}")
        time.sleep(0.5)


def wait_until(job_id, predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        record = job(job_id)
        if predicate(record):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id}: no {what} after {timeout} s:\n{describe(job_id)}")
        time.sleep(0.5)


def slurm_time(text):
    """Seconds since the epoch of a scontrol time (2026-11-21T20:15:03)."""
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def prepare_brown(bin_dir, work):
    """A 512-token BPE tokenizer on Brown and WORK/brown/{train,val}.h5; returns the tokenizer path."""
    tokenizer = os.path.join(work, "tok-brown-512.json")
    for args in (["train-tokenizer", "--corpus", "brown", "--vocab-size", "512", "--out", tokenizer],
                 ["brown", "--tokenizer", tokenizer, "--out", os.path.join(work, "brown")]):
        proc = subprocess.run([os.path.join(bin_dir, "loom-prep"), *args], capture_output=True, text=True,
                              timeout=240)
        if proc.returncode != 0:
            raise AssertionError(f"loom-prep {' '.join(args)} failed:\n{proc.stderr}")
    return tokenizer


def tiny_overrides(work, tokenizer, steps, every):
    """The tests/loom_cli.py TINY model on the prepared Brown stores, as loom-submit overrides."""
    return [f"data.tokenizer={tokenizer}", f"data.train={work}/brown/train.h5", f"data.val={work}/brown/val.h5",
            *TINY, f"train.max_steps={steps}", f"checkpoint.every={every}", "checkpoint.keep_last=20"]


def train_job(name, bin_dir, work, run_dir, overrides, tasks=2, **slurm):
    """A train-template job body for loom-sft with absolute paths (the job cds to the repo)."""
    return {
        "name": name,
        "template": "train",
        "program": "loom-sft",
        "config": os.path.join(REPO, "configs", "tiny-brown.yaml"),
        "overrides": overrides,
        "run_dir": run_dir,
        "bin_dir": bin_dir,
        "workdir": REPO,
        "slurm": {"partition": "debug", "nodes": 1, "tasks_per_node": tasks, "cpus_per_task": 1, "mem": "1G",
                  "time": "00:10:00", "signal_seconds": 30, "requeue": True, "max_restarts": 3, **slurm},
    }


def eval_job(name, bin_dir, run_dir, model, out, template="eval", **eval_keys):
    return {
        "name": name,
        "template": template,
        "run_dir": run_dir,
        "bin_dir": bin_dir,
        "workdir": REPO,
        "overrides": ["limit=8", "threads=1"],
        "slurm": {"partition": "debug", "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 1, "mem": "1G",
                  "time": "00:10:00"},
        "eval": {"model": model, "tasks": ["brown-heldout"], "out": out, **eval_keys},
    }
