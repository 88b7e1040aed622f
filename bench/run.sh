#!/usr/bin/env bash
# bench/run.sh — `make bench`: DESIGN.md §8 measured side by side in one run.
#
# Starts its own stack (STACK_PROFILE=bench: wiped, release build, SCALE=1), seeds it
# through the REST API, then measures each figure next to its baseline:
#   1. HTTP floor      bench_hello (libmicrohttpd, the gateway's threading) under wrk
#   2. gateway read    GET /products/{id} with a token under the same wrk load; gRPC
#                      GetProduct straight to product-svc under ghz; latency of both at
#                      one moderate fixed rate (bench_sagaload get, ghz --rps)
#   3. saga            bench_sagaload orders at rising fixed rates until confirmed/s
#                      stops following; latency at half of the peak; pgbench running
#                      the saga's SQL per order on the same PostgreSQL servers
#   4. footprint       RSS at rest, under load and peak; start-up to /readyz
# prints a table and writes bench/results.json. Compared runs go in A-B-B-A order, each
# keeping its better run (a shared machine has bursts). bench/README.md explains each
# method.
#
#   BENCH_QUICK=1      every phase lasts a couple of seconds (make test: it runs)
#   BENCH_OUT=FILE     where the JSON goes (default bench/results.json)
#   BIN_DIR            the programs (default build-release/); the tools are taken
#                      from $BIN_DIR/bench unless BENCH_TOOLS_DIR says otherwise
#
# A benchmark never fails: exit 0 with whatever was measured (null where a figure
# could not be); exit 1 only when the harness itself cannot run (no stack, no tools).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
export STACK_PROFILE=bench BIN_DIR=${BIN_DIR:-$ROOT/build-release}
STACK="$ROOT/deploy/local/stack.sh"
TOOLS=${BENCH_TOOLS_DIR:-$BIN_DIR/bench}
OUT=${BENCH_OUT:-$HERE/results.json}
QUICK=${BENCH_QUICK:-0}
GO_BIN=${SHOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shop-fleet}/go-bin

# Load settings, the same for every HTTP figure: wrk's closed loop and our open loop.
CONNS=32
WRK_THREADS=2
PG_CLIENTS_ORDER=3 # CreateOrder handler, saga consumer, outbox relay (see README)
PG_CLIENTS_OTHER=2 # saga consumer, outbox relay
N_USERS=8
N_PRODUCTS=8
if ((QUICK)); then
    T_LOAD=2 T_FIXED=2 T_STEP=3 T_HALF=3 T_PG=2 T_DRAIN=10 STARTUP_RUNS=1
    STEPS=(20 40)
else
    T_LOAD=8 T_FIXED=6 T_STEP=10 T_HALF=20 T_PG=15 T_DRAIN=30 STARTUP_RUNS=3
    STEPS=(20 30 45 70 100 150 230 340 510 770 1150) # about ×1.5 apart
fi

# The gateway's per-user budget and login limits would turn a benchmark into 429s.
export GATEWAY_ENV_USER_RATE_LIMIT=100000000 GATEWAY_ENV_LOGIN_RATE_IP=1000000 \
    GATEWAY_ENV_LOGIN_RATE_ACCOUNT=1000000 GATEWAY_ENV_REGISTER_RATE_IP=1000000

