# Fault injection (tests/chaos, issue 8). test_chaos_checks: the invariant checks
# against hand-made snapshots (no stack). test_chaos_quick: the short chaos run, 200
# orders through the gateway with one SIGKILL + restart of each fault kind, on its own
# stack (STACK_PROFILE=chaos: its own ports and .data-chaos/, every service twice),
# running the programs of this build. RUN_SERIAL: it starts a whole fleet of its own.
add_test(NAME test_chaos_checks
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/chaos/test_chaos_checks.py)
set_tests_properties(test_chaos_checks PROPERTIES LABELS "unit;chaos" TIMEOUT 60)

add_test(NAME test_chaos_quick COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/chaos/run.sh)
set_tests_properties(test_chaos_quick PROPERTIES
    LABELS "chaos;e2e"
    TIMEOUT 1500
    RUN_SERIAL TRUE
    ENVIRONMENT "CHAOS_QUICK=1;BIN_DIR=${CMAKE_BINARY_DIR}")
