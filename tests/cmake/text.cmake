# Tests of common/'s text helpers (text.h): UTF-8 checks, base64url page-token
# encoding, ASCII lower-casing and the update_mask lookup.
shop_test(test_text SOURCES unit/common/test_text.c LIBS common LABELS "unit;common")
