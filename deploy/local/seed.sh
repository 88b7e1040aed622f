#!/usr/bin/env bash
# Demo data for `make run`, through the real front door: an admin made by user-svc's
# create-admin (random password, printed once), a catalog of 20 products with stock
# created by that admin over the REST API, and a demo customer with wallet funds.
# Seeds once per data directory ($DATA/seed.done); every run prints the welcome.
#
#   seed.sh            seed if not done yet, then print the URL, the logins and curls
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

GW="http://127.0.0.1:$GATEWAY_PORT/api/v1"
ADMIN_EMAIL=admin@shop.local
DEMO_EMAIL=demo@shop.local
DEMO_PASSWORD='demo customer 1' # a demo login on a local stack, printed on every run
DONE="$DATA/seed.done"

# The catalog: sku, name, price in cents, units in stock.
CATALOG=(
    "MUG-01|Enamel mug|1200|40" "MUG-02|Stoneware mug|1800|25" "TEE-01|Cotton tee, black|2200|60"
    "TEE-02|Cotton tee, white|2200|60" "HOOD-01|Hoodie|5400|20" "CAP-01|Cap|1900|35"
    "BAG-01|Canvas tote|1500|50" "BOT-01|Steel bottle|2600|30" "NOTE-01|Dot-grid notebook|900|80"
    "PEN-01|Fountain pen|3900|15" "STK-01|Sticker pack|400|200" "SOCK-01|Wool socks|1400|45"
    "LAMP-01|Desk lamp|7900|10" "KEY-01|Mechanical keyboard|12900|8" "MOUSE-01|Wireless mouse|4900|12"
    "CABLE-01|USB-C cable|1100|100" "PLANT-01|Succulent in pot|1300|25" "TEA-01|Green tea, 100 g|1000|40"
    "COF-01|Coffee beans, 250 g|1600|40" "BOOK-01|The C Programming Language|4500|5"
)

api() { # api METHOD PATH [JSON] [curl args...]: the body of a 2xx answer, else fail
    local method=$1 path=$2 body=${3:-} out code
    shift $(($# < 3 ? $# : 3))
    out=$(curl -sS -X "$method" "$GW$path" -H 'Content-Type: application/json' \
        ${body:+--data "$body"} -w '\n%{http_code}' "$@") || die "seed: $method $path: no answer"
    code=${out##*$'\n'}
    [[ "$code" == 2* ]] || die "seed: $method $path answered $code: ${out%$'\n'*}"
    printf '%s\n' "${out%$'\n'*}"
}

login() { # login EMAIL PASSWORD: an access token
    api POST /auth/login "$(jq -nc --arg e "$1" --arg p "$2" '{email: $e, password: $p}')" |
        jq -r .access_token
}

seed() {
    local password admin token item sku name price units id
    log "seed: creating the demo admin, catalog and customer"
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    printf '%s\n' "$password" | "$here/stack.sh" create-admin "$ADMIN_EMAIL" >/dev/null 2>&1 ||
        die "seed: user-svc create-admin failed"
    admin=$(login "$ADMIN_EMAIL" "$password")
    for item in "${CATALOG[@]}"; do
        IFS='|' read -r sku name price units <<<"$item"
        id=$(api POST /products "$(jq -nc --arg s "$sku" --arg n "$name" --argjson p "$price" \
            '{sku: $s, name: $n, price_cents: $p}')" -H "Authorization: Bearer $admin" | jq -r .id)
        api PUT "/products/$id/stock" "{\"available\":$units}" -H "Authorization: Bearer $admin" >/dev/null
    done
    api POST /auth/register "$(jq -nc --arg e "$DEMO_EMAIL" --arg p "$DEMO_PASSWORD" \
        '{email: $e, password: $p, display_name: "Demo Customer"}')" >/dev/null
    token=$(login "$DEMO_EMAIL" "$DEMO_PASSWORD")
    api POST /users/me/wallet/deposits '{"amount_cents":100000}' -H "Authorization: Bearer $token" \
        -H "Idempotency-Key: demo-seed-deposit" >/dev/null
    printf '%s\n' "$password" >"$DATA/secrets/demo-admin-password"
    chmod 600 "$DATA/secrets/demo-admin-password"
    touch "$DONE"
    cat <<EOF

  Demo admin:     $ADMIN_EMAIL   password: $password
                  (printed once; a copy is in $DATA/secrets/demo-admin-password)
EOF
}

welcome() {
    cat <<EOF

  shop fleet is running: $GW   (OpenAPI: $GW/openapi.json)
  Demo customer:  $DEMO_EMAIL   password: $DEMO_PASSWORD   (wallet: 1000.00 USD)
  Demo admin:     $ADMIN_EMAIL   (password printed at the first run)

  Try (needs jq):
    TOKEN=\$(curl -s -X POST $GW/auth/login -H 'Content-Type: application/json' \\
      -d '{"email":"$DEMO_EMAIL","password":"$DEMO_PASSWORD"}' | jq -r .access_token)
    curl -s '$GW/products?limit=5' | jq '.products[] | {id, name, price_cents}'
    curl -s -X POST $GW/orders -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
      -H "Idempotency-Key: \$(cat /proc/sys/kernel/random/uuid)" \\
      -d "{\"lines\":[{\"product_id\":\"\$(curl -s '$GW/products?limit=1' | jq -r '.products[0].id')\",\"quantity\":1}]}" | jq '{id, status}'

  Traces (Jaeger):      deploy/local/stack.sh traces recent    then: deploy/local/stack.sh traces show <trace id>
                        (raw JSON: curl http://127.0.0.1:$JAEGER_QUERY_PORT/api/traces/<trace id>;
                        every log line carries its trace_id)
  Metrics, alerts:      http://127.0.0.1:$PROMETHEUS_PORT/alerts   (Prometheus; raw: http://127.0.0.1:$GATEWAY_PORT/metrics)
  Logs: $LOGDIR   Ctrl-C stops everything.

EOF
}

curl -sf -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/healthz" ||
    die "seed: the gateway does not answer on port $GATEWAY_PORT"
[ -f "$DONE" ] || seed
welcome
