/*
 * saga: the consumer loop of saga.h — decode, route, inbox + handler in one
 * transaction, retry or dead-letter, then commit the offset.
 *
 * Everything for one message (headers, key, unpacked event, the handler's
 * allocations, query results) lives in one arena freed when the message is done.
 */
#include "common/saga.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"

#define SAGA_POLL_MS        100
#define SAGA_SLEEP_SLICE_MS 50
#define SAGA_DLQ_WAIT_MS    1000
#define SAGA_STOP_GRACE_MS  5000
#define SAGA_DLQ_EXTRA      7
#define SAGA_TRACE_ID_LEN   32

struct saga_consumer {
    saga_consumer_opts_t o;
    saga_route_t *routes;
    char *group;
    kfk_consumer_t *kc;
    pthread_t thread;
    atomic_bool stop;
};

typedef enum { SAGA_OK, SAGA_DUPLICATE, SAGA_IGNORED, SAGA_DLQ, SAGA_STOPPED } saga_outcome_t;

static const char *const saga_outcome_names[] = {"ok", "duplicate", "ignored", "dlq", "stopped"};

/* What a transaction attempt needs. */
typedef struct saga_txn {
    saga_consumer_t *c;
    const saga_route_t *route;
    const saga_event_t *ev;
    arena_t *a;
    bool duplicate;
} saga_txn_t;

static bool saga_stopping(saga_consumer_t *c)
{
    return atomic_load(&c->stop);
}

/* Sleeps up to ms in slices; false if stop was requested meanwhile. */
static bool saga_sleep(saga_consumer_t *c, int64_t ms)
{
    int64_t end = clock_mono_us() + ms * 1000;
    while (!saga_stopping(c)) {
        int64_t left = (end - clock_mono_us()) / 1000;
        if (left <= 0)
            return true;
        clock_sleep_ms(left < SAGA_SLEEP_SLICE_MS ? left : SAGA_SLEEP_SLICE_MS);
    }
    return false;
}

static int64_t saga_backoff_ms(const saga_consumer_t *c, int attempt)
{
    int64_t ms = c->o.backoff_base_ms;
    for (int i = 1; i < attempt && ms < c->o.backoff_max_ms; i++)
        ms *= 2;
    return ms < c->o.backoff_max_ms ? ms : c->o.backoff_max_ms;
}

static void saga_count(const char *name, const char *help, const char *const *labels)
{
    metrics_counter_add(metrics_counter(name, help, labels), 1);
}

/* ---- the transaction ---- */

static int saga_txn_fn(db_conn_t *tx, void *ud, err_t *err)
{
    saga_txn_t *t = ud;
    const saga_event_t *ev = t->ev;
    db_res_t *res = db_execf(tx, t->a, err,
                             "INSERT INTO processed_events (ce_id, ce_type, topic)"
                             " VALUES ($1, $2, $3) ON CONFLICT (ce_id) DO NOTHING",
                             3, ev->ce.id, ev->ce.type, ev->topic);
    if (!res)
        return err->code;
    t->duplicate = db_res_affected(res) == 0;
    if (t->duplicate)
        return 0;
    int rc = t->route->fn(tx, t->a, ev, t->c->o.ctx, err);
    if (rc == 0)
        return 0;
    /* A handler that forgot to say why still fails, with a code we can route on. */
    if (rc > 0)
        rc = ERR_UNKNOWN;
    if (err->code == ERR_OK)
        err_set(err, rc, "handler failed without a message");
    return rc;
}

/* ---- dead letters ---- */

