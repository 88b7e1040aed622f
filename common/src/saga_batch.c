/*
 * saga_batch: applying what one worker took — decode, inbox + handler in as few
 * transactions as failures allow, retry or dead-letter, then record each offset.
 *
 * The happy path is one transaction for the whole batch: for each event, the inbox
 * insert and the handler, then one COMMIT (one WAL flush for all of them). No
 * savepoints: they would cost two more round trips per event on every batch, while
 * failures are rare. Instead, when event k fails the transaction is rolled back and
 *   1. events [0, k) run again as a batch (they succeeded before; if one of them
 *      fails now, the same rule applies to it),
 *   2. event k runs alone, with the per-event policy of saga.h (transient errors
 *      retried without limit, others up to max_attempts, then the DLQ),
 *   3. the rest continue as a new batch.
 * So a failing or poison event is retried or dead-lettered alone, every other event
 * takes effect once, and events are applied in the order they were taken (per
 * partition, hence per key). A failure that names no event (BEGIN or COMMIT failed)
 * sends the first event of the batch down the per-event path.
 *
 * Offsets are recorded only once an event is settled (committed, a duplicate,
 * ignored, dead-lettered), in order; at the first abandoned event (shutdown during a
 * retry) recording stops, so nothing after it is acknowledged.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/span.h"
#include "common/trace.h"
#include "saga_internal.h"
#include "saga_metrics.h"

#define SAGA_SLEEP_SLICE_MS 50
#define SAGA_LOG_KEY_MAX    128 /* bytes of a key in a log line */
#define SAGA_DLQ_WAIT_MS    1000
#define SAGA_STOP_GRACE_MS  5000
#define SAGA_DLQ_EXTRA      11 /* dlq_* headers at most (saga_dlq_copy) */
#define SAGA_NONE           ((size_t)-1)

const char *const saga__outcome_names[SAGA_N_OUTCOMES] = {
    [SAGA_OK] = "ok",   [SAGA_DUPLICATE] = "duplicate", [SAGA_IGNORED] = "ignored",
    [SAGA_DLQ] = "dlq", [SAGA_DROPPED] = "dropped",     [SAGA_STOPPED] = "stopped",
};

bool saga__stopping(saga_consumer_t *c)
{
    return atomic_load(&c->stop);
}

/* Sleeps up to ms in slices; false if stop was requested meanwhile. */
static bool saga_sleep(saga_consumer_t *c, int64_t ms)
{
    int64_t end = clock_mono_us() + ms * 1000;
    while (!saga__stopping(c)) {
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

/* Log context for the handler: request_id = ce_id, trace_id from traceparent. */
static void saga_log_ctx(const saga_event_t *ev)
{
    char trace[TRACE_ID_LEN + 1];
    log_ctx_set(ev->ce.id, trace_id_of(ev->ce.traceparent, trace) ? trace : NULL);
}

/* Counts and logs a failed attempt (also for a message whose headers did not parse:
 * then its type and id are empty). */
static void saga_failed_attempt(saga_consumer_t *c, const saga_item_t *it, const err_t *err,
                                int attempt)
{
    const saga_event_t *ev = &it->ev;
    const char *type = ev->ce.type ? ev->ce.type : "";
    saga__metrics_failed(c->metrics, ev->topic, it->route);
    /* A key can be as long as a record: the log gets its start. */
    const char *key = strlen(ev->key) > SAGA_LOG_KEY_MAX
                          ? arena_sprintf(it->a, "%.*s…", SAGA_LOG_KEY_MAX, ev->key)
                          : ev->key;
    LOG_WARN("event handling failed", LOG_STR("ce_type", type),
             LOG_STR("ce_id", ev->ce.id ? ev->ce.id : ""), LOG_STR("key", key),
             LOG_STR("code", err_code_name(err->code)), LOG_STR("error", err->msg),
             LOG_INT("attempt", attempt), LOG_BOOL("transient", err_is_transient(err->code)));
}

/* ---- decoding ---- */

static const saga_route_t *saga_route(const saga_route_t *routes, size_t n, const char *type)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(routes[i].type->name, type) == 0)
            return &routes[i];
    return NULL;
}

