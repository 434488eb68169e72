#!/usr/bin/env bash
# bench/scaling.sh [BUILD_DIR]: runs bench-scaling over the layouts of docs/performance.md
# ("Scaling") and writes every run's JSON object, as one JSON array, to
# BUILD_DIR/bench-scaling.json, with a table on stdout.
#
#   layouts (dp, tp, pp), default flags: (1,1,1) (2,1,1) (1,2,1) (1,1,2) (2,2,1) (1,2,2)
#                                        (2,1,2) (2,2,2) (4,1,2)
#   bubble curve: pp 2 and pp 4 (world = pp), micro-batches m in 1 2 4 8 16
#
# BUILD_DIR defaults to build; it must hold bin/bench-scaling. Extra bench-scaling flags can
# be given in BENCH_SCALING_FLAGS (e.g. "--threads 2"). Each rank runs one GEMM thread
# (OMP_NUM_THREADS=1) unless those flags say otherwise; with more ranks than cores mpirun
# oversubscribes, so compare ratios between layouts rather than absolute speed-ups.
# mpirun binds each rank to a core when ranks <= cores, so with --threads above 1 also set
# MPIRUN_FLAGS="--bind-to none".
# Needs mpirun and /usr/bin/python3 (the array and the table). About 2 minutes on 2 cores.
set -euo pipefail

build_dir=${1:-build}
bench="$build_dir/bin/bench-scaling"
if [[ ! -x "$bench" ]]; then
  echo "scaling.sh: $bench not found; build it first: cmake --build $build_dir --target bench-scaling" >&2
  exit 1
fi
mpirun=${MPIEXEC:-mpirun}
read -r -a extra <<< "${BENCH_SCALING_FLAGS:-}"
read -r -a mpirun_flags <<< "${MPIRUN_FLAGS:-}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

runs_dir=$(mktemp -d)
trap 'rm -rf "$runs_dir"' EXIT
count=0

# run DP TP PP [FLAGS...]: one bench-scaling run on DP*TP*PP ranks; its JSON goes to runs_dir.
run() {
  local dp=$1 tp=$2 pp=$3
  shift 3
  local ranks=$((dp * tp * pp))
  count=$((count + 1))
  local out
  out=$(printf '%s/%03d.json' "$runs_dir" "$count")
  echo "scaling.sh: [$count] dp $dp x tp $tp x pp $pp $*" >&2
  if ! "$mpirun" --allow-run-as-root --oversubscribe "${mpirun_flags[@]}" -np "$ranks" \
      "$bench" --tp "$tp" --pp "$pp" "$@" "${extra[@]}" > "$out"; then
    echo "scaling.sh: bench-scaling failed for dp $dp x tp $tp x pp $pp $*" >&2
    exit 1
  fi
}

for layout in "1 1 1" "2 1 1" "1 2 1" "1 1 2" "2 2 1" "1 2 2" "2 1 2" "2 2 2" "4 1 2"; do
  # shellcheck disable=SC2086  # the layout is three words on purpose
  run $layout
done
for pp in 2 4; do
  for m in 1 2 4 8 16; do
    run 1 1 "$pp" --micro-batches "$m"
  done
done

result="$build_dir/bench-scaling.json"
/usr/bin/python3 - "$runs_dir" "$result" <<'EOF'
import json, pathlib, sys

runs = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))]
pathlib.Path(sys.argv[2]).write_text(json.dumps(runs, indent=2) + "\n")

base = next(r for r in runs if (r["dp"], r["tp"], r["pp"]) == (1, 1, 1) and r["micro_batches"] == 8)
header = ("| dp | tp | pp | ranks | m | tokens/s | vs (1,1,1) | step s | comm | tp | dp | pp "
          "| bubble measured | bubble makespan | (p-1)/(m+p-1) | by stage |")
print(header)
print("|" + "---:|" * (header.count("|") - 1))
for r in runs:
    axis = r["comm_fraction_by_axis"]
    stages = " / ".join(f"{b:.3f}" for b in r["bubble_by_stage"])
    print(f"| {r['dp']} | {r['tp']} | {r['pp']} | {r['world_size']} | {r['micro_batches']} "
          f"| {r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base['tokens_per_s']:.2f} | {r['step_s_median']:.3f} "
          f"| {r['comm_fraction']:.1%} | {axis['tp']:.1%} | {axis['dp']:.1%} | {axis['pp']:.1%} "
          f"| {r['bubble_measured']:.3f} | {r['bubble_makespan']:.3f} | {r['bubble_theoretical']:.3f} | {stages} |")
print(f"\n{len(runs)} runs written to {sys.argv[2]}", file=sys.stderr)
EOF
