#!/usr/bin/python3
"""Every loom-quantize method on one loom-trained model, evaluated with loom-eval.

For the fp32 model and each method: held-out Brown perplexity (token and word) and bits per
byte, WordNet definition multiple-choice accuracy, the model file's size, the quantization
time and loom-eval's scoring throughput. Prints one JSON object (and, with --markdown, the
table docs/compression.md carries).

Usage: bench/compression_results.py [--model runs/tiny-brown/model.h5] [--build build]
                                    [--work runs/compression] [--markdown] [--only NAME,...]
"""
import argparse
import json
import os
import subprocess
import sys
import time

METHODS = [
    ("fp32", None),
    ("rtn-int8", ["method=rtn", "bits=8"]),
    ("smoothquant-w8a8", ["method=smoothquant", "alpha=0.5"]),
    ("kv-int8", ["method=none", "kv_int8=true"]),
    ("rtn-int4-channel", ["method=rtn", "bits=4", "group_size=0"]),
    ("gptq-int4-channel", ["method=gptq", "bits=4", "group_size=0"]),
    ("rtn-int4-g128", ["method=rtn", "bits=4", "group_size=128"]),
    ("gptq-int4-g128", ["method=gptq", "bits=4", "group_size=128"]),
    ("gptq-int4-g128-actorder", ["method=gptq", "bits=4", "group_size=128", "act_order=true"]),
    ("rtn-int4-g32", ["method=rtn", "bits=4", "group_size=32"]),
    ("gptq-int4-g32", ["method=gptq", "bits=4", "group_size=32"]),
    ("magnitude-50", ["method=magnitude", "sparsity=0.5"]),
    ("wanda-50", ["method=wanda", "sparsity=0.5"]),
    ("sparsegpt-50", ["method=sparsegpt", "sparsity=0.5"]),
    ("magnitude-2of4", ["method=magnitude", "structure=2:4"]),
    ("wanda-2of4", ["method=wanda", "structure=2:4"]),
    ("sparsegpt-2of4", ["method=sparsegpt", "structure=2:4"]),
]


def metric(results, task, name):
    m = results["tasks"][task]["metrics"][name]
    return m["value"], m["stderr"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/tiny-brown/model.h5")
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="runs/compression")
    ap.add_argument("--tasks", default="brown-heldout,wordnet-definition-mc")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    binary = os.path.join(args.build, "bin")
    only = set(filter(None, args.only.split(",")))
    rows = []
    for name, settings in METHODS:
        if only and name not in only:
            continue
        out = os.path.join(args.work, name)
        model = args.model
        quantize_s = 0.0
        if settings is not None:
            t0 = time.time()
            subprocess.run([os.path.join(binary, "loom-quantize"), "--model", args.model, "--out", out] + settings,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            quantize_s = time.time() - t0
            model = os.path.join(out, "quantized.h5")
        subprocess.run([os.path.join(binary, "loom-eval"), "--model", model, "--out", os.path.join(out, "eval"),
                        "tasks=" + args.tasks], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(out, "eval", "results.json")) as f:
            results = json.load(f)
        ppl, ppl_se = metric(results, "brown-heldout", "token_perplexity")
        row = {"name": name, "settings": settings or [], "file_bytes": os.path.getsize(model),
               "quantize_seconds": round(quantize_s, 2),
               "token_perplexity": ppl, "token_perplexity_stderr": ppl_se,
               "word_perplexity": metric(results, "brown-heldout", "word_perplexity")[0],
               "bits_per_byte": metric(results, "brown-heldout", "bits_per_byte")[0],
               "eval_tokens_per_second": results["run"]["tokens_per_second"]}
        if "wordnet-definition-mc" in results["tasks"]:
            row["mc_acc"], row["mc_acc_stderr"] = metric(results, "wordnet-definition-mc", "acc")
            row["mc_acc_norm"] = metric(results, "wordnet-definition-mc", "acc_norm")[0]
        rows.append(row)
        print(f"{name}: ppl {ppl:.2f}", file=sys.stderr)
    base = next((r for r in rows if r["name"] == "fp32"), None)
    if base:
        for r in rows:
            r["perplexity_change_pct"] = 100.0 * (r["token_perplexity"] / base["token_perplexity"] - 1.0)
            r["size_ratio"] = r["file_bytes"] / base["file_bytes"]
    print(json.dumps({"model": args.model, "tasks": args.tasks, "methods": rows}, indent=1))
    if args.markdown:
        print("\n| method | token ppl | Δ ppl | bits/byte | MC acc | file MiB | quantize s | eval tok/s |", file=sys.stderr)
        print("|---|---:|---:|---:|---:|---:|---:|---:|", file=sys.stderr)
        for r in rows:
            print(f"| {r['name']} | {r['token_perplexity']:.2f} ± {r['token_perplexity_stderr']:.1f} | "
                  f"{r.get('perplexity_change_pct', 0):+.2f}% | {r['bits_per_byte']:.4f} | "
                  f"{r.get('mc_acc', float('nan')):.3f} | {r['file_bytes'] / 2**20:.2f} | {r['quantize_seconds']:.1f} | "
                  f"{r['eval_tokens_per_second']:.0f} |", file=sys.stderr)


if __name__ == "__main__":
    main()
