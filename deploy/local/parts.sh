# Single parts of the local stack, for fault injection and benchmarks: their names,
# SIGKILL, start again (sourced by stack.sh after the other parts, not run).

parts() {
    local svc k
    for svc in "${PG_SERVICES[@]}"; do echo "postgres/$svc"; done
    echo redis
    echo kafka
    if ((FLEET)); then
        for svc in "${SERVICES[@]}"; do
            for ((k = 1; k <= $N_INST; k++)); do instance_name "$svc" "$k"; done
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
    redis | kafka | gateway | *-[1-9])
        [[ "$part" != *-[1-9] ]] || [ -n "$(part_service "$part")" ] ||
            die "no part named '$part' (see: stack.sh parts)"
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
    local part=$1 svc
    mkdir -p "$LOGDIR" "$RUNDIR"
    case "$part" in
    postgres/*) pg_up "${part#postgres/}" ;;
    redis) redis_up ;;
    kafka) kafka_up ;;
    gateway) gateway_start ;;
    *-[1-9])
        svc=$(part_service "$part")
        [ -n "$svc" ] || die "no part named '$part' (see: stack.sh parts)"
        instance_start "$svc" "${part##*-}"
        instance_wait "$svc" "${part##*-}"
        ;;
    *) die "no part named '$part' (see: stack.sh parts)" ;;
    esac
}
