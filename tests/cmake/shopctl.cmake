# shopctl (tools/shopctl, docs/dlq.md) against the test stack's Kafka and a real
# product-svc: a dead letter's round trip (list, show, fix, replay once, replay as a
# duplicate) and the refusals (bad usage, unknown entries and topics, a truncated
# entry, --dry-run).
shop_test(test_shopctl_dlq
    SOURCES integration/tools/test_shopctl_dlq.c
    LIBS product_test_support PkgConfig::JANSSON
    LABELS "integration;tools")
target_compile_definitions(test_shopctl_dlq PRIVATE PRODUCT_SVC="$<TARGET_FILE:product-svc>"
                           SHOPCTL="$<TARGET_FILE:shopctl>")
add_dependencies(test_shopctl_dlq product-svc shopctl)
