/*
 * otel and span without a receiver: each hop's traceparent (same trace, a new span
 * id, the sampler's flag), the samplers' decisions for roots and children, the
 * settings refused with the variable named, and the bounded queue — towards a dead
 * endpoint, ending spans never waits, and what does not fit is dropped and counted.
 * (The spans' way to a real receiver is tests/e2e/test_trace.py, against Jaeger.)
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/otel.h"
#include "common/span.h"

#define TEST_TIMEOUT_S 30
#define TRACE_ID       "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT_ON      "00-" TRACE_ID "-00f067aa0ba902b7-01"
#define PARENT_OFF     "00-" TRACE_ID "-00f067aa0ba902b7-00"

/* The settings as their defaults, with some overridden. */
static otel_cfg_t cfg_with(const char *sampler, const char *arg)
{
    return (otel_cfg_t){.endpoint = "",
                        .traces_endpoint = "",
                        .exporter = "otlp",
                        .sampler = sampler,
                        .sampler_arg = arg,
                        .service_name = "",
                        .resource_attributes = "",
                        .max_queue = 2048,
                        .max_batch = 512,
                        .schedule_delay_ms = 1000,
                        .export_timeout_ms = 10000};
}

static void start(const otel_cfg_t *c)
{
    err_t err = ERR_INIT;
    ck_assert_msg(otel_start(c, "test", &err) == 0, "%s", err.msg);
}

/* The sampled flag span_start gives a child of parent (NULL: a root). */
static bool sampled(const char *parent)
{
    span_t s;
    span_start(&s, SPAN_INTERNAL, "x", parent);
    return s.ctx.flags & TRACE_FLAG_SAMPLED;
}

START_TEST(test_each_hop_keeps_the_trace_with_a_new_span_id)
{
    span_t a, b;
    span_start(&a, SPAN_CLIENT, "a", PARENT_ON);
    span_start(&b, SPAN_CLIENT, "b", PARENT_ON);
    const char *ta = span_traceparent(&a);
    ck_assert(trace_parent_valid(ta));
    ck_assert_int_eq(strncmp(ta, "00-" TRACE_ID "-", 36), 0);
    ck_assert_str_eq(ta + 52, "-01");
    ck_assert_str_ne(a.ctx.span_id, "00f067aa0ba902b7");
    ck_assert_str_ne(a.ctx.span_id, b.ctx.span_id);
    /* A later version is continued as version 00. */
    span_start(&a, SPAN_CLIENT, "a", "01-" TRACE_ID "-00f067aa0ba902b7-00-extra");
    ck_assert_int_eq(strncmp(span_traceparent(&a), "00-" TRACE_ID "-", 36), 0);
    ck_assert_str_eq(span_traceparent(&a) + 52, "-00");
}
END_TEST

START_TEST(test_an_invalid_parent_starts_a_new_trace)
{
    static const char *const bad[] = {NULL, "", "garbage",
                                      "00-00000000000000000000000000000000-00f067aa0ba902b7-01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        span_t a, b;
        span_start(&a, SPAN_SERVER, "a", bad[i]);
        span_start(&b, SPAN_SERVER, "b", bad[i]);
        ck_assert_msg(trace_parent_valid(span_traceparent(&a)), "case %zu", i);
        ck_assert_str_eq(span_traceparent(&a) + 52, "-01");
        ck_assert_str_ne(a.ctx.trace_id, b.ctx.trace_id);
    }
}
END_TEST

START_TEST(test_without_exporter_nothing_records_but_context_flows)
{
    otel_cfg_t c = cfg_with("always_on", "");
    start(&c); /* no endpoint: no exporter */
    span_t s;
    span_start(&s, SPAN_SERVER, "x", PARENT_ON);
    ck_assert(!span_recording(&s));
    ck_assert_str_eq(span_traceparent(&s) + 52, "-01");
    span_end(&s);
    otel_stop();
}
END_TEST

START_TEST(test_parent_based_samplers_follow_the_parent)
{
    otel_cfg_t c = cfg_with("parentbased_always_on", "");
    start(&c);
    ck_assert(sampled(PARENT_ON));
    ck_assert(!sampled(PARENT_OFF));
    ck_assert(sampled(NULL));
    c = cfg_with("parentbased_always_off", "");
    start(&c);
    ck_assert(sampled(PARENT_ON));
    ck_assert(!sampled(PARENT_OFF));
    ck_assert(!sampled(NULL));
    c = cfg_with("parentbased_traceidratio", "0");
    start(&c);
    ck_assert(sampled(PARENT_ON));
    ck_assert(!sampled(NULL));
}
END_TEST

START_TEST(test_plain_samplers_ignore_the_parent)
{
    otel_cfg_t c = cfg_with("always_on", "");
    start(&c);
    ck_assert(sampled(PARENT_OFF));
    c = cfg_with("always_off", "");
    start(&c);
    ck_assert(!sampled(PARENT_ON));
    ck_assert(!sampled(NULL));
    c = cfg_with("traceidratio", "1");
    start(&c);
    ck_assert(sampled(PARENT_OFF));
    c = cfg_with("traceidratio", "0");
    start(&c);
    ck_assert(!sampled(PARENT_ON));
}
END_TEST

