#!/usr/bin/env bash
# make test: starts the test stack (STACK_PROFILE=test: its own ports and .data-test/),
# runs every CTest suite against it, and always stops what it started, on success,
# failure or Ctrl-C. Extra arguments go to ctest (e.g. -L unit, -R infra).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export STACK_PROFILE=test
stack="$root/deploy/local/stack.sh"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$stack" down || rc=1
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make -C "$root" --no-print-directory format-check
# The fuzz targets over their seeds and regression inputs, a few seconds each
# (build-fuzz/, label "fuzz"; no stack needed, so before it starts).
ctest --test-dir "$root/build-fuzz" --output-on-failure --timeout 600 "$@"
# Every run starts from empty databases, broker and Redis: no state leaks between runs.
"$stack" wipe
"$stack" up
set -a
. <("$stack" env)
set +a
ctest --test-dir "$root/build" --output-on-failure --timeout 600 "$@"
# make bench runs end to end on its own stack and writes every documented key; its
# figures are not judged here (shared machines are noisy: docs/architecture.md §8 is make bench's).
if (($# == 0)); then
    echo "make bench, quick (BENCH_QUICK=1): log in build/bench-quick.log"
    BENCH_QUICK=1 BENCH_OUT="$root/build/bench-quick.json" python3 "$root/bench/bench.py" \
        >"$root/build/bench-quick.log" 2>&1 ||
        { echo "make bench (quick) failed: build/bench-quick.log" >&2; tail -30 "$root/build/bench-quick.log" >&2; exit 1; }
    python3 "$root/bench/bench.py" --check-keys "$root/build/bench-quick.json" ||
        { echo "bench results lack documented keys: build/bench-quick.json" >&2; exit 1; }
fi
