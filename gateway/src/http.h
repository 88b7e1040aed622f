/*
 * http: the gateway's HTTP/1.1 server on libmicrohttpd (docs/architecture.md §5, §6).
 *
 * Threads: MHD's thread pool over epoll serves connections; a request whose
 * answer needs a service is suspended (MHD_suspend_connection) while its gRPC
 * call runs asynchronously, and resumed by the call's completion, so no thread
 * idles on an upstream. The completion only stores the result: everything else
 * (mapping to JSON, Redis, the next call) runs on an MHD thread after the resume.
 *
 * Every request:
 *   - gets a request id: the client's X-Request-Id when it is 1..64 characters of
 *     [A-Za-z0-9._-], else a new UUID; echoed on every response, sent upstream as
 *     x-request-id with a W3C traceparent (the client's when well-formed, else a
 *     new trace), and set as the log context;
 *   - has its body bounded: a Content-Length over the limit is refused at once
 *     with 413, a chunked body is counted as it arrives and refused (413) once it
 *     passes the limit; bodies must be application/json (415 otherwise);
 *   - is routed (404, 405 with Allow; HEAD runs the GET route, and MHD sends
 *     the headers without the body), authenticated as the route requires (the
 *     policy is auth.h's; this layer turns its verdict into 401, 403, 429 or the
 *     failure's problem, with the RateLimit headers of the user's budget), then
 *     handed to the route's handler;
 *   - writes one access log line and updates http_requests_total{route,method,
 *     status} and http_request_duration_seconds{route}.
 * CORS (opts.cors_origins, none by default): a request whose Origin is one of the
 * allowed origins gets Access-Control-Allow-Origin (that origin) and
 * Access-Control-Expose-Headers on every answer; a preflight (OPTIONS with Origin
 * and Access-Control-Request-Method) from one is answered 204 with the path's
 * methods, the requested headers that are allowed, and Access-Control-Max-Age,
 * before authentication. Any other origin gets no CORS header (and a preflight
 * the 405 of any OPTIONS). With origins set, every answer has Vary: Origin.
 * Responses are Cache-Control: no-store unless the handler set its own.
 * Identity comes only from the token: client headers named x-user-* are never
 * read nor forwarded (upstream metadata is built from scratch).
 */
#ifndef GATEWAY_HTTP_H
#define GATEWAY_HTTP_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/rpc.h"
#include "forwarded.h"

typedef struct http_req http_req_t;
typedef struct http_server http_server_t;

/* A route handler: must reply (http_reply_*) or start an upstream call
 * (http_upstream) before returning. Runs on an MHD thread. */
typedef void (*http_handler_fn)(http_req_t *r);

/* What the router's data points to. */
typedef struct http_route {
    auth_need_t auth;
    http_handler_fn handler;
} http_route_t;

typedef struct http_server_opts {
    const char *addr;         /* "0.0.0.0:8080", "127.0.0.1:0", "[::]:8080" */
    int threads;              /* MHD thread pool */
    int max_connections;      /* concurrent connections */
    int connection_timeout_s; /* idle connections are closed after this */
    size_t body_limit;        /* bytes; more is 413 */
    const void *routes;       /* router_route_t[n_routes]; data → http_route_t */
    size_t n_routes;
    int64_t upstream_timeout_ms;      /* deadline of every http_upstream call */
    const auth_t *auth;               /* decides each route's auth_need_t (auth.h) */
    const forwarded_trust_t *proxies; /* whose Forwarded / X-Forwarded-For to believe */
    void *app;                        /* the application's, handed back by http_app */
    const char *cors_origins;         /* comma list of allowed origins ("" or NULL: no CORS) */
} http_server_opts_t;

/* http_server_start: listens and serves. Returns an owned server, or NULL with
 * err (ERR_INVALID bad address or CORS origin, ERR_UNAVAILABLE cannot listen). */
http_server_t *http_server_start(const http_server_opts_t *opts, err_t *err);

/* http_server_port: the bound port. */
int http_server_port(const http_server_t *s);

