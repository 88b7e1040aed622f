/*
 * rpc_echo: the shop.test.v1.EchoService served in-process by the RPC tests, and a
 * runner for the Python client (rpc_client.py, Debian's python3-grpcio).
 */
#ifndef TESTS_RPC_ECHO_H
#define TESTS_RPC_ECHO_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/rpc.h"

/* Per-server state the handlers see through rpc_call_ctx. */
typedef struct echo_ctx {
    const char *instance;  /* returned in EchoResponse.instance and x-echo-instance */
    atomic_int echo_calls; /* Echo handlers run */
    atomic_int sleeping;   /* Sleep handlers running now */
} echo_ctx_t;

/* loaded: an atomic counter's value as a plain int (for readable assertions). */
static inline int loaded(atomic_int *counter)
{
    return atomic_load(counter);
}

/* echo_server_start: an EchoService server on addr ("127.0.0.1:0" for any port)
 * with `workers` threads, started; fails the test when it cannot start. */
rpc_server_t *echo_server_start(const char *addr, echo_ctx_t *ctx, int workers);

/* echo_server_start_opts: the same with every server option given. */
rpc_server_t *echo_server_start_opts(const rpc_server_opts_t *opts, echo_ctx_t *ctx);

/* echo_wait_sleeping: waits up to timeout_ms until n Sleep handlers run at once;
 * returns whether they did. */
int echo_wait_sleeping(echo_ctx_t *ctx, int n, int timeout_ms);

/* rpc_py_spawn: starts /usr/bin/python3 rpc_client.py <port> <scenario> [arg...]
 * (args ends with NULL) with its stdout on a pipe; *fd gets the read end. */
pid_t rpc_py_spawn(int port, const char *scenario, const char *const *args, int *fd);

/* rpc_py_wait: reads the client's stdout into out (NUL-terminated) and waits for it
 * (killing it after 120 s); returns its exit status, or -1 if it did not exit. */
int rpc_py_wait(pid_t pid, int fd, char *out, size_t outsz);

/* rpc_py_run: spawn + wait; the client prints "PASS <scenario>" and exits 0 when
 * everything it checked held. */
int rpc_py_run(int port, const char *scenario, const char *const *args, char *out, size_t outsz);

#endif
