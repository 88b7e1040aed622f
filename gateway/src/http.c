/*
 * http: requests from bytes to handlers and back (http.h).
 *
 * A request's life in MHD's access handler, which MHD calls repeatedly:
 *   1. first call: the request is created (arena, id, trace); a Content-Length
 *      over the limit is answered 413 right away;
 *   2. calls with upload data: the body is counted and kept (or, past the limit,
 *      counted and dropped);
 *   3. the last call: route, authenticate, run the handler. The handler replies,
 *      or suspends the connection with an upstream call;
 *   4. after a resume: the stored upstream result goes to the route's done
 *      function, which replies or suspends again.
 * The reply is queued when the access handler returns with one ready. MHD's
 * completion callback writes the access log, counts, and frees the request.
 */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/span.h"
#include "common/trace.h"
#include "common/uuid.h"
#include "http_framing.h"
#include "http_metrics.h"
#include "common/json_pb.h"
#include "problem.h"
#include "ratelimit.h"
#include "router.h"

#define HTTP_REQUEST_ID_MAX  64
#define HTTP_MAX_HEADERS     16
#define HTTP_DISCARD_FACTOR  4 /* a chunked body this many times the limit closes the connection */
#define HTTP_JSON_CTYPE      "application/json"
#define HTTP_CORS_MAX        16  /* allowed origins */
#define HTTP_CORS_ORIGIN_MAX 256 /* characters of one */
#define HTTP_CORS_MAX_AGE    "600"
/* What a browser script may read of an answer beyond the CORS-safelisted headers. */
#define HTTP_CORS_EXPOSE                                                                           \
    "ETag, Location, Retry-After, RateLimit, RateLimit-Policy, WWW-Authenticate, X-Request-Id"
/* The request headers a cross-origin script may send (besides the safelisted). */
static const char *const http_cors_headers[] = {"Authorization",
                                                "Content-Type",
                                                "Idempotency-Key",
                                                "If-Match",
                                                "If-None-Match",
                                                "X-Request-Id",
                                                NULL};

struct http_server {
    struct MHD_Daemon *daemon;
    http_server_opts_t o;
    http_metrics_t *metrics;
    int port;
    atomic_int suspended;
    char *cors[HTTP_CORS_MAX]; /* allowed origins, exact text */
    size_t n_cors;
};

typedef struct http_header {
    const char *name, *value;
} http_header_t;

struct http_req {
    http_server_t *srv;
    struct MHD_Connection *conn;
    arena_t *arena;
    int64_t start_us;
    const char *method;
    const char *path;
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    span_t span; /* SERVER: upstream calls are its children */
    char trace_id[TRACE_ID_LEN + 1];
    char client_ip[INET6_ADDRSTRLEN];
    const char *cors_origin;  /* the request's Origin when it is allowed, else NULL */
    http_framing_line_t line; /* the request line, for the framing checks */
    bool started;             /* the access handler has seen the request */
    /* routing and identity */
    const router_route_t *route;
    router_params_t params;
    jwt_claims_t claims;
    bool authenticated;
    /* body */
    char *body;
    size_t body_len, body_cap, body_seen;
    bool too_large;
    json_t *body_json;
    /* upstream */
    http_done_fn done;
    int up_code;
    ProtobufCMessage *up_resp;
    err_t up_err;
    const char *up_service;
    bool suspended;
    /* reply */
    int status;
    char *reply; /* malloc'd; handed to MHD */
    size_t reply_len;
    const char *reply_ctype;
    http_header_t headers[HTTP_MAX_HEADERS];
    size_t n_headers;
    bool replied;
    bool queued;
};

/* ------------------------------------------------------------ accessors ---- */

void *http_app(const http_req_t *r)
{
    return r->srv->o.app;
}

arena_t *http_arena(const http_req_t *r)
{
    return r->arena;
}

const char *http_request_id(const http_req_t *r)
{
    return r->request_id;
}

