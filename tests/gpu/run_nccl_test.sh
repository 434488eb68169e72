#!/bin/sh
# Runs an NCCL test program under mpirun with one rank per visible GPU, at most 4 (NCCL
# refuses two ranks of a communicator on one GPU). GPUs are counted from
# CUDA_VISIBLE_DEVICES when it is set, else from `nvidia-smi -L`; with neither (no GPU
# here) one rank is started and the program reports itself skipped (exit 77).
# Usage: run_nccl_test.sh MPIEXEC PROGRAM [ARGS...]
set -u
mpiexec=$1
shift
if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
  gpus=$(printf '%s\n' "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c '[^[:space:]]')
else
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
fi
[ "${gpus:-0}" -ge 1 ] 2>/dev/null || gpus=1
[ "$gpus" -le 4 ] || gpus=4
exec "$mpiexec" --allow-run-as-root --oversubscribe -np "$gpus" "$@"
