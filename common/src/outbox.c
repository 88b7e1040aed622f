/*
 * outbox: outbox_enqueue and the relay (outbox.h explains the guarantees).
 *
 * The relay thread's life: stand by until the advisory lock is ours (trying every
 * second on a connection kept open for it), then loop — scan the oldest unpublished
 * rows, produce them in id order into one kfk batch, wait for every delivery report,
 * and keep the delivered prefix to be marked published — and sleep on LISTEN outbox
 * (or the poll interval) when the scan came back short. The marks travel with the
 * next scan (one statement marks the last batch and reads the next), so a relay round
 * is one round trip to PostgreSQL; when the relay goes idle they wait for the next
 * wake-up or poll, at most poll_interval_ms, and are flushed when it resigns. A mark
 * lost with the connection only means its rows go out again. Every query runs on the lock's
 * connection: if that connection breaks, the lock is gone with it, so the relay goes
 * back to standing by instead of publishing without it.
 */
#include "common/outbox.h"

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
#include "common/span.h"
#include "common/trace.h"
#include "common/uuid.h"

#define OUTBOX_SOURCE_MAX      127
#define OUTBOX_LOCK_RETRY_MS   1000
#define OUTBOX_ACQUIRE_MS      1000
#define OUTBOX_WAIT_SLICE_MS   100
#define OUTBOX_REPORT_SLICE_MS 1000
#define OUTBOX_STOP_GRACE_MS   5000
#define OUTBOX_BACKOFF_MIN_MS  100
#define OUTBOX_BACKOFF_MAX_MS  5000
#define OUTBOX_WARN_EVERY_MS   30000
#define OUTBOX_SLOW_WARN_MS    10000
#define OUTBOX_PURGE_EVERY_MS  10000
#define OUTBOX_PURGE_CHUNK     500

static char outbox_source[OUTBOX_SOURCE_MAX + 1];

/* ---- enqueue ---- */

int outbox_set_source(const char *source)
{
    if (!source || !*source || strlen(source) > OUTBOX_SOURCE_MAX)
        return ERR_INVALID;
    for (const char *p = source; *p; p++)
        if (*p <= ' ' || *p > '~')
            return ERR_INVALID;
    strcpy(outbox_source, source);
    return 0;
}

int outbox_enqueue(db_conn_t *tx, arena_t *a, const char *topic, const char *key,
                   const ProtobufCMessage *event, const char *traceparent, err_t *err)
{
    if (!topic || !*topic || !key || !*key || !event)
        return err_set(err, ERR_INVALID, "outbox event needs a topic, a key and a message");
    if (!outbox_source[0])
        return err_set(err, ERR_PRECONDITION, "outbox source is not set (outbox_set_source)");
    char id[UUID_STR_LEN], now[CLOCK_RFC3339_LEN];
    uuid_new(id);
    clock_rfc3339(clock_now_us(), now);
    kfk_ce_t ce = {.id = id,
                   .type = event->descriptor->name,
                   .source = outbox_source,
                   .time = now,
                   .traceparent = trace_parent_valid(traceparent) ? traceparent : NULL};
    /* Checked here, in the writer's transaction, so the relay never meets a row it
     * cannot publish (which would hold up every row behind it). */
    kfk_header_t headers[KFK_CE_HEADERS_MAX];
    int rc = kfk_ce_headers(&ce, headers, err);
    if (rc < 0)
        return rc;
    size_t len = protobuf_c_message_get_packed_size(event);
    uint8_t *buf = arena_alloc(a, len ? len : 1);
    protobuf_c_message_pack(event, buf);
    /* The relay could never publish it (refused for good, at the head of the queue). */
    size_t n_headers = (size_t)rc;
    kfk_out_msg_t out = {.topic = topic,
                         .key = key,
                         .key_len = strlen(key),
                         .value = buf,
                         .len = len,
                         .headers = headers,
                         .n_headers = n_headers};
    if (kfk_out_msg_size(&out) > KFK_MESSAGE_MAX)
        return err_set(err, ERR_INVALID, "%s event of %zu bytes is over the %d-byte maximum",
                       ce.type, len, KFK_MESSAGE_MAX);
    /* Nothing waits for the insert's answer: it goes out with the transaction's next
     * statement or its COMMIT (db_execf_nowait), and a failure fails that. */
    err_t e = ERR_INIT;
    if (db_execf_nowait(tx, a, &e,
                        "INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time,"
                        " traceparent, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        8, topic, key, id, ce.type, ce.source, now, ce.traceparent,
                        db_bytea_param(a, buf, len)) != 0) {
        if (err)
            *err = e;
        return e.code;
    }
    return 0;
}

