/*
 * rpc client: common/rpc_client.c against the in-process EchoService server:
 * answers, errors with field violations (also as a python3-grpcio server writes them),
 * deadlines, round_robin over two servers,
 * waiting for a server that starts late, the asynchronous variant; plus the server
 * behaviour easiest to see from C (handlers skipped past their deadline, handlers
 * that never answer, the access log line, a port already taken).
 *
 * Runs with CK_NOFORK: gRPC does not survive fork() once started (grpc/grpc#14055).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "capture_stdout.h"
#include "check_util.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "rpc_echo.h"
#include "shop/test/v1/echo_service.pb-c.h"

#define TEST_TIMEOUT_S 60
#define ASYNC_CALLS    1000

static const ProtobufCServiceDescriptor *const echo_svc = &shop__test__v1__echo_service__descriptor;

static echo_ctx_t ctx_a;
static rpc_server_t *srv_a;
static rpc_channel_t *ch;
static arena_t *arena;

static rpc_channel_t *channel_to(const char *target)
{
    err_t err = ERR_INIT;
    rpc_channel_t *c = rpc_channel_new(target, NULL, &err);
    ck_assert_msg(c != NULL, "rpc_channel_new(%s): %s", target, err.msg);
    return c;
}

static rpc_channel_t *channel_to_port(int port)
{
    char target[32];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    return channel_to(target);
}

static void setup(void)
{
    memset(&ctx_a, 0, sizeof(ctx_a));
    ctx_a.instance = "echo-a";
    srv_a = echo_server_start("127.0.0.1:0", &ctx_a, 4);
    ch = channel_to_port(rpc_server_port(srv_a));
    arena = arena_new(0);
}

static void teardown(void)
{
    arena_free(arena);
    rpc_channel_free(ch);
    rpc_server_free(srv_a);
}

static int echo_call(rpc_channel_t *c, const char *message, const rpc_metadata_t *md, size_t n_md,
                     int64_t timeout_ms, Shop__Test__V1__EchoResponse **resp, err_t *err)
{
    Shop__Test__V1__EchoRequest req = SHOP__TEST__V1__ECHO_REQUEST__INIT;
    req.message = (char *)message;
    return rpc_channel_call(c, echo_svc, "Echo", &req.base, arena, (ProtobufCMessage **)resp, md,
                            n_md, timeout_ms, err);
}

static int sleep_call(rpc_channel_t *c, int millis, int64_t timeout_ms, err_t *err)
{
    Shop__Test__V1__SleepRequest req = SHOP__TEST__V1__SLEEP_REQUEST__INIT;
    req.millis = millis;
    ProtobufCMessage *resp;
    return rpc_channel_call(c, echo_svc, "Sleep", &req.base, arena, &resp, NULL, 0, timeout_ms,
                            err);
}

START_TEST(test_call_returns_response_and_sends_metadata)
{
    const rpc_metadata_t md[] = {
        {"x-request-id", "req-c-1"},
        {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        {"x-user-id", "user-1"},
        {"x-user-role", "customer"},
    };
    err_t err = ERR_INIT;
    Shop__Test__V1__EchoResponse *resp;
    int rc = echo_call(ch, "hello", md, 4, 0, &resp, &err);
    ck_assert_msg(rc == 0, "echo: %d %s", rc, err.msg);
    ck_assert_str_eq(resp->message, "hello");
    ck_assert_str_eq(resp->request_id, "req-c-1");
    /* The peer sees the call's CLIENT span (span.h): the caller's trace and flags,
     * a span id of its own. */
    ck_assert_int_eq(strncmp(resp->traceparent, md[1].value, 36), 0);
    ck_assert_str_ne(resp->traceparent + 36, md[1].value + 36);
    ck_assert_str_eq(resp->traceparent + 52, "-01");
    ck_assert_str_eq(resp->user_id, "user-1");
    ck_assert_str_eq(resp->user_role, "customer");
    ck_assert_str_eq(resp->instance, "echo-a");
}
END_TEST

