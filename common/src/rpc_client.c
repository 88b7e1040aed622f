/*
 * rpc_client: unary calls over one shared gRPC channel per target.
 *
 * A blocking call creates its own pluck completion queue (what the C++ sync client
 * does per call: cheap, and no queue is shared between threads), starts one batch
 * with the whole exchange and plucks its tag. Asynchronous calls share one
 * completion queue per channel, drained by the channel's client thread, created
 * with the first such call.
 *
 * Methods are registered with the channel once (grpc_channel_register_call) and
 * cached with their metrics, so a call does no path formatting and no registry
 * lookup.
 */
#include <arpa/inet.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/span.h"
#include "rpc_internal.h"

#define RPC_DEFAULT_TIMEOUT_MS   2000
#define RPC_DEFAULT_MAX_MESSAGE  (4 * 1024 * 1024)
#define RPC_DEFAULT_KEEPALIVE_MS 30000
#define RPC_CLIENT_REQUESTS      "rpc_client_requests_total"
#define RPC_CLIENT_REQUESTS_HELP "outgoing RPCs by method and status code"
#define RPC_KEEPALIVE_TIMEOUT_MS 10000
#define RPC_DEFAULT_MAX_BACKOFF  5000
/* A peer that is starting answers within a few hundred ms: retry connecting soon,
 * then back off (gRPC's default first retry is 1 s). */
#define RPC_INITIAL_BACKOFF_MS 100
#define RPC_MIN_RERESOLVE_MS   1000
#define RPC_ROUND_ROBIN        "{\"loadBalancingConfig\":[{\"round_robin\":{}}]}"
#define RPC_LIST_MAX           8192 /* resolved address list, bytes */

/* A method as this channel calls it: registered once, with its metrics. */
typedef struct rpc_cmethod {
    struct rpc_cmethod *next;
    const ProtobufCMethodDescriptor *desc;
    char *path;
    void *handle; /* grpc_channel_register_call */
    metrics_histogram_t *duration;
    _Atomic(metrics_counter_t *) requests[RPC__N_CODES];
} rpc_cmethod_t;

struct rpc_channel {
    grpc_channel *ch;
    char *target;
    pthread_mutex_t lock;
    rpc_cmethod_t *methods;
    grpc_completion_queue *cq; /* asynchronous calls; NULL until the first */
    pthread_t thread;
};

/* One call in flight, blocking or asynchronous. */
typedef struct rpc_ccall {
    rpc__tag_t tag;
    rpc_channel_t *ch;
    rpc_cmethod_t *m;
    arena_t *arena;
    grpc_call *call;
    int64_t start_us;
    grpc_metadata *send_md;
    size_t n_send_md;
    grpc_byte_buffer *send;
    grpc_metadata_array recv_initial;
    grpc_metadata_array recv_trailing;
    grpc_byte_buffer *recv;
    grpc_status_code status;
    grpc_slice details;
    rpc_done_fn done;
    void *ud;
    span_t span; /* CLIENT, when the caller sent a traceparent */
} rpc_ccall_t;

/* ---------------------------------------------------------------- targets ---- */

/* Appends every address of host:port of one family to out ("a:1,b:2"); returns how
 * many, -1 when the name does not resolve, -2 when out is full. */
