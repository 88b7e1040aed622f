# Tests of the common/ RPC layer (issue 3, items 1 and 2): the test service
# shop.test.v1.EchoService (tests/proto) served in-process, called by Debian's
# python3-grpcio (test_rpc_server) and by our own C client (test_rpc_client).
# Both run with CK_NOFORK: gRPC does not survive fork() once started.
shop_protobuf_c(test_proto "${CMAKE_CURRENT_SOURCE_DIR}/proto"
                "${CMAKE_CURRENT_SOURCE_DIR}/proto/shop/test/v1/echo_service.proto")

add_library(rpc_echo STATIC integration/common/rpc_echo.c)
target_link_libraries(rpc_echo PUBLIC common test_proto PkgConfig::CHECK)
target_include_directories(rpc_echo PUBLIC "${CMAKE_CURRENT_SOURCE_DIR}/integration/common")
target_compile_definitions(rpc_echo PRIVATE
    RPC_CLIENT_PY="${CMAKE_CURRENT_SOURCE_DIR}/integration/common/rpc_client.py")

shop_test(test_rpc_server
    SOURCES integration/common/test_rpc_server.c
    LIBS rpc_echo
    LABELS "integration;common")

shop_test(test_rpc_client
    SOURCES integration/common/test_rpc_client.c
    LIBS rpc_echo
    LABELS "integration;common")
target_include_directories(test_rpc_client PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/unit/common")

# Mutual TLS and the x-user-* gate (issue 20): certificates made by deploy/pki.sh in a
# temporary directory; the C channel and python3-grpcio as clients.
shop_test(test_rpc_tls
    SOURCES integration/common/test_rpc_tls.c
    LIBS rpc_echo
    LABELS "integration;common")
target_compile_definitions(test_rpc_tls PRIVATE PKI_SH="${CMAKE_SOURCE_DIR}/deploy/pki.sh")

# The operator's gRPC tooling (issue 19): grpcurl (built once from the Go module proxy
# into ~/.cache/shop-fleet/tools) with the build's descriptor set proto/shop.protoset
# against the real product-svc: list, describe, Health/Check, JSON calls, and the
# google.rpc.BadRequest of grpc-status-details-bin decoded (test_grpcurl.py).
add_test(NAME test_grpcurl
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/tools/test_grpcurl.py
                 $<TARGET_FILE:product-svc> "${SHOP_PROTOSET}")
set_tests_properties(test_grpcurl PROPERTIES LABELS "integration;common" TIMEOUT 900)
