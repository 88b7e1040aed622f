#!/usr/bin/env bash
# The local stack: a PostgreSQL per service, Redis, Kafka and the fleet's programs, as
# deploy/fleet.conf lists them.
#
#   stack.sh up      start what is not running, wait until each part answers
#   stack.sh down    stop everything this profile started; no process is left
#   stack.sh run     up, then wait in the foreground; Ctrl-C (or SIGTERM) runs down
#   stack.sh status  one line per part
#   stack.sh wipe    down, then delete this profile's data
#   stack.sh env     the connection settings, as NAME=value lines (for tests and tools;
#                    shell syntax: a value with a shell metacharacter is 'quoted')
#   stack.sh parts   the name of every part (postgres/order, kafka, order-svc-1, gateway, ...)
#   stack.sh kill PART    SIGKILL one part (a PostgreSQL server with all its backends)
#   stack.sh freeze PART SECONDS   SIGSTOP one part, SIGCONT it SECONDS later
#   stack.sh start PART   start one part again and wait until it answers
#   stack.sh answers PART exit 0 if the part answers now
#   stack.sh settled      exit 0 if the stack could lose any one part again (HA=1:
#                         every replica back and in step; parts.sh)
#   stack.sh redis-master  the part that is Redis's master now (HA=1: as the Sentinels say)
#   stack.sh primary SVC  the part that is the service's PostgreSQL primary (postgres/order/2)
#   stack.sh create-admin EMAIL   user-svc create-admin on this stack (password on stdin)
#   stack.sh traces recent|show ID  this stack's traces from Jaeger (deploy/local/traces.py)
#
# HA=1 runs the high-availability topology (lib.sh, docs/ha.md).
# SCALE=N runs N instances of each service (see lib.sh). Extra settings reach a program
# as <PROGRAM>_ENV_<NAME>=value, e.g. ORDER_SVC_ENV_SAGA_TIMEOUT=5s or
# GATEWAY_ENV_LOG_LEVEL=debug.
#
# STACK_PROFILE=dev|test|bench|chaos picks ports and data directory (see lib.sh); the
# test profile starts the infrastructure only (FLEET=0), the others the programs too,
# and refuse to start when one is not built. Starting twice is harmless; stale pid files
# are detected and replaced.
#
# One file per concern, sourced here: lib.sh (profile, ports, shared helpers; it reads
# the manifest through fleet.sh), pg.sh, redis.sh, kafka.sh, observability.sh (Jaeger,
# Prometheus), programs.sh, parts.sh.
set -euo pipefail
here_=$(cd "$(dirname "$0")" && pwd)
. "$here_/lib.sh"
for part_ in pg redis kafka observability programs parts; do . "$here_/$part_.sh"; done
unset here_ part_

# ---- the whole stack ----

# Every program's certificate (deploy/pki.sh), made or renewed when needed.
pki_up() {
    local p
    for p in "${FLEET_PROGRAMS[@]}"; do
        pki_cert "$p" >/dev/null || die "cannot make the certificate of $p (deploy/pki.sh)"
    done
}