START_TEST(test_failure_returns_code_message_and_field_violations)
{
    Shop__Test__V1__Violation v1 = SHOP__TEST__V1__VIOLATION__INIT, v2 = v1;
    v1.field = "lines[0].quantity";
    v1.description = "must be 1..1000";
    v2.field = "email";
    v2.description = "is not an email";
    Shop__Test__V1__Violation *vs[] = {&v1, &v2};
    Shop__Test__V1__FailRequest req = SHOP__TEST__V1__FAIL_REQUEST__INIT;
    req.code = 3;
    req.message = "invalid order";
    req.n_violations = 2;
    req.violations = vs;
    err_t err = ERR_INIT;
    ProtobufCMessage *resp = (ProtobufCMessage *)1;
    ck_assert_int_eq(
        rpc_channel_call(ch, echo_svc, "Fail", &req.base, arena, &resp, NULL, 0, 0, &err),
        ERR_INVALID);
    ck_assert_ptr_null(resp);
    ck_assert_int_eq(err.code, ERR_INVALID);
    ck_assert_str_eq(err.msg, "invalid order");
    ck_assert_int_eq(err.n_fields, 2);
    ck_assert_str_eq(err.fields[0].field, "lines[0].quantity");
    ck_assert_str_eq(err.fields[0].description, "must be 1..1000");
    ck_assert_str_eq(err.fields[1].field, "email");

    err_t err2 = ERR_INIT;
    req.code = 5;
    req.message = "order 42 not found";
    req.n_violations = 0;
    ck_assert_int_eq(
        rpc_channel_call(ch, echo_svc, "Fail", &req.base, arena, &resp, NULL, 0, 0, &err2),
        ERR_NOT_FOUND);
    ck_assert_str_eq(err2.msg, "order 42 not found");
    ck_assert_int_eq(err2.n_fields, 0);
    ck_assert(err2.for_client);
    ck_assert(err.for_client);

    /* A code the gRPC library produces itself may carry its text: for the log only. */
    err_t err3 = ERR_INIT;
    req.code = 14;
    req.message = "failed to connect to all addresses; last error: 10.0.0.9:50052";
    ck_assert_int_eq(
        rpc_channel_call(ch, echo_svc, "Fail", &req.base, arena, &resp, NULL, 0, 0, &err3),
        ERR_UNAVAILABLE);
    ck_assert_str_eq(err3.msg, req.message);
    ck_assert(!err3.for_client);
}
END_TEST

/* The first line the spawned script prints, "PORT <n>": n. */
static int read_port_line(int fd)
{
    char line[64];
    size_t len = 0;
    while (len < sizeof(line) - 1) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ck_assert_msg(poll(&pfd, 1, 30000) == 1, "no PORT line from status_server");
        ck_assert_int_eq(read(fd, &line[len], 1), 1);
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    int port = 0;
    ck_assert_msg(sscanf(line, "PORT %d", &port) == 1, "status_server printed %s", line);
    return port;
}

/* Fail on channel c: its return value (err set), after checking no response came. */
static int call_fail(rpc_channel_t *c, Shop__Test__V1__FailRequest *req, err_t *err)
{
    ProtobufCMessage *resp = NULL;
    int rc = rpc_channel_call(c, echo_svc, "Fail", &req->base, arena, &resp, NULL, 0, 0, err);
    ck_assert_ptr_null(resp);
    return rc;
}