saga_outcome_t saga__decode(const saga_route_t *routes, size_t n_routes,
                            const kfk_header_t *headers, size_t n_headers, const void *value,
                            size_t len, arena_t *a, saga_event_t *ev, const saga_route_t **route,
                            err_t *err)
{
    ev->msg = NULL;
    *route = NULL;
    if (kfk_ce_parse(headers, n_headers, a, &ev->ce, err) != 0) {
        ev->ce = (kfk_ce_t){0}; /* nothing half-parsed leaks into logs or labels */
        return SAGA_POISON;
    }
    *route = saga_route(routes, n_routes, ev->ce.type);
    if (!*route)
        return SAGA_IGNORED;
    ev->msg = protobuf_c_message_unpack((*route)->type, arena_protobuf_allocator(a), len, value);
    if (!ev->msg) {
        err_set(err, ERR_INVALID, "payload of %zu bytes does not decode as %s", len, ev->ce.type);
        return SAGA_POISON;
    }
    return SAGA_PENDING;
}

/* A message that cannot be decoded: counted as a failed attempt, to the DLQ. */
static void saga_poison(saga_consumer_t *c, saga_item_t *it, const err_t *err)
{
    it->why = arena_memdup(it->a, err, sizeof(*err));
    it->out = SAGA_POISON;
    saga_failed_attempt(c, it, err, 1);
}

/* The event's CONSUMER span, a child of the producer's span (the traceparent
 * header). The handler sees the span's context as ev->ce.traceparent, so what it
 * emits has this span as parent. */
static void saga_span_start(saga_item_t *it)
{
    saga_event_t *ev = &it->ev;
    span_t *s = it->span = arena_alloc(it->a, sizeof(*it->span));
    span_start(s, SPAN_CONSUMER, NULL, ev->ce.traceparent);
    ev->ce.traceparent = span_traceparent(s);
    if (!span_recording(s))
        return;
    span_set_namef(s, "process %s", ev->topic);
    span_set_str(s, "messaging.system", "kafka");
    span_set_str(s, "messaging.operation", "process");
    span_set_str(s, "messaging.destination.name", ev->topic);
    span_set_int(s, "messaging.destination.partition.id", ev->partition);
    span_set_int(s, "messaging.kafka.message.offset", ev->offset);
    span_set_str(s, "cloudevents.event_type", ev->ce.type);
    span_set_str(s, "cloudevents.event_id", ev->ce.id);
}

/* Fills the item's event from its message and decides what it needs: SAGA_PENDING
 * (to apply), SAGA_IGNORED (not routed here) or SAGA_POISON. */
static void saga_decode(saga_consumer_t *c, saga_item_t *it)
{
    err_t err = ERR_INIT;
    size_t key_len, len;
    const char *key = kfk_msg_key(it->m, &key_len);
    it->a = arena_new(0);
    it->ev = (saga_event_t){.topic = kfk_msg_topic(it->m),
                            .partition = kfk_msg_partition(it->m),
                            .offset = kfk_msg_offset(it->m),
                            .key = key ? arena_strndup(it->a, key, key_len) : ""};
    kfk_header_t *headers;
    size_t n_headers = kfk_msg_headers(it->m, it->a, &headers);
    const void *value = kfk_msg_value(it->m, &len);
    it->out = saga__decode(c->routes, c->o.n_routes, headers, n_headers, value, len, it->a, &it->ev,
                           &it->route, &err);
    if (it->out == SAGA_POISON)
        saga_poison(c, it, &err);
    else if (it->out == SAGA_PENDING)
        saga_span_start(it);
}

/* ---- the transaction ---- */

/* The handler of one event inside `tx`, whose inbox row is in already. */
static int saga_apply_in(saga_consumer_t *c, db_conn_t *tx, saga_item_t *it, err_t *err)
{
    saga_log_ctx(&it->ev);
    span_current_set(it->span);
    int rc = it->route->fn(tx, it->a, &it->ev, c->o.ctx, err);
    span_current_set(NULL);
    if (rc == 0)
        return 0;
    /* A handler that forgot to say why still fails, with a code we can route on. */
    if (rc > 0)
        rc = ERR_UNKNOWN;
    if (err->code == ERR_OK)
        err_set(err, rc, "handler failed without a message");
    return rc;
}

