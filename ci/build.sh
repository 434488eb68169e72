#!/usr/bin/env bash
# Configures (once) and builds loom into build/ (Release). Incremental on later runs.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOOM_BUILD_DIR:-$repo/build}"
jobs="${LOOM_BUILD_JOBS:-$(nproc)}"
mkdir -p "$build"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release > "$build/configure.log" 2>&1
  status=$?
  grep -E "^-- (loom|  ✓|  ✗|  →)" "$build/configure.log"
  if [ $status -ne 0 ]; then
    cat "$build/configure.log" >&2
    echo "build: cmake configure failed (log above: $build/configure.log)" >&2
    exit 1
  fi
fi
echo "build: compiling with $jobs jobs into $build"
cmake --build "$build" -j "$jobs" > "$build/build.log" 2>&1
status=$?
if [ $status -ne 0 ]; then
  grep -E "error|Error" -A3 "$build/build.log" | head -60 >&2
  echo "build: failed; full log: $build/build.log" >&2
  exit 1
fi
echo "build: done (executables in $build/bin)"
