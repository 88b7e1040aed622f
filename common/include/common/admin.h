/*
 * admin: each service's small HTTP server for operators and orchestrators
 * (docs/architecture.md §6), on its own port, apart from the gRPC traffic:
 *
 *   GET /healthz  200 {"status":"ok"}: the process is alive and serving
 *   GET /readyz   200 {"status":"ready"}, or 503 {"status":"not ready","reason":"..."}
 *                 when the readiness callback says a dependency is not usable
 *   GET /metrics  the metrics registry, Prometheus text format 0.0.4
 *
 * Other paths answer 404 and other methods 405. HEAD is served like GET. Requests
 * are counted in admin_http_requests_total{path,code}.
 */
#ifndef COMMON_ADMIN_H
#define COMMON_ADMIN_H

#include "common/err.h"

typedef struct admin_server admin_server_t;

/* admin_ready_fn: 0 when the service can take traffic; otherwise a negative code
 * with err->msg saying why (it becomes the 503's "reason"). Runs on one of the
 * server's two threads, possibly on both at once: it must be thread-safe and should
 * answer quickly (probe with a short timeout or report cached state). */
typedef int (*admin_ready_fn)(void *ud, err_t *err);

/* admin_server_start: listens on addr and serves from background threads.
 * addr is "host:port" with an IPv4 host ("127.0.0.1:8082", "0.0.0.0:8082"), an IPv6
 * one in brackets ("[::1]:8082"), or no host (":8082", every IPv4 interface). Port 0
 * picks a free port (see admin_server_port). ready may be NULL (always ready); ud is
 * passed to it. Returns an owned server, or NULL with err set: ERR_INVALID for a bad
 * address, ERR_UNAVAILABLE when the address cannot be bound. */
admin_server_t *admin_server_start(const char *addr, admin_ready_fn ready, void *ud, err_t *err);

/* admin_server_port: the port actually listened on. */
int admin_server_port(const admin_server_t *s);

/* admin_server_stop: stops serving, waits for the threads and frees the server.
 * NULL is accepted. Not to be called from the ready callback. */
void admin_server_stop(admin_server_t *s);

#endif
