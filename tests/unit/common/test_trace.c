/*
 * trace: the W3C traceparent rules (version 00 exactly, later versions with an
 * extension, no all-zero ids, lower-case hex), parsing into a context, the trace id
 * for log lines, and a child context: same trace and flags, a new span id (the next
 * hop's traceparent is tested through span.h in test_otel.c).
 */
#include <check.h>
#include <string.h>

#include "check_util.h"
#include "common/trace.h"

#define TEST_TIMEOUT_S 30
#define TRACE          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TRACE_ID       "4bf92f3577b34da6a3ce929d0e0e4736"

static const struct {
    const char *s;
    bool ok;
} cases[] = {
    {TRACE, true},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
    {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
    {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true},
    {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra", false},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
    {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
    {"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
    {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", false},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz", false},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false},
    {"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false},
    {"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", false},
    {"", false},
    {NULL, false},
};

START_TEST(test_validation_follows_w3c)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(trace_parent_valid(cases[i].s) == cases[i].ok, "case %zu: %s", i,
                      cases[i].s ? cases[i].s : "(null)");
}
END_TEST

START_TEST(test_parse_and_trace_id_agree_with_validation)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        trace_ctx_t t = {.flags = 0xee};
        char id[TRACE_ID_LEN + 1] = "x";
        ck_assert_msg(trace_parse(cases[i].s, &t) == cases[i].ok, "parse case %zu", i);
        ck_assert_msg(trace_id_of(cases[i].s, id) == cases[i].ok, "id case %zu", i);
        if (cases[i].ok) {
            ck_assert_int_eq(memcmp(t.trace_id, cases[i].s + 3, TRACE_ID_LEN), 0);
            ck_assert_str_eq(t.trace_id, id);
            ck_assert_uint_eq(strlen(t.span_id), TRACE_SPAN_ID_LEN);
        } else {
            ck_assert_str_eq(id, "");
            ck_assert_uint_eq(t.flags, 0xee); /* untouched */
        }
    }
}
END_TEST

START_TEST(test_parse_reads_every_field)
{
    trace_ctx_t t;
    ck_assert(trace_parse(TRACE, &t));
    ck_assert_str_eq(t.trace_id, TRACE_ID);
    ck_assert_str_eq(t.span_id, "00f067aa0ba902b7");
    ck_assert_uint_eq(t.flags, TRACE_FLAG_SAMPLED);
    ck_assert(trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-a0", &t));
    ck_assert_uint_eq(t.flags, 0xa0);
    char out[TRACE_PARENT_LEN + 1];
    trace_format(&t, out);
    ck_assert_str_eq(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-a0");
}
END_TEST

START_TEST(test_child_keeps_trace_and_flags)
{
    trace_ctx_t p, c;
    trace_new(&p);
    ck_assert_uint_eq(strlen(p.trace_id), TRACE_ID_LEN);
    ck_assert_uint_eq(p.flags, TRACE_FLAG_SAMPLED);
    p.flags = 0;
    trace_child(&p, &c);
    ck_assert_str_eq(c.trace_id, p.trace_id);
    ck_assert_str_ne(c.span_id, p.span_id);
    ck_assert_uint_eq(c.flags, 0);
    char out[TRACE_PARENT_LEN + 1];
    trace_format(&c, out);
    ck_assert(trace_parent_valid(out));
}
END_TEST

static Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = check_case(s, "traceparent", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_validation_follows_w3c);
    tcase_add_test(tc, test_parse_and_trace_id_agree_with_validation);
    tcase_add_test(tc, test_parse_reads_every_field);
    tcase_add_test(tc, test_child_keeps_trace_and_flags);
    return s;
}

int main(void)
{
    return check_run(trace_suite(), CK_FORK_GETENV);
}
