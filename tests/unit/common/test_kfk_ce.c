/*
 * kfk_ce: the CloudEvents Kafka binding's header encoding — what kfk_ce_headers
 * writes, kfk_ce_parse reads back; missing and invalid headers are reported by name;
 * traceparent is optional and an invalid one is dropped, as W3C asks.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/kfk.h"

#define TEST_TIMEOUT_S 10

static const char *const ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
static const char *const TYPE = "shop.events.v1.OrderCreated";
static const char *const SOURCE = "/shop/order-svc";
static const char *const TIME = "2026-11-24T19:00:00.123456Z";
static const char *const TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static kfk_ce_t valid_ce(void)
{
    return (kfk_ce_t){.id = ID, .type = TYPE, .source = SOURCE, .time = TIME, .traceparent = TRACE};
}

/* The value of header `name` in h[0..n) as a string in `a`, or NULL. */
static const char *header(const kfk_header_t *h, int n, const char *name, arena_t *a)
{
    for (int i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0)
            return arena_strndup(a, h[i].value, h[i].len);
    return NULL;
}

START_TEST(test_headers_carry_every_attribute_of_the_binding)
{
    arena_t *a = arena_new(0);
    kfk_ce_t ce = valid_ce();
    kfk_header_t h[KFK_CE_HEADERS_MAX];
    err_t err = ERR_INIT;
    int n = kfk_ce_headers(&ce, h, &err);
    ck_assert_int_eq(n, 7);
    ck_assert_str_eq(header(h, n, "ce_id", a), ID);
    ck_assert_str_eq(header(h, n, "ce_type", a), TYPE);
    ck_assert_str_eq(header(h, n, "ce_source", a), SOURCE);
    ck_assert_str_eq(header(h, n, "ce_time", a), TIME);
    ck_assert_str_eq(header(h, n, "ce_specversion", a), "1.0");
    ck_assert_str_eq(header(h, n, "content-type", a), "application/protobuf");
    ck_assert_str_eq(header(h, n, "traceparent", a), TRACE);

    ce.traceparent = NULL;
    ck_assert_int_eq(kfk_ce_headers(&ce, h, &err), 6);
    ck_assert_ptr_null(header(h, 6, "traceparent", a));
    arena_free(a);
}
END_TEST

START_TEST(test_headers_round_trip_through_parse)
{
    arena_t *a = arena_new(0);
    kfk_ce_t ce = valid_ce(), back;
    kfk_header_t h[KFK_CE_HEADERS_MAX];
    err_t err = ERR_INIT;
    int n = kfk_ce_headers(&ce, h, &err);
    ck_assert_int_eq(kfk_ce_parse(h, (size_t)n, a, &back, &err), 0);
    ck_assert_str_eq(back.id, ID);
    ck_assert_str_eq(back.type, TYPE);
    ck_assert_str_eq(back.source, SOURCE);
    ck_assert_str_eq(back.time, TIME);
    ck_assert_str_eq(back.traceparent, TRACE);
    arena_free(a);
}
END_TEST