const char *http_client_ip(const http_req_t *r)
{
    return r->client_ip;
}

const char *http_param(const http_req_t *r, const char *name)
{
    return router_param(&r->params, name);
}

const char *http_query(const http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(const http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_user_id(const http_req_t *r)
{
    return r->claims.sub;
}

const char *http_user_role(const http_req_t *r)
{
    return r->claims.role;
}

const char *http_session_id(const http_req_t *r)
{
    return r->claims.sid;
}

bool http_is_admin(const http_req_t *r)
{
    return r->authenticated && strcmp(r->claims.role, "admin") == 0;
}

const json_t *http_body_json(const http_req_t *r)
{
    return r->body_json;
}

/* -------------------------------------------------------------- replies ---- */

void http_header_add(http_req_t *r, const char *name, const char *value)
{
    /* A second value of a header joins the first as a list (RFC 9110 §5.3). */
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) {
            r->headers[i].value = arena_sprintf(r->arena, "%s, %s", r->headers[i].value, value);
            return;
        }
    if (r->n_headers == HTTP_MAX_HEADERS)
        return;
    r->headers[r->n_headers++] =
        (http_header_t){arena_strdup(r->arena, name), arena_strdup(r->arena, value)};
}

static void http_reply_take(http_req_t *r, int status, const char *ctype, char *body, size_t len)
{
    if (r->replied) {
        free(body);
        return;
    }
    r->replied = true;
    r->status = status;
    r->reply = body;
    r->reply_len = len;
    r->reply_ctype = ctype;
}

void http_reply_raw(http_req_t *r, int status, const char *ctype, const char *body, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        abort();
    memcpy(copy, body, len);
    http_reply_take(r, status, ctype, copy, len);
}

static void http_reply_json_ctype(http_req_t *r, int status, json_t *body, const char *ctype)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL)
        abort();
    http_reply_take(r, status, ctype, text, strlen(text));
}

void http_reply_json(http_req_t *r, int status, json_t *body)
{
    http_reply_json_ctype(r, status, body, HTTP_JSON_CTYPE);
}

void http_reply_empty(http_req_t *r, int status)
{
    http_reply_take(r, status, NULL, NULL, 0);
}

void http_reply_problem(http_req_t *r, int status, const char *detail, const err_t *err)
{
    http_reply_json_ctype(r, status, problem_new(status, detail, err, NULL, r->request_id),
                          PROBLEM_CONTENT_TYPE);
}

void http_reply_error(http_req_t *r, const err_t *err, int precondition_status,
                      const char *const *renames)
{
    int status;
    json_t *p = problem_from_err(err, precondition_status, renames, r->request_id, &status);
    http_reply_json_ctype(r, status, p, PROBLEM_CONTENT_TYPE);
}

/* ----------------------------------------------------------------- body ---- */

typedef struct http_query_check {
    const char *const *allowed;
    const char *stranger;
} http_query_check_t;

static enum MHD_Result http_query_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    http_query_check_t *c = cls;
    for (const char *const *a = c->allowed; *a != NULL; a++) {
        if (strcmp(*a, key) == 0)
            return MHD_YES;
    }
    c->stranger = key;
    return MHD_NO;
}

bool http_query_only(http_req_t *r, const char *const *allowed)
{
    http_query_check_t c = {.allowed = allowed};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, http_query_visit, &c);
    if (c.stranger == NULL)
        return true;
    err_t err = ERR_INIT;
    err_field_add(&err, arena_sprintf(r->arena, "query.%.60s", c.stranger),
                  "unknown query parameter");
    http_reply_problem(r, 400, "invalid request", &err);
    return false;
}

