/*
 * rpc_echo: the test service's handlers and the Python client runner.
 */
#include "rpc_echo.h"

#include <check.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "shop/test/v1/echo_service.pb-c.h"

#define PYTHON        "/usr/bin/python3"
#define PY_WAIT_MS    120000
#define PY_MAX_ARGS   16
#define SLEEP_STEP_MS 5

extern char **environ;

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

static void echo_echo(Shop__Test__V1__EchoService_Service *svc,
                      const Shop__Test__V1__EchoRequest *req,
                      Shop__Test__V1__EchoResponse_Closure done, void *call_data)
{
    rpc_call_t *call = call_data;
    echo_ctx_t *ctx = rpc_call_ctx(call);
    atomic_fetch_add(&ctx->echo_calls, 1);
    Shop__Test__V1__EchoResponse resp = SHOP__TEST__V1__ECHO_RESPONSE__INIT;
    resp.message = req->message;
    resp.request_id = (char *)or_empty(rpc_call_request_id(call));
    resp.traceparent = (char *)or_empty(rpc_call_traceparent(call));
    resp.user_id = (char *)or_empty(rpc_call_user_id(call));
    resp.user_role = (char *)or_empty(rpc_call_user_role(call));
    resp.instance = (char *)ctx->instance;
    if (rpc_call_add_metadata(call, "x-echo-instance", ctx->instance) != 0) {
        rpc_call_failf(call, ERR_INTERNAL, "x-echo-instance refused");
        done(NULL, call_data);
        return;
    }
    done(&resp, call_data);
}

static void echo_fail(Shop__Test__V1__EchoService_Service *svc,
                      const Shop__Test__V1__FailRequest *req,
                      Shop__Test__V1__FailResponse_Closure done, void *call_data)
{
    if (req->code == 0) {
        Shop__Test__V1__FailResponse resp = SHOP__TEST__V1__FAIL_RESPONSE__INIT;
        done(&resp, call_data);
        return;
    }
    err_t err = ERR_INIT;
    if (req->internal)
        err_set(&err, err_from_grpc_status(req->code), "%s", req->message);
    else
        err_set_client(&err, err_from_grpc_status(req->code), "%s", req->message);
    for (size_t i = 0; i < req->n_violations; i++)
        err_field_add(&err, req->violations[i]->field, "%s", req->violations[i]->description);
    rpc_call_fail(call_data, &err);
    done(NULL, call_data);
}

static void echo_sleep(Shop__Test__V1__EchoService_Service *svc,
                       const Shop__Test__V1__SleepRequest *req,
                       Shop__Test__V1__SleepResponse_Closure done, void *call_data)
{
    rpc_call_t *call = call_data;
    echo_ctx_t *ctx = rpc_call_ctx(call);
    atomic_fetch_add(&ctx->sleeping, 1);
    int slept = 0;
    while (slept < req->millis && !rpc_call_cancelled(call)) {
        clock_sleep_ms(SLEEP_STEP_MS);
        slept += SLEEP_STEP_MS;
    }
    atomic_fetch_sub(&ctx->sleeping, 1);
    if (slept < req->millis) {
        rpc_call_failf(call, ERR_TIMEOUT, "sleep interrupted after %d ms", slept);
        done(NULL, call_data);
        return;
    }
    Shop__Test__V1__SleepResponse resp = SHOP__TEST__V1__SLEEP_RESPONSE__INIT;
    resp.slept_millis = slept;
    done(&resp, call_data);
}

static void echo_forget(Shop__Test__V1__EchoService_Service *svc,
                        const Shop__Test__V1__ForgetRequest *req,
                        Shop__Test__V1__ForgetResponse_Closure done, void *call_data)
{
    /* Returns without calling done, on purpose. */
}

static Shop__Test__V1__EchoService_Service echo_service = SHOP__TEST__V1__ECHO_SERVICE__INIT(echo_);

rpc_server_t *echo_server_start(const char *addr, echo_ctx_t *ctx, int workers)
{
    return echo_server_start_opts(
        &(rpc_server_opts_t){.addr = addr, .name = ctx->instance, .workers = workers}, ctx);
}

rpc_server_t *echo_server_start_opts(const rpc_server_opts_t *opts, echo_ctx_t *ctx)
{
    err_t err = ERR_INIT;
    rpc_server_t *srv = rpc_server_new(opts, &err);
    ck_assert_msg(srv != NULL, "rpc_server_new: %s", err.msg);
    ck_assert_int_eq(rpc_server_add_service(srv, (ProtobufCService *)&echo_service, ctx), 0);
    ck_assert_msg(rpc_server_start(srv, &err) == 0, "rpc_server_start: %s", err.msg);
    ck_assert_int_gt(rpc_server_port(srv), 0);
    return srv;
}

int echo_wait_sleeping(echo_ctx_t *ctx, int n, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += SLEEP_STEP_MS) {
        if (atomic_load(&ctx->sleeping) >= n)
            return 1;
        clock_sleep_ms(SLEEP_STEP_MS);
    }
    return atomic_load(&ctx->sleeping) >= n;
}

pid_t rpc_py_spawn(int port, const char *scenario, const char *const *args, int *fd)
{
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    const char *argv[PY_MAX_ARGS] = {PYTHON, RPC_CLIENT_PY, port_s, scenario};
    size_t n = 4;
    for (size_t i = 0; args != NULL && args[i] != NULL && n < PY_MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    posix_spawn_file_actions_addclose(&fa, p[1]);
    pid_t pid;
    int rc = posix_spawn(&pid, PYTHON, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    ck_assert_msg(rc == 0, "posix_spawn %s: %s", PYTHON, strerror(rc));
    *fd = p[0];
    return pid;
}

int rpc_py_wait(pid_t pid, int fd, char *out, size_t outsz)
{
    size_t len = 0;
    int64_t until = clock_mono_us() + (int64_t)PY_WAIT_MS * 1000;
    for (;;) {
        int left_ms = (int)((until - clock_mono_us()) / 1000);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0)
            break;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        size_t keep = (size_t)n < outsz - 1 - len ? (size_t)n : outsz - 1 - len;
        memcpy(out + len, buf, keep);
        len += keep;
    }
    out[len] = '\0';
    close(fd);
    int status;
    if (clock_mono_us() >= until)
        kill(pid, SIGKILL);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

int rpc_py_run(int port, const char *scenario, const char *const *args, char *out, size_t outsz)
{
    int fd;
    pid_t pid = rpc_py_spawn(port, scenario, args, &fd);
    return rpc_py_wait(pid, fd, out, outsz);
}
