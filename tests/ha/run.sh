#!/usr/bin/env bash
# The HA suite of make test (CTest test_ha): one stack of the high-availability
# topology (STACK_PROFILE=chaos HA=1: three Kafka nodes, PostgreSQL primaries with
# synchronous standbys under pg_auto_failover, Redis with a replica and three Sentinels;
# the programs of BIN_DIR), then every tests/ha/test_ha_*.py against it in turn: each
# kills or freezes parts, checks what its clients saw, and starts what it killed again.
# The stack is always stopped; its data and logs stay in .data-chaos/ for a post-mortem
# (the next chaos or HA run wipes them).
#
#   BIN_DIR=<build dir>   the programs (default build-release/; make test passes the
#                         sanitizer build)
#   HA_TESTS="kafka redis"  only these tests (test_ha_<name>.py)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
stack="$root/deploy/local/stack.sh"

export STACK_PROFILE=chaos HA=1 SCALE=1
export BIN_DIR=${BIN_DIR:-$root/build-release}
# make test exports the test stack's settings; none of them may leak into this stack.
ROOT=$root . "$root/deploy/local/fleet.sh"
unset REDIS_URL REDIS_PASSWORD REDIS_PASSWORD_FILE REDIS_ADMIN_URL REDIS_ADMIN_PASSWORD_FILE KAFKA_BROKERS GATEWAY_URL \
    DATABASE_URL DATABASE_URL_FILE GRPC_ADDR ADMIN_ADDR REDIS_SENTINELS REDIS_MASTER_NAME
for svc in "${SERVICES[@]}"; do unset "${svc^^}_DATABASE_URL"; done

tests=()
if [ -n "${HA_TESTS:-}" ]; then
    for t in $HA_TESTS; do tests+=("$here/test_ha_$t.py"); done
else
    tests=("$here"/test_ha_*.py)
fi

data=$("$stack" env | sed -n 's/^STACK_DATA=//p')
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$stack" down >/dev/null 2>&1 || { echo "ha: stack.sh down failed" >&2; rc=1; }
    echo "ha: stack stopped; data and logs kept in $data (logs: $data/log/)" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$stack" wipe
"$stack" up
failed=()
for t in "${tests[@]}"; do
    echo "== ha: $(basename "$t") ==" >&2
    /usr/bin/python3 "$t" || failed+=("$(basename "$t")")
done
((${#failed[@]} == 0)) || { echo "ha: FAILED: ${failed[*]}" >&2; exit 1; }
echo "ha: ${#tests[@]} passed" >&2
