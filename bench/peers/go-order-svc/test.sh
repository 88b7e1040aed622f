#!/usr/bin/env bash
# Builds the Go order-svc peer and runs the project's order-svc tests against it, on
# the test stack whose environment is exported (deploy/local/stack.sh env) and the
# C build in $BUILD_DIR (default build/: product-svc, user-svc, the test programs):
#   test_order_rpc.py  with the peer as its ORDER_SVC argument
#   test_order_saga    with ORDER_SVC_PROGRAM=<peer>
#   test_e2e_saga      with ORDER_SVC_PROGRAM=<peer>
# and first the peer's own `go test` (security_test.go: gRPC mTLS, the x-user-* gate,
# Kafka's TLS dial, the settings; certificates from deploy/pki.sh, no stack needed).
# Exits non-zero when any of them fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
build="${BUILD_DIR:-$repo/build}"
: "${ORDER_DATABASE_URL:?export the test stack env first: set -a; . <(deploy/local/stack.sh env); set +a}"
peer="$("$here/build.sh" | tail -1)"
ninja -C "$build" -j "${JOBS:-2}" product-svc user-svc test_order_saga test_e2e_saga shop_protoset >/dev/null
status=0
run() {
    local name="$1"
    shift
    echo "== $name against $peer"
    if "$@"; then echo "== $name: PASS"; else echo "== $name: FAIL"; status=1; fi
}
run "go test" env GOTOOLCHAIN=local PATH="/usr/local/go/bin:$PATH" sh -c "cd '$here' && go test -count=1 ."
run test_order_rpc /usr/bin/python3 "$repo/tests/integration/order/test_order_rpc.py" "$peer" \
    "$build/services/product/product-svc" "$build/services/user/user-svc" \
    "$build/proto/shop.protoset"
run test_order_saga env ORDER_SVC_PROGRAM="$peer" "$build/tests/test_order_saga"
run test_e2e_saga env ORDER_SVC_PROGRAM="$peer" "$build/tests/test_e2e_saga"
exit $status