static bool http_json_ctype(const char *ctype)
{
    if (ctype == NULL)
        return false;
    size_t n = strlen(HTTP_JSON_CTYPE);
    return strncasecmp(ctype, HTTP_JSON_CTYPE, n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

ProtobufCMessage *http_body_message(http_req_t *r, const ProtobufCMessageDescriptor *desc,
                                    const char *const *deny, bool required)
{
    err_t err = ERR_INIT;
    if (r->body_len == 0) {
        if (required) {
            http_reply_problem(r, 400, "a JSON object body is required", NULL);
            return NULL;
        }
        ProtobufCMessage *m = arena_alloc(r->arena, desc->sizeof_message);
        protobuf_c_message_init(desc, m);
        return m;
    }
    if (!http_json_ctype(http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE))) {
        http_reply_problem(r, 415, "the body must be application/json", NULL);
        return NULL;
    }
    json_error_t je;
    r->body_json = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (r->body_json == NULL) {
        /* Where, not jansson's own words: no library text reaches a client (err.h). */
        char detail[ERR_MSG_MAX];
        snprintf(detail, sizeof(detail), "malformed JSON at line %d column %d", je.line, je.column);
        LOG_DEBUG("malformed JSON body", LOG_STR("error", je.text));
        http_reply_problem(r, 400, detail, NULL);
        return NULL;
    }
    arena_cleanup_add(r->arena, (void (*)(void *))json_decref, r->body_json);
    ProtobufCMessage *m = json_pb_from_json(r->body_json, desc, deny, r->arena, &err);
    if (m == NULL) {
        http_reply_problem(r, 400, err.msg, &err);
        return NULL;
    }
    return m;
}

/* -------------------------------------------------------------- tracing ---- */

static bool http_request_id_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n == HTTP_REQUEST_ID_MAX ||
            !(isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

/* The request id and the request's SERVER span: a child of the client's
 * traceparent when well-formed (W3C trace context, trace.h), else the root of a new
 * trace, sampled as OTEL_TRACES_SAMPLER says (otel.h). Upstream calls are children
 * of this span. Its name waits for the route (http_account). */
static void http_trace_init(http_req_t *r)
{
    const char *rid = http_header(r, "X-Request-Id");
    if (rid != NULL && http_request_id_ok(rid))
        snprintf(r->request_id, sizeof(r->request_id), "%s", rid);
    else
        uuid_new(r->request_id);
    span_start(&r->span, SPAN_SERVER, NULL, http_header(r, "traceparent"));
    memcpy(r->trace_id, r->span.ctx.trace_id, sizeof(r->trace_id));
}

typedef struct http_joined {
    const char *name;
    arena_t *arena;
    char *value;
} http_joined_t;

static enum MHD_Result http_join_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    (void)kind;
    http_joined_t *j = cls;
    if (strcasecmp(key, j->name) == 0)
        j->value = j->value ? arena_sprintf(j->arena, "%s, %s", j->value, value ? value : "")
                            : arena_strdup(j->arena, value ? value : "");
    return MHD_YES;
}

/* Every line of a list-valued header, joined with ", " as RFC 9110 §5.3 reads
 * them (a proxy may add a line of its own rather than append); NULL if absent. */
static const char *http_header_joined(http_req_t *r, const char *name)
{
    http_joined_t j = {.name = name, .arena = r->arena};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, http_join_visit, &j);
    return j.value;
}

/* The TCP peer, or the client behind it when the peer is a trusted proxy. */
static void http_client_addr(http_req_t *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char peer[INET6_ADDRSTRLEN] = "unknown";
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    if (sa != NULL && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, peer, sizeof(peer));
    else if (sa != NULL && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, peer, sizeof(peer));
    if (!forwarded_trusts(r->srv->o.proxies, peer)) {
        snprintf(r->client_ip, sizeof(r->client_ip), "%s", peer);
        return;
    }
    forwarded_client(r->srv->o.proxies, peer, http_header_joined(r, "Forwarded"),
                     http_header_joined(r, "X-Forwarded-For"), r->client_ip);
}

/* ------------------------------------------------------------- upstream ---- */