/* ---- relay ---- */

struct outbox_relay {
    outbox_relay_opts_t o;
    char *db_url;
    pthread_t thread;
    atomic_bool stop;
    db_pool_t *pool;         /* one connection: the lock holder */
    db_conn_t *conn;         /* leased while we hold the lock */
    db_listener_t *listener; /* LISTEN outbox */
    int64_t backoff_ms;
    int64_t failing_since_us; /* 0 while healthy */
    int64_t last_warn_us;
    int64_t next_purge_us;
    bool purging; /* a retention sweep is under way */
    char *marks;  /* delivered rows not marked yet, as a bigint[] literal "{1,2}" */
    size_t marks_len, marks_cap, n_marks;
};

static metrics_counter_t *m_published;
static metrics_gauge_t *m_lag, *m_leader;
static pthread_once_t outbox_metrics_once = PTHREAD_ONCE_INIT;

static void outbox_metrics_init(void)
{
    m_published = metrics_counter("outbox_published_total",
                                  "Outbox rows published to Kafka and marked", NULL);
    m_lag = metrics_gauge("outbox_lag_seconds",
                          "Age of the oldest unpublished outbox row at the last scan", NULL);
    m_leader = metrics_gauge("outbox_relay_leader",
                             "1 while this process holds the outbox relay lock", NULL);
}

static bool relay_stopping(outbox_relay_t *r)
{
    return atomic_load(&r->stop);
}

/* Sleeps up to ms while draining notifications (a standby that never read them
 * would hold back the server's notification queue); returns early on stop or, if
 * `wake`, when one arrived or the listener reconnected (notifications may be lost). */
static void relay_wait(outbox_relay_t *r, int64_t ms, bool wake)
{
    int64_t end = clock_mono_us() + ms * 1000;
    while (!relay_stopping(r)) {
        int64_t left = (end - clock_mono_us()) / 1000;
        if (left <= 0)
            return;
        int rc = db_listener_wait(r->listener,
                                  (int)(left < OUTBOX_WAIT_SLICE_MS ? left : OUTBOX_WAIT_SLICE_MS));
        if (wake && rc != 0)
            return;
    }
}

/* Logs a failure when a streak starts and then every OUTBOX_WARN_EVERY_MS. */
static void relay_failed(outbox_relay_t *r, const char *what, const err_t *err)
{
    int64_t now = clock_mono_us();
    if (!r->failing_since_us)
        r->failing_since_us = now;
    if (r->last_warn_us && now - r->last_warn_us < OUTBOX_WARN_EVERY_MS * 1000)
        return;
    r->last_warn_us = now;
    LOG_WARN("outbox relay failing, retrying", LOG_STR("step", what),
             LOG_STR("code", err_code_name(err->code)), LOG_STR("error", err->msg),
             LOG_INT("failing_for_ms", (now - r->failing_since_us) / 1000));
}

static void relay_recovered(outbox_relay_t *r)
{
    if (r->failing_since_us)
        LOG_INFO("outbox relay recovered",
                 LOG_INT("failed_for_ms", (clock_mono_us() - r->failing_since_us) / 1000));
    r->failing_since_us = 0;
    r->last_warn_us = 0;
    r->backoff_ms = 0;
}

