#!/usr/bin/env bash
# Builds loom with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and runs
# the whole suite there. A heap overrun or a dangling reference that only sometimes
# crashes the Release build fails here every time. Extra arguments go to ctest.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOOM_ASAN_BUILD_DIR:-$repo/build-asan}"
jobs="${LOOM_BUILD_JOBS:-$(nproc)}"
"$repo/ci/setup.sh" || exit 1
mkdir -p "$build"
if [ ! -f "$build/CMakeCache.txt" ]; then
  # -O1 -g1 (line tables, enough for symbolized stack traces) compiles in half the time of
  # RelWithDebInfo's -O2 -g under ASan; the benchmarks are not run here, so not built.
  if ! cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
      -DLOOM_SANITIZE=address,undefined -DLOOM_CUDA=OFF -DLOOM_BENCH=OFF > "$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    echo "sanitize: cmake configure failed" >&2
    exit 1
  fi
fi
echo "sanitize: compiling with ASan+UBSan, $jobs jobs, into $build"
start=$(date +%s)
if ! cmake --build "$build" -j "$jobs" > "$build/build.log" 2>&1; then
  grep -E "error|Error" -A3 "$build/build.log" | head -60 >&2
  echo "sanitize: build failed; full log: $build/build.log" >&2
  exit 1
fi
echo "sanitize: built in $(( $(date +%s) - start )) s; running the suite"
# MPI and the BLAS libraries keep allocations until exit by design: leaks are not checked.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}"
start=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j "${LOOM_TEST_JOBS:-2}" -LE bench "$@"
status=$?
echo "sanitize: finished in $(( $(date +%s) - start )) s"
exit $status