static void http_upstream_done(void *ud, int code, ProtobufCMessage *resp, const err_t *err)
{
    http_req_t *r = ud;
    r->up_code = code;
    r->up_resp = resp;
    if (err != NULL)
        r->up_err = *err;
    if (code != 0)
        http_metrics_upstream_error(r->srv->metrics, r->up_service, code);
    MHD_resume_connection(r->conn);
}

void http_upstream(http_req_t *r, rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                   const char *method, const ProtobufCMessage *req, http_done_fn done)
{
    rpc_context_t cx = {.request_id = r->request_id, .traceparent = span_traceparent(&r->span)};
    if (r->authenticated) {
        cx.user_id = r->claims.sub;
        cx.user_role = r->claims.role;
    }
    rpc_metadata_t md[RPC_CONTEXT_MD_MAX];
    size_t n_md = rpc_context_metadata(&cx, md);
    r->done = done;
    r->up_service = svc->short_name;
    r->up_resp = NULL;
    err_clear(&r->up_err);
    r->suspended = true;
    atomic_fetch_add(&r->srv->suspended, 1);
    MHD_suspend_connection(r->conn);
    err_t err = ERR_INIT;
    int rc = rpc_channel_call_async(ch, svc, method, req, r->arena, md, n_md,
                                    r->srv->o.upstream_timeout_ms, http_upstream_done, r, &err);
    if (rc != 0)
        http_upstream_done(r, rc, NULL, &err);
}

