# Single parts of the local stack, for fault injection and benchmarks: their names,
# SIGKILL, freeze, start again (sourced by stack.sh after the other parts, not run).
#
# Each infrastructure file names its own parts and knows their processes, through three
# functions of its prefix (pg_, redis_, kafka_):
#   <x>_parts               the names of its parts, one per line
#   <x>_part_root_pid PART  the pid of the part's top process (its whole process tree
#                           is the part), or nothing when the part is not running
#   <x>_part_start PART     start the part again; returns once it answers
# A part name says whose it is: postgres/* and pg-monitor (pg.sh), redis, redis/*,
# sentinel/* (redis.sh), kafka, kafka/* (kafka.sh); the fleet's programs
# (<program>-<k>, gateway) are programs.sh's.

parts() {
    local svc k
    pg_parts
    redis_parts
    kafka_parts
    if ((FLEET)); then
        for svc in "${SERVICES[@]}"; do
            for ((k = 1; k <= $N_INST; k++)); do instance_name "$svc" "$k"; done
        done
        echo gateway
    fi
}

# part_owner PART: the prefix of the file that owns PART (pg, redis, kafka, program);
# dies when no part has that name.
part_owner() {
    case "$1" in
    postgres/* | pg-monitor) echo pg ;;
    redis | redis/* | sentinel/*) echo redis ;;
    kafka | kafka/*) echo kafka ;;
    gateway) echo program ;;
    *-[1-9]) [ -n "$(part_service "$1")" ] && echo program ;;
    esac
    # Not `parts | grep -q`: grep leaves at the first match, and a part list still being
    # written then dies of SIGPIPE, which pipefail reports as no such part.
    grep -qxF -- "$1" <<<"$(parts)" || die "no part named '$1' (see: stack.sh parts)"
}

program_part_root_pid() {
    local pidfile="$RUNDIR/$1.pid" prog=gateway
    [ "$1" = gateway ] || prog=${FLEET_PROGRAM[$(part_service "$1")]}
    pid_alive "$pidfile" "$prog" && head -n1 "$pidfile"
    return 0
}
program_part_start() {
    local svc
    case "$1" in
    gateway) gateway_start ;;
    *)
        svc=$(part_service "$1")
        instance_start "$svc" "${1##*-}"
        instance_wait "$svc" "${1##*-}"
        ;;
    esac
}

# proc_tree PID: PID and all its descendants, parents first.
proc_tree() {
    local p
    echo "$1"
    for p in $(pgrep -P "$1" || true); do proc_tree "$p"; done
}

# part_pids PART: the part's processes, frozen (SIGSTOP) top-down so that none forks
# between listing and signalling; dies when the part is not running.
part_pids() {
    local root owner pids=() p
    owner=$(part_owner "$1")
    root=$("${owner}_part_root_pid" "$1")
    [[ "$root" =~ ^[0-9]+$ ]] && [ -d "/proc/$root" ] || die "$1 is not running"
    kill -STOP "$root" 2>/dev/null || true
    # Twice: a child forked just before its parent stopped is caught the second time.
    for p in $(proc_tree "$root") $(proc_tree "$root"); do
        kill -STOP "$p" 2>/dev/null || true
    done
    proc_tree "$root"
}

# kill_part PART: SIGKILL of the part's every process at once, no goodbye (a PostgreSQL
# server dies with all its backends, as in a crash of its machine); returns once every
# process is gone.
kill_part() {
    local part=$1 pids pid i
    pids=$(part_pids "$part") || exit 1
    log "$part: SIGKILL $(echo $pids)"
    kill -KILL $pids 2>/dev/null || true
    for pid in $pids; do
        # A zombie is dead but still holds its pid until it is reaped (PID 1 may take
        # seconds): pg_ctl, and postgres itself, take a live pid for a running server,
        # so a PostgreSQL part waits until the pid is gone.
        for ((i = 0; i < 600; i++)); do
            [ -d "/proc/$pid" ] || break
            [[ "$part" == postgres/* ]] || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || break
            sleep 0.05
        done
        ((i < 600)) || die "$part: pid $pid still there 30 s after SIGKILL"
    done
}

# freeze_part PART SECONDS: SIGSTOP of every process of the part, SECONDS later SIGCONT
# (a stalled machine, a long GC pause, a VM migration): its connections stay open and
# say nothing. Returns after the SIGCONT.
freeze_part() {
    local part=$1 secs=$2 pids
    [[ "$secs" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "freeze: SECONDS must be a number, not '$secs'"
    pids=$(part_pids "$part") || exit 1
    log "$part: SIGSTOP $(echo $pids) for ${secs}s"
    sleep "$secs"
    kill -CONT $pids 2>/dev/null || true
    log "$part: SIGCONT"
}

start_part() {
    local owner
    owner=$(part_owner "$1")
    mkdir -p "$LOGDIR" "$RUNDIR"
    "${owner}_part_start" "$1"
}

# part_answers PART: true when the part answers now, as the stack's own clients see it:
# a PostgreSQL server or node accepts connections, Redis answers the admin's PING, a
# Sentinel its PING, a Kafka node gives metadata, a program its readiness.
part_answers() {
    local part=$1 port svc k
    case "$(part_owner "$part")" in
    pg)
        case "$part" in
        pg-monitor) port=$PG_MONITOR_PORT ;;
        postgres/*/*) svc=${part#postgres/} k=${svc#*/} svc=${svc%/*} port=$(pg_node_port "$svc" "$k") ;;
        *) port=${PG_PORT[${part#postgres/}]} ;;
        esac
        "$PG_BIN/pg_isready" -q -t 5 -h 127.0.0.1 -p "$port"
        ;;
    redis)
        case "$part" in
        redis | redis/1) port=$REDIS_PORT ;;
        redis/2) port=$REDIS_REPLICA_PORT ;;
        sentinel/*) port=$(sentinel_port "${part#sentinel/}") ;;
        esac
        [[ "$part" == sentinel/* ]] && { port_open "$port"; return; }
        [ "$(REDISCLI_AUTH=$(cat "$(redis_admin_password_file)") timeout 5 redis-cli --user admin \
            -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]
        ;;
    kafka)
        k=${part#kafka}
        k=${k#/}
        timeout 15 kcat -F "$(kafka_kcat_config admin)" -b "127.0.0.1:$(kafka_port "${k:-1}")" \
            -L -m 5 -t __none >/dev/null 2>&1
        ;;
    program)
        if [ "$part" = gateway ]; then
            curl -sf -m 5 "http://127.0.0.1:$GATEWAY_PORT/readyz" >/dev/null
        else
            curl -sf -m 5 "http://127.0.0.1:$(admin_port "$(part_service "$part")" "${part##*-}")/readyz" >/dev/null
        fi
        ;;
    esac
}

# stack_settled: true when the stack could lose any one part again: on the HA topology
# every Kafka node is in every ISR, every database has its synchronous standby, Redis
# its replica online (the chaos harness waits for this between two faults: HA is
# built to survive one failure at a time); HA=0: every server answers.
stack_settled() {
    kafka_settled && redis_settled && pg_settled
}