static int64_t relay_next_backoff(outbox_relay_t *r)
{
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : OUTBOX_BACKOFF_MIN_MS;
    if (r->backoff_ms > OUTBOX_BACKOFF_MAX_MS)
        r->backoff_ms = OUTBOX_BACKOFF_MAX_MS;
    return r->backoff_ms;
}

/* Forgets the marks not sent yet (they went out, or the connection is gone). */
static void relay_marks_clear(outbox_relay_t *r)
{
    r->n_marks = 0;
    r->marks_len = 0;
    if (r->marks)
        strcpy(r->marks, "{}");
}

/* Adds ids [0, n) of a scan to the marks to send. */
static void relay_marks_add(outbox_relay_t *r, const db_res_t *res, size_t n)
{
    size_t need = (r->marks_len ? r->marks_len : 1) + n * 21 + 2;
    if (need > r->marks_cap) {
        r->marks_cap = need * 2;
        r->marks = common__xrealloc(r->marks, r->marks_cap);
    }
    size_t len = r->marks_len ? r->marks_len - 1 : 0; /* over the closing brace */
    if (len == 0)
        r->marks[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(r->marks + len, "%s%" PRId64, r->n_marks + i ? "," : "",
                               db_res_i64(res, (int)i, 0));
    strcpy(r->marks + len, "}");
    r->marks_len = len + 1;
    r->n_marks += n;
}

/* Sends the marks by themselves (the relay resigns, or stops). */
static void relay_marks_flush(outbox_relay_t *r)
{
    if (!r->n_marks || !r->conn)
        return;
    arena_t *a = arena_new(0);
    err_t err = ERR_INIT;
    if (db_execf(r->conn, a, &err,
                 "UPDATE outbox SET published_at = now()"
                 " WHERE id = ANY($1::bigint[]) AND published_at IS NULL",
                 1, r->marks))
        metrics_counter_add(m_published, r->n_marks);
    relay_marks_clear(r);
    arena_free(a);
}

/* Gives the lock up: unlocked explicitly on a healthy connection (so a standby takes
 * over at once), by closing the connection on a broken one. */
static void relay_resign(outbox_relay_t *r, bool healthy)
{
    if (!r->conn)
        return;
    err_t err = ERR_INIT;
    if (healthy)
        relay_marks_flush(r);
    relay_marks_clear(r);
    if (healthy && db_advisory_unlock(r->conn, r->o.lock_key, &err) != 0)
        LOG_WARN("outbox relay could not release its lock", LOG_STR("error", err.msg));
    db_pool_release(r->pool, r->conn);
    r->conn = NULL;
    metrics_gauge_set(m_leader, 0);
    metrics_gauge_set(m_lag, 0); /* the next leader reports it */
    LOG_INFO("outbox relay released the lock", LOG_INT("lock_key", r->o.lock_key));
}

/* The relay's session. Its own writes (marks, purges) need no wait for the WAL
 * flush: a mark lost in a crash only means its rows go out again, which the
 * consumers' inbox absorbs, so their commits do not cost an fsync each. And its scan
 * must walk outbox_unpublished_idx in id order, as an index scan: published rows
 * leave dead entries there until VACUUM, which an index scan marks and then skips,
 * while a bitmap scan (what a plan made on a still-empty table picks) visits every
 * one of them again in the heap on every round — 2 ms a round with 6,400 of them in
 * make bench. Nothing else runs on this session. */
static int relay_session(db_conn_t *c, err_t *err)
{
    arena_t *a = arena_new(0);
    int rc = db_execf(c, a, err,
                      "SELECT set_config('synchronous_commit', 'off', false),"
                      " set_config('enable_bitmapscan', 'off', false),"
                      " set_config('enable_seqscan', 'off', false)",
                      0)
                 ? 0
                 : err->code;
    arena_free(a);
    return rc;
}

/* One attempt to become the relay. */
static bool relay_lead(outbox_relay_t *r)
{
    err_t err = ERR_INIT;
    bool got = false;
    db_conn_t *c = db_pool_acquire(r->pool, OUTBOX_ACQUIRE_MS, &err);
    if (!c) {
        relay_failed(r, "connect", &err);
        return false;
    }
    if (relay_session(c, &err) != 0 || db_advisory_try_lock(c, r->o.lock_key, &got, &err) != 0) {
        relay_failed(r, "lock", &err);
        db_pool_release(r->pool, c);
        return false;
    }
    relay_recovered(r);
    if (!got) { /* another instance relays: stand by */
        db_pool_release(r->pool, c);
        return false;
    }

    r->conn = c;
    r->next_purge_us = clock_mono_us();
    metrics_gauge_set(m_leader, 1);
    LOG_INFO("outbox relay acquired the lock", LOG_INT("lock_key", r->o.lock_key));
    return true;
}

/* A failed statement on the lock connection: if the connection broke, the lock went
 * with it. */
static int relay_db_failed(outbox_relay_t *r, const char *what, const err_t *err)
{
    relay_failed(r, what, err);
    if (err->code == ERR_UNAVAILABLE)
        relay_resign(r, false);
    return err->code;
}

/* Waits for every report of the batch; on stop, gives up after a grace period (the
 * rows not confirmed stay unpublished). */
static void relay_await_reports(outbox_relay_t *r, kfk_batch_t *b)
{
    int64_t start = clock_mono_us(), stop_at = 0, last_warn = start;
    while (kfk_batch_wait(b, OUTBOX_REPORT_SLICE_MS) != 0) {
        int64_t now = clock_mono_us();
        if (relay_stopping(r)) {
            stop_at = stop_at ? stop_at : now;
            if (now - stop_at >= OUTBOX_STOP_GRACE_MS * 1000)
                return;
        }
        if (now - last_warn >= OUTBOX_SLOW_WARN_MS * 1000) {
            last_warn = now;
            LOG_WARN("outbox relay still waiting for kafka delivery reports",
                     LOG_INT("messages", kfk_batch_len(b)),
                     LOG_INT("waiting_ms", (now - start) / 1000));
        }
    }
}

/* The PRODUCER span of publishing one row, a child of the span that wrote the row
 * (its stored traceparent; none: a new trace). The record's traceparent header is
 * this span's context, so the consumer's span has it as parent. */
static void relay_span_start(span_t *s, const char *topic, kfk_ce_t *ce, arena_t *a)
{
    span_start(s, SPAN_PRODUCER, NULL, ce->traceparent);
    ce->traceparent = arena_strdup(a, span_traceparent(s));
    if (!span_recording(s))
        return;
    span_set_namef(s, "send %s", topic);
    span_set_str(s, "messaging.system", "kafka");
    span_set_str(s, "messaging.operation", "publish");
    span_set_str(s, "messaging.destination.name", topic);
    span_set_str(s, "cloudevents.event_type", ce->type);
    span_set_str(s, "cloudevents.event_id", ce->id);
}

/* Produces rows [0, n) of the scan into `b`, each in its span of spans[0, n); returns
 * how many were queued (a row that cannot be produced ends the batch: the rows after
 * it wait for the next round, to keep the order). */
static size_t relay_produce(outbox_relay_t *r, const db_res_t *res, arena_t *a, size_t n,
                            kfk_batch_t *b, span_t *spans, err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        kfk_ce_t ce = {.id = db_res_str(res, row, 3),
                       .type = db_res_str(res, row, 4),
                       .source = db_res_str(res, row, 5),
                       .time = db_res_str(res, row, 6),
                       .traceparent = db_res_null(res, row, 7) ? NULL : db_res_str(res, row, 7)};
        const char *topic = db_res_str(res, row, 1);
        relay_span_start(&spans[i], topic, &ce, a);
        kfk_header_t headers[KFK_CE_HEADERS_MAX];
        int nh = kfk_ce_headers(&ce, headers, err);
        size_t len = 0;
        const uint8_t *payload = db_res_bytea(res, a, row, 8, &len);
        const char *key = db_res_str(res, row, 2);
        kfk_out_msg_t m = {.topic = topic,
                           .key = key,
                           .key_len = strlen(key),
                           .value = payload,
                           .len = len,
                           .headers = headers,
                           .n_headers = nh > 0 ? (size_t)nh : 0};
        if (nh < 0 || kfk_produce(r->o.producer, &m, b, err) != 0) {
            span_fail(&spans[i], err->msg);
            span_end(&spans[i]);
            return i;
        }
    }
    return n;
}

