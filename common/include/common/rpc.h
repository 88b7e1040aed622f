/*
 * rpc: unary gRPC on the gRPC C core, driven by protobuf-c service descriptors
 * (docs/architecture.md §2, docs/style.md "gRPC, protobuf, Kafka").
 *
 * Server. Handlers are the functions of a protobuf-c generated service, so a
 * missing handler is a link error:
 *
 *   static void order_get_order(Shop__Order__V1__OrderService_Service *svc,
 *                               const Shop__Order__V1__GetOrderRequest *req,
 *                               Shop__Order__V1__GetOrderResponse_Closure done, void *call_data)
 *   {
 *       rpc_call_t *call = call_data;
 *       Shop__Order__V1__GetOrderResponse resp = SHOP__ORDER__V1__GET_ORDER_RESPONSE__INIT;
 *       if (!found) {
 *           rpc_call_failf(call, ERR_NOT_FOUND, "order not found");
 *           done(NULL, call_data);
 *           return;
 *       }
 *       ...
 *       done(&resp, call_data);
 *   }
 *   static Shop__Order__V1__OrderService_Service order_service =
 *       SHOP__ORDER__V1__ORDER_SERVICE__INIT(order_);
 *   rpc_server_add_service(srv, (ProtobufCService *)&order_service, ctx);
 *
 * `done` packs the response at once, so it may live on the handler's stack or in
 * the call's arena. `done` must be called once, before the handler returns; a
 * handler that returns without calling it is answered INTERNAL (and logged). The request and everything allocated from
 * rpc_call_arena() live until the call's last completion, after the handler.
 *
 * Each call runs on one of the server's worker threads from start to end, so a
 * handler may block (libpq): size `workers` to the database pool. Every method of
 * every service is served, plus grpc.health.v1.Health/Check; any other method is
 * answered UNIMPLEMENTED at once. Each call writes one access log line ("rpc", at
 * info; debug for health checks) and updates rpc_server_requests_total{method,code}
 * and rpc_server_duration_seconds{method}.
 *
 * Failures travel as the gRPC status: code = err_to_grpc_status(err->code),
 * message = err->msg, and field violations as gRPC's rich error: a serialized
 * google.rpc.Status {code, message, details: [google.rpc.BadRequest]} in the
 * trailing metadata key "grpc-status-details-bin", once rpc_call_fail has redacted
 * what was not written for the client.
 *
 * Traces (span.h): every call served, health checks aside, runs inside a SERVER span
 * named "<package.Service>/<Method>", child of the caller's "traceparent" metadata;
 * it is the thread's current span (span_current) while the handler runs. A client
 * call whose metadata carries a "traceparent" gets a CLIENT span, child of it, and
 * the peer receives the CLIENT span's context instead.
 *
 * Client. One rpc_channel_t per upstream target, shared by every thread. Calls are
 * unary, always carry a deadline, wait for the peer to become ready within that
 * deadline, and are balanced round_robin over every address of the target.
 *
 * Mutual TLS (docs/trust.md). A server given rpc_tls_t answers only clients whose
 * certificate the CA signed (the handshake fails for a client without one, with
 * one from another CA, or speaking plaintext), and a channel given one presents
 * its program's certificate and checks the server's against the CA and the target's
 * host name. A peer is known by its certificate's CN (rpc_call_peer), which is
 * the program's name: gateway, order-svc, product-svc, user-svc.
 *
 * The x-user-* gate. Metadata from the gateway (x-request-id, traceparent, x-user-id,
 * x-user-role) says for whom a call is made. A TLS server believes x-user-id and
 * x-user-role only from the peers named in user_callers (default "gateway"): a
 * call carrying either from any other peer is answered PERMISSION_DENIED before its
 * handler runs (logged at warn, counted like any other status). Calls without
 * x-user-* from other fleet certificates are served (order-svc → product-svc).
 * Without TLS (GRPC_PLAINTEXT=true, or in-process tests) there is no peer identity
 * and any caller may speak for any user. Services still check ownership themselves
 * (docs/architecture.md §2).
 *
 * Health/Check is served on the gRPC port like every method, so over TLS a probe
 * needs a certificate from the CA (grpcurl -cacert ca.crt -cert c.crt -key c.key);
 * orchestrators probe the admin HTTP port's /healthz and /readyz instead (admin.h),
 * which stay plain HTTP.
 *
 * gRPC itself is initialised by the first server or channel and shut down with the
 * last one, so a process that frees everything leaves nothing behind. Host names
 * are resolved with getaddrinfo (gRPC's "native" resolver): before initialising gRPC
 * the first time, rpc sets GRPC_DNS_RESOLVER=native unless the environment already
 * names a resolver. Create the first server or channel in main(), before other
 * threads read the environment (setenv is not thread-safe).
 */
