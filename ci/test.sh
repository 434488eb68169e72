#!/usr/bin/env bash
# Sets up, builds and runs loom's whole test suite (unit, reference, dist, integration)
# with CTest. Extra arguments go to ctest (e.g. `ci/test.sh -L unit`, `-R tokenizer`).
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOOM_BUILD_DIR:-$repo/build}"
"$repo/ci/setup.sh" || exit 1
"$repo/ci/build.sh" || exit 1
cd "$repo"
echo "test: running the suite (ctest --test-dir $build)"
start=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j "${LOOM_TEST_JOBS:-2}" "$@"
status=$?
echo "test: finished in $(( $(date +%s) - start )) s"
exit $status
