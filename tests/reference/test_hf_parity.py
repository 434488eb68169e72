#!/usr/bin/python3
"""Hugging Face interchange against an independent PyTorch model written in HF conventions.

For each family — Llama with grouped-query attention (2 kv heads for 4 query heads), an
untied LM head and linear RoPE scaling; GPT-2 with tied embeddings — this script:

1. draws random weights under the Hugging Face names and layouts (separate q/k/v
   projections; GPT-2 Conv1D weights stored [in, out]) and writes them with config.json the
   way transformers' save_pretrained would: Llama sharded over two files with
   model.safetensors.index.json, GPT-2 in one file with the original release's names (no
   "transformer." prefix) plus its attn.bias / attn.masked_bias buffers. Safetensors is
   written and parsed here by hand (struct + json + numpy; the safetensors and transformers
   packages are not available);
2. runs `import` into a loom model.h5 and `logits` on a token sequence, and checks the
   logits against the PyTorch forward (float64 from the same float32 weights):
   max |Δ| <= 1e-4 · (1 + max |logit|). The same check against a reference with two
   projections swapped must fail, proving the comparison has teeth;
3. runs `export` of that model.h5 (and of a checkpoint-style view.h5 made from it) and
   checks every original tensor comes back bit-equal under its (prefixed) name, and every
   config.json field the script wrote comes back equal;
4. checks that a bad config key, a truncated safetensors file and an out-of-vocabulary
   token fail with exit code 1 and a message naming the key or file.

The subcommands are run through `loom-ckpt`.

Usage: test_hf_parity.py BUILD_DIR WORK_DIR  (CTest passes both).
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import unittest

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loom_cli import run  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/reference-hf"
BIN = os.path.join(BUILD, "bin")
TOKENS = [5, 17, 3, 88, 41, 0, 63, 29, 71, 12, 54, 7, 36, 90, 2, 66, 19, 45, 77, 23]


TOOL = os.path.join(BIN, "loom-ckpt")


# ---- safetensors by hand -----------------------------------------------------------------

def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, float32 ndarray) in data order."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, array in tensors:
        nbytes = array.size * 4
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, array in tensors:
            f.write(np.ascontiguousarray(array, dtype="<f4").tobytes())


def read_safetensors(path):
    """{name: (dtype, shape, raw bytes)}, metadata."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert (8 + n) % 8 == 0, f"{path}: data does not start 8-byte aligned"
    header = json.loads(blob[8:8 + n])
    metadata = header.pop("__metadata__", {})
    data = blob[8 + n:]
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        out[name] = (entry["dtype"], entry["shape"], data[begin:end])
    return out, metadata


# ---- reference models in Hugging Face conventions ----------------------------------------

