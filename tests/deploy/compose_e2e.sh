#!/bin/bash
# The compose test: deploy/docker-compose.yml really built and run, on a machine with no
# container registry (make compose-test; CTest test_deploy_compose_e2e). As root it
#   - installs what is missing: docker.io and debootstrap (apt), the compose plugin
#     (built from the Go module proxy, cached in $CACHE/tools);
#   - starts dockerd when no engine answers, and stops it at the end if it started it;
#   - makes a Debian bookworm base image with debootstrap from this machine's apt mirror
#     (the root filesystem is cached as a tarball in $CACHE/images) and `docker import`s
#     it as shop-fleet/debian:bookworm;
#   - builds PostgreSQL 15, Redis and Kafka 4.1.1 images from Debian packages and the
#     cached Maven Central jars (tests/deploy/images/, named shop-fleet/postgres:15,
#     shop-fleet/redis:7, shop-fleet/kafka:4.1.1) and the four programs' images from
#     deploy/docker/Dockerfile on that base; tests/deploy/compose.airgapped.yml puts
#     them in place of the official images;
#   - brings the stack up, runs the REST purchase (register, deposit, order confirmed,
#     cancel refunded), scales order-svc to 3 and product-svc to 2 and checks that every
#     replica gets calls through the running gateway (each replica's
#     rpc_server_requests_total), kills one order-svc replica and checks orders still
#     confirm, scales back down;
#   - removes everything it made: containers, volumes, network, images (KEEP_IMAGES=1
#     keeps the images for the next run). The base tarball and the tools stay cached.
# COMPOSE_HA=1 (make compose-test HA=1): the high-availability stack instead
# (deploy/docker-compose.ha.yml and tests/deploy/compose.airgapped.ha.yml): the same
# trust checks on its containers and the same purchase, then no scaling but failures,
# one at a time, each followed by the purchase (waited for, its recovery time printed):
# a Kafka node killed, order's PostgreSQL primary killed (the one pg_auto_failover's
# monitor names), the Redis master killed (the one the Sentinels name). Killed
# containers come back by their restart policy, as after a crash.
# Exit status: 0 passed, 77 skipped (no root, no Docker engine possible: the reason is
# printed), anything else failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/shop-fleet
TOOLS=$CACHE/tools
COMPOSE_VERSION=v2.40.3
KAFKA_VERSION=4.1.1
PROJECT=${COMPOSE_PROJECT:-shop-fleet-e2e}
COMPOSE_HA=${COMPOSE_HA:-0}
[[ "$COMPOSE_HA" =~ ^[01]$ ]] || { echo "COMPOSE_HA must be 0 or 1, not '$COMPOSE_HA'" >&2; exit 2; }
BASE_IMAGE=shop-fleet/debian:bookworm
INFRA_IMAGES=(shop-fleet/postgres:15 shop-fleet/redis:7 "shop-fleet/kafka:$KAFKA_VERSION")
PROGRAM_IMAGES=(shop-fleet/order-svc:e2e shop-fleet/product-svc:e2e shop-fleet/user-svc:e2e
                shop-fleet/gateway:e2e shop-fleet/pki:e2e)
SKIP=77

WORK=$(mktemp -d /tmp/shop-compose-e2e.XXXXXX)
STARTED_DOCKERD=
STACK_UP=
declare -A TIMES=()