static int rpc_resolve_append(const char *host, const char *port, int family, char *out,
                              size_t outsz)
{
    struct addrinfo hints = {
        .ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int n = 0;
    for (struct addrinfo *ai = res; ai != NULL && n >= 0; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        const void *src = family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        inet_ntop(family, src, ip, sizeof(ip));
        size_t len = strlen(out);
        int w = snprintf(out + len, outsz - len, family == AF_INET ? "%s%s:%s" : "%s[%s]:%s",
                         len > 0 ? "," : "", ip, port);
        n = w >= 0 && (size_t)w < outsz - len ? n + 1 : -2;
    }
    freeaddrinfo(res);
    return n;
}

/* Splits "host:port" or "[v6]:port" in place; false when either part is missing. */
static bool rpc_split_hostport(char *entry, char **host, char **port)
{
    char *colon = strrchr(entry, ':');
    if (colon == NULL || colon == entry || colon[1] == '\0')
        return false;
    *colon = '\0';
    *port = colon + 1;
    *host = entry;
    size_t n = strlen(entry);
    if (entry[0] == '[') {
        if (n < 3 || entry[n - 1] != ']')
            return false;
        entry[n - 1] = '\0';
        *host = entry + 1;
    }
    return true;
}

/* "a:1,b:2" → "ipv4:A:1,B:2" (or ipv6:) with every name resolved now: gRPC's
 * address-list schemes take literal addresses only. Every entry must yield an
 * address of the chosen family. The caller frees the result. */
static char *rpc_target_from_list(const char *list, err_t *err)
{
    size_t cap = RPC_LIST_MAX;
    char *v4 = common__xcalloc(1, cap), *v6 = common__xcalloc(1, cap);
    char *copy = common__xstrdup(list), *save = NULL, *out = NULL;
    bool all_v4 = true, all_v6 = true;
    for (char *e = strtok_r(copy, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save)) {
        char *host, *port;
        if (!rpc_split_hostport(e, &host, &port)) {
            err_set(err, ERR_INVALID, "target entry %s is not host:port", e);
            goto out;
        }
        int n4 = rpc_resolve_append(host, port, AF_INET, v4, cap);
        int n6 = rpc_resolve_append(host, port, AF_INET6, v6, cap);
        if (n4 == -2 || n6 == -2) {
            err_set(err, ERR_INVALID, "target %s has too many addresses", list);
            goto out;
        }
        if (n4 <= 0 && n6 <= 0) {
            err_set(err, ERR_UNAVAILABLE, "cannot resolve %s", host);
            goto out;
        }
        all_v4 = all_v4 && n4 > 0;
        all_v6 = all_v6 && n6 > 0;
    }
    if (!all_v4 && !all_v6) {
        err_set(err, ERR_INVALID, "target %s mixes IPv4 and IPv6 addresses", list);
        goto out;
    }
    size_t len = strlen(all_v4 ? v4 : v6) + 6;
    out = common__xmalloc(len);
    snprintf(out, len, "%s:%s", all_v4 ? "ipv4" : "ipv6", all_v4 ? v4 : v6);
out:
    free(copy);
    free(v4);
    free(v6);
    return out;
}

/* The gRPC target for ours: a list becomes an address list; anything else ("host:
 * port", "dns:///...") is gRPC's syntax already (it prefixes dns:/// itself). */
static char *rpc_target_build(const char *target, err_t *err)
{
    if (target == NULL || target[0] == '\0') {
        err_set(err, ERR_INVALID, "rpc channel needs a target");
        return NULL;
    }
    if (strchr(target, ',') != NULL && strstr(target, "://") == NULL &&
        strncmp(target, "ipv4:", 5) != 0 && strncmp(target, "ipv6:", 5) != 0)
        return rpc_target_from_list(target, err);
    return common__xstrdup(target);
}

/* The host name a TLS channel checks the server's certificate against when the
 * target is a list (its first host as written: gRPC would take the whole resolved
 * list as the authority), or NULL when gRPC derives it from the target itself.
 * The caller frees the result. */
static char *rpc_target_tls_name(const char *target, const char *resolved)
{
    if (strcmp(target, resolved) == 0)
        return NULL;
    char *first = common__xstrdup(target), *host, *port;
    char *comma = strchr(first, ',');
    if (comma != NULL)
        *comma = '\0';
    char *name = rpc_split_hostport(first, &host, &port) ? common__xstrdup(host) : NULL;
    free(first);
    return name;
}

/* The channel's credentials: mutual TLS with the program's key pair, or plaintext. */
static grpc_channel_credentials *rpc_channel_creds(const rpc_tls_t *tls)
{
    if (tls == NULL)
        return grpc_insecure_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {.private_key = tls->key_pem, .cert_chain = tls->cert_pem};
    return grpc_ssl_credentials_create(tls->ca_pem, &pair, NULL, NULL);
}

/* ---------------------------------------------------------------- channel ---- */

static void *rpc_client_thread(void *arg)
{
    grpc_completion_queue *cq = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        rpc__tag_t *tag = ev.tag;
        tag->step(tag, ev.success != 0);
    }
}

