#!/usr/bin/env bash
# make chaos (and, with CHAOS_QUICK=1, its short version in make test): starts a fresh
# chaos stack (STACK_PROFILE=chaos, every service twice), runs tests/chaos/chaos.py
# against it, and always stops the stack, keeping its data and logs for a post-mortem.
#
#   HA=1                    the high-availability topology (docs/ha.md): three Kafka
#                           nodes, PostgreSQL primaries with synchronous standbys, Redis
#                           with a replica and Sentinels, and chaos.py's HA fault kinds
#   RUNS=N                  N runs in a row, each on a fresh stack; run n's summary is
#                           chaos-summary-<n>.json in the data directory; the command
#                           fails if any run fails
#   BIN_DIR=<build dir>     programs to run (default build-release/; make test passes
#                           the sanitizer build)
#   CHAOS_SCALE=N           instances per service (2)
#   CHAOS_SAGA_TIMEOUT=20s  order-svc's SAGA_TIMEOUT: shorter than the default 30s so
#                           that quiescence comes sooner, longer than a consumer's session
#                           timeout (10s) plus a restart, so that the death of one
#                           instance does not time out every order of its partitions
# and the CHAOS_* settings of chaos.py (orders, users, products, faults, seed, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
stack="$root/deploy/local/stack.sh"

export STACK_PROFILE=chaos
export SCALE=${CHAOS_SCALE:-2}
export HA=${HA:-0}
runs=${RUNS:-1}
[[ "$runs" =~ ^[1-9][0-9]?$ ]] || { echo "chaos: RUNS must be 1..99, not '$runs'" >&2; exit 2; }
export BIN_DIR=${BIN_DIR:-$root/build-release}
# make test exports the test stack's settings; none of them may leak into this stack.
ROOT=$root . "$root/deploy/local/fleet.sh"
unset REDIS_URL REDIS_PASSWORD REDIS_PASSWORD_FILE REDIS_ADMIN_URL REDIS_ADMIN_PASSWORD_FILE KAFKA_BROKERS GATEWAY_URL \
    DATABASE_URL DATABASE_URL_FILE GRPC_ADDR ADMIN_ADDR
for svc in "${SERVICES[@]}"; do unset "${svc^^}_DATABASE_URL"; done

# Every program of deploy/fleet.conf (stack.sh up checks again, but this says it early).
for prog in "${FLEET_PROGRAMS[@]}"; do
    prog=$(fleet_program_path "$prog")
    [ -x "$BIN_DIR/$prog" ] || { echo "chaos: $BIN_DIR/$prog is not built (make release)" >&2; exit 2; }
done

saga_timeout=${CHAOS_SAGA_TIMEOUT:-20s}
[[ "$saga_timeout" =~ ^([0-9]+)s$ ]] || { echo "chaos: CHAOS_SAGA_TIMEOUT must be whole seconds like 10s" >&2; exit 2; }
export CHAOS_SAGA_TIMEOUT_S=${BASH_REMATCH[1]}
# Settings reach the programs through stack.sh's <PROGRAM>_ENV_<NAME> convention.
export ORDER_SVC_ENV_SAGA_TIMEOUT=$saga_timeout ORDER_SVC_ENV_SWEEP_INTERVAL=500ms
# Every client comes from 127.0.0.1: the per-IP login and register limits would
# throttle the seeding of 50 customers (rate limits are not what this run tests; a 429
# is still honoured with its Retry-After).
export GATEWAY_ENV_LOGIN_RATE_IP=100000 GATEWAY_ENV_REGISTER_RATE_IP=100000

data=$("$stack" env | sed -n 's/^STACK_DATA=//p')
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    "$stack" down >/dev/null 2>&1 || { echo "chaos: stack.sh down failed" >&2; rc=1; }
    echo "chaos: stack stopped; data, logs and chaos-summary.json kept in $data (logs: $data/log/)" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every run starts from nothing: empty databases, topics and Redis. The numbered
# summaries of a RUNS=N series outlive the wipes between its runs.
keep=$(mktemp -d)
failed=()
for ((run = 1; run <= runs; run++)); do
    ((runs == 1)) || echo "chaos: run $run of $runs" >&2
    "$stack" wipe
    mkdir -p "$data" && cp -p "$keep"/chaos-summary-*.json "$data/" 2>/dev/null || true
    "$stack" up
    rc=0
    if ((runs == 1)); then
        python3 "$here/chaos.py" || rc=$?
    else
        CHAOS_RUN=$run python3 "$here/chaos.py" || rc=$?
        cp -p "$data/chaos-summary-$run.json" "$keep/" 2>/dev/null || true
    fi
    ((rc == 0)) || failed+=("$run")
    ((run == runs)) || "$stack" down
done
rm -rf "$keep"
if ((runs > 1)); then
    python3 "$here/chaos_runs.py" "$data" "$runs"
    ((${#failed[@]} == 0)) || { echo "chaos: run(s) ${failed[*]} of $runs failed" >&2; exit 1; }
fi
((${#failed[@]} == 0))
