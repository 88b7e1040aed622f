# Tests of common/'s page tokens (page_token.h): round trips, tamper evidence, keys,
# bounds checked after a genuine MAC (the test MACs tokens itself with OpenSSL).
shop_test(test_page_token SOURCES unit/common/test_page_token.c LIBS common PkgConfig::CRYPTO
          LABELS "unit;common")