rpc_channel_t *rpc_channel_new(const char *target, const rpc_channel_opts_t *opts, err_t *err)
{
    rpc_channel_opts_t o = opts != NULL ? *opts : (rpc_channel_opts_t){0};
    if (o.max_message_bytes < 0 || o.keepalive_ms < 0 || o.max_reconnect_backoff_ms < 0) {
        err_set(err, ERR_INVALID, "rpc channel options must not be negative");
        return NULL;
    }
    if (o.tls != NULL &&
        (o.tls->ca_pem == NULL || o.tls->cert_pem == NULL || o.tls->key_pem == NULL)) {
        err_set(err, ERR_INVALID, "rpc channel TLS needs the CA, a certificate and its key");
        return NULL;
    }
    char *resolved = rpc_target_build(target, err);
    if (resolved == NULL)
        return NULL;
    char *tls_name = o.tls != NULL ? rpc_target_tls_name(target, resolved) : NULL;
    int max_msg = o.max_message_bytes > 0 ? o.max_message_bytes : RPC_DEFAULT_MAX_MESSAGE;
    grpc_arg args[] = {
        {GRPC_ARG_STRING, GRPC_ARG_SERVICE_CONFIG, {.string = RPC_ROUND_ROBIN}},
        /* A name is resolved again when a connection closes (a server's maximum
         * connection age, a replica gone): allow that every second, not every 30. */
        {GRPC_ARG_INTEGER,
         GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS,
         {.integer = RPC_MIN_RERESOLVE_MS}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = max_msg}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = max_msg}},
        {GRPC_ARG_INTEGER,
         GRPC_ARG_KEEPALIVE_TIME_MS,
         {.integer = o.keepalive_ms > 0 ? o.keepalive_ms : RPC_DEFAULT_KEEPALIVE_MS}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = RPC_KEEPALIVE_TIMEOUT_MS}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
        /* Keep pinging an idle connection (the default stops after 2 pings). */
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, {.integer = 0}},
        {GRPC_ARG_INTEGER,
         GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
         {.integer = RPC_INITIAL_BACKOFF_MS}},
        {GRPC_ARG_INTEGER,
         GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
         {.integer = o.max_reconnect_backoff_ms > 0 ? o.max_reconnect_backoff_ms
                                                    : RPC_DEFAULT_MAX_BACKOFF}},
        /* Last, so that it is left out unless a list's first host names the server. */
        {GRPC_ARG_STRING, GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, {.string = tls_name}},
    };
    grpc_channel_args ca = {.num_args = sizeof(args) / sizeof(args[0]) - (tls_name ? 0 : 1),
                            .args = args};

    rpc__grpc_init();
    rpc_channel_t *ch = common__xcalloc(1, sizeof(*ch));
    ch->target = common__xstrdup(target);
    pthread_mutex_init(&ch->lock, NULL);
    grpc_channel_credentials *creds = rpc_channel_creds(o.tls);
    ch->ch = grpc_channel_create(resolved, creds, &ca);
    grpc_channel_credentials_release(creds);
    free(resolved);
    free(tls_name);
    return ch;
}

void rpc_channel_free(rpc_channel_t *ch)
{
    if (ch == NULL)
        return;
    if (ch->cq != NULL) {
        /* The queue reports GRPC_QUEUE_SHUTDOWN only after every pending call's tag. */
        grpc_completion_queue_shutdown(ch->cq);
        pthread_join(ch->thread, NULL);
        grpc_completion_queue_destroy(ch->cq);
    }
    grpc_channel_destroy(ch->ch);
    for (rpc_cmethod_t *m = ch->methods, *next; m != NULL; m = next) {
        next = m->next;
        free(m->path);
        free(m);
    }
    pthread_mutex_destroy(&ch->lock);
    free(ch->target);
    free(ch);
    grpc_shutdown();
}

/* The channel's entry for svc/method, registered on first use; NULL with err set
 * when the descriptor has no such method or it streams. */
