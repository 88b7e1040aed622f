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

pg_psql() { # pg_psql SVC PSQL-ARGS...: psql as the superuser, over verified TLS
    local svc=$1
    shift
    PGPASSWORD=$(pg_superuser_password) PGSSLMODE=verify-full PGSSLROOTCERT="$PKI_DIR/ca.crt" \
        psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PG_PORT[$svc]}" -U postgres -d postgres "$@"
}

# pg_install SRC DST: SRC copied to DST, owned by the PostgreSQL user, 0600 (PostgreSQL
# refuses a key others can read; it cannot read $DATA/secrets); true when DST changed.
pg_install() {
    cmp -s "$1" "$2" 2>/dev/null && return 1
    if [ "$(id -u)" -eq 0 ]; then
        install -m 600 -o "$PG_USER" -g "$(id -gn "$PG_USER")" "$1" "$2"
    else
        install -m 600 "$1" "$2"
    fi
}

# pg_write FILE TEXT: FILE holds TEXT (owned by the PostgreSQL user, 0600); true when it changed.
pg_write() {
    local tmp
    [ "$(cat "$1" 2>/dev/null)" != "$2" ] || return 1
    tmp=$(mktemp)
    printf '%s\n' "$2" >"$tmp"
    pg_install "$tmp" "$1"
    rm -f "$tmp"
}

# pg_secure SVC DIR: the cluster's TLS and who may connect, made again on every `up` so
# that an older cluster (plaintext, passwords = database names) is brought up to date:
# the server certificate of the stack's PKI (CN postgres; names 127.0.0.1, localhost and
# the compose hosts postgres-<svc>), TLS 1.3 at least, and pg_hba.conf: over TLS, the
# service's role to its database and the superuser, both with SCRAM; anything in
# plaintext refused. True when a setting changed (a running server must reload).
pg_secure() {
    local svc=$1 dir=$2 db=${FLEET_DB[$1]} s changed=1 names=()
    for s in "${PG_SERVICES[@]}"; do names+=("postgres-$s"); done
    pki_cert postgres "${names[@]}"
    pg_install "$(tls_cert_file postgres)" "$dir/server.crt" && changed=0
    pg_install "$(tls_key_file postgres)" "$dir/server.key" && changed=0
    pg_write "$dir/shop-fleet-tls.conf" "# written by deploy/local/pg.sh on every up
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.3'
password_encryption = 'scram-sha-256'" && changed=0
    grep -qx "include_if_exists = 'shop-fleet-tls.conf'" "$dir/postgresql.conf" ||
        { echo "include_if_exists = 'shop-fleet-tls.conf'" >>"$dir/postgresql.conf" && changed=0; }
    pg_write "$dir/pg_hba.conf" "# written by deploy/local/pg.sh on every up (docs/trust.md)
# TYPE    DATABASE  USER      ADDRESS       METHOD
hostssl   $db       $db       127.0.0.1/32  scram-sha-256
hostssl   all       postgres  127.0.0.1/32  scram-sha-256$(bench_plaintext && printf '\n%s' \
        "host      $db       $db       127.0.0.1/32  scram-sha-256  # bench only: STACK_SECURITY=off")
hostnossl all       all       0.0.0.0/0     reject
hostnossl all       all       ::/0          reject" && changed=0
    return $changed
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
    if pg_secure "$svc" "$dir" && as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        log "postgres/$svc: reloading its TLS and access settings"
        as_pg "$PG_BIN/pg_ctl" -D "$dir" reload >/dev/null
        pg_roles "$svc"
        return 0
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        pg_roles "$svc"
        return 0
    fi
    # postgres removes a stale postmaster.pid itself when its pid is not a postmaster.
    touch "$LOGDIR/pg-$svc.log"
    chown "$PG_USER:" "$LOGDIR/pg-$svc.log" 2>/dev/null || true
    log "postgres/$svc: starting on 127.0.0.1:$port"
    as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$LOGDIR/pg-$svc.log" -w -t 60 start >/dev/null ||
        die "postgres/$svc did not start (log: $LOGDIR/pg-$svc.log)"
    wait_for 30 "postgres/$svc" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"
    pg_roles "$svc"
}

# pg_roles SVC: one role and one database per service; the role's password is the
# stack's secret pg-password-<svc> (lib.sh), set again on every `up` (so a rotated
# secret, or an older cluster whose password was the database's name, gets it). The
# password goes through psql's stdin, not its command line.
pg_roles() {
    local svc=$1 db=${FLEET_DB[$1]}
    # The server's readiness (the server may be reloading): the superuser answers over TLS.
    wait_for 30 "postgres/$svc (as the superuser, over TLS)" pg_psql "$svc" -tAc "SELECT 1"
    if [ "$(pg_psql "$svc" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$db'")" != 1 ]; then
        log "postgres/$svc: creating role and database \"$db\""
        pg_psql "$svc" -c "CREATE ROLE \"$db\" LOGIN"
        pg_psql "$svc" -c "CREATE DATABASE \"$db\" OWNER \"$db\""
        pg_psql "$svc" -d "$db" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC" \
            -c "ALTER SCHEMA public OWNER TO \"$db\""
    fi
    printf 'ALTER ROLE "%s" LOGIN PASSWORD '"'%s'"';\n' "$db" "$(pg_role_password "$svc")" |
        pg_psql "$svc" -f -
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

# Parts (parts.sh): postgres/<svc>, one server per service.
pg_parts() {
    local svc
    for svc in "${PG_SERVICES[@]}"; do echo "postgres/$svc"; done
}
pg_part_root_pid() {
    local dir pid
    dir="$(pg_root)/${1#postgres/}"
    pid=$(head -n1 "$dir/postmaster.pid" 2>/dev/null || true)
    # postmaster.pid outlives a crash: make sure the pid is still our postmaster.
    [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
        grep -qF -- "-D $dir" && echo "$pid"
    return 0
}
pg_part_start() { pg_up "${1#postgres/}"; }

# pg_settled: every database can lose a server again; with one server per database,
# every server answers.
pg_settled() {
    local svc
    for svc in "${PG_SERVICES[@]}"; do
        "$PG_BIN/pg_isready" -q -t 5 -h 127.0.0.1 -p "${PG_PORT[$svc]}" || return 1
    done
}