log() { printf '[compose-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "FAIL: $*"; exit 1; }
skip() { log "SKIPPED: $*"; exit "$SKIP"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ------------------------------------------------------------------- tools ----
install_tools() {
    [ "$(id -u)" = 0 ] || skip "needs root (apt-get install docker.io debootstrap, dockerd)"
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                "${missing[@]}" >"$WORK/apt.log" 2>&1; then
            apt-get update >>"$WORK/apt.log" 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                "${missing[@]}" >>"$WORK/apt.log" 2>&1 ||
                skip "cannot install ${missing[*]}: $(tail -3 "$WORK/apt.log")"
        fi
    fi
    command -v docker >/dev/null || skip "no docker client after installing docker.io"
    COMPOSE=$TOOLS/docker-compose-$COMPOSE_VERSION
    if [ ! -x "$COMPOSE" ]; then
        command -v go >/dev/null || skip "no Go toolchain to build the compose plugin"
        log "building docker compose $COMPOSE_VERSION from the Go module proxy (a few minutes)"
        local dir
        dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') ||
            skip "go mod download github.com/docker/compose/v2@$COMPOSE_VERSION failed"
        cp -r "$dir" "$WORK/compose-src" && chmod -R u+w "$WORK/compose-src"
        mkdir -p "$TOOLS"
        (cd "$WORK/compose-src" && go build -o "$COMPOSE.partial" \
            -ldflags "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd) \
            >"$WORK/go.log" 2>&1 ||
            die "building compose failed: $(tail -5 "$WORK/go.log")"
        mv "$COMPOSE.partial" "$COMPOSE"
    fi
}

# ------------------------------------------------------------------ engine ----
start_engine() {
    if docker info >/dev/null 2>&1; then
        log "using the running Docker engine"
        return
    fi
    log "starting dockerd"
    setsid dockerd >"$WORK/dockerd.log" 2>&1 </dev/null &
    STARTED_DOCKERD=$!
    local i
    for i in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        kill -0 "$STARTED_DOCKERD" 2>/dev/null || break
        sleep 1
    done
    local why
    why=$(tail -5 "$WORK/dockerd.log")
    stop_engine
    skip "no Docker engine could be started (dockerd): $why"
}

stop_engine() {
    [ -n "$STARTED_DOCKERD" ] || return 0
    log "stopping the dockerd this test started (pid $STARTED_DOCKERD)"
    kill "$STARTED_DOCKERD" 2>/dev/null || true
    local i
    for i in $(seq 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
    STARTED_DOCKERD=
}

# ------------------------------------------------------------------ images ----
apt_mirror() {
    # the first Debian mirror of this machine's apt sources (deb822 or one-line form)
    local f url
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        url=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }
                   /^deb / && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
        [ -n "$url" ] && { echo "$url"; return; }
    done
    echo http://deb.debian.org/debian
}

base_image() {
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
    local tarball=$CACHE/images/debian-bookworm-minbase.tar
    if [ ! -f "$tarball" ]; then
        local mirror rootfs=$WORK/rootfs
        mirror=$(apt_mirror)
        log "debootstrap bookworm from $mirror"
        debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
            die "debootstrap failed: $(tail -5 "$WORK/debootstrap.log")"
        slim_rootfs "$rootfs"
        mkdir -p "$CACHE/images"
        tar -C "$rootfs" -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
        rm -rf "$rootfs"
    fi
    log "docker import $BASE_IMAGE"
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}

# What debian:bookworm-slim is over a minbase debootstrap: this machine's apt sources
# (the same mirror, updates and security), no package caches or lists, and dpkg told to
# leave documentation, manuals and translations out of every later install.
slim_rootfs() {
    local r=$1
    cp /etc/apt/sources.list.d/*.sources "$r/etc/apt/sources.list.d/" 2>/dev/null &&
        rm -f "$r/etc/apt/sources.list" || true
    cat >"$r/etc/dpkg/dpkg.cfg.d/shop-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$r/etc/apt/apt.conf.d/shop-slim" <<'EOF'
APT::Install-Recommends "false";
Acquire::Languages "none";
EOF
    find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
        "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* \
        "$r"/var/log/* "$r"/tmp/*
}

infra_images() {
    local kafka_libs=$CACHE/kafka-$KAFKA_VERSION
    if [ ! -f "$kafka_libs/.complete" ]; then
        log "Kafka jars missing: deploy/local/deps.sh fetches them from Maven Central"
        "$ROOT/deploy/local/deps.sh" >"$WORK/deps.log" 2>&1 || die "deps.sh failed: $(tail -5 "$WORK/deps.log")"
    fi
    # the Kafka context: the Dockerfile and scripts, the jars and the broker's logging
    local ctx=$WORK/kafka-context
    mkdir -p "$ctx/libs"
    cp -r "$ROOT/tests/deploy/images/kafka/." "$ctx/"
    cp "$kafka_libs"/*.jar "$ctx/libs/"
    cp "$ROOT/deploy/local/kafka/log4j2.properties" "$ctx/"
    local image dir
    for image in "${INFRA_IMAGES[@]}"; do
        docker image inspect "$image" >/dev/null 2>&1 && continue
        case $image in
            */kafka:*) dir=$ctx ;;
            *) dir=$ROOT/tests/deploy/images/$(basename "${image%%:*}") ;;
        esac
        log "docker build $image"
        DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$image" "$dir" \
            >"$WORK/build-$(basename "${image%%:*}").log" 2>&1 ||
            die "building $image failed: $(tail -15 "$WORK/build-$(basename "${image%%:*}").log")"
    done
}

image_sizes() {
    local image
    for image in "$BASE_IMAGE" "${INFRA_IMAGES[@]}" "${PROGRAM_IMAGES[@]}"; do
        docker image inspect -f '{{.Size}}' "$image" 2>/dev/null |
            awk -v i="$image" '/^[0-9]+$/ { printf "  %-32s %7.1f MB\n", i, $1 / 1e6 }'
    done
}

# ------------------------------------------------------------------- stack ----
compose() {
    local files=(-f "$ROOT/deploy/docker-compose.yml")
    ((COMPOSE_HA)) && files+=(-f "$ROOT/deploy/docker-compose.ha.yml")
    files+=(-f "$ROOT/tests/deploy/compose.airgapped.yml")
    ((COMPOSE_HA)) && files+=(-f "$ROOT/tests/deploy/compose.airgapped.ha.yml")
    "$COMPOSE" -p "$PROJECT" "${files[@]}" "$@"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

http_status() {
    python3 - "$1" <<'EOF' 2>/dev/null || echo 000
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
c.request("GET", u.path)
print(c.getresponse().status)
EOF
}

scenario() { python3 "$ROOT/tests/deploy/compose_scenario.py" "$GW" "$WORK/state.json" "$@"; }

containers() { compose ps -q "$1"; }

# total of rpc_server_requests_total of one container, health checks left out: its
# /metrics on the admin port, read from inside (bash /dev/tcp: the images carry no HTTP
# client)
rpc_calls() {
    docker exec "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8081 &&
        printf "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
        awk '/^rpc_server_requests_total\{/ && !/grpc\.health/ { n += $NF } END { printf "%d\n", n }'
}

# every replica of order-svc and product-svc has served calls since scaling; the gateway
# is the same process (not restarted)
check_replicas_reached() {
    local deadline=$((SECONDS + ${1:-150})) c svc n unreached
    while :; do
        scenario reads 5 || die "reads failed while scaled"
        scenario orders 1 || die "an order failed while scaled"
        unreached=()
        REACHED=""
        for svc in order-svc product-svc; do
            for c in $(containers "$svc"); do
                n=$(rpc_calls "$c")
                REACHED+="  $svc ${c:0:12}: $n calls"$'\n'
                [ "${n:-0}" -gt 0 ] || unreached+=("$svc/${c:0:12}")
            done
        done
        ((${#unreached[@]} == 0)) && return 0
        ((SECONDS < deadline)) || { printf '%s' "$REACHED"; die "replicas never reached: ${unreached[*]}"; }
        sleep 2
    done
}

# ---------------------------------------------------------------------- HA ----
# COMPOSE_HA=1: failures, one at a time, each followed by the purchase.

# until_purchase WHAT [SECONDS]: orders and the purchase work again within SECONDS
# (default 180); the time it took goes into TIMES[WHAT].
until_purchase() {
    local what=$1 deadline=$((SECONDS + ${2:-180})) t
    t=$(now)
    until scenario orders 1 >>"$WORK/recover-$what.log" 2>&1; do
        ((SECONDS < deadline)) || { tail -20 "$WORK/recover-$what.log"; die "no order confirmed within ${2:-180}s after: $what"; }
        sleep 2
    done
    scenario purchase || die "the purchase failed after: $what"
    scenario orders 3 || die "orders failed after: $what"
    TIMES[$what]=$(since "$t")
    log "$what: orders and the purchase work again (${TIMES[$what]} s after the kill)"
}

# pg_primary FORMATION: the node the monitor has as the formation's primary (reported
# and assigned: a dead primary keeps its last report, and is assigned demoted)
pg_primary() {
    compose exec -T postgres-monitor psql -qtAX -d pg_auto_failover -c \
        "select nodehost from pgautofailover.node where formationid = '$1' and reportedstate in ('primary', 'wait_primary', 'single') and goalstate in ('primary', 'wait_primary', 'single') order by nodeid limit 1"
}

# pg_state FORMATION NODE: the node's reported state, as the monitor has it
pg_state() {
    compose exec -T postgres-monitor psql -qtAX -d pg_auto_failover -c \
        "select reportedstate from pgautofailover.node where formationid = '$1' and nodehost = '$2'"
}

# redis_master: the master's host as the first Sentinel that answers says
redis_master() {
    local k out
    for k in 1 2 3; do
        out=$(compose exec -T "sentinel-$k" bash -c 'REDISCLI_AUTH=$(cat /run/secrets/shop/admin-password) redis-cli --no-auth-warning --user admin -p 26379 --raw sentinel get-master-addr-by-name shop' 2>/dev/null | head -n1) || true
        [ -n "$out" ] && { echo "$out"; return 0; }
    done
    return 1
}

ha_failures() {
    local victim primary master cid promoted t
    # the gateway of this build: does it know REDIS_SENTINELS (issue 21's gateway)?
    if docker run --rm --entrypoint /usr/local/bin/gateway "$(image_of gateway)" --help 2>/dev/null |
        grep -q REDIS_SENTINELS; then
        GATEWAY_SENTINELS=1
    else
        GATEWAY_SENTINELS=0
        log "NOTE: this gateway has no REDIS_SENTINELS: it talks to REDIS_URL's host (redis) only"
    fi

    victim=kafka-2
    log "docker kill $victim (one of three Kafka nodes)"
    docker kill "$(containers "$victim")" >/dev/null
    until_purchase kill_kafka_node

    primary=$(pg_primary order) || die "the monitor names no primary for order"
    [ -n "$primary" ] || die "the monitor names no primary for order"
    # Kept down until the standby is promoted: with its restart policy the container is
    # back within seconds, before the monitor's health checks give up on it, and the
    # node simply goes on as the primary (no failover to show).
    cid=$(containers "$primary")
    docker update --restart=no "$cid" >/dev/null
    log "docker kill $primary (order's PostgreSQL primary, as the monitor says), kept down"
    docker kill "$cid" >/dev/null
    until_purchase kill_pg_primary
    promoted=$(pg_primary order) || true
    [ -n "$promoted" ] && [ "$promoted" != "$primary" ] ||
        die "order's primary is '${promoted:-none}' after the kill of $primary: no promotion"
    log "order's primary now: $promoted (promoted)"
    docker update --restart=unless-stopped "$cid" >/dev/null
    docker start "$cid" >/dev/null
    t=$SECONDS
    until [ "$(pg_state order "$primary" 2>/dev/null)" = secondary ]; do
        ((SECONDS - t < 180)) || die "$primary, started again, is not order's secondary within 180 s (state: $(pg_state order "$primary" 2>/dev/null))"
        sleep 2
    done
    log "$primary rejoined as order's secondary ($((SECONDS - t)) s after its start)"

    master=$(redis_master) || die "no Sentinel names the Redis master"
    log "docker kill $master (the Redis master, as the Sentinels say)"
    docker kill "$(containers "$master")" >/dev/null
    if ((GATEWAY_SENTINELS)); then
        until_purchase kill_redis_master
    elif (until_purchase kill_redis_master 60); then
        log "kill_redis_master: the purchase works again (gateway without Sentinels: the master came back at the same name)"
    else
        log "NOT CHECKED: the purchase after the Redis master's loss needs the gateway's REDIS_SENTINELS (not in this build)"
    fi
    log "Redis master now: $(redis_master || echo unknown)"
}

# ------------------------------------------------------------------- trust ----
# The secured setup holds (docs/trust.md, deploy/README.md "Trust in containers"),
# checked from inside the stack's network with the infrastructure images' own tools.

# The consumers of the pki's volumes and the uid each image runs as.
declare -A SECRET_UIDS=([order-svc]=10001 [product-svc]=10001 [user-svc]=10001 [gateway]=10001
    [postgres-order]=999 [postgres-product]=999 [postgres-user]=999 [redis]=999 [kafka]=1000
    [kafka-admin]=1000 [shopctl]=10001)
# HA: the nodes' own volumes too
if ((COMPOSE_HA)); then
    SECRET_UIDS+=([kafka-1]=1000 [kafka-2]=1000 [kafka-3]=1000 [postgres-monitor]=999
        [redis-replica]=999 [sentinel-1]=999 [sentinel-2]=999 [sentinel-3]=999)
    for svc_ in order product user; do
        SECRET_UIDS+=([postgres-$svc_-1]=999 [postgres-$svc_-2]=999)
    done
    unset svc_
fi
# PG_NODE SVC: a PostgreSQL container of the service (its first node in HA); KAFKA_NODE:
# a broker's host name.
pg_node() { if ((COMPOSE_HA)); then echo "postgres-$1-1"; else echo "postgres-$1"; fi; }
KAFKA_NODE=kafka
((COMPOSE_HA)) && KAFKA_NODE=kafka-1

image_of() { docker inspect -f '{{.Config.Image}}' "$(compose ps -aq "$1" | head -1)"; }

# net_run SERVICE-IMAGE USER VOLUME SCRIPT: bash SCRIPT in a throwaway container of the
# image SERVICE runs, on the stack's network, as USER, with the project's volume
# secrets-VOLUME (if not empty) at /run/secrets/shop read-only, as its consumer sees it.
net_run() {
    local image user=$2 vol=$3
    image=$(image_of "$1")
    docker run --rm -i --network "${PROJECT}_default" --user "$user" \
        ${vol:+-v "${PROJECT}_secrets-$vol:/run/secrets/shop:ro"} --entrypoint bash "$image" -c "$4"
}

# Every consumer's volume: owned by its uid, 0700, files 0400 (PostgreSQL's key 0600),
# certificates signed by the CA with CN = the consumer; only pki mounts the CA's volume,
# every container mounts only its own secrets volume, read-only.
check_secrets() {
    local c mounts=() args=() out
    for c in "${!SECRET_UIDS[@]}"; do
        args+=(-v "${PROJECT}_secrets-$c:/v/$c:ro")
        mounts+=("$c:${SECRET_UIDS[$c]}")
    done
    out=$(docker run --rm "${args[@]}" --entrypoint bash "$(image_of pki)" -c '
        bad() { echo "BAD: $*"; }
        for m in '"${mounts[*]}"'; do
            c=${m%%:*} uid=${m#*:} d=/v/${m%%:*}
            [ "$(stat -c %u:%a "$d")" = "$uid:700" ] || bad "$d is $(stat -c %u:%a "$d")"
            for f in "$d"/*; do
                mode=400; [ "${f##*/}" = server.key ] && [ "${c#postgres-}" != "$c" ] && mode=600
                [ "$(stat -c %u:%a "$f")" = "$uid:$mode" ] || bad "$f is $(stat -c %u:%a "$f")"
            done
            for crt in tls.crt server.crt; do
                [ -f "$d/$crt" ] || continue
                openssl verify -CAfile "$d/ca.crt" "$d/$crt" >/dev/null || bad "$d/$crt not signed by the CA"
                openssl x509 -in "$d/$crt" -noout -subject | grep -q "CN = $c\$" || bad "$d/$crt: not CN $c"
            done
        done
        echo checked' 2>&1)
    [ "$out" = checked ] || die "secrets volumes: $out"
    local id name vol
    for id in $(compose ps -aq); do
        name=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$id")
        while read -r vol rw; do
            case $vol in
                "${PROJECT}_pki") [ "$name" = pki ] || die "$name mounts the CA's volume" ;;
                "${PROJECT}_secrets-"*)
                    [ "$name" = pki ] && continue
                    [ "$vol" = "${PROJECT}_secrets-${name/kafka-init/kafka-admin}" ] ||
                        die "$name mounts $vol"
                    [ "$rw" = false ] || die "$name mounts $vol writable" ;;
            esac
        done < <(docker inspect -f '{{range .Mounts}}{{.Name}} {{.RW}}{{"\n"}}{{end}}' "$id")
    done
    log "secrets: every volume owned by its consumer only, keys 0400/0600, CN = consumer"
    # idempotent: a second run changes nothing; a deleted certificate is made again, and
    # only that one
    out=$(compose run --rm --no-deps -T pki 2>&1) || die "pki failed on a second run: $out"
    ! grep -E 'wrote|new secret' <<<"$out" || die "pki changed files on a second run"
    out=$(compose run --rm --no-deps -T --entrypoint sh pki -c \
        'rm /pki/tls/user-svc.crt && exec shop-secrets-init' 2>&1) || die "pki rotation failed: $out"
    [ "$(grep -c wrote <<<"$out")" = 2 ] && grep -q 'wrote user-svc/tls.crt' <<<"$out" &&
        grep -q 'wrote user-svc/tls.key' <<<"$out" ||
        die "deleting user-svc.crt did not remake exactly user-svc's certificate: $out"
    log "secrets: a second pki run changes nothing; a deleted certificate is remade alone"
}

# expect_out WHAT PATTERN OUTPUT: OUTPUT must match PATTERN (grep -E).
expect_out() { grep -Eq "$2" <<<"$3" || die "$1: expected /$2/, got: $(tail -5 <<<"$3")"; }

# check_refusals [positive]: with `positive` (the infra-only run, where no program
# consumes), also write to topics order-svc may write and join its group, which in a
# running fleet would feed the consumers a probe (a dead letter) and move the group's
# offsets; with the programs running, their scenario shows what they may do.
check_refusals() {
    local svc out topics=payment.events groups=product-svc
    if [ "${1:-}" = positive ]; then
        topics="order.events inventory.events.dlq payment.events" groups="order-svc product-svc"
    fi
    # PostgreSQL: no TLS refused by pg_hba, TLS with a wrong password refused; the
    # program's own DATABASE_URL_FILE (verify-full) and the server's password work.
    local pg
    for svc in order product user; do
        pg=$(pg_node "$svc")
        out=$(net_run "$pg" 10001 "" \
            "psql 'host=$pg user=$svc dbname=$svc sslmode=disable' -c 'select 1' 2>&1" || true)
        expect_out "$pg without TLS" 'rejects connection.*no encryption' "$out"
        out=$(net_run "$pg" 10001 "" \
            "PGPASSWORD=wrong psql 'host=$pg user=$svc dbname=$svc sslmode=require' -c 'select 1' 2>&1" || true)
        expect_out "$pg with a wrong password" 'password authentication failed' "$out"
        out=$(net_run "$pg" 10001 "$svc-svc" \
            'psql "$(cat /run/secrets/shop/database-url)" -tAc "select ssl from pg_stat_ssl where pid = pg_backend_pid()" 2>&1' || true)
        expect_out "$svc-svc's database-url" '^t$' "$out"
    done
    log "postgres: plaintext and wrong passwords refused; each service's URL logs in over verified TLS"
    # Redis: nothing without a user; gateway only on its keys and commands.
    out=$(net_run redis 999 "" 'redis-cli -h redis ping 2>&1; redis-cli -h redis get x 2>&1' || true)
    expect_out "redis without a password" '^NOAUTH' "$out"
    ! grep -q PONG <<<"$out" || die "redis answered without a password"
    out=$(net_run redis 10001 gateway '
        export REDISCLI_AUTH=$(cat /run/secrets/shop/redis-password)
        r() { redis-cli --no-auth-warning --user gateway -h redis "$@" 2>&1; }
        echo "ping:$(r ping)"; echo "own:$(r set gw:trust-probe 1 px 10000)"
        echo "other:$(r set trust-probe 1)"; echo "flushall:$(r flushall)"
        echo "keys:$(r keys "*")"; echo "config:$(r config get requirepass)"
        echo "wrong:$(REDISCLI_AUTH=wrong r ping)"' || true)
    expect_out "redis gateway ping" '^ping:PONG$' "$out"
    expect_out "redis gateway on its keys" '^own:OK$' "$out"
    for what in other flushall keys config; do
        expect_out "redis gateway refused $what" "^$what:NOPERM" "$out"
    done
    expect_out "redis with a wrong password" '^wrong:(AUTH failed|WRONGPASS)' "$out"
    log "redis: no default user; gateway limited to its keys and commands"
    # Kafka: no plaintext, no TLS without a login, no wrong password (SASL PLAIN inside
    # TLS, what the programs use: docs/trust.md); ACLs as the manifest says; the
    # controller listener is not reachable from the network.
    # The probes' client timeouts: HA gives them four times as long (the third live HA
    # run, load about 60 on 2 vCPUs, saw the group probe time out instead of being
    # refused; three brokers answer slower than one on a busy host)
    local ms=(5000 8000 3000 3000)
    ((COMPOSE_HA)) && ms=(20000 32000 12000 20000)
    out=$(net_run "$KAFKA_NODE" 10001 order-svc "topics='$topics' groups='$groups' kafka=$KAFKA_NODE ms='${ms[*]}'"'
        read -r rt at ct wait <<<"$ms"
        t=$(printf "%s\n" request.timeout.ms=$rt default.api.timeout.ms=$at socket.connection.setup.timeout.ms=$ct)
        ca=/run/secrets/shop/ca.crt
        printf "%s\n" "$t" >/tmp/plain.properties
        printf "%s\n" "$t" security.protocol=SSL ssl.truststore.type=PEM ssl.truststore.location=$ca >/tmp/ssl.properties
        login() { printf "%s\n" "$t" security.protocol=SASL_SSL sasl.mechanism=PLAIN \
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$1\" password=\"$2\";" \
            ssl.truststore.type=PEM ssl.truststore.location=$ca; }
        login order-svc wrong >/tmp/wrong.properties
        login order-svc "$(cat /run/secrets/shop/kafka-password)" >/tmp/own.properties
        k=/opt/kafka/bin
        for c in plain ssl wrong own; do
            echo "$c:$(timeout 60 $k/kafka-topics.sh --bootstrap-server $kafka:9092 --command-config /tmp/$c.properties --list 2>&1 | grep -v "^\s*at " | tr "\n" " ")"
        done
        for topic in $topics; do
            echo "produce-$topic:$(echo trust-probe | timeout 60 $k/kafka-console-producer.sh --bootstrap-server $kafka:9092 --producer.config /tmp/own.properties --topic $topic 2>&1 | grep -v "^\s*at " | tr "\n" " ")"
        done
        for g in $groups; do
            echo "group-$g:$(timeout 60 $k/kafka-console-consumer.sh --bootstrap-server $kafka:9092 --consumer.config /tmp/own.properties --topic inventory.events --group $g --timeout-ms $wait 2>&1 | grep -v "^\s*at " | tr "\n" " ")"
        done
        (exec 3<>/dev/tcp/$kafka/9093) 2>/dev/null && echo controller:open || echo controller:closed' || true)
    expect_out "kafka plaintext" '^plain:.*(TimeoutException|exited|disconnected)' "$out"
    expect_out "kafka TLS without a login" '^ssl:.*(TimeoutException|disconnected)' "$out"
    expect_out "kafka wrong password" '^wrong:.*SaslAuthenticationException|^wrong:.*invalid credentials' "$out"
    ! grep -Eq '^(plain|ssl|wrong):.*order\.events' <<<"$out" || die "kafka listed topics without credentials: $out"
    expect_out "kafka order-svc lists its topics" '^own:.*order\.events' "$out"
    if [ "${1:-}" = positive ]; then
        expect_out "kafka order-svc writing order.events" '^produce-order.events:' "$out"
        ! grep -Eq '^produce-order.events:.*(Authorization|Authentication)' <<<"$out" ||
            die "order-svc cannot write order.events: $out"
        expect_out "kafka order-svc writing inventory.events.dlq" '^produce-inventory.events.dlq:' "$out"
        ! grep -Eq '^produce-inventory.events.dlq:.*(Authorization|Authentication)' <<<"$out" ||
            die "order-svc cannot write the DLQ of a topic it consumes: $out"
        expect_out "kafka order-svc in its group" '^group-order-svc:' "$out"
        ! grep -Eq '^group-order-svc:.*(Authorization|Authentication)' <<<"$out" ||
            die "order-svc cannot consume with its group: $out"
    fi
    expect_out "kafka order-svc writing payment.events" '^produce-payment.events:.*TopicAuthorizationException' "$out"
    expect_out "kafka order-svc using product-svc's group" '^group-product-svc:.*GroupAuthorizationException' "$out"
    # HA: the quorum of three needs the controller listener on the network (TLS with a
    # client certificate of the fleet's CA required; only the nodes are super users)
    ((COMPOSE_HA)) || expect_out "kafka controller listener" '^controller:closed$' "$out"
    log "kafka: plaintext, TLS without a login and wrong passwords refused; order-svc's ACLs as fleet.conf says"
}

teardown() {
    local rc=$?
    set +e
    if [ -n "$STACK_UP" ]; then
        [ "$rc" = 0 ] || compose logs --no-color --tail 40 >"$WORK/compose-logs.txt" 2>&1
        [ "$rc" = 0 ] || { log "last log lines of every container:"; cat "$WORK/compose-logs.txt"; }
        log "docker compose down -v"
        compose down -v --remove-orphans >"$WORK/down.log" 2>&1 || cat "$WORK/down.log"
    fi
    if [ "${KEEP_IMAGES:-0}" != 1 ] && docker info >/dev/null 2>&1; then
        log "removing the images this test made (KEEP_IMAGES=1 keeps them)"
        docker image rm "${PROGRAM_IMAGES[@]}" "${INFRA_IMAGES[@]}" "$BASE_IMAGE" >/dev/null 2>&1
    fi
    if docker info >/dev/null 2>&1; then
        local left
        left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"; \
               docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT"; \
               docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
        if [ -n "$left" ]; then
            log "left behind: $left"
            [ "$rc" = 0 ] && rc=1
        fi
    fi
    stop_engine
    rm -rf "$WORK"
    exit "$rc"
}

# wait_exited SERVICE [SECONDS]: the one-shot container exited 0.
wait_exited() {
    local id deadline=$((SECONDS + ${2:-300})) state
    id=$(compose ps -aq "$1")
    while state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id"); do
        case $state in
            "exited 0") return 0 ;;
            exited*) die "$1 exited: $(compose logs --no-color --tail 20 "$1" 2>&1)" ;;
        esac
        ((SECONDS < deadline)) || die "$1 still running after ${2:-300}s"
        sleep 2
    done
    die "no $1 container"
}

# `compose_e2e.sh infra`: the pki and the infrastructure only (no program image is
# built or run), then the trust checks: what can be checked before the programs speak
# TLS, Kafka logins and ACL-limited Redis.
infra_only() {
    local t
    t=$(now)
    log "docker compose build pki"
    compose build pki >"$WORK/compose-build.log" 2>&1 || die "building pki failed: $(tail -30 "$WORK/compose-build.log")"
    log "docker compose up: pki and the infrastructure"
    STACK_UP=1
    compose up -d --wait pki postgres-order postgres-product postgres-user redis kafka \
        >"$WORK/up.log" 2>&1 || true # --wait counts pki's exit as a failure
    wait_exited pki 60
    compose up -d --wait postgres-order postgres-product postgres-user redis kafka \
        >>"$WORK/up.log" 2>&1 || die "the infrastructure is not healthy: $(tail -30 "$WORK/up.log")"
    compose up -d kafka-init >>"$WORK/up.log" 2>&1 || die "kafka-init: $(tail -30 "$WORK/up.log")"
    wait_exited kafka-init 300
    TIMES[up]=$(since "$t")
    compose ps -a --format 'table {{.Service}}\t{{.Status}}' 2>/dev/null || compose ps -a
    t=$(now)
    check_secrets
    check_refusals positive
    TIMES[trust_checks]=$(since "$t")
    log "summary (infrastructure only: the programs were not built or run)"
    local k
    for k in build_base_infra up trust_checks; do printf '  %-26s %7s s\n' "$k" "${TIMES[$k]}"; done
    log "PASSED"
}

# -------------------------------------------------------------------- main ----
# compose_e2e.sh [infra]: everything (default), or the pki and infrastructure only.
main() {
    local t
    SCOPE=${1:-all}
    case $SCOPE in all | infra) ;; *) echo "usage: $0 [infra]" >&2; exit 2 ;; esac
    trap 'rm -rf "$WORK"' EXIT
    install_tools
    start_engine
    trap teardown EXIT
    trap 'exit 130' INT TERM

    t=$(now)
    base_image
    infra_images
    TIMES[build_base_infra]=$(since "$t")

    # Nothing to prepare: the pki container makes every secret (zero configuration).
    if [ "$SCOPE" = infra ]; then
        infra_only
        return
    fi
    export GATEWAY_PORT
    GATEWAY_PORT=$(free_port)
    GW=http://127.0.0.1:$GATEWAY_PORT

    t=$(now)
    log "docker compose build (the four programs)"
    # HA: the programs and the pki only (the PostgreSQL image is infra_images')
    local build_services=()
    ((COMPOSE_HA)) && build_services=(pki order-svc product-svc user-svc gateway)
    compose build "${build_services[@]}" >"$WORK/compose-build.log" 2>&1 || die "compose build failed: $(tail -30 "$WORK/compose-build.log")"
    TIMES[build_programs]=$(since "$t")
    log "images:"
    image_sizes

    t=$(now)
    log "docker compose up -d"
    STACK_UP=1
    compose up -d >"$WORK/up.log" 2>&1 || die "compose up failed: $(tail -30 "$WORK/up.log")"
    local deadline=$((SECONDS + 120))
    ((COMPOSE_HA)) && deadline=$((SECONDS + 300))
    until [ "$(http_status "$GW/readyz")" = 200 ]; do
        ((SECONDS < deadline)) || die "the gateway's /readyz is not 200 in time"
        sleep 1
    done
    TIMES[up]=$(since "$t")
    local gw_id gw_started
    gw_id=$(containers gateway)
    gw_started=$(docker inspect -f '{{.State.StartedAt}}' "$gw_id")
    # the gateway's own start: its container started -> /readyz answered 200 (polled
    # every second, so within a second)
    TIMES[gateway_start_to_ready]=$(python3 -c 'import sys, datetime
s = sys.argv[1].rstrip("Z")[:26]
t = datetime.datetime.fromisoformat(s).replace(tzinfo=datetime.timezone.utc)
print("%.1f" % (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())' "$gw_started")
    compose ps --format 'table {{.Service}}\t{{.Status}}' 2>/dev/null || compose ps

    t=$(now)
    check_secrets
    check_refusals
    TIMES[trust_checks]=$(since "$t")

    t=$(now)
    log "create-admin, then the purchase"
    printf '%s\n' 'compose test admin 1' |
        compose exec -T user-svc /usr/local/bin/user-svc create-admin admin@compose.test \
            >"$WORK/create-admin.log" 2>&1 ||
        die "user-svc create-admin failed"
    scenario setup admin@compose.test 'compose test admin 1' || die "setup failed"
    scenario purchase || die "the purchase failed"
    scenario orders 3 || die "orders failed"
    # The dead-letter tool ships in the service images; the compose service shopctl
    # (profile tools) runs it as the Kafka admin: a clean run leaves every DLQ empty.
    compose run --rm -T shopctl dlq list --json >"$WORK/dlq-list.json" 2>"$WORK/dlq-list.err" ||
        die "shopctl dlq list failed: $(tail -5 "$WORK/dlq-list.err")"
    [ ! -s "$WORK/dlq-list.json" ] || die "dead letters after a clean run: $(head -3 "$WORK/dlq-list.json")"
    TIMES[scenario]=$(since "$t")

    if ((COMPOSE_HA)); then
        ha_failures
        log "summary (HA)"
        local k
        for k in build_base_infra build_programs up gateway_start_to_ready trust_checks scenario \
            kill_kafka_node kill_pg_primary kill_redis_master; do
            printf '  %-26s %7s s\n' "$k" "${TIMES[$k]:-}"
        done
        image_sizes
        log "PASSED (HA)"
        return
    fi

    t=$(now)
    log "scale: order-svc=3 product-svc=2 (the gateway keeps running)"
    compose up -d --no-recreate --scale order-svc=3 --scale product-svc=2 >"$WORK/scale.log" 2>&1 ||
        die "scaling up failed: $(tail -20 "$WORK/scale.log")"
    [ "$(containers order-svc | wc -l)" = 3 ] || die "not 3 order-svc replicas"
    [ "$(containers product-svc | wc -l)" = 2 ] || die "not 2 product-svc replicas"
    TIMES[scale_up_command]=$(since "$t")
    t=$(now)
    check_replicas_reached 150
    TIMES[then_all_replicas_reached]=$(since "$t")
    log "every replica reached through the running gateway:"
    printf '%s' "$REACHED"
    log "docker stats (CPU and memory against the compose limits):"
    docker stats --no-stream --format 'table {{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}' \
        $(compose ps -q) || true
    [ "$(containers gateway)" = "$gw_id" ] &&
        [ "$(docker inspect -f '{{.State.StartedAt}}' "$gw_id")" = "$gw_started" ] ||
        die "the gateway was restarted or replaced while scaling"

    t=$(now)
    local victim
    victim=$(containers order-svc | tail -1)
    log "docker kill order-svc ${victim:0:12}; orders must still confirm"
    docker kill "$victim" >/dev/null
    scenario orders 5 || die "orders failed after killing an order-svc replica"
    TIMES[kill_replica]=$(since "$t")

    t=$(now)
    log "scale back: order-svc=1 product-svc=1"
    compose up -d --no-recreate --scale order-svc=1 --scale product-svc=1 >"$WORK/scale.log" 2>&1 ||
        die "scaling down failed: $(tail -20 "$WORK/scale.log")"
    scenario orders 3 || die "orders failed after scaling down"
    scenario purchase || die "the purchase failed after scaling down"
    TIMES[scale_down]=$(since "$t")

    log "summary"
    local k
    for k in build_base_infra build_programs up gateway_start_to_ready trust_checks scenario scale_up_command \
        then_all_replicas_reached kill_replica scale_down; do
        printf '  %-26s %7s s\n' "$k" "${TIMES[$k]}"
    done
    image_sizes
    log "PASSED"
}

# sourced (to call one step by hand) or run
[[ "${BASH_SOURCE[0]}" != "$0" ]] || main "$@"