START_TEST(test_failure_details_from_another_grpc_library_are_read)
{
    /* python3-grpcio answers with a google.rpc.Status holding an ErrorInfo, then the
     * BadRequest: the violations come through, the other detail is ignored. */
    int fd;
    pid_t pid = rpc_py_spawn(0, "status_server", NULL, &fd);
    rpc_channel_t *py = channel_to_port(read_port_line(fd));
    Shop__Test__V1__FailRequest req = SHOP__TEST__V1__FAIL_REQUEST__INIT;
    req.code = 3;
    err_t err = ERR_INIT;
    ck_assert_int_eq(call_fail(py, &req, &err), ERR_INVALID);
    ck_assert_str_eq(err.msg, "bad input");
    ck_assert_int_eq(err.n_fields, 2);
    ck_assert_str_eq(err.fields[0].field, "sku");
    ck_assert_str_eq(err.fields[0].description, "must not be empty");
    ck_assert_str_eq(err.fields[1].field, "lines[1].quantity");
    ck_assert_str_eq(err.fields[1].description, "must be 1..1000");

    /* A trailer that does not decode is no field detail, never another failure. */
    err_t err2 = ERR_INIT;
    req.code = 9;
    ck_assert_int_eq(call_fail(py, &req, &err2), ERR_PRECONDITION);
    ck_assert_str_eq(err2.msg, "stale");
    ck_assert_int_eq(err2.n_fields, 0);

    rpc_channel_free(py);
    char out[4096];
    ck_assert_msg(rpc_py_wait(pid, fd, out, sizeof(out)) == 0, "status_server: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "PASS status_server"));
}
END_TEST

START_TEST(test_slow_answer_is_timeout_at_the_deadline)
{
    err_t err = ERR_INIT;
    int64_t start = clock_mono_us();
    ck_assert_int_eq(sleep_call(ch, 3000, 200, &err), ERR_TIMEOUT);
    int64_t ms = (clock_mono_us() - start) / 1000;
    ck_assert_int_ge(ms, 150);
    ck_assert_int_lt(ms, 1000);
}
END_TEST

START_TEST(test_unreachable_peer_is_unavailable_at_the_deadline)
{
    rpc_channel_t *down = channel_to_port(check_free_port());
    err_t err = ERR_INIT;
    Shop__Test__V1__EchoResponse *resp;
    int64_t start = clock_mono_us();
    ck_assert_int_eq(echo_call(down, "x", NULL, 0, 300, &resp, &err), ERR_UNAVAILABLE);
    ck_assert_int_lt((clock_mono_us() - start) / 1000, 1500);
    ck_assert_ptr_nonnull(strstr(err.msg, "no connection"));
    rpc_channel_free(down);
}
END_TEST

static int echo_instance(rpc_channel_t *c)
{
    err_t err = ERR_INIT;
    Shop__Test__V1__EchoResponse *resp;
    return echo_call(c, "rr", NULL, 0, 0, &resp, &err);
}

START_TEST(test_round_robin_reaches_every_address_of_a_list)
{
    echo_ctx_t ctx_b = {.instance = "echo-b"};
    rpc_server_t *srv_b = echo_server_start("127.0.0.1:0", &ctx_b, 2);
    int pa = rpc_server_port(srv_a), pb = rpc_server_port(srv_b);
    char targets[2][64];
    snprintf(targets[0], sizeof(targets[0]), "127.0.0.1:%d,127.0.0.1:%d", pa, pb);
    snprintf(targets[1], sizeof(targets[1]), "localhost:%d,localhost:%d", pa, pb);
    for (size_t t = 0; t < 2; t++) {
        rpc_channel_t *both = channel_to(targets[t]);
        /* The second connection may become ready a moment after the first: warm up
         * until both instances answered, then round_robin must alternate. */
        int a0 = loaded(&ctx_a.echo_calls), b0 = loaded(&ctx_b.echo_calls);
        for (int i = 0;
             i < 200 && (loaded(&ctx_a.echo_calls) == a0 || loaded(&ctx_b.echo_calls) == b0); i++)
            ck_assert_int_eq(echo_instance(both), 0);
        int a_before = loaded(&ctx_a.echo_calls), b_before = loaded(&ctx_b.echo_calls);
        for (int i = 0; i < 20; i++)
            ck_assert_int_eq(echo_instance(both), 0);
        int a = loaded(&ctx_a.echo_calls) - a_before;
        int b = loaded(&ctx_b.echo_calls) - b_before;
        ck_assert_int_eq(a + b, 20);
        ck_assert_msg(a >= 8 && b >= 8, "%s: a=%d b=%d", targets[t], a, b);
        rpc_channel_free(both);
    }
    rpc_server_free(srv_b);
}
END_TEST

START_TEST(test_dns_targets_reach_the_server)
{
    char targets[2][64];
    snprintf(targets[0], sizeof(targets[0]), "localhost:%d", rpc_server_port(srv_a));
    snprintf(targets[1], sizeof(targets[1]), "dns:///localhost:%d", rpc_server_port(srv_a));
    for (size_t t = 0; t < 2; t++) {
        rpc_channel_t *c = channel_to(targets[t]);
        err_t err = ERR_INIT;
        Shop__Test__V1__EchoResponse *resp;
        int rc = echo_call(c, "dns", NULL, 0, 0, &resp, &err);
        ck_assert_msg(rc == 0, "%s: %d %s", targets[t], rc, err.msg);
        ck_assert_str_eq(resp->instance, "echo-a");
        rpc_channel_free(c);
    }
}
END_TEST

/* The port after the ':' of a /proc/net/tcp{,6} address ("0100007F:1F90"). */
static unsigned proc_port(const char *addr)
{
    const char *colon = strchr(addr, ':');
    return colon != NULL ? (unsigned)strtoul(colon + 1, NULL, 16) : 0;
}

/* Local ports of established connections to port (IPv4, or IPv6 sockets with mapped
 * addresses, which gRPC uses), added to ports[] (distinct, at most cap); returns
 * the new count. */
static size_t connections_to(int port, int *ports, size_t n, size_t cap)
{
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (size_t fi = 0; fi < 2; fi++) {
        FILE *f = fopen(files[fi], "r");
        ck_assert_ptr_nonnull(f);
        char line[512], local[64], remote[64];
        unsigned st;
        while (fgets(line, sizeof(line), f) != NULL) {
            if (sscanf(line, " %*s %63s %63s %x", local, remote, &st) != 3 ||
                proc_port(remote) != (unsigned)port || st != 1 /* ESTABLISHED */)
                continue;
            int lport = (int)proc_port(local);
            bool seen = false;
            for (size_t i = 0; i < n && !seen; i++)
                seen = ports[i] == lport;
            if (!seen && n < cap)
                ports[n++] = lport;
        }
        fclose(f);
    }
    return n;
}

START_TEST(test_aged_connections_are_replaced_without_failing_a_call)
{
    /* A server that closes every connection after 300 ms (what lets clients find
     * replicas added behind a name): calls keep succeeding, slow ones included,
     * over a new connection each time. */
    echo_ctx_t ctx_b = {.instance = "echo-aged"};
    rpc_server_t *aged =
        echo_server_start_opts(&(rpc_server_opts_t){.addr = "127.0.0.1:0",
                                                    .name = "aged",
                                                    .workers = 4,
                                                    .max_connection_age_ms = 300,
                                                    .max_connection_grace_ms = 2000},
                               &ctx_b);
    int port = rpc_server_port(aged);
    rpc_channel_t *c = channel_to_port(port);
    int ports[64];
    size_t n_ports = 0;
    int calls = 0;
    int64_t until = clock_mono_us() + 2500 * 1000;
    while (clock_mono_us() < until) {
        err_t err = ERR_INIT;
        Shop__Test__V1__EchoResponse *resp;
        int rc = calls % 10 == 9 ? sleep_call(c, 150, 5000, &err)
                                 : echo_call(c, "aged", NULL, 0, 5000, &resp, &err);
        ck_assert_msg(rc == 0, "call %d failed: %d %s", calls, rc, err.msg);
        calls++;
        n_ports = connections_to(port, ports, n_ports, 64);
        clock_sleep_ms(5);
    }
    ck_assert_msg(n_ports >= 3 && calls >= 20, "%d calls over %zu connections in 2.5 s", calls,
                  n_ports);
    rpc_channel_free(c);
    rpc_server_free(aged);
}
END_TEST

START_TEST(test_server_options_out_of_range_are_invalid)
{
    err_t err = ERR_INIT;
    ck_assert_ptr_null(rpc_server_new(
        &(rpc_server_opts_t){.addr = "127.0.0.1:0", .max_connection_age_ms = -1}, &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
    ck_assert_ptr_null(rpc_server_new(
        &(rpc_server_opts_t){.addr = "127.0.0.1:0", .max_connection_grace_ms = 1LL << 40}, &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
}
END_TEST

typedef struct late_start {
    int port;
    echo_ctx_t ctx;
    rpc_server_t *srv;
} late_start_t;

static void *start_late(void *arg)
{
    late_start_t *ls = arg;
    clock_sleep_ms(300);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ls->port);
    ls->srv = echo_server_start(addr, &ls->ctx, 2);
    return NULL;
}

START_TEST(test_call_waits_for_a_server_that_starts_late)
{
    late_start_t ls = {.port = check_free_port(), .ctx = {.instance = "late"}};
    rpc_channel_t *late = channel_to_port(ls.port);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, start_late, &ls), 0);
    err_t err = ERR_INIT;
    Shop__Test__V1__EchoResponse *resp;
    int64_t start = clock_mono_us();
    int rc = echo_call(late, "wait", NULL, 0, 3000, &resp, &err);
    int64_t ms = (clock_mono_us() - start) / 1000;
    pthread_join(t, NULL);
    ck_assert_msg(rc == 0, "call: %d %s", rc, err.msg);
    ck_assert_str_eq(resp->instance, "late");
    ck_assert_int_ge(ms, 250);
    rpc_channel_free(late);
    rpc_server_free(ls.srv);
}
END_TEST

typedef struct async_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, ok, wrong;
    pthread_t caller;
    bool other_thread;
} async_state_t;

typedef struct async_call {
    async_state_t *st;
    arena_t *arena;
    char message[32];
} async_call_t;

static void async_done(void *ud, int code, ProtobufCMessage *resp, const err_t *err)
{
    async_call_t *c = ud;
    /* Echo answers must carry the message sent; other answers just have to arrive. */
    bool ok =
        code == 0 && (resp->descriptor != &shop__test__v1__echo_response__descriptor ||
                      strcmp(((Shop__Test__V1__EchoResponse *)resp)->message, c->message) == 0);
    pthread_mutex_lock(&c->st->lock);
    if (ok)
        c->st->ok++;
    else
        c->st->wrong++;
    c->st->other_thread = !pthread_equal(pthread_self(), c->st->caller);
    c->st->done++;
    pthread_cond_signal(&c->st->cond);
    pthread_mutex_unlock(&c->st->lock);
    arena_free(c->arena);
}

START_TEST(test_async_calls_all_complete_on_the_client_thread)
{
    async_state_t st = {.lock = PTHREAD_MUTEX_INITIALIZER,
                        .cond = PTHREAD_COND_INITIALIZER,
                        .caller = pthread_self()};
    async_call_t *calls = calloc(ASYNC_CALLS, sizeof(*calls));
    for (int i = 0; i < ASYNC_CALLS; i++) {
        calls[i].st = &st;
        calls[i].arena = arena_new(0);
        snprintf(calls[i].message, sizeof(calls[i].message), "async-%d", i);
        Shop__Test__V1__EchoRequest req = SHOP__TEST__V1__ECHO_REQUEST__INIT;
        req.message = calls[i].message;
        err_t err = ERR_INIT;
        ck_assert_int_eq(rpc_channel_call_async(ch, echo_svc, "Echo", &req.base, calls[i].arena,
                                                NULL, 0, 10000, async_done, &calls[i], &err),
                         0);
    }
    pthread_mutex_lock(&st.lock);
    int64_t until = clock_mono_us() + 30 * 1000000LL;
    while (st.done < ASYNC_CALLS && clock_mono_us() < until) {
        pthread_mutex_unlock(&st.lock);
        clock_sleep_ms(5);
        pthread_mutex_lock(&st.lock);
    }
    int done = st.done, ok = st.ok;
    bool other = st.other_thread;
    pthread_mutex_unlock(&st.lock);
    ck_assert_int_eq(done, ASYNC_CALLS);
    ck_assert_int_eq(ok, ASYNC_CALLS);
    ck_assert(other);
    free(calls);
}
END_TEST

START_TEST(test_async_failure_reports_code_and_message)
{
    async_state_t st = {.lock = PTHREAD_MUTEX_INITIALIZER,
                        .cond = PTHREAD_COND_INITIALIZER,
                        .caller = pthread_self()};
    async_call_t call = {.st = &st, .arena = arena_new(0), .message = "never"};
    Shop__Test__V1__SleepRequest req = SHOP__TEST__V1__SLEEP_REQUEST__INIT;
    req.millis = 2000;
    err_t err = ERR_INIT;
    ck_assert_int_eq(rpc_channel_call_async(ch, echo_svc, "Sleep", &req.base, call.arena, NULL, 0,
                                            100, async_done, &call, &err),
                     0);
    /* Freeing the channel waits for the call, whose callback must have run. */
    rpc_channel_free(ch);
    ch = NULL;
    ck_assert_int_eq(st.done, 1);
    ck_assert_int_eq(st.wrong, 1);
}
END_TEST

START_TEST(test_unknown_method_or_wrong_request_type_is_invalid)
{
    Shop__Test__V1__EchoRequest req = SHOP__TEST__V1__ECHO_REQUEST__INIT;
    ProtobufCMessage *resp;
    err_t err = ERR_INIT;
    ck_assert_int_eq(
        rpc_channel_call(ch, echo_svc, "NoSuchMethod", &req.base, arena, &resp, NULL, 0, 0, &err),
        ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "NoSuchMethod"));
    err_clear(&err);
    ck_assert_int_eq(
        rpc_channel_call(ch, echo_svc, "Sleep", &req.base, arena, &resp, NULL, 0, 0, &err),
        ERR_INVALID);
    err_clear(&err);
    const rpc_metadata_t bad[] = {{"X-Upper", "v"}};
    ck_assert_int_eq(
        rpc_channel_call(ch, echo_svc, "Echo", &req.base, arena, &resp, bad, 1, 0, &err),
        ERR_INVALID);
    ck_assert_int_eq(loaded(&ctx_a.echo_calls), 0);
}
END_TEST

