/*
 * admin_http: a real server on 127.0.0.1 (ephemeral port) spoken to over a plain
 * socket with a minimal HTTP/1.1 client: liveness, readiness both ways, metrics,
 * unknown paths and methods, and start-up failures.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check_util.h"
#include "common/admin.h"
#include "common/metrics.h"

#define TEST_TIMEOUT_S 20
#define IO_TIMEOUT_S   5
#define RESPONSE_MAX   (256 * 1024)

typedef struct response {
    int status;
    char headers[4096]; /* raw header block, lines ending in \r\n */
    char *body;         /* malloc'd, NUL-terminated */
} response_t;

/* One request on a fresh connection ("Connection: close"), read to EOF. */
static response_t http_request(int port, const char *method, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);

    char req[512];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Length: 0\r\n\r\n",
                     method, path);
    ck_assert_int_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);

    char *buf = malloc(RESPONSE_MAX + 1);
    size_t len = 0;
    for (;;) {
        ssize_t got = recv(fd, buf + len, RESPONSE_MAX - len, 0);
        ck_assert_msg(got >= 0, "recv: %s", strerror(errno));
        if (got == 0)
            break;
        len += (size_t)got;
        ck_assert_uint_lt(len, RESPONSE_MAX);
    }
    close(fd);
    buf[len] = '\0';

    response_t r = {0};
    ck_assert_msg(sscanf(buf, "HTTP/1.1 %d ", &r.status) == 1, "bad status line: %s", buf);
    char *end = strstr(buf, "\r\n\r\n");
    ck_assert_ptr_nonnull(end);
    size_t hlen = (size_t)(end - buf) + 2;
    ck_assert_uint_lt(hlen, sizeof(r.headers));
    memcpy(r.headers, buf, hlen);
    r.headers[hlen] = '\0';
    r.body = strdup(end + 4);
    free(buf);
    return r;
}

/* The value of header `name` (case-insensitive) into out, or "" if absent. */
static const char *header(const response_t *r, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    size_t nlen = strlen(name);
    for (const char *line = strstr(r->headers, "\r\n"); line != NULL && line[2] != '\0';
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, nlen) == 0 && h[nlen] == ':') {
            const char *v = h + nlen + 1;
            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)strcspn(v, "\r"), v);
            break;
        }
    }
    return out;
}

static void json_body_has(const response_t *r, const char *key, const char *value)
{
    json_error_t jerr;
    json_t *j = json_loads(r->body, 0, &jerr);
    ck_assert_msg(j != NULL, "not JSON (%s): %s", jerr.text, r->body);
    json_t *v = json_object_get(j, key);
    ck_assert_msg(json_is_string(v), "no string %s in %s", key, r->body);
    ck_assert_str_eq(json_string_value(v), value);
    json_decref(j);
}

/* Readiness for the tests: ready unless a reason is set. */
static _Atomic(const char *) not_ready_reason;

static int test_ready(void *ud, err_t *err)
{
    atomic_fetch_add((_Atomic int *)ud, 1);
    const char *reason = atomic_load(&not_ready_reason);
    if (reason == NULL)
        return 0;
    return err_set(err, ERR_UNAVAILABLE, "%s", reason);
}

static admin_server_t *server;
static _Atomic int ready_calls;

static void start_server(void)
{
    err_t err = ERR_INIT;
    atomic_store(&not_ready_reason, NULL);
    server = admin_server_start("127.0.0.1:0", test_ready, (void *)&ready_calls, &err);
    ck_assert_msg(server != NULL, "start: %s", err.msg);
    ck_assert_int_gt(admin_server_port(server), 0);
}

static void stop_server(void)
{
    admin_server_stop(server);
    server = NULL;
}

START_TEST(test_healthz_answers_ok)
{
    response_t r = http_request(admin_server_port(server), "GET", "/healthz");
    char ct[128];
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header(&r, "Content-Type", ct, sizeof(ct)), "application/json");
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    free(r.body);
}
END_TEST

START_TEST(test_readyz_reports_ready_from_the_callback)
{
    int before = atomic_load(&ready_calls);
    response_t r = http_request(admin_server_port(server), "GET", "/readyz");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ready\"}");
    ck_assert_int_eq(atomic_load(&ready_calls), before + 1);
    free(r.body);
}
END_TEST

START_TEST(test_readyz_reports_503_with_the_reason)
{
    atomic_store(&not_ready_reason, "database \"order\" unreachable\n(timeout)");
    response_t r = http_request(admin_server_port(server), "GET", "/readyz");
    ck_assert_int_eq(r.status, 503);
    json_body_has(&r, "status", "not ready");
    json_body_has(&r, "reason", "database \"order\" unreachable\n(timeout)");
    free(r.body);

    atomic_store(&not_ready_reason, NULL);
    r = http_request(admin_server_port(server), "GET", "/readyz");
    ck_assert_int_eq(r.status, 200);
    free(r.body);
}
END_TEST

