# The fleet's programs on the local stack: every service of deploy/fleet.conf, SCALE
# instances each, and the gateway (sourced by stack.sh after lib.sh, not run).

program_bin() { # program_bin PROGRAM: the built executable, or nothing
    local f
    for f in "$BIN_DIR/$(fleet_program_path "$1")" "$BIN_DIR/$1"; do
        [ -x "$f" ] && { echo "$f"; return 0; }
    done
    return 0
}

# programs_built: every program of the manifest is built, or the stack does not start
# (a fleet without one of its programs would look up while its sagas never finish).
programs_built() {
    local p missing=()
    for p in "${FLEET_PROGRAMS[@]}"; do
        [ -n "$(program_bin "$p")" ] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) ||
        die "not built in $BIN_DIR: ${missing[*]} (make release, or BIN_DIR=<build dir>; FLEET=0 starts the infrastructure only)"
}

# instance_name SVC K: <program>-K, e.g. order-svc-2; part_service PART: the service
# of such a name (order-svc-2 -> order), or nothing.
instance_name() { echo "${FLEET_PROGRAM[$1]}-$2"; }
part_service() {
    local svc
    for svc in "${SERVICES[@]}"; do
        [[ "$1" =~ ^${FLEET_PROGRAM[$svc]}-[1-9]$ ]] && { echo "$svc"; return 0; }
    done
    return 0
}

# Instances per service: SCALE on the command line, else what the last `up` used, else 1.
N_INST=${SCALE:-$(cat "$DATA/scale" 2>/dev/null || echo 1)}
[[ "$N_INST" =~ ^[1-9]$ ]] || die "SCALE must be 1..9, not '$N_INST'"

# program_env PREFIX: the extra settings given as PREFIX_ENV_<NAME>=value in our
# environment (e.g. ORDER_SVC_ENV_SAGA_TIMEOUT=5s), as NAME=value words for env(1).
program_env() {
    local v
    for v in $(compgen -e | grep "^$1_ENV_" || true); do
        printf '%s=%s\n' "${v#"$1"_ENV_}" "${!v}"
    done
}

addr_list() { # addr_list grpc|admin SVC: every instance's host:port, comma-separated
    local k out=()
    for ((k = 1; k <= $N_INST; k++)); do out+=("127.0.0.1:$("$1_port" "$2" "$k")"); done
    (IFS=,; echo "${out[*]}")
}

