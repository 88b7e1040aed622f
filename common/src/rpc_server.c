/*
 * rpc_server: unary gRPC services on the C core's completion-queue API.
 *
 * One completion queue, drained by `workers` threads. Every tag is an rpc_call_t
 * whose step function says what its completion means:
 *
 *   armed slot ──(call arrives)──▶ rpc_call_arrived: re-arm a slot for the method,
 *       unpack, run the handler, start one batch with the whole answer
 *   answer batch ──(done)──▶ rpc_call_finished: access log, metrics, free
 *
 * Slots are re-armed before the handler runs, so a slow handler never leaves its
 * method without a slot (grpc/grpc#13958). Calls to methods nobody registered
 * arrive through grpc_server_request_call slots and are answered UNIMPLEMENTED
 * at once; without those the core holds them until their deadline.
 *
 * Every armed slot and live call is counted in `outstanding`, so shutdown can wait
 * for the last tag before it destroys the server (the order docs/style.md gives:
 * shutdown_and_notify → wait → cancel all → drain to GRPC_QUEUE_SHUTDOWN → destroy).
 */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/span.h"
#include "common/trace.h"
#include "cond_internal.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc_internal.h"

#define RPC_DEFAULT_WORKERS     4
#define RPC_DEFAULT_MAX_MESSAGE (4 * 1024 * 1024)
#define RPC_GENERIC_SLOTS       2
/* Clients may ping an idle connection every 10 s (ours ping every 30 s); without
 * this the core answers pings more frequent than 5 min with GOAWAY too_many_pings. */
#define RPC_MIN_PING_INTERVAL_MS 10000
#define RPC_KEEPALIVE_MS         60000
#define RPC_KEEPALIVE_TIMEOUT_MS 20000
#define RPC_DEFAULT_AGE_GRACE_MS 10000
#define RPC_DEFAULT_USER_CALLERS "gateway"
#define RPC_SERVER_REQUESTS      "rpc_server_requests_total"
#define RPC_SERVER_REQUESTS_HELP "RPCs served, by method and status code"

typedef struct rpc_service {
    ProtobufCService *service;
    void *ctx;
} rpc_service_t;

typedef struct rpc_method {
    char *path; /* "/pkg.Service/Method" */
    void *handle;
    ProtobufCService *service;
    void *ctx;
    unsigned index;
    const ProtobufCMethodDescriptor *desc;
    bool quiet; /* health checks log their access line at debug */
    metrics_histogram_t *duration;
    _Atomic(metrics_counter_t *) requests[RPC__N_CODES];
} rpc_method_t;

typedef enum { RPC_SRV_NEW, RPC_SRV_STARTED, RPC_SRV_STOPPED } rpc_srv_state_t;

struct rpc_server {
    char *addr;
    char *name;
    int workers;
    int slots;
    int max_message_bytes;
    int64_t max_age_ms, max_age_grace_ms;
    rpc_tls_t tls;       /* copies; tls.ca_pem NULL: plaintext */
    char **user_callers; /* CNs whose x-user-* is believed; NULL-terminated */
    rpc_service_t *services;
    size_t n_services;
    rpc_method_t **methods;
    size_t n_methods;
    rpc_method_t unknown; /* metrics of calls to unregistered methods */

    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t *threads;
    int port;
    rpc_srv_state_t state;
    atomic_bool serving;
    atomic_bool cancelling; /* the shutdown grace ran out */

    pthread_mutex_t lock;
    pthread_cond_t cond; /* outstanding reached 0, or the shutdown tag arrived */
    size_t outstanding;  /* armed slots + live calls */
    bool stopping;
    bool shutdown_done;
    rpc__tag_t shutdown_tag;
};

struct rpc_call {
    rpc__tag_t tag;
    rpc_server_t *srv;
    rpc_method_t *method; /* &srv->unknown for an unregistered method */
    const char *path;

    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array req_md;
    grpc_call_details details; /* unregistered methods only */
    grpc_byte_buffer *payload;
    arena_t *arena;
    int64_t start_us;
    const char *request_id, *traceparent, *user_id, *user_role;
    const char *peer; /* the client certificate's CN; valid once peer_known */
    bool peer_known;
    char trace_id[TRACE_ID_LEN + 1];

    bool answered; /* done ran */
    err_t *err;    /* set by rpc_call_fail; in the arena */
    grpc_status_code status;
    grpc_byte_buffer *resp;
    grpc_metadata *resp_md;
    size_t n_resp_md, cap_resp_md;
    grpc_slice status_details;
    grpc_metadata trailing;
    size_t n_trailing;
    int cancelled; /* from RECV_CLOSE_ON_SERVER: the client never got our status */
    span_t span;   /* SERVER; health checks are not traced */
    bool traced;
};

