#!/usr/bin/env bash
# bench-train on GPU 0: the GPT-2 124M and 350M shapes at sequence 1024 in bf16 (and the 124M
# shape in f32 for comparison), one JSON object per line with tokens/s and MFU.
# Usage: bench/gpu_train.sh [BUILD_DIR]   (a build with CUDA; docs/cuda.md)
set -uo pipefail
build="${1:-build}"
bench="$build/bin/bench-train"
if [ ! -x "$bench" ]; then
  echo "gpu_train.sh: $bench not found (build first: bash ci/build.sh)" >&2
  exit 1
fi
# The vocabulary padded from 50257 to 50304 (a multiple of 128), as llm.c and Megatron pad it:
# an odd leading dimension leaves cuBLASLt only its unvectorised kernels for the LM head.
gpt2_124m=(--family gpt2 --layers 12 --heads 12 --d-model 768 --vocab 50304)
gpt2_350m=(--family gpt2 --layers 24 --heads 16 --d-model 1024 --vocab 50304)
status=0
run() {
  "$bench" --device cuda --seq 1024 --steps 10 --warmup 3 "$@" | tr -d '\n' | tr -s ' '
  local rc=${PIPESTATUS[0]}
  echo
  [ "$rc" -eq 0 ] || { echo "gpu_train.sh: bench-train $* exited $rc" >&2; status=1; }
}
for batch in 16 32 64; do run "${gpt2_124m[@]}" --batch "$batch" --precision bf16; done
for batch in 16 32; do run "${gpt2_350m[@]}" --batch "$batch" --precision bf16; done
run "${gpt2_124m[@]}" --batch 16 --precision f32
exit $status
