#!/usr/bin/python3
"""GGUF and compressed-tensors export, read back by code that shares nothing with loom's writers.

gguf-export-driver writes (see its header) a random Llama (d 64, 4 heads over 2 kv heads,
d_ff 144 so ffn_down's rows are not whole 32-value blocks, 2 layers, the Brown 4k vocabulary)
whose block linears are RTN-quantized under a mix of schemes, as Q8_0 and Q4_0 GGUF and as
compressed-tensors safetensors; the same weights under uniform int4-g32 and int8 schemes as
safetensors; a tied GPT-2 with a padded vocabulary as Q8_0 GGUF; and every model's own f32
values (a quantized matrix dequantized) under loom names.

GGUF (read by gguf_reader.py: magic, version, keys, tensor infos, alignment, overlaps, size):
  - every tensor is there with ne = reversed row-major shape and the right type; the data
    section ends at the file's end once padded to the alignment;
  - F32 tensors equal the model's values exactly;
  - quantized tensors are byte-identical to numpy's transcription of llama.cpp's
    quantize_row_q8_0_ref / quantize_row_q4_0_ref applied to the model's values (q and k rows
    permuted as convert_hf_to_gguf.py's LlamaModel.permute does), and, dequantized and
    un-permuted, within the per-block bound: Q8_0 |Δ| <= |d|·(1/2 + 127·2^-11), Q4_0
    |Δ| <= |d|·(1 + 8·2^-11) (d as stored in fp16; |d|/2 except the value clamped at code 15),
    where without un-permuting q the comparison fails;
  - metadata values, token list (tokenizer.json's vocabulary), types, merges, bos/eos;
  - damaged files (truncated, misaligned offset, bad magic) are refused by the reader.
Safetensors (parsed here with struct + json + numpy): names, dtypes and shapes as
compressed-tensors stores them; unpacking int4 from int32 and applying scale · (q − zero_point)
gives exactly the model's dequantized values; quantization_config fields.

Usage: test_gguf_export.py DRIVER WORK_DIR  (CTest passes both).
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GgufError, GgufFile  # noqa: E402

DRIVER = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/tests/gguf-export-driver"
WORK = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else "build/reference-gguf"
F32 = np.float32


# ---- safetensors by hand --------------------------------------------------------------------

ST_DTYPES = {"F32": "<f4", "I8": "i1", "I32": "<i4", "I64": "<i8", "U8": "u1"}


def read_safetensors(path):
    """{name: (dtype name, ndarray)}; checks the offsets tile the data part."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    data = blob[8 + n:]
    out, spans = {}, []
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        spans.append((begin, end))
        arr = np.frombuffer(data[begin:end], dtype=ST_DTYPES[entry["dtype"]]).reshape(entry["shape"])
        out[name] = (entry["dtype"], arr)
    spans.sort()
    position = 0
    for begin, end in spans:
        assert begin == position, f"{path}: gap or overlap at {begin}"
        position = end
    assert position == len(data), f"{path}: data part has {len(data)} bytes, tensors cover {position}"
    return out


def truth(name):
    return {k: v for k, (_, v) in read_safetensors(os.path.join(WORK, f"{name}_truth.safetensors")).items()}


# ---- llama.cpp's reference quantizers, transcribed into numpy float32 -----------------------

def roundf(v):
    """C roundf (half away from zero) of float32 values, computed exactly in float64."""
    v = v.astype(np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def ref_q8_0(x):
    b = x.reshape(-1, 32).astype(F32)
    amax = np.abs(b).max(axis=1)
    d = (amax / F32(127)).astype(F32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0)).astype(F32)
    q = roundf((b * inv[:, None]).astype(F32)).astype(np.int8)
    out = np.zeros(len(b), dtype=[("d", "<f2"), ("qs", "i1", (32,))])
    out["d"], out["qs"] = d.astype(np.float16), q
    return out.tobytes()


