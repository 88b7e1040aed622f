# PostgreSQL of the local stack: one cluster per service with a database, or with HA=1
# a primary and a synchronous standby per service under pg_auto_failover (section
# "HA=1" below) (sourced by stack.sh after lib.sh, not run).

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

# pg_psql SVC PSQL-ARGS...: psql as the superuser, over verified TLS; with HA=1, to
# whichever of the service's nodes is the primary (libpq tries both, keeps the writable one).
pg_psql() {
    local svc=$1 hosts=127.0.0.1 ports=${PG_PORT[$1]}
    shift
    if ((HA)); then hosts=127.0.0.1,127.0.0.1 ports=$(pg_node_port "$svc" 1),$(pg_node_port "$svc" 2); fi
    PGPASSWORD=$(pg_superuser_password) PGSSLMODE=verify-full PGSSLROOTCERT="$PKI_DIR/ca.crt" \
        PGTARGETSESSIONATTRS=read-write PGCONNECT_TIMEOUT=3 \
        psql -X -q -v ON_ERROR_STOP=1 -h "$hosts" -p "$ports" -U postgres -d postgres "$@"
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
    local svc=$1 dir=$2 kind=${3:-single} db=${FLEET_DB[$1]:-} s changed=1 names=() rules
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
    rules=$(pg_hba_rules "$kind" "$db")
    pg_write "$dir/pg_hba.conf" "# written by deploy/local/pg.sh on every up (docs/trust.md)
# TYPE    DATABASE  USER      ADDRESS       METHOD
$rules$(bench_plaintext && printf '\n%s' \
        "host      $db       $db       127.0.0.1/32  scram-sha-256  # bench only: STACK_SECURITY=off")
hostnossl all       all       0.0.0.0/0     reject
hostnossl all       all       ::/0          reject" && changed=0
    return $changed
}

# pg_hba_rules KIND DB: who may connect (over TLS, with SCRAM) to a server of KIND:
#   single   the service's role to its database, the superuser (HA=0)
#   node     the same, and pg_auto_failover's roles (HA=1): the standby's replication
#            and pg_rewind connections, the monitor's health checks (they stop at the
#            password request: an answering server is a healthy one)
#   monitor  the keepers' role to the monitor's database, the superuser
# HA=1 servers also take the superuser on their Unix socket (SCRAM too; there is no TLS on
# a socket): pg_autoctl's keeper talks to its own server through the socket that the
# server announces, once it has one (unix_socket_directories, pg_initdb). The socket's
# directory is the PostgreSQL user's alone (0700).
pg_hba_rules() {
    case "$1" in
    single | node)
        printf '%s\n' "hostssl   $2       $2       127.0.0.1/32  scram-sha-256"
        printf '%s' "hostssl   all       postgres  127.0.0.1/32  scram-sha-256"
        [ "$1" = single ] || printf '\n%s' \
            "local     all       postgres                    scram-sha-256" \
            "hostssl   replication  pgautofailover_replicator  127.0.0.1/32  scram-sha-256" \
            "hostssl   postgres     pgautofailover_replicator  127.0.0.1/32  scram-sha-256" \
            "hostssl   postgres     pgautofailover_monitor     127.0.0.1/32  scram-sha-256"
        ;;
    monitor)
        printf '%s\n' "hostssl   $PG_MONITOR_DB  autoctl_node  127.0.0.1/32  scram-sha-256"
        printf '%s\n' "hostssl   all       postgres  127.0.0.1/32  scram-sha-256"
        printf '%s' "local     all       postgres                    scram-sha-256"
        ;;
    esac
}

