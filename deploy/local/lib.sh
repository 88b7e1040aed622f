# Shared settings and helpers of the local stack scripts (sourced, not run).
#
# STACK_PROFILE picks a port range and a data directory, so that the stacks of
# make run, make test, make bench and make chaos can run side by side:
#   dev    .data/        docs/architecture.md's ports: PostgreSQL 5433-5435, Redis 6380, Kafka 9092/9093,
#                        gateway 8080, services gRPC 50051-50053 and admin 8081-8083,
#                        Jaeger OTLP 4317 (HTTP 4318) and UI 16686, Prometheus 9090
#   test   .data-test/   the dev ports + 10000; infrastructure only (the suites start
#                        their own programs)
#   bench  .data-bench/  compact layout at B = 21000 (see below)
#   chaos  .data-chaos/  compact layout at B = 22000
# STACK_PORT_BASE=N moves the test ports to dev + N and bench/chaos to N + 11000 / 12000,
# so that two checkouts can run their stacks at once.
#
# Compact layout (bench, chaos): gateway B+80, Kafka B+92 (controller B+93), Redis B+380,
# PostgreSQL of a service B+433+pg, Jaeger OTLP B+617 (HTTP B+618) and UI B+686; instance
# k of a service admin HTTP B+100+10(k-1)+admin, gRPC B+200+10(k-1)+grpc, with the offsets
# pg, admin, grpc of deploy/fleet.conf.
# In the dev layout, instance k listens on the ports of instance 1 + 100(k-1).
#
# The services, their databases, topics and upstreams come from deploy/fleet.conf
# (fleet.sh). FLEET=1 runs the programs: then every one of them must be built.
#
# SCALE=N (1..9) runs N instances of each service, named <program>-<k>; `up` remembers
# it in the data directory for the commands that follow.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK_PROFILE=${STACK_PROFILE:-dev}
. "$ROOT/deploy/local/fleet.sh"

shift_=${STACK_PORT_BASE:-10000}
case "$STACK_PROFILE" in
dev) DATA="$ROOT/.data" ; base=0 ; FLEET=${FLEET:-1} ;;
test) DATA="$ROOT/.data-test" ; base=$shift_ ; FLEET=${FLEET:-0} ;;
bench) DATA="$ROOT/.data-bench" ; base=$((shift_ + 11000)) ; FLEET=${FLEET:-1} ;;
chaos) DATA="$ROOT/.data-chaos" ; base=$((shift_ + 12000)) ; FLEET=${FLEET:-1} ;;
*) echo "STACK_PROFILE must be dev, test, bench or chaos, not '$STACK_PROFILE'" >&2; exit 2 ;;
esac
unset shift_

TOPIC_PARTITIONS=6 # every topic's (TOPICS: fleet.sh)
# The fleet's one maximum record batch, in bytes: the broker's message.max.bytes and
# every topic's max.message.bytes. The programs' producers refuse locally what would
# not fit (KFK_BATCH_MAX in common/include/common/kfk.h, which must say the same:
# tests/deploy/test_compose.py checks it), so a broker never refuses a batch of
# theirs for its size, and a dead-letter copy is cut to fit (docs/common.md).
KAFKA_MESSAGE_MAX=1048576

case "$STACK_PROFILE" in
dev | test)
    pg_base=$((5433 + base))
    REDIS_PORT=$((6380 + base))
    KAFKA_PORT=$((9092 + base))
    KAFKA_CONTROLLER_PORT=$((9093 + base))
    GATEWAY_PORT=$((8080 + base))
    grpc_port() { echo $((50051 + base + FLEET_GRPC[$1] + 100 * ($2 - 1))); }
    admin_port() { echo $((8081 + base + FLEET_ADMIN[$1] + 100 * ($2 - 1))); }
    # Jaeger: OTLP/gRPC, OTLP/HTTP, query HTTP (UI and /api/traces), query gRPC,
    # health; Prometheus (dev profile only).
    OTLP_PORT=$((4317 + base)) OTLP_HTTP_PORT=$((4318 + base))
    JAEGER_QUERY_PORT=$((16686 + base)) JAEGER_QUERY_GRPC_PORT=$((16685 + base))
    JAEGER_HEALTH_PORT=$((13133 + base)) PROMETHEUS_PORT=$((9090 + base))
    ;;
*)
    pg_base=$((base + 433))
    REDIS_PORT=$((base + 380))
    KAFKA_PORT=$((base + 92))
    KAFKA_CONTROLLER_PORT=$((base + 93))
    KAFKA_PLAIN_PORT=$((base + 94)) # bench only: STACK_SECURITY=off (below)
    GATEWAY_PORT=$((base + 80))
    grpc_port() { echo $((base + 200 + 10 * ($2 - 1) + FLEET_GRPC[$1])); }
    admin_port() { echo $((base + 100 + 10 * ($2 - 1) + FLEET_ADMIN[$1])); }
    OTLP_PORT=$((base + 617)) OTLP_HTTP_PORT=$((base + 618))
    JAEGER_QUERY_PORT=$((base + 686)) JAEGER_QUERY_GRPC_PORT=$((base + 685))
    JAEGER_HEALTH_PORT=$((base + 633)) PROMETHEUS_PORT=$((base + 690))
    ;;
