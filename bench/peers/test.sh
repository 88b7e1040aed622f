#!/usr/bin/env bash
# make peers-test: the project's black-box tests against the peers (bench/peers), on the
# test stack (STACK_PROFILE=test, .data-test/: not while make test runs in the same
# checkout), wiped first and always stopped at the end:
#   nestjs-gateway/test.sh   the gateway e2e suites for the routes the peer serves
#   go-order-svc/test.sh     test_order_rpc, test_order_saga, test_e2e_saga
# Needs the debug build (make build); node/npm and go for the peers' own builds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export STACK_PROFILE=test
stack="$root/deploy/local/stack.sh"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$stack" down >/dev/null || rc=1
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$stack" wipe >/dev/null
"$stack" up
set -a
. <("$stack" env)
set +a
status=0
for peer in nestjs-gateway go-order-svc; do
    echo "== peer $peer"
    BUILD_DIR="$root/build" "$here/$peer/test.sh" "$root/build" || status=1
done
((status == 0)) && echo "peers: every listed test passed" || echo "peers: FAILED" >&2
exit $status