START_TEST(test_handler_that_never_answers_is_internal)
{
    Shop__Test__V1__ForgetRequest req = SHOP__TEST__V1__FORGET_REQUEST__INIT;
    ProtobufCMessage *resp;
    err_t err = ERR_INIT;
    ck_assert_int_eq(
        rpc_channel_call(ch, echo_svc, "Forget", &req.base, arena, &resp, NULL, 0, 0, &err),
        ERR_INTERNAL);
}
END_TEST

START_TEST(test_call_past_its_deadline_before_a_worker_frees_is_not_run)
{
    echo_ctx_t ctx1 = {.instance = "one-worker"};
    rpc_server_t *one = echo_server_start("127.0.0.1:0", &ctx1, 1);
    rpc_channel_t *c = channel_to_port(rpc_server_port(one));
    async_state_t st = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    async_call_t call = {.st = &st, .arena = arena_new(0)};
    Shop__Test__V1__SleepRequest req = SHOP__TEST__V1__SLEEP_REQUEST__INIT;
    req.millis = 600;
    err_t err = ERR_INIT;
    ck_assert_int_eq(rpc_channel_call_async(c, echo_svc, "Sleep", &req.base, call.arena, NULL, 0,
                                            5000, async_done, &call, &err),
                     0);
    ck_assert(echo_wait_sleeping(&ctx1, 1, 5000));
    Shop__Test__V1__EchoResponse *resp;
    ck_assert_int_eq(echo_call(c, "late", NULL, 0, 100, &resp, &err), ERR_TIMEOUT);
    rpc_channel_free(c); /* waits for the Sleep call */
    clock_sleep_ms(100); /* the worker now reaches the queued Echo */
    rpc_server_free(one);
    ck_assert_int_eq(loaded(&ctx1.echo_calls), 0);
}
END_TEST