def ref_q4_0(x):
    b = x.reshape(-1, 32).astype(F32)
    first_extreme = np.abs(b).argmax(axis=1)  # the first value of largest magnitude, as the C loop keeps
    mx = b[np.arange(len(b)), first_extreme]
    d = (mx / F32(-8)).astype(F32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0)).astype(F32)
    shifted = ((b * inv[:, None]).astype(F32) + F32(8.5)).astype(F32)
    n = np.minimum(15, np.trunc(shifted).astype(np.int32)).astype(np.uint8)
    out = np.zeros(len(b), dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    out["d"], out["qs"] = d.astype(np.float16), n[:, :16] | (n[:, 16:] << 4)
    return out.tobytes()


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute (rows of a q or k projection)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def block_bound(f, name):
    """Per-element error bound of a quantized GGUF tensor, from its stored block scales."""
    d = np.abs(f.block_scales(name))
    factor = 0.5 + 127 / 2048 if f.tensors[name].type == "Q8_0" else 1 + 8 / 2048
    return np.repeat(d * F32(factor), 32, axis=1) * F32(1.0001) + F32(1e-12)


# ---- the driver runs once -------------------------------------------------------------------

_DRIVER_RAN = []


def run_driver_once():
    if not _DRIVER_RAN:
        shutil.rmtree(WORK, ignore_errors=True)
        proc = subprocess.run([DRIVER, WORK], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"{DRIVER} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        _DRIVER_RAN.append(True)


class Exported(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        run_driver_once()
        with open(os.path.join(WORK, "manifest.json")) as f:
            cls.manifest = json.load(f)
        with open(os.path.join(WORK, "tokenizer.json")) as f:
            cls.tokenizer = json.load(f)


class GgufLlama(Exported):
    def expected_tensors(self, type_name):
        m = self.manifest["llama"]
        out = {"token_embd.weight": ("F32", (m["vocab_size"], m["d_model"])),
               "output_norm.weight": ("F32", (m["d_model"],)),
               "output.weight": (type_name, (m["vocab_size"], m["d_model"]))}
        q, kv = m["n_heads"] * 16, m["n_kv_heads"] * 16
        for i in range(m["n_layers"]):
            b = f"blk.{i}."
            out.update({b + "attn_norm.weight": ("F32", (64,)), b + "ffn_norm.weight": ("F32", (64,)),
                        b + "attn_q.weight": (type_name, (q, 64)), b + "attn_k.weight": (type_name, (kv, 64)),
                        b + "attn_v.weight": (type_name, (kv, 64)), b + "attn_output.weight": (type_name, (64, q)),
                        b + "ffn_gate.weight": (type_name, (144, 64)), b + "ffn_up.weight": (type_name, (144, 64)),
                        b + "ffn_down.weight": ("F32", (64, 144))})  # 144 is not whole 32-value blocks
        return out

    def loom_values(self, t, gguf_name):
        """The model's values for a GGUF tensor, in GGUF row order (q/k permuted)."""
        if gguf_name == "token_embd.weight":
            return t["embed.tokens.weight"]
        if gguf_name == "output_norm.weight":
            return t["final_norm.weight"]
        if gguf_name == "output.weight":
            return t["lm_head.weight"]
        _, layer, module, kind = gguf_name.split(".")
        pre = f"layers.{layer}."
        simple = {"attn_norm": "attn_norm", "attn_output": "attn.out", "ffn_norm": "mlp_norm", "ffn_gate": "mlp.gate",
                  "ffn_up": "mlp.up", "ffn_down": "mlp.down"}
        if module in simple:
            return t[f"{pre}{simple[module]}.{kind}"]
        qkv = t[f"{pre}attn.qkv.{kind}"]
        if module == "attn_q":
            return permute(qkv[:64], 4)
        if module == "attn_k":
            return permute(qkv[64:96], 2)
        return qkv[96:128]

    def check_file(self, file_name, type_name, file_type):
        f = GgufFile(os.path.join(WORK, file_name))
        t = truth("llama")
        expected = self.expected_tensors(type_name)
        self.assertEqual(set(f.tensors), set(expected))
        for name, (kind, shape) in expected.items():
            info = f.tensors[name]
            self.assertEqual((info.type, info.shape, info.ne), (kind, shape, tuple(reversed(shape))), name)
            values = self.loom_values(t, name)
            if kind == "F32":
                np.testing.assert_array_equal(f.tensor(name), values, err_msg=name)
                continue
            reference = ref_q8_0(values) if kind == "Q8_0" else ref_q4_0(values)
            self.assertEqual(f.raw(name), reference, f"{name}: bytes differ from llama.cpp's reference quantizer")
            got = f.tensor(name)
            bound = block_bound(f, name)
            self.assertTrue(np.all(np.abs(got - values) <= bound), f"{name}: max excess "
                            f"{np.max(np.abs(got - values) - bound)}")
            if name.endswith("attn_q.weight"):  # un-permuted, it matches the model's q rows...
                self.assertTrue(np.all(np.abs(unpermute(got, 4) - unpermute(values, 4)) <= unpermute(bound, 4)))
                # ...and the un-permuted file against the model's rows as they are does not
                self.assertFalse(np.all(np.abs(unpermute(got, 4) - values) <= bound))
        # layout: the data section ends at the file's end, padded to the alignment
        self.assertEqual(f.alignment, 32)
        self.assertEqual(len(f.data), -(-f.data_end // 32) * 32)
        report = self.manifest["reports"][file_name.replace(".gguf", "")]
        self.assertEqual(report["kept_f32"], ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"])
        self.assertEqual(report["bytes"], len(f.data))
        self.check_metadata(f, file_type)

    def check_metadata(self, f, file_type):
        m, kv = self.manifest["llama"], f.kv
        self.assertEqual(list(kv)[0], "general.architecture")
        expected_u32 = {"general.file_type": file_type, "general.quantization_version": 2, "general.alignment": 32,
                        "llama.context_length": 128, "llama.embedding_length": 64, "llama.block_count": 2,
                        "llama.feed_forward_length": 144, "llama.attention.head_count": 4,
                        "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 16,
                        "llama.vocab_size": m["vocab_size"]}
        for key, value in expected_u32.items():
            self.assertEqual((kv[key], f.kv_types[key]), (value, "u32"), key)
        self.assertEqual(kv["general.architecture"], "llama")
        self.assertEqual(kv["general.name"], "loom-llama")
        self.assertEqual(kv["llama.rope.freq_base"], 50000.0)
        self.assertEqual(kv["llama.attention.layer_norm_rms_epsilon"], float(F32(1e-5)))
        self.assertEqual(f.kv_types["llama.attention.layer_norm_rms_epsilon"], "f32")
        self.assertEqual(json.loads(kv["loom.quantization"]),
                         {"method": "rtn", "scheme": "mixed", "sparsity": "unstructured"})
        self.check_tokenizer(f, m["vocab_size"])

    def check_tokenizer(self, f, vocab_size):
        kv, tok = f.kv, self.tokenizer
        by_id = {i: s for s, i in tok["model"]["vocab"].items()}
        specials = {a["id"]: a["content"] for a in tok.get("added_tokens", [])}
        by_id.update(specials)
        self.assertEqual(kv["tokenizer.ggml.model"], "gpt2")
        self.assertEqual(kv["tokenizer.ggml.pre"], "gpt-2")
        tokens, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
        self.assertEqual(len(tokens), vocab_size)
        self.assertEqual(len(types), vocab_size)
        for i in range(vocab_size):
            if i in by_id:
                self.assertEqual(tokens[i], by_id[i], f"token {i}")
                self.assertEqual(types[i], 3 if i in specials else 1, f"token type {i}")
            else:
                self.assertEqual((tokens[i], types[i]), (f"[PAD{i}]", 5))
        merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
        self.assertEqual(kv["tokenizer.ggml.merges"], merges)
        eos = [i for i, s in specials.items() if s == "<|endoftext|>"][0]
        self.assertEqual(kv["tokenizer.ggml.eos_token_id"], eos)
        self.assertEqual(kv["tokenizer.ggml.bos_token_id"], eos)
        self.assertIs(kv["tokenizer.ggml.add_bos_token"], False)

    def test_q8_0(self):
        self.check_file("llama_q8.gguf", "Q8_0", 7)

    def test_q4_0(self):
        self.check_file("llama_q4.gguf", "Q4_0", 2)

    def test_damaged_files_are_refused(self):
        path = os.path.join(WORK, "llama_q4.gguf")
        good = GgufFile(path)
        with open(path, "rb") as src:
            blob = src.read()
        info = good.tensors["blk.0.attn_q.weight"]
        misaligned = bytearray(blob)
        misaligned[info.offset_pos:info.offset_pos + 8] = struct.pack("<Q", info.offset + 4)
        cases = {"truncated": blob[:-40], "misaligned": bytes(misaligned), "magic": b"GGUG" + blob[4:],
                 "version": blob[:4] + struct.pack("<I", 2) + blob[8:]}
        expected = {"truncated": "data section", "misaligned": "not a multiple", "magic": "bad magic",
                    "version": "version 2"}
        for case, data in cases.items():
            bad = os.path.join(WORK, f"damaged-{case}.gguf")
            with open(bad, "wb") as out:
                out.write(data)
            with self.assertRaises(GgufError) as raised:
                GgufFile(bad)
            self.assertIn(expected[case], str(raised.exception), case)


class GgufGpt2(Exported):
    def test_q8_0_tied_with_padded_vocabulary(self):
        f = GgufFile(os.path.join(WORK, "gpt2_q8.gguf"))
        m, t = self.manifest["gpt2"], truth("gpt2")
        v = m["vocab_size"]
        names = {"token_embd.weight": "embed.tokens.weight", "position_embd.weight": "embed.positions.weight",
                 "output_norm.weight": "final_norm.weight", "output_norm.bias": "final_norm.bias"}
        modules = {"attn_norm": "attn_norm", "attn_qkv": "attn.qkv", "attn_output": "attn.out",
                   "ffn_norm": "mlp_norm", "ffn_up": "mlp.up", "ffn_down": "mlp.down"}
        for i in range(2):
            for g, l in modules.items():
                for kind in ("weight", "bias"):
                    names[f"blk.{i}.{g}.{kind}"] = f"layers.{i}.{l}.{kind}"
        self.assertEqual(set(f.tensors), set(names) | {"output.weight"})
        for g, l in names.items():
            quantized = g.endswith(".weight") and g.split(".")[-2] in ("attn_qkv", "attn_output", "ffn_up", "ffn_down")
            self.assertEqual(f.tensors[g].type, "Q8_0" if quantized else "F32", g)
            if quantized:
                self.assertEqual(f.raw(g), ref_q8_0(t[l]), g)
            else:
                np.testing.assert_array_equal(f.tensor(g), t[l], err_msg=g)
        # the tied head: output.weight is token_embd requantized, as convert_hf_to_gguf.py writes it
        self.assertEqual(f.tensors["output.weight"].ne, (64, v))
        self.assertEqual(f.raw("output.weight"), ref_q8_0(t["embed.tokens.weight"]))
        kv = f.kv
        self.assertEqual(kv["general.architecture"], "gpt2")
        for key, value in {"gpt2.context_length": 128, "gpt2.embedding_length": 64, "gpt2.block_count": 2,
                           "gpt2.feed_forward_length": 256, "gpt2.attention.head_count": 4}.items():
            self.assertEqual((kv[key], f.kv_types[key]), (value, "u32"), key)
        self.assertEqual(kv["gpt2.attention.layer_norm_epsilon"], float(F32(1e-5)))
        self.assertNotIn("llama.rope.freq_base", kv)
        GgufLlama.check_tokenizer(self, f, v)  # the last 5 ids are [PAD<id>] of type UNUSED
        self.assertEqual(kv["tokenizer.ggml.tokens"][-1], f"[PAD{v - 1}]")


# ---- compressed-tensors safetensors ---------------------------------------------------------

HF_LAYER = {"attn_norm.weight": "input_layernorm.weight", "attn.out.weight": "self_attn.o_proj.weight",
            "mlp_norm.weight": "post_attention_layernorm.weight", "mlp.gate.weight": "mlp.gate_proj.weight",
            "mlp.up.weight": "mlp.up_proj.weight", "mlp.down.weight": "mlp.down_proj.weight"}


def hf_pieces(loom_name):
    """[(hf weight name, row begin, row end)] for the test's Llama (q 64 rows, k and v 32)."""
    fixed = {"embed.tokens.weight": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight",
             "lm_head.weight": "lm_head.weight"}
    if loom_name in fixed:
        return [(fixed[loom_name], 0, None)]
    _, layer, rest = loom_name.split(".", 2)
    pre = f"model.layers.{layer}."
    if rest == "attn.qkv.weight":
        return [(pre + "self_attn.q_proj.weight", 0, 64), (pre + "self_attn.k_proj.weight", 64, 96),
                (pre + "self_attn.v_proj.weight", 96, 128)]
    return [(pre + HF_LAYER[rest], 0, None)]


def is_linear(loom_name):
    return loom_name == "lm_head.weight" or (loom_name.endswith(".weight") and any(
        m in loom_name for m in (".attn.qkv.", ".attn.out.", ".mlp.gate.", ".mlp.up.", ".mlp.down.")))


def unpack_int32(words, count, axis):
    """Eight 4-bit values per int32, value i in bits [4i, 4i + 4), along `axis` (0 or 1)."""
    u = words.view(np.uint32)
    shifts = np.arange(8, dtype=np.uint32) * 4
    if axis == 1:
        nib = (u[:, :, None] >> shifts[None, None, :]) & 0xF
        return nib.reshape(u.shape[0], -1)[:, :count].astype(np.int32)
    nib = (u[:, None, :] >> shifts[None, :, None]) & 0xF
    return nib.reshape(-1, u.shape[1])[:count].astype(np.int32)


class CompressedTensors(Exported):
    def check_dir(self, variant, expected_format):
        st = read_safetensors(os.path.join(WORK, variant, "model.safetensors"))
        with open(os.path.join(WORK, variant, "config.json")) as f:
            config = json.load(f)
        model = self.manifest["llama" if variant == "ct_mixed" else variant]
        schemes, t = model["schemes"], truth("llama" if variant == "ct_mixed" else variant)
        seen, modules_by_scheme, ignored = set(), {}, []
        for loom_name, values in t.items():
            for hf_name, begin, end in hf_pieces(loom_name):
                rows = values[begin:end]
                if loom_name not in schemes:
                    dtype, arr = st[hf_name]
                    self.assertEqual(dtype, "F32")
                    np.testing.assert_array_equal(arr, rows, err_msg=hf_name)
                    seen.add(hf_name)
                    if is_linear(loom_name):
                        ignored.append(hf_name[:-len(".weight")])
                    continue
                s = schemes[loom_name]
                module = hf_name[:-len(".weight")]
                key = (s["bits"], s["group_size"], s["symmetric"])
                modules_by_scheme.setdefault(key, []).append(module)
                seen |= self.check_quantized(st, module, rows, s)
        self.assertEqual(set(st), seen, "unexpected tensors in the file")
        self.check_config(config, expected_format, modules_by_scheme, ignored, t, schemes)

    def check_quantized(self, st, module, rows, s):
        n_rows, n_cols = rows.shape
        groups = 1 if s["group_size"] == 0 else math.ceil(n_cols / s["group_size"])
        names = {module + ".weight_scale"}
        dtype, scale = st[module + ".weight_scale"]
        self.assertEqual((dtype, scale.shape), ("F32", (n_rows, groups)), module)
        if s["bits"] == 8:
            dtype, q = st[module + ".weight"]
            self.assertEqual((dtype, q.shape), ("I8", (n_rows, n_cols)), module)
            q = q.astype(np.int32)
            names.add(module + ".weight")
        else:
            dtype, packed = st[module + ".weight_packed"]
            self.assertEqual((dtype, packed.shape), ("I32", (n_rows, math.ceil(n_cols / 8))), module)
            q = unpack_int32(packed, n_cols, axis=1) - 8
            dtype, shape = st[module + ".weight_shape"]
            self.assertEqual((dtype, list(shape)), ("I64", [n_rows, n_cols]), module)
            self.assertNotIn(module + ".weight", st)
            names |= {module + ".weight_packed", module + ".weight_shape"}
        zp = np.zeros((n_rows, groups), dtype=np.int32)
        if not s["symmetric"]:
            dtype, z = st[module + ".weight_zero_point"]
            names.add(module + ".weight_zero_point")
            if s["bits"] == 8:
                self.assertEqual((dtype, z.shape), ("I8", (n_rows, groups)), module)
                zp = z.astype(np.int32)
            else:
                self.assertEqual((dtype, z.shape), ("I32", (math.ceil(n_rows / 8), groups)), module)
                zp = unpack_int32(z, n_rows, axis=0) - 8
        else:
            self.assertNotIn(module + ".weight_zero_point", st)
        lo, hi = -(1 << (s["bits"] - 1)), (1 << (s["bits"] - 1)) - 1
        self.assertTrue(q.min() >= lo and q.max() <= hi and zp.min() >= lo and zp.max() <= hi, module)
        group_of = np.arange(n_cols) // (s["group_size"] or n_cols)
        deq = scale[:, group_of] * (q - zp[:, group_of]).astype(F32)
        np.testing.assert_array_equal(deq.astype(F32), rows, err_msg=module)
        return names

    def check_config(self, config, expected_format, modules_by_scheme, ignored, t, schemes):
        self.assertEqual((config["model_type"], config["hidden_size"], config["num_key_value_heads"]), ("llama", 64, 2))
        qc = config["quantization_config"]
        self.assertEqual(qc["quant_method"], "compressed-tensors")
        self.assertEqual(qc["quantization_status"], "compressed")
        self.assertEqual(qc["format"], expected_format)
        self.assertEqual(sorted(qc["ignore"]), sorted(ignored))
        groups = list(qc["config_groups"].values())
        self.assertEqual(len(groups), len(modules_by_scheme))
        for group in groups:
            w = group["weights"]
            key = (w["num_bits"], w["group_size"] or 0, w["symmetric"])
            self.assertEqual(w["type"], "int")
            self.assertEqual(w["strategy"], "channel" if key[1] == 0 else "group")
            self.assertEqual(group["format"], "int-quantized" if key[0] == 8 else "pack-quantized")
            expected_targets = ["Linear"] if len(groups) == 1 else modules_by_scheme[key]
            self.assertEqual(sorted(group["targets"]), sorted(expected_targets))
        if expected_format != "mixed-precision":
            self.assertNotIn("sparsity_config", qc)
            return
        block_linears = [n for n in t if is_linear(n) and n != "lm_head.weight"]
        zeros = sum(int(np.count_nonzero(t[n] == 0)) for n in block_linears)
        total = sum(t[n].size for n in block_linears)
        sc = qc["sparsity_config"]
        self.assertEqual((sc["format"], sc["sparsity_structure"]), ("dense", "unstructured"))
        self.assertAlmostEqual(sc["global_sparsity"], zeros / total, places=12)
        self.assertGreater(sc["global_sparsity"], 0.05)  # layers.1.mlp.up is half zeros

    def test_mixed_schemes(self):
        self.check_dir("ct_mixed", "mixed-precision")

    def test_uniform_int4_group_32(self):
        self.check_dir("ct_w4", "pack-quantized")

    def test_uniform_int8_per_channel(self):
        self.check_dir("ct_w8", "int-quantized")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
