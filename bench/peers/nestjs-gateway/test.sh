#!/usr/bin/env bash
# The project's black-box gateway e2e tests (tests/e2e/gateway/test_gateway_e2e.py,
# and test_gateway_http.py's HTTP semantics) against the NestJS peer: builds it, then runs the suite with GATEWAY_PROGRAM set
# to ./run and the real user-, product- and order-svc on the test stack.
#
#   bench/peers/nestjs-gateway/test.sh [BUILD_DIR]   (default: build-release, else build)
#
# The test stack must be up (deploy/local/stack.sh up); its env is read from
# deploy/local/stack.sh env when REDIS_URL is not set already. Only the tests of
# what the peer serves run: PEER_TESTS below; bench/peers/README.md lists the
# excluded ones and why.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
build="${1:-}"
if [[ -z $build ]]; then
    build="$root/build-release"
    [[ -x $build/gateway/gateway ]] || build="$root/build"
fi
build="$(cd "$build" && pwd)"

PEER_TESTS=(
    Auth.test_customer_on_admin_routes_is_403_and_x_user_headers_are_ignored
    Auth.test_es256_tokens_and_algorithm_confusion
    Auth.test_every_protected_route_needs_a_token
    Auth.test_forged_tokens_are_401
    Auth.test_login_is_rate_limited_per_ip
    Auth.test_logout_kills_the_access_token_at_once
    Auth.test_refresh_rotates_and_reuse_revokes_the_session
    Auth.test_register_login_and_me
    Bodies.test_chunked_body_over_the_limit_is_413
    Bodies.test_list_parameters_are_validated
    Bodies.test_malformed_unknown_wrong_type_and_too_large_bodies
    Bodies.test_request_ids
    Document.test_problem_types_are_distinct_per_class_and_documented
    NoOracleNoDatabaseText.test_forged_and_tampered_page_tokens_are_400_without_database_text
    NoOracleNoDatabaseText.test_orders_of_others_unknown_and_malformed_ids_answer_the_same_404
    NoOracleNoDatabaseText.test_products_unknown_and_malformed_ids_answer_the_same_404
    Orders.test_full_purchase_flow
    Orders.test_orders_of_others_are_404_and_bad_lines_are_field_errors
    Products.test_catalog_admin_and_reads
    Products.test_pagination
    Users.test_deposit_is_idempotent_and_needs_a_key
    Users.test_profile_preferences_wallet_and_sql_metacharacters
)
# Not run against the peer (bench/peers/README.md): they need GET /metrics, which
# the peer does not serve.
#   Document.test_metrics_and_readiness
#   Document.test_routes_and_openapi_document_agree

# tests/e2e/gateway/test_gateway_http.py: caching, conditional writes and HEAD. Not
# run: the Cors class (the peer has no CORS; bench/peers/README.md).
PEER_HTTP_TESTS=(CorsOff ETags Head IfMatch)

"$here/build.sh"
if [[ -z ${REDIS_URL:-} ]]; then
    set -a
    # shellcheck disable=SC1090
    . <("$root/deploy/local/stack.sh" env)
    set +a
fi
export GATEWAY_PROGRAM="$here/run"
programs=("$build/gateway/gateway" "$build/services/order/order-svc"
          "$build/services/product/product-svc" "$build/services/user/user-svc")
status=0
/usr/bin/python3 "$root/tests/e2e/gateway/test_gateway_e2e.py" "$root/gateway/src" -- \
    "${programs[@]}" "${PEER_TESTS[@]}" || status=1
/usr/bin/python3 "$root/tests/e2e/gateway/test_gateway_http.py" -- \
    "${programs[@]}" "${PEER_HTTP_TESTS[@]}" || status=1
exit $status
