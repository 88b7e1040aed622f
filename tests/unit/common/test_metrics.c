/*
 * metrics: the exact Prometheus text of a small registry, cumulative histogram
 * buckets, escaping, label order, computed gauges and counters, collectors whose
 * series come and go, the process_* and build-info metrics, misuse, and lock-free
 * updates from several threads adding up exactly.
 *
 * The registry is process-wide; CK_FORK gives every test a fresh one.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check_util.h"
#include "common/metrics.h"

#define TEST_TIMEOUT_S 30

static char *render(void)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, strlen(text));
    return text;
}

START_TEST(test_render_of_a_small_registry_is_exact)
{
    metrics_counter_t *ok = metrics_counter("test_requests_total", "Requests handled",
                                            (const char *[]){"method", "Get", "code", "OK", NULL});
    metrics_counter_t *nf =
        metrics_counter("test_requests_total", "Requests handled",
                        (const char *[]){"method", "Get", "code", "NOT_FOUND", NULL});
    metrics_gauge_t *depth = metrics_gauge("test_queue_depth", "Items waiting", NULL);
    static const double buckets[] = {0.1, 1};
    metrics_histogram_t *lat =
        metrics_histogram("test_latency_seconds", "Latency", NULL, buckets, 2);
    metrics_counter_add(ok, 2);
    metrics_counter_add(ok, 1);
    metrics_counter_add(nf, 1);
    metrics_gauge_set(depth, 4);
    metrics_gauge_add(depth, -1.5);
    metrics_histogram_observe(lat, 0.05);
    metrics_histogram_observe(lat, 0.1); /* on a bound: counts in that bucket (le) */
    metrics_histogram_observe(lat, 5);

    char *text = render();
    ck_assert_str_eq(text, "# HELP test_requests_total Requests handled\n"
                           "# TYPE test_requests_total counter\n"
                           "test_requests_total{code=\"OK\",method=\"Get\"} 3\n"
                           "test_requests_total{code=\"NOT_FOUND\",method=\"Get\"} 1\n"
                           "# HELP test_queue_depth Items waiting\n"
                           "# TYPE test_queue_depth gauge\n"
                           "test_queue_depth 2.5\n"
                           "# HELP test_latency_seconds Latency\n"
                           "# TYPE test_latency_seconds histogram\n"
                           "test_latency_seconds_bucket{le=\"0.1\"} 2\n"
                           "test_latency_seconds_bucket{le=\"1\"} 2\n"
                           "test_latency_seconds_bucket{le=\"+Inf\"} 3\n"
                           "test_latency_seconds_sum 5.15\n"
                           "test_latency_seconds_count 3\n");
    free(text);
}
END_TEST

START_TEST(test_histogram_with_labels_uses_latency_buckets_cumulatively)
{
    ck_assert_uint_eq(metrics_latency_buckets_n, 16);
    ck_assert_double_eq(metrics_latency_buckets[0], 0.0001);
    ck_assert_double_eq(metrics_latency_buckets[15], 10);
    for (size_t i = 1; i < metrics_latency_buckets_n; i++)
        ck_assert(metrics_latency_buckets[i] > metrics_latency_buckets[i - 1]);

    metrics_histogram_t *h = metrics_histogram("rpc_duration_seconds", "RPC latency",
                                               (const char *[]){"method", "GetOrder", NULL},
                                               metrics_latency_buckets, metrics_latency_buckets_n);
    metrics_histogram_observe(h, 0.0002);
    metrics_histogram_observe(h, 0.003);
    metrics_histogram_observe(h, 0.003);
    metrics_histogram_observe(h, 60);
    char *text = render();
    const char *expected[] = {
        "rpc_duration_seconds_bucket{method=\"GetOrder\",le=\"0.0001\"} 0\n",
        "rpc_duration_seconds_bucket{method=\"GetOrder\",le=\"0.00025\"} 1\n",
        "rpc_duration_seconds_bucket{method=\"GetOrder\",le=\"0.0025\"} 1\n",
        "rpc_duration_seconds_bucket{method=\"GetOrder\",le=\"0.005\"} 3\n",
        "rpc_duration_seconds_bucket{method=\"GetOrder\",le=\"10\"} 3\n",
        "rpc_duration_seconds_bucket{method=\"GetOrder\",le=\"+Inf\"} 4\n",
        "rpc_duration_seconds_sum{method=\"GetOrder\"} 60.0062\n",
        "rpc_duration_seconds_count{method=\"GetOrder\"} 4\n",
    };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        ck_assert_msg(strstr(text, expected[i]) != NULL, "missing %s in\n%s", expected[i], text);
    /* 16 bounds and +Inf. */
    size_t buckets = 0;
    for (const char *p = text; (p = strstr(p, "_bucket{")) != NULL; p++)
        buckets++;
    ck_assert_uint_eq(buckets, 17);
    free(text);
}
END_TEST

