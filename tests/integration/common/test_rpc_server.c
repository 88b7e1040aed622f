/*
 * rpc server: the EchoService served in-process by common/rpc_server.c and called by
 * a client no one here wrote, Debian's python3-grpcio (rpc_client.py). Each test
 * starts its own server on a free 127.0.0.1 port.
 *
 * Runs with CK_NOFORK: gRPC does not survive fork() once started (grpc/grpc#14055).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "rpc_echo.h"

#define TEST_TIMEOUT_S 120

static echo_ctx_t ctx;
static rpc_server_t *srv;
static char out[1 << 16];

static void setup(void)
{
    memset(&ctx, 0, sizeof(ctx));
    ctx.instance = "echo-a";
    srv = echo_server_start("127.0.0.1:0", &ctx, 8);
    out[0] = '\0';
}

static void teardown(void)
{
    rpc_server_free(srv);
    srv = NULL;
}

static void py_ok(const char *scenario, const char *const *args)
{
    int rc = rpc_py_run(rpc_server_port(srv), scenario, args, out, sizeof(out));
    ck_assert_msg(rc == 0, "python client %s exited %d:\n%s", scenario, rc, out);
    char pass[64];
    snprintf(pass, sizeof(pass), "PASS %s", scenario);
    ck_assert_msg(strstr(out, pass) != NULL, "no %s in:\n%s", pass, out);
}

/* The value of one series in the rendered registry, or -1 when absent. */
static double metric_value(const char *series)
{
    char *text = metrics_render(NULL);
    const char *p = strstr(text, series);
    double v = p != NULL ? strtod(p + strlen(series), NULL) : -1;
    free(text);
    return v;
}

START_TEST(test_echo_returns_message_and_metadata_both_ways)
{
    py_ok("echo", NULL);
    ck_assert_int_eq(loaded(&ctx.echo_calls), 2);
}
END_TEST

START_TEST(test_failures_carry_status_code_and_message)
{
    py_ok("status", NULL);
}
END_TEST

START_TEST(test_field_violations_travel_in_status_details_bin)
{
    py_ok("violations", NULL);
}
END_TEST

START_TEST(test_internal_errors_reach_the_client_redacted)
{
    py_ok("redacted", NULL);
}
END_TEST

START_TEST(test_expired_deadline_is_deadline_exceeded)
{
    py_ok("deadline", NULL);
}
END_TEST

START_TEST(test_unknown_method_is_unimplemented_within_a_second)
{
    py_ok("unimplemented", NULL);
}
END_TEST

START_TEST(test_undecodable_request_is_invalid_argument)
{
    py_ok("bad_request", NULL);
    ck_assert_int_eq(loaded(&ctx.echo_calls), 0);
}
END_TEST

START_TEST(test_health_reports_serving_not_serving_and_not_found)
{
    py_ok("health", (const char *[]){"serving", NULL});
    rpc_server_set_serving(srv, false);
    py_ok("health", (const char *[]){"not_serving", NULL});
    rpc_server_set_serving(srv, true);
    py_ok("health", (const char *[]){"serving", NULL});
}
END_TEST

START_TEST(test_thousand_concurrent_calls_all_succeed)
{
    py_ok("concurrent", (const char *[]){"1000", NULL});
    ck_assert_int_eq(loaded(&ctx.echo_calls), 1000);
}
END_TEST

START_TEST(test_calls_are_counted_per_method_and_code)
{
    const char *ok =
        "rpc_server_requests_total{code=\"OK\",method=\"/shop.test.v1.EchoService/Echo\"} ";
    const char *nf =
        "rpc_server_requests_total{code=\"NOT_FOUND\",method=\"/shop.test.v1.EchoService/Fail\"} ";
    double ok_before = metric_value(ok), nf_before = metric_value(nf);
    py_ok("echo", NULL);
    py_ok("violations", NULL);
    /* The count is taken when the answer's batch completes, just after the client
     * has its answer: allow the worker a moment. */
    for (int i = 0; i < 200 && metric_value(nf) < nf_before + 1; i++)
        clock_sleep_ms(5);
    ck_assert_double_eq(metric_value(ok), (ok_before < 0 ? 0 : ok_before) + 2);
    ck_assert_double_eq(metric_value(nf), (nf_before < 0 ? 0 : nf_before) + 1);
}
END_TEST

START_TEST(test_shutdown_lets_calls_in_flight_finish)
{
    int fd;
    pid_t pid =
        rpc_py_spawn(rpc_server_port(srv), "shutdown", (const char *[]){"8", "400", NULL}, &fd);
    ck_assert_msg(echo_wait_sleeping(&ctx, 8, 20000), "8 calls never ran at once");
    int64_t start = clock_mono_us();
    rpc_server_shutdown(srv, 5000);
    int64_t took_ms = (clock_mono_us() - start) / 1000;
    int rc = rpc_py_wait(pid, fd, out, sizeof(out));
    ck_assert_msg(rc == 0, "python client exited %d:\n%s", rc, out);
    ck_assert_msg(strstr(out, "ok=8 cancelled=0 unavailable=0") != NULL, "outcomes:\n%s", out);
    ck_assert_int_lt(took_ms, 3000);
}
END_TEST

START_TEST(test_shutdown_cancels_calls_past_the_grace)
{
    int fd;
    pid_t pid =
        rpc_py_spawn(rpc_server_port(srv), "shutdown", (const char *[]){"4", "20000", NULL}, &fd);
    ck_assert_msg(echo_wait_sleeping(&ctx, 4, 20000), "4 calls never ran at once");
    int64_t start = clock_mono_us();
    rpc_server_shutdown(srv, 200);
    int64_t took_ms = (clock_mono_us() - start) / 1000;
    int rc = rpc_py_wait(pid, fd, out, sizeof(out));
    ck_assert_msg(rc == 0, "python client exited %d:\n%s", rc, out);
    ck_assert_msg(strstr(out, "ok=0 ") != NULL, "outcomes:\n%s", out);
    ck_assert_int_lt(took_ms, 2000);
    ck_assert_int_eq(loaded(&ctx.sleeping), 0);
}
END_TEST

static Suite *rpc_server_suite(void)
{
    Suite *s = suite_create("rpc_server");
    TCase *tc = check_case(s, "python_client", TEST_TIMEOUT_S);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_echo_returns_message_and_metadata_both_ways);
    tcase_add_test(tc, test_failures_carry_status_code_and_message);
    tcase_add_test(tc, test_field_violations_travel_in_status_details_bin);
    tcase_add_test(tc, test_internal_errors_reach_the_client_redacted);
    tcase_add_test(tc, test_expired_deadline_is_deadline_exceeded);
    tcase_add_test(tc, test_unknown_method_is_unimplemented_within_a_second);
    tcase_add_test(tc, test_undecodable_request_is_invalid_argument);
    tcase_add_test(tc, test_health_reports_serving_not_serving_and_not_found);
    tcase_add_test(tc, test_thousand_concurrent_calls_all_succeed);
    tcase_add_test(tc, test_calls_are_counted_per_method_and_code);
    tcase_add_test(tc, test_shutdown_lets_calls_in_flight_finish);
    tcase_add_test(tc, test_shutdown_cancels_calls_past_the_grace);
    return s;
}

int main(void)
{
    return check_run(rpc_server_suite(), CK_NOFORK);
}