START_TEST(test_each_call_writes_one_access_line)
{
    const rpc_metadata_t md[] = {
        {"x-request-id", "req-log-7"},
        {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"x-user-id", "user-log"},
    };
    capture_t cap;
    capture_begin(&cap);
    err_t err = ERR_INIT;
    Shop__Test__V1__EchoResponse *resp;
    int rc = echo_call(ch, "logged", md, 3, 0, &resp, &err);
    /* The line is written when the answer's batch completes: free the server to be
     * sure it was. */
    rpc_server_free(srv_a);
    srv_a = NULL;
    char *text = capture_end(&cap);
    ck_assert_int_eq(rc, 0);
    const char *line = strstr(text, "\"msg\":\"rpc\"");
    ck_assert_msg(line != NULL, "no access line in:\n%s", text);
    ck_assert_ptr_null(strstr(line + 1, "\"msg\":\"rpc\""));
    ck_assert_ptr_nonnull(strstr(line, "\"request_id\":\"req-log-7\""));
    ck_assert_ptr_nonnull(strstr(line, "\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\""));
    ck_assert_ptr_nonnull(strstr(line, "\"method\":\"/shop.test.v1.EchoService/Echo\""));
    ck_assert_ptr_nonnull(strstr(line, "\"code\":\"OK\""));
    ck_assert_ptr_nonnull(strstr(line, "\"duration_ms\":"));
    ck_assert_ptr_nonnull(strstr(line, "\"user_id\":\"user-log\""));
    free(text);
}
END_TEST

