#!/usr/bin/python3
"""loom-quantize end to end with the real executables, on a tiny Llama loom trains on Brown.

The model (d_model 256, 4 heads, 2 kv heads, d_ff 512, 2 layers) is sized so that every
tp=2 slice of a linear is a multiple of GPTQ's block (128) and of the groups.

Checks:
- layout independence: GPTQ int4-g128, SparseGPT 50 %, Wanda 50 % and magnitude 50 % give a
  quantized.h5 whose every dataset (and dataset attribute) is bit-identical on 1 rank and
  dp 2, and for Wanda and magnitude on tp 2 too. Under tp the layer's forward sums the
  row-parallel partial products over the ranks, so the calibration activations differ from
  one process in the last bits and GPTQ / SparseGPT, which feed them into weight updates,
  differ slightly: their tp 2 files must agree in every mask and in >= 99 % of the codes, with
  scales and weights within 1 % of their largest;
- resume: a job killed by SIGKILL after its first committed layer, and one stopped by SIGTERM
  (exit 75; and under mpirun by SIGUSR1, the Slurm preemption signal), resume ("resuming
  after") and write the same file as an uninterrupted run; a restart with another setting in
  the same directory is refused, naming the setting;
- contents: RTN int8 and int4-g32 codes dequantize to within scale/2 of model.h5's weights
  and leave every other parameter untouched; pruned weights are at least 50 % zeros, exactly
  where the mask says; 2:4 keeps at most two of every four inputs; SmoothQuant records int8
  activations;
- loom-eval runs the quantized files (RTN int8, GPTQ int4, SmoothQuant W8A8, int8 KV cache,
  Wanda): RTN int8 perplexity within 1 % of fp32; the same results on 1 rank and dp 2, within
  1e-4 relative under tp 2;
- exports: GGUF q8_0 / q4_0 parse with the independent reader (tests/reference/gguf_reader.py)
  with the expected tensors and values; safetensors writes hf/config.json with a
  compressed-tensors quantization_config;
- bad input exits 2 with a message naming the setting.

Usage: test_quantize.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from gguf_reader import GgufFile  # noqa: E402
from loom_cli import MPI_FLAGS, prepare_brown, run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/integration-quantize"
BIN = os.path.join(BUILD, "bin")
TOKENIZER = os.path.join(WORK, "tok-brown-1k.json")
MODEL = ["model.d_model=256", "model.n_heads=4", "model.n_kv_heads=2", "model.d_ff=512", "model.n_layers=2",
         "model.max_seq_len=64"]
N_LAYERS = 2
LINEARS = ["attn.qkv", "attn.out", "mlp.gate", "mlp.up", "mlp.down"]
CALIBRATION = [f"calibration.data={WORK}/brown/train.h5", "calibration.samples=16", "calibration.seq_len=64"]
GPTQ = ["method=gptq", "bits=4", "group_size=128"]
PRUNERS = {"sparsegpt": ["method=sparsegpt", "sparsity=0.5"], "wanda": ["method=wanda", "sparsity=0.5"],
           "magnitude": ["method=magnitude", "sparsity=0.5"]}
LAYOUTS = {"dp2": [], "tp2": ["parallel.tp=2"]}
EVAL_LIMIT = "limit=2"


def h5_contents(path):
    """{dataset name: (dtype, shape, raw bytes, attributes)} of every dataset in an HDF5 file."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                attrs = {k: np.asarray(v).tolist() for k, v in obj.attrs.items()}
                out[name] = (str(obj.dtype), obj.shape, obj[()].tobytes(), attrs)
        f.visititems(visit)
    return out


def metadata(path):
    with h5py.File(path, "r") as f:
        raw = f.attrs["metadata"]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def unpack_codes(codes, bits, cols):
    """u8 codes [rows, cols] from the file's storage (int4: two per byte, even column low)."""
    if bits == 8:
        return codes.astype(np.int64)
    out = np.empty((codes.shape[0], codes.shape[1] * 2), dtype=np.int64)
    out[:, 0::2] = codes & 0x0F
    out[:, 1::2] = codes >> 4
    return out[:, :cols]


