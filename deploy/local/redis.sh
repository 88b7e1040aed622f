# Redis of the local stack (sourced by stack.sh after lib.sh, not run).
#
# Nobody reaches Redis without a password (docs/trust.md "Redis and PostgreSQL"): the
# ACL file $DATA/redis/users.acl, written on every `up` from the stack's secrets,
# disables the `default` user and knows two others:
#   gateway  what the gateway runs (gateway/src/session.c, ratelimit.c, routes_ops.c)
#            on the keys of its prefix gw: and nothing else
#   admin    everything: the stack's own checks, the tests' clean-up and inspection
# The file holds SHA-256 hashes of the passwords, never the passwords.

redis_gateway_password_file() { stack_secret_file redis-gateway-password random_b64 24; }
redis_admin_password_file() { stack_secret_file redis-admin-password random_b64 24; }

# The gateway's commands: PING (/readyz), EVALSHA/EVAL (its scripts), DEL (logout) and
# what its scripts call; every key under gw: (REDIS_PREFIX must start with gw:).
REDIS_GATEWAY_RULES='resetkeys ~gw:* resetchannels -@all +ping +evalsha +eval +del +exists +get +set +hset +hmget +incr +pttl +pexpire'

redis_sha256() { sha256sum <"$1" | cut -d' ' -f1; }

# redis_acl_write: the ACL file from the current secrets; true when it changed.
redis_acl_write() {
    local f="$DATA/redis/users.acl" new
    new=$(printf '%s\n' \
        "user default off resetkeys resetchannels -@all" \
        "user gateway on #$(redis_sha256 "$(redis_gateway_password_file)") $REDIS_GATEWAY_RULES" \
        "user admin on #$(redis_sha256 "$(redis_admin_password_file)") ~* &* +@all")
    [ "$(cat "$f" 2>/dev/null)" != "$new" ] || return 1
    (umask 077 && printf '%s\n' "$new" >"$f.tmp") && mv "$f.tmp" "$f"
}

# redis_cli ARGS...: redis-cli as the admin user (password through the environment,
# never on the command line).
redis_cli() {
    REDISCLI_AUTH=$(cat "$(redis_admin_password_file)") redis-cli --user admin -h 127.0.0.1 \
        -p "$REDIS_PORT" "$@"
}

# redis_ping: the server answers as the admin (redis-cli goes on as `default` after a
# refused AUTH, so a server without our ACL would answer PING: ask who we are).
redis_ping() { [ "$(redis_cli acl whoami 2>/dev/null)" = admin ]; }

redis_up() {
    local pidfile="$RUNDIR/redis.pid" changed=0
    mkdir -p "$DATA/redis"
    redis_acl_write && changed=1
    if pid_alive "$pidfile" "redis-server"; then
        # A server of an older stack (no ACL file) does not know the admin: restart it;
        # a changed ACL file (a rotated password) is loaded in place.
        if redis_ping; then
            ((changed)) || return 0
            log "redis: loading the new ACL file"
            [ "$(redis_cli acl load 2>&1)" != OK ] || return 0
        fi
        log "redis: restarting with the ACL file"
        redis_down
    fi
    rm -f "$pidfile"
    log "redis: starting on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA/redis" \
        --aclfile "$DATA/redis/users.acl" \
        --appendonly yes --save '' --daemonize yes --pidfile "$pidfile" \
        --logfile "$LOGDIR/redis.log" >/dev/null
    wait_for 30 redis redis_ping
}

redis_down() {
    pid_alive "$RUNDIR/redis.pid" "redis-server" && log "redis: stopping"
    stop_pid "$RUNDIR/redis.pid" "redis-server"
}

# Parts (parts.sh): redis, the one server.
redis_parts() { echo redis; }
redis_part_root_pid() {
    pid_alive "$RUNDIR/redis.pid" redis-server && head -n1 "$RUNDIR/redis.pid"
    return 0
}
redis_part_start() { redis_up; }