START_TEST(test_client_calls_are_counted_per_method_and_code)
{
    const char *series =
        "rpc_client_requests_total{code=\"NOT_FOUND\",method=\"/shop.test.v1.EchoService/Fail\"} ";
    char *before_text = metrics_render(NULL);
    const char *p = strstr(before_text, series);
    double before = p != NULL ? strtod(p + strlen(series), NULL) : 0;
    free(before_text);
    Shop__Test__V1__FailRequest req = SHOP__TEST__V1__FAIL_REQUEST__INIT;
    req.code = 5;
    req.message = "missing";
    ProtobufCMessage *resp;
    err_t err = ERR_INIT;
    ck_assert_int_eq(
        rpc_channel_call(ch, echo_svc, "Fail", &req.base, arena, &resp, NULL, 0, 0, &err),
        ERR_NOT_FOUND);
    char *text = metrics_render(NULL);
    p = strstr(text, series);
    ck_assert_msg(p != NULL, "no %s in:\n%s", series, text);
    ck_assert_double_eq(strtod(p + strlen(series), NULL), before + 1);
    free(text);
}
END_TEST

START_TEST(test_port_in_use_fails_to_start)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(srv_a));
    rpc_server_t *twin = rpc_server_new(&(rpc_server_opts_t){.addr = addr}, NULL);
    err_t err = ERR_INIT;
    ck_assert_int_eq(rpc_server_start(twin, &err), ERR_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err.msg, addr));
    rpc_server_free(twin);
}
END_TEST