/* http_server_stop: stops accepting, lets suspended requests finish for up to
 * grace_ms (never less than the upstream deadline plus a second, which bounds each
 * of them), then stops MHD and frees the server. NULL is accepted. */
void http_server_stop(http_server_t *s, int64_t grace_ms);

/* ------------------------------------------------------- inside a handler ---- */
/* Borrowed values, valid until the request completes. */

/* http_app: the opts' app pointer (the transport does not look into it). */
void *http_app(const http_req_t *r);
arena_t *http_arena(const http_req_t *r);
const char *http_request_id(const http_req_t *r);
const char *http_client_ip(const http_req_t *r);
/* http_param: a {name} capture of the route's pattern (NULL if none). */
const char *http_param(const http_req_t *r, const char *name);
/* http_query: a query parameter (the first when repeated), or NULL. */
const char *http_query(const http_req_t *r, const char *name);
/* http_header: a request header (case-insensitive name), or NULL. */
const char *http_header(const http_req_t *r, const char *name);
/* Identity from the token ("" when anonymous). */
const char *http_user_id(const http_req_t *r);
const char *http_user_role(const http_req_t *r);
const char *http_session_id(const http_req_t *r);
bool http_is_admin(const http_req_t *r);

/* http_query_only: true when every query parameter is one of `allowed`
 * (NULL-terminated); otherwise replies 400 naming the first stranger and returns
 * false. */
bool http_query_only(http_req_t *r, const char *const *allowed);

/* http_body_message: the body as a message of type desc (json_pb rules, `deny`
 * as there). An empty body is {} unless `required`. On failure replies (400 or
 * 415) and returns NULL. */
ProtobufCMessage *http_body_message(http_req_t *r, const ProtobufCMessageDescriptor *desc,
                                    const char *const *deny, bool required);

/* http_body_json: the decoded body object (borrowed, NULL when the body was
 * empty); only after http_body_message succeeded. */
const json_t *http_body_json(const http_req_t *r);

/* ---------------------------------------------------------------- replies ---- */

/* http_header_add: a response header (both copied). Before the reply. A name
 * added twice makes one header whose value is the list "first, second". */
void http_header_add(http_req_t *r, const char *name, const char *value);
/* http_reply_json: status with body (the reference is stolen). */
void http_reply_json(http_req_t *r, int status, json_t *body);
/* http_reply_empty: status without a body (204). */
void http_reply_empty(http_req_t *r, int status);
/* http_reply_raw: status with a body of content type ctype (copied). */
void http_reply_raw(http_req_t *r, int status, const char *ctype, const char *body, size_t len);
/* http_reply_problem: problem+json with the given status and detail; err's field
 * violations become errors[] (err may be NULL). */
void http_reply_problem(http_req_t *r, int status, const char *detail, const err_t *err);
/* http_reply_error: the problem for a failed step (problem_from_err). */
void http_reply_error(http_req_t *r, const err_t *err, int precondition_status,
                      const char *const *renames);

/* http_ratelimit_headers: RateLimit-Policy and RateLimit (draft-ietf-httpapi-
 * ratelimit-headers: `"<policy>";q=<limit>;w=<window s>` and
 * `"<policy>";r=<remaining>;t=<reset s>`) for one limit the request counted
 * against; with Retry-After as well when it was refused (remaining 0). */
struct ratelimit_state;
void http_ratelimit_headers(http_req_t *r, const char *policy, const struct ratelimit_state *st,
                            bool refused);

/* -------------------------------------------------------------- upstream ---- */

/* http_done_fn: the end of an upstream call, on an MHD thread after the resume:
 * code 0 with resp (in the request's arena), or a negative ERR_* with err. It
 * must reply or start another call. */
typedef void (*http_done_fn)(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err);

/* http_upstream: calls svc/method on ch with req, with the gateway's metadata
 * (x-request-id, traceparent, x-user-id, x-user-role) and the upstream deadline,
 * suspending the request until it ends; then `done` runs. */
void http_upstream(http_req_t *r, rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                   const char *method, const ProtobufCMessage *req, http_done_fn done);

#endif