/* The namespace of the saga's advisory locks (the two-key form, so they never meet
 * the single-key locks of the outbox relay and the migrations): "saga". */
#define SAGA_LOCK_NS "1935763297"

static int saga_i32_cmp(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* 32-bit FNV-1a of a lock name. */
static int32_t saga_lock_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (int32_t)h;
}

/* The lock names of the pending items, hashed, sorted and unique, as an int4[] literal
 * in `a` ("{}" when there are none). */
static const char *saga_lock_keys(saga_item_t *items, size_t n, arena_t *a)
{
    size_t cap = 0, k = 0;
    int32_t *keys = NULL;
    for (size_t i = 0; i < n; i++) {
        const char **names;
        if (items[i].out != SAGA_PENDING || !items[i].route->locks)
            continue;
        size_t m = items[i].route->locks(&items[i].ev, items[i].a, &names);
        if (k + m > cap) {
            int32_t *grown = arena_alloc(a, (cap = 2 * (k + m)) * sizeof(*keys));
            if (k)
                memcpy(grown, keys, k * sizeof(*keys));
            keys = grown;
        }
        for (size_t j = 0; j < m; j++)
            keys[k++] = saga_lock_hash(names[j]);
    }
    if (k)
        qsort(keys, k, sizeof(*keys), saga_i32_cmp);
    char *lit = arena_alloc(a, 3 + k * 12), *p = lit;
    *p++ = '{';
    for (size_t i = 0; i < k; i++)
        if (i == 0 || keys[i] != keys[i - 1])
            p += sprintf(p, i ? ",%" PRId32 : "%" PRId32, keys[i]);
    strcpy(p, "}");
    return lit;
}

/* A text[] literal of one string field of the pending items (CloudEvents ids, types
 * and topic names are printable ASCII without quotes or backslashes: kfk_ce_parse and
 * Kafka's topic rules see to that), in `a`. */
static const char *saga_text_array(saga_item_t *items, size_t n, size_t field, arena_t *a)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        if (items[i].out == SAGA_PENDING)
            len += strlen(*(const char **)((char *)&items[i] + field)) + 3;
    char *lit = arena_alloc(a, len), *p = lit;
    *p++ = '{';
    for (size_t i = 0, k = 0; i < n; i++)
        if (items[i].out == SAGA_PENDING)
            p +=
                sprintf(p, "%s\"%s\"", k++ ? "," : "", *(const char **)((char *)&items[i] + field));
    strcpy(p, "}");
    return lit;
}

/* Marks the first pending item with ce_id `id` that is not marked yet as new. */
static void saga_mark_new(saga_item_t *items, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].out == SAGA_PENDING && items[i].applied != SAGA_OK &&
            strcasecmp(items[i].ev.ce.id, id) == 0) {
            items[i].applied = SAGA_OK;
            return;
        }
}

/* One statement before anything else of the transaction: the batch's shared locks
 * (saga_locks_fn), as advisory locks in one global order, then every pending event's
 * inbox row. An event whose row was there already (or came twice in the batch) is a
 * duplicate: applied = SAGA_DUPLICATE; the others SAGA_OK. */
static int saga_inbox(db_conn_t *tx, saga_item_t *items, size_t n, err_t *err)
{
    static const char sql[] =
        "WITH locks AS (SELECT count(pg_advisory_xact_lock(" SAGA_LOCK_NS ", k)) AS n"
        " FROM unnest($1::int4[]) AS k)"
        " INSERT INTO processed_events (ce_id, ce_type, topic)"
        " SELECT e.id, e.type, e.topic FROM unnest($2::uuid[], $3::text[], $4::text[])"
        " WITH ORDINALITY AS e(id, type, topic, i)"
        " WHERE (SELECT n FROM locks) >= 0 ORDER BY e.i"
        " ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id::text";
    arena_t *a = items[0].a;
    db_res_t *r = db_execf(tx, a, err, sql, 4, saga_lock_keys(items, n, a),
                           saga_text_array(items, n, offsetof(saga_item_t, ev.ce.id), a),
                           saga_text_array(items, n, offsetof(saga_item_t, ev.ce.type), a),
                           saga_text_array(items, n, offsetof(saga_item_t, ev.topic), a));
    if (!r)
        return err->code;
    for (size_t i = 0; i < n; i++)
        items[i].applied = SAGA_DUPLICATE;
    for (int row = 0; row < db_res_rows(r); row++)
        saga_mark_new(items, n, db_res_str(r, row, 0));
    return 0;
}