static void rpc_health_check(Grpc__Health__V1__Health_Service *svc,
                             const Grpc__Health__V1__HealthCheckRequest *req,
                             Grpc__Health__V1__HealthCheckResponse_Closure done, void *call_data);
static Grpc__Health__V1__Health_Service rpc_health_service =
    GRPC__HEALTH__V1__HEALTH__INIT(rpc_health_);

static void rpc_call_arrived(rpc__tag_t *tag, bool ok);
static void rpc_call_finished(rpc__tag_t *tag, bool ok);

/* ------------------------------------------------------------ accounting ---- */

/* The last touch of srv by a call: once outstanding is 0 the server may be freed. */
static void rpc_outstanding_done(rpc_server_t *srv)
{
    pthread_mutex_lock(&srv->lock);
    if (--srv->outstanding == 0)
        pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

static void rpc_call_release(rpc_call_t *call)
{
    rpc_server_t *srv = call->srv;
    if (call->call != NULL)
        grpc_call_unref(call->call);
    grpc_metadata_array_destroy(&call->req_md);
    grpc_call_details_destroy(&call->details);
    if (call->payload != NULL)
        grpc_byte_buffer_destroy(call->payload);
    if (call->resp != NULL)
        grpc_byte_buffer_destroy(call->resp);
    for (size_t i = 0; i < call->n_resp_md; i++) {
        grpc_slice_unref(call->resp_md[i].key);
        grpc_slice_unref(call->resp_md[i].value);
    }
    grpc_slice_unref(call->status_details);
    if (call->n_trailing > 0) {
        grpc_slice_unref(call->trailing.key);
        grpc_slice_unref(call->trailing.value);
    }
    arena_free(call->arena);
    free(call);
    rpc_outstanding_done(srv);
}

/* ----------------------------------------------------------------- slots ---- */

/* rpc_slot_arm: asks the core for the next call of `method` (&srv->unknown: of any
 * unregistered method). Skipped once shutdown began: the core would only fail it. */
static void rpc_slot_arm(rpc_server_t *srv, rpc_method_t *method)
{
    pthread_mutex_lock(&srv->lock);
    bool stopping = srv->stopping;
    if (!stopping)
        srv->outstanding++;
    pthread_mutex_unlock(&srv->lock);
    if (stopping)
        return;

    rpc_call_t *call = common__xcalloc(1, sizeof(*call));
    call->tag.step = rpc_call_arrived;
    call->srv = srv;
    call->method = method;
    call->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&call->req_md);
    grpc_call_details_init(&call->details);
    grpc_call_error rc;
    if (method == &srv->unknown)
        rc = grpc_server_request_call(srv->server, &call->call, &call->details, &call->req_md,
                                      srv->cq, srv->cq, &call->tag);
    else
        rc = grpc_server_request_registered_call(srv->server, method->handle, &call->call,
                                                 &call->deadline, &call->req_md, &call->payload,
                                                 srv->cq, srv->cq, &call->tag);
    if (rc != GRPC_CALL_OK) {
        LOG_ERR("rpc slot not armed", LOG_STR("server", srv->name), LOG_STR("method", method->path),
                LOG_STR("error", grpc_call_error_to_string(rc)));
        rpc_call_release(call);
    }
}

/* ------------------------------------------------------------- the call ---- */

static int64_t rpc_deadline_remaining_ms(gpr_timespec deadline)
{
    if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC),
                                     gpr_now(GPR_CLOCK_MONOTONIC));
    return gpr_time_to_millis(left);
}

static void rpc_call_read_metadata(rpc_call_t *call)
{
    call->request_id = rpc_call_metadata(call, "x-request-id");
    call->traceparent = rpc_call_metadata(call, "traceparent");
    call->user_id = rpc_call_metadata(call, "x-user-id");
    call->user_role = rpc_call_metadata(call, "x-user-role");
    if (call->method->quiet || call->method->desc == NULL) {
        trace_id_of(call->traceparent, call->trace_id);
        return;
    }
    /* The caller's CLIENT span (or none: a new trace) is this span's parent. */
    call->traced = true;
    span_start(&call->span, SPAN_SERVER, call->method->path + 1, call->traceparent);
    memcpy(call->trace_id, call->span.ctx.trace_id, sizeof(call->trace_id));
    span_set_str(&call->span, "rpc.system", "grpc");
    span_set_str(&call->span, "rpc.service", call->method->service->descriptor->name);
    span_set_str(&call->span, "rpc.method", call->method->desc->name);
}

