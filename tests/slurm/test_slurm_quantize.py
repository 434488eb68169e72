#!/usr/bin/python3
"""The quantize stage on a real Slurm: loom-quantize through loom-submit's quantize template.

A pipeline sft → quantize → eval: loom-sft (the TINY model of tests/loom_cli.py on Brown, 20
steps, 2 tasks) → loom-quantize of {{stage.q-sft.model}} (GPTQ 4-bit, groups of 32, 8
calibration sequences, 2 tasks) → loom-eval of {{stage.q-gptq.model}}, which names the
quantize stage's run_dir/quantized.h5. The stages must run one after the other, all
COMPLETED, and the evaluation's results.json must describe a model of kind "quantized" read
from that file, with the GPTQ settings.

Preemption of a quantize job: the same quantization, slowed by debug.layer_delay, is sent
`scancel --signal=USR1 --batch` once its first progress/layer-*.done is committed. The ranks
stop after the next committed layer and exit 75, the script requeues the job (Restarts=1;
Reason=BeginTime is lifted with `scontrol update StartTime=now+2`), and the next incarnation
resumes ("resuming after N committed layers", 1 <= N < the model's 4 layers) and completes.
Its quantized.h5 must equal, dataset by dataset and bit for bit (and every attribute, the
metadata's date aside), that of the same quantization without Slurm (mpirun -np 2) and without
a signal.

Usage: test_slurm_quantize.py BUILD_DIR WORK_DIR [MPIEXEC]  (CTest passes all three).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slurm_cluster as sc  # noqa: E402
from loom_cli import MPI_FLAGS, run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/slurm-quantize"
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else "mpirun"
BIN = os.path.join(BUILD, "bin")
LAYERS = 4  # model.n_layers of TINY
STAGES = ["q-sft", "q-gptq", "q-eval"]


def gptq_settings(model):
    """loom-quantize overrides: GPTQ 4-bit g32 of `model` on the prepared Brown store."""
    return [f"model={model}", "method=gptq", "bits=4", "group_size=32", f"calibration.data={WORK}/brown/train.h5",
            "calibration.samples=8", "threads=1"]


def quantize_job(name, run_dir, overrides, **slurm):
    return {
        "name": name,
        "template": "quantize",
        "overrides": overrides,
        "run_dir": run_dir,
        "bin_dir": BIN,
        "workdir": sc.REPO,
        "slurm": {"partition": "debug", "nodes": 1, "tasks_per_node": 2, "cpus_per_task": 1, "mem": "1G",
                  "time": "00:10:00", "signal_seconds": 30, "requeue": True, "max_restarts": 3, **slurm},
    }


def contents(path):
    """(datasets by name, attributes by "object@name"); the metadata JSON without its date."""
    data, attrs = {}, {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data[name] = np.array(obj)
            attrs.update({f"{name}@{key}": obj.attrs[key] for key in obj.attrs})
        f.visititems(visit)
        attrs.update({f"/@{key}": f.attrs[key] for key in f.attrs})
    metadata = json.loads(attrs.pop("/@metadata"))
    metadata.pop("date")
    attrs["/@metadata"] = json.dumps(metadata, sort_keys=True)
    return data, attrs


def committed_layers(run_dir):
    return sorted(glob.glob(os.path.join(run_dir, "progress", "layer-*.done")))


class QuantizeStage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        cls.tokenizer = sc.prepare_brown(BIN, WORK)
        cls.trained = os.path.join(WORK, "runs", "trained")
        run(f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={cls.trained}",
            *sc.tiny_overrides(WORK, cls.tokenizer, 20, 10))

    def test_sft_quantize_eval_pipeline(self):
        runs = {name: os.path.join(WORK, "pipeline", "runs", name) for name in STAGES}
        sft = sc.train_job("q-sft", BIN, WORK, runs["q-sft"], sc.tiny_overrides(WORK, self.tokenizer, 20, 10))
        gptq = quantize_job("q-gptq", runs["q-gptq"], gptq_settings("{{stage.q-sft.model}}"))
        evaluation = sc.eval_job("q-eval", BIN, runs["q-eval"], "{{stage.q-gptq.model}}",
                                 os.path.join(runs["q-eval"], "results"))
        pipeline = sc.write_yaml(os.path.join(WORK, "pipeline", "pipeline.yaml"),
                                 {"name": "quantize", "stages": [sft, gptq, evaluation]})
        state = os.path.join(WORK, "pipeline", "state.json")
        start = time.monotonic()
        ids = sc.submit_pipeline(BIN, pipeline, state)
        self.assertEqual(sorted(ids), sorted(STAGES))
        for before, after in zip(STAGES, STAGES[1:]):
            self.assertIn(f"afterok:{ids[before]}", sc.job(ids[after]).get("Dependency", ""), sc.describe(ids[after]))
        with open(os.path.join(runs["q-gptq"], "slurm", "q-gptq.sbatch")) as f:
            script = f.read()
        self.assertIn(f"'run_dir={runs['q-gptq']}' 'model={runs['q-sft']}/model.h5' 'method=gptq'", script)
        with open(os.path.join(runs["q-eval"], "slurm", "q-eval.sbatch")) as f:
            self.assertIn(f"--model '{runs['q-gptq']}/quantized.h5'", f.read())

        records = {name: sc.wait_terminal(ids[name], timeout=400)[0] for name in STAGES}
        print(f"pipeline finished {time.monotonic() - start:.1f} s after submission", flush=True)
        for name in STAGES:
            self.assertEqual(records[name]["JobState"], "COMPLETED", sc.describe(ids[name]))
            self.assertEqual(records[name]["ExitCode"], "0:0", sc.describe(ids[name]))
        for before, after in zip(STAGES, STAGES[1:]):
            self.assertGreaterEqual(sc.slurm_time(records[after]["StartTime"]),
                                    sc.slurm_time(records[before]["EndTime"]),
                                    f"{after} started before {before} ended")
        self.assertEqual(len(committed_layers(runs["q-gptq"])), LAYERS)
        with open(os.path.join(runs["q-eval"], "results", "results.json")) as f:
            results = json.load(f)
        model = results["model"]
        self.assertEqual(model["kind"], "quantized", json.dumps(model))
        self.assertEqual(model["path"], os.path.join(runs["q-gptq"], "quantized.h5"))
        self.assertEqual((model["quantization"]["method"], model["quantization"]["bits"],
                          model["quantization"]["group_size"]), ("gptq", 4, 32), json.dumps(model))
        self.assertIn("brown-heldout", json.dumps(results["tasks"]))

        status = sc.loom_submit(BIN, "status", "--state", state).stdout
        for name in STAGES:
            line = next((l for l in status.splitlines() if name + " " in l and ids[name] in l), "")
            self.assertIn("COMPLETED", line, status)

    def test_usr1_stops_after_a_layer_requeues_and_resumes_bit_exact(self):
        model = os.path.join(self.trained, "model.h5")
        reference = os.path.join(WORK, "runs", "q-reference")
        start = time.monotonic()
        run(MPIEXEC, *MPI_FLAGS, "2", f"{BIN}/loom-quantize", *gptq_settings(model), f"run_dir={reference}")
        print(f"reference quantization without Slurm: {time.monotonic() - start:.1f} s", flush=True)

        run_dir = os.path.join(WORK, "runs", "q-preempted")
        job_yaml = sc.write_yaml(os.path.join(WORK, "jobs", "q-preempted.yaml"),
                                 quantize_job("q-preempted", run_dir, [*gptq_settings(model), "debug.layer_delay=3"]))
        start = time.monotonic()
        job_id, _ = sc.submit_job(BIN, job_yaml)
        deadline = time.monotonic() + 120
        while not committed_layers(run_dir):
            state = sc.job(job_id)["JobState"]
            if state in sc.TERMINAL or time.monotonic() > deadline:
                self.fail(f"no committed layer in {run_dir} while the job ran ({state}):\n{sc.describe(job_id)}")
            time.sleep(0.05)
        signalled_after = len(committed_layers(run_dir))
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True, timeout=30)
        print(f"job {job_id}: USR1 after {signalled_after} committed layer(s), "
              f"{time.monotonic() - start:.1f} s after submission", flush=True)

        sc.wait_until(job_id, lambda r: r.get("Restarts") == "1", "requeue (Restarts=1)", timeout=120)
        record = sc.wait_terminal(job_id, timeout=300)[0]
        log = sc.job_log(record)
        print(f"job {job_id}: {record['JobState']} {time.monotonic() - start:.1f} s after submission", flush=True)
        self.assertEqual(record["JobState"], "COMPLETED", sc.describe(job_id))
        self.assertEqual(record["ExitCode"], "0:0", sc.describe(job_id))
        self.assertEqual(record["Restarts"], "1", sc.describe(job_id))
        # One log for both incarnations (--open-mode=append): the stop, the requeue, the resume.
        self.assertIn("loom-quantize: stopped by SIGUSR1", log)
        self.assertIn("exit code 75", log)
        self.assertIn("requeueing job", log)
        self.assertIn("restart 1", log)
        resumed = re.search(r"loom-quantize: resuming after (\d+) committed layers", log)
        self.assertIsNotNone(resumed, log)
        self.assertGreaterEqual(int(resumed.group(1)), signalled_after)
        self.assertLess(int(resumed.group(1)), LAYERS, "the signal must stop the job before its last layer")
        self.assertIn(f"{resumed.group(1)} layers resumed", log)

        (want, want_attrs), (got, got_attrs) = contents(f"{reference}/quantized.h5"), contents(f"{run_dir}/quantized.h5")
        self.assertEqual(sorted(want), sorted(got))
        self.assertIn("layers.3.mlp.down.weight.codes", want)
        for name in want:
            self.assertEqual(want[name].dtype, got[name].dtype, name)
            self.assertTrue(np.array_equal(want[name], got[name]), f"{name} differs after the requeue")
        self.assertEqual(sorted(want_attrs), sorted(got_attrs))
        for key in want_attrs:
            self.assertEqual(str(want_attrs[key]), str(got_attrs[key]), key)


if __name__ == "__main__":
    sc.cluster_or_skip()
    unittest.main(argv=sys.argv[:1])