/* What one db_txn over a run of items needs and reports. */
typedef struct saga_txn {
    saga_consumer_t *c;
    saga_item_t *items;
    size_t n;
    size_t failed; /* the item that failed, or SAGA_NONE */
} saga_txn_t;

static int saga_txn_fn(db_conn_t *tx, void *ud, err_t *err)
{
    saga_txn_t *t = ud;
    t->failed = SAGA_NONE; /* db_txn may run us again */
    int rc = saga_inbox(tx, t->items, t->n, err);
    if (rc != 0)
        return rc;
    for (size_t k = 0; k < t->n; k++) {
        if (t->items[k].out != SAGA_PENDING || t->items[k].applied != SAGA_OK)
            continue;
        rc = saga_apply_in(t->c, tx, &t->items[k], err);
        if (rc != 0) {
            t->failed = k;
            return rc;
        }
    }
    return 0;
}

/* Runs items[0..n) in one transaction; on success each pending item takes the
 * outcome its inbox insert gave it. A run with nothing to apply opens no
 * transaction. */
static int saga_txn_run(saga_consumer_t *c, saga_item_t *items, size_t n, size_t *failed,
                        err_t *err)
{
    saga_txn_t t = {.c = c, .items = items, .n = n, .failed = SAGA_NONE};
    size_t pending = 0;
    for (size_t k = 0; k < n; k++)
        pending += items[k].out == SAGA_PENDING;
    int rc = pending ? db_txn(c->o.pool, saga_txn_fn, &t, err) : 0;
    log_ctx_set(NULL, NULL);
    *failed = t.failed;
    if (rc != 0)
        return rc;
    for (size_t k = 0; k < n; k++)
        if (items[k].out == SAGA_PENDING)
            items[k].out = items[k].applied;
    metrics_histogram_observe(metrics_histogram("saga_batch_events",
                                                "Events applied per saga transaction", NULL,
                                                (const double[]){1, 2, 4, 8, 16, 32, 64, 128}, 8),
                              (double)pending);
    return 0;
}

/* ---- dead letters ---- */

/* How much of the original a dead-letter copy carries (saga.h), from most to least;
 * each one adds a dlq_* header to the ones before it. */
typedef enum {
    SAGA_COPY_WHOLE,     /* key, value and headers as they came */
    SAGA_COPY_TRUNCATED, /* key and headers; the value cut to what fits */
    SAGA_COPY_BARE,      /* the key and the dlq_* headers */
    SAGA_COPY_KEYLESS,   /* the dlq_* headers alone (the key itself is too large) */
    SAGA_COPY_NONE       /* nothing fits */
} saga_copy_t;

static const char *const saga_copy_names[] = {[SAGA_COPY_WHOLE] = "whole",
                                              [SAGA_COPY_TRUNCATED] = "truncated",
                                              [SAGA_COPY_BARE] = "bare",
                                              [SAGA_COPY_KEYLESS] = "keyless",
                                              [SAGA_COPY_NONE] = "none"};

/* Builds the dead-letter copy of it->m at `level` into *out, in it->a or borrowing
 * from the message: the original headers (whole, truncated) plus the failure's, as
 * saga.h lists them; a truncated copy gets the longest prefix of the value that fits.
 * False if it does not fit in KFK_MESSAGE_MAX (then *out is not to be produced). */
