#!/usr/bin/python3
"""PyTorch parity of loom's GPTQ and SparseGPT (compress/algo).

Draws a fixed random weight W [64, 256] (float32) and calibration inputs X [512, 256] with
correlated columns spread over two orders of magnitude, H = Xᵀ X in float64 (one variant with
a dead, all-zero input column), writes them as JSON, runs `compress-reference-driver` (loom's
side) and compares with an independent torch implementation of the published algorithms
(gptq.py `fasterquant`, sparsegpt.py `fasterprune`): the inverse-Hessian factor in float64
(cholesky, cholesky_inverse, upper cholesky), stored as float32; the column loop in float32,
with torch matmuls for the lazy block updates, as the published code runs it. The quantizer
is loom's (core/quant/quantized.h): gptq's quant.py except that symmetric ranges always
mirror.

Cases: GPTQ int4 per-channel, int4 g128, int4 g32 (asymmetric), int8 asymmetric per-channel,
int4 g128 with block 32 (groups spanning blocks), each with act order off and on, and int4
g32 on the H with a dead column; SparseGPT 50% and 2:4, on both Hessians.

A case passes when the factor matches (perm and dead columns exactly, damp to 1e-12 relative,
max |ΔU| <= 1e-5 · max |U|), at least 99.9% of the codes (GPTQ) or of the mask entries
(SparseGPT) are identical, at least 99.9% of the final weights agree to
ATOL + RTOL · |torch|, every group scale of the identical rows agrees to RTOL, and the
published error sum Σ (w − q)² / U[p, p]² / 2 agrees to 1e-4 relative. Codes may
flip on rounding ties between float32 summation orders; a flip changes the rest of its row, so
the weight criterion is a fraction rather than a maximum. The observed numbers are printed.

With --perturb NAME the torch side uses a deliberately wrong algorithm; the script then exits
0 only if the comparison finds mismatches, and only in the cases that change touches:
  groups_from_w1           group parameters from the intra-block working copy W1 instead of
                           the lazily updated W (GPTQ with groups not aligned to blocks)
  sparse_metric_magnitude  the SparseGPT mask from W² alone, without U[p, p]² (SparseGPT)

Usage: test_compress_reference.py DRIVER WORK_DIR [--perturb NAME]  (CTest passes them).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

RTOL, ATOL = 1e-4, 1e-6
MIN_SAME = 0.999
ROWS, N, TOKENS = 64, 256, 512


def touches_groups_from_w1(c):
    return c["method"] == "gptq" and c["group_size"] > 0 and not c["act_order"] and c["group_size"] != c["block_size"]


PERTURBATIONS = {
    "groups_from_w1": touches_groups_from_w1,
    "sparse_metric_magnitude": lambda c: c["method"] == "sparsegpt",
}


# ---- inputs ------------------------------------------------------------------------------

def hessian(rng, dead_column=None):
    z = rng.standard_normal((TOKENS, N))
    x = z.copy()
    for k in (1, 2, 3):
        x[:, k:] += 0.6 / k * z[:, :-k]
    x *= np.exp(rng.standard_normal(N))[None, :]
    if dead_column is not None:
        x[:, dead_column] = 0.0
    return x.T @ x


def make_inputs():
    rng = np.random.default_rng(2024)
    hessians = {"correlated": hessian(rng), "dead": hessian(rng, dead_column=37)}
    w = (0.05 * rng.standard_normal((ROWS, N))).astype(np.float32)
    base = dict(rows=ROWS, n=N, w=w.reshape(-1).tolist(), percdamp=0.01)
    cases = []
    for act_order in (False, True):
        order = "act" if act_order else "natural"
        for label, bits, group, sym, block in (("int4-g0", 4, 0, True, 128), ("int4-g128", 4, 128, True, 128),
                                                ("int4-g32-asym", 4, 32, False, 128), ("int8-asym", 8, 0, False, 128),
                                                ("int4-g128-block32", 4, 128, True, 32)):
            cases.append(dict(base, name=f"gptq/{label}/{order}", method="gptq", hessian="correlated", bits=bits,
                              group_size=group, symmetric=sym, block_size=block, act_order=act_order))
    cases.append(dict(base, name="gptq/int4-g32-asym/dead", method="gptq", hessian="dead", bits=4, group_size=32,
                      symmetric=False, block_size=128, act_order=False))
    for key in ("correlated", "dead"):
        cases.append(dict(base, name=f"sparsegpt/50%/{key}", method="sparsegpt", hessian=key, sparsity=0.5,
                          prune_n=0, prune_m=0, block_size=128))
        cases.append(dict(base, name=f"sparsegpt/2:4/{key}", method="sparsegpt", hessian=key, sparsity=0.0,
                          prune_n=2, prune_m=4, block_size=128))
    return {k: v.reshape(-1).tolist() for k, v in hessians.items()}, cases


# ---- torch reference ---------------------------------------------------------------------

def factor(h, percdamp, act_order):
    h = h.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    perm = torch.sort(torch.diag(h), descending=True, stable=True)[1] if act_order else None
    if perm is not None:
        h = h[perm][:, perm]
    damp = percdamp * torch.mean(torch.diag(h))
    h += damp * torch.eye(h.shape[0], dtype=h.dtype)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    return u.float(), dead, perm, damp.item()


def find_params(x, bits, sym):
    """loom's quantizer (quant.py, symmetric ranges always mirrored): per row of x."""
    maxq = 2 ** bits - 1
    zero_t = torch.zeros(x.shape[0], dtype=x.dtype)
    lo, hi = torch.minimum(x.min(1)[0], zero_t), torch.maximum(x.max(1)[0], zero_t)
    if sym:
        hi = torch.maximum(-lo, hi)
        lo = -hi
    both = (lo == 0) & (hi == 0)
    lo[both], hi[both] = -1, 1
    scale = (hi - lo) / maxq
    zero = torch.full_like(scale, (maxq + 1) // 2) if sym else torch.round(-lo / scale)
    return scale, zero


def quantize(w, scale, zero, bits):
    code = torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)
    return code, scale * (code - zero)


