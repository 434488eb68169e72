#!/usr/bin/python3
"""PyTorch parity of loom's alignment losses (core/align).

Draws fixed random float32 inputs for every function of core/align/losses.h and rl.h
(three seeds each, plus edge cases: equal chosen/rejected, margins large enough to saturate
the sigmoid, masked prompt and padding tokens, groups of equal rewards), writes them as
JSON, runs `align-reference-driver` (loom's side) and compares every loss, statistic and
gradient with an independent PyTorch implementation: autograd in float64 on the same
float32 values, formulas written the way TRL / the papers write them (GAE as a discounted
matrix product over the compacted tokens rather than loom's backward recurrence).

A value passes when |loom - torch| <= ATOL + RTOL * |torch|. The worst differences per op
are printed. Exit 0 when everything matches.

With --perturb NAME the torch side uses a deliberately wrong formula; the script then exits
0 only if the comparison finds mismatches, and only in the cases that formula touches —
proof that the comparison has teeth:
  grpo_std_unbiased   GRPO advantages normalised by the unbiased (n-1) std
  ppo_value_no_half   PPO value loss without its factor 0.5

Usage: test_align_reference.py DRIVER WORK_DIR [--perturb NAME]  (CTest passes them).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

RTOL, ATOL = 1e-5, 1e-6
PERTURBATIONS = {"grpo_std_unbiased": "grpo_advantages", "ppo_value_no_half": "ppo_value"}


# ---- inputs ------------------------------------------------------------------------------

def f32(rng, shape, scale=1.0, shift=0.0):
    return (shift + scale * rng.standard_normal(shape)).astype(np.float32)


def mask_of(rng, b, t):
    """A prompt of 0..2 masked tokens, then generated tokens, then 0..2 padding tokens."""
    m = np.zeros((b, t), dtype=np.uint8)
    for row in range(b):
        start, pad = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        m[row, start:t - pad] = 1
    return m


def listed(a):
    return np.asarray(a).reshape(-1).tolist()


def make_cases():
    cases = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        b, t = 6, 9
        rc, rr = f32(rng, b, 2.0), f32(rng, b, 2.0)
        cases.append(dict(name=f"rm/seed{seed}", op="rm", r_chosen=listed(rc), r_rejected=listed(rr),
                          margin=[0.0, 0.5, -0.25][seed]))
        pc, pr = f32(rng, b, 8.0, -60.0), f32(rng, b, 8.0, -60.0)
        rfc, rfr = pc + f32(rng, b, 2.0), pr + f32(rng, b, 2.0)
        lc, lr = rng.integers(1, 40, b), rng.integers(1, 40, b)
        for kind, beta in (("sigmoid", 0.1), ("ipo", 0.1), ("cdpo", 0.2), ("simpo", 2.0)):
            cases.append(dict(name=f"preference/{kind}/seed{seed}", op="preference", kind=kind, beta=beta,
                              label_smoothing=0.1 if kind == "cdpo" else 0.0,
                              simpo_gamma=0.5 if kind == "simpo" else 0.0,
                              policy_chosen=listed(pc), policy_rejected=listed(pr),
                              reference_chosen=listed(rfc), reference_rejected=listed(rfr),
                              length_chosen=listed(lc), length_rejected=listed(lr)))
        mask = mask_of(rng, b, t)
        bootstrap = seed != 1
        cases.append({"name": f"gae/seed{seed}", "op": "gae", "seq_len": t, "gamma": [1.0, 0.99, 0.9][seed],
                      "lambda": [0.95, 1.0, 0.8][seed], "rewards": listed(f32(rng, (b, t))),
                      "values": listed(f32(rng, (b, t + 1) if bootstrap else (b, t))), "mask": listed(mask)})
        cases.append(dict(name=f"whiten/seed{seed}", op="whiten", eps=1e-8,
                          advantages=listed(f32(rng, (b, t), 3.0, 1.0)), mask=listed(mask)))
        lnew = f32(rng, (b, t), 1.0, -2.0)
        lold = (lnew + f32(rng, (b, t), 0.2)).astype(np.float32)
        lref = (lnew + f32(rng, (b, t), 0.5)).astype(np.float32)
        cases.append(dict(name=f"ppo_policy/seed{seed}", op="ppo_policy", clip_eps=0.2, logp_new=listed(lnew),
                          logp_old=listed(lold), advantages=listed(f32(rng, (b, t))), mask=listed(mask)))
        vnew = f32(rng, (b, t))
        cases.append(dict(name=f"ppo_value/seed{seed}", op="ppo_value", clip_eps=0.2, values_new=listed(vnew),
                          values_old=listed(vnew + f32(rng, (b, t), 0.3)), returns=listed(f32(rng, (b, t))),
                          mask=listed(mask)))
        for op in ("kl_k1", "kl_k3"):
            cases.append(dict(name=f"{op}/seed{seed}", op=op, logp=listed(lnew), logp_ref=listed(lref)))
        group = [4, 3, 2][seed]
        rewards = f32(rng, 4 * group)
        if seed == 0:
            rewards[:group] = 1.0  # a group of equal rewards
        cases.append(dict(name=f"grpo_advantages/seed{seed}", op="grpo_advantages", group_size=group, eps=1e-4,
                          rewards=listed(rewards)))
        cases.append(dict(name=f"grpo_loss/seed{seed}", op="grpo_loss", clip_eps=0.2, beta=[0.04, 0.0, 0.1][seed],
                          logp_new=listed(lnew), logp_old=listed(lold), logp_ref=listed(lref),
                          seq_advantages=listed(f32(rng, b)), mask=listed(mask)))
    cases.append(dict(name="kl_controller", op="kl_controller", init_coef=0.2, target=6.0, horizon=10000.0,
                      kls=[12.0, 5.4, 0.0, 6.3, 100.0], n_steps=[256, 1000, 512, 64, 10000]))
    # Edge cases.
    same = [0.5, -3.0, 7.25, 0.0]
    cases.append(dict(name="rm/equal", op="rm", r_chosen=same, r_rejected=same, margin=0.0))
    cases.append(dict(name="rm/large_margins", op="rm", r_chosen=[80.0, -80.0, 30.0, 0.0],
                      r_rejected=[0.0, 0.0, -30.0, 45.0], margin=1.0))
    for kind in ("sigmoid", "ipo", "cdpo", "simpo"):
        cases.append(dict(name=f"preference/{kind}/equal", op="preference", kind=kind, beta=0.1,
                          label_smoothing=0.25 if kind == "cdpo" else 0.0, simpo_gamma=0.0,
                          policy_chosen=[-20.0, -35.5], policy_rejected=[-20.0, -35.5],
                          reference_chosen=[-20.0, -35.5], reference_rejected=[-20.0, -35.5],
                          length_chosen=[10, 7], length_rejected=[10, 7]))
        cases.append(dict(name=f"preference/{kind}/large_margin", op="preference", kind=kind, beta=0.5,
                          label_smoothing=0.1 if kind == "cdpo" else 0.0, simpo_gamma=1.0,
                          policy_chosen=[-10.0, -400.0], policy_rejected=[-400.0, -10.0],
                          reference_chosen=[-200.0, -200.0], reference_rejected=[-200.0, -200.0],
                          length_chosen=[2, 3], length_rejected=[3, 2]))
    return cases


# ---- the torch side ----------------------------------------------------------------------

def t64(values, grad=False):
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=torch.float64, requires_grad=grad)


def masked_mean(x, m):
    return (x * m).sum() / m.sum()


def reference(c, perturb):
    op = c["op"]
    if op == "rm":
        rc, rr = t64(c["r_chosen"], True), t64(c["r_rejected"], True)
        loss = -F.logsigmoid(rc - rr - c["margin"]).mean()
        loss.backward()
        return dict(loss=loss.item(), accuracy=(rc > rr).double().mean().item(),
                    mean_margin=(rc - rr).mean().item(), d_chosen=rc.grad, d_rejected=rr.grad)
    if op == "preference":
        pc, pr = t64(c["policy_chosen"], True), t64(c["policy_rejected"], True)
        rfc, rfr = t64(c["reference_chosen"]), t64(c["reference_rejected"])
        beta, kind = c["beta"], c["kind"]
        if kind == "simpo":
            lc, lr = t64(c["length_chosen"]), t64(c["length_rejected"])
            rew_c, rew_r = beta * pc / lc, beta * pr / lr
            losses = -F.logsigmoid(rew_c - rew_r - c["simpo_gamma"])
        else:
            logits = (pc - rfc) - (pr - rfr)
            rew_c, rew_r = beta * (pc - rfc), beta * (pr - rfr)
            if kind == "sigmoid":
                losses = -F.logsigmoid(beta * logits)
            elif kind == "ipo":
                losses = (logits - 1 / (2 * beta)) ** 2
            else:
                eps = c["label_smoothing"]
                losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
        loss = losses.mean()
        loss.backward()
        return dict(loss=loss.item(), reward_chosen=rew_c.mean().item(), reward_rejected=rew_r.mean().item(),
                    reward_margin=(rew_c - rew_r).mean().item(), accuracy=(rew_c > rew_r).double().mean().item(),
                    d_policy_chosen=pc.grad, d_policy_rejected=pr.grad)
    if op == "gae":
        t = c["seq_len"]
        rewards = t64(c["rewards"]).reshape(-1, t)
        mask = torch.tensor(c["mask"]).reshape(-1, t).bool()
        b = rewards.shape[0]
        values = t64(c["values"]).reshape(b, -1)
        bootstrap = values.shape[1] == t + 1
        adv, ret = torch.zeros(b, t, dtype=torch.float64), torch.zeros(b, t, dtype=torch.float64)
        gl = c["gamma"] * c["lambda"]
        for row in range(b):
            idx = mask[row].nonzero().flatten()
            n = len(idx)
            if n == 0:
                continue
            v = values[row, idx]
            v_next = torch.cat([v[1:], (values[row, t] if bootstrap else torch.zeros((), dtype=torch.float64))[None]])
            delta = rewards[row, idx] + c["gamma"] * v_next - v
            k = torch.arange(n, dtype=torch.float64)
            expo = k[None, :] - k[:, None]
            discount = torch.where(expo >= 0, gl ** expo.clamp(min=0), torch.zeros_like(expo))
            a = discount @ delta
            adv[row, idx], ret[row, idx] = a, a + v
        return dict(advantages=adv, returns=ret)
    if op == "whiten":
        a = t64(c["advantages"])
        m = torch.tensor(c["mask"]).bool()
        sel = a[m]
        out = torch.zeros_like(a)
        out[m] = (sel - sel.mean()) * torch.rsqrt(sel.var(unbiased=True) + c["eps"])
        return dict(whitened=out)
    if op == "ppo_policy":
        lnew, lold, adv = t64(c["logp_new"], True), t64(c["logp_old"]), t64(c["advantages"])
        m = t64(c["mask"])
        log_ratio = lnew - lold
        ratio = torch.exp(log_ratio)
        pg1 = -adv * ratio
        pg2 = -adv * torch.clamp(ratio, 1 - c["clip_eps"], 1 + c["clip_eps"])
        loss = masked_mean(torch.max(pg1, pg2), m)
        loss.backward()
        return dict(loss=loss.item(), clip_fraction=masked_mean((pg2 > pg1).double(), m).item(),
                    approx_kl=masked_mean((ratio - 1) - log_ratio, m).item(), d_logp_new=lnew.grad)
    if op == "ppo_value":
        v, v_old, ret = t64(c["values_new"], True), t64(c["values_old"]), t64(c["returns"])
        m = t64(c["mask"])
        v_clipped = torch.clamp(v, v_old - c["clip_eps"], v_old + c["clip_eps"])
        l1, l2 = (v - ret) ** 2, (v_clipped - ret) ** 2
        half = 1.0 if perturb == "ppo_value_no_half" else 0.5
        loss = half * masked_mean(torch.max(l1, l2), m)
        loss.backward()
        return dict(loss=loss.item(), clip_fraction=masked_mean((l2 > l1).double(), m).item(), d_values=v.grad)
    if op in ("kl_k1", "kl_k3"):
        logp, ref = t64(c["logp"], True), t64(c["logp_ref"])
        if op == "kl_k1":
            kl = logp - ref
        else:
            log_r = ref - logp
            kl = torch.exp(log_r) - log_r - 1
        kl.sum().backward()
        return dict(kl=kl.detach(), d_logp=logp.grad)
    if op == "kl_controller":
        coef, coefs = c["init_coef"], []
        for kl, n in zip(c["kls"], c["n_steps"]):
            error = float(np.clip(kl / c["target"] - 1, -0.2, 0.2))
            coef *= 1 + error * n / c["horizon"]
            coefs.append(coef)
        return dict(coefs=coefs)
    if op == "grpo_advantages":
        r = t64(c["rewards"]).reshape(-1, c["group_size"])
        std = r.std(dim=1, unbiased=perturb == "grpo_std_unbiased", keepdim=True)
        return dict(advantages=(r - r.mean(dim=1, keepdim=True)) / (std + c["eps"]))
    if op == "grpo_loss":
        lnew, lold, lref = t64(c["logp_new"], True), t64(c["logp_old"]), t64(c["logp_ref"])
        b = len(c["seq_advantages"])
        adv = t64(c["seq_advantages"])[:, None].expand(b, len(c["logp_new"]) // b).reshape(-1)
        m = t64(c["mask"])
        ratio = torch.exp(lnew - lold)
        surrogate = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - c["clip_eps"], 1 + c["clip_eps"]))
        kl = torch.exp(lref - lnew) - (lref - lnew) - 1
        loss = masked_mean(surrogate + c["beta"] * kl, m)
        loss.backward()
        clipped = (-adv * torch.clamp(ratio, 1 - c["clip_eps"], 1 + c["clip_eps"])) > -adv * ratio
        return dict(loss=loss.item(), clip_fraction=masked_mean(clipped.double(), m).item(),
                    kl=masked_mean(kl, m).item(), d_logp_new=lnew.grad)
    raise ValueError(f"unknown op {op}")


# ---- comparison --------------------------------------------------------------------------

def compare(cases, loom_out, perturb):
    """Returns (names of failing cases, {op: [worst abs diff, largest fraction of the tolerance
    used, where the worst abs diff is]})."""
    failing, worst = [], {}
    for case, got in zip(cases, loom_out["cases"]):
        assert got["name"] == case["name"], (got["name"], case["name"])
        want = reference(case, perturb)
        case_ok = True
        for key, expected in want.items():
            expected = np.asarray(torch.as_tensor(expected).detach().numpy() if torch.is_tensor(expected)
                                  else expected, dtype=np.float64).reshape(-1)
            if key not in got["outputs"]:
                print(f"FAIL {case['name']}: loom gave no '{key}'")
                case_ok = False
                continue
            actual = np.asarray(got["outputs"][key], dtype=np.float64).reshape(-1)
            if actual.shape != expected.shape:
                print(f"FAIL {case['name']}.{key}: {actual.size} values, expected {expected.size}")
                case_ok = False
                continue
            diff = np.abs(actual - expected)
            bad = ~(diff <= ATOL + RTOL * np.abs(expected))
            used = diff / (ATOL + RTOL * np.abs(expected))
            entry = worst.setdefault(case["op"], [0.0, 0.0, ""])
            if diff.size and diff.max() > entry[0]:
                entry[0], entry[2] = float(diff.max()), f"{case['name']}.{key}"
            if diff.size:
                entry[1] = max(entry[1], float(used.max()))
            if bad.any():
                i = int(np.argmax(bad))
                print(f"FAIL {case['name']}.{key}[{i}]: loom {actual[i]!r} torch {expected[i]!r} "
                      f"({int(bad.sum())} of {bad.size} out of tolerance)")
                case_ok = False
        if not case_ok:
            failing.append(case["name"])
    return failing, worst


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
    failing, worst = compare(cases, loom_out, args.perturb)
    print(f"{len(cases)} cases, rtol {RTOL:g} atol {ATOL:g}; worst |loom - torch| per op:")
    for op, (abs_diff, used, where) in sorted(worst.items()):
        print(f"  {op:16s} abs {abs_diff:.3e}  tolerance used {used:.3f}  ({where})")
    if args.perturb:
        touched = PERTURBATIONS[args.perturb]
        stray = [n for n in failing if not n.startswith(touched + "/")]
        if not failing or stray:
            print(f"perturbation {args.perturb}: expected mismatches in {touched} cases only, "
                  f"got {failing or 'none'}")
            return 1
        print(f"perturbation {args.perturb}: caught in {len(failing)} cases, as it should be")
        return 0
    print("all match" if not failing else f"{len(failing)} cases differ: {failing}")
    return 0 if not failing else 1


if __name__ == "__main__":
    sys.exit(main())
