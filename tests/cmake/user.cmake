# Tests of user-svc (issue 5), against the real binary and the test stack
# (USER_DATABASE_URL, KAFKA_BROKERS):
# - test_user_rpc: every RPC of shop.user.v1.UserService through Debian's
#   python3-grpcio (a real gRPC client; messages built with python3-protobuf from a
#   descriptor set the build
#   writes, proto/shop.protoset), the stored argon2id hashes, and the
#   create-admin command.
# - test_user_saga: StockReserved / OrderCancelled produced to inventory.events and
#   order.events, payment.events and the database observed, with two user-svc
#   instances in one consumer group.
add_test(NAME test_user_rpc
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/user/test_user_rpc.py
                 $<TARGET_FILE:user-svc> "${SHOP_PROTOSET}")
set_tests_properties(test_user_rpc PROPERTIES LABELS "integration;user" TIMEOUT 600)

add_library(user_test_support STATIC integration/user/user_test_support.c)
target_link_libraries(user_test_support PUBLIC test_support)

shop_test(test_user_saga
    SOURCES integration/user/test_user_saga.c
    LIBS user_test_support
    LABELS "integration;user")
target_compile_definitions(test_user_saga PRIVATE USER_SVC="$<TARGET_FILE:user-svc>")
add_dependencies(test_user_saga user-svc)

# Static consumer-group membership (KAFKA_GROUP_INSTANCE_ID) of any service, with
# user-svc's binary: a killed instance restarted under its id takes its partitions
# back and the other instance sees no rebalance.
shop_test(test_user_static_member
    SOURCES integration/user/test_user_static_member.c
    LIBS test_support
    LABELS "integration;user")
target_compile_definitions(test_user_static_member PRIVATE USER_SVC="$<TARGET_FILE:user-svc>")
add_dependencies(test_user_static_member user-svc)

# Unit tests of user-svc's logic (user_core, no infrastructure).
shop_test(test_user_password SOURCES unit/user/test_user_password.c LIBS user_core
          LABELS "unit;user")