/* The original headers plus the failure, as saga.h lists them. */
static size_t saga_dlq_headers(saga_consumer_t *c, const kfk_msg_t *m, arena_t *a, const err_t *why,
                               int attempts, kfk_header_t **out)
{
    kfk_header_t *orig;
    size_t n = kfk_msg_headers(m, a, &orig);
    kfk_header_t *h = arena_calloc(a, n + SAGA_DLQ_EXTRA, sizeof(*h));
    if (n)
        memcpy(h, orig, n * sizeof(*h));
    const char *extra[SAGA_DLQ_EXTRA][2] = {
        {"dlq_error", why->msg},
        {"dlq_code", err_code_name(why->code)},
        {"dlq_attempts", arena_sprintf(a, "%d", attempts)},
        {"dlq_source_topic", kfk_msg_topic(m)},
        {"dlq_partition", arena_sprintf(a, "%" PRId32, kfk_msg_partition(m))},
        {"dlq_offset", arena_sprintf(a, "%" PRId64, kfk_msg_offset(m))},
        {"dlq_group", c->group},
    };
    for (size_t i = 0; i < SAGA_DLQ_EXTRA; i++)
        h[n + i] =
            (kfk_header_t){.name = extra[i][0], .value = extra[i][1], .len = strlen(extra[i][1])};
    *out = h;
    return n + SAGA_DLQ_EXTRA;
}

/* One produce of the DLQ copy, waiting for its report (giving up a grace period
 * after stop). 0 once the broker has it. */
static int saga_dlq_once(saga_consumer_t *c, const kfk_out_msg_t *out, err_t *err)
{
    kfk_batch_t *b = kfk_batch_new(1);
    int64_t stop_at = 0;
    int rc = kfk_produce(c->o.dlq_producer, out, b, err);
    while (rc == 0 && kfk_batch_wait(b, SAGA_DLQ_WAIT_MS) != 0) {
        if (saga_stopping(c)) {
            stop_at = stop_at ? stop_at : clock_mono_us();
            if (clock_mono_us() - stop_at >= SAGA_STOP_GRACE_MS * 1000)
                rc = err_set(err, ERR_CANCELLED, "stopped before the dlq copy was delivered");
        }
    }
    if (rc == 0)
        rc = kfk_batch_status(b, 0, NULL, NULL, err);
    kfk_batch_free(b);
    return rc;
}

/* Copies the message to <topic>.dlq, retrying until the broker acknowledges it
 * (the offset must not move past a message that is neither processed nor
 * dead-lettered). SAGA_DLQ, or SAGA_STOPPED if stop came first. */
static saga_outcome_t saga_dead_letter(saga_consumer_t *c, const kfk_msg_t *m, arena_t *a,
                                       const char *type, const err_t *why, int attempts)
{
    kfk_header_t *h;
    size_t n = saga_dlq_headers(c, m, a, why, attempts, &h);
    kfk_out_msg_t out = {
        .topic = arena_sprintf(a, "%s.dlq", kfk_msg_topic(m)), .headers = h, .n_headers = n};
    out.key = kfk_msg_key(m, &out.key_len);
    out.value = kfk_msg_value(m, &out.len);
    LOG_WARN("event dead-lettered", LOG_STR("topic", kfk_msg_topic(m)),
             LOG_INT("partition", kfk_msg_partition(m)), LOG_INT("offset", kfk_msg_offset(m)),
             LOG_STR("ce_type", type), LOG_STR("code", err_code_name(why->code)),
             LOG_STR("error", why->msg), LOG_INT("attempts", attempts));
    for (int attempt = 1;; attempt++) {
        err_t err = ERR_INIT;
        if (saga_dlq_once(c, &out, &err) == 0)
            break;
        LOG_WARN("dead-letter produce failed, retrying", LOG_STR("topic", out.topic),
                 LOG_STR("error", err.msg));
        if (!saga_sleep(c, saga_backoff_ms(c, attempt)))
            return SAGA_STOPPED;
    }
    const char *labels[] = {"topic", kfk_msg_topic(m), NULL};
    saga_count("kafka_events_dlq_total", "Kafka events sent to a dead-letter topic", labels);
    return SAGA_DLQ;
}

/* ---- one message ---- */

/* Counts and logs a failed attempt (also for a message whose headers did not parse:
 * then its type and id are empty). */