START_TEST(test_ratio_samples_about_that_share_of_roots)
{
    otel_cfg_t c = cfg_with("traceidratio", "0.25");
    start(&c);
    int n = 0;
    for (int i = 0; i < 4000; i++)
        n += sampled(NULL);
    ck_assert_msg(n > 800 && n < 1200, "%d of 4000 sampled at 0.25", n);
    /* The decision depends on the trace id only: every hop decides alike. */
    bool first = sampled(PARENT_ON);
    for (int i = 0; i < 10; i++)
        ck_assert(sampled(PARENT_ON) == first);
}
END_TEST

START_TEST(test_bad_settings_name_their_variable)
{
    static const struct {
        const char *field, *value, *needle;
    } cases[] = {
        {"sampler", "sometimes", "OTEL_TRACES_SAMPLER:"},
        {"sampler_arg", "1.5", "OTEL_TRACES_SAMPLER_ARG:"},
        {"sampler_arg", "half", "OTEL_TRACES_SAMPLER_ARG:"},
        {"exporter", "zipkin", "OTEL_TRACES_EXPORTER:"},
        {"endpoint", "https://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_ENDPOINT:"},
        {"endpoint", "http://127.0.0.1", "OTEL_EXPORTER_OTLP_ENDPOINT:"},
        {"traces_endpoint", "http://h:1/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:"},
        {"resource_attributes", "deployment.environment", "OTEL_RESOURCE_ATTRIBUTES:"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        otel_cfg_t c = cfg_with("parentbased_always_on", "");
        if (strcmp(cases[i].field, "sampler") == 0)
            c.sampler = cases[i].value;
        else if (strcmp(cases[i].field, "sampler_arg") == 0) {
            c.sampler = "traceidratio";
            c.sampler_arg = cases[i].value;
        } else if (strcmp(cases[i].field, "exporter") == 0)
            c.exporter = cases[i].value;
        else if (strcmp(cases[i].field, "endpoint") == 0)
            c.endpoint = cases[i].value;
        else if (strcmp(cases[i].field, "traces_endpoint") == 0)
            c.traces_endpoint = cases[i].value;
        else {
            c.endpoint = "http://127.0.0.1:1";
            c.resource_attributes = cases[i].value;
        }
        err_t err = ERR_INIT;
        ck_assert_msg(otel_start(&c, "test", &err) == ERR_INVALID, "case %zu accepted", i);
        ck_assert_msg(strstr(err.msg, cases[i].needle) == err.msg, "case %zu: %s", i, err.msg);
    }
}
END_TEST

/* The value of an unlabelled counter in /metrics text. */
static long counter_value(const char *name)
{
    char *text = metrics_render(NULL);
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *at = strstr(text, key);
    long v = at != NULL ? strtol(at + strlen(key), NULL, 10) : -1;
    free(text);
    return v;
}

START_TEST(test_a_dead_receiver_never_blocks_and_the_excess_is_dropped)
{
    otel_cfg_t c = cfg_with("always_on", "");
    c.endpoint = "http://127.0.0.1:1"; /* nothing listens there */
    c.max_queue = 8;
    c.max_batch = 4;
    c.export_timeout_ms = 3000;
    start(&c);
    ck_assert_int_eq(counter_value("otel_spans_dropped_total"), 0);
    int64_t t0 = clock_mono_us();
    for (int i = 0; i < 1000; i++) {
        span_t s;
        span_start(&s, SPAN_SERVER, "GET /x", NULL);
        ck_assert(span_recording(&s));
        span_set_str(&s, "http.request.method", "GET");
        span_set_int(&s, "http.response.status_code", 200);
        span_end(&s);
    }
    int64_t us = clock_mono_us() - t0;
    /* At most one batch in the exporter's hands and a full queue: the rest dropped. */
    long dropped = counter_value("otel_spans_dropped_total");
    ck_assert_msg(dropped >= 1000 - 8 - 4 && dropped < 1000, "dropped %ld", dropped);
    ck_assert_msg(us < 200000, "1000 spans took %lld us", (long long)us);
    otel_stop(); /* gives up on the dead receiver within its bound */
    ck_assert_msg(clock_mono_us() - t0 < 15000000, "stop waited too long");
}
END_TEST

static Suite *otel_suite(void)
{
    Suite *s = suite_create("otel");
    TCase *tc = check_case(s, "spans", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_each_hop_keeps_the_trace_with_a_new_span_id);
    tcase_add_test(tc, test_an_invalid_parent_starts_a_new_trace);
    tcase_add_test(tc, test_without_exporter_nothing_records_but_context_flows);
    tc = check_case(s, "sampler", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_parent_based_samplers_follow_the_parent);
    tcase_add_test(tc, test_plain_samplers_ignore_the_parent);
    tcase_add_test(tc, test_ratio_samples_about_that_share_of_roots);
    tcase_add_test(tc, test_bad_settings_name_their_variable);
    tc = check_case(s, "exporter", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_a_dead_receiver_never_blocks_and_the_excess_is_dropped);
    return s;
}

int main(void)
{
    return check_run(otel_suite(), CK_FORK_GETENV);
}