#ifndef COMMON_RPC_H
#define COMMON_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/config.h"
#include "common/err.h"

typedef struct rpc_server rpc_server_t;
typedef struct rpc_call rpc_call_t;
typedef struct rpc_channel rpc_channel_t;

/* One metadata entry: a lower-case key ([a-z0-9._-]) and a printable ASCII value.
 * Binary ("-bin") keys are not supported here. */
typedef struct rpc_metadata {
    const char *key;
    const char *value;
} rpc_metadata_t;

/* ------------------------------------------------------------------- tls ---- */

/* The PEM texts of mutual TLS, for a server and the channels of one program: the
 * CA that signs every peer's certificate, and the program's own certificate and
 * private key (its identity, both as a server and as a client). */
typedef struct rpc_tls {
    const char *ca_pem;
    const char *cert_pem;
    const char *key_pem;
    const char *name; /* the certificate's CN, for log lines (rpc_tls_load fills it) */
} rpc_tls_t;

/* rpc_tls_load: reads the three PEM files once and checks them: the CA parses, the
 * certificate parses, the CA signed it, and the key is the certificate's. Returns
 * an owned rpc_tls_t (rpc_tls_free), or NULL with err (ERR_INVALID) naming the
 * variable of the file at fault (TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE). */
rpc_tls_t *rpc_tls_load(const char *ca_file, const char *cert_file, const char *key_file,
                        err_t *err);

/* rpc_tls_free: frees what rpc_tls_load returned; NULL is accepted. */
void rpc_tls_free(rpc_tls_t *tls);

/* The settings every program that speaks gRPC reads (config.h), in rpc_tls_cfg_table:
 * TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, GRPC_PLAINTEXT. */
typedef struct rpc_tls_cfg {
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    bool plaintext;
} rpc_tls_cfg_t;

extern const cfg_entry_t rpc_tls_cfg_table[];
extern const size_t rpc_tls_cfg_n;

/* rpc_tls_setup: the program's TLS from its settings. Returns 0 with *out owned
 * (rpc_tls_free) when the three files are set and good, or 0 with *out NULL when
 * GRPC_PLAINTEXT=true (logged once at warn: any caller may speak for any user);
 * otherwise ERR_INVALID with a message naming the variables (the program refuses to
 * start). */
int rpc_tls_setup(const rpc_tls_cfg_t *cfg, rpc_tls_t **out, err_t *err);

/* rpc_user_callers_check: 0 when `list` is a comma list of certificate CNs
 * ([A-Za-z0-9._-]+ each), else ERR_INVALID naming RPC_USER_CALLERS. */
int rpc_user_callers_check(const char *list, err_t *err);

/* ---------------------------------------------------------------- server ---- */

typedef struct rpc_server_opts {
    const char *addr;      /* "0.0.0.0:50052"; "127.0.0.1:0" picks a free port */
    const char *name;      /* for log lines; NULL → "rpc" */
    int workers;           /* threads running handlers; 0 → 4 */
    int slots_per_method;  /* calls the core may hand over at once per method; 0 → workers */
    int max_message_bytes; /* each way; 0 → 4 MiB */
    /* A connection is closed (GOAWAY, its calls given max_connection_grace_ms to end)
     * once it is this old, ±10 %: clients reconnect and resolve the service's name
     * again, so replicas added behind that name get calls. 0 → never. */
    int64_t max_connection_age_ms;
    int64_t max_connection_grace_ms; /* 0 → 10 s */
    /* Mutual TLS (copied); NULL: plaintext, any client, no peer identity. */
    const rpc_tls_t *tls;
    /* Comma list of certificate CNs whose x-user-* metadata is believed (TLS only);
     * NULL or "" → "gateway". */
    const char *user_callers;
} rpc_server_opts_t;

/* rpc_server_new: a server that is not yet listening. The options are copied.
 * Returns an owned server (release with rpc_server_free), or NULL with err set to
 * ERR_INVALID for a missing address or a negative number. */
rpc_server_t *rpc_server_new(const rpc_server_opts_t *opts, err_t *err);

