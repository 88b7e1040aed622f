# Traces (issue 19): spans of all four programs exported over OTLP to the test
# stack's Jaeger (OTEL_EXPORTER_OTLP_ENDPOINT, TRACE_QUERY_URL from stack.sh env) and
# read back through its query API; the exporter's own unit tests are test_otel
# (tests/cmake/base.cmake).
add_test(NAME test_gateway_trace
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/gateway/test_gateway_trace.py
                 -- ${FLEET_PROGRAM_FILES})
set_tests_properties(test_gateway_trace PROPERTIES LABELS "e2e;gateway;trace" TIMEOUT 600)