def unpack_mask(mask, cols):
    return np.unpackbits(mask, axis=1, bitorder="little")[:, :cols]


def dequantize(f, prefix, cols):
    """The dequantized weight of `prefix` in an open quantized.h5, with its per-element scale."""
    codes = f[prefix + ".weight.codes"]
    bits, group = int(codes.attrs["bits"]), int(codes.attrs["group_size"])
    q = unpack_codes(codes[()], bits, cols)
    scales, zeros = f[prefix + ".weight.scales"][()], f[prefix + ".weight.zeros"][()].astype(np.int64)
    group_of = np.arange(cols) // group if group else np.zeros(cols, dtype=np.int64)
    scale, zero = scales[:, group_of], zeros[:, group_of]
    return scale * (q - zero), scale


def task_metrics(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def relative_close(a, b, rel):
    """Task sections equal up to `rel` in every metric value."""
    if set(a) != set(b):
        return False
    for name in a:
        for metric, value in a[name]["metrics"].items():
            other = b[name]["metrics"][metric]["value"]
            if abs(value["value"] - other) > rel * abs(other):
                return False
    return True


class Quantize(unittest.TestCase):
    outputs = {}    # name -> out directory of a finished job (shared between the tests)
    timings = {}

    @classmethod
    def setUpClass(cls):
        t0 = time.time()
        shutil.rmtree(os.path.join(WORK, "q"), ignore_errors=True)
        shutil.rmtree(os.path.join(WORK, "eval"), ignore_errors=True)
        os.makedirs(WORK, exist_ok=True)
        if not os.path.exists(f"{WORK}/brown/train.h5"):
            prepare_brown(BIN, WORK, TOKENIZER, 1024)
        cls.run_dir = f"{WORK}/runs/llama"
        cls.model = f"{cls.run_dir}/model.h5"
        shutil.rmtree(cls.run_dir, ignore_errors=True)
        run(f"{BIN}/loom-sft", "--config", "configs/tiny-brown.yaml", f"run_dir={cls.run_dir}",
            f"data.tokenizer={TOKENIZER}", f"data.train={WORK}/brown/train.h5", f"data.val={WORK}/brown/val.h5",
            "data.seq_len=64", "train.batch_size=8", "train.micro_batch_size=0", "train.max_steps=40",
            "train.warmup_steps=4", "train.max_time=0", "eval.every=0", "eval.batches=2", "eval.at_start=false",
            "checkpoint.every=0", "train.threads=1", *MODEL, timeout=600)
        cls.timings["setup (data + training)"] = time.time() - t0

    @classmethod
    def tearDownClass(cls):
        print("\ntimes:", ", ".join(f"{k} {v:.0f} s" for k, v in cls.timings.items()), file=sys.stderr)

    def setUp(self):
        self.t0 = time.time()

    def tearDown(self):
        self.timings[self._testMethodName] = time.time() - self.t0

    # ---- helpers --------------------------------------------------------------------------
    def command(self, out, *settings, ranks=1):
        args = [f"{BIN}/loom-quantize", "--model", self.model, "--out", out, "threads=1", *CALIBRATION, *settings]
        if ranks > 1:
            args = ["mpirun", *MPI_FLAGS, str(ranks), *args]
        return args

    def quantize(self, name, *settings, ranks=1, expect=0):
        """Runs a fresh job into WORK/q/name (once per name and test session); its out dir."""
        if name in self.outputs and expect == 0:
            return self.outputs[name]
        out = f"{WORK}/q/{name}"
        shutil.rmtree(out, ignore_errors=True)
        proc = run(*self.command(out, *settings, ranks=ranks), expect=expect, timeout=300)
        if expect != 0:
            return proc
        self.assertTrue(os.path.exists(f"{out}/quantized.h5"), proc.stderr)
        with open(f"{out}/quantize.json") as f:
            self.assertEqual(len(json.load(f)["layers"]), N_LAYERS)
        self.outputs[name] = out
        return out

    def eval(self, name, model, *extra, ranks=1):
        out = f"{WORK}/eval/{name}"
        shutil.rmtree(out, ignore_errors=True)
        args = [f"{BIN}/loom-eval", "--model", model, "tasks=brown-heldout", EVAL_LIMIT, "--out", out,
                "threads=1", "batch_size=8", *extra]
        if ranks > 1:
            args = ["mpirun", *MPI_FLAGS, str(ranks), *args]
        run(*args, timeout=300)
        return task_metrics(out)

    def assert_same_file(self, a, b, what):
        want, got = h5_contents(a), h5_contents(b)
        self.assertEqual(sorted(got), sorted(want), what)
        differ = []
        for name in sorted(want):
            self.assertEqual(got[name][:2], want[name][:2], f"{what}: {name} dtype/shape")
            self.assertEqual(got[name][3], want[name][3], f"{what}: {name} attributes")
            if got[name][2] != want[name][2]:
                x = np.frombuffer(want[name][2], dtype=want[name][0])
                y = np.frombuffer(got[name][2], dtype=got[name][0])
                gap = np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))
                differ.append(f"{name} ({np.sum(x != y)} of {x.size} differ, by up to {gap:.3g})")
        self.assertEqual(differ, [], f"{what}: {len(differ)} datasets differ from {a}")

    def assert_close_file(self, a, b, what):
        """Same datasets; masks identical, >= 99 % of codes equal, floats within 1 % of their largest."""
        want, got = h5_contents(a), h5_contents(b)
        self.assertEqual(sorted(got), sorted(want), what)
        for name in sorted(want):
            self.assertEqual(got[name][:2], want[name][:2], f"{what}: {name} dtype/shape")
            x = np.frombuffer(want[name][2], dtype=want[name][0])
            y = np.frombuffer(got[name][2], dtype=got[name][0])
            if name.endswith(".mask"):
                self.assertTrue(np.array_equal(x, y), f"{what}: {name} differs")
            elif name.endswith(".codes"):
                self.assertGreaterEqual(np.mean(x == y), 0.99, f"{what}: {name}: {np.sum(x != y)} of {x.size} differ")
            elif x.dtype.kind == "f":
                gap = np.max(np.abs(x.astype(np.float64) - y)) if x.size else 0.0
                self.assertLessEqual(gap, 1e-2 * max(np.max(np.abs(x)), 1e-12), f"{what}: {name} differs by {gap:.3g}")

    def wait_for(self, path, proc, seconds=120):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if os.path.exists(path):
                return
            if proc.poll() is not None:
                self.fail(f"the job ended ({proc.returncode}) before {path} appeared:\n{proc.communicate()[1]}")
            time.sleep(0.02)
        self.fail(f"{path} never appeared")

    # ---- 2. the same file whatever the layout ---------------------------------------------
    def test_same_file_on_one_rank_dp2_and_tp2(self):
        for method, settings in [("gptq", GPTQ), *PRUNERS.items()]:
            one = self.quantize(method, *settings)
            for layout, extra in LAYOUTS.items():
                with self.subTest(method=method, layout=layout):
                    other = self.quantize(f"{method}-{layout}", *settings, *extra, ranks=2)
                    with open(f"{other}/quantize.json") as f:
                        self.assertIn(f"{layout[:2]} 2 x", json.load(f)["layout"])
                    if layout == "tp2" and method in ("gptq", "sparsegpt"):
                        self.assert_close_file(f"{one}/quantized.h5", f"{other}/quantized.h5", f"{method} {layout}")
                    else:
                        self.assert_same_file(f"{one}/quantized.h5", f"{other}/quantized.h5", f"{method} {layout}")

    # ---- 3. resume --------------------------------------------------------------------------
    def test_resume_after_sigkill(self):
        want = self.quantize("gptq", *GPTQ)
        out = f"{WORK}/q/gptq-killed"
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(self.command(out, *GPTQ, "debug.layer_delay=30"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.wait_for(f"{out}/progress/layer-0000.done", proc)
        proc.kill()
        proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        self.assertFalse(os.path.exists(f"{out}/quantized.h5"))
        self.assertFalse(os.path.exists(f"{out}/progress/layer-0001.done"))
        resumed = run(*self.command(out, *GPTQ), timeout=300)
        self.assertIn("resuming after 1 committed layers", resumed.stderr)
        self.assertIn("1 layers resumed", resumed.stdout)
        self.assert_same_file(f"{want}/quantized.h5", f"{out}/quantized.h5", "resumed after SIGKILL")

    def test_resume_after_sigterm_and_refuse_another_setting(self):
        want = self.quantize("gptq", *GPTQ)
        out = f"{WORK}/q/gptq-term"
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(self.command(out, *GPTQ, "debug.layer_delay=3"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.wait_for(f"{out}/progress/layer-0000.done", proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 75, err)
        self.assertIn("stopped by SIGTERM", err)
        self.assertFalse(os.path.exists(f"{out}/quantized.h5"))
        self.assertFalse(os.path.exists(f"{out}/progress/layer-0001.done"))

        refused = run(*self.command(out, *GPTQ, "damp=0.05"), expect=1, timeout=120)
        self.assertIn("different job", refused.stderr)
        self.assertIn("spec.damp: now 0.05, stored 0.01", refused.stderr)
        refused = run(*self.command(out, *GPTQ, "calibration.samples=8"), expect=1, timeout=120)
        self.assertIn("calibration.samples: now 8, stored 16", refused.stderr)
        self.assertFalse(os.path.exists(f"{out}/quantized.h5"))

        resumed = run(*self.command(out, *GPTQ), timeout=300)
        self.assertIn("resuming after 1 committed layers", resumed.stderr)
        self.assert_same_file(f"{want}/quantized.h5", f"{out}/quantized.h5", "resumed after SIGTERM")

    def test_resume_after_sigusr1_under_mpirun(self):
        want = self.quantize("wanda", *PRUNERS["wanda"])
        out = f"{WORK}/q/wanda-usr1"
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(self.command(out, *PRUNERS["wanda"], "debug.layer_delay=3", ranks=2),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.wait_for(f"{out}/progress/layer-0000.done", proc)
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 75, err)
        self.assertIn("stopped by SIGUSR1", err)
        self.assertFalse(os.path.exists(f"{out}/quantized.h5"))
        # Resumed with another dp size: dp is not part of the job, the result does not depend on it.
        resumed = run(*self.command(out, *PRUNERS["wanda"]), timeout=300)
        self.assertIn("resuming after 1 committed layers", resumed.stderr)
        self.assert_same_file(f"{want}/quantized.h5", f"{out}/quantized.h5", "resumed after SIGUSR1")

    # ---- 4. contents ------------------------------------------------------------------------
    def test_rtn_codes_dequantize_within_half_a_scale(self):
        for name, settings, bits, group in (("rtn-int8", ["method=rtn", "bits=8"], 8, 0),
                                            ("rtn-int4-g32", ["method=rtn", "bits=4", "group_size=32"], 4, 32)):
            out = self.quantize(name, *settings)
            with h5py.File(self.model, "r") as src, h5py.File(f"{out}/quantized.h5", "r") as f:
                self.assertEqual(f.attrs["format"].decode() if isinstance(f.attrs["format"], bytes)
                                 else f.attrs["format"], "loom-quantized")
                prefixes = [f"layers.{i}.{l}" for i in range(N_LAYERS) for l in LINEARS]
                for prefix in prefixes:
                    w = src[prefix + ".weight"][()]
                    rows, cols = w.shape
                    codes = f[prefix + ".weight.codes"]
                    self.assertEqual((int(codes.attrs["bits"]), int(codes.attrs["group_size"])), (bits, group))
                    self.assertEqual(codes.shape, (rows, cols if bits == 8 else (cols + 1) // 2), prefix)
                    self.assertEqual(f[prefix + ".weight.scales"].shape, (rows, cols // group if group else 1))
                    self.assertNotIn(prefix + ".weight", f, f"{name}: {prefix} stored dense as well")
                    deq, scale = dequantize(f, prefix, cols)
                    error = np.abs(deq - w)
                    # scale/2 up to the float rounding of scale itself, times up to 2^bits steps.
                    bound = scale / 2 * (1 + 2.0 ** (bits - 23))
                    self.assertTrue(np.all(error <= bound),
                                    f"{name} {prefix}: max error / scale {np.max(error / scale):.4f}")
                    # Not vacuous: the codes use their range.
                    self.assertGreater(np.mean(error), 0.0)
                    self.assertLess(np.mean(error / scale), 0.3)
                dense = [n for n in src if isinstance(src[n], h5py.Dataset)]
                quantized_names = {p + ".weight" for p in prefixes}
                for n in dense:
                    if n in quantized_names:
                        continue
                    self.assertTrue(np.array_equal(f[n][()], src[n][()]), f"{name}: {n} changed")

    def check_pruned(self, out, what, two_of_four=False):
        with h5py.File(f"{out}/quantized.h5", "r") as f:
            for prefix in (f"layers.{i}.{l}" for i in range(N_LAYERS) for l in LINEARS):
                w = f[prefix + ".weight"][()]
                keep = unpack_mask(f[prefix + ".weight.mask"][()], w.shape[1])
                self.assertTrue(np.array_equal(keep == 0, w == 0), f"{what} {prefix}: mask and zeros disagree")
                sparsity = float(np.mean(w == 0))
                self.assertGreaterEqual(sparsity, 0.5, f"{what} {prefix}")
                if two_of_four:
                    kept = keep.reshape(w.shape[0], -1, 4).sum(axis=2)
                    self.assertTrue(np.all(kept <= 2), f"{what} {prefix}: a group of 4 keeps {kept.max()}")
                else:
                    self.assertLess(sparsity, 0.51, f"{what} {prefix}")

    def test_pruned_weights_match_their_masks(self):
        for method, settings in PRUNERS.items():
            self.check_pruned(self.quantize(method, *settings), method)
        for method in ("wanda", "sparsegpt", "magnitude"):
            out = self.quantize(f"{method}-2of4", f"method={method}", "structure=2:4")
            self.check_pruned(out, f"{method} 2:4", two_of_four=True)
            self.assertEqual(metadata(f"{out}/quantized.h5")["quantization"]["structure"], "2:4")

    def test_smoothquant_records_int8_activations(self):
        out = self.quantize("smoothquant", "method=smoothquant", "alpha=0.5")
        q = metadata(f"{out}/quantized.h5")["quantization"]
        self.assertEqual((q["method"], q["activations"], q["bits"], q["group_size"]), ("smoothquant", "int8", 8, 0))
        with h5py.File(f"{out}/quantized.h5", "r") as f, h5py.File(self.model, "r") as src:
            self.assertEqual(int(f["layers.0.attn.qkv.weight.codes"].attrs["bits"]), 8)
            # The smoothing scales went into the norms.
            self.assertFalse(np.array_equal(f["layers.0.attn_norm.weight"][()], src["layers.0.attn_norm.weight"][()]))

    # ---- 5. loom-eval on quantized models ---------------------------------------------------
    def test_eval_runs_quantized_models_on_every_layout(self):
        fp32 = self.eval("fp32", self.model)["tasks"]["brown-heldout"]["metrics"]
        jobs = {"rtn-int8": ["method=rtn", "bits=8"], "gptq": GPTQ,
                "smoothquant": ["method=smoothquant", "alpha=0.5"], "kv-int8": ["method=none", "kv_int8=true"],
                "wanda": PRUNERS["wanda"]}
        for name, settings in jobs.items():
            model = f"{self.quantize(name, *settings)}/quantized.h5"
            results = self.eval(name, model)
            self.assertEqual(results["model"]["kind"], "quantized", name)
            tasks = results["tasks"]
            ppl = tasks["brown-heldout"]["metrics"]["token_perplexity"]["value"]
            print(f"\n  {name}: token perplexity {ppl:.4f} (fp32 {fp32['token_perplexity']['value']:.4f})",
                  file=sys.stderr, end="")
            self.assertTrue(1.0 < ppl < 1024.0, f"{name}: token perplexity {ppl}")
            if name == "rtn-int8":
                for metric in ("token_perplexity", "word_perplexity"):
                    ref = fp32[metric]["value"]
                    value = tasks["brown-heldout"]["metrics"][metric]["value"]
                    self.assertLess(abs(value - ref), 0.01 * ref, f"int8 {metric} {value} vs fp32 {ref}")
                    self.assertNotEqual(value, ref, "int8 RTN changed nothing: were the codes used?")
            self.assertEqual(self.eval(f"{name}-dp2", model, ranks=2)["tasks"], tasks, f"{name} dp 2")
            tp = self.eval(f"{name}-tp2", model, "parallel.tp=2", ranks=2)["tasks"]
            self.assertTrue(relative_close(tp, tasks, 1e-4), f"{name} tp 2: {tp} vs {tasks}")

    # ---- 6. exports -------------------------------------------------------------------------
    def expected_gguf_names(self):
        names = ["token_embd.weight", "output_norm.weight"]
        with h5py.File(self.model, "r") as src:
            if "lm_head.weight" in src:
                names.append("output.weight")
        for i in range(N_LAYERS):
            names += [f"blk.{i}.{n}.weight" for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                                      "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
        return sorted(names)

    def test_exports_gguf_and_safetensors(self):
        for gguf_type, settings in (("Q8_0", ["method=rtn", "bits=8", "export.gguf=q8_0", "export.safetensors=true"]),
                                    ("Q4_0", ["method=rtn", "bits=4", "group_size=32", "export.gguf=q4_0"])):
            out = self.quantize(f"export-{gguf_type}", *settings)
            gguf = GgufFile(f"{out}/model.gguf")
            self.assertEqual(sorted(gguf.tensors), self.expected_gguf_names())
            self.assertEqual(gguf.kv["general.architecture"], "llama")
            self.assertEqual(gguf.kv["llama.block_count"], N_LAYERS)
            self.assertEqual(gguf.tensors["blk.0.ffn_down.weight"].type, gguf_type)
            self.assertEqual(gguf.tensors["blk.1.attn_v.weight"].type, gguf_type)
            self.assertEqual(gguf.tensors["output_norm.weight"].type, "F32")
            # The values are the model's (the GGUF re-quantization of the dequantized codes).
            with h5py.File(self.model, "r") as src:
                w = src["layers.1.mlp.down.weight"][()]
                norm = src["layers.0.attn_norm.weight"][()]
            row_max = np.max(np.abs(w), axis=1, keepdims=True)
            budget = 0.02 if gguf_type == "Q8_0" else 0.3
            got = gguf.tensor("blk.1.ffn_down.weight")
            self.assertEqual(got.shape, w.shape)
            self.assertTrue(np.all(np.abs(got - w) <= budget * row_max), f"{gguf_type}: ffn_down values")
            self.assertTrue(np.array_equal(gguf.tensor("blk.0.attn_norm.weight"), norm))
        hf = f"{WORK}/q/export-Q8_0/hf"
        with open(f"{hf}/config.json") as f:
            config = json.load(f)
        qc = config["quantization_config"]
        self.assertEqual(qc["quant_method"], "compressed-tensors")
        group = next(iter(qc["config_groups"].values()))
        self.assertEqual((group["weights"]["num_bits"], group["weights"]["strategy"]), (8, "channel"))
        self.assertIn("lm_head", qc["ignore"])
        with open(f"{hf}/model.safetensors", "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        self.assertEqual(header["model.layers.0.mlp.down_proj.weight"]["dtype"], "I8")
        self.assertEqual(header["model.layers.0.mlp.down_proj.weight_scale"]["dtype"], "F32")

    # ---- 7. bad input -----------------------------------------------------------------------
    def test_bad_input_exits_2_naming_the_setting(self):
        out = f"{WORK}/q/bad"
        proc = run(*self.command(out, "method=smoothquant", "bits=4"), expect=2)
        self.assertIn("bits: smoothquant is W8A8", proc.stderr)
        proc = run(*self.command(out, "method=rtn", "structure=2:4"), expect=2)
        self.assertIn("structure: 2:4 is a pruning pattern", proc.stderr)
        proc = run(*self.command(out, *GPTQ, f"calibration.data={WORK}/no-such-store.h5"), expect=2)
        self.assertIn(f"calibration.data: no token store at {WORK}/no-such-store.h5", proc.stderr)
        proc = run(*self.command(out, *GPTQ, "parallel.pp=2", ranks=2), expect=2)
        self.assertIn("parallel.pp must be 1 (got 2)", proc.stderr)
        self.assertFalse(os.path.exists(f"{out}/quantized.h5"))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