/* Ends the spans of the queued rows with their delivery reports. */
static void relay_spans_end(kfk_batch_t *b, span_t *spans, size_t queued)
{
    for (size_t i = 0; i < queued; i++) {
        err_t why = ERR_INIT;
        if (span_recording(&spans[i]) && kfk_batch_status(b, i, NULL, NULL, &why) != 0)
            span_fail(&spans[i], why.msg);
        span_end(&spans[i]);
    }
}

/* The delivered prefix of the batch: an error stops it (rows after a failure must go
 * again after it, not before). */
static size_t relay_delivered(kfk_batch_t *b, size_t queued, err_t *err)
{
    for (size_t i = 0; i < queued; i++)
        if (kfk_batch_status(b, i, NULL, NULL, err) != 0)
            return i;
    return queued;
}

/* One round: mark the last round's rows and scan the next ones (one statement: the
 * scan does not see the marks of its own statement, so it leaves those rows out by
 * id), produce, wait for the reports; *rows gets the number scanned. */
static int relay_batch(outbox_relay_t *r, int *rows)
{
    err_t err = ERR_INIT, produce_err = ERR_INIT, delivery_err = ERR_INIT;
    int rc = 0;
    arena_t *a = arena_new(0);
    kfk_batch_t *b = NULL;
    db_res_t *res =
        db_execf(r->conn, a, &err,
                 /* "AND published_at IS NULL" lets the update find its rows through
                  * the small partial index: a plan chosen while the table was empty
                  * would otherwise scan the whole table for them. */
                 "WITH marked AS (UPDATE outbox SET published_at = now()"
                 " WHERE id = ANY($2::bigint[]) AND published_at IS NULL)"
                 " SELECT id, topic, key, ce_id::text, ce_type, ce_source,"
                 " to_char(ce_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
                 " traceparent, payload,"
                 " (extract(epoch FROM clock_timestamp() - created_at) * 1000)::bigint"
                 " FROM outbox WHERE published_at IS NULL AND id <> ALL($2::bigint[])"
                 " ORDER BY id LIMIT $1",
                 2, arena_sprintf(a, "%d", r->o.batch_size), r->n_marks ? r->marks : "{}");
    if (!res) {
        rc = relay_db_failed(r, "scan", &err);
        goto out;
    }
    metrics_counter_add(m_published, r->n_marks);
    relay_marks_clear(r);
    size_t n = (size_t)db_res_rows(res);
    *rows = (int)n;
    metrics_gauge_set(m_lag, n ? (double)db_res_i64(res, 0, 9) / 1000.0 : 0.0);
    if (n == 0)
        goto out;
    b = kfk_batch_new(n);
    span_t *spans = arena_calloc(a, n, sizeof(*spans));
    size_t queued = relay_produce(r, res, a, n, b, spans, &produce_err);
    relay_await_reports(r, b);
    relay_spans_end(b, spans, queued);
    size_t ok = relay_delivered(b, queued, &delivery_err);
    relay_marks_add(r, res, ok);
    if (ok < n) {
        const err_t *why = ok < queued ? &delivery_err : &produce_err;
        relay_failed(r, "publish", why);
        rc = why->code;
    }
out:
    kfk_batch_free(b);
    arena_free(a);
    return rc;
}