def gptq(c, w, u, dead, perm, perturb):
    bits, group, sym, block = c["bits"], c["group_size"], c["symmetric"], c["block_size"]
    rows, n = w.shape
    w = w.clone()
    groups = n // group if group else 1
    scales, zeros = torch.zeros(rows, groups), torch.zeros(rows, groups)
    if group == 0:
        scales[:, 0], zeros[:, 0] = find_params(w, bits, sym)
    w[:, dead] = 0
    if perm is not None and group:
        for g in range(groups):
            scales[:, g], zeros[:, g] = find_params(w[:, g * group:(g + 1) * group], bits, sym)
        w = w[:, perm]
    elif perm is not None:
        w = w[:, perm]
    q_all, codes, losses = torch.zeros_like(w), torch.zeros_like(w), torch.zeros_like(w)
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        w1, err1, u1 = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1), u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            p = i1 + i
            natural = perm[p].item() if perm is not None else p
            if group and perm is None and p % group == 0:
                source = w1[:, i:i + group] if perturb == "groups_from_w1" else w[:, p:p + group]
                scales[:, p // group], zeros[:, p // group] = find_params(source, bits, sym)
            g = natural // group if group else 0
            code, q = quantize(w1[:, i], scales[:, g], zeros[:, g], bits)
            d = u1[i, i]
            codes[:, p], q_all[:, p] = code, q
            losses[:, p] = (w1[:, i] - q) ** 2 / d ** 2
            e = (w1[:, i] - q) / d
            w1[:, i:] -= e.unsqueeze(1).matmul(u1[i, i:].unsqueeze(0))
            err1[:, i] = e
        w[:, i2:] -= err1.matmul(u[i1:i2, i2:])
    if perm is not None:
        inv = torch.argsort(perm)
        q_all, codes = q_all[:, inv], codes[:, inv]
    return dict(w=q_all, codes=codes, scales=scales, loss=losses.sum().item() / 2)


def sparsegpt(c, w, u, dead, perturb):
    sparsity, prunen, prunem, block = c["sparsity"], c["prune_n"], c["prune_m"], c["block_size"]
    rows, n = w.shape
    w = w.clone()
    w[:, dead] = 0
    keep = torch.ones(rows, n, dtype=torch.bool)
    loss = 0.0
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        w1, err1, u1 = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1), u[i1:i2, i1:i2]
        scale = torch.ones(i2 - i1) if perturb == "sparse_metric_magnitude" else torch.diag(u1) ** 2
        if prunen == 0:
            metric = w1 ** 2 / scale.reshape(1, -1)
            threshold = torch.sort(metric.flatten())[0][int(metric.numel() * sparsity)]
            mask1 = metric <= threshold
        else:
            mask1 = torch.zeros_like(w1, dtype=torch.bool)
        for i in range(i2 - i1):
            if prunen and i % prunem == 0:
                metric = w1[:, i:i + prunem] ** 2 / scale[i:i + prunem].reshape(1, -1)
                mask1.scatter_(1, i + torch.topk(metric, prunen, dim=1, largest=False)[1], True)
            q = w1[:, i].clone()
            q[mask1[:, i]] = 0
            d = u1[i, i]
            loss += (((w1[:, i] - q) ** 2) / d ** 2).sum().item() / 2
            e = (w1[:, i] - q) / d
            w1[:, i:] -= e.unsqueeze(1).matmul(u1[i, i:].unsqueeze(0))
            w1[:, i] = q
            err1[:, i] = e
        w[:, i1:i2] = w1
        keep[:, i1:i2] = ~mask1
        w[:, i2:] -= err1.matmul(u[i1:i2, i2:])
    return dict(w=w, keep=keep, loss=loss)


# ---- comparison --------------------------------------------------------------------------