# pg_initdb DIR PORT NAME: a new cluster in DIR (the superuser's password is the stack's
# secret, SCRAM for every connection) listening on 127.0.0.1:PORT only.
pg_initdb() {
    local dir=$1 port=$2 name=$3 pwfile log=${3#postgres/}
    log="pg-${log#pg-}"
    log="${log//\//-}-initdb.log"
    log "$name: initdb in $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    chown "$PG_USER:" "$dir" 2>/dev/null || true
    chmod 700 "$dir"
    pwfile=$(mktemp)
    pg_superuser_password >"$pwfile"
    chown "$PG_USER:" "$pwfile" 2>/dev/null || true
    as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --pwfile="$pwfile" -E UTF8 --no-locale \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$LOGDIR/$log"
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
    # HA=1: pg_autoctl sizes memory for a dedicated machine (its include comes first in
    # postgresql.conf, so these win): seven servers share ours.
    # pg_autoctl runs a node's crash recovery before pg_rewind without TCP (-h ''): the
    # server needs a socket, in a directory only the PostgreSQL user can enter
    # (pg_hba.conf has no `local` line anyway: nobody logs in through it).
    ((HA == 0)) || cat >>"$dir/postgresql.conf" <<CONF
unix_socket_directories = '$(pg_root)/sock'
work_mem = 4MB
maintenance_work_mem = 64MB
effective_cache_size = 1GB
wal_keep_size = 256MB
CONF
    # PG_EXTRA_CONF: more lines for a new cluster (make bench's BENCH_PGSS=1 loads
    # pg_stat_statements this way).
    [ -z "${PG_EXTRA_CONF:-}" ] || printf '%s\n' "$PG_EXTRA_CONF" >>"$dir/postgresql.conf"
}

pg_up() {
    if ((HA)); then
        pg_ha_up "$1"
        return 0
    fi
    local svc=$1 root dir port=${PG_PORT[$1]}
    root=$(pg_root)
    dir="$root/$svc"
    chown "$PG_USER:" "$root" 2>/dev/null || true
    [ -f "$dir/PG_VERSION" ] || pg_initdb "$dir" "$port" "postgres/$svc"
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
    if ((HA)); then
        pg_ha_down "$1"
        return 0
    fi
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
    if ((HA)); then
        echo pg-monitor
        for svc in "${PG_SERVICES[@]}"; do printf '%s\n' "postgres/$svc/1" "postgres/$svc/2"; done
        return 0
    fi
    for svc in "${PG_SERVICES[@]}"; do echo "postgres/$svc"; done
}
pg_part_root_pid() {
    if ((HA)); then
        pg_ha_root_pid "$1"
        return 0
    fi
    local dir pid
    dir="$(pg_root)/${1#postgres/}"
    pid=$(head -n1 "$dir/postmaster.pid" 2>/dev/null || true)
    # postmaster.pid outlives a crash: make sure the pid is still our postmaster.
    [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
        grep -qF -- "-D $dir" && echo "$pid"
    return 0
}
pg_part_start() {
    case "$1" in
    pg-monitor) pg_monitor_up ;;
    postgres/*/*) pg_node_up "$(pg_part_service "$1")" "${1##*/}" ;;
    *) pg_up "${1#postgres/}" ;;
    esac
}

# ---- HA=1: pg_auto_failover (docs/ha-postgres.md) ----
#
# One monitor for the stack (part pg-monitor: $(pg_root)/monitor on PG_MONITOR_PORT) and,
# per service, a formation of its own (named after the service, so each has its own
# primary) with two nodes (parts postgres/<svc>/1 and /2: $(pg_root)/<svc>-<k> on
# pg_node_port <svc> <k>): a primary and a synchronous standby. Each node runs under
# `pg_autoctl run`, its keeper, which starts, stops, promotes, demotes and rewinds its
# PostgreSQL as the monitor says: the keeper is the part's top process, so a kill is the
# whole node. pg_autoctl's own files (configuration, state, pid) are under
# $(pg_root)/autoctl; what it reads of the PKI and the passwords, under $(pg_root)/tls.
#
# Security is the same as HA=0's (docs/trust.md): every connection is TLS 1.3 with the
# server's certificate verified against the stack's CA and its name (the services, the
# standby's replication, pg_rewind, the keepers to the monitor and to their own server),
# every role has a SCRAM password from $DATA/secrets, and pg_hba.conf is ours
# (pg_autoctl --skip-pg-hba; pg_hba_rules). pg_autoctl and the PostgreSQL it starts take
# the CA and the passwords from libpq's environment (PGSSLMODE, PGSSLROOTCERT,
# PGPASSFILE), which the connection strings it writes itself do not override.
PG_MONITOR_DB=pg_auto_failover