say() { printf '[bench] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

WORK=$(mktemp -d)
R="$WORK/results.json"
echo '{}' >"$R"
HELLO_PID=
HELLO_URL=
SAMPLER_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
    [ -n "$HELLO_PID" ] && kill "$HELLO_PID" 2>/dev/null
    say "stopping the bench stack"
    "$STACK" down >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# jput PATH VALUE: sets PATH (a jq path) of the results to VALUE, or null when VALUE is
# not JSON (a measurement that produced nothing).
jput() {
    local v=${2:-null}
    jq . >/dev/null 2>&1 <<<"$v" || v=null
    jq --argjson v "$v" "$1 = \$v" "$R" >"$R.tmp" && mv "$R.tmp" "$R"
}
jget() { jq -r "$1 // empty" "$R"; }

# phase NAME CMD...: runs a measurement, records how long it took.
phase() {
    local name=$1 t0
    shift
    say "phase: $name"
    t0=$(date +%s.%N)
    "$@" || say "phase $name failed (its figures are null)"
    jput ".settings.phase_seconds.\"$name\"" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')"
}

# ------------------------------------------------------------------ tools ----

tools() {
    local t
    for t in wrk pgbench psql jq curl; do
        command -v "$t" >/dev/null || die "$t is missing (make deps)"
    done
    for t in bench_hello bench_sagaload; do
        [ -x "$TOOLS/$t" ] || die "$TOOLS/$t is missing (make release)"
    done
    GHZ=$(command -v ghz || echo "$GO_BIN/ghz")
    if [ ! -x "$GHZ" ] && [ -x /usr/local/go/bin/go ]; then
        say "installing ghz into $GO_BIN (go install, once)"
        GOBIN="$GO_BIN" /usr/local/go/bin/go install github.com/bojand/ghz/cmd/ghz@latest >&2 ||
            say "ghz could not be installed: the direct gRPC figures will be null"
    fi
    [ -x "$GHZ" ] || GHZ=
}

# ------------------------------------------------------------------ stack ----

API=
api() { # api METHOD PATH [TOKEN] [BODY] [extra curl args...]: the JSON answer, or fail
    local method=$1 path=$2 token=${3:-} body=${4:-}
    shift 4 2>/dev/null || shift $#
    local args=(-sS -f -X "$method" "$API$path" -H 'Content-Type: application/json')
    [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
    [ -n "$body" ] && args+=(-d "$body")
    curl "${args[@]}" "$@"
}

login() { api POST /auth/login '' "{\"email\":\"$1\",\"password\":\"$2\"}" | jq -r .access_token; }

# The programs under test are copied first: a `make release` elsewhere on a shared
# machine must not swap a binary in the middle of the run.
snapshot_programs() {
    local f
    for f in services/order/order-svc services/product/product-svc services/user/user-svc \
        gateway/gateway; do
        [ -x "$BIN_DIR/$f" ] || die "$BIN_DIR/$f is missing (make release)"
        mkdir -p "$WORK/bin/$(dirname "$f")"
        cp "$BIN_DIR/$f" "$WORK/bin/$f"
    done
    PROGRAMS_FROM=$BIN_DIR
    export BIN_DIR="$WORK/bin"
}

stack_up() {
    snapshot_programs
    say "starting the bench stack (wiped, SCALE=1, programs from $PROGRAMS_FROM)"
    "$STACK" wipe >/dev/null 2>&1 || true
    SCALE=1 "$STACK" up >&2 || die "the bench stack did not start"
    set -a
    . <("$STACK" env)
    set +a
    API="$GATEWAY_URL/api/v1"
    PROGRAMS=()
    local p
    for p in $("$STACK" parts); do
        [[ "$p" == gateway || "$p" == *-svc-[0-9] ]] && PROGRAMS+=("$p")
    done
}

pid_of() { head -n1 "$STACK_DATA/run/$1.pid"; }

# Customers with money, products with stock, an admin; tokens in $WORK/tokens.
seed() {
    local admin_pw="bench admin passphrase" pw="bench customer passphrase" i id
    printf '%s\n' "$admin_pw" | "$STACK" create-admin admin@bench.example >/dev/null 2>&1 ||
        die "create-admin failed"
    ADMIN=$(login admin@bench.example "$admin_pw")
    [ -n "$ADMIN" ] && [ "$ADMIN" != null ] || die "admin login failed"
    : >"$WORK/products"
    for ((i = 1; i <= N_PRODUCTS; i++)); do
        id=$(api POST /products "$ADMIN" \
            "{\"sku\":\"BENCH-$i\",\"name\":\"Bench product $i\",\"price_cents\":100}" | jq -r .id)
        api PUT "/products/$id/stock" "$ADMIN" '{"available":100000000}' >/dev/null ||
            die "stock of $id"
        echo "$id" >>"$WORK/products"
    done
    for ((i = 1; i <= N_USERS; i++)); do
        api POST /auth/register '' \
            "{\"email\":\"c$i@bench.example\",\"password\":\"$pw\",\"display_name\":\"C$i\"}" >/dev/null ||
            die "register c$i"
    done
    tokens
    while read -r t; do
        api POST /users/me/wallet/deposits "$t" '{"amount_cents":100000000}' \
            -H "Idempotency-Key: seed-$RANDOM-$RANDOM" >/dev/null || die "deposit"
    done <"$WORK/tokens"
    PRODUCT=$(head -n1 "$WORK/products")
    say "seeded $N_PRODUCTS products, $N_USERS customers"
}

# Fresh access tokens (they live 15 minutes) of every customer into $WORK/tokens.
TOKENS_AT=
tokens() {
    local i
    : >"$WORK/tokens"
    for ((i = 1; i <= N_USERS; i++)); do
        login "c$i@bench.example" "bench customer passphrase" >>"$WORK/tokens" || die "login c$i"
    done
    TOKEN=$(head -n1 "$WORK/tokens")
    TOKENS_AT=$SECONDS
}

# New tokens only when these are 10 minutes old: a login costs user-svc an argon2id
# hash (19 MiB, ~0.1 s), which would otherwise show in the footprint under load.
fresh_tokens() { ((SECONDS - TOKENS_AT < 600)) || tokens; }

# ------------------------------------------------------------ parsers ----

# wrk's report (with --latency) as JSON; latencies in µs.
wrk_json() {
    awk '
    function us(s) { if (s ~ /us$/) return s + 0; if (s ~ /ms$/) return (s + 0) * 1000;
                     if (s ~ /s$/) return (s + 0) * 1000000; return s + 0 }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = us($2) } /^ +90%/ { p90 = us($2) } /^ +99%/ { p99 = us($2) }
    / requests in / { req = $1 }
    /Non-2xx or 3xx responses:/ { bad += $NF }
    /Socket errors:/ { gsub(/,/, ""); bad += $4 + $6 + $8 + $10 }
    END { if (rps == "") exit 1
          printf "{\"rps\": %s, \"requests\": %d, \"errors\": %d, \"closed_loop_latency_us\": {\"p50\": %s, \"p90\": %s, \"p99\": %s}}\n",
                 rps, req, bad, p50, p90, p99 }'
}

# ghz's JSON report reduced to ours; latencies in µs.
ghz_json() {
    jq '{rps: .rps, requests: .count,
         errors: ([.statusCodeDistribution // {} | to_entries[] | select(.key != "OK") | .value] | add // 0),
         latency_us: ([.latencyDistribution[]? | {key: ("p" + (.percentage | tostring)), value: (.latency / 1000)}]
                      | from_entries | {p50, p90, p99})}'
}

# ---------------------------------------------------------------- phases ----

wrk_run() { # wrk_run URL [lua]: saturation with the common settings
    local args=(-t "$WRK_THREADS" -c "$CONNS" -d "${T_LOAD}s" --latency)
    [ -n "${2:-}" ] && args+=(-s "$2")
    wrk "${args[@]}" "$1" | wrk_json
}

ghz_run() { # ghz_run [extra args]: GetProduct on product-svc-1, one connection like the gateway
    [ -n "$GHZ" ] || return 1
    local addr=${PRODUCT_GRPC_ADDRS%%,*}
    "$GHZ" --insecure --import-paths "$ROOT/proto" --proto shop/product/v1/product_service.proto \
        --call shop.product.v1.ProductService.GetProduct -d "{\"product_id\":\"$PRODUCT\"}" \
        -m "{\"x-request-id\":\"bench\",\"x-user-id\":\"$USER_ID\",\"x-user-role\":\"customer\",\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"}" \
        --connections 1 -c "$CONNS" -O json "$@" "$addr" | ghz_json
}

# Saturation of the floor and of the gateway, twice each in A-B-B-A order (hello,
# gateway, gateway, hello); each keeps its better run, so that a burst elsewhere on a
# shared machine spoils one run rather than the ratio.
saturation() {
    local port url="$GATEWAY_URL/api/v1/products/$PRODUCT" h1 h2 g1 g2
    HELLO_ADDR=127.0.0.1:0 HTTP_THREADS=$HTTP_THREADS "$TOOLS/bench_hello" >"$WORK/hello.out" 2>&1 &
    HELLO_PID=$!
    for _ in $(seq 50); do grep -q serving "$WORK/hello.out" && break; sleep 0.1; done
    port=$(awk '/serving/ {print $2}' "$WORK/hello.out")
    [ -n "$port" ] || return 1
    HELLO_URL="http://127.0.0.1:$port/"
    curl -sf "$url" -H "Authorization: Bearer $TOKEN" >/dev/null || return 1
    h1=$(wrk_run "$HELLO_URL")
    g1=$(BENCH_TOKEN=$TOKEN wrk_run "$url" "$HERE/wrk-auth.lua")
    g2=$(BENCH_TOKEN=$TOKEN wrk_run "$url" "$HERE/wrk-auth.lua")
    h2=$(wrk_run "$HELLO_URL")
    jput .http_floor.wrk "$(higher_rps "$h1" "$h2")"
    jput .gateway_read.wrk "$(higher_rps "$g1" "$g2")"
}

higher_rps() { # of two JSON results, the one with the higher rps
    printf '%s\n%s\n' "${1:-null}" "${2:-null}" | jq -s 'map(select(. != null)) | max_by(.rps)'
}

http_floor_fixed() { # the load generator's own floor at the latency-comparison rate
    jput .http_floor.fixed_rate "$("$TOOLS/bench_sagaload" get "$HELLO_URL" "$RATE_FIXED" "$T_FIXED" -c "$CONNS")"
    kill "$HELLO_PID" && wait "$HELLO_PID" 2>/dev/null || true
    HELLO_PID=
}

grpc_direct() {
    jput .gateway_read.grpc_direct_ghz "$(ghz_run -z "${T_LOAD}s")"
}

# The gateway and the direct call are measured twice in A-B-B-A order and each keeps its
# run with the lower p50: on a shared machine a burst elsewhere hits one run, not both.
latency_fixed() {
    local g1 g2 d1 d2
    metrics_snap "$WORK/m0"
    g1=$(gateway_fixed)
    metrics_snap "$WORK/m1"
    breakdown_read "$WORK/m0" "$WORK/m1"
    d1=$(ghz_run --rps "$RATE_FIXED" -z "${T_FIXED}s")
    d2=$(ghz_run --rps "$RATE_FIXED" -z "${T_FIXED}s")
    g2=$(gateway_fixed)
    jput .gateway_read.fixed_rate "$(lower_p50 "$g1" "$g2")"
    jput .gateway_read.grpc_direct_fixed_rate "$(lower_p50 "$d1" "$d2")"
}

gateway_fixed() {
    "$TOOLS/bench_sagaload" get "$GATEWAY_URL/api/v1/products/$PRODUCT" "$RATE_FIXED" "$T_FIXED" \
        -c "$CONNS" -H "Authorization: Bearer $TOKEN"
}

lower_p50() { # of two JSON results, the one with the lower latency_us.p50
    printf '%s\n%s\n' "${1:-null}" "${2:-null}" |
        jq -s 'map(select(. != null and .latency_us.p50 != null)) | min_by(.latency_us.p50)'
}

pending_orders() {
    psql -X -qtA "$ORDER_DATABASE_URL" -c "SELECT count(*) FROM orders WHERE status = 'PENDING'"
}

# Waits (up to 2 minutes) until no order is PENDING: the last step's backlog is done.
settle() {
    for _ in $(seq 240); do
        [ "$(pending_orders 2>/dev/null)" = 0 ] && return 0
        sleep 0.5
    done
    say "orders still PENDING after 2 minutes: $(pending_orders)"
}

orders_run() { # orders_run RATE SECONDS: one open-loop run as JSON
    "$TOOLS/bench_sagaload" orders "$GATEWAY_URL" "$1" "$2" -c "$CONNS" -d "$T_DRAIN" \
        -t "$WORK/tokens" -p "$WORK/products" -b "$KAFKA_BROKERS"
}

# Rising rates until confirmed/s stops following the offered rate (< 80%) or the
# latency explodes (p50 over 1 s, or unknown because orders did not confirm). On a
# shared machine one stall can fail a step: a step fails only if it fails twice.
saga_steps() {
    local rate out got p50 peak=0 i=0 try ok
    fresh_tokens
    for rate in "${STEPS[@]}"; do
        ok=0
        for try in 1 2; do
            settle
            out=$(orders_run "$rate" "$T_STEP") || return 1
            jput ".saga.steps[$i]" "$out"
            i=$((i + 1))
            got=$(jq .confirmed_rps <<<"$out")
            p50=$(jq '.e2e_ms.p50 // 1e9' <<<"$out")
            say "  offered $rate/s: confirmed $got/s, e2e p50 $p50 ms (try $try)"
            peak=$(awk -v a="$got" -v b="$peak" 'BEGIN {print (a > b) ? a : b}')
            awk -v g="$got" -v r="$rate" -v p="$p50" 'BEGIN {exit !(g >= 0.8 * r && p <= 1000)}' &&
                ok=1 && break
        done
        ((ok)) || break
    done
    jput .saga.peak_confirmed_rps "$peak"
}

saga_half() {
    local peak rate
    peak=$(jget .saga.peak_confirmed_rps)
    [ -n "$peak" ] || return 1
    rate=$(awk -v p="$peak" 'BEGIN {r = p / 2; printf "%.0f", r < 1 ? 1 : r}')
    settle
    fresh_tokens
    local since
    since=$(date +%s.%N)
    metrics_snap "$WORK/m2"
    jput .saga.half_peak "$(orders_run "$rate" "$T_HALF")"
    metrics_snap "$WORK/m3"
    breakdown_saga "$WORK/m2" "$WORK/m3" "$since"
}

# The pgbench schema: the services' own migrations in a schema of their database, so
# the same server, database, role and settings run the baseline, and nothing the
# scripts write ever reaches a relay.
pg_schema() { # pg_schema SVC URL
    local f
    {
        echo 'SET client_min_messages = warning; DROP SCHEMA IF EXISTS bench_pgbench CASCADE;'
        echo 'CREATE SCHEMA bench_pgbench; SET search_path = bench_pgbench, public;'
        for f in "$ROOT"/migrations/common/*.sql "$ROOT/migrations/$1"/*.sql; do echo "\\i $f"; done
        echo "\\i $HERE/pgbench/seed.sql"
    } | psql -X -q -v ON_ERROR_STOP=1 -v svc="$1" "$2" >/dev/null
}

saga_baseline() {
    local svc url clients pids=() tps min=
    for svc in order product user; do
        url=$(eval echo "\$${svc^^}_DATABASE_URL")
        pg_schema "$svc" "$url" || return 1
        jput ".settings.synchronous_commit.$svc" \
            "\"$(psql -X -qtA "$url" -c 'SHOW synchronous_commit')\""
    done
    for svc in order product user; do
        url=$(eval echo "\$${svc^^}_DATABASE_URL")
        clients=$PG_CLIENTS_OTHER
        [ "$svc" = order ] && clients=$PG_CLIENTS_ORDER
        jput ".settings.pgbench_clients.$svc" "$clients"
        PGOPTIONS='-c search_path=bench_pgbench,public' pgbench -n -M extended -c "$clients" \
            -j "$clients" -T "$T_PG" -f "$HERE/pgbench/$svc.sql" "$url" >"$WORK/pgbench-$svc.out" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    for svc in order product user; do
        tps=$(awk '/^tps = / {print $3; exit}' "$WORK/pgbench-$svc.out")
        [ -n "$tps" ] || { sed 's/^/  pgbench: /' "$WORK/pgbench-$svc.out" >&2; return 1; }
        jput ".saga.pgbench.orders_per_s.$svc" "$tps"
        [ -z "$min" ] || awk -v a="$tps" -v b="$min" 'BEGIN {exit !(a < b)}' && min=$tps
    done
    jput .saga.pgbench.orders_per_s.min "$min"
    for svc in order product user; do
        url=$(eval echo "\$${svc^^}_DATABASE_URL")
        psql -X -q "$url" -c 'DROP SCHEMA bench_pgbench CASCADE' >/dev/null 2>&1 || true
    done
}

# ------------------------------------------------------------- breakdowns ----

# metrics_snap FILE: every histogram _sum/_count line of the gateway and of each
# service's first instance, prefixed with the program's name.
metrics_snap() {
    local svc addrs
    {
        curl -s "$GATEWAY_URL/metrics" | sed 's/^/gateway /'
        for svc in order product user; do
            addrs=$(eval echo "\$${svc^^}_ADMIN_ADDRS")
            curl -s "http://${addrs%%,*}/metrics" | sed "s/^/$svc-svc /"
        done
    } | grep -E '^[a-z-]+ [a-z_]+_(sum|count)[{ ]' >"$1" || true
}

# mean_us BEFORE AFTER PROGRAM METRIC LABELS: the mean of the histogram's observations
# made between the two snapshots, in µs (null if none).
mean_us() {
    awk -v p="$3" -v s="$4_sum$5" -v c="$4_count$5" '
        $1 == p && $2 == s { sum[FILENAME == ARGV[1]] = $3 }
        $1 == p && $2 == c { cnt[FILENAME == ARGV[1]] = $3 }
        END { n = cnt[0] - cnt[1]; if (n > 0) printf "%.1f\n", (sum[0] - sum[1]) / n * 1e6; else print "null" }' "$1" "$2"
}

# Where a GET /products/{id} spends its time, from the programs' own histograms over
# the fixed-rate run (means, µs).
breakdown_read() {
    local a=$1 b=$2 route='{route="/api/v1/products/{id}"}' m='{method="/shop.product.v1.ProductService/GetProduct"}'
    jput .gateway_read.breakdown_mean_us "$(jq -n \
        --argjson http "$(mean_us "$a" "$b" gateway http_request_duration_seconds "$route")" \
        --argjson client "$(mean_us "$a" "$b" gateway rpc_client_duration_seconds "$m")" \
        --argjson server "$(mean_us "$a" "$b" product-svc rpc_server_duration_seconds "$m")" \
        --argjson query "$(mean_us "$a" "$b" product-svc db_query_duration_seconds '')" \
        '{gateway_request: $http, gateway_grpc_call: $client, product_svc_handler: $server,
          product_svc_sql_statement: $query}')"
}

# Where an order spends its time: the request path from the histograms (means, µs),
# and the saga's hops from the outbox rows of the run's orders (medians, ms). A hop
# "relayed" ends when the relay, holding the broker's acknowledgement, marks the row.
breakdown_saga() {
    local a=$1 b=$2 since=$3 route='{route="/api/v1/orders"}' svc url
    local create='{method="/shop.order.v1.OrderService/CreateOrder"}'
    local batch='{method="/shop.product.v1.ProductService/BatchGetProducts"}'
    jput .saga.breakdown.request_mean_us "$(jq -n \
        --argjson http "$(mean_us "$a" "$b" gateway http_request_duration_seconds "$route")" \
        --argjson client "$(mean_us "$a" "$b" gateway rpc_client_duration_seconds "$create")" \
        --argjson server "$(mean_us "$a" "$b" order-svc rpc_server_duration_seconds "$create")" \
        --argjson price "$(mean_us "$a" "$b" order-svc rpc_client_duration_seconds "$batch")" \
        '{gateway_request: $http, gateway_grpc_call: $client, order_svc_create_order: $server,
          order_svc_batch_get_products: $price}')"
    jput .saga.breakdown.event_handling_mean_us "$(jq -n \
        --argjson p "$(mean_us "$a" "$b" product-svc kafka_event_duration_seconds '{topic="order.events"}')" \
        --argjson ui "$(mean_us "$a" "$b" user-svc kafka_event_duration_seconds '{topic="inventory.events"}')" \
        --argjson oi "$(mean_us "$a" "$b" order-svc kafka_event_duration_seconds '{topic="inventory.events"}')" \
        --argjson op "$(mean_us "$a" "$b" order-svc kafka_event_duration_seconds '{topic="payment.events"}')" \
        '{"product-svc order.events": $p, "user-svc inventory.events": $ui,
          "order-svc inventory.events": $oi, "order-svc payment.events": $op}')"
    {
        psql -X -qtA -F ' ' "$ORDER_DATABASE_URL" -c \
            "SELECT id, 'created', extract(epoch FROM created_at), 0 FROM orders WHERE created_at >= to_timestamp($since)"
        for svc in order product user; do
            url=$(eval echo "\$${svc^^}_DATABASE_URL")
            psql -X -qtA -F ' ' "$url" -c "SELECT key, substr(ce_type, 16), extract(epoch FROM created_at),
                coalesce(extract(epoch FROM published_at), 0) FROM outbox WHERE created_at >= to_timestamp($since)"
        done
    } >"$WORK/hops"
    jput .saga.breakdown.hops_median_ms "$(jq -R -s '
        def med: sort | if length == 0 then null else .[length / 2 | floor] * 10000 | round / 10 end;
        [split("\n")[] | select(length > 0) | split(" ") | {k: .[0], t: .[1], c: (.[2] | tonumber), p: (.[3] | tonumber)}]
        | group_by(.k) | map(INDEX(.t)) | map(select(.created and .OrderCreated and .StockReserved
              and .PaymentCompleted and .OrderConfirmed and .OrderConfirmed.p > 0))
        | {orders: length,
           "1 order-svc: insert → OrderCreated relayed": (map(.OrderCreated.p - .created.c) | med),
           "2 → product-svc transaction starts": (map(.StockReserved.c - .OrderCreated.p) | med),
           "3 product-svc: reserve → StockReserved relayed": (map(.StockReserved.p - .StockReserved.c) | med),
           "4 → user-svc transaction starts": (map(.PaymentCompleted.c - .StockReserved.p) | med),
           "5 user-svc: debit → PaymentCompleted relayed": (map(.PaymentCompleted.p - .PaymentCompleted.c) | med),
           "6 → order-svc transaction starts": (map(.OrderConfirmed.c - .PaymentCompleted.p) | med),
           "7 order-svc: confirm → OrderConfirmed relayed": (map(.OrderConfirmed.p - .OrderConfirmed.c) | med),
           "insert → OrderConfirmed relayed": (map(.OrderConfirmed.p - .created.c) | med)}' "$WORK/hops")"
}

# ------------------------------------------------------------- footprint ----

kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || true; }

rss_now() { # rss_now JQPATH KEY: VmRSS or VmHWM of each program, MiB, and their sum
    local p v total=0 obj='{}'
    for p in "${PROGRAMS[@]}"; do
        v=$(kib "$(pid_of "$p")" "$2")
        v=${v:-0}
        total=$((total + v))
        obj=$(jq --arg p "$p" --argjson v "$v" '.[$p] = ($v / 1024 * 10 | round / 10)' <<<"$obj")
    done
    jput "$1" "$(jq --argjson t "$total" '.total = ($t / 1024 * 10 | round / 10)' <<<"$obj")"
}

# What the resident pages are, at the end of the load: most of each program's RSS is
# shared libraries (the same pages in all four), which a sum of RSS counts four times.
# together_mib counts them once: Σ private (anonymous) + the largest shared part.
smaps() {
    local p obj='{}' v
    for p in "${PROGRAMS[@]}"; do
        v=$(awk '/^(Rss|Pss|Anonymous|Shared_Clean|Shared_Dirty):/ {printf "\"%s\": %.1f,", $1, $2 / 1024}' \
            "/proc/$(pid_of "$p")/smaps_rollup" 2>/dev/null | sed 's/:"/"/g; s/,$//')
        obj=$(jq --arg p "$p" --argjson v "{${v}}" '.[$p] = $v' <<<"$obj")
    done
    jput .footprint.smaps_at_end_mib "$(jq '.together = ([.[] | .Anonymous] | add) +
        ([.[] | .Shared_Clean + .Shared_Dirty] | max) | .together |= (. * 10 | round / 10)' <<<"$obj")"
}

# Samples every program's VmRSS each second in the background, into $WORK/rss.
sampler_start() {
    local pids=() p
    for p in "${PROGRAMS[@]}"; do pids+=("$p=$(pid_of "$p")"); done
    (
        while :; do
            line=""
            for pp in "${pids[@]}"; do
                line+=" ${pp%%=*}=$(awk '$1 == "VmRSS:" {print $2}' "/proc/${pp#*=}/status" 2>/dev/null || echo 0)"
            done
            echo "$line" >>"$WORK/rss"
            sleep 1
        done
    ) &
    SAMPLER_PID=$!
}

# The largest sampled sum of the four, and each program's largest sample, in MiB.
sampler_stop() {
    kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
    jput .footprint.under_load_mib "$(awk '
        { t = 0; for (i = 1; i <= NF; i++) { split($i, kv, "="); t += kv[2];
              if (kv[2] > m[kv[1]]) m[kv[1]] = kv[2] }
          if (t > total) total = t }
        END { printf "{"; for (k in m) printf "\"%s\": %.1f, ", k, m[k] / 1024;
              printf "\"total\": %.1f}\n", total / 1024 }' "$WORK/rss")"
}

# Time from exec to the first 200 on /readyz, dependencies up: the stack's instance is
# stopped, the same binary started by bench_sagaload with the same environment, timed,
# stopped; then the stack starts its own again. Median of STARTUP_RUNS.
startup() {
    local p pid bin addr url runs out i
    for p in "${PROGRAMS[@]}"; do
        pid=$(pid_of "$p")
        bin=$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1)
        cp "/proc/$pid/environ" "$WORK/$p.env"
        addr=$(tr '\0' '\n' <"$WORK/$p.env" | sed -n 's/^\(ADMIN_ADDR\|GATEWAY_ADDR\)=//p' | head -n1)
        url="http://$addr/readyz"
        kill -TERM "$pid"
        for _ in $(seq 300); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        runs=()
        for ((i = 0; i < STARTUP_RUNS; i++)); do
            out=$("$TOOLS/bench_sagaload" startup "$url" "$WORK/$p.env" "$STACK_DATA/log/$p.log" "$bin")
            runs+=("$(jq '.startup_ms' <<<"$out")")
        done
        "$STACK" start "$p" >/dev/null 2>&1 || say "$p did not come back"
        jput ".footprint.startup_ms.\"$p\"" "$(printf '%s\n' "${runs[@]}" | jq -s \
            '{runs: ., median: (map(select(. != null)) | sort | if length == 0 then null else .[length / 2 | floor] end)}')"
    done
}

# ---------------------------------------------------------------- report ----

machine() {
    jput .machine "$(jq -n --arg nproc "$(nproc)" --arg model \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" --arg kernel "$(uname -r)" \
        --arg mem "$(awk '/^MemTotal/ {print $2}' /proc/meminfo)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '{nproc: ($nproc | tonumber), model: $model, kernel: $kernel,
          memory_mib: (($mem | tonumber) / 1024 | floor), loadavg_at_start: $load}')"
    local libs=() l
    for l in libmicrohttpd12 libgrpc29 librdkafka1 libpq5 libprotobuf-c1 libjansson4 libjwt0 \
        libhiredis0.14 libargon2-1 postgresql-15 redis-server wrk; do
        libs+=(--arg "$l" "$(dpkg-query -W -f='${Version}' "$l" 2>/dev/null || echo unknown)")
    done
    jput .versions "$(jq -n "${libs[@]}" --arg gcc "$(gcc --version | head -n1)" \
        --arg postgres "$(psql -X -qtA "$ORDER_DATABASE_URL" -c 'SHOW server_version')" \
        --arg kafka "$(ls "${SHOP_CACHE:-$HOME/.cache/shop-fleet}" 2>/dev/null | sed -n 's/^kafka-//p' | head -n1)" \
        --arg ghz "$([ -n "$GHZ" ] && /usr/local/go/bin/go version -m "$GHZ" 2>/dev/null | awk '$1 == "mod" {print $3}')" \
        --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo -dirty)" \
        '$ARGS.named')"
    jput .settings.quick "$([ "$QUICK" = 1 ] && echo true || echo false)"
    jput .settings.connections "$CONNS"
    jput .settings.wrk_threads "$WRK_THREADS"
    jput .settings.http_threads "$HTTP_THREADS"
    jput .settings.scale 1
    jput .settings.programs_from "\"$PROGRAMS_FROM\""
    jput .settings.seconds "$(jq -n --argjson a "$T_LOAD" --argjson b "$T_FIXED" --argjson c "$T_STEP" \
        --argjson d "$T_HALF" --argjson e "$T_PG" \
        '{saturation: $a, fixed_rate: $b, saga_step: $c, saga_half_peak: $d, pgbench: $e}')"
    jput .settings.saga_steps_offered "$(printf '%s\n' "${STEPS[@]}" | jq -s .)"
    jput .settings.fixed_rate_rps "$RATE_FIXED"
    jput .settings.gateway_env "$(env | sed -n 's/^GATEWAY_ENV_//p' | jq -R 'split("=") | {(.[0]): .[1]}' | jq -s add)"
}

# Ratios and DESIGN.md §8 targets from the figures.
targets() {
    jq '
    def t(v; target; unit; cmp): {value: v, target: target, unit: unit,
        met: (if v == null then false elif cmp == "ge" then v >= target
              elif cmp == "le" then v <= target else v < target end)};
    def r(a; b): if a == null or b == null or b == 0 then null else (a / b * 1000 | round / 1000) end;
    def d(a; b): if a == null or b == null then null else ((a - b) * 10 | round / 10) end;
    .ratios = {
      gateway_read_vs_http_floor: r(.gateway_read.wrk.rps; .http_floor.wrk.rps),
      grpc_direct_vs_http_floor: r(.gateway_read.grpc_direct_ghz.rps; .http_floor.wrk.rps),
      saga_vs_pgbench: r(.saga.peak_confirmed_rps; .saga.pgbench.orders_per_s.min)}
    | .gateway_read.added_latency_us = {
      p50: d(.gateway_read.fixed_rate.latency_us.p50; .gateway_read.grpc_direct_fixed_rate.latency_us.p50),
      p99: d(.gateway_read.fixed_rate.latency_us.p99; .gateway_read.grpc_direct_fixed_rate.latency_us.p99)}
    | .targets = ({
      gateway_read_throughput_ratio: t(.ratios.gateway_read_vs_http_floor; 0.25; "ratio"; "ge"),
      gateway_added_p50_us: t(.gateway_read.added_latency_us.p50; 150; "us"; "le"),
      saga_throughput_ratio: t(.ratios.saga_vs_pgbench; 0.5; "ratio"; "ge"),
      saga_p50_ms: t(.saga.half_peak.e2e_ms.p50; 10; "ms"; "le"),
      saga_p99_ms: t(.saga.half_peak.e2e_ms.p99; 50; "ms"; "le"),
      footprint_total_mib: t(.footprint.under_load_mib.total; 100; "MiB"; "le")}
      + ([.footprint.startup_ms // {} | to_entries[]
          | {key: ("startup_ms_" + (.key | gsub("-"; "_"))), value: t(.value.median; 200; "ms"; "lt")}]
         | from_entries))' "$R" >"$R.tmp" && mv "$R.tmp" "$R"
}

table() {
    jq -r '
    def n(x): if x == null then "n/a" elif (x | type) != "number" then (x | tostring)
        elif x >= 1000 or x <= -1000 then (x | round | tostring)
        elif x >= 10 or x <= -10 then ((x * 10 | round) / 10 | tostring)
        else ((x * 100 | round) / 100 | tostring) end;
    "figure\tvalue\tbaseline\tratio",
    "HTTP floor (hello), req/s\t\(n(.http_floor.wrk.rps))\t-\t-",
    "gateway GET /products/{id}, req/s\t\(n(.gateway_read.wrk.rps))\t\(n(.http_floor.wrk.rps)) hello\t\(n(.ratios.gateway_read_vs_http_floor))",
    "gRPC GetProduct direct (ghz), req/s\t\(n(.gateway_read.grpc_direct_ghz.rps))\t\(n(.http_floor.wrk.rps)) hello\t\(n(.ratios.grpc_direct_vs_http_floor))",
    "at \(.settings.fixed_rate_rps) req/s: gateway p50 / p99, us\t\(n(.gateway_read.fixed_rate.latency_us.p50)) / \(n(.gateway_read.fixed_rate.latency_us.p99))\t\(n(.gateway_read.grpc_direct_fixed_rate.latency_us.p50)) / \(n(.gateway_read.grpc_direct_fixed_rate.latency_us.p99)) gRPC\t-",
    "at \(.settings.fixed_rate_rps) req/s: hello p50 / p99, us\t\(n(.http_floor.fixed_rate.latency_us.p50)) / \(n(.http_floor.fixed_rate.latency_us.p99))\t-\t-",
    "gateway added p50 / p99, us\t\(n(.gateway_read.added_latency_us.p50)) / \(n(.gateway_read.added_latency_us.p99))\t-\t-",
    "saga peak, confirmed orders/s\t\(n(.saga.peak_confirmed_rps))\t\(n(.saga.pgbench.orders_per_s.min)) pgbench\t\(n(.ratios.saga_vs_pgbench))",
    "saga at \(n(.saga.half_peak.offered_rps))/s: e2e p50 / p99, ms\t\(n(.saga.half_peak.e2e_ms.p50)) / \(n(.saga.half_peak.e2e_ms.p99))\t-\t-",
    "RSS MiB at rest / under load / peak\t\(n(.footprint.at_rest_mib.total)) / \(n(.footprint.under_load_mib.total)) / \(n(.footprint.peak_mib.total))\t-\t-",
    (.footprint.startup_ms // {} | to_entries[] | "start-up to /readyz, \(.key), ms\t\(n(.value.median))\t-\t-"),
    "",
    "target (DESIGN.md section 8)\tvalue\ttarget\tmet",
    (.targets | to_entries[] | "\(.key)\t\(n(.value.value)) \(.value.unit)\t\(n(.value.target))\t\(if .value.met then "met" else "NOT MET" end)")
    ' "$R" | align
}

# Tab-separated lines as aligned columns (blank lines kept).
align() {
    awk -F'\t' '{ line[NR] = $0; for (i = 1; i <= NF; i++) if (length($i) > w[i]) w[i] = length($i) }
        END { for (n = 1; n <= NR; n++) { k = split(line[n], f, "\t"); out = "";
              for (i = 1; i <= k; i++) out = out sprintf(i < k ? "%-" w[i] + 2 "s" : "%s", f[i]);
              print out } }'
}

# ------------------------------------------------------------------- main ----

main() {
    local t0
    t0=$(date +%s)
    tools
    stack_up
    HTTP_THREADS=$(tr '\0' '\n' <"/proc/$(pid_of gateway)/environ" | sed -n 's/^HTTP_THREADS=//p')
    HTTP_THREADS=${HTTP_THREADS:-4} # the gateway's default (gateway/README.md)
    seed
    USER_ID=$(api GET /users/me "$TOKEN" | jq -r '.user.id')
    rss_now .footprint.at_rest_mib VmRSS

    sampler_start
    phase saturation saturation
    phase grpc_direct grpc_direct
    # The latency comparison runs at a quarter of the gateway's saturated throughput.
    RATE_FIXED=$(jget .gateway_read.wrk.rps | xargs -r printf '%.0f')
    RATE_FIXED=$(((${RATE_FIXED:-400} / 4 < 50 ? 50 : ${RATE_FIXED:-400} / 4) / 10 * 10))
    phase http_floor_fixed_rate http_floor_fixed
    phase latency_fixed_rate latency_fixed
    phase saga_steps saga_steps
    phase saga_half_peak saga_half
    sampler_stop
    rss_now .footprint.peak_mib VmHWM
    smaps
    phase saga_baseline saga_baseline
    phase startup startup

    machine
    jput .settings.phase_seconds.total "$(($(date +%s) - t0))"
    targets
    mkdir -p "$(dirname "$OUT")"
    jq . "$R" >"$OUT"
    echo
    table
    echo
    say "results: $OUT"
}

main "$@"