stack_env() {
    local svc
    echo "STACK_PROFILE=$STACK_PROFILE"
    echo "STACK_DATA=$DATA"
    echo "SCALE=$N_INST"
    echo "HA=$HA"
    # Quoted: the URL's '&' would end a command where this output is sourced (`set -a;
    # . <(stack.sh env)`); readers that split lines take the quotes off (shlex).
    for svc in "${PG_SERVICES[@]}"; do
        echo "${svc^^}_DATABASE_URL='$(db_url "$svc")'"
    done
    # Redis: the gateway's user (what the gateway and its tests use) and the admin (the
    # tests' inspection and clean-up); each password in a file (redis.sh).
    echo "REDIS_URL=redis://gateway@127.0.0.1:$REDIS_PORT"
    echo "REDIS_PASSWORD_FILE=$(redis_gateway_password_file)"
    echo "REDIS_ADMIN_URL=redis://admin@127.0.0.1:$REDIS_PORT"
    echo "REDIS_ADMIN_PASSWORD_FILE=$(redis_admin_password_file)"
    # HA: where the gateway (and the tests) ask for the current master (redis.sh).
    if ((HA)); then
        echo "REDIS_SENTINELS=$(redis_sentinels)"
        echo "REDIS_MASTER_NAME=$REDIS_MASTER_NAME"
    fi
    # Kafka: the SASL_SSL listener, each service's principal and the admin's (a super
    # user: operators' shopctl, the tests' own administration), the CA that verifies
    # the broker, and the admin's configuration for kcat (-F FILE) and the broker's
    # Java tools (--command-config FILE).
    echo "KAFKA_BROKERS=$(kafka_brokers)" # every node (HA=1: three)
    for svc in "${SERVICES[@]}"; do
        echo "KAFKA_${svc^^}_USERNAME=${FLEET_PROGRAM[$svc]}"
        echo "KAFKA_${svc^^}_PASSWORD_FILE=$(kafka_password_file "${FLEET_PROGRAM[$svc]}")"
    done
    echo "KAFKA_ADMIN_USERNAME=admin"
    echo "KAFKA_ADMIN_PASSWORD_FILE=$(kafka_password_file admin)"
    echo "KAFKA_ADMIN_KCAT_CONFIG=$(kafka_kcat_config admin)"
    echo "KAFKA_ADMIN_CLIENT_PROPERTIES=$(kafka_admin_props)" # the Java tools' --command-config
    # Where spans go (OTLP/gRPC) and where to find them (Jaeger's HTTP query API).
    echo "OTLP_ENDPOINT=$(otlp_endpoint)"
    echo "OTEL_EXPORTER_OTLP_ENDPOINT=$(otlp_endpoint)"
    echo "TRACE_QUERY_URL=$(trace_query_url)"
    echo "TRACE_UI_URL=http://127.0.0.1:$JAEGER_QUERY_PORT"
    # The fleet's CA (it verifies gRPC peers, the broker and PostgreSQL) and the gRPC
    # identities (docs/trust.md), made by `up` in every profile: the test profile runs
    # no program, but its suites start them and speak as the gateway.
    echo "TLS_CA_FILE=$PKI_DIR/ca.crt"
    for svc in "${SERVICES[@]}" gateway; do
        echo "${svc^^}_TLS_CERT_FILE=$(tls_cert_file "${FLEET_PROGRAM[$svc]}")"
        echo "${svc^^}_TLS_KEY_FILE=$(tls_key_file "${FLEET_PROGRAM[$svc]}")"
    done
    [ "$STACK_PROFILE" != dev ] || echo "PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT"
    if ((FLEET)); then
        echo "GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT"
        for svc in "${SERVICES[@]}"; do
            echo "${svc^^}_GRPC_ADDRS=$(addr_list grpc "$svc")"
            echo "${svc^^}_ADMIN_ADDRS=$(addr_list admin "$svc")"
        done
        echo "JWT_SECRET_FILE=$DATA/secrets/jwt-secret"
    fi
}

up() {
    # A fleet profile without one of its programs is an error, found before anything starts.
    if ((FLEET)); then programs_built; fi
    mkdir -p "$LOGDIR" "$RUNDIR"
    chmod 755 "$DATA" "$LOGDIR"
    local svc prev
    # A stack's data is of one topology: single-node servers cannot become HA nodes
    # in place (nor the reverse).
    prev=$(cat "$DATA/ha" 2>/dev/null || { [ -d "$DATA/kafka" ] && echo 0; } || echo "$HA")
    [ "$prev" = "$HA" ] || die "this stack's data ($DATA) is of HA=$prev, not HA=$HA: wipe it first (stack.sh wipe, or make wipe)"
    echo "$HA" >"$DATA/ha"
    prev=$(cat "$DATA/scale" 2>/dev/null || echo 1)
    echo "$N_INST" >"$DATA/scale.tmp" && mv "$DATA/scale.tmp" "$DATA/scale"
    for svc in "${PG_SERVICES[@]}"; do pg_up "$svc"; done
    redis_up
    kafka_up
    jaeger_up
    pki_up
    if ((FLEET)) && [ "$prev" != "$N_INST" ]; then
        # Programs take their upstream lists at start (fleet.conf): a new SCALE
        # restarts the programs (each drains on SIGTERM) so every list names every instance.
        log "SCALE $prev -> $N_INST: restarting the programs"
        gateway_down
        for svc in "${SERVICES[@]}"; do service_down "$svc"; done
    fi
    if ((FLEET)); then
        fleet_up
        prometheus_up
    fi
    stack_env >"$DATA/stack.env"
    log "up: $(status | tr '\n' ';')"
}