/* rpc_server_add_service: serves every method of `service` ("/<package.Service>/
 * <Method>"); `ctx` is handed to its handlers through rpc_call_ctx. The service and
 * ctx are borrowed and must outlive the server. Only before rpc_server_start, from
 * the thread that owns the server. Every method is served as unary (protobuf-c
 * descriptors do not say which methods stream: keep streaming methods out of
 * served services). Returns 0, or ERR_INVALID when already started or when a
 * service of that name was already added. */
int rpc_server_add_service(rpc_server_t *srv, ProtobufCService *service, void *ctx);

/* rpc_server_start: binds the address (with TLS when opts->tls) and starts the workers. The server reports
 * SERVING until rpc_server_set_serving(srv, false). Returns 0, ERR_UNAVAILABLE when
 * the address cannot be bound (also when another process holds the port), or
 * ERR_INVALID when called twice. Once only. */
int rpc_server_start(rpc_server_t *srv, err_t *err);

/* rpc_server_port: the port bound by rpc_server_start (0 before it). */
int rpc_server_port(const rpc_server_t *srv);

/* rpc_server_set_serving: what Health/Check answers for "" and for every added
 * service: SERVING or NOT_SERVING (a name the server does not serve is NOT_FOUND).
 * Thread-safe. */
void rpc_server_set_serving(rpc_server_t *srv, bool serving);

/* rpc_server_shutdown: stops accepting calls (new ones fail UNAVAILABLE), lets the
 * calls in flight finish for up to grace_ms, then cancels the rest (clients see
 * CANCELLED; rpc_call_cancelled turns true so long handlers can stop), waits for
 * every handler to return, and stops the workers. Idempotent; not from a handler. */
void rpc_server_shutdown(rpc_server_t *srv, int64_t grace_ms);

/* rpc_server_free: shuts down with no grace if that was not done, then frees.
 * NULL is accepted. */
void rpc_server_free(rpc_server_t *srv);

/* ------------------------------------------------------ inside a handler ---- */
/* These take the rpc_call_t that the handler received as call_data and are valid
 * only on the handler's thread until it calls done (or returns). Strings returned
 * are owned by the call's arena. */

/* rpc_call_arena: the call's arena; the request was unpacked into it. */
arena_t *rpc_call_arena(rpc_call_t *call);

/* rpc_call_ctx: the ctx given to rpc_server_add_service for this service. */
void *rpc_call_ctx(const rpc_call_t *call);

/* rpc_call_method: the full method path, "/shop.order.v1.OrderService/GetOrder". */
const char *rpc_call_method(const rpc_call_t *call);

/* rpc_call_metadata: the value of request metadata `key` (lower-case), or NULL when
 * absent. The first value wins when a key is repeated. */
const char *rpc_call_metadata(rpc_call_t *call, const char *key);

/* Shorthands for the metadata the gateway sends on every call (NULL when absent):
 * x-request-id, traceparent, x-user-id, x-user-role. */
const char *rpc_call_request_id(const rpc_call_t *call);
const char *rpc_call_traceparent(const rpc_call_t *call);
const char *rpc_call_user_id(const rpc_call_t *call);
const char *rpc_call_user_role(const rpc_call_t *call);

/* rpc_call_is_admin: true when x-user-role is "admin" (the gateway's word for it). */
bool rpc_call_is_admin(const rpc_call_t *call);

/* rpc_call_peer: the CN of the caller's certificate ("gateway", "order-svc"), or NULL
 * on a plaintext server. x-user-id / x-user-role reach a handler only from a peer
 * in the server's user_callers (or on a plaintext server). */
const char *rpc_call_peer(rpc_call_t *call);

/* rpc_call_remaining_ms: milliseconds left before the caller's deadline (negative
 * once past; INT64_MAX when the caller set none). */
int64_t rpc_call_remaining_ms(const rpc_call_t *call);

/* rpc_call_deadline_exceeded: true once the caller's deadline has passed. */
bool rpc_call_deadline_exceeded(const rpc_call_t *call);

/* rpc_call_cancelled: true when the answer can no longer reach the caller in time:
 * the deadline passed, or the server's shutdown grace ran out. Long handlers poll
 * it between steps and give up (e.g. rpc_call_failf(call, ERR_TIMEOUT, ...)). A
 * client that hangs up early is not seen here. */
bool rpc_call_cancelled(const rpc_call_t *call);