void http_ratelimit_headers(http_req_t *r, const char *policy, const ratelimit_state_t *st,
                            bool refused)
{
    char v[96];
    snprintf(v, sizeof(v), "\"%s\";q=%lld;w=%lld", policy, (long long)st->limit,
             (long long)st->window_s);
    http_header_add(r, "RateLimit-Policy", v);
    snprintf(v, sizeof(v), "\"%s\";r=%lld;t=%lld", policy, (long long)st->remaining,
             (long long)st->reset_s);
    http_header_add(r, "RateLimit", v);
    if (refused) {
        snprintf(v, sizeof(v), "%lld", (long long)st->reset_s);
        http_header_add(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
}

/* ------------------------------------------------------- authentication ---- */

/* The reply to a verdict (auth.h) that stops the request: 401 with a Bearer
 * challenge, 403, 429, or the failure's own problem. The identity and the budget's
 * headers are taken whatever the outcome. False when the request may not go on. */
static bool http_verdict_apply(http_req_t *r, const auth_verdict_t *v)
{
    r->claims = v->claims;
    r->authenticated = v->identified;
    if (v->counted)
        http_ratelimit_headers(r, v->policy, &v->budget, v->outcome == AUTH_RATE_LIMITED);
    switch (v->outcome) {
    case AUTH_OK:
        return true;
    case AUTH_UNAUTHENTICATED:
        http_header_add(r, "WWW-Authenticate",
                        v->token_missing ? "Bearer" : "Bearer error=\"invalid_token\"");
        http_reply_problem(r, 401,
                           v->token_missing ? "a bearer token is required"
                                            : "the token is invalid, expired or revoked",
                           NULL);
        return false;
    case AUTH_FORBIDDEN:
        http_reply_problem(r, 403, "this operation needs the admin role", NULL);
        return false;
    case AUTH_RATE_LIMITED:
        http_reply_problem(r, 429, "request budget exceeded, retry later", NULL);
        return false;
    case AUTH_UNAVAILABLE:
    default:
        http_reply_error(r, &v->err, 409, NULL);
        return false;
    }
}

static bool http_authenticate(http_req_t *r, auth_need_t need)
{
    auth_verdict_t v;
    auth_check(r->srv->o.auth, need, http_header(r, MHD_HTTP_HEADER_AUTHORIZATION),
               clock_now_us() / 1000000, &v);
    return http_verdict_apply(r, &v);
}

/* ------------------------------------------------------------- dispatch ---- */

/* HEAD is allowed wherever GET is (the router's table lists GET only). */
static void http_allow_head(char allow[ROUTER_ALLOW_MAX])
{
    size_t n = strlen(allow);
    bool get = strcmp(allow, "GET") == 0 || strncmp(allow, "GET, ", 5) == 0 ||
               strstr(allow, ", GET") != NULL;
    if (get && n + sizeof(", HEAD") <= ROUTER_ALLOW_MAX)
        strcat(allow, ", HEAD");
}

static bool http_cors_header_allowed(const char *name, size_t len)
{
    for (const char *const *h = http_cors_headers; *h != NULL; h++)
        if (strlen(*h) == len && strncasecmp(*h, name, len) == 0)
            return true;
    return false;
}

/* A CORS preflight from an allowed origin (Fetch standard, "CORS-preflight
 * fetch"): 204 with the path's methods and those of the requested headers that
 * are allowed; the browser decides from them. False when this is no such
 * preflight (or the path has no route), so the request goes on as any OPTIONS. */
static bool http_cors_preflight(http_req_t *r)
{
    if (r->cors_origin == NULL || strcmp(r->method, "OPTIONS") != 0 ||
        http_header(r, "Access-Control-Request-Method") == NULL)
        return false;
    char allow[ROUTER_ALLOW_MAX];
    const router_route_t *route;
    router_params_t params;
    if (router_match(r->srv->o.routes, r->srv->o.n_routes, "OPTIONS", r->path, &route, &params,
                     allow) != 405)
        return false;
    http_allow_head(allow);
    http_header_add(r, "Access-Control-Allow-Methods", allow);
    const char *req_headers = http_header_joined(r, "Access-Control-Request-Headers");
    for (const char *p = req_headers; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ", \t");
        if (len > 0 && http_cors_header_allowed(p, len))
            http_header_add(r, "Access-Control-Allow-Headers", arena_strndup(r->arena, p, len));
        p += len;
    }
    http_header_add(r, "Access-Control-Max-Age", HTTP_CORS_MAX_AGE);
    http_reply_empty(r, 204);
    return true;
}

static void http_dispatch(http_req_t *r)
{
    if (http_cors_preflight(r))
        return;
    char allow[ROUTER_ALLOW_MAX];
    /* HEAD is GET without the body, which MHD leaves out by itself. */
    const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    int found = router_match(r->srv->o.routes, r->srv->o.n_routes, method, r->path, &r->route,
                             &r->params, allow);
    if (found == 404) {
        http_reply_problem(r, 404, "no such resource", NULL);
        return;
    }
    if (found == 405) {
        http_allow_head(allow);
        http_header_add(r, MHD_HTTP_HEADER_ALLOW, allow);
        http_reply_problem(r, 405, "method not allowed here", NULL);
        return;
    }
    const http_route_t *route = r->route->data;
    if (r->too_large) {
        http_reply_problem(r, 413, "the request body is too large", NULL);
        return;
    }
    if (!http_authenticate(r, route->auth))
        return;
    route->handler(r);
    if (!r->replied && !r->suspended) {
        err_t err = ERR_INIT;
        err_set(&err, ERR_INTERNAL, "handler of %s returned without a reply", r->route->pattern);
        http_reply_error(r, &err, 409, NULL);
    }
}

static bool http_has_header(const http_req_t *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return true;
    return false;
}

static enum MHD_Result http_queue(http_req_t *r)
{
    if (r->srv->n_cors > 0)
        http_header_add(r, "Vary", "Origin");
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        r->reply_len, r->reply, r->reply != NULL ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    r->reply = NULL; /* MHD frees it now */
    if (r->reply_ctype != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->reply_ctype);
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    if (!http_has_header(r, MHD_HTTP_HEADER_CACHE_CONTROL))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r->cors_origin != NULL) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors_origin);
        if (r->status != 204 || !http_has_header(r, "Access-Control-Allow-Methods"))
            MHD_add_response_header(resp, "Access-Control-Expose-Headers", HTTP_CORS_EXPOSE);
    }
    for (size_t i = 0; i < r->n_headers; i++)
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    r->queued = true;
    return rc;
}