down() {
    local svc
    prometheus_down
    gateway_down
    for svc in "${SERVICES[@]}"; do service_down "$svc"; done
    # After the programs, which flush their last spans when they stop.
    jaeger_down
    kafka_down
    redis_down
    for svc in "${PG_SERVICES[@]}"; do pg_down "$svc"; done
    pg_monitor_down
}

status() {
    local svc k
    pg_status
    redis_status
    for k in $(kafka_nodes); do
        printf '%s 127.0.0.1:%s %s\n' "$(kafka_part_name "$k")" "$(kafka_port "$k")" \
            "$(port_open "$(kafka_port "$k")" && echo up || echo down)"
    done
    printf 'jaeger http://127.0.0.1:%s %s\n' "$JAEGER_QUERY_PORT" \
        "$(curl -sf "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services" >/dev/null && echo up || echo down)"
    [ "$STACK_PROFILE" != dev ] || printf 'prometheus http://127.0.0.1:%s %s\n' "$PROMETHEUS_PORT" \
        "$(curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" >/dev/null && echo up || echo down)"
    ((FLEET)) || return 0
    for svc in "${SERVICES[@]}"; do
        [ -n "$(program_bin "${FLEET_PROGRAM[$svc]}")" ] || { echo "${FLEET_PROGRAM[$svc]} not built"; continue; }
        for ((k = 1; k <= $N_INST; k++)); do
            printf '%s 127.0.0.1:%s %s\n' "$(instance_name "$svc" "$k")" "$(grpc_port "$svc" "$k")" \
                "$(curl -sf "http://127.0.0.1:$(admin_port "$svc" "$k")/readyz" >/dev/null && echo ready || echo down)"
        done
    done
    if [ -z "$(program_bin gateway)" ]; then
        echo "gateway not built"
    else
        printf 'gateway http://127.0.0.1:%s %s\n' "$GATEWAY_PORT" \
            "$(curl -sf "http://127.0.0.1:$GATEWAY_PORT/readyz" >/dev/null && echo ready || echo down)"
    fi
}

# wipe: stop, then delete every byte of this profile's data (also the PostgreSQL
# clusters when they live outside the checkout).
wipe() {
    down
    [ -L "$DATA/pg" ] && rm -rf "$(readlink -f "$DATA/pg")"
    rm -rf "$DATA"
}

run() {
    # A second Ctrl-C (or the group-wide signal of timeout(1)) must not cut the stop short.
    trap 'trap "" INT TERM; echo; log "stopping"; down; exit 0' INT TERM
    up
    # The demo data and the welcome need the whole fleet (make run builds it).
    if ((FLEET)); then "$ROOT/deploy/local/seed.sh"; fi
    log "running; Ctrl-C stops everything"
    while true; do sleep 1; done
}

case "${1:-}" in
up) up ;;
parts) parts ;;
kill) kill_part "${2:?usage: $0 kill PART}" ;;
freeze) freeze_part "${2:?usage: $0 freeze PART SECONDS}" "${3:?usage: $0 freeze PART SECONDS}" ;;
start) start_part "${2:?usage: $0 start PART}" ;;
answers) part_answers "${2:?usage: $0 answers PART}" ;;
redis-master) redis_master_part ;;
settled) stack_settled ;;
primary) pg_primary "${2:?usage: $0 primary SVC}" ;;
create-admin) create_admin "${2:?usage: $0 create-admin EMAIL (password on stdin)}" ;;
down) down ;;
run) run ;;
status) status ;;
wipe) wipe ;;
env) stack_env ;;
traces) shift; TRACE_QUERY_URL=$(trace_query_url) exec python3 "$ROOT/deploy/local/traces.py" "$@" ;;
*) echo "usage: $0 up|down|run|status|wipe|env|parts|kill PART|freeze PART SECONDS|start PART|answers PART|settled|redis-master|primary SVC|create-admin EMAIL|traces ..." >&2; exit 2 ;;
esac