START_TEST(test_label_values_and_help_are_escaped)
{
    metrics_counter_t *c = metrics_counter("test_escape_total", "line one\nback\\slash \"quoted\"",
                                           (const char *[]){"path", "a\\b\"c\nd", NULL});
    metrics_counter_add(c, 7);
    char *text = render();
    ck_assert_str_eq(text, "# HELP test_escape_total line one\\nback\\\\slash \"quoted\"\n"
                           "# TYPE test_escape_total counter\n"
                           "test_escape_total{path=\"a\\\\b\\\"c\\nd\"} 7\n");
    free(text);
}
END_TEST

START_TEST(test_same_labels_in_any_order_are_the_same_series)
{
    metrics_counter_t *a =
        metrics_counter("test_order_total", "h", (const char *[]){"x", "1", "y", "2", NULL});
    metrics_counter_t *b =
        metrics_counter("test_order_total", "h", (const char *[]){"y", "2", "x", "1", NULL});
    metrics_counter_t *c =
        metrics_counter("test_order_total", "h", (const char *[]){"y", "3", "x", "1", NULL});
    ck_assert_ptr_eq(a, b);
    ck_assert_ptr_ne(a, c);
    ck_assert_ptr_eq(metrics_gauge("test_g", "h", NULL), metrics_gauge("test_g", "h", NULL));
}
END_TEST

static double computed_value(void *ud)
{
    return *(double *)ud;
}

START_TEST(test_computed_gauge_runs_at_render_and_can_be_replaced)
{
    static double first = 12, second = -0.5;
    metrics_gauge_fn("test_outbox_lag", "Unpublished rows", NULL, computed_value, &first);
    char *text = render();
    ck_assert_ptr_nonnull(strstr(text, "\ntest_outbox_lag 12\n"));
    free(text);
    first = 13;
    text = render();
    ck_assert_ptr_nonnull(strstr(text, "\ntest_outbox_lag 13\n"));
    free(text);
    metrics_gauge_fn("test_outbox_lag", "Unpublished rows", NULL, computed_value, &second);
    text = render();
    ck_assert_ptr_nonnull(strstr(text, "\ntest_outbox_lag -0.5\n"));
    free(text);
}
END_TEST

START_TEST(test_computed_counter_is_typed_counter_and_read_at_render)
{
    static double cpu = 1.5;
    metrics_counter_fn("test_cpu_seconds_total", "CPU", NULL, computed_value, &cpu);
    char *text = render();
    ck_assert_ptr_nonnull(strstr(text, "# TYPE test_cpu_seconds_total counter\n"
                                       "test_cpu_seconds_total 1.5\n"));
    free(text);
}
END_TEST

/* A collector writing one series per element of the zero-terminated array ud. */
static void collect_parts(metrics_sink_t *sink, void *ud)
{
    for (const int *p = ud; *p != 0; p++) {
        char part[8];
        snprintf(part, sizeof(part), "%d", *p);
        metrics_sink_gauge(sink, (const char *[]){"partition", part, "group", "g", NULL}, *p * 10);
    }
}

START_TEST(test_collector_series_come_and_go_and_it_can_be_removed)
{
    static int parts[] = {1, 2, 0};
    metrics_gauge_set(metrics_gauge("test_lag", "Lag", (const char *[]){"group", "static", NULL}),
                      7);
    metrics_collector_t *a = metrics_collector_add("test_lag", "Lag", collect_parts, parts);
    char *text = render();
    ck_assert_str_eq(text, "# HELP test_lag Lag\n# TYPE test_lag gauge\n"
                           "test_lag{group=\"static\"} 7\n"
                           "test_lag{group=\"g\",partition=\"1\"} 10\n"
                           "test_lag{group=\"g\",partition=\"2\"} 20\n");
    free(text);
    parts[0] = 0; /* the collector now has nothing to report */
    text = render();
    ck_assert_ptr_null(strstr(text, "partition="));
    free(text);
    parts[0] = 3;
    metrics_collector_remove(a);
    metrics_collector_remove(NULL);
    text = render();
    ck_assert_ptr_null(strstr(text, "partition="));
    ck_assert_ptr_nonnull(strstr(text, "test_lag{group=\"static\"} 7\n"));
    free(text);
}
END_TEST