/* rpc_call_add_metadata: adds key: value to the response's initial metadata. Both are
 * copied. Returns 0, or ERR_INVALID for a key or value that gRPC would reject
 * (upper case, "-bin", reserved "grpc-" keys, control characters). */
int rpc_call_add_metadata(rpc_call_t *call, const char *key, const char *value);

/* rpc_call_fail / rpc_call_failf: what the call answers when the handler then calls
 * done(NULL, call_data): the code (a negative ERR_*; ERR_OK is taken as
 * ERR_INTERNAL), the message and, for rpc_call_fail, err's field violations. A
 * later call replaces an earlier one. Calling done with a response after failing
 * sends the failure, not the response.
 * rpc_call_fail is the service's one boundary towards its callers (err.h, "who may
 * read the message"): an err that is not for_client (a database, library or any
 * other internal failure) is logged with the method, its code and its message (and
 * the request id) and answered as err_redact says: "internal error", "service
 * unavailable, retry later", ... without field violations. rpc_call_failf's message
 * is taken as written for the client. */
void rpc_call_fail(rpc_call_t *call, const err_t *err);
void rpc_call_failf(rpc_call_t *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* rpc_call_fail_hidden: rpc_call_fail that also rewrites err in place to what the
 * client is answered (for handlers that log or inspect it afterwards). */
void rpc_call_fail_hidden(rpc_call_t *call, err_t *err);

/* rpc_call_check_deadline: ERR_TIMEOUT ("deadline exceeded") in err if the caller's
 * deadline has passed, else 0; handlers call it before starting work. */
int rpc_call_check_deadline(const rpc_call_t *call, err_t *err);

/* ------------------------------------------------- handler conventions ---- */

/* RPC_HANDLER: defines the protobuf-c method `name` of a service of type Svc with
 * the opening and the answer every handler shares, leaving the logic to the body
 * that follows the macro:
 *
 *   RPC_HANDLER(product_rpc_get_stock, product_service_t, Shop__..__GetStockRequest,
 *               Shop__..__GetStockResponse, SHOP__..__GET_STOCK_RESPONSE__INIT)
 *   {
 *       ... validate req, fill *resp from the arena a ...
 *       return 0;   // or err->code with err set
 *   }
 *
 * The body sees `call`, `a` (its arena), `req`, `resp` (initialised with
 * RESP_INIT) and `err` (ERR_INIT). Returning 0 answers *resp; anything else fails
 * the call with err through rpc_call_fail_hidden (so the body must leave err set).
 * Like the other calls here, for the handler's thread only. */
#define RPC_HANDLER(name, Svc, Req, Resp, RESP_INIT)                                               \
    static int name##_run(rpc_call_t *call, arena_t *a, const Req *req, Resp *resp, err_t *err);   \
    static void name(Svc *service, const Req *req, Resp##_Closure done, void *call_data)           \
    {                                                                                              \
        Resp resp = RESP_INIT;                                                                     \
        err_t err = ERR_INIT;                                                                      \
        (void)service;                                                                             \
        int rc = name##_run(call_data, rpc_call_arena(call_data), req, &resp, &err);               \
        if (rpc_call_settle(call_data, rc, &err))                                                  \
            done(&resp, call_data);                                                                \
        else                                                                                       \
            done(NULL, call_data);                                                                 \
    }                                                                                              \
    static int name##_run(rpc_call_t *call, arena_t *a, const Req *req, Resp *resp, err_t *err)

/* RPC_METHOD: RPC_HANDLER for the method Name of a generated service, from the
 * names' parts: RPC_METHOD(product_rpc_, product_service_t, Shop__Product__V1__,
 * SHOP__PRODUCT__V1__, get_stock, GetStock, GET_STOCK) is product_rpc_get_stock,
 * taking a Shop__Product__V1__GetStockRequest. Services wrap it in a macro of
 * their own (PRODUCT_RPC(get_stock, GetStock, GET_STOCK) { body }). */
#define RPC_METHOD(prefix, Svc, Pkg, PKG, name, Name, NAME)                                        \
    RPC_HANDLER(prefix##name, Svc, Pkg##Name##Request, Pkg##Name##Response,                        \
                PKG##NAME##_RESPONSE__INIT)

/* rpc_call_settle: RPC_HANDLER's verdict on a body's return code: true to answer
 * the response (rc == 0), else false after rpc_call_fail_hidden(call, err). */
bool rpc_call_settle(rpc_call_t *call, int rc, err_t *err);

/* rpc_msg_new: a new message of type desc, initialised (its INIT values), in `a`. */
void *rpc_msg_new(arena_t *a, const ProtobufCMessageDescriptor *desc);

/* rpc_msg_array: the repeated field of n messages built from n rows of row_size
 * bytes each: out[i] = build(a, (const char *)rows + i * row_size). NULL for n == 0.
 * The array is in `a`. */
void **rpc_msg_array(arena_t *a, const void *rows, size_t n, size_t row_size,
                     void *(*build)(arena_t *a, const void *row));

/* rpc_page_take: a list page fetched as limit + 1 rows (the extra row tells whether
 * there is a next page): how many of the n rows fetched the page answers, with *more
 * true when there is a next page (its token then comes from row limit - 1). */
size_t rpc_page_take(size_t n, int limit, bool *more);

/* Who is calling, from the metadata the gateway sends (x-user-id, x-user-role).
 * Borrowed from the call. */
typedef struct rpc_caller {
    const char *user_id;
    bool admin; /* x-user-role "admin" */
} rpc_caller_t;

/* What rpc_call_caller accepts as x-user-id. */
typedef enum rpc_caller_id {
    RPC_CALLER_ANY_ID,  /* any non-empty value */
    RPC_CALLER_UUID_ID, /* a UUID (any case) */
} rpc_caller_id_t;

/* rpc_call_caller: fills *out and returns 0, or ERR_UNAUTHENTICATED
 * ("authentication required", for the client) when x-user-id is missing or not of
 * the `id` shape. */
int rpc_call_caller(rpc_call_t *call, rpc_caller_id_t id, rpc_caller_t *out, err_t *err);

/* rpc_call_require_admin: 0 for an admin caller; ERR_UNAUTHENTICATED without
 * x-user-id, ERR_PERMISSION ("admin role required") for any other role. */
int rpc_call_require_admin(rpc_call_t *call, err_t *err);

#define RPC_IDEMPOTENCY_KEY_MAX 128

/* rpc_idempotency_key_check: adds a violation on field "idempotency_key" unless
 * key is 1..RPC_IDEMPOTENCY_KEY_MAX printable ASCII characters. Returns err->code. */
int rpc_idempotency_key_check(const char *key, err_t *err);

/* rpc_conflict_field: when err is ERR_CONFLICT and `match` (the caller's reading of
 * which conflict it is, e.g. db_err_constraint(err, "products_sku_key")), makes it
 * the client's ALREADY_EXISTS `msg` with the violation `field`: `why`. Any other err
 * is left as it is. Returns err->code. (The test stays with the caller so that
 * programs without a database do not link one.) */
int rpc_conflict_field(err_t *err, bool match, const char *msg, const char *field, const char *why);

/* ------------------------------------------- the caller's context onward ---- */

/* The context a call carries to the next hop, as metadata (NULL: left out). */
typedef struct rpc_context {
    const char *request_id;  /* x-request-id */
    const char *traceparent; /* traceparent (trace.h) */
    const char *user_id;     /* x-user-id */
    const char *user_role;   /* x-user-role */
} rpc_context_t;

#define RPC_CONTEXT_MD_MAX 4

/* rpc_context_metadata: the non-NULL entries of ctx as request metadata in md
 * (which borrows ctx's strings); returns how many. */
size_t rpc_context_metadata(const rpc_context_t *ctx, rpc_metadata_t md[RPC_CONTEXT_MD_MAX]);

/* rpc_call_next_traceparent: the traceparent for a call or an event made on
 * behalf of this call: the context of the call's SERVER span (span.h), itself a
 * child of the caller's traceparent (or a new trace's root when none came). The
 * next hop makes its own span from it: rpc_channel_call a CLIENT span, the outbox
 * relay a PRODUCER span. Lives as long as the call; NULL for health checks. */
const char *rpc_call_next_traceparent(rpc_call_t *call);

/* rpc_call_forward: the metadata for a call made on behalf of this call: the
 * caller's request id and rpc_call_next_traceparent. Not x-user-id / x-user-role:
 * only the gateway speaks for a user (a TLS server refuses them from any other peer
 * unless RPC_USER_CALLERS names it), so a service calls the next one on its own
 * account. Returns how many entries of md it filled; they live as long as the
 * call's arena. */
size_t rpc_call_forward(rpc_call_t *call, rpc_metadata_t md[RPC_CONTEXT_MD_MAX]);

/* ---------------------------------------------------------------- client ---- */

typedef struct rpc_channel_opts {
    int max_message_bytes;        /* each way; 0 → 4 MiB */
    int keepalive_ms;             /* ping an idle connection this often; 0 → 30 s */
    int max_reconnect_backoff_ms; /* cap between reconnection attempts; 0 → 5 s */
    /* Mutual TLS (copied): the program's certificate is presented and the server's
     * is checked against the CA and the target's host name (for a list, its first
     * host as written). NULL: plaintext. */
    const rpc_tls_t *tls;
} rpc_channel_opts_t;

/* rpc_channel_new: a channel to `target`, connected lazily:
 *   "host:port"            a name resolved through DNS (every address is used) or
 *                          an IP literal ("[::1]:50051" for IPv6)
 *   "dns:///name:port"     any target in gRPC's own syntax is passed through
 *   "a:1,b:2,..."          a fixed list; host names are resolved once, here, and
 *                          the addresses must all be IPv4 or all IPv6
 * Calls are balanced round_robin over the addresses. opts may be NULL (defaults).
 * Returns an owned channel (rpc_channel_free), or NULL with err set: ERR_INVALID for
 * a malformed target, ERR_UNAVAILABLE when a listed host name does not resolve.
 * The channel is thread-safe: share one per target. */
rpc_channel_t *rpc_channel_new(const char *target, const rpc_channel_opts_t *opts, err_t *err);

/* rpc_channel_free: waits for the channel's asynchronous calls to finish (each is
 * bounded by its deadline; their callbacks run), then frees. NULL is accepted. Not
 * from an rpc_channel_call_async callback. */
void rpc_channel_free(rpc_channel_t *ch);

/* rpc_channel_call: calls svc's `method` (its name in the descriptor, e.g.
 * "GetProduct") with `req`, blocking until the answer or the deadline. md (n_md
 * entries, may be NULL) is sent as request metadata; timeout_ms <= 0 means 2 s.
 * On success returns 0 and sets *resp to the response unpacked into `a` (freed
 * with the arena). Otherwise *resp is NULL and the return value is err->code:
 * ERR_INVALID for an unknown method or a request of the wrong type (nothing sent),
 * else err_from_grpc_status(status) with err->msg = the status message and
 * err->fields decoded from the BadRequest of "grpc-status-details-bin". err->for_client is true only for
 * codes the gRPC library never produces by itself (INVALID_ARGUMENT, NOT_FOUND,
 * ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, DATA_LOSS, and, as our
 * channels carry no call credentials, PERMISSION_DENIED and UNAUTHENTICATED): those
 * were sent by the peer's handler, through its own rpc_call_fail, or by its x-user-*
 * gate. A TLS handshake that fails (wrong CA, no certificate, plaintext against TLS)
 * is a peer never reached: ERR_UNAVAILABLE at the deadline. The rest may be the
 * library's own text ("failed to connect to all addresses; ...") and stay for the
 * log. A peer that never became reachable before the deadline is ERR_UNAVAILABLE;
 * one that was reached but did not answer in time is ERR_TIMEOUT. Thread-safe; `a` must not be used by another
 * thread meanwhile. */
int rpc_channel_call(rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc, const char *method,
                     const ProtobufCMessage *req, arena_t *a, ProtobufCMessage **resp,
                     const rpc_metadata_t *md, size_t n_md, int64_t timeout_ms, err_t *err);

/* rpc_done_fn: the end of an asynchronous call. code is 0 with resp unpacked into
 * the call's arena, or a negative ERR_* with resp NULL and err describing it as
 * rpc_channel_call would. err and resp are valid only during the callback (resp
 * stays valid until the arena is freed). Runs on the channel's client thread:
 * keep it short and do not block on another call of the same channel. */
typedef void (*rpc_done_fn)(void *ud, int code, ProtobufCMessage *resp, const err_t *err);

/* rpc_channel_call_async: starts the call rpc_channel_call would make and returns.
 * req and md are copied before returning; `a` belongs to the call until `done` runs.
 * Returns 0 when started: `done` then runs exactly once. Otherwise returns the
 * negative code (ERR_INVALID as for rpc_channel_call) with err set, and `done`
 * never runs. Thread-safe. */
int rpc_channel_call_async(rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                           const char *method, const ProtobufCMessage *req, arena_t *a,
                           const rpc_metadata_t *md, size_t n_md, int64_t timeout_ms,
                           rpc_done_fn done, void *ud, err_t *err);

#endif