START_TEST(test_headers_refuse_missing_or_invalid_attributes)
{
    static const struct {
        int field; /* 0 id, 1 type, 2 source, 3 time */
        const char *value;
        const char *needle;
    } cases[] = {
        {0, NULL, "ce_id is missing"},          {0, "42", "ce_id is invalid"},
        {1, "", "ce_type is invalid"},          {1, "shop events", "ce_type is invalid"},
        {2, NULL, "ce_source is missing"},      {2, "/shop/\x01", "ce_source is invalid"},
        {3, "yesterday", "ce_time is invalid"}, {3, NULL, "ce_time is missing"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kfk_ce_t ce = valid_ce();
        const char **f[] = {&ce.id, &ce.type, &ce.source, &ce.time};
        *f[cases[i].field] = cases[i].value;
        kfk_header_t h[KFK_CE_HEADERS_MAX];
        err_t err = ERR_INIT;
        ck_assert_int_eq(kfk_ce_headers(&ce, h, &err), ERR_INVALID);
        ck_assert_msg(strstr(err.msg, cases[i].needle), "case %zu: %s", i, err.msg);
    }
}
END_TEST

START_TEST(test_headers_leave_out_an_invalid_traceparent)
{
    arena_t *a = arena_new(0);
    kfk_ce_t ce = valid_ce();
    ce.traceparent = "00-nothex";
    kfk_header_t h[KFK_CE_HEADERS_MAX];
    err_t err = ERR_INIT;
    int n = kfk_ce_headers(&ce, h, &err);
    ck_assert_int_eq(n, 6);
    ck_assert_ptr_null(header(h, n, "traceparent", a));
    arena_free(a);
}
END_TEST

/* The six required headers of a valid event, in a mutable array. */
static size_t required_headers(kfk_header_t h[KFK_CE_HEADERS_MAX])
{
    kfk_ce_t ce = valid_ce();
    ce.traceparent = NULL;
    err_t err = ERR_INIT;
    return (size_t)kfk_ce_headers(&ce, h, &err);
}

START_TEST(test_parse_names_each_missing_header)
{
    static const char *const names[] = {"ce_id",   "ce_type",        "ce_source",
                                        "ce_time", "ce_specversion", "content-type"};
    arena_t *a = arena_new(0);
    for (size_t drop = 0; drop < 6; drop++) {
        kfk_header_t all[KFK_CE_HEADERS_MAX], some[KFK_CE_HEADERS_MAX];
        size_t n = required_headers(all), k = 0;
        for (size_t i = 0; i < n; i++)
            if (strcmp(all[i].name, names[drop]) != 0)
                some[k++] = all[i];
        ck_assert_uint_eq(k, 5);
        kfk_ce_t ce;
        err_t err = ERR_INIT;
        ck_assert_int_eq(kfk_ce_parse(some, k, a, &ce, &err), ERR_INVALID);
        char want[64];
        snprintf(want, sizeof(want), "missing header %s", names[drop]);
        ck_assert_str_eq(err.msg, want);
    }
    arena_free(a);
}
END_TEST

START_TEST(test_parse_rejects_invalid_values_by_name)
{
    static const struct {
        const char *name;
        const char *value;
        size_t len; /* 0: strlen */
        const char *msg;
    } cases[] = {
        {"ce_id", "not-a-uuid", 0, "invalid header ce_id: not a UUID"},
        {"ce_type", "", 0, "invalid header ce_type: empty or not printable ASCII"},
        {"ce_source", "a b", 0, "invalid header ce_source: empty or not printable ASCII"},
        {"ce_time", "24/11/2026", 0, "invalid header ce_time: not an RFC 3339 time"},
        {"ce_specversion", "0.3", 0, "invalid header ce_specversion: not 1.0"},
        {"content-type", "application/json", 0,
         "invalid header content-type: not application/protobuf"},
        {"ce_type", "shop\0evil", 9, "invalid header ce_type: too long or holds a NUL byte"},
    };
    arena_t *a = arena_new(0);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        kfk_header_t h[KFK_CE_HEADERS_MAX];
        size_t n = required_headers(h);
        for (size_t i = 0; i < n; i++)
            if (strcmp(h[i].name, cases[c].name) == 0)
                h[i] = (kfk_header_t){.name = cases[c].name,
                                      .value = cases[c].value,
                                      .len = cases[c].len ? cases[c].len : strlen(cases[c].value)};
        kfk_ce_t ce;
        err_t err = ERR_INIT;
        ck_assert_int_eq(kfk_ce_parse(h, n, a, &ce, &err), ERR_INVALID);
        ck_assert_str_eq(err.msg, cases[c].msg);
    }
    arena_free(a);
}
END_TEST

