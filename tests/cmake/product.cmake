# Tests of product-svc (issue 4), against the real binary and the test stack
# (PRODUCT_DATABASE_URL, KAFKA_BROKERS):
# - test_product_rpc: every RPC of shop.product.v1.ProductService through Debian's
#   python3-grpcio (a real gRPC client), plus Health/Check and the admin HTTP port.
# - test_product_saga: OrderCreated / OrderConfirmed / OrderCancelled produced to
#   order.events, inventory.events and the database observed, with two product-svc
#   instances in one consumer group.
add_test(NAME test_product_rpc
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/product/test_product_rpc.py
                 $<TARGET_FILE:product-svc>)
set_tests_properties(test_product_rpc PROPERTIES LABELS "integration;product" TIMEOUT 600)

add_library(product_test_support STATIC integration/product/product_test_support.c)
target_link_libraries(product_test_support PUBLIC test_support)

shop_test(test_product_saga
    SOURCES integration/product/test_product_saga.c
    LIBS product_test_support
    LABELS "integration;product")
target_compile_definitions(test_product_saga PRIVATE PRODUCT_SVC="$<TARGET_FILE:product-svc>")
add_dependencies(test_product_saga product-svc)

# Unit tests of product-svc's logic (product_core, no infrastructure).
shop_test(test_product_fields SOURCES unit/product/test_product_fields.c LIBS product_core
          LABELS "unit;product")