pg_replicator_password() { stack_secret pg-password-replicator random_b64 24; }
pg_autoctl_node_password() { stack_secret pg-password-autoctl-node random_b64 24; }
pg_health_password() { stack_secret pg-password-health-check random_b64 24; }

# pg_ha_files: the CA, the server's certificate and key, and the password file
# (superuser, replication, keepers' role) where the PostgreSQL user can read them.
pg_ha_files() {
    local root names=() s
    root=$(pg_root)
    for s in "${PG_SERVICES[@]}"; do names+=("postgres-$s"); done
    pki_cert postgres "${names[@]}"
    mkdir -p "$root/tls" "$root/autoctl/config" "$root/autoctl/data" "$root/autoctl/run" "$root/sock"
    chown -R "$PG_USER:" "$root/tls" "$root/autoctl" "$root/sock" 2>/dev/null || true
    chmod 700 "$root/tls" "$root/autoctl" "$root/sock"
    pg_install "$PKI_DIR/ca.crt" "$root/tls/ca.crt" || true
    pg_install "$(tls_cert_file postgres)" "$root/tls/server.crt" || true
    pg_install "$(tls_key_file postgres)" "$root/tls/server.key" || true
    pg_write "$root/tls/pgpass" "*:*:*:postgres:$(pg_superuser_password)
127.0.0.1:*:*:pgautofailover_replicator:$(pg_replicator_password)
127.0.0.1:*:$PG_MONITOR_DB:autoctl_node:$(pg_autoctl_node_password)" || true
}

# pg_autoctl_as ARGS...: pg_autoctl as the PostgreSQL user, with the stack's files.
# PGCONNECT_TIMEOUT: a frozen server costs a keeper 2 s per attempt, not libpq's forever.
pg_autoctl_argv() {
    local root
    root=$(pg_root)
    PG_AUTOCTL_ARGV=()
    [ "$(id -u)" -ne 0 ] || PG_AUTOCTL_ARGV=(runuser -u "$PG_USER" --)
    PG_AUTOCTL_ARGV+=(env XDG_CONFIG_HOME="$root/autoctl/config" XDG_DATA_HOME="$root/autoctl/data"
        XDG_RUNTIME_DIR="$root/autoctl/run" PGSSLMODE=verify-full
        PGSSLROOTCERT="$root/tls/ca.crt" PGPASSFILE="$root/tls/pgpass" PGHOST=127.0.0.1
        PGCONNECT_TIMEOUT=2 pg_autoctl)
}
pg_autoctl_as() {
    pg_autoctl_argv
    "${PG_AUTOCTL_ARGV[@]}" "$@"
}

# The monitor's URL for the keepers (their password: the password file).
pg_monitor_uri() {
    echo "postgresql://autoctl_node@127.0.0.1:$PG_MONITOR_PORT/$PG_MONITOR_DB?sslmode=verify-full&sslrootcert=$(url_encode "$(pg_root)/tls/ca.crt")"
}

# pg_monitor_psql PSQL-ARGS...: psql as the superuser to the monitor's database.
pg_monitor_psql() {
    PGPASSWORD=$(pg_superuser_password) PGSSLMODE=verify-full PGSSLROOTCERT="$PKI_DIR/ca.crt" \
        PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_MONITOR_PORT" \
        -U postgres -d "$PG_MONITOR_DB" "$@"
}

