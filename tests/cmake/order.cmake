# Tests of order-svc (issue 6) and the fleet end to end, against the real binaries and
# the test stack (ORDER_/PRODUCT_/USER_DATABASE_URL, KAFKA_BROKERS):
# - test_order_rpc: every RPC of shop.order.v1.OrderService through Debian's
#   python3-grpcio (a real gRPC client; messages built with python3-protobuf from a
#   descriptor set the build
#   writes, proto/shop.protoset), with real product-svc and user-svc.
# - test_order_saga: order-svc's saga steps — product-svc real, user-svc's events
#   produced by the test (including late, repeated and malformed ones) — with two
#   order-svc instances in one consumer group sweeping one database.
# - test_order_migrate: migrations/order applied to a database holding what earlier
#   versions wrote (0002: duplicate timeline rows), in a schema of its own.
# - test_e2e_saga: the three services end to end, docs/architecture.md §4's invariants checked in
#   the three databases, up to 200 concurrent orders against scarce stock and money.
add_test(NAME test_order_rpc
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/order/test_order_rpc.py
                 $<TARGET_FILE:order-svc> $<TARGET_FILE:product-svc> $<TARGET_FILE:user-svc>
                 "${SHOP_PROTOSET}")
set_tests_properties(test_order_rpc PROPERTIES LABELS "integration;order" TIMEOUT 600)

add_library(fleet_test_support STATIC e2e/fleet_support.c)
target_include_directories(fleet_test_support PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/e2e)
target_link_libraries(fleet_test_support PUBLIC test_support)

shop_test(test_order_saga
    SOURCES integration/order/test_order_saga.c
    LIBS fleet_test_support
    LABELS "integration;order")
target_compile_definitions(test_order_saga PRIVATE ORDER_SVC="$<TARGET_FILE:order-svc>"
                                                   PRODUCT_SVC="$<TARGET_FILE:product-svc>")
add_dependencies(test_order_saga order-svc product-svc)

shop_test(test_e2e_saga
    SOURCES e2e/test_e2e_saga.c
    LIBS fleet_test_support
    LABELS "e2e")
target_compile_definitions(test_e2e_saga PRIVATE ORDER_SVC="$<TARGET_FILE:order-svc>"
                                                 PRODUCT_SVC="$<TARGET_FILE:product-svc>"
                                                 USER_SVC="$<TARGET_FILE:user-svc>")
add_dependencies(test_e2e_saga order-svc product-svc user-svc)

shop_test(test_order_migrate
    SOURCES integration/order/test_order_migrate.c
    LIBS common test_db_support
    LABELS "integration;order")
shop_embed_migrations(test_order_migrate order "${CMAKE_SOURCE_DIR}/migrations/order")

# Unit tests of order-svc's logic (order_core, no infrastructure).
shop_test(test_order_status SOURCES unit/order/test_order_status.c LIBS order_core
          LABELS "unit;order")