def compare_case(c, h, got, perturb):
    """Returns (ok, summary line)."""
    h = torch.tensor(h, dtype=torch.float64).reshape(N, N)
    w = torch.tensor(c["w"], dtype=torch.float32).reshape(ROWS, N)
    u, dead, perm, damp = factor(h, c["percdamp"], c.get("act_order", False))
    problems = []
    u_got = torch.tensor(got["u"], dtype=torch.float32).reshape(N, N)
    du = (u_got - u).abs().max().item() / u.abs().max().item()
    if du > 1e-5:
        problems.append(f"U rel diff {du:.2e}")
    if got["dead"] != dead.to(torch.uint8).tolist():
        problems.append("dead columns differ")
    if (perm.tolist() if perm is not None else []) != got["perm"]:
        problems.append("act-order permutation differs")
    if abs(got["damp"] - damp) > 1e-12 * abs(damp):
        problems.append(f"damp {got['damp']} vs {damp}")
    w_got = torch.tensor(got["w"], dtype=torch.float32).reshape(ROWS, N)
    if c["method"] == "gptq":
        want = gptq(c, w, u, dead, perm, perturb)
        codes = torch.tensor(got["codes"], dtype=torch.float32).reshape(ROWS, N)
        same_rows = (codes == want["codes"]).all(1)
        same = (codes == want["codes"]).double().mean().item()
        scales = torch.tensor(got["scales"], dtype=torch.float32).reshape(ROWS, -1)
        ds = ((scales - want["scales"]).abs() / want["scales"].abs())[same_rows]
        ds = ds.max().item() if ds.numel() else 0.0
        if ds > RTOL:
            problems.append(f"scale rel diff {ds:.2e} in rows with identical codes")
        detail = f"codes same {same:.5f} ({int((1 - same) * ROWS * N + 0.5)} differ), scale rel {ds:.1e}"
    else:
        want = sparsegpt(c, w, u, dead, perturb)
        keep = torch.tensor(got["keep"], dtype=torch.bool).reshape(ROWS, N)
        same = (keep == want["keep"]).double().mean().item()
        zeros = (w_got == 0).double().mean().item()
        detail = f"mask same {same:.5f} ({int((1 - same) * ROWS * N + 0.5)} differ), zeros {zeros:.4f}"
    if same < MIN_SAME:
        problems.append(f"only {same:.5f} identical")
    diff = (w_got - want["w"]).abs()
    close = (diff <= ATOL + RTOL * want["w"].abs()).double().mean().item()
    if close < MIN_SAME:
        problems.append(f"only {close:.5f} of weights within tolerance")
    dloss = abs(got["loss"] - want["loss"]) / max(want["loss"], 1e-30)
    if dloss > 1e-4:
        problems.append(f"loss rel diff {dloss:.2e}")
    line = (f"{c['name']:28s} U rel {du:.1e}  {detail}  w close {close:.5f} max|Δw| {diff.max().item():.1e}  "
            f"loss rel {dloss:.1e}")
    return not problems, line + ("" if not problems else "  <-- " + "; ".join(problems))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("driver")
    parser.add_argument("work_dir")
    parser.add_argument("--perturb", choices=sorted(PERTURBATIONS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.work_dir, exist_ok=True)
    hessians, cases = make_inputs()
    in_path, out_path = os.path.join(args.work_dir, "inputs.json"), os.path.join(args.work_dir, "loom.json")
    with open(in_path, "w") as f:
        json.dump({"hessians": hessians, "cases": cases}, f)
    if os.path.exists(out_path):
        os.remove(out_path)
    result = subprocess.run([args.driver, in_path, out_path], capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")))
    if result.returncode != 0:
        print(f"driver failed (exit {result.returncode}): {result.stderr.strip()}")
        return 1
    with open(out_path) as f:
        loom_out = json.load(f)["cases"]
    if len(loom_out) != len(cases):
        print(f"driver returned {len(loom_out)} cases, expected {len(cases)}")
        return 1
    failing = []
    print(f"{len(cases)} cases (torch: factor float64, loop float32); need >= {MIN_SAME} identical codes/masks "
          f"and weights within {ATOL:g} + {RTOL:g}·|torch|")
    for c, got in zip(cases, loom_out):
        if got.get("name") != c["name"]:
            print(f"driver case order differs: {got.get('name')} vs {c['name']}")
            return 1
        ok, line = compare_case(c, hessians[c["hessian"]], got, args.perturb)
        print("  " + line)
        if not ok:
            failing.append(c["name"])
    if args.perturb:
        touched = PERTURBATIONS[args.perturb]
        stray = [c["name"] for c in cases if c["name"] in failing and not touched(c)]
        missed = [c["name"] for c in cases if c["name"] not in failing and touched(c)]
        if not failing or stray or missed:
            print(f"perturbation {args.perturb}: expected mismatches in exactly the cases it touches; "
                  f"unexpected {stray or 'none'}, missed {missed or 'none'}")
            return 1
        print(f"perturbation {args.perturb}: caught in {len(failing)} cases, as it should be")
        return 0
    print("all match" if not failing else f"{len(failing)} cases differ: {failing}")
    return 0 if not failing else 1


if __name__ == "__main__":
    sys.exit(main())
