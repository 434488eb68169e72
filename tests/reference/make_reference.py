#!/usr/bin/python3
"""Golden numbers for loom's transformer, written by an independent PyTorch implementation.

For each case (GPT-2 and Llama families, RoPE scaling variants, LM and scalar heads) this
builds the model in plain PyTorch (nn.Linear, nn.Embedding, its own attention, RoPE and
norms; nothing from loom), draws random weights from torch's RNG, and writes one HDF5 file
<out>/<case>.h5 holding, under format_version 1:

  attrs          format_version, case, head ("lm" | "scalar")
  config/        attrs: family, vocab_size, d_model, n_layers, n_heads, n_kv_heads, d_ff,
                 max_seq_len, norm_eps, rope_theta, rope_scaling ("none"|"linear"|"ntk"),
                 rope_factor, tie_embeddings, bias
  weights/<name> f32, by loom parameter name (e.g. layers.1.attn.qkv.weight)
  inputs/ids, inputs/targets   i32 [B, T]; targets < 0 are ignored (-100 and -1 both used)
  inputs/dvalues               f32 [B, T] (scalar head: the loss is sum(values * dvalues))
  outputs/logits [B*T, V], outputs/loss (mean over counted targets), outputs/loss_sum,
  outputs/count; scalar head: outputs/values [B, T]
  grads/<name>   gradient of the loss above w.r.t. every parameter
  trajectory/    (LM cases) 10 AdamW steps on the same batch: attrs with the optimizer,
                 schedule and clipping settings; losses, lrs, grad_norms [steps] (loss and
                 pre-clip norm measured before each update); final_weights/<name>

Everything is computed in float64 from float32 weights, so the files hold the exact
answer for the stored weights and loom's float32 error is the only error measured.

Usage: /usr/bin/python3 make_reference.py --out DIR
"""
import argparse
import math
import os

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT_VERSION = 1
BATCH, SEQ = 2, 16
STEPS = 10


# ---- model ------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(cfg):
    if cfg["family"] == "gpt2":
        return nn.LayerNorm(cfg["d_model"], eps=cfg["norm_eps"])
    return RMSNorm(cfg["d_model"], cfg["norm_eps"])


def rope_tables(cfg, seq, dtype):
    """cos, sin [T, D] for the rotate-half form, with linear or NTK-aware scaling."""
    d = cfg["d_model"] // cfg["n_heads"]
    theta = cfg["rope_theta"]
    positions = torch.arange(seq, dtype=torch.float64)
    if cfg["rope_scaling"] == "linear":
        positions = positions / cfg["rope_factor"]
    elif cfg["rope_scaling"] == "ntk":
        theta = theta * cfg["rope_factor"] ** (d / (d - 2))
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(positions, inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.hq, self.hkv = cfg["n_heads"], cfg["n_kv_heads"]
        self.d = cfg["d_model"] // cfg["n_heads"]
        self.qkv = nn.Linear(cfg["d_model"], (self.hq + 2 * self.hkv) * self.d, bias=cfg["bias"])
        self.out = nn.Linear(self.hq * self.d, cfg["d_model"], bias=cfg["bias"])

    def forward(self, x, rope):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split([self.hq * self.d, self.hkv * self.d, self.hkv * self.d], dim=-1)
        q = q.view(b, t, self.hq, self.d).transpose(1, 2)
        k = k.view(b, t, self.hkv, self.d).transpose(1, 2)
        v = v.view(b, t, self.hkv, self.d).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        group = self.hq // self.hkv
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d)
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        y = scores.softmax(dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, t, self.hq * self.d))


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gpt2 = cfg["family"] == "gpt2"
        c, f = cfg["d_model"], cfg["d_ff"]
        if not self.gpt2:
            self.gate = nn.Linear(c, f, bias=cfg["bias"])
        self.up = nn.Linear(c, f, bias=cfg["bias"])
        self.down = nn.Linear(f, c, bias=cfg["bias"])

    def forward(self, x):
        if self.gpt2:
            return self.down(F.gelu(self.up(x), approximate="tanh"))
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn_norm = make_norm(cfg)
        self.attn = Attention(cfg)
        self.mlp_norm = make_norm(cfg)
        self.mlp = Mlp(cfg)

    def forward(self, x, rope):
        x = x + self.attn(self.attn_norm(x), rope)
        return x + self.mlp(self.mlp_norm(x))