# pg_ha_pidfile PART, pg_ha_dir PART: the pid file of the part's `pg_autoctl run`, its data.
pg_ha_pidfile() { local f=${1//\//-}; echo "$RUNDIR/$f.pid"; }
pg_ha_dir() {
    case "$1" in
    pg-monitor) echo "$(pg_root)/monitor" ;;
    *) local n=${1#postgres/}; echo "$(pg_root)/${n//\//-}" ;;
    esac
}
pg_part_service() { local s=${1#postgres/}; echo "${s%/*}"; }

# pg_ha_run PART: `pg_autoctl run` for the part unless it runs (setsid: out of our
# process group, as every server of the stack; log in $LOGDIR/pg-<part>.log).
pg_ha_run() {
    local part=$1 dir pidfile log
    dir=$(pg_ha_dir "$part")
    pidfile=$(pg_ha_pidfile "$part")
    pid_alive "$pidfile" "run --pgdata $dir" && return 0
    log="$LOGDIR/pg-$(echo "${part#postgres/}" | tr / -).log"
    log="${log/pg-pg-/pg-}"
    touch "$log"
    chown "$PG_USER:" "$log" 2>/dev/null || true
    log "$part: pg_autoctl run (log: $log)"
    pg_autoctl_argv
    setsid "${PG_AUTOCTL_ARGV[@]}" run --pgdata "$dir" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

pg_ha_root_pid() {
    local pidfile
    pidfile=$(pg_ha_pidfile "$1")
    pid_alive "$pidfile" "run --pgdata $(pg_ha_dir "$1")" && head -n1 "$pidfile"
    return 0
}

# pg_monitor_up: the monitor, made on first use (initdb by us: SCRAM from the start,
# then `pg_autoctl create monitor` in it), running and tuned.
pg_monitor_up() {
    local root dir created
    root=$(pg_root)
    dir="$root/monitor"
    created="$root/autoctl/monitor.created"
    chown "$PG_USER:" "$root" 2>/dev/null || true
    pg_ha_files
    if [ ! -f "$created" ]; then
        [ -f "$dir/PG_VERSION" ] || pg_initdb "$dir" "$PG_MONITOR_PORT" pg-monitor
        pg_secure monitor "$dir" monitor || true
        log "pg-monitor: pg_autoctl create monitor"
        pg_autoctl_as create monitor --pgdata "$dir" --pgport "$PG_MONITOR_PORT" \
            --pgctl "$PG_BIN/pg_ctl" --hostname 127.0.0.1 --skip-pg-hba \
            --ssl-mode verify-full --ssl-ca-file "$root/tls/ca.crt" \
            --server-cert "$root/tls/server.crt" --server-key "$root/tls/server.key" \
            >>"$LOGDIR/pg-monitor.log" 2>&1 || die "pg-monitor: pg_autoctl create monitor failed (log: $LOGDIR/pg-monitor.log)"
        # The keepers' role gets its password before `pg_autoctl run` starts: the
        # monitor's own listener logs in as autoctl_node at once, and gives up (the
        # whole monitor stops) after five refusals in a fraction of a second, which a
        # slow machine hit when the password came after the start. create leaves its
        # server running (or not): set the password there, then stop it, so that `run`
        # starts it as its own sub-process.
        if ! as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
            touch "$LOGDIR/pg-monitor-create.log"
            chown "$PG_USER:" "$LOGDIR/pg-monitor-create.log" 2>/dev/null || true
            as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$LOGDIR/pg-monitor-create.log" -w -t 60 start >/dev/null
        fi
        wait_for 60 "pg-monitor (created, as the superuser)" pg_monitor_psql -tAc "SELECT 1"
        pg_monitor_settings
        as_pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
        touch "$created"
    fi
    if pg_secure monitor "$dir" monitor && pid_alive "$(pg_ha_pidfile pg-monitor)" "run --pgdata $dir"; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir" reload >/dev/null
    fi
    pg_ha_run pg-monitor
    wait_for 60 "pg-monitor (as the superuser, over TLS)" pg_monitor_psql -tAc "SELECT 1"
    pg_monitor_settings
}

# pg_monitor_settings: the keepers' role's password, and how fast the monitor decides
# that a node is gone (docs/ha-postgres.md "Failover"): a health check every second; a
# node that answers no connection within 2 s three times in a row (0.5 s apart) is bad,
# and unhealthy once its keeper also has not reported for 3 s (a busy server whose
# keeper still reports is never failed over); a primary found unhealthy is given 2 s to
# demote itself before its standby is promoted.
PG_MONITOR_SETTINGS=(
    pgautofailover.health_check_period=1000
    pgautofailover.health_check_timeout=2000
    pgautofailover.health_check_max_retries=2
    pgautofailover.health_check_retry_delay=500
    pgautofailover.node_considered_unhealthy_timeout=3000
    pgautofailover.primary_demote_timeout=2000
    pgautofailover.startup_grace_period=5000
)
pg_monitor_settings() {
    local kv sql
    sql=$(printf 'ALTER ROLE autoctl_node LOGIN PASSWORD '"'%s'"';\n' "$(pg_autoctl_node_password)")
    for kv in "${PG_MONITOR_SETTINGS[@]}"; do
        sql+=$'\n'"ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}';"
    done
    printf '%s\nSELECT pg_reload_conf();\n' "$sql" | pg_monitor_psql -f - >/dev/null
}

# Keeper settings (pg_autoctl.cfg of each node; docs/ha-postgres.md "Split brain"): a
# primary that has reached neither the monitor nor its standby for 2 s demotes itself,
# before the monitor (unhealthy after >= 3 s without a report, then 2 s of demote
# timeout) promotes its standby.
PG_KEEPER_SETTINGS=(
    timeout.network_partition_timeout=2
    timeout.prepare_promotion_catchup=10
    timeout.prepare_promotion_walreceiver=2
)

pg_monitor_down() {
    ((HA)) || return 0
    pg_ha_stop pg-monitor "$(pg_root)/monitor"
}

# pg_node_start SVC K: node K of the service's formation, made on first use, running. The
# formation's first node starts from our initdb (SCRAM from the start) and becomes its
# primary; the other is made by pg_autoctl from the primary (pg_basebackup as
# pgautofailover_replicator) and becomes its synchronous standby.
pg_node_start() {
    local svc=$1 k=$2 root dir port part created kv
    part="postgres/$svc/$k"
    root=$(pg_root)
    dir="$root/$svc-$k"
    port=$(pg_node_port "$svc" "$k")
    created="$root/autoctl/$svc-$k.created"
    if [ ! -f "$created" ]; then
        if [ -f "$root/autoctl/$svc-$((3 - k)).created" ]; then
            rm -rf "$dir"
            pg_ha_roles "$svc" # the standby's pg_basebackup needs the replication password
        else
            pg_formation "$svc"
            [ -f "$dir/PG_VERSION" ] || pg_initdb "$dir" "$port" "$part"
            pg_secure "$svc" "$dir" node || true
        fi
        log "$part: pg_autoctl create postgres (formation $svc, 127.0.0.1:$port)"
        pg_autoctl_as create postgres --pgdata "$dir" --pgport "$port" --pghost 127.0.0.1 \
            --listen 127.0.0.1 --hostname 127.0.0.1 --name "$svc-$k" --formation "$svc" \
            --monitor "$(pg_monitor_uri)" --username postgres --dbname postgres \
            --pgctl "$PG_BIN/pg_ctl" --skip-pg-hba \
            --ssl-mode verify-full --ssl-ca-file "$root/tls/ca.crt" \
            --server-cert "$root/tls/server.crt" --server-key "$root/tls/server.key" \
            --replication-quorum true --candidate-priority 50 \
            >>"$LOGDIR/pg-$svc-$k.log" 2>&1 || die "$part: pg_autoctl create postgres failed (log: $LOGDIR/pg-$svc-$k.log)"
        for kv in "${PG_KEEPER_SETTINGS[@]}"; do
            pg_autoctl_as config set --pgdata "$dir" "${kv%%=*}" "${kv#*=}" >/dev/null
        done
        touch "$created"
    fi
    if pg_secure "$svc" "$dir" node && pid_alive "$(pg_ha_pidfile "$part")" "run --pgdata $dir"; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir" reload >/dev/null 2>&1 || true
    fi
    pg_ha_run "$part"
}

# pg_node_state SVC K: the node's state as the monitor has it: "reported goal".
pg_node_state() {
    pg_monitor_psql -tAF' ' -c "SELECT reportedstate, goalstate FROM pgautofailover.node
        WHERE formationid = '$1' AND nodeport = $(pg_node_port "$1" "$2")"
}
pg_node_ready() {
    local s
    s=$(pg_node_state "$1" "$2") || return 1
    case "$s" in
    "single single" | "primary primary" | "wait_primary wait_primary" | "secondary secondary") ;;
    *) return 1 ;;
    esac
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(pg_node_port "$1" "$2")"
}
# pg_node_wait SVC K: until the node serves as a primary or a secondary (a node back from
# a failover first catches up: rewound, then streaming).
pg_node_wait() {
    local until=$((SECONDS + ${PG_NODE_WAIT:-180}))
    until pg_node_ready "$1" "$2" >/dev/null 2>&1; do
        ((SECONDS < until)) || die "postgres/$1/$2 is not a primary nor a secondary after ${PG_NODE_WAIT:-180}s (monitor: $(pg_node_state "$1" "$2" 2>&1); logs: $LOGDIR/pg-$1-$2.log)"
        sleep 0.5
    done
}
pg_node_up() {
    pg_node_start "$1" "$2"
    pg_node_wait "$1" "$2"
}

# pg_formation SVC: the service's formation on the monitor.
pg_formation() {
    [ "$(pg_monitor_psql -tAc "SELECT 1 FROM pgautofailover.formation WHERE formationid = '$1'")" != 1 ] ||
        return 0
    log "pg-monitor: formation $1"
    pg_autoctl_as create formation --monitor "$(pg_monitor_uri)" --formation "$1" --kind pgsql \
        --dbname postgres --enable-secondary >>"$LOGDIR/pg-monitor.log" 2>&1 ||
        die "pg-monitor: cannot create formation $1 (log: $LOGDIR/pg-monitor.log)"
}

# pg_ha_roles SVC: pg_auto_failover's roles on the service's primary get their passwords
# (pg_autoctl makes them without one): replication (and pg_rewind), health checks.
pg_ha_roles() {
    wait_for 60 "postgres/$1 (its primary, as the superuser, over TLS)" pg_psql "$1" -tAc "SELECT 1"
    printf '%s\n' "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgautofailover_monitor') THEN
    CREATE ROLE pgautofailover_monitor LOGIN;
  END IF;
END \$\$;" \
        "ALTER ROLE pgautofailover_replicator LOGIN PASSWORD '$(pg_replicator_password)';" \
        "ALTER ROLE pgautofailover_monitor LOGIN PASSWORD '$(pg_health_password)';" |
        pg_psql "$1" -f - >/dev/null
}

pg_ha_up() {
    local svc=$1 k
    pg_monitor_up
    for k in 1 2; do
        [ ! -f "$(pg_root)/autoctl/$svc-$k.created" ] || pg_node_start "$svc" "$k"
    done
    for k in 1 2; do
        pg_node_up "$svc" "$k"
    done
    pg_ha_roles "$svc"
    pg_roles "$svc"
}

# pg_ha_down SVC: the standby first (the primary then stops alone: no failover).
pg_ha_down() {
    local svc=$1 first=2 k
    [ "$(pg_primary "$svc" 2>/dev/null)" != "postgres/$svc/2" ] || first=1
    for k in $first $((3 - first)); do
        pg_ha_stop "postgres/$svc/$k" "$(pg_root)/$svc-$k"
    done
}

# pg_ha_stop PART DIR: SIGTERM to the node's keeper (pg_autoctl run), which stops its
# PostgreSQL and its own sub-processes, then waits until every process of the node is
# gone (60 s, then SIGKILL). Not SIGTERM to the part's top process when that is runuser
# (as root): runuser SIGKILLs its child 2 s after passing a SIGTERM on, which orphans
# the keeper's sub-processes and leaves PostgreSQL running.
pg_ha_stop() {
    local pidfile pattern="run --pgdata $2" root main pids p i alive
    pidfile=$(pg_ha_pidfile "$1")
    pid_alive "$pidfile" "$pattern" || { rm -f "$pidfile"; return 0; }
    log "$1: stopping"
    root=$(head -n1 "$pidfile")
    pids=$(proc_tree "$root")
    main=$root
    if tr '\0' ' ' <"/proc/$root/cmdline" 2>/dev/null | grep -q '^runuser '; then
        main=$(pgrep -P "$root" | head -n1)
    fi
    kill -TERM "${main:-$root}" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        alive=0
        for p in $pids; do
            [ -d "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    if ((alive)); then
        log "$1: still running 60 s after SIGTERM, killing it"
        kill -KILL $pids 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# pg_primary SVC: the part name of the service's current primary, as the monitor has it
# (`stack.sh primary SVC`); fails when it has none (a failover in progress).
pg_primary() {
    local port k
    ((HA)) || { echo "postgres/$1"; return 0; }
    port=$(pg_monitor_psql -tAc "SELECT nodeport FROM pgautofailover.node
        WHERE formationid = '$1' AND reportedstate IN ('single', 'primary', 'wait_primary')
          AND goalstate IN ('single', 'primary', 'wait_primary')") || return 1
    for k in 1 2; do
        [ "$port" != "$(pg_node_port "$1" "$k")" ] || { echo "postgres/$1/$k"; return 0; }
    done
    echo "postgres/$1: no primary now (pg_autoctl show state)" >&2
    return 1
}

# pg_status: one line per server (stack.sh status).
pg_status() {
    local svc k p
    if ((HA)); then
        printf 'pg-monitor 127.0.0.1:%s %s\n' "$PG_MONITOR_PORT" "$(port_open "$PG_MONITOR_PORT" && echo up || echo down)"
        for svc in "${PG_SERVICES[@]}"; do
            for k in 1 2; do
                p=$(pg_node_port "$svc" "$k")
                printf 'postgres/%s/%s 127.0.0.1:%s %s\n' "$svc" "$k" "$p" \
                    "$(port_open "$p" && echo "up $(pg_node_state "$svc" "$k" 2>/dev/null | cut -d' ' -f1)" || echo down)"
            done
        done
        return 0
    fi
    for svc in "${PG_SERVICES[@]}"; do
        printf 'postgres/%s 127.0.0.1:%s %s\n' "$svc" "${PG_PORT[$svc]}" \
            "$(port_open "${PG_PORT[$svc]}" && echo up || echo down)"
    done
}

# pg_settled: every database can lose a server again. HA=1: each formation has a
# primary and a secondary in step (both states reached: reported = goal), the
# secondary synchronous again; HA=0: every server answers.
pg_settled() {
    local svc n
    if ((!HA)); then
        for svc in "${PG_SERVICES[@]}"; do
            "$PG_BIN/pg_isready" -q -t 5 -h 127.0.0.1 -p "${PG_PORT[$svc]}" || return 1
        done
        return 0
    fi
    n=$(pg_monitor_psql -tAc "SELECT count(*) FROM pgautofailover.node
        WHERE reportedstate = goalstate AND reportedstate IN ('primary', 'secondary')") || return 1
    [ "$n" = $((2 * ${#PG_SERVICES[@]})) ]
}