/* Keeps up to body_limit bytes; counts the rest and remembers it was too much. */
static enum MHD_Result http_body_chunk(http_req_t *r, const char *data, size_t n)
{
    size_t limit = r->srv->o.body_limit;
    r->body_seen += n;
    if (r->body_seen > limit) {
        r->too_large = true;
        return r->body_seen > limit * HTTP_DISCARD_FACTOR ? MHD_NO : MHD_YES;
    }
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap > 0 ? r->body_cap : 1024;
        while (cap < r->body_len + n)
            cap *= 2;
        cap = cap > limit ? limit : cap;
        char *b = realloc(r->body, cap);
        if (b == NULL)
            abort();
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    return MHD_YES;
}

/* MHD's URI log callback: a request begins (its headers are not parsed yet). What
 * it returns becomes the request's *con_cls, so that even a request MHD refuses by
 * itself later (too large a head) is accounted and freed by http_completed. */
static void *http_req_new(void *cls, const char *uri, struct MHD_Connection *conn)
{
    arena_t *a = arena_new(0);
    http_req_t *r = arena_calloc(a, 1, sizeof(*r));
    r->srv = cls;
    r->conn = conn;
    r->arena = a;
    r->start_us = clock_mono_us();
    r->method = "";
    r->path = "";
    r->line.raw_uri = uri;
    r->line.raw_uri_len = strlen(uri);
    r->line.pct_nul = http_framing_pct_nul(uri);
    snprintf(r->client_ip, sizeof(r->client_ip), "unknown");
    return r;
}

/* The first call of the access handler: the request line and headers are parsed.
 * MHD_NO closes the connection; MHD_YES with a queued answer refuses the request. */
static enum MHD_Result http_req_start(http_req_t *r, const char *url, const char *method,
                                      const char *version)
{
    r->started = true;
    r->method = arena_strdup(r->arena, method);
    r->path = arena_strdup(r->arena, url);
    http_trace_init(r);
    http_client_addr(r);
    const char *origin = http_header(r, "Origin");
    for (size_t i = 0; origin != NULL && i < r->srv->n_cors; i++)
        if (strcmp(origin, r->srv->cors[i]) == 0)
            r->cors_origin = r->srv->cors[i];
    log_ctx_set(r->request_id, r->trace_id);
    r->line.method = method;
    r->line.version = version;
    const char *detail = NULL;
    int status = http_framing_check(r->conn, &r->line, &detail);
    if (status != 0) {
        /* The rest of the bytes on this connection cannot be trusted to frame a
         * next request: answer and close. */
        http_header_add(r, MHD_HTTP_HEADER_CONNECTION, "close");
        http_reply_problem(r, status, detail, NULL);
        return http_queue(r);
    }
    const char *cl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > r->srv->o.body_limit) {
        r->too_large = true;
        http_reply_problem(r, 413, "the request body is too large", NULL);
        return http_queue(r);
    }
    return MHD_YES;
}

static enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    http_server_t *s = cls;
    http_req_t *r = *con_cls;
    if (r == NULL) /* never: the URI log callback made it */
        return MHD_NO;
    if (!r->started) {
        enum MHD_Result rc = http_req_start(r, url, method, version);
        log_ctx_set(NULL, NULL);
        return rc;
    }
    log_ctx_set(r->request_id, r->trace_id);
    if (*upload_data_size > 0) {
        enum MHD_Result rc = http_body_chunk(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return rc;
    }
    if (r->queued)
        return MHD_YES;
    if (r->suspended) {
        /* Resumed: the upstream call ended. */
        r->suspended = false;
        atomic_fetch_sub(&s->suspended, 1);
        http_done_fn done = r->done;
        r->done = NULL;
        done(r, r->up_code, r->up_resp, &r->up_err);
        if (!r->replied && !r->suspended) {
            err_t err = ERR_INIT;
            err_set(&err, ERR_INTERNAL, "done of %s returned without a reply", r->route->pattern);
            http_reply_error(r, &err, 409, NULL);
        }
    } else {
        http_dispatch(r);
    }
    enum MHD_Result rc = r->suspended ? MHD_YES : http_queue(r);
    log_ctx_set(NULL, NULL);
    return rc;
}