class Model(nn.Module):
    """Module names are chosen so named_parameters() yields loom's parameter names."""

    def __init__(self, cfg, head):
        super().__init__()
        self.cfg, self.head = cfg, head
        self.embed = nn.Module()
        self.embed.tokens = nn.Embedding(cfg["vocab_size"], cfg["d_model"])
        if cfg["family"] == "gpt2":
            self.embed.positions = nn.Embedding(cfg["max_seq_len"], cfg["d_model"])
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = make_norm(cfg)
        if head == "scalar":
            self.score_head = nn.Linear(cfg["d_model"], 1)
        elif not cfg["tie_embeddings"]:
            self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab_size"], bias=False)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.embed.tokens(ids)
        rope = None
        if self.cfg["family"] == "gpt2":
            x = x + self.embed.positions(torch.arange(t))
        else:
            rope = rope_tables(self.cfg, t, x.dtype)
        for layer in self.layers:
            x = layer(x, rope)
        h = self.final_norm(x)
        if self.head == "scalar":
            return self.score_head(h).squeeze(-1)
        if self.cfg["tie_embeddings"]:
            return F.linear(h, self.embed.tokens.weight)
        return self.lm_head(h)


def decays(name, param):
    """loom's weight-decay groups: matrices and embeddings decay, norms and biases do not."""
    return param.dim() >= 2


