#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build, prepare the built-in
# data (a BPE tokenizer trained on Brown, Brown token stores, WordNet definition SFT pairs),
# pre-train the tiny Llama-family model on Brown, fine-tune it on WordNet definitions, and
# say where the results are. Steps whose outputs exist are skipped (delete runs/<name> to
# train again); set LOOM_QUICKSTART_STEPS=N to cut both trainings to N steps (smoke test).
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

echo "== 1/4 tokenizer: byte-level BPE, 4096 tokens, trained on the Brown training split"
"$bin/loom-prep" train-tokenizer --corpus brown --vocab-size 4096 --out "$tokenizer"
echo "== 2/4 data: Brown (pre-training text) and WordNet 3.1 definitions (SFT pairs)"
"$bin/loom-prep" brown --tokenizer "$tokenizer" --out data/brown
"$bin/loom-prep" wordnet --tokenizer "$tokenizer" --out data/wordnet

train() {  # $1 = config, $2 = run dir, rest = overrides
  local config="$1" run="$2"
  shift 2
  if [ -f "$run/model.h5" ]; then
    echo "   $run/model.h5 exists: skipping (delete $run to train again)"
  else
    "$bin/loom-sft" --config "$config" run_dir="$run" "$@"
  fi
}
echo "== 3/4 pre-train the tiny Llama-family model on Brown (configs/tiny-brown.yaml)"
train configs/tiny-brown.yaml "runs/tiny-brown$suffix" "${overrides[@]}"
echo "== 4/4 fine-tune it on WordNet definitions (configs/tiny-wordnet-sft.yaml)"
train configs/tiny-wordnet-sft.yaml "runs/tiny-wordnet-sft$suffix" "${overrides[@]}" \
  train.init_from="runs/tiny-brown$suffix/model.h5"

summary() {  # $1 = run dir
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
run = sys.argv[1]
record = json.load(open(f"{run}/run.json"))
r = record.get("results", {})
vals = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if '"val_loss"' in l]
first = f"{vals[0]['val_loss']:.3f} at step {vals[0]['step']} -> " if len(vals) > 1 else ""
print(f"   {run}: {r.get('steps')} steps in {r.get('seconds', 0):.0f} s, train loss {r.get('final_train_loss', 0):.3f}, "
      f"validation loss {first}{r.get('val_loss', float('nan')):.3f} (perplexity {r.get('val_ppl', float('nan')):.1f})")
PY
}
echo "== results"
summary "runs/tiny-brown$suffix"
summary "runs/tiny-wordnet-sft$suffix"
echo "   each run directory holds metrics.jsonl (per-step metrics), run.json (config, commit, data, results), model.h5 (weights) and checkpoints/ (resumable state)"
