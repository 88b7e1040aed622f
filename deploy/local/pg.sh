# PostgreSQL of the local stack: one cluster per service with a database (sourced by
# stack.sh after lib.sh, not run).

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

pg_superuser_password() { stack_secret pg-superuser random_b64 24; }

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
    # One role and one database per service; credentials are the database's name (local only).
    local db=${FLEET_DB[$svc]}
    if [ "$(pg_psql "$svc" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$db'")" != 1 ]; then
        log "postgres/$svc: creating role and database \"$db\""
        pg_psql "$svc" -c "CREATE ROLE \"$db\" LOGIN PASSWORD '$db'"
        pg_psql "$svc" -c "CREATE DATABASE \"$db\" OWNER \"$db\""
        pg_psql "$svc" -d "$db" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC" \
            -c "ALTER SCHEMA public OWNER TO \"$db\""
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