def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def causal_attention(q, k, v):
    """q [H, T, D], k/v [H, T, D] (already repeated for GQA)."""
    t, d = q.shape[1], q.shape[2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
    return scores.softmax(-1) @ v


def llama_forward(cfg, w, ids):
    w = {k: torch.from_numpy(v).double() for k, v in w.items()}
    hq, hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg["hidden_size"] // hq
    eps = cfg["rms_norm_eps"]
    t = len(ids)
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    positions = torch.arange(t, dtype=torch.float64) / cfg["rope_scaling"]["factor"]
    emb = torch.cat([torch.outer(positions, inv_freq)] * 2, dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(t, hq, d).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(t, hkv, d).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(t, hkv, d).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(hq // hkv, 0), v.repeat_interleave(hq // hkv, 0)
        y = causal_attention(q, k, v).transpose(0, 1).reshape(t, hq * d)
        x = x + y @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (F.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    return (x @ w["lm_head.weight"].T).numpy()


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def gpt2_forward(cfg, w, ids):
    """w uses the release's names (no "transformer." prefix); Conv1D: y = x @ W + b."""
    w = {k: torch.from_numpy(v).double() for k, v in w.items()}
    c, heads = cfg["n_embd"], cfg["n_head"]
    d, t, eps = c // heads, len(ids), cfg["layer_norm_epsilon"]

    def ln(x, name):
        return F.layer_norm(x, (c,), w[name + ".weight"], w[name + ".bias"], eps)

    def conv1d(x, name):
        return x @ w[name + ".weight"] + w[name + ".bias"]

    x = w["wte.weight"][torch.tensor(ids)] + w["wpe.weight"][:t]
    for layer in range(cfg["n_layer"]):
        p = f"h.{layer}."
        q, k, v = conv1d(ln(x, p + "ln_1"), p + "attn.c_attn").split(c, dim=-1)
        q, k, v = (z.view(t, heads, d).transpose(0, 1) for z in (q, k, v))
        x = x + conv1d(causal_attention(q, k, v).transpose(0, 1).reshape(t, c), p + "attn.c_proj")
        x = x + conv1d(gelu_new(conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj")
    return (ln(x, "ln_f") @ w["wte.weight"].T).numpy()


def random_weights(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        if "norm" in name or "ln_" in name:
            value = (1.0 + 0.1 * torch.randn(shape, generator=g)) if name.endswith("weight") else 0.05 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            value = 0.05 * torch.randn(shape, generator=g)
        elif name.endswith(("embed_tokens.weight", "wte.weight", "wpe.weight")):
            value = 0.5 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[0] if name.startswith("h.") else shape[1]  # GPT-2 Conv1D is [in, out]
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        out[name] = value.float().numpy()
    return out


LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96, "hidden_size": 64,
         "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
         "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
         "rope_scaling": {"type": "linear", "factor": 2.0}, "tie_word_embeddings": False, "hidden_act": "silu",
         "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32"}

GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 96, "n_embd": 48, "n_layer": 2,
        "n_head": 4, "n_positions": 32, "n_ctx": 32, "n_inner": None, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True, "torch_dtype": "float32"}


def llama_shapes(cfg):
    c, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * c // cfg["num_attention_heads"]
    shapes = {"model.embed_tokens.weight": (v, c)}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes.update({p + "input_layernorm.weight": (c,), p + "self_attn.q_proj.weight": (c, c),
                       p + "self_attn.k_proj.weight": (kv, c), p + "self_attn.v_proj.weight": (kv, c),
                       p + "self_attn.o_proj.weight": (c, c), p + "post_attention_layernorm.weight": (c,),
                       p + "mlp.gate_proj.weight": (f, c), p + "mlp.up_proj.weight": (f, c),
                       p + "mlp.down_proj.weight": (c, f)})
    shapes.update({"model.norm.weight": (c,), "lm_head.weight": (v, c)})
    return shapes


def gpt2_shapes(cfg):
    c, v, p_max = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    shapes = {"wte.weight": (v, c), "wpe.weight": (p_max, c)}
    for layer in range(cfg["n_layer"]):
        p = f"h.{layer}."
        shapes.update({p + "ln_1.weight": (c,), p + "ln_1.bias": (c,), p + "attn.c_attn.weight": (c, 3 * c),
                       p + "attn.c_attn.bias": (3 * c,), p + "attn.c_proj.weight": (c, c),
                       p + "attn.c_proj.bias": (c,), p + "ln_2.weight": (c,), p + "ln_2.bias": (c,),
                       p + "mlp.c_fc.weight": (c, 4 * c), p + "mlp.c_fc.bias": (4 * c,),
                       p + "mlp.c_proj.weight": (4 * c, c), p + "mlp.c_proj.bias": (c,)})
    shapes.update({"ln_f.weight": (c,), "ln_f.bias": (c,)})
    return shapes


def tolerance_check(test, actual, expected, label):
    bound = 1e-4 * (1.0 + np.abs(expected).max())
    worst = np.abs(actual - expected).max()
    print(f"  {label}: max |Δlogit| {worst:.3g} (bound {bound:.3g}, max |logit| {np.abs(expected).max():.3g})")
    test.assertLessEqual(worst, bound, label)


class HfParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        print(f"using {TOOL}")

    def make_dir(self, family, cfg, weights):
        hf = os.path.join(WORK, family, "hf")
        os.makedirs(hf)
        with open(os.path.join(hf, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        names = list(weights)
        if family == "llama":
            halves = [names[: len(names) // 2], names[len(names) // 2:]]
            weight_map = {}
            for i, part in enumerate(halves):
                shard = f"model-{i + 1:05d}-of-00002.safetensors"
                write_safetensors(os.path.join(hf, shard), [(n, weights[n]) for n in part], {"format": "pt"})
                weight_map.update({n: shard for n in part})
            with open(os.path.join(hf, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": sum(w.nbytes for w in weights.values())}, "weight_map": weight_map}, f)
        else:
            p_max = cfg["n_positions"]
            buffers = []
            for layer in range(cfg["n_layer"]):
                buffers.append((f"h.{layer}.attn.bias", np.tril(np.ones((p_max, p_max), np.float32))[None, None]))
                buffers.append((f"h.{layer}.attn.masked_bias", np.array(-1e4, np.float32)))
            write_safetensors(os.path.join(hf, "model.safetensors"),
                              [(n, weights[n]) for n in names] + buffers, {"format": "pt"})
        return hf

    def check_family(self, family, cfg, shapes, forward, exported_name, seed):
        weights = random_weights(shapes, seed)
        hf = self.make_dir(family, cfg, weights)
        model = os.path.join(WORK, family, "model.h5")
        run(TOOL, "import", "--from", hf, "--out", model)
        with h5py.File(model, "r") as f:
            meta = json.loads(f.attrs["metadata"])
        self.assertEqual(meta["head"], "lm")
        self.assertEqual(meta["model"]["family"], family)

        logits_file = os.path.join(WORK, family, "logits.h5")
        out = run(TOOL, "logits", "--model", model, "--tokens", ",".join(map(str, TOKENS)), "--out", logits_file)
        self.assertIn(f"{len(TOKENS)} tokens x {cfg['vocab_size']} vocabulary", out.stdout)
        with h5py.File(logits_file, "r") as f:
            logits = f["logits"][...]
            self.assertEqual(list(f["tokens"][...]), TOKENS)
        self.assertEqual(logits.shape, (len(TOKENS), cfg["vocab_size"]))
        expected = forward(cfg, weights, TOKENS)
        tolerance_check(self, logits, expected, f"{family} logits")
        self.assertTrue(np.argmax(logits[-1]) == np.argmax(expected[-1]))

        # Export from model.h5 and from a checkpoint-style view.h5 holding the same tensors.
        step = os.path.join(WORK, family, "step-00000010")
        os.makedirs(step)
        with h5py.File(model, "r") as src, h5py.File(os.path.join(step, "view.h5"), "w") as view:
            view.attrs["model_config"] = json.dumps(meta["model"])  # variable-length string, as h5py writes
            for name in src:
                view[f"model/{name}"] = src[name][...]
        for label, source in (("model.h5", model), ("view.h5", step)):
            exported = os.path.join(WORK, family, "export-" + label)
            run(TOOL, "export", "--from", source, "--out", exported)
            tensors, metadata = read_safetensors(os.path.join(exported, "model.safetensors"))
            self.assertEqual(metadata.get("format"), "pt")
            self.assertEqual(set(tensors), {exported_name(n) for n in weights}, label)
            for name, array in weights.items():
                dtype, shape, raw = tensors[exported_name(name)]
                self.assertEqual((dtype, shape), ("F32", list(array.shape)), name)
                self.assertEqual(raw, np.ascontiguousarray(array, "<f4").tobytes(), f"{label}: {name} not bit-equal")
            with open(os.path.join(exported, "config.json")) as f:
                config = json.load(f)
            for key, value in cfg.items():
                if key == "n_inner" and value is None:
                    self.assertEqual(config[key], 4 * cfg["n_embd"])
                elif key == "rope_scaling":
                    self.assertEqual((config[key]["type"], config[key]["factor"]), (value["type"], value["factor"]))
                else:
                    self.assertEqual(config[key], value, f"{label}: config.json {key}")
        return weights, expected, logits

    def test_llama_gqa_untied(self):
        weights, _, logits = self.check_family("llama", LLAMA, llama_shapes(LLAMA), llama_forward, lambda n: n, 1)
        # The comparison must be able to fail: k and v swapped in layer 0 is a plausible bug.
        swapped = dict(weights)
        swapped["model.layers.0.self_attn.k_proj.weight"] = weights["model.layers.0.self_attn.v_proj.weight"]
        swapped["model.layers.0.self_attn.v_proj.weight"] = weights["model.layers.0.self_attn.k_proj.weight"]
        wrong = llama_forward(LLAMA, swapped, TOKENS)
        self.assertGreater(np.abs(logits - wrong).max(), 1e-4 * (1.0 + np.abs(wrong).max()) * 10)

    def test_gpt2_tied_conv1d(self):
        weights, _, logits = self.check_family("gpt2", GPT2, gpt2_shapes(GPT2), gpt2_forward,
                                               lambda n: "transformer." + n, 2)
        # Forgetting the Conv1D transpose of the square c_proj would be caught.
        wrong_weights = dict(weights)
        wrong_weights["h.1.attn.c_proj.weight"] = np.ascontiguousarray(weights["h.1.attn.c_proj.weight"].T)
        wrong = gpt2_forward(GPT2, wrong_weights, TOKENS)
        self.assertGreater(np.abs(logits - wrong).max(), 1e-4 * (1.0 + np.abs(wrong).max()) * 10)

    def test_bad_inputs_fail_with_named_cause(self):
        bad = os.path.join(WORK, "bad")
        os.makedirs(bad)
        weights = random_weights(llama_shapes(LLAMA), 3)
        write_safetensors(os.path.join(bad, "model.safetensors"), list(weights.items()), {"format": "pt"})
        with open(os.path.join(bad, "config.json"), "w") as f:
            json.dump(dict(LLAMA, hidden_act="gelu"), f)
        proc = run(TOOL, "import", "--from", bad, "--out", os.path.join(bad, "model.h5"), expect=1)
        self.assertIn("config.json: hidden_act", proc.stderr)

        with open(os.path.join(bad, "config.json"), "w") as f:
            json.dump(LLAMA, f)
        st = os.path.join(bad, "model.safetensors")
        with open(st, "rb") as f:
            blob = f.read()
        with open(st, "wb") as f:
            f.write(blob[: len(blob) - 100])
        proc = run(TOOL, "import", "--from", bad, "--out", os.path.join(bad, "model.h5"), expect=1)
        self.assertIn(st, proc.stderr)
        self.assertIn("truncated", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(bad, "model.h5")))

        with open(st, "wb") as f:
            f.write(blob)
        model = os.path.join(bad, "model.h5")
        run(TOOL, "import", "--from", bad, "--out", model)
        proc = run(TOOL, "logits", "--model", model, "--tokens", "1,96", expect=1)
        self.assertIn("token 2 (96) is outside the vocabulary", proc.stderr)
        proc = run(TOOL, "logits", "--model", "x.h5", "--tokens", "1,a", expect=1)
        self.assertIn("--tokens", proc.stderr)
        run(TOOL, "export", "--from", "x.h5", expect=2)  # --out missing: a command-line error


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