static void saga_failed_attempt(const saga_event_t *ev, const err_t *err, int attempt)
{
    const char *type = ev->ce.type ? ev->ce.type : "";
    const char *labels[] = {"topic", ev->topic, "type", type, NULL};
    saga_count("kafka_events_failed_total", "Failed attempts at handling a Kafka event", labels);
    LOG_WARN("event handling failed", LOG_STR("ce_type", type),
             LOG_STR("ce_id", ev->ce.id ? ev->ce.id : ""), LOG_STR("key", ev->key),
             LOG_STR("code", err_code_name(err->code)), LOG_STR("error", err->msg),
             LOG_INT("attempt", attempt), LOG_BOOL("transient", err_is_transient(err->code)));
}

/* Runs the inbox + handler transaction until it commits, is a duplicate, or must be
 * dead-lettered. */
static saga_outcome_t saga_apply(saga_consumer_t *c, const saga_route_t *route,
                                 const saga_event_t *ev, const kfk_msg_t *m, arena_t *a)
{
    int failures = 0;
    for (int attempt = 1;; attempt++) {
        err_t err = ERR_INIT;
        saga_txn_t t = {.c = c, .route = route, .ev = ev, .a = a};
        if (db_txn(c->o.pool, saga_txn_fn, &t, &err) == 0)
            return t.duplicate ? SAGA_DUPLICATE : SAGA_OK;
        saga_failed_attempt(ev, &err, attempt);
        if (!err_is_transient(err.code) && ++failures >= c->o.max_attempts)
            return saga_dead_letter(c, m, a, ev->ce.type, &err, attempt);
        if (!saga_sleep(c, saga_backoff_ms(c, attempt)))
            return SAGA_STOPPED;
    }
}

static const saga_route_t *saga_route(const saga_consumer_t *c, const char *type)
{
    for (size_t i = 0; i < c->o.n_routes; i++)
        if (strcmp(c->routes[i].type->name, type) == 0)
            return &c->routes[i];
    return NULL;
}

/* Log context for the handler: request_id = ce_id, trace_id from traceparent. */
static void saga_log_ctx(const saga_event_t *ev)
{
    char trace[SAGA_TRACE_ID_LEN + 1] = "";
    if (ev->ce.traceparent)
        memcpy(trace, ev->ce.traceparent + 3, SAGA_TRACE_ID_LEN);
    log_ctx_set(ev->ce.id, trace[0] ? trace : NULL);
}

/* Decodes and routes one message; returns its outcome (ev is filled as far as the
 * message allowed). */
static saga_outcome_t saga_dispatch(saga_consumer_t *c, const kfk_msg_t *m, arena_t *a,
                                    saga_event_t *ev)
{
    err_t err = ERR_INIT;
    if (kfk_msg_ce(m, a, &ev->ce, &err) != 0) {
        ev->ce = (kfk_ce_t){0}; /* nothing half-parsed leaks into logs or labels */
        saga_failed_attempt(ev, &err, 1);
        return saga_dead_letter(c, m, a, "", &err, 1);
    }
    saga_log_ctx(ev);
    const saga_route_t *route = saga_route(c, ev->ce.type);
    if (!route)
        return SAGA_IGNORED;
    size_t len;
    const void *value = kfk_msg_value(m, &len);
    ev->msg = protobuf_c_message_unpack(route->type, arena_protobuf_allocator(a), len, value);
    if (!ev->msg) {
        err_set(&err, ERR_INVALID, "payload of %zu bytes does not decode as %s", len, ev->ce.type);
        saga_failed_attempt(ev, &err, 1);
        return saga_dead_letter(c, m, a, ev->ce.type, &err, 1);
    }
    return saga_apply(c, route, ev, m, a);
}