static bool saga_dlq_copy(saga_consumer_t *c, saga_item_t *it, const err_t *why, int attempts,
                          saga_copy_t level, kfk_out_msg_t *out)
{
    const kfk_msg_t *m = it->m;
    arena_t *a = it->a;
    size_t value_len;
    const void *value = kfk_msg_value(m, &value_len);
    kfk_header_t *orig = NULL;
    size_t n = level < SAGA_COPY_BARE ? kfk_msg_headers(m, a, &orig) : 0;
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
        /* the reduced copies' */
        {"dlq_value_truncated", "true"},
        {"dlq_value_bytes", arena_sprintf(a, "%zu", value_len)},
        {"dlq_headers_omitted", "true"},
        {"dlq_key_omitted", "true"},
    };
    static const size_t n_extra[] = {[SAGA_COPY_WHOLE] = 7,
                                     [SAGA_COPY_TRUNCATED] = 9,
                                     [SAGA_COPY_BARE] = 10,
                                     [SAGA_COPY_KEYLESS] = SAGA_DLQ_EXTRA};
    for (size_t i = 0; i < n_extra[level]; i++)
        h[n++] =
            (kfk_header_t){.name = extra[i][0], .value = extra[i][1], .len = strlen(extra[i][1])};
    *out = (kfk_out_msg_t){
        .topic = arena_sprintf(a, "%s.dlq", kfk_msg_topic(m)), .headers = h, .n_headers = n};
    if (level < SAGA_COPY_KEYLESS)
        out->key = kfk_msg_key(m, &out->key_len);
    if (level == SAGA_COPY_WHOLE) {
        out->value = value;
        out->len = value_len;
    }
    size_t size = kfk_out_msg_size(out);
    if (size > KFK_MESSAGE_MAX)
        return false;
    if (level == SAGA_COPY_TRUNCATED) {
        out->value = value;
        out->len = value_len < KFK_MESSAGE_MAX - size ? value_len : KFK_MESSAGE_MAX - size;
    }
    return true;
}

/* The fullest copy from `level` down that fits, built into *out; SAGA_COPY_NONE if
 * none does. */
static saga_copy_t saga_dlq_fit(saga_consumer_t *c, saga_item_t *it, const err_t *why, int attempts,
                                saga_copy_t level, kfk_out_msg_t *out)
{
    for (; level < SAGA_COPY_NONE; level++)
        if (saga_dlq_copy(c, it, why, attempts, level, out))
            break;
    return level;
}

/* The dead-letter producer: the one the options gave, or the consumer's own (saga.h),
 * made now if it is the first dead letter. NULL with ERR_UNAVAILABLE if it cannot be
 * made (retried like an outage: it says nothing about the message). */
static kfk_producer_t *saga_dlq_producer(saga_consumer_t *c, err_t *err)
{
    if (c->o.dlq_producer)
        return c->o.dlq_producer;
    pthread_mutex_lock(&c->dlq_mu);
    if (!c->dlq_own) {
        err_t why = ERR_INIT;
        char client[128];
        snprintf(client, sizeof(client), "%s-dlq", c->group);
        c->dlq_own = kfk_producer_new(c->brokers, client, kfk_producer_standalone_conf, &why);
        if (!c->dlq_own)
            err_set(err, ERR_UNAVAILABLE, "no dead-letter producer: %s", why.msg);
    }
    kfk_producer_t *p = c->dlq_own;
    pthread_mutex_unlock(&c->dlq_mu);
    return p;
}

/* One produce of the DLQ copy, waiting for its report (giving up a grace period
 * after stop). 0 once the broker has it. */