# upstream_env NAME: NAME's upstreams (deploy/fleet.conf) as <UPSTREAM>_ADDR=list words.
upstream_env() {
    local up
    for up in ${FLEET_UPSTREAMS[$1]//,/ }; do
        printf '%s_ADDR=%s\n' "${up^^}" "$(addr_list grpc "$up")"
    done
}

# page_token_key_file SVC: the file of the MAC key of SVC's page tokens, generated once per stack (never
# committed) and given to every instance of SVC, so that any instance takes a token
# another one issued (SCALE=N, restarts).
page_token_key_file() { stack_secret_file "page-token-key-$1" random_hex 32; }

# tls_env PROGRAM: PROGRAM's gRPC identity (docs/trust.md) as NAME=value words for env(1):
# the stack CA and PROGRAM's certificate and key, made first if needed (pki_cert).
# Under STACK_SECURITY=off (bench only, lib.sh): GRPC_PLAINTEXT=true instead.
tls_env() {
    if [ "$STACK_SECURITY" = off ]; then echo GRPC_PLAINTEXT=true; return 0; fi
    pki_cert "$1" >/dev/null || die "$1: cannot make its certificate (deploy/pki.sh)"
    printf '%s\n' "TLS_CA_FILE=$(tls_ca_file)" "TLS_CERT_FILE=$(tls_cert_file "$1")" \
        "TLS_KEY_FILE=$(tls_key_file "$1")"
}

# kafka_env PROGRAM: its brokers and login as NAME=value words for env(1): the SASL_SSL
# listener of every node (kafka_brokers) as PROGRAM's principal, or (STACK_SECURITY=off)
# the bench's plaintext one.
kafka_env() {
    if [ "$STACK_SECURITY" = off ]; then echo "KAFKA_BROKERS=127.0.0.1:$KAFKA_PLAIN_PORT"; return 0; fi
    printf '%s\n' "KAFKA_BROKERS=$(kafka_brokers)" "KAFKA_USERNAME=$1" \
        "KAFKA_PASSWORD_FILE=$(kafka_password_file "$1")"
}

instance_start() { # instance_start SVC K
    local svc=$1 k=$2 name bin pidfile extra ups tls kafka prog=${FLEET_PROGRAM[$1]}
    name=$(instance_name "$svc" "$k")
    bin=$(program_bin "$prog")
    [ -n "$bin" ] || die "$name: $prog is not built in $BIN_DIR (make release)"
    pidfile="$RUNDIR/$name.pid"
    if ! pid_alive "$pidfile" "$bin"; then
        rm -f "$pidfile"
        log "$name: starting (gRPC 127.0.0.1:$(grpc_port "$svc" "$k"), admin 127.0.0.1:$(admin_port "$svc" "$k"))"
        mapfile -t extra < <(program_env "$(env_prefix "$prog")")
        mapfile -t ups < <(upstream_env "$svc")
        mapfile -t tls < <(tls_env "$prog")
        # Kafka: the service's own principal (its program's name, kafka.sh) and its
        # password as a file; TLS_CA_FILE (tls_env) verifies the broker.
        mapfile -t kafka < <(kafka_env "$prog")
        # Static consumer-group membership under the instance's own name: a restarted
        # instance takes its partitions back without a rebalance (docs/ha.md).
        kafka+=("KAFKA_GROUP_INSTANCE_ID=$name")
        env -u PAGE_TOKEN_KEY -u DATABASE_URL -u KAFKA_PASSWORD "${tls[@]}" GRPC_ADDR="127.0.0.1:$(grpc_port "$svc" "$k")" ADMIN_ADDR="127.0.0.1:$(admin_port "$svc" "$k")" \
            DATABASE_URL_FILE="$(db_url_file "$svc")" PAGE_TOKEN_KEY_FILE="$(page_token_key_file "$svc")" \
            "${kafka[@]}" OTEL_EXPORTER_OTLP_ENDPOINT="$(otlp_endpoint)" "${ups[@]}" \
            "${extra[@]}" setsid "$bin" >>"$LOGDIR/$name.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
}

instance_wait() {
    wait_for 60 "$(instance_name "$1" "$2")" curl -sf "http://127.0.0.1:$(admin_port "$1" "$2")/readyz"
}

# Every pid file of a service's instances, also those of a larger SCALE used before.
instance_pidfiles() { compgen -G "$RUNDIR/${FLEET_PROGRAM[$1]}-[1-9].pid" || true; }

service_down() {
    local f name prog=${FLEET_PROGRAM[$1]}
    for f in $(instance_pidfiles "$1"); do
        name=$(basename "$f" .pid)
        pid_alive "$f" "$prog" && log "$name: stopping"
        stop_pid "$f" "$prog" 30
    done
}

# The gateway signs access tokens with a secret generated once per stack (never committed).
jwt_secret_file() { stack_secret_file jwt-secret random_b64 48; }

gateway_start() {
    local bin pidfile="$RUNDIR/gateway.pid" extra ups tls sentinels=()
    bin=$(program_bin gateway)
    [ -n "$bin" ] || die "gateway is not built in $BIN_DIR (make release)"
    if ! pid_alive "$pidfile" "$bin"; then
        rm -f "$pidfile"
        log "gateway: starting on http://127.0.0.1:$GATEWAY_PORT"
        mapfile -t extra < <(program_env GATEWAY)
        mapfile -t ups < <(upstream_env gateway)
        mapfile -t tls < <(tls_env gateway)
        # HA: the gateway asks the Sentinels for the master (redis.sh, docs/ha-redis.md).
        ((!HA)) || sentinels=(REDIS_SENTINELS="$(redis_sentinels)" REDIS_MASTER_NAME="$REDIS_MASTER_NAME")
        env -u JWT_SECRET -u REDIS_PASSWORD "${tls[@]}" GATEWAY_ADDR="127.0.0.1:$GATEWAY_PORT" \
            REDIS_URL="redis://gateway@127.0.0.1:$REDIS_PORT" REDIS_PASSWORD_FILE="$(redis_gateway_password_file)" \
            "${sentinels[@]}" "${ups[@]}" JWT_SECRET_FILE="$(jwt_secret_file)" OTEL_EXPORTER_OTLP_ENDPOINT="$(otlp_endpoint)" \
            "${extra[@]}" setsid "$bin" >>"$LOGDIR/gateway.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
    # /healthz, not /readyz: the gateway is up before its upstreams answer.
    wait_for 60 gateway curl -sf "http://127.0.0.1:$GATEWAY_PORT/healthz"
}

gateway_down() {
    [ -f "$RUNDIR/gateway.pid" ] || return 0
    pid_alive "$RUNDIR/gateway.pid" gateway && log "gateway: stopping"
    stop_pid "$RUNDIR/gateway.pid" gateway 30
}

fleet_up() {
    local svc k f
    programs_built
    # Instances above SCALE (from an earlier, larger SCALE) stop; then all start at once
    # and are waited for together: start-up order does not matter to them.
    for svc in "${SERVICES[@]}"; do
        for f in $(instance_pidfiles "$svc"); do
            k=${f##*-}
            k=${k%.pid}
            [[ "$k" =~ ^[0-9]+$ ]] && ((k <= N_INST)) && continue
            stop_pid "$f" "${FLEET_PROGRAM[$svc]}" 30
        done
    done
    for svc in "${SERVICES[@]}"; do
        for ((k = 1; k <= N_INST; k++)); do instance_start "$svc" "$k"; done
    done
    for svc in "${SERVICES[@]}"; do
        for ((k = 1; k <= N_INST; k++)); do instance_wait "$svc" "$k"; done
    done
    gateway_start
}

# create_admin EMAIL: user-svc's create-admin against this stack (password on stdin).
create_admin() {
    local bin
    bin=$(program_bin user-svc)
    [ -n "$bin" ] || die "user-svc is not built (make release)"
    env -u DATABASE_URL DATABASE_URL_FILE="$(db_url_file user)" LOG_LEVEL=warn \
        "$bin" create-admin "$1"
}
