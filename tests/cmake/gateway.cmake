# Tests of the gateway (issue 7). Unit tests link gateway_core directly; the
# integration tests talk to the test stack's Redis (REDIS_URL); the end-to-end
# tests (tests/e2e/gateway) start the gateway and the three services and use a
# real HTTP client.
shop_protobuf_c(gateway_jsontest_proto "${CMAKE_CURRENT_SOURCE_DIR}/unit/gateway/proto"
    "${CMAKE_CURRENT_SOURCE_DIR}/unit/gateway/proto/shop/jsontest/v1/jsontest.proto")
shop_test(test_json_pb SOURCES unit/gateway/test_json_pb.c LIBS gateway_core gateway_jsontest_proto
          LABELS "unit;gateway")
target_compile_definitions(test_json_pb PRIVATE
    JSON_PB_CASES="${CMAKE_CURRENT_SOURCE_DIR}/unit/gateway/json_pb")
shop_test(test_problem SOURCES unit/gateway/test_problem.c LIBS gateway_core
          LABELS "unit;gateway")
shop_test(test_auth_jwt SOURCES unit/gateway/test_auth_jwt.c LIBS gateway_core
          LABELS "unit;gateway")
shop_test(test_auth SOURCES unit/gateway/test_auth.c LIBS gateway_core
          LABELS "unit;gateway")
shop_test(test_http_metrics SOURCES unit/gateway/test_http_metrics.c LIBS gateway_core
          LABELS "unit;gateway")
shop_test(test_session SOURCES integration/gateway/test_session.c LIBS gateway_core
          LABELS "integration;gateway")
shop_test(test_router SOURCES unit/gateway/test_router.c LIBS gateway_core
          LABELS "unit;gateway")
shop_test(test_forwarded SOURCES unit/gateway/test_forwarded.c LIBS gateway_core
          LABELS "unit;gateway")

# End to end: the real gateway, user-, product- and order-svc on the test stack,
# through Python's http.client (tests/e2e/gateway/gateway_stack.py starts them).
add_test(NAME test_gateway_e2e
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/gateway/test_gateway_e2e.py
                 ${CMAKE_SOURCE_DIR}/gateway/src -- ${FLEET_PROGRAM_FILES})
set_tests_properties(test_gateway_e2e PROPERTIES LABELS "e2e;gateway" TIMEOUT 600)
# Hostile input (issue 14): framing, NUL bytes, limits, metric labels, lockout
# spellings, trusted proxies, RateLimit headers, malformed connection URLs.
add_test(NAME test_gateway_hostile
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/gateway/test_gateway_hostile.py
                 -- ${FLEET_PROGRAM_FILES})
set_tests_properties(test_gateway_hostile PROPERTIES LABELS "e2e;gateway" TIMEOUT 600)
# HTTP conventions (issue 16): ETag / If-None-Match / If-Match, Cache-Control, HEAD,
# CORS (CORS_ALLOWED_ORIGINS) and preflights.
add_test(NAME test_gateway_http
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/gateway/test_gateway_http.py
                 -- ${FLEET_PROGRAM_FILES})
set_tests_properties(test_gateway_http PROPERTIES LABELS "e2e;gateway" TIMEOUT 600)

# schemathesis (PyPI, pinned in the script; installed into the build tree on first
# use) against /api/v1/openapi.json with an admin token: no 5xx, every response as
# documented.
add_test(NAME test_gateway_schemathesis
         COMMAND /usr/bin/python3
                 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/gateway/test_gateway_schemathesis.py
                 ${CMAKE_BINARY_DIR}/schemathesis-venv -- ${FLEET_PROGRAM_FILES})
set_tests_properties(test_gateway_schemathesis PROPERTIES LABELS "e2e;gateway" TIMEOUT 900)