/* Ends the request's span, named "<METHOD> <route template>" (OpenTelemetry's
 * HTTP server span name; the method alone when no route matched). */
static void http_span_end(http_req_t *r, int code)
{
    if (!span_recording(&r->span))
        return;
    if (r->route != NULL)
        span_set_namef(&r->span, "%s %s", r->method, r->route->pattern);
    else
        span_set_namef(&r->span, "%s", r->method);
    span_set_str(&r->span, "http.request.method", r->method);
    span_set_str(&r->span, "http.route", r->route != NULL ? r->route->pattern : NULL);
    span_set_str(&r->span, "url.path", r->path);
    span_set_int(&r->span, "http.response.status_code", code);
    span_set_str(&r->span, "client.address", r->client_ip);
    if (code >= 500 || code == 0)
        span_fail(&r->span, code == 0 ? "no response sent" : "server error");
    span_end(&r->span);
}

static void http_account(http_req_t *r, enum MHD_RequestTerminationCode toe)
{
    const char *route = r->route != NULL ? r->route->pattern : "unmatched";
    int code = r->queued ? r->status : 0;
    if (!r->started) {
        /* Refused by MHD itself before the access handler (a head too large to
         * parse): its status, when it answered. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        code = ci != NULL ? (int)ci->http_status : 0;
    }
    int64_t us = clock_mono_us() - r->start_us;
    double secs = (double)us / 1e6;
    http_metrics_request(http_metrics_route(r->srv->metrics, r->route, r->method), code, secs);
    log_ctx_set(r->request_id, r->trace_id);
    LOG_INFO("http", LOG_STR("method", r->method), LOG_STR("path", r->path),
             LOG_STR("route", route), LOG_INT("status", code), LOG_MS("duration_ms", us),
             LOG_INT("bytes_in", r->body_seen), LOG_INT("bytes_out", r->reply_len),
             LOG_STR("client", r->client_ip), LOG_STR("user_id", r->claims.sub),
             LOG_BOOL("completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK));
    log_ctx_set(NULL, NULL);
    http_span_end(r, code);
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    http_req_t *r = *con_cls;
    if (r == NULL)
        return;
    *con_cls = NULL;
    /* A client that hung up while suspended is closed at the resume, without
     * another call of the access handler: its upstream call is over all the same. */
    if (r->suspended)
        atomic_fetch_sub(&r->srv->suspended, 1);
    http_account(r, toe);
    free(r->reply);
    free(r->body);
    arena_free(r->arena);
}

/* ------------------------------------------------------------- lifecycle ---- */

__attribute__((format(printf, 2, 0))) static void http_mhd_log(void *cls, const char *fmt,
                                                               va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    LOG_WARN("http server", LOG_STR("detail", msg));
}

/* "[v6]:port", "v4:port" or ":port". */
static int http_parse_addr(const char *addr, struct sockaddr_storage *ss, bool *v6, err_t *err)
{
    memset(ss, 0, sizeof(*ss));
    const char *colon = addr != NULL ? strrchr(addr, ':') : NULL;
    char *end;
    long port = colon != NULL ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return err_set(err, ERR_INVALID, "GATEWAY_ADDR: expected host:port, got \"%s\"",
                       addr != NULL ? addr : "");
    char host[64];
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof(host))
        return err_set(err, ERR_INVALID, "GATEWAY_ADDR: host too long");
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    *v6 = hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']';
    if (*v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        host[hlen - 1] = '\0';
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
            return err_set(err, ERR_INVALID, "GATEWAY_ADDR: bad IPv6 host");
        return 0;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (hlen == 0)
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return err_set(err, ERR_INVALID, "GATEWAY_ADDR: bad IPv4 host \"%s\"", host);
    return 0;
}

static void http_cors_free(http_server_t *s)
{
    for (size_t i = 0; i < s->n_cors; i++)
        free(s->cors[i]);
    s->n_cors = 0;
}

/* "https://shop.example, http://localhost:3000": each an origin as browsers send
 * it (scheme://host[:port], no path, no trailing slash), compared exactly. */
static int http_cors_parse(http_server_t *s, const char *list, err_t *err)
{
    for (const char *p = list; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == 0)
            break;
        const char *host = len > 8 && strncmp(p, "https://", 8) == 0  ? p + 8
                           : len > 7 && strncmp(p, "http://", 7) == 0 ? p + 7
                                                                      : NULL;
        bool ok = host != NULL && len < HTTP_CORS_ORIGIN_MAX;
        for (const char *c = host; ok && c < p + len; c++)
            ok = isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == ':' || *c == '[' ||
                 *c == ']';
        if (!ok)
            return err_set(err, ERR_INVALID,
                           "CORS_ALLOWED_ORIGINS: \"%.*s\" is not an origin (scheme://host[:port])",
                           (int)(len < 80 ? len : 80), p);
        if (s->n_cors == HTTP_CORS_MAX)
            return err_set(err, ERR_INVALID, "CORS_ALLOWED_ORIGINS: more than %d origins",
                           HTTP_CORS_MAX);
        if ((s->cors[s->n_cors] = strndup(p, len)) == NULL)
            abort();
        s->n_cors++;
        p += len;
    }
    return 0;
}