START_TEST(test_metrics_serves_prometheus_text)
{
    metrics_counter_add(metrics_counter("test_admin_probe_total", "Probe", NULL), 3);
    response_t r = http_request(admin_server_port(server), "GET", "/healthz");
    free(r.body);
    r = http_request(admin_server_port(server), "GET", "/metrics");
    char ct[128];
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header(&r, "Content-Type", ct, sizeof(ct)),
                     "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE test_admin_probe_total counter\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "\ntest_admin_probe_total 3\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "admin_http_requests_total{code=\"200\",path=\"/healthz\"} 1\n"));
    free(r.body);
}
END_TEST

START_TEST(test_unknown_path_is_404)
{
    response_t r = http_request(admin_server_port(server), "GET", "/nope");
    ck_assert_int_eq(r.status, 404);
    free(r.body);
    r = http_request(admin_server_port(server), "GET", "/healthz/extra");
    ck_assert_int_eq(r.status, 404);
    free(r.body);
    r = http_request(admin_server_port(server), "GET", "/metrics");
    ck_assert_ptr_nonnull(
        strstr(r.body, "admin_http_requests_total{code=\"404\",path=\"other\"} 2\n"));
    free(r.body);
}
END_TEST

START_TEST(test_other_methods_are_405_with_allow)
{
    const char *methods[] = {"POST", "PUT", "DELETE"};
    for (size_t i = 0; i < 3; i++) {
        response_t r = http_request(admin_server_port(server), methods[i], "/healthz");
        char allow[64];
        ck_assert_int_eq(r.status, 405);
        ck_assert_str_eq(header(&r, "Allow", allow, sizeof(allow)), "GET, HEAD");
        free(r.body);
    }
}
END_TEST

START_TEST(test_head_is_served_without_a_body)
{
    response_t r = http_request(admin_server_port(server), "HEAD", "/healthz");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "");
    free(r.body);
}
END_TEST

START_TEST(test_bad_address_is_invalid)
{
    const char *bad[] = {"localhost",       "127.0.0.1",    "127.0.0.1:", "127.0.0.1:http",
                         "127.0.0.1:70000", "999.0.0.1:80", "[::zz]:80",  NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err_t err = ERR_INIT;
        ck_assert_ptr_null(admin_server_start(bad[i], NULL, NULL, &err));
        ck_assert_int_eq(err.code, ERR_INVALID);
        ck_assert_ptr_nonnull(strstr(err.msg, "admin address"));
    }
}
END_TEST

START_TEST(test_port_in_use_is_unavailable)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", admin_server_port(server));
    err_t err = ERR_INIT;
    ck_assert_ptr_null(admin_server_start(addr, NULL, NULL, &err));
    ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err.msg, addr));
    admin_server_stop(NULL);
}
END_TEST

START_TEST(test_without_callback_it_is_always_ready)
{
    err_t err = ERR_INIT;
    admin_server_t *s = admin_server_start("127.0.0.1:0", NULL, NULL, &err);
    ck_assert_ptr_nonnull(s);
    response_t r = http_request(admin_server_port(s), "GET", "/readyz");
    ck_assert_int_eq(r.status, 200);
    free(r.body);
    admin_server_stop(s);
}
END_TEST

static TCase *new_case(Suite *s, const char *name, int with_server)
{
    TCase *tc = check_case(s, name, TEST_TIMEOUT_S);
    if (with_server)
        tcase_add_checked_fixture(tc, start_server, stop_server);
    return tc;
}

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin_http");
    tcase_add_test(new_case(s, "healthz", 1), test_healthz_answers_ok);
    tcase_add_test(new_case(s, "readyz", 1), test_readyz_reports_ready_from_the_callback);
    tcase_add_test(new_case(s, "not_ready", 1), test_readyz_reports_503_with_the_reason);
    tcase_add_test(new_case(s, "metrics", 1), test_metrics_serves_prometheus_text);
    tcase_add_test(new_case(s, "404", 1), test_unknown_path_is_404);
    tcase_add_test(new_case(s, "405", 1), test_other_methods_are_405_with_allow);
    tcase_add_test(new_case(s, "head", 1), test_head_is_served_without_a_body);
    tcase_add_test(new_case(s, "bad_addr", 0), test_bad_address_is_invalid);
    tcase_add_test(new_case(s, "in_use", 1), test_port_in_use_is_unavailable);
    tcase_add_test(new_case(s, "no_callback", 0), test_without_callback_it_is_always_ready);
    return s;
}

int main(void)
{
    return check_run(admin_suite(), CK_FORK_GETENV);
}