static void rpc_call_set_status(rpc_call_t *call, int code, const char *msg)
{
    err_t *err = call->err;
    if (err == NULL) {
        err = arena_alloc(call->arena, sizeof(*err));
        call->err = err;
    }
    err_clear(err);
    err_set(err, code == ERR_OK ? ERR_INTERNAL : code, "%s", msg);
}

/* The closure handed to handlers as `done`: packs the response at once, so the
 * handler may answer from its stack. */
static void rpc_call_done(const ProtobufCMessage *msg, void *closure_data)
{
    rpc_call_t *call = closure_data;
    if (call->answered) {
        LOG_ERR("rpc handler answered twice", LOG_STR("method", call->path));
        return;
    }
    call->answered = true;
    if (call->err != NULL)
        return;
    if (msg == NULL) {
        rpc_call_set_status(call, ERR_INTERNAL, "handler failed without a status");
        LOG_ERR("rpc handler answered NULL without rpc_call_fail", LOG_STR("method", call->path));
    } else if (msg->descriptor != call->method->desc->output) {
        rpc_call_set_status(call, ERR_INTERNAL, "handler answered the wrong message type");
        LOG_ERR("rpc handler answered the wrong message type", LOG_STR("method", call->path),
                LOG_STR("type", msg->descriptor->name));
    } else {
        call->resp = rpc__pack(msg);
    }
}

static void rpc_call_invoke(rpc_call_t *call)
{
    const rpc_method_t *m = call->method;
    if (rpc_call_deadline_exceeded(call)) {
        rpc_call_set_status(call, ERR_TIMEOUT, "deadline exceeded before the call started");
        return;
    }
    if (call->payload == NULL) {
        rpc_call_set_status(call, ERR_INVALID, "missing request message");
        return;
    }
    ProtobufCMessage *req = rpc__unpack(m->desc->input, call->payload, call->arena);
    if (req == NULL) {
        rpc_call_set_status(call, ERR_INVALID, "request is not a valid message");
        return;
    }
    log_ctx_set(call->request_id, call->trace_id);
    span_current_set(call->traced ? &call->span : NULL);
    m->service->invoke(m->service, m->index, req, rpc_call_done, call);
    span_current_set(NULL);
    if (!call->answered) {
        call->answered = true;
        rpc_call_set_status(call, ERR_INTERNAL, "handler returned without answering");
        LOG_ERR("rpc handler returned without calling done", LOG_STR("method", call->path));
    }
    log_ctx_set(NULL, NULL);
}

/* Fills status, details and trailing metadata from call->err (OK when unset). */
static void rpc_call_prepare_status(rpc_call_t *call)
{
    const err_t *err = call->err;
    if (err == NULL) {
        call->status = GRPC_STATUS_OK;
        return;
    }
    call->status = (grpc_status_code)err_to_grpc_status(err->code);
    call->status_details = grpc_slice_from_copied_string(err->msg);
    if (err->n_fields > 0) {
        call->trailing.key = grpc_slice_from_static_string(RPC__STATUS_DETAILS_KEY);
        call->trailing.value = rpc__status_details_slice(err, call->status);
        call->n_trailing = 1;
    }
}

/* One batch with the whole answer; its completion (rpc_call_finished) frees the call. */
static void rpc_call_answer(rpc_call_t *call)
{
    rpc_call_prepare_status(call);
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = call->n_resp_md;
    ops[n].data.send_initial_metadata.metadata = call->resp_md;
    n++;
    if (call->status == GRPC_STATUS_OK) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = call->resp;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = call->status;
    ops[n].data.send_status_from_server.status_details =
        GRPC_SLICE_LENGTH(call->status_details) > 0 ? &call->status_details : NULL;
    ops[n].data.send_status_from_server.trailing_metadata_count = call->n_trailing;
    ops[n].data.send_status_from_server.trailing_metadata = &call->trailing;
    n++;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &call->cancelled;
    n++;

    call->tag.step = rpc_call_finished;
    grpc_call_error rc = grpc_call_start_batch(call->call, ops, n, &call->tag, NULL);
    if (rc != GRPC_CALL_OK) {
        LOG_ERR("rpc answer not sent", LOG_STR("method", call->path),
                LOG_STR("error", grpc_call_error_to_string(rc)));
        call->cancelled = 1;
        rpc_call_finished(&call->tag, false);
    }
}

/* The x-user-* gate (rpc.h): on a TLS server, x-user-id / x-user-role are believed
 * only from the peers in user_callers. True when the call may go on; otherwise it
 * is answered PERMISSION_DENIED without running the handler. */