http_server_t *http_server_start(const http_server_opts_t *opts, err_t *err)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    if (http_parse_addr(opts->addr, &ss, &v6, err) < 0)
        return NULL;
    http_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->o = *opts;
    if (http_cors_parse(s, opts->cors_origins, err) != 0) {
        http_cors_free(s);
        free(s);
        return NULL;
    }
    s->metrics = http_metrics_new(opts->routes, opts->n_routes);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    errno = 0;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_handle, s, MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)opts->threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)opts->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->connection_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, http_completed, s, MHD_OPTION_URI_LOG_CALLBACK, http_req_new,
        s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_FRAMING_MHD_MEMORY,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1U, MHD_OPTION_END);
    if (s->daemon == NULL) {
        int e = errno;
        http_metrics_free(s->metrics);
        http_cors_free(s);
        free(s);
        err_set(err, ERR_UNAVAILABLE, "cannot listen on %s: %s", opts->addr,
                e != 0 ? strerror(e) : "unknown error");
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info != NULL ? info->port : 0;
    return s;
}

int http_server_port(const http_server_t *s)
{
    return s->port;
}

void http_server_stop(http_server_t *s, int64_t grace_ms)
{
    if (s == NULL)
        return;
    /* No new connections; suspended requests end with their upstream deadline and
     * must all be resumed before MHD_stop_daemon (docs/libraries.md "libmicrohttpd"). */
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    /* Every suspended request is resumed by its call's deadline at the latest: never
     * stop before that, or a late completion would find its request freed. */
    int64_t floor_ms = s->o.upstream_timeout_ms + 1000;
    int64_t until = clock_mono_us() + (grace_ms > floor_ms ? grace_ms : floor_ms) * 1000;
    while (atomic_load(&s->suspended) > 0 && clock_mono_us() < until)
        clock_sleep_ms(10);
    if (atomic_load(&s->suspended) > 0)
        LOG_WARN("stopping with suspended requests", LOG_INT("n", atomic_load(&s->suspended)));
    MHD_stop_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    http_metrics_free(s->metrics);
    http_cors_free(s);
    free(s);
}
