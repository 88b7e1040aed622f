# Redis of the local stack (sourced by stack.sh after lib.sh, not run).

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
