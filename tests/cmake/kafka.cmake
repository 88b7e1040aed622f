# Zero trust on Kafka (docs/trust.md) against the test stack's broker: TLS and a login
# required, each service's principal allowed what deploy/fleet.conf says and nothing
# else (tests/integration/test_kafka_acl.py; kcat and the broker's own tools).
add_test(NAME test_kafka_acl
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_kafka_acl.py)
set_tests_properties(test_kafka_acl PROPERTIES LABELS "integration;kafka" TIMEOUT 600)