START_TEST(test_parse_refuses_an_oversized_value_before_copying_it)
{
    arena_t *a = arena_new(0);
    size_t big = KFK_CE_VALUE_MAX + 1;
    char *v = malloc(big);
    memset(v, 'x', big);
    kfk_header_t h[KFK_CE_HEADERS_MAX];
    size_t n = required_headers(h);
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, "ce_source") == 0) {
            h[i].value = v;
            h[i].len = big;
        }
    size_t before = arena_bytes_used(a);
    kfk_ce_t ce;
    err_t err = ERR_INIT;
    ck_assert_int_eq(kfk_ce_parse(h, n, a, &ce, &err), ERR_INVALID);
    ck_assert_str_eq(err.msg, "invalid header ce_source: too long or holds a NUL byte");
    ck_assert_uint_lt(arena_bytes_used(a) - before, big);
    free(v);
    arena_free(a);
}
END_TEST

START_TEST(test_parse_takes_the_last_of_repeated_headers)
{
    arena_t *a = arena_new(0);
    kfk_header_t h[KFK_CE_HEADERS_MAX + 1];
    size_t n = required_headers(h);
    h[n++] = (kfk_header_t){.name = "ce_type", .value = "shop.events.v1.OrderConfirmed", .len = 29};
    kfk_ce_t ce;
    err_t err = ERR_INIT;
    ck_assert_int_eq(kfk_ce_parse(h, n, a, &ce, &err), 0);
    ck_assert_str_eq(ce.type, "shop.events.v1.OrderConfirmed");
    arena_free(a);
}
END_TEST

START_TEST(test_parse_treats_an_invalid_traceparent_as_absent)
{
    arena_t *a = arena_new(0);
    kfk_header_t h[KFK_CE_HEADERS_MAX];
    size_t n = required_headers(h);
    h[n++] = (kfk_header_t){.name = "traceparent", .value = "garbage", .len = 7};
    kfk_ce_t ce;
    err_t err = ERR_INIT;
    ck_assert_int_eq(kfk_ce_parse(h, n, a, &ce, &err), 0);
    ck_assert_ptr_null(ce.traceparent);
    ck_assert_str_eq(ce.id, ID);
    arena_free(a);
}
END_TEST

START_TEST(test_parse_accepts_headers_in_any_order_among_others)
{
    arena_t *a = arena_new(0);
    kfk_header_t h[KFK_CE_HEADERS_MAX], mixed[KFK_CE_HEADERS_MAX + 2];
    size_t n = required_headers(h), k = 0;
    mixed[k++] = (kfk_header_t){.name = "x-other", .value = "1", .len = 1};
    for (size_t i = n; i-- > 0;)
        mixed[k++] = h[i];
    mixed[k++] = (kfk_header_t){.name = "dlq_error", .value = NULL, .len = 0};
    kfk_ce_t ce;
    err_t err = ERR_INIT;
    ck_assert_int_eq(kfk_ce_parse(mixed, k, a, &ce, &err), 0);
    ck_assert_str_eq(ce.source, SOURCE);
    ck_assert_str_eq(ce.time, TIME);
    arena_free(a);
}
END_TEST

static Suite *kfk_ce_suite(void)
{
    Suite *s = suite_create("kfk_ce");
    TCase *enc = check_case(s, "encode", TEST_TIMEOUT_S);
    tcase_add_test(enc, test_headers_carry_every_attribute_of_the_binding);
    tcase_add_test(enc, test_headers_round_trip_through_parse);
    tcase_add_test(enc, test_headers_refuse_missing_or_invalid_attributes);
    tcase_add_test(enc, test_headers_leave_out_an_invalid_traceparent);
    TCase *dec = check_case(s, "decode", TEST_TIMEOUT_S);
    tcase_add_test(dec, test_parse_names_each_missing_header);
    tcase_add_test(dec, test_parse_rejects_invalid_values_by_name);
    tcase_add_test(dec, test_parse_refuses_an_oversized_value_before_copying_it);
    tcase_add_test(dec, test_parse_takes_the_last_of_repeated_headers);
    tcase_add_test(dec, test_parse_treats_an_invalid_traceparent_as_absent);
    tcase_add_test(dec, test_parse_accepts_headers_in_any_order_among_others);
    return s;
}

int main(void)
{
    return check_run(kfk_ce_suite(), CK_FORK_GETENV);
}