/* The value of the first line starting with `series ` in text, or -1. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *l = text; l != NULL && *l != '\0';) {
        if (strncmp(l, series, n) == 0 && l[n] == ' ')
            return strtod(l + n + 1, NULL);
        l = strchr(l, '\n');
        l = l != NULL ? l + 1 : NULL;
    }
    return -1;
}

START_TEST(test_process_metrics_describe_this_process)
{
    time_t now = time(NULL);
    metrics_process_init("test-svc");
    char *text = render();
    ck_assert_double_ge(value_of(text, "process_cpu_seconds_total"), 0);
    ck_assert_double_gt(value_of(text, "process_resident_memory_bytes"), 1 << 20);
    ck_assert_double_ge(value_of(text, "process_virtual_memory_bytes"),
                        value_of(text, "process_resident_memory_bytes"));
    ck_assert_double_ge(value_of(text, "process_open_fds"), 3);
    ck_assert_double_gt(value_of(text, "process_max_fds"), value_of(text, "process_open_fds"));
    double start = value_of(text, "process_start_time_seconds");
    ck_assert_double_le(start, (double)now + 1);
    ck_assert_double_gt(start, (double)now - 600);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nshop_build_info{commit=\""));
    ck_assert_ptr_nonnull(
        strstr(text, "\",program=\"test-svc\",version=\"" SHOP_TEST_VERSION "\"} 1\n"));
    free(text);
}
END_TEST

START_TEST(test_special_gauge_values_use_prometheus_spelling)
{
    metrics_gauge_set(metrics_gauge("test_nan", "h", NULL), 0.0 / 0.0);
    metrics_gauge_set(metrics_gauge("test_inf", "h", NULL), -1.0 / 0.0);
    metrics_gauge_set(metrics_gauge("test_third", "h", NULL), 1.0 / 3);
    char *text = render();
    ck_assert_ptr_nonnull(strstr(text, "\ntest_nan NaN\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntest_inf -Inf\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntest_third 0.33333333333333331\n"));
    free(text);
}
END_TEST

START_TEST(test_empty_registry_renders_empty_text)
{
    char *text = render();
    ck_assert_str_eq(text, "");
    free(text);
}
END_TEST

START_TEST(test_one_name_for_two_kinds_aborts)
{
    metrics_counter("test_kind", "h", NULL);
    metrics_gauge("test_kind", "h", NULL);
}
END_TEST

START_TEST(test_bad_label_name_aborts)
{
    metrics_counter("test_bad_label", "h", (const char *[]){"not-valid", "v", NULL});
}
END_TEST

START_TEST(test_le_label_on_histogram_aborts)
{
    metrics_histogram("test_le", "h", (const char *[]){"le", "1", NULL}, metrics_latency_buckets,
                      metrics_latency_buckets_n);
}
END_TEST

#define THREADS    4
#define PER_THREAD 100000

static void *hammer(void *arg)
{
    (void)arg;
    /* Lookups from every thread too: they must all land on the same series. */
    metrics_counter_t *c = metrics_counter("test_hits_total", "h", NULL);
    metrics_gauge_t *g = metrics_gauge("test_level", "h", NULL);
    static const double bounds[] = {1.5};
    metrics_histogram_t *h = metrics_histogram("test_sizes", "h", NULL, bounds, 1);
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_counter_add(c, 1);
        metrics_gauge_add(g, 0.5);
        metrics_histogram_observe(h, i % 2 == 0 ? 1.0 : 2.0);
    }
    return NULL;
}

START_TEST(test_concurrent_updates_add_up_exactly)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, hammer, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = render();
    const char *expected[] = {
        "\ntest_hits_total 400000\n",
        "\ntest_level 200000\n",
        "\ntest_sizes_bucket{le=\"1.5\"} 200000\n",
        "\ntest_sizes_bucket{le=\"+Inf\"} 400000\n",
        "\ntest_sizes_sum 600000\n",
        "\ntest_sizes_count 400000\n",
    };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        ck_assert_msg(strstr(text, expected[i]) != NULL, "missing %s in\n%s", expected[i], text);
    free(text);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    tcase_add_test(check_case(s, "exact", TEST_TIMEOUT_S),
                   test_render_of_a_small_registry_is_exact);
    tcase_add_test(check_case(s, "histogram", TEST_TIMEOUT_S),
                   test_histogram_with_labels_uses_latency_buckets_cumulatively);
    tcase_add_test(check_case(s, "escape", TEST_TIMEOUT_S), test_label_values_and_help_are_escaped);
    tcase_add_test(check_case(s, "label_order", TEST_TIMEOUT_S),
                   test_same_labels_in_any_order_are_the_same_series);
    tcase_add_test(check_case(s, "gauge_fn", TEST_TIMEOUT_S),
                   test_computed_gauge_runs_at_render_and_can_be_replaced);
    tcase_add_test(check_case(s, "counter_fn", TEST_TIMEOUT_S),
                   test_computed_counter_is_typed_counter_and_read_at_render);
    tcase_add_test(check_case(s, "collector", TEST_TIMEOUT_S),
                   test_collector_series_come_and_go_and_it_can_be_removed);
    tcase_add_test(check_case(s, "process", TEST_TIMEOUT_S),
                   test_process_metrics_describe_this_process);
    tcase_add_test(check_case(s, "special", TEST_TIMEOUT_S),
                   test_special_gauge_values_use_prometheus_spelling);
    tcase_add_test(check_case(s, "empty", TEST_TIMEOUT_S), test_empty_registry_renders_empty_text);
    tcase_add_test_raise_signal(check_case(s, "kind_clash", TEST_TIMEOUT_S),
                                test_one_name_for_two_kinds_aborts, SIGABRT);
    tcase_add_test_raise_signal(check_case(s, "bad_label", TEST_TIMEOUT_S),
                                test_bad_label_name_aborts, SIGABRT);
    tcase_add_test_raise_signal(check_case(s, "le_label", TEST_TIMEOUT_S),
                                test_le_label_on_histogram_aborts, SIGABRT);
    tcase_add_test(check_case(s, "threads", TEST_TIMEOUT_S),
                   test_concurrent_updates_add_up_exactly);
    return s;
}

int main(void)
{
    return check_run(metrics_suite(), CK_FORK_GETENV);
}