START_TEST(test_bad_targets_are_rejected)
{
    err_t err = ERR_INIT;
    ck_assert_ptr_null(rpc_channel_new("127.0.0.1:1,nonsense", NULL, &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
    err_clear(&err);
    ck_assert_ptr_null(rpc_channel_new("", NULL, &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
    err_clear(&err);
    ck_assert_ptr_null(rpc_channel_new("no-such-host.invalid:1,127.0.0.1:2", NULL, &err));
    ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
}
END_TEST

static Suite *rpc_client_suite(void)
{
    Suite *s = suite_create("rpc_client");
    TCase *tc = check_case(s, "c_client", TEST_TIMEOUT_S);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_call_returns_response_and_sends_metadata);
    tcase_add_test(tc, test_failure_returns_code_message_and_field_violations);
    tcase_add_test(tc, test_failure_details_from_another_grpc_library_are_read);
    tcase_add_test(tc, test_slow_answer_is_timeout_at_the_deadline);
    tcase_add_test(tc, test_unreachable_peer_is_unavailable_at_the_deadline);
    tcase_add_test(tc, test_round_robin_reaches_every_address_of_a_list);
    tcase_add_test(tc, test_dns_targets_reach_the_server);
    tcase_add_test(tc, test_call_waits_for_a_server_that_starts_late);
    tcase_add_test(tc, test_async_calls_all_complete_on_the_client_thread);
    tcase_add_test(tc, test_async_failure_reports_code_and_message);
    tcase_add_test(tc, test_unknown_method_or_wrong_request_type_is_invalid);
    tcase_add_test(tc, test_handler_that_never_answers_is_internal);
    tcase_add_test(tc, test_call_past_its_deadline_before_a_worker_frees_is_not_run);
    tcase_add_test(tc, test_each_call_writes_one_access_line);
    tcase_add_test(tc, test_client_calls_are_counted_per_method_and_code);
    tcase_add_test(tc, test_port_in_use_fails_to_start);
    tcase_add_test(tc, test_bad_targets_are_rejected);
    tcase_add_test(tc, test_aged_connections_are_replaced_without_failing_a_call);
    tcase_add_test(tc, test_server_options_out_of_range_are_invalid);
    return s;
}

int main(void)
{
    return check_run(rpc_client_suite(), CK_NOFORK);
}
