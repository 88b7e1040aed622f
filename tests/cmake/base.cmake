# Tests of the common/ runtime's base modules: arena, err, log, clock, uuid, config,
# metrics, trace (unit) and the admin HTTP server (integration: a real server on 127.0.0.1).
shop_test(test_arena SOURCES unit/common/test_arena.c LIBS common LABELS "unit;common")
shop_test(test_err SOURCES unit/common/test_err.c LIBS common LABELS "unit;common")
shop_test(test_log SOURCES unit/common/test_log.c LIBS common PkgConfig::JANSSON
          LABELS "unit;common")
shop_test(test_clock SOURCES unit/common/test_clock.c LIBS common LABELS "unit;common")
shop_test(test_uuid SOURCES unit/common/test_uuid.c LIBS common LABELS "unit;common")
shop_test(test_config SOURCES unit/common/test_config.c LIBS common PkgConfig::JANSSON
          LABELS "unit;common")
shop_test(test_metrics SOURCES unit/common/test_metrics.c LIBS common LABELS "unit;common")
target_compile_definitions(test_metrics PRIVATE SHOP_TEST_VERSION="${PROJECT_VERSION}")
shop_test(test_admin_http SOURCES integration/common/test_admin_http.c LIBS common
          PkgConfig::JANSSON LABELS "integration;common")
shop_test(test_trace SOURCES unit/common/test_trace.c LIBS common LABELS "unit;common")
shop_test(test_otel SOURCES unit/common/test_otel.c LIBS common LABELS "unit;common")