/* Deletes rows published more than retention_ms ago, one chunk per call, oldest
 * first along the primary key (where old published rows sit), so each delete is a
 * short transaction and publishing is never held up by more than one chunk. A sweep
 * starts every OUTBOX_PURGE_EVERY_MS and lasts until a chunk comes back short. */
static void relay_purge(outbox_relay_t *r)
{
    int64_t now = clock_mono_us();
    if (r->o.retention_ms < 0 || !r->conn || (!r->purging && now < r->next_purge_us))
        return;
    if (!r->purging) {
        r->purging = true;
        r->next_purge_us = now + OUTBOX_PURGE_EVERY_MS * 1000;
    }
    arena_t *a = arena_new(0);
    err_t err = ERR_INIT;
    db_res_t *res = db_execf(
        r->conn, a, &err,
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at IS NOT NULL"
        " AND published_at < now() - $1::bigint * interval '1 millisecond'"
        " ORDER BY id LIMIT $2)",
        2, arena_sprintf(a, "%" PRId64, r->o.retention_ms),
        arena_sprintf(a, "%d", OUTBOX_PURGE_CHUNK));
    if (!res)
        relay_db_failed(r, "purge", &err);
    if (!res || db_res_affected(res) < OUTBOX_PURGE_CHUNK)
        r->purging = false;
    arena_free(a);
}