static rpc_cmethod_t *rpc_cmethod_get(rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                                      const char *method, err_t *err)
{
    const ProtobufCMethodDescriptor *desc =
        method != NULL ? protobuf_c_service_descriptor_get_method_by_name(svc, method) : NULL;
    if (desc == NULL) {
        err_set(err, ERR_INVALID, "%s has no method %s", svc->name,
                method != NULL ? method : "(null)");
        return NULL;
    }
    pthread_mutex_lock(&ch->lock);
    rpc_cmethod_t *m = ch->methods;
    while (m != NULL && m->desc != desc)
        m = m->next;
    if (m == NULL) {
        m = common__xcalloc(1, sizeof(*m));
        m->desc = desc;
        size_t len = strlen(svc->name) + strlen(desc->name) + 3;
        m->path = common__xmalloc(len);
        snprintf(m->path, len, "/%s/%s", svc->name, desc->name);
        m->handle = grpc_channel_register_call(ch->ch, m->path, NULL, NULL);
        m->duration =
            metrics_histogram("rpc_client_duration_seconds", "outgoing RPC latency by method",
                              (const char *[]){"method", m->path, NULL}, metrics_latency_buckets,
                              metrics_latency_buckets_n);
        rpc__code_counters_init(m->requests, RPC_CLIENT_REQUESTS, RPC_CLIENT_REQUESTS_HELP,
                                m->path);
        m->next = ch->methods;
        ch->methods = m;
    }
    pthread_mutex_unlock(&ch->lock);
    return m;
}

/* ------------------------------------------------------------------ calls ---- */

/* The call's CLIENT span, a child of the caller's traceparent: the peer gets the
 * span's own context as its parent, so what is sent is returned. */
static const char *rpc_ccall_span(rpc_ccall_t *cc, const ProtobufCServiceDescriptor *svc,
                                  const char *traceparent)
{
    span_start(&cc->span, SPAN_CLIENT, cc->m->path + 1, traceparent);
    span_set_str(&cc->span, "rpc.system", "grpc");
    span_set_str(&cc->span, "rpc.service", svc->name);
    span_set_str(&cc->span, "rpc.method", cc->m->desc->name);
    return span_traceparent(&cc->span);
}

/* Validates and copies everything the call sends (metadata into the arena, the
 * request packed), so the caller's objects are free to go once the call started. */
static int rpc_ccall_init(rpc_ccall_t *cc, rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                          const char *method, const ProtobufCMessage *req, arena_t *a,
                          const rpc_metadata_t *md, size_t n_md, err_t *err)
{
    memset(cc, 0, sizeof(*cc));
    cc->ch = ch;
    cc->arena = a;
    cc->details = grpc_empty_slice();
    grpc_metadata_array_init(&cc->recv_initial);
    grpc_metadata_array_init(&cc->recv_trailing);
    cc->m = rpc_cmethod_get(ch, svc, method, err);
    if (cc->m == NULL)
        return err != NULL ? err->code : ERR_INVALID;
    if (req == NULL || req->descriptor != cc->m->desc->input)
        return err_set(err, ERR_INVALID, "%s takes a %s", cc->m->path, cc->m->desc->input->name);
    for (size_t i = 0; i < n_md; i++) {
        if (!rpc__metadata_key_ok(md[i].key) || !rpc__metadata_value_ok(md[i].value))
            return err_set(err, ERR_INVALID, "metadata %s is not valid", md[i].key);
    }
    cc->send_md = n_md > 0 ? arena_calloc(a, n_md, sizeof(*cc->send_md)) : NULL;
    for (size_t i = 0; i < n_md; i++) {
        const char *value = md[i].value;
        if (strcmp(md[i].key, "traceparent") == 0)
            value = rpc_ccall_span(cc, svc, value);
        cc->send_md[i].key = grpc_slice_from_copied_string(md[i].key);
        cc->send_md[i].value = grpc_slice_from_copied_string(value);
    }
    cc->n_send_md = n_md;
    cc->send = rpc__pack(req);
    return 0;
}

static void rpc_ccall_cleanup(rpc_ccall_t *cc)
{
    if (cc->call != NULL)
        grpc_call_unref(cc->call);
    for (size_t i = 0; i < cc->n_send_md; i++) {
        grpc_slice_unref(cc->send_md[i].key);
        grpc_slice_unref(cc->send_md[i].value);
    }
    if (cc->send != NULL)
        grpc_byte_buffer_destroy(cc->send);
    if (cc->recv != NULL)
        grpc_byte_buffer_destroy(cc->recv);
    grpc_metadata_array_destroy(&cc->recv_initial);
    grpc_metadata_array_destroy(&cc->recv_trailing);
    grpc_slice_unref(cc->details);
}