static void saga_handle(saga_consumer_t *c, kfk_msg_t *m)
{
    int64_t t0 = clock_mono_us();
    arena_t *a = arena_new(0);
    size_t key_len;
    const char *key = kfk_msg_key(m, &key_len);
    saga_event_t ev = {.topic = kfk_msg_topic(m),
                       .partition = kfk_msg_partition(m),
                       .offset = kfk_msg_offset(m),
                       .key = key ? arena_strndup(a, key, key_len) : ""};
    saga_outcome_t out = saga_dispatch(c, m, a, &ev);
    const char *type = ev.ce.type ? ev.ce.type : "";
    if (out != SAGA_STOPPED) {
        err_t err = ERR_INIT;
        if (kfk_consumer_commit(c->kc, m, &err) != 0)
            LOG_DEBUG("offset not stored, the event will be redelivered",
                      LOG_STR("error", err.msg));
        const char *labels[] = {"topic", ev.topic, "type", type, "outcome", saga_outcome_names[out],
                                NULL};
        saga_count("kafka_events_consumed_total", "Kafka events consumed", labels);
        if (out == SAGA_DUPLICATE)
            saga_count("kafka_events_duplicate_total", "Kafka events skipped as duplicates",
                       (const char *[]){"topic", ev.topic, NULL});
    }
    double secs = (double)(clock_mono_us() - t0) / 1e6;
    metrics_histogram_observe(metrics_histogram("kafka_event_duration_seconds",
                                                "Kafka event handling time",
                                                (const char *[]){"topic", ev.topic, NULL},
                                                metrics_latency_buckets, metrics_latency_buckets_n),
                              secs);
    LOG_DEBUG("event handled", LOG_STR("topic", ev.topic), LOG_STR("ce_type", type),
              LOG_STR("key", ev.key), LOG_STR("outcome", saga_outcome_names[out]),
              LOG_DBL("duration_ms", secs * 1000.0));
    log_ctx_set(NULL, NULL);
    arena_free(a);
}

static void *saga_main(void *arg)
{
    saga_consumer_t *c = arg;
    while (!saga_stopping(c)) {
        kfk_msg_t *m = kfk_consumer_poll(c->kc, SAGA_POLL_MS);
        if (!m)
            continue;
        saga_handle(c, m);
        kfk_msg_free(m);
    }
    kfk_consumer_close(c->kc);
    return NULL;
}

/* ---- start / stop ---- */

static int saga_check_opts(const saga_consumer_opts_t *o, err_t *err)
{
    if (!o->pool || !o->dlq_producer || !o->routes || o->n_routes == 0 || !o->topics ||
        o->n_topics == 0)
        return err_set(err, ERR_INVALID,
                       "saga consumer needs a pool, a producer, topics and routes");
    for (size_t i = 0; i < o->n_routes; i++)
        if (!o->routes[i].type || !o->routes[i].fn)
            return err_set(err, ERR_INVALID, "saga route %zu has no type or handler", i);
    if (o->max_attempts < 0 || o->backoff_base_ms < 0 || o->backoff_max_ms < 0)
        return err_set(err, ERR_INVALID, "saga consumer limits must not be negative");
    return 0;
}

saga_consumer_t *saga_consumer_start(const saga_consumer_opts_t *o, err_t *err)
{
    if (saga_check_opts(o, err) != 0)
        return NULL;
    kfk_consumer_t *kc =
        kfk_consumer_new(o->brokers, o->group, o->topics, o->n_topics, o->kafka_conf, err);
    if (!kc)
        return NULL;
    saga_consumer_t *c = common__xcalloc(1, sizeof(*c));
    c->o = *o;
    c->routes = common__xcalloc(o->n_routes, sizeof(*c->routes));
    memcpy(c->routes, o->routes, o->n_routes * sizeof(*c->routes));
    c->o.routes = c->routes;
    c->o.topics = NULL; /* subscribed: librdkafka has its own copy */
    c->group = common__xstrdup(o->group);
    c->o.group = c->group;
    c->o.max_attempts = o->max_attempts ? o->max_attempts : 5;
    c->o.backoff_base_ms = o->backoff_base_ms ? o->backoff_base_ms : 100;
    c->o.backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 5000;
    c->kc = kc;
    atomic_init(&c->stop, false);
    if (pthread_create(&c->thread, NULL, saga_main, c) != 0) {
        kfk_consumer_close(kc);
        free(c->routes);
        free(c->group);
        free(c);
        err_set(err, ERR_INTERNAL, "saga consumer: cannot start its thread");
        return NULL;
    }
    return c;
}

void saga_consumer_stop(saga_consumer_t *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    free(c->routes);
    free(c->group);
    free(c);
}
