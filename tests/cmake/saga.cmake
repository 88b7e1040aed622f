# Tests of the Kafka, outbox and saga consumer modules: CloudEvents header encoding and
# the saga events' field rules (unit) and, against the stack's PostgreSQL and Kafka, the
# outbox relay (in process and as separate processes that the tests SIGKILL) and the
# saga consumer.
shop_test(test_kfk_ce SOURCES unit/common/test_kfk_ce.c LIBS common LABELS "unit;common")
shop_test(test_saga_check SOURCES unit/common/test_saga_check.c LIBS common LABELS "unit;common")

add_library(saga_test_support STATIC integration/common/saga_test_support.c)
target_link_libraries(saga_test_support PUBLIC common kafka_test_auth PkgConfig::CHECK)

# A relay in a process of its own, started and killed by test_outbox.
add_executable(outbox_relay_proc integration/common/outbox_relay_proc.c)
target_link_libraries(outbox_relay_proc PRIVATE common kafka_test_auth)

shop_test(test_outbox SOURCES integration/common/test_outbox.c
          LIBS saga_test_support LABELS "integration;common")
target_compile_definitions(test_outbox PRIVATE
                           OUTBOX_RELAY_PROC="$<TARGET_FILE:outbox_relay_proc>")
add_dependencies(test_outbox outbox_relay_proc)

shop_test(test_saga SOURCES integration/common/test_saga.c
          LIBS saga_test_support LABELS "integration;common")

shop_test(test_saga_batch SOURCES integration/common/test_saga_batch.c
          LIBS saga_test_support LABELS "integration;common")

shop_test(test_saga_oversize SOURCES integration/common/test_saga_oversize.c
          LIBS saga_test_support LABELS "integration;common")

shop_test(test_kfk_consumer_close SOURCES integration/common/test_kfk_consumer_close.c
          LIBS saga_test_support LABELS "integration;common")
