/*
 * clock: RFC 3339 formatting and parsing (round trips, offsets, rejects) and the
 * clocks themselves.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_util.h"
#include "common/clock.h"

#define TEST_TIMEOUT_S 10

static int64_t parse_ok(const char *s)
{
    int64_t us = 0;
    ck_assert_msg(clock_parse_rfc3339(s, &us) == 0, "rejected %s", s);
    return us;
}

START_TEST(test_format_is_utc_with_microseconds)
{
    char out[CLOCK_RFC3339_LEN];
    clock_rfc3339(0, out);
    ck_assert_str_eq(out, "1970-01-01T00:00:00.000000Z");
    clock_rfc3339(1700000000123456LL, out);
    ck_assert_str_eq(out, "2023-11-14T22:13:20.123456Z");
    clock_rfc3339(-1, out);
    ck_assert_str_eq(out, "1969-12-31T23:59:59.999999Z");
}
END_TEST

START_TEST(test_format_into_an_arena_lives_with_it)
{
    arena_t *a = arena_new(0);
    ck_assert_ptr_nonnull(a);
    const char *t1 = clock_rfc3339_in(a, 1700000000123456LL);
    const char *t2 = clock_rfc3339_in(a, 0);
    ck_assert_str_eq(t1, "2023-11-14T22:13:20.123456Z");
    ck_assert_str_eq(t2, "1970-01-01T00:00:00.000000Z");
    arena_free(a);
}
END_TEST

START_TEST(test_format_then_parse_round_trips)
{
    const int64_t times[] = {0,
                             1,
                             999999,
                             1700000000123456LL,
                             951782400000000LL /* 2000-02-29 */,
                             -86400000001LL,
                             253402300799999999LL /* 9999-12-31 */};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        char out[CLOCK_RFC3339_LEN];
        clock_rfc3339(times[i], out);
        ck_assert_int_eq(parse_ok(out), times[i]);
    }
    int64_t now = clock_now_us();
    char out[CLOCK_RFC3339_LEN];
    clock_rfc3339(now, out);
    ck_assert_int_eq(parse_ok(out), now);
}
END_TEST

START_TEST(test_parse_accepts_offsets_and_any_fraction)
{
    int64_t base = parse_ok("2024-05-01T12:34:56Z");
    ck_assert_int_eq(base, 1714566896000000LL);
    ck_assert_int_eq(parse_ok("2024-05-01T13:34:56+01:00"), base);
    ck_assert_int_eq(parse_ok("2024-05-01T07:04:56-05:30"), base);
    ck_assert_int_eq(parse_ok("2024-05-01t12:34:56z"), base);
    ck_assert_int_eq(parse_ok("2024-05-01T12:34:56.7Z"), base + 700000);
    ck_assert_int_eq(parse_ok("2024-05-01T12:34:56.789Z"), base + 789000);
    ck_assert_int_eq(parse_ok("2024-05-01T12:34:56.123456789Z"), base + 123456);
    ck_assert_int_eq(parse_ok("2024-02-29T00:00:00Z"), 1709164800000000LL);
}
END_TEST

START_TEST(test_parse_rejects_malformed_times)
{
    const char *bad[] = {
        "",
        "garbage",
        "2024-05-01",
        "2024-05-01T12:34:56",      /* no zone */
        "2024-05-01T12:34:56.Z",    /* empty fraction */
        "2024-05-01T12:34:56Zjunk", /* trailing text */
        "2024-13-01T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2023-02-29T00:00:00Z", /* not a leap year */
        "2024-04-31T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:60:00Z",
        "2024-05-01T12:00:61Z",
        "2024-05-01T12:00:00+1:00",
        "2024-05-01T12:00:00+01:60",
        "24-05-01T12:00:00Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t us = 42;
        ck_assert_msg(clock_parse_rfc3339(bad[i], &us) == -1, "accepted \"%s\"", bad[i]);
        ck_assert_int_eq(us, 42);
    }
}
END_TEST

START_TEST(test_now_is_the_wall_clock_and_mono_never_goes_back)
{
    int64_t now = clock_now_us();
    int64_t t = (int64_t)time(NULL);
    ck_assert_int_le(llabs(now / 1000000 - t), 1);
    int64_t prev = clock_mono_us();
    for (int i = 0; i < 1000; i++) {
        int64_t m = clock_mono_us();
        ck_assert_int_ge(m, prev);
        prev = m;
    }
}
END_TEST

START_TEST(test_mono_deadline_is_ms_ahead_and_never_overflows)
{
    static const struct {
        int64_t ms, min_ahead_ms, max_ahead_ms;
    } cases[] = {
        {-5, 0, 50},
        {0, 0, 50},
        {1500, 1500, 1550},
        {999, 999, 1049},
        {INT64_MAX, INT64_C(10) * 365 * 86400 * 1000, INT64_C(10) * 367 * 86400 * 1000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t before = clock_mono_us();
        struct timespec ts = clock_mono_deadline(cases[i].ms);
        int64_t at_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        ck_assert_int_ge(ts.tv_nsec, 0);
        ck_assert_int_lt(ts.tv_nsec, 1000000000L);
        ck_assert_int_ge((at_us - before) / 1000, cases[i].min_ahead_ms);
        ck_assert_int_le((at_us - before) / 1000, cases[i].max_ahead_ms);
    }
}
END_TEST

START_TEST(test_sleep_waits_at_least_the_duration)
{
    int64_t start = clock_mono_us();
    clock_sleep_ms(30);
    int64_t elapsed = clock_mono_us() - start;
    ck_assert_int_ge(elapsed, 30000);
    ck_assert_int_lt(elapsed, 2000000);
    start = clock_mono_us();
    clock_sleep_ms(0);
    clock_sleep_ms(-5);
    ck_assert_int_lt(clock_mono_us() - start, 10000);
}
END_TEST

static Suite *clock_suite(void)
{
    Suite *s = suite_create("clock");
    tcase_add_test(check_case(s, "format", TEST_TIMEOUT_S), test_format_is_utc_with_microseconds);
    tcase_add_test(check_case(s, "arena", TEST_TIMEOUT_S), test_format_into_an_arena_lives_with_it);
    tcase_add_test(check_case(s, "round_trip", TEST_TIMEOUT_S), test_format_then_parse_round_trips);
    tcase_add_test(check_case(s, "parse", TEST_TIMEOUT_S),
                   test_parse_accepts_offsets_and_any_fraction);
    tcase_add_test(check_case(s, "reject", TEST_TIMEOUT_S), test_parse_rejects_malformed_times);
    tcase_add_test(check_case(s, "clocks", TEST_TIMEOUT_S),
                   test_now_is_the_wall_clock_and_mono_never_goes_back);
    tcase_add_test(check_case(s, "sleep", TEST_TIMEOUT_S), test_sleep_waits_at_least_the_duration);
    tcase_add_test(check_case(s, "deadline", TEST_TIMEOUT_S),
                   test_mono_deadline_is_ms_ahead_and_never_overflows);
    return s;
}

int main(void)
{
    return check_run(clock_suite(), CK_FORK_GETENV);
}
