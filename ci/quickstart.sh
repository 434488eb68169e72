#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build, prepare the built-in
# data (a BPE tokenizer trained on Brown, Brown token stores, WordNet definitions and
# preference pairs, arithmetic prompts with answers), pre-train the tiny Llama-family model
# on Brown, fine-tune it on WordNet definitions, train a reward model and DPO on WordNet
# pairs from it, fine-tune on arithmetic and improve that with GRPO, quantize the Brown model
# with GPTQ (4-bit) and compare its held-out perplexity, and say where the results are. Steps whose outputs exist are skipped (delete runs/<name> to train again);
# set LOOM_QUICKSTART_STEPS=N to cut every training to N steps (smoke test).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/ci/setup.sh"
"$repo/ci/build.sh"
cd "$repo"
bin="${LOOM_BUILD_DIR:-$repo/build}/bin"
tokenizer=data/tokenizers/brown-4k.json
overrides=()
suffix=""
if [ -n "${LOOM_QUICKSTART_STEPS:-}" ]; then
  overrides=("train.max_steps=$LOOM_QUICKSTART_STEPS" "eval.every=0" "eval.batches=2")
  suffix="-smoke"
fi

echo "== 1/9 tokenizer: byte-level BPE, 4096 tokens, trained on the Brown training split"
"$bin/loom-prep" train-tokenizer --corpus brown --vocab-size 4096 --out "$tokenizer"
echo "== 2/9 data: Brown (pre-training text), WordNet 3.1 definitions (SFT) and preference pairs, arithmetic"
"$bin/loom-prep" brown --tokenizer "$tokenizer" --out data/brown
"$bin/loom-prep" wordnet --tokenizer "$tokenizer" --out data/wordnet
"$bin/loom-prep" wordnet-pairs --tokenizer "$tokenizer" --out data/wordnet-pairs
"$bin/loom-prep" arithmetic --tokenizer "$tokenizer" --out data/arithmetic --max-operand 99 --ops + \
  --train 6000 --val 500 --spaced-digits --sft --sft-noise 0.4 --sft-noise-carry

train() {  # $1 = program, $2 = config, $3 = run dir, rest = overrides
  local program="$1" config="$2" run="$3"
  shift 3
  if [ -f "$run/model.h5" ]; then
    echo "   $run/model.h5 exists: skipping (delete $run to train again)"
  else
    "$bin/$program" --config "$config" run_dir="$run" "$@"
  fi
}
echo "== 3/9 pre-train the tiny Llama-family model on Brown (configs/tiny-brown.yaml)"
train loom-sft configs/tiny-brown.yaml "runs/tiny-brown$suffix" "${overrides[@]}"
echo "== 4/9 fine-tune it on WordNet definitions (configs/tiny-wordnet-sft.yaml)"
train loom-sft configs/tiny-wordnet-sft.yaml "runs/tiny-wordnet-sft$suffix" "${overrides[@]}" \
  train.init_from="runs/tiny-brown$suffix/model.h5"
echo "== 5/9 reward model on WordNet preference pairs from the SFT model (configs/tiny-wordnet-rm.yaml)"
train loom-rm configs/tiny-wordnet-rm.yaml "runs/tiny-wordnet-rm$suffix" "${overrides[@]}" \
  train.init_from="runs/tiny-wordnet-sft$suffix/model.h5"
echo "== 6/9 DPO on the same pairs from the SFT model (configs/tiny-wordnet-dpo.yaml)"
train loom-dpo configs/tiny-wordnet-dpo.yaml "runs/tiny-wordnet-dpo$suffix" "${overrides[@]}" \
  train.init_from="runs/tiny-wordnet-sft$suffix/model.h5"
echo "== 7/9 fine-tune the Brown model on two-digit sums, 40% of carrying demonstrations without their carries (configs/tiny-arith-sft.yaml)"
train loom-sft configs/tiny-arith-sft.yaml "runs/tiny-arith-sft$suffix" "${overrides[@]}" \
  train.init_from="runs/tiny-brown$suffix/model.h5"
echo "== 8/9 GRPO on arithmetic from that model, verifier rewards (configs/tiny-arith-grpo.yaml)"
train loom-grpo configs/tiny-arith-grpo.yaml "runs/tiny-arith-grpo$suffix" "${overrides[@]}" \
  train.init_from="runs/tiny-arith-sft$suffix/model.h5"
echo "== 9/9 GPTQ 4-bit (groups of 128 columns) of the Brown model; held-out Brown perplexity before and after"
brown="runs/tiny-brown$suffix"
quantized="$brown/quantized-gptq-int4-g128"
if [ -f "$quantized/quantized.h5" ]; then
  echo "   $quantized/quantized.h5 exists: skipping (delete it to quantize again)"
else
  "$bin/loom-quantize" --model "$brown/model.h5" --method gptq bits=4 group_size=128 --out "$quantized"
fi
for model in "$brown/model.h5" "$quantized/quantized.h5"; do
  out="$(dirname "$model")/eval-brown-heldout"
  [ -f "$out/results.json" ] || "$bin/loom-eval" --model "$model" tasks=brown-heldout --out "$out" > /dev/null
done

summary() {  # $1 = run dir
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
run = sys.argv[1]
record = json.load(open(f"{run}/run.json"))
r = record.get("results", {})
vals = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if '"val_' in l]
head = f"   {run}: {r.get('steps')} steps in {r.get('seconds', 0):.0f} s"
def change(key, fmt):
    if not vals or key not in vals[-1]:
        return "n/a"
    first = f"{fmt.format(vals[0][key])} at step {vals[0]['step']} -> " if len(vals) > 1 else ""
    return f"{first}{fmt.format(vals[-1][key])}"
program = record.get("program")
if program == "loom-rm":
    print(f"{head}, held-out pair accuracy {change('val_accuracy', '{:.3f}')}")
elif program == "loom-dpo":
    print(f"{head}, held-out preference accuracy {change('val_accuracy', '{:.3f}')}, "
          f"reward margin {change('val_reward_margin', '{:.3f}')}")
elif program in ("loom-grpo", "loom-ppo"):
    print(f"{head}, held-out exact match {change('val_sampled_exact_match', '{:.3f}')} sampled, "
          f"{change('val_exact_match', '{:.3f}')} greedy, mean reward {change('val_sampled_reward', '{:.3f}')}")
else:
    print(f"{head}, train loss {r.get('final_train_loss', 0):.3f}, validation loss "
          f"{change('val_loss', '{:.3f}')} (perplexity {r.get('val_ppl', float('nan')):.1f})")
PY
}
echo "== results"
for run in tiny-brown tiny-wordnet-sft tiny-wordnet-rm tiny-wordnet-dpo tiny-arith-sft tiny-arith-grpo; do
  summary "runs/$run$suffix"
done
/usr/bin/python3 - "$brown" "$quantized" <<'PY'
import json, os, sys
brown, quantized = sys.argv[1], sys.argv[2]
ppl = lambda d: json.load(open(f"{d}/eval-brown-heldout/results.json"))["tasks"]["brown-heldout"]["metrics"]["token_perplexity"]["value"]
mib = lambda f: os.path.getsize(f) / 2**20
print(f"   {quantized}: GPTQ int4-g128, {mib(quantized + '/quantized.h5'):.1f} of {mib(brown + '/model.h5'):.1f} MiB, "
      f"held-out Brown token perplexity {ppl(brown):.2f} -> {ppl(quantized):.2f}")
PY
echo "   each run directory holds metrics.jsonl (per-step metrics), run.json (config, commit, data, results), model.h5 (weights) and checkpoints/ (resumable state)"