static void *relay_main(void *arg)
{
    outbox_relay_t *r = arg;
    while (!relay_stopping(r)) {
        if (!r->conn && !relay_lead(r)) {
            relay_wait(r, OUTBOX_LOCK_RETRY_MS, false);
            continue;
        }
        int rows = 0;
        if (relay_batch(r, &rows) != 0) {
            relay_wait(r, relay_next_backoff(r), false);
            continue;
        }
        relay_recovered(r);
        relay_purge(r);
        if (rows < r->o.batch_size)
            relay_wait(r, r->o.poll_interval_ms, true);
    }
    relay_resign(r, true);
    return NULL;
}

outbox_relay_t *outbox_relay_start(const outbox_relay_opts_t *o, err_t *err)
{
    if (!o->db_url || !o->producer || o->batch_size < 0 || o->poll_interval_ms < 0) {
        err_set(err, ERR_INVALID, "outbox relay needs a db url, a producer and sane limits");
        return NULL;
    }
    pthread_once(&outbox_metrics_once, outbox_metrics_init);
    db_pool_t *pool = db_pool_new(o->db_url, 1, err);
    if (!pool)
        return NULL;
    outbox_relay_t *r = common__xcalloc(1, sizeof(*r));
    r->o = *o;
    r->db_url = common__xstrdup(o->db_url);
    r->o.db_url = r->db_url;
    r->o.lock_key = o->lock_key ? o->lock_key : OUTBOX_LOCK_KEY;
    r->o.poll_interval_ms = o->poll_interval_ms ? o->poll_interval_ms : 500;
    r->o.batch_size = o->batch_size ? o->batch_size : 256;
    r->o.retention_ms = o->retention_ms ? o->retention_ms : 3600 * 1000;
    r->pool = pool;
    atomic_init(&r->stop, false);
    r->listener = db_listener_new(r->db_url, "outbox", err);
    if (!r->listener || pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        if (r->listener)
            err_set(err, ERR_INTERNAL, "outbox relay: cannot start its thread");
        db_listener_free(r->listener);
        db_pool_free(pool);
        free(r->db_url);
        free(r);
        return NULL;
    }
    return r;
}

void outbox_relay_stop(outbox_relay_t *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    db_listener_free(r->listener);
    db_pool_free(r->pool);
    free(r->db_url);
    free(r->marks);
    free(r);
}