/* Creates the call on cq and starts the one batch of a unary exchange. */
static int rpc_ccall_start(rpc_ccall_t *cc, grpc_completion_queue *cq, int64_t timeout_ms,
                           err_t *err)
{
    cc->start_us = clock_mono_us();
    gpr_timespec deadline = gpr_time_add(
        gpr_now(GPR_CLOCK_MONOTONIC),
        gpr_time_from_millis(timeout_ms > 0 ? timeout_ms : RPC_DEFAULT_TIMEOUT_MS, GPR_TIMESPAN));
    cc->call = grpc_channel_create_registered_call(cc->ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                   cc->m->handle, deadline, NULL);
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = cc->n_send_md;
    ops[0].data.send_initial_metadata.metadata = cc->send_md;
    /* Explicitly set, so a service config cannot turn waiting off. */
    ops[0].flags =
        GRPC_INITIAL_METADATA_WAIT_FOR_READY | GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = cc->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &cc->recv_initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &cc->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &cc->recv_trailing;
    ops[5].data.recv_status_on_client.status = &cc->status;
    ops[5].data.recv_status_on_client.status_details = &cc->details;
    grpc_call_error rc = grpc_call_start_batch(cc->call, ops, 6, &cc->tag, NULL);
    if (rc != GRPC_CALL_OK)
        return err_set(err, ERR_INTERNAL, "%s not started: %s", cc->m->path,
                       grpc_call_error_to_string(rc));
    return 0;
}

/* Codes only a peer's handler sends (grpc.io "Status codes": the library never
 * generates the first seven; PERMISSION_DENIED and UNAUTHENTICATED come from call
 * credentials, which our channels do not carry, or from the peer's x-user-* gate).
 * A failed TLS handshake is UNAVAILABLE, like any unreachable peer. */
static bool rpc_status_from_handler(int code)
{
    switch (code) {
    case ERR_INVALID:
    case ERR_NOT_FOUND:
    case ERR_CONFLICT:
    case ERR_PRECONDITION:
    case ERR_ABORTED:
    case ERR_RANGE:
    case ERR_DATA_LOSS:
    case ERR_PERMISSION:
    case ERR_UNAUTHENTICATED:
        return true;
    default:
        return false;
    }
}

/* A failed status as our error: message from the status, field violations from
 * grpc-status-details-bin. A deadline that passed while no connection was ready means
 * the peer is down (503), not slow (504). */
static int rpc_ccall_status_error(rpc_ccall_t *cc, err_t *err)
{
    int code = err_from_grpc_status((int)cc->status);
    if (code == ERR_TIMEOUT &&
        grpc_channel_check_connectivity_state(cc->ch->ch, 0) != GRPC_CHANNEL_READY)
        return err_set(err, ERR_UNAVAILABLE, "%s: no connection to %s before the deadline",
                       cc->m->path, cc->ch->target);
    if (GRPC_SLICE_LENGTH(cc->details) > 0)
        err_set(err, code, "%.*s", (int)GRPC_SLICE_LENGTH(cc->details),
                (const char *)GRPC_SLICE_START_PTR(cc->details));
    else
        err_set(err, code, "%s failed with %s", cc->m->path, err_code_name(code));
    for (size_t i = 0; i < cc->recv_trailing.count; i++) {
        const grpc_metadata *md = &cc->recv_trailing.metadata[i];
        if (rpc__slice_eq(md->key, RPC__STATUS_DETAILS_KEY))
            rpc__status_details_parse(md->value, err);
    }
    if (err != NULL)
        err->for_client = rpc_status_from_handler(code);
    return code;
}