static bool rpc_call_user_gate(rpc_call_t *call)
{
    const rpc_server_t *srv = call->srv;
    if (srv->tls.ca_pem == NULL || (call->user_id == NULL && call->user_role == NULL))
        return true;
    const char *peer = rpc_call_peer(call);
    for (char **c = srv->user_callers; peer != NULL && *c != NULL; c++) {
        if (strcmp(*c, peer) == 0)
            return true;
    }
    call->answered = true;
    rpc_call_failf(call, ERR_PERMISSION, "caller %s may not send x-user-* metadata",
                   peer != NULL ? peer : "(no certificate name)");
    log_ctx_set(call->request_id, call->trace_id);
    LOG_WARN("rpc x-user-* refused", LOG_STR("server", srv->name), LOG_STR("method", call->path),
             LOG_STR("peer", peer), LOG_STR("user_id", call->user_id));
    log_ctx_set(NULL, NULL);
    return false;
}

static void rpc_call_arrived(rpc__tag_t *tag, bool ok)
{
    rpc_call_t *call = (rpc_call_t *)tag;
    rpc_server_t *srv = call->srv;
    if (!ok) { /* the server is shutting down: the slot was never used */
        rpc_call_release(call);
        return;
    }
    rpc_slot_arm(srv, call->method);
    call->start_us = clock_mono_us();
    call->arena = arena_new(0);
    rpc_call_read_metadata(call);
    if (call->method == &srv->unknown) {
        call->path =
            arena_strndup(call->arena, (const char *)GRPC_SLICE_START_PTR(call->details.method),
                          GRPC_SLICE_LENGTH(call->details.method));
        call->deadline = call->details.deadline;
        call->answered = true;
        rpc_call_failf(call, ERR_UNIMPLEMENTED, "unknown method %s", call->path);
    } else {
        call->path = call->method->path;
        if (rpc_call_user_gate(call))
            rpc_call_invoke(call);
    }
    rpc_call_answer(call);
}

static void rpc_call_log(const rpc_call_t *call, const char *code, int64_t us)
{
    log_level_t level = call->method->quiet ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO;
    log_ctx_set(call->request_id, call->trace_id);
    if (call->err == NULL)
        LOG__AT(level, "rpc", LOG_STR("method", call->path), LOG_STR("code", code),
                LOG_MS("duration_ms", us), LOG_STR("user_id", call->user_id));
    else
        LOG__AT(level, "rpc", LOG_STR("method", call->path), LOG_STR("code", code),
                LOG_MS("duration_ms", us), LOG_STR("user_id", call->user_id),
                LOG_STR("error", call->err->msg));
    log_ctx_set(NULL, NULL);
}

static void rpc_call_finished(rpc__tag_t *tag, bool ok)
{
    rpc_call_t *call = (rpc_call_t *)tag;
    /* A cancelled call's status never reached the client, whatever we meant to send. */
    grpc_status_code status = call->cancelled || !ok ? GRPC_STATUS_CANCELLED : call->status;
    const char *code = err_code_name(err_from_grpc_status((int)status));
    int64_t us = clock_mono_us() - call->start_us;
    double seconds = (double)us / 1e6;
    rpc_call_log(call, code, us);
    if (span_recording(&call->span)) {
        span_set_int(&call->span, "rpc.grpc.status_code", (int64_t)status);
        if (status != GRPC_STATUS_OK)
            span_fail(&call->span, call->err != NULL ? call->err->msg : code);
        span_end(&call->span);
    }
    metrics_counter_add(rpc__code_counter(call->method->requests, RPC_SERVER_REQUESTS,
                                          RPC_SERVER_REQUESTS_HELP, call->method->path, status),
                        1);
    metrics_histogram_observe(call->method->duration, seconds);
    rpc_call_release(call);
}

/* ------------------------------------------------------- handler helpers ---- */

arena_t *rpc_call_arena(rpc_call_t *call)
{
    return call->arena;
}

void *rpc_call_ctx(const rpc_call_t *call)
{
    return call->method->ctx;
}

const char *rpc_call_method(const rpc_call_t *call)
{
    return call->path;
}

const char *rpc_call_metadata(rpc_call_t *call, const char *key)
{
    for (size_t i = 0; i < call->req_md.count; i++) {
        const grpc_metadata *md = &call->req_md.metadata[i];
        if (rpc__slice_eq(md->key, key))
            return arena_strndup(call->arena, (const char *)GRPC_SLICE_START_PTR(md->value),
                                 GRPC_SLICE_LENGTH(md->value));
    }
    return NULL;
}

const char *rpc_call_request_id(const rpc_call_t *call)
{
    return call->request_id;
}

