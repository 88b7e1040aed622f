#!/usr/bin/env bash
# The local stack: PostgreSQL x3, Redis, Kafka (and, as they land, the fleet's programs).
#
#   stack.sh up      start what is not running, wait until each part answers
#   stack.sh down    stop everything this profile started; no process is left
#   stack.sh run     up, then wait in the foreground; Ctrl-C (or SIGTERM) runs down
#   stack.sh status  one line per part
#   stack.sh wipe    down, then delete this profile's data
#   stack.sh env     the connection settings, as NAME=value lines (for tests and tools)
#   stack.sh parts   the name of every part (postgres/order, kafka, order-svc-1, gateway, ...)
#   stack.sh kill PART    SIGKILL one part (a PostgreSQL server with all its backends)
#   stack.sh start PART   start one part again and wait until it answers
#   stack.sh create-admin EMAIL   user-svc create-admin on this stack (password on stdin)
#
# SCALE=N runs N instances of each service (see lib.sh). Extra settings reach a program
# as <PROGRAM>_ENV_<NAME>=value, e.g. ORDER_SVC_ENV_SAGA_TIMEOUT=5s or
# GATEWAY_ENV_LOG_LEVEL=debug.
#
# STACK_PROFILE=dev|test picks ports and data directory (see lib.sh). Starting twice is
# harmless; stale pid files are detected and replaced.
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

# ---- PostgreSQL: one cluster per service, run as the unprivileged postgres user ----

# The clusters live under $DATA/pg unless the postgres user cannot reach $DATA (a
# checkout under /root, say); then under /var/lib/shop-fleet, linked from $DATA/pg.
# (No `return` in here: bash makes a `return` inside $(...) exit 130 once the script has
# caught a SIGINT, which would cut `make run`'s Ctrl-C cleanup short.)
pg_root() {
    if [ -L "$DATA/pg" ] || [ -d "$DATA/pg" ]; then
        readlink -f "$DATA/pg"
    elif mkdir -p "$DATA" && { [ "$(id -u)" -ne 0 ] || as_pg test -x "$DATA"; }; then
        mkdir -p "$DATA/pg"
        echo "$DATA/pg"
    else
        local alt
        alt="/var/lib/shop-fleet/$(printf '%s' "$DATA" | md5sum | cut -c1-12)/pg"
        mkdir -p "$alt"
        ln -sfn "$alt" "$DATA/pg"
        echo "$alt"
    fi
}

pg_superuser_password() {
    local f="$DATA/secrets/pg-superuser"
    if [ ! -s "$f" ]; then
        mkdir -p "$DATA/secrets"
        chmod 700 "$DATA/secrets"
        head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$f"
        chmod 600 "$f"
    fi
    cat "$f"
}

pg_psql() { # pg_psql SVC SQL...
    local svc=$1
    shift
    PGPASSWORD=$(pg_superuser_password) psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 \
        -p "${PG_PORT[$svc]}" -U postgres -d postgres "$@"
}

pg_up() {
    local svc=$1 root dir port=${PG_PORT[$1]}
    root=$(pg_root)
    dir="$root/$svc"
    chown "$PG_USER:" "$root" 2>/dev/null || true
    if [ ! -f "$dir/PG_VERSION" ]; then
        log "postgres/$svc: initdb in $dir"
        rm -rf "$dir"
        mkdir -p "$dir"
        chown "$PG_USER:" "$dir" 2>/dev/null || true
        chmod 700 "$dir"
        local pwfile
        pwfile=$(mktemp)
        pg_superuser_password >"$pwfile"
        chown "$PG_USER:" "$pwfile" 2>/dev/null || true
        as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --pwfile="$pwfile" -E UTF8 --no-locale \
            --auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$LOGDIR/pg-$svc-initdb.log"
        rm -f "$pwfile"
        cat >>"$dir/postgresql.conf" <<CONF
# shop fleet local stack
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = 200
shared_buffers = 64MB
logging_collector = off
log_min_messages = warning
CONF
        # PG_EXTRA_CONF: more lines for a new cluster (make bench's BENCH_PGSS=1 loads
        # pg_stat_statements this way).
        [ -z "${PG_EXTRA_CONF:-}" ] || printf '%s\n' "$PG_EXTRA_CONF" >>"$dir/postgresql.conf"
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        return 0
    fi
    # postgres removes a stale postmaster.pid itself when its pid is not a postmaster.
    touch "$LOGDIR/pg-$svc.log"
    chown "$PG_USER:" "$LOGDIR/pg-$svc.log" 2>/dev/null || true
    log "postgres/$svc: starting on 127.0.0.1:$port"
    as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$LOGDIR/pg-$svc.log" -w -t 60 start >/dev/null ||
        die "postgres/$svc did not start (log: $LOGDIR/pg-$svc.log)"
    wait_for 30 "postgres/$svc" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"
    # One role and one database per service; credentials are the service name (local only).
    if [ "$(pg_psql "$svc" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$svc'")" != 1 ]; then
        log "postgres/$svc: creating role and database \"$svc\""
        pg_psql "$svc" -c "CREATE ROLE \"$svc\" LOGIN PASSWORD '$svc'"
        pg_psql "$svc" -c "CREATE DATABASE \"$svc\" OWNER \"$svc\""
        pg_psql "$svc" -d "$svc" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC" \
            -c "ALTER SCHEMA public OWNER TO \"$svc\""
    fi
}

