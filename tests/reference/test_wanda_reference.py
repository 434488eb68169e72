#!/usr/bin/python3
"""PyTorch parity of loom's pruning masks and SmoothQuant (compress/algo).

Draws fixed float32 weights W [64, 256] and W2 [32, 256] (two linears fed by one input), a
LayerNorm's weight and bias, and calibration samples X [tokens, 256]; runs
`wanda-reference-driver` (loom's side) and compares with the published code written in torch:
  - Wanda (Sun et al. 2023, locuslab/wanda lib/layerwrapper.py + lib/prune.py `prune_wanda`):
    scaler_row as WrappedGPT.add_batch accumulates it (one sample per batch), metric
    |W| * sqrt(scaler_row), per-row stable sort, the first int(cols * sparsity) pruned; 2:4 by
    the n smallest of each group of 4. `prune_wanda` uses torch.topk there, whose order among
    equal values is unspecified; the reference takes a stable sort instead (the same set
    wherever a group has no ties, which the script checks) so ties go to the lower column.
  - magnitude (`prune_magnitude`): thresh = sort(|W|.flatten())[int(numel * sparsity)],
    pruned = |W| <= thresh; its 2:4 like Wanda's on |W|.
  - SmoothQuant (mit-han-lab/smoothquant smooth.py `smooth_ln_fcs`): act_scales = max |X_j|,
    weight_scales = max over both linears of max |W_:,j| clamped at 1e-5, scales =
    (act^α / weight^(1−α)).clamp(min=1e-5); the norm's weight and bias divided, the linears'
    columns multiplied; and the W8A8 per-token int8 activations (round half to even).
Three cases: random (sparsity 0.5), outlier channels (0.5), and one built for ties (0.3):
exact ties of the metric inside rows (identical input columns, equal |W|), a row of zeros, a
dead input column and a dead weight column.

Masks and int8 codes must be equal exactly; scales and smoothed weights within RTOL relative;
Σx² within 1e-12 of a float64 sum. Exit 0 when everything matches.

With --perturb NAME the torch side uses a deliberately wrong rule; the script then exits 0
only if the comparison finds mismatches, and only in the outputs that rule touches:
  wanda_ties_to_higher_column  Wanda's ties broken towards the higher column
  magnitude_strict             magnitude prunes |W| < thresh (not <=)
  smooth_alpha_swapped         SmoothQuant scales act^(1−α) / weight^α (visible at α != 0.5)

Usage: test_wanda_reference.py DRIVER WORK_DIR [--perturb NAME]  (CTest passes them).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

RTOL = 1e-6
ROWS, W2_ROWS, COLS = 64, 32, 256
ALPHAS = (0.5, 0.8)
PERTURBATIONS = {
    "wanda_ties_to_higher_column": lambda case, key: case.startswith("ties") and key.startswith("wanda"),
    "magnitude_strict": lambda case, key: key == "magnitude",
    "smooth_alpha_swapped": lambda case, key: key.startswith("smooth") and key.endswith("_0.8"),
}


# ---- inputs ------------------------------------------------------------------------------

def make_case(name, seed, sparsity):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    w2 = (0.5 * rng.standard_normal((W2_ROWS, COLS))).astype(np.float32)
    token_counts = [int(t) for t in rng.integers(8, 33, size=8)]
    xs = [rng.standard_normal((t, COLS)).astype(np.float32) for t in token_counts]
    if name.startswith("outliers"):
        for x in xs:
            x[:, [3, 77, 150]] *= 50.0
        w = (w * rng.exponential(1.0, (ROWS, COLS))).astype(np.float32)
    if name.startswith("ties"):
        # Four plateaus of 64 identical input columns (scaled 1, 2, 3, 4), so rows 1..3, whose
        # |W| is one value, have runs of exactly equal metrics; sparsity 0.3 (76 per row)
        # cuts through the second run. Row 0 is mostly zeros; input column 200 never fires;
        # weight column 201 is zero in both linears.
        for x in xs:
            base = x[:, :1].copy()
            for g in range(4):
                x[:, 64 * g:64 * (g + 1)] = base * np.float32(g + 1)
            x[:, 200] = 0.0
        w[0, :] = 0.0
        w[0, rng.choice(COLS, 10, replace=False)] = rng.standard_normal(10).astype(np.float32)
        for r in (1, 2, 3):
            w[r, :] = np.float32(0.25 * r) * np.where(rng.random(COLS) < 0.5, -1.0, 1.0).astype(np.float32)
        w[:, 201] = 0.0
        w2[:, 201] = 0.0
    norm_weight = (1.0 + 0.1 * rng.standard_normal(COLS)).astype(np.float32)
    norm_bias = (0.1 * rng.standard_normal(COLS)).astype(np.float32)
    return {"name": name, "rows": ROWS, "cols": COLS, "w2_rows": W2_ROWS, "sparsity": sparsity,
            "alphas": list(ALPHAS), "w": w.reshape(-1).tolist(), "w2": w2.reshape(-1).tolist(),
            "norm_weight": norm_weight.tolist(), "norm_bias": norm_bias.tolist(),
            "samples": [{"tokens": t, "x": x.reshape(-1).tolist()} for t, x in zip(token_counts, xs)]}


def make_cases():
    return [make_case("random/s0.5", 0, 0.5), make_case("outliers/s0.5", 1, 0.5), make_case("ties/s0.3", 2, 0.3)]


# ---- the published computations in torch --------------------------------------------------

class WrappedGPT:
    """lib/layerwrapper.py: the running mean of ‖X_j‖² over calibration samples."""

    def __init__(self, columns):
        self.scaler_row = torch.zeros(columns)
        self.nsamples = 0

    def add_batch(self, inp):
        if len(inp.shape) == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        inp = inp.reshape((-1, inp.shape[-1])).t()
        self.scaler_row *= self.nsamples / (self.nsamples + tmp)
        self.nsamples += tmp
        inp = inp.type(torch.float32)
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples


def stable_order(metric, ties_high):
    """Column order of each row, ascending; ties to the lower column (or the higher one)."""
    if ties_high:
        flipped = torch.flip(metric, dims=[1])
        return metric.shape[1] - 1 - torch.sort(flipped, dim=-1, stable=True)[1]
    return torch.sort(metric, dim=-1, stable=True)[1]


def prune_n_m(metric, n, m, ties_high):
    mask = torch.zeros_like(metric) == 1
    tie_groups_differing = 0
    for ii in range(0, metric.shape[1], m):
        tmp = metric[:, ii:ii + m].float()
        chosen = ii + stable_order(tmp, ties_high)[:, :n]
        mask.scatter_(1, chosen, True)
        by_topk = torch.zeros_like(tmp) == 1
        by_topk.scatter_(1, torch.topk(tmp, n, dim=1, largest=False)[1], True)
        by_sort = torch.zeros_like(tmp) == 1
        by_sort.scatter_(1, chosen - ii, True)
        for r in torch.nonzero((by_topk != by_sort).any(dim=1)).reshape(-1).tolist():
            if len(set(tmp[r].tolist())) == m:
                raise AssertionError(f"topk and the stable sort disagree on a group without ties (row {r}, column {ii})")
            tie_groups_differing += 1
    return mask, tie_groups_differing


def reference(case, perturb):
    w = torch.tensor(case["w"], dtype=torch.float32).reshape(ROWS, COLS)
    w2 = torch.tensor(case["w2"], dtype=torch.float32).reshape(W2_ROWS, COLS)
    xs = [torch.tensor(s["x"], dtype=torch.float32).reshape(s["tokens"], COLS) for s in case["samples"]]
    sparsity = case["sparsity"]
    out = {}

    wrapped = WrappedGPT(COLS)
    for x in xs:
        wrapped.add_batch(x.unsqueeze(0))
    x_all = torch.cat(xs)
    out["absmax"] = x_all.abs().amax(dim=0)
    out["sq_sum"] = (x_all.double() ** 2).sum(dim=0)

    ties_high = perturb == "wanda_ties_to_higher_column"
    w_metric = torch.abs(w) * torch.sqrt(wrapped.scaler_row.reshape((1, -1)))
    w_mask = torch.zeros_like(w_metric) == 1
    indices = stable_order(w_metric, ties_high)[:, :int(w_metric.shape[1] * sparsity)]
    w_mask.scatter_(1, indices, True)
    out["wanda"] = ~w_mask
    mask, wanda_ties = prune_n_m(w_metric, 2, 4, ties_high)
    out["wanda_2_4"] = ~mask

    magnitude = torch.abs(w)
    thresh = torch.sort(magnitude.flatten())[0][int(w.numel() * sparsity)]
    out["magnitude"] = ~(magnitude < thresh if perturb == "magnitude_strict" else magnitude <= thresh)
    mask, magnitude_ties = prune_n_m(magnitude, 2, 4, False)
    out["magnitude_2_4"] = ~mask

    act_scales = out["absmax"]
    weight_scales = torch.cat([fc.abs().max(dim=0, keepdim=True)[0] for fc in (w, w2)], dim=0)
    weight_scales = weight_scales.max(dim=0)[0].clamp(min=1e-5)
    for alpha in case["alphas"]:
        if perturb == "smooth_alpha_swapped":
            scales = (act_scales.pow(1 - alpha) / weight_scales.pow(alpha)).clamp(min=1e-5)
        else:
            scales = (act_scales.pow(alpha) / weight_scales.pow(1 - alpha)).clamp(min=1e-5)
        suffix = f"_{alpha}"
        out["smooth_scales" + suffix] = scales
        out["smoothed_norm_weight" + suffix] = torch.tensor(case["norm_weight"]).div_(scales)
        out["smoothed_norm_bias" + suffix] = torch.tensor(case["norm_bias"]).div_(scales)
        out["smoothed_w" + suffix] = w.clone().mul_(scales.view(1, -1))
        out["smoothed_w2" + suffix] = w2.clone().mul_(scales.view(1, -1))

    x0 = xs[0]
    act = x0.abs().amax(dim=1, keepdim=True) / 127.0
    act = torch.where(act > 0, act, torch.ones_like(act))
    out["act_int8"] = torch.round(x0 / act).clamp(-127, 127)
    out["act_scales"] = act.reshape(-1)

    # How close the torch metric comes to a tie it does not have at Wanda's cut: a measure of
    # how much rounding the comparison could tolerate.
    sorted_metric = torch.sort(w_metric, dim=-1)[0]
    k = int(COLS * sparsity)
    below, above = sorted_metric[:, k - 1].double(), sorted_metric[:, k].double()
    gaps = ((above - below) / above.clamp(min=1e-30))[above != below]
    info = {"tie_groups": (wanda_ties, magnitude_ties), "min_gap": float(gaps.min()) if gaps.numel() else None}
    return out, info


# ---- comparison ----------------------------------------------------------------------------

def tolerance(key):
    """(rtol, exact): masks and codes are exact, Σx² is double, the rest float32 arithmetic."""
    if key in ("wanda", "wanda_2_4", "magnitude", "magnitude_2_4", "act_int8", "absmax"):
        return 0.0
    if key == "sq_sum":
        return 1e-12
    return RTOL


def compare(cases, loom_out, perturb):
    failing = []
    for case, got in zip(cases, loom_out["cases"]):
        assert got["name"] == case["name"], (got["name"], case["name"])
        want, info = reference(case, perturb)
        print(f"{case['name']}: groups with tied metrics where topk's choice differs: wanda {info['tie_groups'][0]}, "
              f"magnitude {info['tie_groups'][1]}; smallest relative gap at Wanda's cut {info['min_gap']:.2e}")
        for key, expected in want.items():
            expected = expected.detach().double().numpy().reshape(-1)
            if key not in got["outputs"]:
                print(f"FAIL {case['name']}: loom gave no '{key}'")
                failing.append((case["name"], key))
                continue
            actual = np.asarray(got["outputs"][key], dtype=np.float64).reshape(-1)
            if actual.shape != expected.shape:
                print(f"FAIL {case['name']}.{key}: {actual.size} values, expected {expected.size}")
                failing.append((case["name"], key))
                continue
            rtol = tolerance(key)
            bad = ~(np.abs(actual - expected) <= rtol * np.abs(expected))
            if bad.any():
                i = int(np.argmax(bad))
                print(f"FAIL {case['name']}.{key}[{i}]: loom {actual[i]!r} torch {expected[i]!r} "
                      f"({int(bad.sum())} of {bad.size} differ, rtol {rtol:g})")
                failing.append((case["name"], key))
    return failing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("driver")
    parser.add_argument("work_dir")
    parser.add_argument("--perturb", choices=sorted(PERTURBATIONS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.work_dir, exist_ok=True)
    cases = make_cases()
    in_path, out_path = os.path.join(args.work_dir, "inputs.json"), os.path.join(args.work_dir, "loom.json")
    with open(in_path, "w") as f:
        json.dump({"cases": cases}, f)
    if os.path.exists(out_path):
        os.remove(out_path)
    result = subprocess.run([args.driver, in_path, out_path], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"driver failed (exit {result.returncode}): {result.stderr.strip()}")
        return 1
    with open(out_path) as f:
        loom_out = json.load(f)
    if len(loom_out["cases"]) != len(cases):
        print(f"driver returned {len(loom_out['cases'])} cases, expected {len(cases)}")
        return 1
    failing = compare(cases, loom_out, args.perturb)
    if args.perturb:
        touched = PERTURBATIONS[args.perturb]
        stray = [f"{c}.{k}" for c, k in failing if not touched(c, k)]
        if not failing or stray:
            print(f"perturbation {args.perturb}: expected mismatches in the outputs it touches only, "
                  f"got {stray or 'none'}")
            return 1
        print(f"perturbation {args.perturb}: caught in {len(failing)} outputs, as it should be")
        return 0
    print("all match" if not failing else f"{len(failing)} outputs differ")
    return 0 if not failing else 1


if __name__ == "__main__":
    sys.exit(main())