const char *rpc_call_next_traceparent(rpc_call_t *call)
{
    return call->traced ? span_traceparent(&call->span) : NULL;
}

const char *rpc_call_traceparent(const rpc_call_t *call)
{
    return call->traceparent;
}

const char *rpc_call_user_id(const rpc_call_t *call)
{
    return call->user_id;
}

const char *rpc_call_user_role(const rpc_call_t *call)
{
    return call->user_role;
}

bool rpc_call_is_admin(const rpc_call_t *call)
{
    return call->user_role && strcmp(call->user_role, "admin") == 0;
}

const char *rpc_call_peer(rpc_call_t *call)
{
    if (call->peer_known)
        return call->peer;
    call->peer_known = true;
    if (call->srv->tls.ca_pem == NULL)
        return NULL;
    grpc_auth_context *ctx = grpc_call_auth_context(call->call);
    if (ctx == NULL)
        return NULL;
    grpc_auth_property_iterator it =
        grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    if (p != NULL && p->value != NULL)
        call->peer = arena_strndup(call->arena, p->value, p->value_length);
    grpc_auth_context_release(ctx);
    return call->peer;
}

int64_t rpc_call_remaining_ms(const rpc_call_t *call)
{
    return rpc_deadline_remaining_ms(call->deadline);
}

bool rpc_call_deadline_exceeded(const rpc_call_t *call)
{
    return rpc_call_remaining_ms(call) <= 0;
}

bool rpc_call_cancelled(const rpc_call_t *call)
{
    return atomic_load(&call->srv->cancelling) || rpc_call_deadline_exceeded(call);
}

int rpc_call_add_metadata(rpc_call_t *call, const char *key, const char *value)
{
    if (!rpc__metadata_key_ok(key) || !rpc__metadata_value_ok(value))
        return ERR_INVALID;
    if (call->n_resp_md == call->cap_resp_md) {
        size_t cap = call->cap_resp_md == 0 ? 4 : 2 * call->cap_resp_md;
        grpc_metadata *md = arena_calloc(call->arena, cap, sizeof(*md));
        if (call->n_resp_md > 0)
            memcpy(md, call->resp_md, call->n_resp_md * sizeof(*md));
        call->resp_md = md;
        call->cap_resp_md = cap;
    }
    grpc_metadata *md = &call->resp_md[call->n_resp_md++];
    md->key = grpc_slice_from_copied_string(key);
    md->value = grpc_slice_from_copied_string(value);
    return 0;
}

/* The one translation of a handler's error for the client (err.h, "who may read the
 * message"): what is not for the client goes to the log with the request id (the
 * thread's log context) and is answered as err_redact says. */
static void rpc_call_redact(const rpc_call_t *call, err_t *err)
{
    char msg[ERR_MSG_MAX];
    int code = err->code;
    memcpy(msg, err->msg, sizeof(msg));
    if (!err_redact(err))
        return;
    if (err->code == ERR_INTERNAL)
        LOG_ERR("rpc failed", LOG_STR("method", call->path), LOG_STR("code", err_code_name(code)),
                LOG_STR("error", msg));
    else
        LOG_WARN("rpc failed", LOG_STR("method", call->path), LOG_STR("code", err_code_name(code)),
                 LOG_STR("error", msg));
}

void rpc_call_fail(rpc_call_t *call, const err_t *err)
{
    err_t shown = *err;
    if (shown.code == ERR_OK)
        shown.code = ERR_INTERNAL;
    rpc_call_redact(call, &shown);
    rpc_call_set_status(call, shown.code, shown.msg);
    size_t n = shown.n_fields < ERR_FIELDS_MAX ? shown.n_fields : ERR_FIELDS_MAX;
    memcpy(call->err->fields, shown.fields, n * sizeof(shown.fields[0]));
    call->err->n_fields = n;
}

void rpc_call_fail_hidden(rpc_call_t *call, err_t *err)
{
    if (err->code == ERR_OK)
        err->code = ERR_INTERNAL;
    rpc_call_redact(call, err);
    rpc_call_fail(call, err);
}

int rpc_call_check_deadline(const rpc_call_t *call, err_t *err)
{
    if (rpc_call_deadline_exceeded(call))
        return err_set_client(err, ERR_TIMEOUT, "deadline exceeded");
    return 0;
}

