# Shared settings and helpers of the local stack scripts (sourced, not run).
#
# STACK_PROFILE picks a port range and a data directory, so that the test stack
# (make test) and the developer stack (make up / make run) can run side by side:
#   dev   .data/       PostgreSQL 5433-5435, Redis 6380, Kafka 9092/9093
#   test  .data-test/  PostgreSQL 15433-15435, Redis 16380, Kafka 19092/19093
#                      (STACK_PORT_BASE=N shifts the test ports by N instead of 10000,
#                      so two checkouts can run their tests at once)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK_PROFILE=${STACK_PROFILE:-dev}
SERVICES=(order product user)

case "$STACK_PROFILE" in
dev) DATA="$ROOT/.data" ; base=0 ; FLEET=${FLEET:-1} ;;
test) DATA="$ROOT/.data-test" ; base=${STACK_PORT_BASE:-10000} ; FLEET=${FLEET:-0} ;;
*) echo "STACK_PROFILE must be dev or test, not '$STACK_PROFILE'" >&2; exit 2 ;;
esac

declare -A PG_PORT=([order]=$((5433 + base)) [product]=$((5434 + base)) [user]=$((5435 + base)))
REDIS_PORT=$((6380 + base))
KAFKA_PORT=$((9092 + base))
KAFKA_CONTROLLER_PORT=$((9093 + base))
TOPICS=(order.events inventory.events payment.events
        order.events.dlq inventory.events.dlq payment.events.dlq)
TOPIC_PARTITIONS=6

# The fleet's programs, started by `up` once they are built (FLEET=1, the default of
# the dev profile; the test profile's suites start their own): gRPC and admin ports.
declare -A GRPC_PORT=([order]=$((50051 + base)) [product]=$((50052 + base)) [user]=$((50053 + base)))
declare -A ADMIN_PORT=([order]=$((8081 + base)) [product]=$((8082 + base)) [user]=$((8083 + base)))
GATEWAY_PORT=$((8080 + base))
# Where the programs are taken from: the optimized build unless BIN_DIR says otherwise.
BIN_DIR=${BIN_DIR:-$ROOT/build-release}

KAFKA_VERSION=4.1.1
CACHE=${SHOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shop-fleet}
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION"
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

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
