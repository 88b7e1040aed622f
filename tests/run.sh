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
# Every run starts from empty databases, broker and Redis: no state leaks between runs.
"$stack" wipe
"$stack" up
set -a
. <("$stack" env)
set +a
ctest --test-dir "$root/build" --output-on-failure --timeout 600 "$@"