def randomise(model, generator):
    """Weights far from the usual init so every path (biases, norm gains) carries signal."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
            elif name.startswith("embed."):
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[1]))


# ---- schedule and loss -------------------------------------------------------------------

def lr_at(step, sched):
    """Mirrors loom::optim::LrSchedule::at (warmup, then cosine to min_lr)."""
    if step < sched["warmup_steps"]:
        return sched["max_lr"] * (step + 1) / sched["warmup_steps"]
    if step > sched["total_steps"]:
        return sched["min_lr"]
    ratio = (step - sched["warmup_steps"]) / (sched["total_steps"] - sched["warmup_steps"])
    return sched["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (sched["max_lr"] - sched["min_lr"])


def lm_loss(logits, targets):
    flat = logits.reshape(-1, logits.shape[-1])
    t = targets.reshape(-1).long()
    t = torch.where(t < 0, torch.full_like(t, -100), t)
    loss_sum = F.cross_entropy(flat, t, ignore_index=-100, reduction="sum")
    count = int((t >= 0).sum())
    return loss_sum, count


# ---- cases -------------------------------------------------------------------------------

def base_config(family):
    cfg = dict(family=family, vocab_size=101, d_model=64, n_layers=2, n_heads=4, n_kv_heads=4,
               d_ff=256, max_seq_len=32, norm_eps=1e-5, rope_theta=10000.0, rope_scaling="none",
               rope_factor=1.0, tie_embeddings=True, bias=True)
    if family == "llama":
        cfg.update(n_kv_heads=2, d_ff=172, tie_embeddings=False, bias=False)
    return cfg


CASES = {
    "gpt2_lm": (base_config("gpt2"), "lm", 1),
    "llama_lm": (base_config("llama"), "lm", 2),
    "llama_ntk_lm": (dict(base_config("llama"), rope_scaling="ntk", rope_factor=4.0, rope_theta=500.0), "lm", 3),
    "llama_linear_lm": (dict(base_config("llama"), rope_scaling="linear", rope_factor=2.0), "lm", 4),
    "gpt2_untied_lm": (dict(base_config("gpt2"), tie_embeddings=False), "lm", 5),
    "gpt2_scalar": (base_config("gpt2"), "scalar", 6),
    "llama_scalar": (base_config("llama"), "scalar", 7),
}


def make_inputs(cfg, generator):
    ids = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ), generator=generator, dtype=torch.int64)
    targets = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ), generator=generator, dtype=torch.int64)
    targets[0, :3] = -100       # a masked prompt
    targets[1, 5] = -1          # any negative target is ignored
    targets[1, SEQ - 1] = -100
    return ids, targets


def write_named(group, tensors):
    for name, value in tensors.items():
        group.create_dataset(name, data=value)


def run_case(name, cfg, head, seed, out_dir):
    generator = torch.Generator().manual_seed(seed)
    model = Model(cfg, head)
    randomise(model, generator)
    ids, targets = make_inputs(cfg, generator)
    weights32 = {n: p.detach().float().numpy().copy() for n, p in model.named_parameters()}
    model = model.double()

    path = os.path.join(out_dir, name + ".h5")
    with h5py.File(path + ".tmp", "w") as f:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["case"] = name
        f.attrs["head"] = head
        config = f.create_group("config")
        for key, value in cfg.items():
            config.attrs[key] = int(value) if isinstance(value, bool) else value
        write_named(f.create_group("weights"), weights32)
        f["inputs/ids"] = ids.numpy().astype(np.int32)
        f["inputs/targets"] = targets.numpy().astype(np.int32)

        out = model(ids)
        if head == "lm":
            loss_sum, count = lm_loss(out, targets)
            loss = loss_sum / count
            loss.backward()
            f["outputs/logits"] = out.detach().reshape(-1, cfg["vocab_size"]).numpy()
            f["outputs/loss"] = float(loss)
            f["outputs/loss_sum"] = float(loss_sum)
            f["outputs/count"] = count
        else:
            dvalues = torch.randn(BATCH, SEQ, generator=generator).float()
            (out * dvalues.double()).sum().backward()
            f["inputs/dvalues"] = dvalues.numpy()
            f["outputs/values"] = out.detach().numpy()
        write_named(f.create_group("grads"), {n: p.grad.numpy() for n, p in model.named_parameters()})

        if head == "lm":
            write_trajectory(f.create_group("trajectory"), model, ids, targets)
    os.replace(path + ".tmp", path)
    return path


def write_trajectory(group, model, ids, targets):
    sched = dict(max_lr=1e-2, min_lr=1e-3, warmup_steps=3, total_steps=STEPS)
    # eps sits well above float32's rounding noise in the gradients: some gradients are zero
    # in exact arithmetic (GPT-2's key bias: softmax ignores a per-row constant) and with
    # eps=1e-8 Adam would turn loom's ~1e-9 rounding noise in them into full-size steps,
    # which no float32 implementation can reproduce.
    opt_cfg = dict(beta1=0.9, beta2=0.95, eps=1e-6, weight_decay=0.1, max_grad_norm=1.0)
    params = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in params if decays(n, p)], "weight_decay": opt_cfg["weight_decay"]},
         {"params": [p for n, p in params if not decays(n, p)], "weight_decay": 0.0}],
        lr=sched["max_lr"], betas=(opt_cfg["beta1"], opt_cfg["beta2"]), eps=opt_cfg["eps"])
    losses, lrs, norms = [], [], []
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=False)
        loss_sum, count = lm_loss(model(ids), targets)
        loss = loss_sum / count
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg["max_grad_norm"])))
        lr = lr_at(step, sched)
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.step()
        losses.append(float(loss))
        lrs.append(lr)
    for key, value in {**sched, **opt_cfg}.items():
        group.attrs[key] = value
    group.attrs["decay"] = "cosine"
    group.attrs["steps"] = STEPS
    group["losses"] = np.array(losses)
    group["lrs"] = np.array(lrs)
    group["grad_norms"] = np.array(norms)
    write_named(group.create_group("final_weights"),
                {n: p.detach().numpy() for n, p in model.named_parameters()})
    clipped = sum(1 for n in norms if n > opt_cfg["max_grad_norm"])
    print(f"    trajectory: loss {losses[0]:.4f} -> {losses[-1]:.4f}, clipped on {clipped}/{STEPS} steps")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for <case>.h5 files")
    parser.add_argument("--case", action="append", help="only these cases (default: all)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.case or CASES:
        if name not in CASES:
            raise SystemExit(f"make_reference.py: unknown case '{name}'; known: {', '.join(CASES)}")
        cfg, head, seed = CASES[name]
        print(f"{name}: family {cfg['family']}, head {head}")
        print(f"    wrote {run_case(name, cfg, head, seed, args.out)}")


if __name__ == "__main__":
    main()