void rpc_call_failf(rpc_call_t *call, int code, const char *fmt, ...)
{
    char msg[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rpc_call_set_status(call, code, msg);
}

/* ---------------------------------------------------------------- health ---- */

static bool rpc_server_serves(const rpc_server_t *srv, const char *name)
{
    for (size_t i = 0; i < srv->n_services; i++) {
        if (strcmp(srv->services[i].service->descriptor->name, name) == 0)
            return true;
    }
    return false;
}

static void rpc_health_check(Grpc__Health__V1__Health_Service *svc,
                             const Grpc__Health__V1__HealthCheckRequest *req,
                             Grpc__Health__V1__HealthCheckResponse_Closure done, void *call_data)
{
    rpc_call_t *call = call_data;
    const rpc_server_t *srv = rpc_call_ctx(call);
    if (req->service[0] != '\0' && !rpc_server_serves(srv, req->service)) {
        rpc_call_failf(call, ERR_NOT_FOUND, "unknown service %s", req->service);
        done(NULL, call_data);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = atomic_load(&srv->serving)
                      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    done(&resp, call_data);
}

/* ------------------------------------------------------------ the server ---- */

/* "a,b" → {"a", "b", NULL}, each malloc'd (empty names are left out). */
static char **rpc_names_split(const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p != '\0'; p++)
        n += *p == ',';
    char **out = common__xcalloc(n + 1, sizeof(*out));
    char *copy = common__xstrdup(list), *save = NULL;
    size_t i = 0;
    for (char *e = strtok_r(copy, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save))
        out[i++] = common__xstrdup(e);
    free(copy);
    return out;
}

rpc_server_t *rpc_server_new(const rpc_server_opts_t *opts, err_t *err)
{
    if (opts == NULL || opts->addr == NULL || opts->addr[0] == '\0') {
        err_set(err, ERR_INVALID, "rpc server needs an address");
        return NULL;
    }
    if (opts->workers < 0 || opts->slots_per_method < 0 || opts->max_message_bytes < 0 ||
        opts->max_connection_age_ms < 0 || opts->max_connection_grace_ms < 0 ||
        opts->max_connection_age_ms > INT32_MAX || opts->max_connection_grace_ms > INT32_MAX) {
        err_set(err, ERR_INVALID, "rpc server options must be 0..INT32_MAX");
        return NULL;
    }
    rpc_server_t *srv = common__xcalloc(1, sizeof(*srv));
    srv->addr = common__xstrdup(opts->addr);
    srv->name = common__xstrdup(opts->name != NULL ? opts->name : "rpc");
    srv->workers = opts->workers > 0 ? opts->workers : RPC_DEFAULT_WORKERS;
    srv->slots = opts->slots_per_method > 0 ? opts->slots_per_method : srv->workers;
    srv->max_message_bytes =
        opts->max_message_bytes > 0 ? opts->max_message_bytes : RPC_DEFAULT_MAX_MESSAGE;
    srv->max_age_ms = opts->max_connection_age_ms;
    srv->max_age_grace_ms = opts->max_connection_grace_ms > 0 ? opts->max_connection_grace_ms
                                                              : RPC_DEFAULT_AGE_GRACE_MS;
    if (opts->tls != NULL) {
        if (opts->tls->ca_pem == NULL || opts->tls->cert_pem == NULL ||
            opts->tls->key_pem == NULL) {
            free(srv->addr);
            free(srv->name);
            free(srv);
            err_set(err, ERR_INVALID, "rpc server TLS needs the CA, a certificate and its key");
            return NULL;
        }
        srv->tls.ca_pem = common__xstrdup(opts->tls->ca_pem);
        srv->tls.cert_pem = common__xstrdup(opts->tls->cert_pem);
        srv->tls.key_pem = common__xstrdup(opts->tls->key_pem);
    }
    srv->user_callers = rpc_names_split(opts->user_callers != NULL && opts->user_callers[0] != '\0'
                                            ? opts->user_callers
                                            : RPC_DEFAULT_USER_CALLERS);
    srv->unknown.path = common__xstrdup("unknown");
    srv->unknown.duration = metrics_histogram("rpc_server_duration_seconds",
                                              "RPC latency by method, from arrival to answer sent",
                                              (const char *[]){"method", "unknown", NULL},
                                              metrics_latency_buckets, metrics_latency_buckets_n);
    atomic_init(&srv->serving, true);
    atomic_init(&srv->cancelling, false);
    pthread_mutex_init(&srv->lock, NULL);
    common__cond_init_monotonic(&srv->cond);
    rpc_server_add_service(srv, (ProtobufCService *)&rpc_health_service, srv);
    return srv;
}

static void rpc_method_add(rpc_server_t *srv, ProtobufCService *service, void *ctx, unsigned i)
{
    const ProtobufCServiceDescriptor *sd = service->descriptor;
    rpc_method_t *m = common__xcalloc(1, sizeof(*m));
    size_t len = strlen(sd->name) + strlen(sd->methods[i].name) + 3;
    m->path = common__xmalloc(len);
    snprintf(m->path, len, "/%s/%s", sd->name, sd->methods[i].name);
    m->service = service;
    m->ctx = ctx;
    m->index = i;
    m->desc = &sd->methods[i];
    m->quiet = service == (ProtobufCService *)&rpc_health_service;
    m->duration = metrics_histogram("rpc_server_duration_seconds",
                                    "RPC latency by method, from arrival to answer sent",
                                    (const char *[]){"method", m->path, NULL},
                                    metrics_latency_buckets, metrics_latency_buckets_n);
    rpc__code_counters_init(m->requests, RPC_SERVER_REQUESTS, RPC_SERVER_REQUESTS_HELP, m->path);
    srv->methods = realloc(srv->methods, (srv->n_methods + 1) * sizeof(*srv->methods));
    if (srv->methods == NULL)
        common__oom((srv->n_methods + 1) * sizeof(*srv->methods));
    srv->methods[srv->n_methods++] = m;
}

int rpc_server_add_service(rpc_server_t *srv, ProtobufCService *service, void *ctx)
{
    if (srv->state != RPC_SRV_NEW || rpc_server_serves(srv, service->descriptor->name))
        return ERR_INVALID;
    srv->services = realloc(srv->services, (srv->n_services + 1) * sizeof(*srv->services));
    if (srv->services == NULL)
        common__oom((srv->n_services + 1) * sizeof(*srv->services));
    srv->services[srv->n_services++] = (rpc_service_t){.service = service, .ctx = ctx};
    for (unsigned i = 0; i < service->descriptor->n_methods; i++)
        rpc_method_add(srv, service, ctx, i);
    return 0;
}

static void rpc_worker_shutdown_step(rpc__tag_t *tag, bool ok)
{
    rpc_server_t *srv = (rpc_server_t *)((char *)tag - offsetof(rpc_server_t, shutdown_tag));
    pthread_mutex_lock(&srv->lock);
    srv->shutdown_done = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

static void *rpc_worker_main(void *arg)
{
    rpc_server_t *srv = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        rpc__tag_t *tag = ev.tag;
        tag->step(tag, ev.success != 0);
    }
}

/* Creates the core server with our channel arguments and registers every method. */
static void rpc_server_create_core(rpc_server_t *srv)
{
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER,
         GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         {.integer = srv->max_message_bytes}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = srv->max_message_bytes}},
        {GRPC_ARG_INTEGER,
         GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         {.integer = RPC_MIN_PING_INTERVAL_MS}},
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MAX_PING_STRIKES, {.integer = 0}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = RPC_KEEPALIVE_MS}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = RPC_KEEPALIVE_TIMEOUT_MS}},
        /* Linux SO_REUSEPORT is on by default in gRPC: a second instance on the same
         * port would silently share it instead of failing to start. */
        {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
        {GRPC_ARG_INTEGER,
         GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
         {.integer = (int)srv->max_age_grace_ms}},
        /* Last, so that "never" leaves it out (the core's default is infinite). */
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_AGE_MS, {.integer = (int)srv->max_age_ms}},
    };
    size_t n_args = sizeof(args) / sizeof(args[0]) - (srv->max_age_ms > 0 ? 0 : 1);
    grpc_channel_args ca = {.num_args = n_args, .args = args};
    srv->server = grpc_server_create(&ca, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    for (size_t i = 0; i < srv->n_methods; i++) {
        rpc_method_t *m = srv->methods[i];
        m->handle = grpc_server_register_method(srv->server, m->path, NULL,
                                                GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    }
}

/* Destroys the core server, then its queue, which the running workers drain to
 * GRPC_QUEUE_SHUTDOWN (or this thread, when none was started), then the queue. */
static void rpc_server_destroy_core(rpc_server_t *srv, int running_workers)
{
    grpc_server_destroy(srv->server);
    grpc_completion_queue_shutdown(srv->cq);
    for (int i = 0; i < running_workers; i++)
        pthread_join(srv->threads[i], NULL);
    while (running_workers == 0) {
        grpc_event ev =
            grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(srv->cq);
    srv->server = NULL;
    srv->cq = NULL;
    grpc_shutdown();
}

int rpc_server_start(rpc_server_t *srv, err_t *err)
{
    if (srv->state != RPC_SRV_NEW)
        return err_set(err, ERR_INVALID, "rpc server %s already started", srv->name);
    rpc__grpc_init();
    rpc_server_create_core(srv);
    grpc_server_credentials *creds;
    if (srv->tls.ca_pem != NULL) {
        grpc_ssl_pem_key_cert_pair pair = {.private_key = srv->tls.key_pem,
                                           .cert_chain = srv->tls.cert_pem};
        creds = grpc_ssl_server_credentials_create_ex(
            srv->tls.ca_pem, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
            NULL);
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    srv->port = grpc_server_add_http2_port(srv->server, srv->addr, creds);
    grpc_server_credentials_release(creds);
    if (srv->port == 0) {
        rpc_server_destroy_core(srv, 0);
        return err_set(err, ERR_UNAVAILABLE, "rpc server %s cannot listen on %s", srv->name,
                       srv->addr);
    }
    grpc_server_start(srv->server);
    srv->state = RPC_SRV_STARTED;
    srv->threads = common__xcalloc((size_t)srv->workers, sizeof(*srv->threads));
    for (int i = 0; i < srv->workers; i++) {
        if (pthread_create(&srv->threads[i], NULL, rpc_worker_main, srv) != 0) {
            LOG_ERR("rpc worker thread not created", LOG_STR("server", srv->name));
            abort();
        }
    }
    for (size_t i = 0; i < srv->n_methods; i++) {
        for (int s = 0; s < srv->slots; s++)
            rpc_slot_arm(srv, srv->methods[i]);
    }
    for (int s = 0; s < RPC_GENERIC_SLOTS; s++)
        rpc_slot_arm(srv, &srv->unknown);
    LOG_INFO("rpc server listening", LOG_STR("server", srv->name), LOG_STR("addr", srv->addr),
             LOG_INT("port", srv->port), LOG_INT("workers", srv->workers),
             LOG_STR("transport", srv->tls.ca_pem != NULL ? "mtls" : "plaintext"));
    return 0;
}

int rpc_server_port(const rpc_server_t *srv)
{
    return srv->port;
}

void rpc_server_set_serving(rpc_server_t *srv, bool serving)
{
    atomic_store(&srv->serving, serving);
}

/* Waits with the lock held until *flag is true or, with a deadline, it passes. */
static bool rpc_wait_done(rpc_server_t *srv, const bool *flag, const struct timespec *until)
{
    while (!*flag) {
        if (until == NULL)
            pthread_cond_wait(&srv->cond, &srv->lock);
        else if (pthread_cond_timedwait(&srv->cond, &srv->lock, until) != 0)
            return *flag;
    }
    return true;
}

void rpc_server_shutdown(rpc_server_t *srv, int64_t grace_ms)
{
    if (srv->state != RPC_SRV_STARTED) {
        srv->state = RPC_SRV_STOPPED;
        return;
    }
    srv->state = RPC_SRV_STOPPED;
    atomic_store(&srv->serving, false);
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    pthread_mutex_unlock(&srv->lock);

    srv->shutdown_tag.step = rpc_worker_shutdown_step;
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
    struct timespec until = clock_mono_deadline(grace_ms);
    pthread_mutex_lock(&srv->lock);
    bool done = rpc_wait_done(srv, &srv->shutdown_done, &until);
    pthread_mutex_unlock(&srv->lock);
    if (!done) {
        LOG_WARN("rpc shutdown grace over, cancelling calls", LOG_STR("server", srv->name),
                 LOG_INT("grace_ms", grace_ms));
        atomic_store(&srv->cancelling, true);
        grpc_server_cancel_all_calls(srv->server);
    }
    pthread_mutex_lock(&srv->lock);
    rpc_wait_done(srv, &srv->shutdown_done, NULL);
    while (srv->outstanding > 0)
        pthread_cond_wait(&srv->cond, &srv->lock);
    pthread_mutex_unlock(&srv->lock);

    rpc_server_destroy_core(srv, srv->workers);
    LOG_INFO("rpc server stopped", LOG_STR("server", srv->name));
}

void rpc_server_free(rpc_server_t *srv)
{
    if (srv == NULL)
        return;
    rpc_server_shutdown(srv, 0);
    for (size_t i = 0; i < srv->n_methods; i++) {
        free(srv->methods[i]->path);
        free(srv->methods[i]);
    }
    free(srv->methods);
    free(srv->services);
    free(srv->threads);
    free(srv->unknown.path);
    for (char **c = srv->user_callers; c != NULL && *c != NULL; c++)
        free(*c);
    free(srv->user_callers);
    if (srv->tls.key_pem != NULL)
        memset((char *)srv->tls.key_pem, 0, strlen(srv->tls.key_pem));
    free((char *)srv->tls.ca_pem);
    free((char *)srv->tls.cert_pem);
    free((char *)srv->tls.key_pem);
    free(srv->addr);
    free(srv->name);
    pthread_cond_destroy(&srv->cond);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}