esac
# HA=1: the high-availability topology (docs/ha.md): three Kafka nodes (KRaft, each a
# broker and a controller), each service's PostgreSQL as a primary and a synchronous
# standby under pg_auto_failover (one monitor for the stack), Redis as a master, a
# replica and three Sentinels. HA on the command line, else what the last `up` used,
# else 0; a stack's data is of one topology (`up` refuses to switch: wipe first).
# Ports of the extra parts, in the dev layout (test: + STACK_PORT_BASE) / the compact
# layout (bench, chaos: B+):
#   Kafka node k (1..3)       client 9092+100(k-1), controller 9093+100(k-1) / node 1 at
#                             B+92/93, node k>1 at B+800+10(k-1)+2/3
#   PostgreSQL node 2 of svc  its node 1's port + 100 / B+443+pg
#   pg_auto_failover monitor  5440 / B+440
#   Redis replica             6381 / B+381
#   Sentinel k (1..3)         6390+k-1 / B+390+k-1
HA=${HA:-$(cat "$DATA/ha" 2>/dev/null || echo 0)}
[[ "$HA" =~ ^[01]$ ]] || { echo "HA must be 0 or 1, not '$HA'" >&2; exit 2; }
KAFKA_NODES=$((HA ? 3 : 1))
case "$STACK_PROFILE" in
dev | test)
    kafka_port() { echo $((9092 + base + 100 * ($1 - 1))); }
    kafka_controller_port() { echo $((9093 + base + 100 * ($1 - 1))); }
    PG_MONITOR_PORT=$((5440 + base))
    pg_node_port() { echo $((${PG_PORT[$1]} + 100 * ($2 - 1))); }
    SENTINEL_PORT=$((6390 + base))
    ;;
*)
    kafka_port() { (($1 == 1)) && echo $((base + 92)) || echo $((base + 800 + 10 * ($1 - 1) + 2)); }
    kafka_controller_port() { (($1 == 1)) && echo $((base + 93)) || echo $((base + 800 + 10 * ($1 - 1) + 3)); }
    PG_MONITOR_PORT=$((base + 440))
    pg_node_port() { echo $((${PG_PORT[$1]} + 10 * ($2 - 1))); }
    SENTINEL_PORT=$((base + 390))
    ;;
esac
REDIS_REPLICA_PORT=$((REDIS_PORT + 1))
sentinel_port() { echo $((SENTINEL_PORT + $1 - 1)); }

# PG_SERVICES: the services with a database, each on its own cluster at PG_PORT[svc].
declare -A PG_PORT=()
PG_SERVICES=()
for svc_ in "${SERVICES[@]}"; do
    [ -n "${FLEET_DB[$svc_]}" ] || continue
    PG_SERVICES+=("$svc_")
    PG_PORT[$svc_]=$((pg_base + FLEET_PG[$svc_]))
done
unset svc_ pg_base

# db_url SVC: the service's database, as its own role with its password (pg.sh), over
# TLS with the server's certificate checked against the stack's CA and its name
# (sslmode=verify-full; the certificate names 127.0.0.1). db_url_file SVC: the same URL
# in a secret file, for a program's DATABASE_URL_FILE. env_prefix PROGRAM: order-svc ->
# ORDER_SVC (the prefix of <PROGRAM>_ENV_<NAME> settings).
pg_role_password() { stack_secret "pg-password-$1" random_b64 24; }
# With HA=1 the URL names both nodes of the service (pg.sh): libpq tries them in turn and
# keeps the one that takes writes (target_session_attrs=read-write), a frozen one costing
# connect_timeout (3 s) at most.
db_url() {
    local db=${FLEET_DB[$1]} hosts="127.0.0.1:${PG_PORT[$1]}" ha=""
    if ((HA)); then
        hosts="127.0.0.1:$(pg_node_port "$1" 1),127.0.0.1:$(pg_node_port "$1" 2)"
        ha="target_session_attrs=read-write&connect_timeout=3&"
    fi
    echo "postgresql://$db:$(pg_role_password "$1")@$hosts/$db?${ha}sslmode=verify-full&sslrootcert=$(url_encode "$PKI_DIR/ca.crt")"
}
db_url_file() {
    local f="$DATA/secrets/database-url-$1" url
    url=$(db_url "$1")
    if [ "$STACK_SECURITY" = off ]; then
        f="$DATA/secrets/database-url-plaintext-$1"
        url="${url%%\?*}?sslmode=disable"
    fi
    [ "$(cat "$f" 2>/dev/null)" = "$url" ] || (umask 077 && printf '%s\n' "$url" >"$f.tmp" && mv "$f.tmp" "$f")
    echo "$f"
}
# url_encode TEXT: TEXT with every byte but [A-Za-z0-9/._~-] as %XX (a path in a URL).
url_encode() {
    local LC_ALL=C s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
        [A-Za-z0-9/._~-]) out+=$c ;;
        *) printf -v c '%%%02X' "'$c" && out+=$c ;;
        esac
    done
    echo "$out"
}
env_prefix() { local p=${1^^}; echo "${p//-/_}"; }

