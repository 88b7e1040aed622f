# High availability (issue 21, docs/ha.md). test_ha: one stack of the HA topology
# (STACK_PROFILE=chaos HA=1: three Kafka nodes, PostgreSQL primaries with synchronous
# standbys under pg_auto_failover, Redis with a replica and three Sentinels) running
# this build's programs, then tests/ha/test_ha_{kafka,postgres,redis}.py against it:
# each kills or freezes a node under its clients and checks what they saw and that
# nothing acknowledged was lost. test_chaos_ha_quick: the short chaos run on the same
# topology with its fault kinds. RUN_SERIAL: each starts a whole stack of its own on
# the chaos profile's ports (the same as test_chaos_quick's).
add_test(NAME test_ha COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/ha/run.sh)
set_tests_properties(test_ha PROPERTIES
    LABELS "ha;e2e"
    TIMEOUT 1800
    RUN_SERIAL TRUE
    ENVIRONMENT "BIN_DIR=${CMAKE_BINARY_DIR}")

add_test(NAME test_chaos_ha_quick COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/chaos/run.sh)
set_tests_properties(test_chaos_ha_quick PROPERTIES
    LABELS "chaos;ha;e2e"
    TIMEOUT 1800
    RUN_SERIAL TRUE
    ENVIRONMENT "HA=1;CHAOS_QUICK=1;BIN_DIR=${CMAKE_BINARY_DIR}")