/* The outcome of a completed batch: 0 and *resp, or the error. Counts it. */
static int rpc_ccall_result(rpc_ccall_t *cc, bool ok, ProtobufCMessage **resp, err_t *err)
{
    int rc = 0;
    *resp = NULL;
    if (!ok)
        rc = err_set(err, ERR_INTERNAL, "%s: the call batch failed", cc->m->path);
    else if (cc->status != GRPC_STATUS_OK)
        rc = rpc_ccall_status_error(cc, err);
    else if (cc->recv == NULL)
        rc = err_set(err, ERR_INTERNAL, "%s answered no message", cc->m->path);
    else if ((*resp = rpc__unpack(cc->m->desc->output, cc->recv, cc->arena)) == NULL)
        rc = err_set(err, ERR_INTERNAL, "%s answered an invalid %s", cc->m->path,
                     cc->m->desc->output->name);
    metrics_counter_add(rpc__code_counter(cc->m->requests, RPC_CLIENT_REQUESTS,
                                          RPC_CLIENT_REQUESTS_HELP, cc->m->path,
                                          (grpc_status_code)err_to_grpc_status(rc)),
                        1);
    metrics_histogram_observe(cc->m->duration, (double)(clock_mono_us() - cc->start_us) / 1e6);
    if (span_recording(&cc->span)) {
        span_set_int(&cc->span, "rpc.grpc.status_code", err_to_grpc_status(rc));
        if (rc != 0)
            span_fail(&cc->span, err != NULL ? err->msg : err_code_name(rc));
        span_end(&cc->span);
    }
    return rc;
}

int rpc_channel_call(rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc, const char *method,
                     const ProtobufCMessage *req, arena_t *a, ProtobufCMessage **resp,
                     const rpc_metadata_t *md, size_t n_md, int64_t timeout_ms, err_t *err)
{
    rpc_ccall_t cc;
    *resp = NULL;
    int rc = rpc_ccall_init(&cc, ch, svc, method, req, a, md, n_md, err);
    if (rc != 0) {
        rpc_ccall_cleanup(&cc);
        return rc;
    }
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    rc = rpc_ccall_start(&cc, cq, timeout_ms, err);
    if (rc == 0) {
        grpc_event ev =
            grpc_completion_queue_pluck(cq, &cc.tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        rc = rpc_ccall_result(&cc, ev.success != 0, resp, err);
    }
    rpc_ccall_cleanup(&cc);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
}

/* ------------------------------------------------------------ asynchronous ---- */

static void rpc_ccall_async_step(rpc__tag_t *tag, bool ok)
{
    rpc_ccall_t *cc = (rpc_ccall_t *)tag;
    err_t err = ERR_INIT;
    ProtobufCMessage *resp;
    int rc = rpc_ccall_result(cc, ok, &resp, &err);
    /* Cleanup first: it reads the metadata copied into the caller's arena, which
     * the caller may free as soon as `done` has run (rpc.h). */
    rpc_done_fn done = cc->done;
    void *ud = cc->ud;
    rpc_ccall_cleanup(cc);
    free(cc);
    done(ud, rc, resp, &err);
}

static grpc_completion_queue *rpc_channel_async_cq(rpc_channel_t *ch)
{
    pthread_mutex_lock(&ch->lock);
    if (ch->cq == NULL) {
        ch->cq = grpc_completion_queue_create_for_next(NULL);
        if (pthread_create(&ch->thread, NULL, rpc_client_thread, ch->cq) != 0) {
            LOG_ERR("rpc client thread not created", LOG_STR("target", ch->target));
            abort();
        }
    }
    grpc_completion_queue *cq = ch->cq;
    pthread_mutex_unlock(&ch->lock);
    return cq;
}

int rpc_channel_call_async(rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                           const char *method, const ProtobufCMessage *req, arena_t *a,
                           const rpc_metadata_t *md, size_t n_md, int64_t timeout_ms,
                           rpc_done_fn done, void *ud, err_t *err)
{
    rpc_ccall_t *cc = common__xmalloc(sizeof(*cc));
    int rc = rpc_ccall_init(cc, ch, svc, method, req, a, md, n_md, err);
    if (rc == 0) {
        cc->tag.step = rpc_ccall_async_step;
        cc->done = done;
        cc->ud = ud;
        rc = rpc_ccall_start(cc, rpc_channel_async_cq(ch), timeout_ms, err);
    }
    if (rc != 0) {
        rpc_ccall_cleanup(cc);
        free(cc);
    }
    return rc;
}