# STACK_SECURITY=off (bench profile only): the programs start without transport
# security (gRPC plaintext, Kafka and PostgreSQL plaintext), so that make bench can
# price it (bench/harness/phases_security.py). Only the bench stack's broker and
# PostgreSQL servers also take plaintext connections for it: a plaintext Kafka listener
# on KAFKA_PLAIN_PORT whose anonymous user is a super user, and `host` lines in
# pg_hba.conf. Every other profile refuses it (docs/trust.md).
STACK_SECURITY=${STACK_SECURITY:-on}
case "$STACK_SECURITY/$STACK_PROFILE" in
on/* | off/bench) ;;
off/*) echo "STACK_SECURITY=off is for the bench profile only (make bench prices security with it)" >&2; exit 2 ;;
*) echo "STACK_SECURITY must be on or off, not '$STACK_SECURITY'" >&2; exit 2 ;;
esac
bench_plaintext() { [ "$STACK_PROFILE" = bench ]; }

# Where the programs are taken from: the optimized build unless BIN_DIR says otherwise.
BIN_DIR=${BIN_DIR:-$ROOT/build-release}

KAFKA_VERSION=4.1.1
CACHE=${SHOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shop-fleet}
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION"
# The trace backend, built once from the Go module proxy (deploy/local/jaeger/go.mod pins it).
JAEGER_VERSION=v1.75.0
JAEGER_BIN="$CACHE/tools/jaeger-$JAEGER_VERSION"
PG_BIN=/usr/lib/postgresql/15/bin
PG_USER=postgres # PostgreSQL refuses to run as root

LOGDIR="$DATA/log"
RUNDIR="$DATA/run"

log() { printf '[stack %s] %s\n' "$STACK_PROFILE" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# as_pg CMD...: run a command as the unprivileged PostgreSQL user (or as ourselves
# when we are not root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

# pid_alive PIDFILE PATTERN: true if the pid file names a live process whose command
# line contains PATTERN (so a stale pid file, or a recycled pid, is not mistaken).
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid=$(head -n1 "$1" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2"
}

# stop_pid PIDFILE PATTERN [SECONDS]: SIGTERM, wait, then SIGKILL; removes the pid file.
stop_pid() {
    local pidfile=$1 pattern=$2 wait_s=${3:-30} pid i
    if pid_alive "$pidfile" "$pattern"; then
        pid=$(head -n1 "$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < wait_s * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop in ${wait_s}s, killing it"
            kill -KILL "$pid" 2>/dev/null || true
            # wait for the kernel to reap it so its ports are free when we return
            for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    rm -f "$pidfile"
}

# wait_for SECONDS WHAT CMD...: retry CMD every 0.2 s until it succeeds.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not answer within ${secs}s (logs: $LOGDIR)"
}

# stack_secret NAME CMD...: the secret in $DATA/secrets/NAME, made once per stack by CMD
# (never committed, readable by us only); random_b64 N / random_hex N: N random bytes.
stack_secret() {
    local f="$DATA/secrets/$1"
    shift
    if [ ! -s "$f" ]; then
        mkdir -p "$DATA/secrets"
        chmod 700 "$DATA/secrets"
        (umask 077 && "$@" >"$f")
    fi
    cat "$f"
}
# stack_secret_file NAME GENERATOR [ARGS]: the same secret, as the path of its file (for
# a program's NAME_FILE setting: the secret stays out of the process environment).
stack_secret_file() {
    stack_secret "$@" >/dev/null
    echo "$DATA/secrets/$1"
}
random_b64() { head -c "$1" /dev/urandom | base64 | tr -d '/+=\n'; }
random_hex() { head -c "$1" /dev/urandom | od -An -v -tx1 | tr -d ' \n'; }

# The stack's PKI (deploy/pki.sh, docs/trust.md): a local CA and one certificate per
# program and server under $DATA/secrets/pki, made on first use. pki_cert NAME [SAN...]
# makes NAME's certificate (CN=NAME; names NAME, localhost, 127.0.0.1 and SAN...) unless
# a current one exists; tls_ca_file prints the CA's path; tls_cert_file / tls_key_file
# NAME print NAME's files (after pki_cert NAME).
PKI_DIR="$DATA/secrets/pki"
pki_cert() { mkdir -p "$DATA/secrets" && chmod 700 "$DATA/secrets" && "$ROOT/deploy/pki.sh" "$PKI_DIR" cert "$@"; }
tls_ca_file() { mkdir -p "$DATA/secrets" && chmod 700 "$DATA/secrets" && "$ROOT/deploy/pki.sh" "$PKI_DIR" ca && echo "$PKI_DIR/ca.crt"; }
tls_cert_file() { echo "$PKI_DIR/$1.crt"; }
tls_key_file() { echo "$PKI_DIR/$1.key"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