static int saga_dlq_once(saga_consumer_t *c, const kfk_out_msg_t *out, err_t *err)
{
    kfk_producer_t *p = saga_dlq_producer(c, err);
    if (!p)
        return err->code;
    kfk_batch_t *b = kfk_batch_new(1);
    int64_t stop_at = 0;
    int rc = kfk_produce(p, out, b, err);
    while (rc == 0 && kfk_batch_wait(b, SAGA_DLQ_WAIT_MS) != 0) {
        if (saga__stopping(c)) {
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

/* No copy could be produced (saga.h): the event is given up, loudly. */
static saga_outcome_t saga_dlq_dropped(saga_consumer_t *c, saga_item_t *it, const err_t *why,
                                       const err_t *refused)
{
    const kfk_msg_t *m = it->m;
    LOG_ERR("event dropped: the dead-letter topic refused even a bare copy",
            LOG_STR("topic", kfk_msg_topic(m)), LOG_INT("partition", kfk_msg_partition(m)),
            LOG_INT("offset", kfk_msg_offset(m)),
            LOG_STR("ce_type", it->ev.ce.type ? it->ev.ce.type : ""),
            LOG_STR("ce_id", it->ev.ce.id ? it->ev.ce.id : ""), LOG_STR("error", why->msg),
            LOG_STR("dlq_code", err_code_name(refused->code)), LOG_STR("dlq_error", refused->msg));
    saga__metrics_dropped(c->metrics, kfk_msg_topic(m));
    return SAGA_DROPPED;
}

/* Copies the message to <topic>.dlq: the fullest copy that fits, retried until the
 * broker acknowledges it while failures are transient (the offset must not move past
 * a message that is neither processed nor dead-lettered); after a permanent refusal
 * a bare copy, and after a permanent refusal of that, nothing (saga.h). SAGA_DLQ,
 * SAGA_DROPPED, or SAGA_STOPPED if stop came first. */
static saga_outcome_t saga_dead_letter(saga_consumer_t *c, saga_item_t *it, const err_t *why,
                                       int attempts)
{
    const kfk_msg_t *m = it->m;
    kfk_out_msg_t out;
    saga_copy_t level = saga_dlq_fit(c, it, why, attempts, SAGA_COPY_WHOLE, &out);
    size_t value_len;
    kfk_msg_value(m, &value_len);
    LOG_WARN("event dead-lettered", LOG_STR("topic", kfk_msg_topic(m)),
             LOG_INT("partition", kfk_msg_partition(m)), LOG_INT("offset", kfk_msg_offset(m)),
             LOG_STR("ce_type", it->ev.ce.type ? it->ev.ce.type : ""),
             LOG_STR("code", err_code_name(why->code)), LOG_STR("error", why->msg),
             LOG_INT("attempts", attempts), LOG_STR("copy", saga_copy_names[level]),
             LOG_INT("value_bytes", (int64_t)value_len));
    for (int attempt = 1;; attempt++) {
        err_t err = ERR_INIT;
        if (level == SAGA_COPY_NONE)
            err_set(&err, ERR_INVALID, "no dead-letter copy fits in %d bytes", KFK_MESSAGE_MAX);
        else if (saga_dlq_once(c, &out, &err) == 0)
            break;
        if (kfk_err_permanent(err.code)) {
            if (level >= SAGA_COPY_BARE)
                return saga_dlq_dropped(c, it, why, &err);
            LOG_WARN("dead-letter copy refused for good, sending a bare copy",
                     LOG_STR("topic", out.topic), LOG_STR("copy", saga_copy_names[level]),
                     LOG_STR("code", err_code_name(err.code)), LOG_STR("error", err.msg));
            level = saga_dlq_fit(c, it, why, attempts, SAGA_COPY_BARE, &out);
            attempt = 0;
            continue;
        }
        LOG_WARN("dead-letter produce failed, retrying", LOG_STR("topic", out.topic),
                 LOG_STR("code", err_code_name(err.code)), LOG_STR("error", err.msg));
        if (!saga_sleep(c, saga_backoff_ms(c, attempt)))
            return SAGA_STOPPED;
    }
    saga__metrics_dead_lettered(c->metrics, kfk_msg_topic(m), level != SAGA_COPY_WHOLE);
    return SAGA_DLQ;
}

/* ---- one event alone ---- */

/* The per-event policy after the event failed once (first): its own transaction
 * until it commits or is a duplicate, transient failures retried without limit, an
 * invalid event dead-lettered at once (its batch ran it on the state it would see
 * alone, so another try would find it invalid again), others retried up to
 * max_attempts, then the DLQ. */
static saga_outcome_t saga_alone(saga_consumer_t *c, saga_item_t *it, const err_t *first)
{
    int failures = err_is_transient(first->code) ? 0 : 1;
    saga_failed_attempt(c, it, first, 1);
    if (failures >= c->o.max_attempts || first->code == ERR_INVALID)
        return saga_dead_letter(c, it, first, 1);
    for (int attempt = 2;; attempt++) {
        if (!saga_sleep(c, saga_backoff_ms(c, attempt - 1)))
            return SAGA_STOPPED;
        err_t err = ERR_INIT;
        size_t failed;
        if (saga_txn_run(c, it, 1, &failed, &err) == 0)
            return it->out;
        saga_failed_attempt(c, it, &err, attempt);
        if ((!err_is_transient(err.code) && ++failures >= c->o.max_attempts) ||
            err.code == ERR_INVALID)
            return saga_dead_letter(c, it, &err, attempt);
    }
}

/* ---- a run of decodable items ---- */

/* Settles items[0..n) (none of them poison) in order, batching all it can. Returns
 * false if one was abandoned at shutdown (then the ones after it are left as they
 * are). */
static bool saga_run(saga_consumer_t *c, saga_item_t *items, size_t n)
{
    size_t i = 0, end = n, alone = SAGA_NONE;
    while (i < n) {
        err_t err = ERR_INIT;
        size_t failed;
        if (saga_txn_run(c, items + i, end - i, &failed, &err) == 0) {
            i = end;
            end = n;
            if (alone == SAGA_NONE)
                continue;
            i = alone;
            failed = 0;
            alone = SAGA_NONE;
            err = *items[i].why;
        } else if (failed == SAGA_NONE || failed == 0) {
            failed = 0; /* the first one goes alone */
        } else {
            /* Commit what came before the failure first, then the failed one alone. */
            alone = i + failed;
            items[alone].why = arena_memdup(items[alone].a, &err, sizeof(err));
            end = alone;
            continue;
        }
        items[i].out = saga_alone(c, &items[i], &err);
        if (items[i].out == SAGA_STOPPED)
            return false;
        i++;
        end = n;
        alone = SAGA_NONE;
    }
    return true;
}

/* ---- settling ---- */

/* Records a settled item: its offset, metrics and log line. */
static void saga_settle(saga_consumer_t *c, saga_item_t *it)
{
    const saga_event_t *ev = &it->ev;
    const char *type = ev->ce.type ? ev->ce.type : "";
    err_t err = ERR_INIT;
    if (kfk_consumer_commit(c->kc, it->m, &err) != 0)
        LOG_DEBUG("offset not stored, the event will be redelivered", LOG_STR("error", err.msg));
    int64_t us = clock_mono_us() - it->received_us;
    double secs = (double)us / 1e6;
    saga__metrics_settled(c->metrics, ev->topic, it->route, (size_t)it->out,
                          it->out == SAGA_DUPLICATE, secs);
    if (it->span != NULL && span_recording(it->span)) {
        span_set_str(it->span, "saga.outcome", saga__outcome_names[it->out]);
        if (it->out == SAGA_DLQ || it->out == SAGA_DROPPED)
            span_fail(it->span, "dead-lettered");
        span_end(it->span);
    }
    saga__replay_log(it->m, ev, saga__outcome_names[it->out], it->a);
    if (LOG_LEVEL_DEBUG >= log__level) {
        saga_log_ctx(ev);
        LOG_DEBUG("event handled", LOG_STR("topic", ev->topic), LOG_STR("ce_type", type),
                  LOG_STR("key", ev->key), LOG_STR("outcome", saga__outcome_names[it->out]),
                  LOG_MS("duration_ms", us));
        log_ctx_set(NULL, NULL);
    }
}

void saga__batch(saga_consumer_t *c, saga_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        saga_decode(c, &items[i]);
    size_t i = 0;
    while (i < n) {
        if (items[i].out == SAGA_POISON) {
            if (items[i].ev.ce.id)
                saga_log_ctx(&items[i].ev);
            items[i].out = saga_dead_letter(c, &items[i], items[i].why, 1);
            log_ctx_set(NULL, NULL);
            if (items[i].out == SAGA_STOPPED)
                return;
            saga_settle(c, &items[i++]);
            continue;
        }
        size_t j = i;
        while (j < n && items[j].out != SAGA_POISON)
            j++;
        bool finished = saga_run(c, items + i, j - i);
        for (; i < j && items[i].out != SAGA_STOPPED && items[i].out != SAGA_PENDING; i++)
            saga_settle(c, &items[i]);
        if (!finished)
            return;
    }
}