pg_down() {
    local dir
    dir="$(pg_root)/$1"
    [ -f "$dir/PG_VERSION" ] || return 0
    if as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        log "postgres/$1: stopping"
        as_pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
    fi
}

# ---- Redis ----

redis_up() {
    local pidfile="$RUNDIR/redis.pid"
    pid_alive "$pidfile" "redis-server" && return 0
    rm -f "$pidfile"
    mkdir -p "$DATA/redis"
    log "redis: starting on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA/redis" \
        --appendonly yes --save '' --daemonize yes --pidfile "$pidfile" \
        --logfile "$LOGDIR/redis.log" >/dev/null
    wait_for 30 redis redis-cli -p "$REDIS_PORT" ping
}

redis_down() {
    pid_alive "$RUNDIR/redis.pid" "redis-server" && log "redis: stopping"
    stop_pid "$RUNDIR/redis.pid" "redis-server"
}

# ---- Kafka (KRaft, single node) ----

kafka_java() { java -Xms256m -Xmx512m -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" -cp "$KAFKA_LIBS/*" "$@"; }

kafka_up() {
    local pidfile="$RUNDIR/kafka.pid" props="$DATA/kafka/server.properties"
    [ -f "$KAFKA_LIBS/.complete" ] || die "Kafka is not in $KAFKA_LIBS: run make deps"
    if ! pid_alive "$pidfile" "$props"; then
        rm -f "$pidfile"
        mkdir -p "$DATA/kafka/data"
        # metadata.max.idle.interval.ms: the controller appends a no-op record to the
        # metadata log this often (default 500 ms) so brokers notice a stale log; for one
        # local node every 5 s is plenty, and it took the idle broker from 1.8 % to 1.4 %
        # of a core (bench/README.md, "Kafka settings").
        # message.max.bytes: the fleet's maximum batch, set rather than left at the
        # default (1 MiB + 12), so it is the number the programs are built with
        # (KAFKA_MESSAGE_MAX in lib.sh).
        cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA/kafka/data
num.partitions=$TOPIC_PARTITIONS
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
metadata.max.idle.interval.ms=5000
message.max.bytes=$KAFKA_MESSAGE_MAX
PROPS
        if [ ! -f "$DATA/kafka/data/meta.properties" ]; then
            log "kafka: formatting storage"
            kafka_java kafka.tools.StorageTool format --standalone --ignore-formatted \
                -t "$(kafka_java kafka.tools.StorageTool random-uuid)" -c "$props" \
                >"$LOGDIR/kafka-format.log" 2>&1 || die "kafka storage format failed ($LOGDIR/kafka-format.log)"
        fi
        log "kafka: starting on 127.0.0.1:$KAFKA_PORT"
        setsid java -Xms256m -Xmx512m -XX:+UseSerialGC \
            -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$props" >>"$LOGDIR/kafka.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
    wait_for 90 kafka kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 -t __none
    kafka_topics
}

kafka_topics() {
    local meta missing=() t
    meta=$(kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 5 2>/dev/null)
    for t in "${TOPICS[@]}"; do
        grep -qF "topic \"$t\" with" <<<"$meta" || missing+=("$t")
    done
    ((${#missing[@]})) || return 0
    log "kafka: creating topics ${missing[*]}"
    local pids=() pid
    for t in "${missing[@]}"; do
        kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
            --create --if-not-exists --topic "$t" --partitions "$TOPIC_PARTITIONS" \
            --replication-factor 1 --config "max.message.bytes=$KAFKA_MESSAGE_MAX" \
            >>"$LOGDIR/kafka-topics.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || die "kafka topic creation failed ($LOGDIR/kafka-topics.log)"
    done
}

kafka_down() {
    pid_alive "$RUNDIR/kafka.pid" "$DATA/kafka/server.properties" && log "kafka: stopping"
    stop_pid "$RUNDIR/kafka.pid" "$DATA/kafka/server.properties" 60
}

# ---- the fleet's programs ----

program_bin() { # program_bin NAME: the built executable, or nothing
    local f
    for f in "$BIN_DIR/services/${1%-svc}/$1" "$BIN_DIR/$1/$1" "$BIN_DIR/$1"; do
        [ -x "$f" ] && { echo "$f"; return 0; }
    done
    return 0
}

# Instances per service: SCALE on the command line, else what the last `up` used, else 1.
N_INST=${SCALE:-$(cat "$DATA/scale" 2>/dev/null || echo 1)}
[[ "$N_INST" =~ ^[1-9]$ ]] || die "SCALE must be 1..9, not '$N_INST'"

# program_env PREFIX: the extra settings given as PREFIX_ENV_<NAME>=value in our
# environment (e.g. ORDER_SVC_ENV_SAGA_TIMEOUT=5s), as NAME=value words for env(1).
program_env() {
    local v
    for v in $(compgen -e | grep "^$1_ENV_" || true); do
        printf '%s=%s\n' "${v#"$1"_ENV_}" "${!v}"
    done
}

addr_list() { # addr_list grpc|admin SVC: every instance's host:port, comma-separated
    local k out=()
    for ((k = 1; k <= $N_INST; k++)); do out+=("127.0.0.1:$("$1_port" "$2" "$k")"); done
    (IFS=,; echo "${out[*]}")
}

# page_token_key SVC: the MAC key of SVC's page tokens, generated once per stack (never
# committed) and given to every instance of SVC, so that any instance takes a token
# another one issued (SCALE=N, restarts).
page_token_key() {
    local f="$DATA/secrets/page-token-key-$1"
    if [ ! -s "$f" ]; then
        mkdir -p "$DATA/secrets"
        chmod 700 "$DATA/secrets"
        (umask 077 && head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$f")
    fi
    cat "$f"
}

instance_start() { # instance_start SVC K
    local svc=$1 k=$2 name="$1-svc-$2" bin pidfile extra
    bin=$(program_bin "$svc-svc")
    [ -n "$bin" ] || return 0 # not built (yet): the stack runs without it
    pidfile="$RUNDIR/$name.pid"
    if ! pid_alive "$pidfile" "$bin"; then
        rm -f "$pidfile"
        log "$name: starting (gRPC 127.0.0.1:$(grpc_port "$svc" "$k"), admin 127.0.0.1:$(admin_port "$svc" "$k"))"
        mapfile -t extra < <(program_env "${svc^^}_SVC")
        env GRPC_ADDR="127.0.0.1:$(grpc_port "$svc" "$k")" ADMIN_ADDR="127.0.0.1:$(admin_port "$svc" "$k")" \
            DATABASE_URL="postgresql://$svc:$svc@127.0.0.1:${PG_PORT[$svc]}/$svc" \
            PAGE_TOKEN_KEY="$(page_token_key "$svc")" \
            KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" PRODUCT_ADDR="$(addr_list grpc product)" \
            "${extra[@]}" setsid "$bin" >>"$LOGDIR/$name.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
}

instance_wait() { wait_for 60 "$1-svc-$2" curl -sf "http://127.0.0.1:$(admin_port "$1" "$2")/readyz"; }

# Every pid file of a service's instances, also those of a larger SCALE used before.
instance_pidfiles() { compgen -G "$RUNDIR/$1-svc*.pid" || true; }

service_down() {
    local f name
    for f in $(instance_pidfiles "$1"); do
        name=$(basename "$f" .pid)
        pid_alive "$f" "$1-svc" && log "$name: stopping"
        stop_pid "$f" "$1-svc" 30
    done
}

# The gateway signs access tokens with a secret generated once per stack (never committed).
jwt_secret() {
    local f="$DATA/secrets/jwt-secret"
    if [ ! -s "$f" ]; then
        mkdir -p "$DATA/secrets"
        chmod 700 "$DATA/secrets"
        head -c 48 /dev/urandom | base64 | tr -d '/+=\n' >"$f"
        chmod 600 "$f"
    fi
    cat "$f"
}

gateway_start() {
    local bin pidfile="$RUNDIR/gateway.pid" extra
    bin=$(program_bin gateway)
    [ -n "$bin" ] || return 0
    if ! pid_alive "$pidfile" "$bin"; then
        rm -f "$pidfile"
        log "gateway: starting on http://127.0.0.1:$GATEWAY_PORT"
        mapfile -t extra < <(program_env GATEWAY)
        env GATEWAY_ADDR="127.0.0.1:$GATEWAY_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
            ORDER_ADDR="$(addr_list grpc order)" PRODUCT_ADDR="$(addr_list grpc product)" \
            USER_ADDR="$(addr_list grpc user)" JWT_SECRET="$(jwt_secret)" \
            "${extra[@]}" setsid "$bin" >>"$LOGDIR/gateway.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
    # /healthz, not /readyz: the gateway is up even while a service is not built yet.
    wait_for 60 gateway curl -sf "http://127.0.0.1:$GATEWAY_PORT/healthz"
}

gateway_down() {
    [ -f "$RUNDIR/gateway.pid" ] || return 0
    pid_alive "$RUNDIR/gateway.pid" gateway && log "gateway: stopping"
    stop_pid "$RUNDIR/gateway.pid" gateway 30
}

fleet_up() {
    local svc k f
    # Instances above SCALE (from an earlier, larger SCALE) stop; then all start at once
    # and are waited for together: start-up order does not matter to them.
    for svc in "${SERVICES[@]}"; do
        for f in $(instance_pidfiles "$svc"); do
            k=${f##*-}
            k=${k%.pid}
            [[ "$k" =~ ^[0-9]+$ ]] && ((k <= N_INST)) && continue
            stop_pid "$f" "$svc-svc" 30
        done
    done
    for svc in "${SERVICES[@]}"; do
        for ((k = 1; k <= N_INST; k++)); do instance_start "$svc" "$k"; done
    done
    for svc in "${SERVICES[@]}"; do
        [ -n "$(program_bin "$svc-svc")" ] || continue
        for ((k = 1; k <= N_INST; k++)); do instance_wait "$svc" "$k"; done
    done
    gateway_start
}

# ---- single parts: for fault injection and benchmarks ----

parts() {
    local svc k
    for svc in "${SERVICES[@]}"; do echo "postgres/$svc"; done
    echo redis
    echo kafka
    if ((FLEET)); then
        for svc in "${SERVICES[@]}"; do
            for ((k = 1; k <= $N_INST; k++)); do echo "$svc-svc-$k"; done
        done
        echo gateway
    fi
}

# kill_part PART: SIGKILL, no goodbye. A PostgreSQL server dies with all its backends
# at once, as in a crash of its machine; returns once every process is gone.
kill_part() {
    local part=$1 pids=() pidfile pid i dir
    case "$part" in
    postgres/*)
        dir="$(pg_root)/${part#postgres/}"
        pidfile="$dir/postmaster.pid"
        pid=$(head -n1 "$pidfile" 2>/dev/null || true)
        # postmaster.pid outlives a crash: make sure the pid is still our postmaster.
        [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
            grep -qF -- "-D $dir" || die "$part is not running"
        # Frozen first, so that no backend forks between listing and killing: a
        # surviving backend would hold the shared memory and block the restart.
        kill -STOP "$pid"
        pids=("$pid" $(pgrep -P "$pid" || true))
        ;;
    redis | kafka | gateway | *-svc-[1-9])
        pidfile="$RUNDIR/$part.pid"
        [ -f "$pidfile" ] || die "$part is not running"
        pids=("$(head -n1 "$pidfile")")
        ;;
    *) die "no part named '$part' (see: stack.sh parts)" ;;
    esac
    log "$part: SIGKILL ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
        # A zombie is dead but still holds its pid until it is reaped (PID 1 may take
        # seconds): pg_ctl, and postgres itself, take a live pid for a running server.
        for ((i = 0; i < 600; i++)); do
            [ -d "/proc/$pid" ] || break
            [[ "$part" == postgres/* ]] || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || break
            sleep 0.05
        done
        ((i < 600)) || die "$part: pid $pid still there 30 s after SIGKILL"
    done
    [[ "$part" == postgres/* ]] || rm -f "$pidfile"
}

start_part() {
    local part=$1 k
    mkdir -p "$LOGDIR" "$RUNDIR"
    case "$part" in
    postgres/*) pg_up "${part#postgres/}" ;;
    redis) redis_up ;;
    kafka) kafka_up ;;
    gateway) gateway_start ;;
    *-svc-[1-9])
        k=${part##*-}
        instance_start "${part%-svc-*}" "$k"
        instance_wait "${part%-svc-*}" "$k"
        ;;
    *) die "no part named '$part' (see: stack.sh parts)" ;;
    esac
}

# create_admin EMAIL: user-svc's create-admin against this stack (password on stdin).
create_admin() {
    local bin
    bin=$(program_bin user-svc)
    [ -n "$bin" ] || die "user-svc is not built (make release)"
    DATABASE_URL="postgresql://user:user@127.0.0.1:${PG_PORT[user]}/user" LOG_LEVEL=warn \
        "$bin" create-admin "$1"
}

# ---- the whole stack ----

stack_env() {
    local svc
    echo "STACK_PROFILE=$STACK_PROFILE"
    echo "STACK_DATA=$DATA"
    echo "SCALE=$N_INST"
    for svc in "${SERVICES[@]}"; do
        echo "${svc^^}_DATABASE_URL=postgresql://$svc:$svc@127.0.0.1:${PG_PORT[$svc]}/$svc"
    done
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    echo "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
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
    mkdir -p "$LOGDIR" "$RUNDIR"
    chmod 755 "$DATA" "$LOGDIR"
    local svc prev
    prev=$(cat "$DATA/scale" 2>/dev/null || echo 1)
    echo "$N_INST" >"$DATA/scale.tmp" && mv "$DATA/scale.tmp" "$DATA/scale"
    for svc in "${SERVICES[@]}"; do pg_up "$svc"; done
    redis_up
    kafka_up
    if ((FLEET)) && [ "$prev" != "$N_INST" ]; then
        # The gateway and order-svc take their upstream lists at start: a new SCALE
        # restarts the programs (each drains on SIGTERM) so every list names every instance.
        log "SCALE $prev -> $N_INST: restarting the programs"
        gateway_down
        for svc in "${SERVICES[@]}"; do service_down "$svc"; done
    fi
    ((FLEET)) && fleet_up
    stack_env >"$DATA/stack.env"
    log "up: $(status | tr '\n' ';')"
}

down() {
    local svc
    gateway_down
    for svc in "${SERVICES[@]}"; do service_down "$svc"; done
    kafka_down
    redis_down
    for svc in "${SERVICES[@]}"; do pg_down "$svc"; done
}

status() {
    local svc k
    for svc in "${SERVICES[@]}"; do
        printf 'postgres/%s 127.0.0.1:%s %s\n' "$svc" "${PG_PORT[$svc]}" \
            "$(port_open "${PG_PORT[$svc]}" && echo up || echo down)"
    done
    printf 'redis 127.0.0.1:%s %s\n' "$REDIS_PORT" "$(port_open "$REDIS_PORT" && echo up || echo down)"
    printf 'kafka 127.0.0.1:%s %s\n' "$KAFKA_PORT" "$(port_open "$KAFKA_PORT" && echo up || echo down)"
    ((FLEET)) || return 0
    for svc in "${SERVICES[@]}"; do
        [ -n "$(program_bin "$svc-svc")" ] || continue
        for ((k = 1; k <= $N_INST; k++)); do
            printf '%s-svc-%s 127.0.0.1:%s %s\n' "$svc" "$k" "$(grpc_port "$svc" "$k")" \
                "$(curl -sf "http://127.0.0.1:$(admin_port "$svc" "$k")/readyz" >/dev/null && echo ready || echo down)"
        done
    done
    if [ -n "$(program_bin gateway)" ]; then
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
    # The demo data and the welcome need the whole fleet built (make run does that).
    if ((FLEET)) && [ -n "$(program_bin gateway)" ]; then
        "$ROOT/deploy/local/seed.sh"
    fi
    log "running; Ctrl-C stops everything"
    while true; do sleep 1; done
}

case "${1:-}" in
up) up ;;
parts) parts ;;
kill) kill_part "${2:?usage: $0 kill PART}" ;;
start) start_part "${2:?usage: $0 start PART}" ;;
create-admin) create_admin "${2:?usage: $0 create-admin EMAIL (password on stdin)}" ;;
down) down ;;
run) run ;;
status) status ;;
wipe) wipe ;;
env) stack_env ;;
*) echo "usage: $0 up|down|run|status|wipe|env|parts|kill PART|start PART|create-admin EMAIL" >&2; exit 2 ;;
esac
