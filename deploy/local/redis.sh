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
# The `default` user is off: nobody can log in as it, and a connection that has not
# logged in may run nothing (NOAUTH). Its rules are nonetheless every key and command:
# Redis 7.0 replays the append-only file as the default user and checks each
# MULTI/EXEC of it (what a script's writes are logged as) against those rules again,
# so `-@all` dropped every session a script wrote when a server started again
# (redis/redis#14541, fixed upstream in 7.2's line by #14545; Debian 12 ships 7.0.15).
REDIS_DEFAULT_USER='user default off resetpass ~* &* +@all'
REDIS_GATEWAY_RULES='resetkeys ~gw:* resetchannels -@all +ping +evalsha +eval +del +exists +get +set +hset +hmget +incr +pttl +pexpire'

redis_sha256() { sha256sum <"$1" | cut -d' ' -f1; }

# redis_acl_write: the ACL file from the current secrets; true when it changed.
redis_acl_write() {
    local f="$DATA/redis/users.acl" new
    new=$(printf '%s\n' \
        "$REDIS_DEFAULT_USER" \
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
    if ((HA)); then redis_ha_up; return 0; fi
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
    if ((HA)); then redis_ha_down; return 0; fi
    pid_alive "$RUNDIR/redis.pid" "redis-server" && log "redis: stopping"
    stop_pid "$RUNDIR/redis.pid" "redis-server"
}

# Parts (parts.sh): redis, the one server; in HA redis/1, redis/2 and sentinel/1..3.
redis_parts() {
    local k
    if ((!HA)); then echo redis; return 0; fi
    echo redis/1
    echo redis/2
    for ((k = 1; k <= REDIS_SENTINELS_N; k++)); do echo "sentinel/$k"; done
}
redis_part_pidfile() {
    case "$1" in
    redis) echo "$RUNDIR/redis.pid" ;;
    redis/[12]) echo "$RUNDIR/redis-${1#redis/}.pid" ;;
    sentinel/[1-9]) echo "$RUNDIR/sentinel-${1#sentinel/}.pid" ;;
    esac
}
redis_part_root_pid() {
    local f
    f=$(redis_part_pidfile "$1")
    [ -n "$f" ] && pid_alive "$f" redis-server && head -n1 "$f"
    return 0
}
redis_part_start() {
    case "$1" in
    redis) redis_up ;;
    redis/[12]) redis_server_start "${1#redis/}" ;;
    sentinel/*) redis_sentinel_start "${1#sentinel/}" ;;
    esac
}

# ---- HA=1: a master, a replica and three Sentinels (docs/ha-redis.md) ----
#
# redis/1 (REDIS_PORT) and redis/2 (REDIS_REPLICA_PORT) start as master and replica;
# after a failover the roles swap, and a server started again asks the Sentinels who
# the master is and comes back as its replica. Each server has its config file, data
# directory, pid file and log under $DATA/redis/<k>/; sentinel/k (sentinel_port k) has
# its own writable config file (Sentinel rewrites it with what it learns: the current
# master, the epochs, the other Sentinels and replicas) under $DATA/redis/sentinel-<k>/.
# Both servers take the same ACL file with two more users (least rights, as Redis's
# documentation lists them):
#   replication  a replica's login to its master (masteruser/masterauth)
#   sentinel     the Sentinels' login to the servers (sentinel auth-user/auth-pass) and
#                to each other (sentinel sentinel-user/sentinel-pass)
# The Sentinels require a login too (their config's `user` lines): gateway may only ask
# for the master's address, admin everything. Passwords live in $DATA/secrets; the
# config files that must hold one (masterauth, auth-pass) are readable by us only.

REDIS_MASTER_NAME=shop
REDIS_SENTINELS_N=3
REDIS_QUORUM=2
# Failure detection and failover (measured on the 2-vCPU machine: docs/ha-redis.md):
# a master silent for down-after ms is subjectively down; with a quorum of Sentinels
# agreeing, one is elected leader and promotes the replica, about 1 s later.
# failover-timeout bounds a stuck failover (and spaces two attempts on one master);
# parallel-syncs: the one replica resyncs at once.
REDIS_DOWN_AFTER_MS=${REDIS_DOWN_AFTER_MS:-2000}
REDIS_FAILOVER_TIMEOUT_MS=${REDIS_FAILOVER_TIMEOUT_MS:-10000}

redis_replication_password_file() { stack_secret_file redis-replication-password random_b64 24; }
redis_sentinel_password_file() { stack_secret_file redis-sentinel-password random_b64 24; }

# What a replica runs on its master, and what a Sentinel runs on a server
# (https://redis.io/docs/management/sentinel/ "Redis Access Control List authentication").
REDIS_REPLICATION_RULES='resetkeys resetchannels -@all +psync +replconf +ping'
REDIS_SENTINEL_RULES='resetkeys allchannels -@all +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill'
# The gateway on a Sentinel: the master's address (and a PING); on a server in HA it
# also asks ROLE (is this the master?) and WAITs for the replica after a login.
REDIS_SENTINEL_GATEWAY_RULES='resetkeys resetchannels -@all +ping +sentinel|get-master-addr-by-name'
REDIS_GATEWAY_HA_RULES='+role +wait'
# One Sentinel on another: PING, hello messages and the vote on a failover.
REDIS_SENTINEL_PEER_RULES='resetkeys allchannels -@all +ping +publish +subscribe +info +client|setname +client|kill +role +sentinel|is-master-down-by-addr'

redis_server_port() { (($1 == 1)) && echo "$REDIS_PORT" || echo "$REDIS_REPLICA_PORT"; }
redis_server_dir() { echo "$DATA/redis/$1"; }
redis_sentinel_dir() { echo "$DATA/redis/sentinel-$1"; }

# redis_acl_ha_write: the servers' ACL file in HA (redis_acl_write's users, the
# gateway with ROLE and WAIT, replication and sentinel); true when it changed.
redis_acl_ha_write() {
    local f="$DATA/redis/users.acl" new
    new=$(printf '%s\n' \
        "$REDIS_DEFAULT_USER" \
        "user gateway on #$(redis_sha256 "$(redis_gateway_password_file)") $REDIS_GATEWAY_RULES $REDIS_GATEWAY_HA_RULES" \
        "user admin on #$(redis_sha256 "$(redis_admin_password_file)") ~* &* +@all" \
        "user replication on #$(redis_sha256 "$(redis_replication_password_file)") $REDIS_REPLICATION_RULES" \
        "user sentinel on #$(redis_sha256 "$(redis_sentinel_password_file)") $REDIS_SENTINEL_RULES")
    [ "$(cat "$f" 2>/dev/null)" != "$new" ] || return 1
    (umask 077 && printf '%s\n' "$new" >"$f.tmp") && mv "$f.tmp" "$f"
}

# redis_cli_at PORT ARGS...: redis-cli as the admin at PORT (a server or a Sentinel),
# given 5 s (a frozen one would hold it forever).
redis_cli_at() {
    local port=$1
    shift
    REDISCLI_AUTH=$(cat "$(redis_admin_password_file)") timeout 5 redis-cli --user admin \
        -h 127.0.0.1 -p "$port" "$@"
}

# redis_master_port: the port of the current master, as the first Sentinel that
# answers says; else as a Sentinel's config file says (the stack is starting: the
# Sentinels remember the master of the last run); else REDIS_PORT (a new stack).
redis_master_port() {
    local k out f
    for ((k = 1; k <= REDIS_SENTINELS_N; k++)); do
        out=$(redis_cli_at "$(sentinel_port "$k")" --raw sentinel get-master-addr-by-name \
            "$REDIS_MASTER_NAME" 2>/dev/null | sed -n 2p) || true
        [[ "$out" =~ ^[0-9]+$ ]] && { echo "$out"; return 0; }
    done
    for ((k = 1; k <= REDIS_SENTINELS_N; k++)); do
        f="$(redis_sentinel_dir "$k")/sentinel.conf"
        out=$(awk -v m="$REDIS_MASTER_NAME" '$1 == "sentinel" && $2 == "monitor" && $3 == m { print $5 }' \
            "$f" 2>/dev/null) || true
        [[ "$out" =~ ^[0-9]+$ ]] && { echo "$out"; return 0; }
    done
    echo "$REDIS_PORT"
}

# redis_master_part: the part name of the current master (redis/1 or redis/2; in
# HA=0 the one server, redis).
redis_master_part() {
    local port
    if ((!HA)); then echo redis; return 0; fi
    port=$(redis_master_port)
    [ "$port" = "$REDIS_PORT" ] && echo redis/1 || echo redis/2
}

# redis_server_ping K: server K answers as the admin.
redis_server_ping() { [ "$(redis_cli_at "$(redis_server_port "$1")" acl whoami 2>/dev/null)" = admin ]; }
redis_sentinel_ping() { [ "$(redis_cli_at "$(sentinel_port "$1")" acl whoami 2>/dev/null)" = admin ]; }

# redis_server_start K: server K, as the master when the Sentinels (or their config
# files) say it is, else as the master's replica. Its config file is written anew on
# every start (Sentinel's CONFIG REWRITE only records a role we decide again here);
# it holds masterauth, so it is readable by us only. The one replica is synced at
# once (no diskless-sync delay: there is no second replica to wait for).
redis_server_start() {
    local k=$1 port dir master conf pidfile="$RUNDIR/redis-$1.pid"
    port=$(redis_server_port "$k")
    dir=$(redis_server_dir "$k")
    conf="$dir/redis.conf"
    if pid_alive "$pidfile" redis-server; then
        redis_server_ping "$k" && return 0
        stop_pid "$pidfile" redis-server
    fi
    rm -f "$pidfile"
    mkdir -p "$dir"
    chmod 700 "$dir"
    master=$(redis_master_port)
    log "redis/$k: starting on 127.0.0.1:$port ($([ "$master" = "$port" ] && echo master || echo "replica of 127.0.0.1:$master"))"
    (
        umask 077
        printf '%s\n' "bind 127.0.0.1" "port $port" "dir $dir" "aclfile $DATA/redis/users.acl" \
            "appendonly yes" "save \"\"" "daemonize yes" "pidfile $pidfile" \
            "logfile $LOGDIR/redis-$k.log" \
            "masteruser replication" "masterauth $(cat "$(redis_replication_password_file)")" \
            "replica-serve-stale-data yes" "replica-read-only yes" "repl-diskless-sync-delay 0"
        [ "$master" = "$port" ] || echo "replicaof 127.0.0.1 $master"
    ) >"$conf.tmp"
    mv "$conf.tmp" "$conf"
    redis-server "$conf" >/dev/null
    wait_for 30 "redis/$k" redis_server_ping "$k"
}

# redis_sentinel_conf K: sentinel/k's config file. Sentinel rewrites it with its state
# (the current master, epochs, known replicas and Sentinels): that state is kept, the
# lines this stack owns (users, logins, tuning, where it runs) are written anew.
redis_sentinel_conf() {
    local k=$1 dir conf state
    dir=$(redis_sentinel_dir "$k")
    conf="$dir/sentinel.conf"
    mkdir -p "$dir"
    chmod 700 "$dir"
    state=$(grep -E '^sentinel (myid|current-epoch|config-epoch|leader-epoch|known-replica|known-sentinel|monitor) ' \
        "$conf" 2>/dev/null || true)
    grep -q "^sentinel monitor $REDIS_MASTER_NAME " <<<"$state" ||
        state="sentinel monitor $REDIS_MASTER_NAME 127.0.0.1 $REDIS_PORT $REDIS_QUORUM"
    (
        umask 077
        printf '%s\n' "bind 127.0.0.1" "port $(sentinel_port "$k")" "dir $dir" "daemonize yes" \
            "pidfile $RUNDIR/sentinel-$k.pid" "logfile $LOGDIR/sentinel-$k.log" \
            "sentinel resolve-hostnames no" "sentinel announce-hostnames no" \
            "user default off resetkeys resetchannels -@all" \
            "user admin on #$(redis_sha256 "$(redis_admin_password_file)") ~* &* +@all" \
            "user gateway on #$(redis_sha256 "$(redis_gateway_password_file)") $REDIS_SENTINEL_GATEWAY_RULES" \
            "user sentinel on #$(redis_sha256 "$(redis_sentinel_password_file)") $REDIS_SENTINEL_PEER_RULES" \
            "sentinel sentinel-user sentinel" \
            "sentinel sentinel-pass $(cat "$(redis_sentinel_password_file)")"
        printf '%s\n' "$state"
        printf '%s\n' "sentinel auth-user $REDIS_MASTER_NAME sentinel" \
            "sentinel auth-pass $REDIS_MASTER_NAME $(cat "$(redis_sentinel_password_file)")" \
            "sentinel down-after-milliseconds $REDIS_MASTER_NAME $REDIS_DOWN_AFTER_MS" \
            "sentinel failover-timeout $REDIS_MASTER_NAME $REDIS_FAILOVER_TIMEOUT_MS" \
            "sentinel parallel-syncs $REDIS_MASTER_NAME 1"
    ) >"$conf.tmp"
    mv "$conf.tmp" "$conf"
    echo "$conf"
}

redis_sentinel_start() {
    local k=$1 conf pidfile="$RUNDIR/sentinel-$1.pid"
    if pid_alive "$pidfile" redis-server; then
        redis_sentinel_ping "$k" && return 0
        stop_pid "$pidfile" redis-server
    fi
    rm -f "$pidfile"
    conf=$(redis_sentinel_conf "$k")
    log "sentinel/$k: starting on 127.0.0.1:$(sentinel_port "$k")"
    redis-server "$conf" --sentinel >/dev/null
    wait_for 30 "sentinel/$k" redis_sentinel_ping "$k"
}

# redis_ha_up: the servers, then the Sentinels. A changed secret (a rotated password,
# docs/trust.md) reaches running servers in place (ACL LOAD, and masterauth through
# stdin, never an argument); a server that no longer knows the admin is restarted, and
# so are the Sentinels, one at a time (their users and logins are in their config
# files).
redis_ha_up() {
    local k changed=0
    mkdir -p "$DATA/redis"
    redis_acl_ha_write && changed=1
    for ((k = 1; k <= 2; k++)); do
        if ((changed)) && pid_alive "$RUNDIR/redis-$k.pid" redis-server && redis_server_ping "$k"; then
            log "redis/$k: loading the new ACL file"
            if [ "$(redis_cli_at "$(redis_server_port "$k")" acl load 2>&1)" != OK ] ||
                [ "$(redis_cli_at "$(redis_server_port "$k")" -x config set masterauth \
                    <"$(redis_replication_password_file)" 2>&1)" != OK ]; then
                stop_pid "$RUNDIR/redis-$k.pid" redis-server
            fi
        fi
    done
    # The master first, so that the replica finds it.
    if [ "$(redis_master_port)" = "$REDIS_PORT" ]; then
        redis_server_start 1 && redis_server_start 2
    else
        redis_server_start 2 && redis_server_start 1
    fi
    if ((changed)); then
        for ((k = 1; k <= REDIS_SENTINELS_N; k++)); do
            pid_alive "$RUNDIR/sentinel-$k.pid" redis-server || continue
            log "sentinel/$k: restarting with the new users"
            stop_pid "$RUNDIR/sentinel-$k.pid" redis-server
            redis_sentinel_start "$k" # one at a time: two stay to watch the master
        done
    fi
    for ((k = 1; k <= REDIS_SENTINELS_N; k++)); do redis_sentinel_start "$k"; done
}

redis_ha_down() {
    local k
    for ((k = 1; k <= REDIS_SENTINELS_N; k++)); do
        pid_alive "$RUNDIR/sentinel-$k.pid" redis-server && log "sentinel/$k: stopping"
        stop_pid "$RUNDIR/sentinel-$k.pid" redis-server
    done
    for k in 1 2; do
        pid_alive "$RUNDIR/redis-$k.pid" redis-server && log "redis/$k: stopping"
        stop_pid "$RUNDIR/redis-$k.pid" redis-server
    done
}

# redis_sentinels: the Sentinels as host:port,host:port,... (REDIS_SENTINELS).
redis_sentinels() {
    local k out=()
    for ((k = 1; k <= REDIS_SENTINELS_N; k++)); do out+=("127.0.0.1:$(sentinel_port "$k")"); done
    (IFS=,; echo "${out[*]}")
}

# redis_status: one line per server (with its role) and per Sentinel.
redis_status() {
    local k port role
    if ((!HA)); then
        printf 'redis 127.0.0.1:%s %s\n' "$REDIS_PORT" "$(port_open "$REDIS_PORT" && echo up || echo down)"
        return 0
    fi
    for k in 1 2; do
        port=$(redis_server_port "$k")
        role=$(redis_cli_at "$port" --raw role 2>/dev/null | head -n1 | sed 's/^slave$/replica/') || true
        printf 'redis/%s 127.0.0.1:%s %s\n' "$k" "$port" "$([ -n "$role" ] && echo "up $role" || echo down)"
    done
    for ((k = 1; k <= REDIS_SENTINELS_N; k++)); do
        printf 'sentinel/%s 127.0.0.1:%s %s\n' "$k" "$(sentinel_port "$k")" \
            "$(redis_sentinel_ping "$k" && echo up || echo down)"
    done
}

# redis_settled: the master has its replica online and in step, so it can fail over
# again (HA=1); HA=0: the server answers.
redis_settled() {
    local info
    if ((!HA)); then redis_ping; return; fi
    info=$(redis_cli_at "$(redis_master_port)" info replication 2>/dev/null | tr -d '\r') || return 1
    grep -qx "role:master" <<<"$info" && grep -qx "connected_slaves:1" <<<"$info" &&
        grep -q "^slave0:.*state=online" <<<"$info"
}
