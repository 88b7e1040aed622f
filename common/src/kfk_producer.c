/*
 * kfk_producer: an idempotent producer with a thread that serves delivery reports the
 * moment they arrive, and batches that collect those reports for a waiting caller.
 *
 * Ordering (docs/architecture.md §4): idempotence keeps per-partition order with up to five
 * requests in flight. Two things could still leave a gap — a later message written
 * while an earlier one failed — and a caller that re-sends from the first failure
 * would then reorder: a message timing out (so there is no local timeout:
 * message.timeout.ms=0) and a permanent batch error (so enable.gapless.guarantee
 * turns that into a fatal error instead). What is left is: every message is either
 * delivered in order, or the producer stops.
 *
 * A batch is shared by its owner and by the reports still to come: `refs` counts
 * both, and whoever drops it to zero frees it, so an owner may give up on a batch
 * (shutdown during an outage) while librdkafka still holds pointers into it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "cond_internal.h"
#include "kfk_internal.h"

#define KFK_POLL_MS        100
#define KFK_FREE_FLUSH_MS  5000
#define KFK_PURGE_DRAIN_MS 5000
#define KFK_SLOT_MSG_MAX   160

struct kfk_producer {
    rd_kafka_t *rk;
    pthread_t poller;
    atomic_bool stop;
};

typedef struct kfk_slot {
    kfk_batch_t *batch;
    bool done;
    int code;
    int32_t partition;
    int64_t offset;
    char msg[KFK_SLOT_MSG_MAX];
} kfk_slot_t;

struct kfk_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t cap;
    size_t len;      /* slots handed out */
    size_t reported; /* slots with a report */
    int refs;        /* the owner (until kfk_batch_free) + reports still to come */
    kfk_slot_t slots[];
};

/* librdkafka's per-record framing at its largest (its size check counts it whatever
 * the real varints take): length 5, attributes 1, timestamp delta 10, offset delta 5,
 * key length 5, value length 5, header count 5. */
#define KFK_RECORD_FRAMING_MAX 36

/* clang-format off */
const char *const kfk_producer_standalone_conf[] = {
    "enable.idempotence",       "false",
    "enable.gapless.guarantee", "false", /* only means something with idempotence */
    NULL};
/* clang-format on */

/* ---- batches ---- */

kfk_batch_t *kfk_batch_new(size_t capacity)
{
    kfk_batch_t *b = common__xcalloc(1, sizeof(*b) + capacity * sizeof(kfk_slot_t));
    pthread_mutex_init(&b->mu, NULL);
    common__cond_init_monotonic(&b->cv);
    b->cap = capacity;
    b->refs = 1;
    return b;
}

static void kfk_batch_destroy(kfk_batch_t *b)
{
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* Drops one reference; the last one frees. */
static void kfk_batch_unref(kfk_batch_t *b)
{
    pthread_mutex_lock(&b->mu);
    int left = --b->refs;
    pthread_mutex_unlock(&b->mu);
    if (left == 0)
        kfk_batch_destroy(b);
}

void kfk_batch_free(kfk_batch_t *b)
{
    if (b)
        kfk_batch_unref(b);
}

size_t kfk_batch_len(const kfk_batch_t *b)
{
    return b->len; /* written only by the owning thread */
}

int kfk_batch_wait(kfk_batch_t *b, int timeout_ms)
{
    int64_t deadline_us = clock_mono_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
    struct timespec ts = clock_mono_deadline(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&b->mu);
    while (b->reported < b->len && clock_mono_us() < deadline_us)
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    int rc = b->reported < b->len ? ERR_TIMEOUT : 0;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int kfk_batch_status(kfk_batch_t *b, size_t i, int32_t *partition, int64_t *offset, err_t *err)
{
    if (i >= b->len)
        return err_set(err, ERR_INVALID, "batch has no message %zu", i);
    pthread_mutex_lock(&b->mu);
    kfk_slot_t s = b->slots[i];
    pthread_mutex_unlock(&b->mu);
    if (!s.done)
        return err_set(err, ERR_TIMEOUT, "delivery report still pending");
    if (s.code != 0)
        return err_set(err, s.code, "%s", s.msg);
    if (partition)
        *partition = s.partition;
    if (offset)
        *offset = s.offset;
    return 0;
}

/* ---- delivery reports ---- */

static void kfk_count(const char *name, const char *help, const char *topic)
{
    metrics_counter_add(metrics_counter(name, help, (const char *[]){"topic", topic, NULL}), 1);
}

/* Runs on the poller thread (or in kfk_producer_free) for each message. */
static void kfk_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (m->err) {
        kfk_count("kafka_produce_errors_total", "Kafka messages that failed delivery", topic);
        if (!m->_private)
            LOG_WARN("kafka delivery failed", LOG_STR("topic", topic),
                     LOG_STR("error", rd_kafka_err2str(m->err)));
    } else {
        kfk_count("kafka_events_produced_total", "Kafka messages delivered", topic);
    }
    kfk_slot_t *s = m->_private;
    if (!s)
        return;
    kfk_batch_t *b = s->batch;
    pthread_mutex_lock(&b->mu);
    s->done = true;
    s->code = kfk__code(m->err);
    s->partition = m->partition;
    s->offset = m->offset;
    if (m->err)
        snprintf(s->msg, sizeof(s->msg), "kafka delivery to %s: %s", topic,
                 rd_kafka_err2str(m->err));
    b->reported++;
    int left = --b->refs;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (left == 0)
        kfk_batch_destroy(b);
}

static void *kfk_poller(void *arg)
{
    kfk_producer_t *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, KFK_POLL_MS);
    return NULL;
}

/* ---- producer ---- */

/* Bytes of a zigzag varint, as the record format writes lengths. */
static size_t kfk_varint_size(int64_t n)
{
    uint64_t z = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    size_t k = 1;
    for (; z >= 0x80; z >>= 7)
        k++;
    return k;
}

size_t kfk_out_msg_size(const kfk_out_msg_t *m)
{
    size_t n = KFK_RECORD_FRAMING_MAX + m->key_len + m->len;
    for (size_t i = 0; i < m->n_headers; i++) {
        size_t name = strlen(m->headers[i].name), value = m->headers[i].len;
        n += kfk_varint_size((int64_t)name) + name + kfk_varint_size((int64_t)value) + value;
    }
    return n;
}

kfk_producer_t *kfk_producer_new(const char *brokers, const char *client_id,
                                 const char *const *conf, err_t *err)
{
    char why[512], max_bytes[16];
    snprintf(max_bytes, sizeof(max_bytes), "%d", KFK_MESSAGE_MAX);
    /* Name/value pairs, the defaults (kfk.h explains each). linger.ms 0: a message
     * leaves at once; under load, messages still share requests, as those queued
     * while earlier requests are in flight go out together. Against 1 ms, A-B-B-A at
     * 80 orders/s: end-to-end p50 6.9 ms instead of 12.9 (a wait per hop, four hops),
     * and no more CPU per order (bench/README.md, "Kafka settings").
     * message.max.bytes: librdkafka refuses a larger message at produce time, with
     * MSG_SIZE_TOO_LARGE, and packs no more than this into a batch (batch.size, 1 MB,
     * is lower still); it leaves out the batch header that the broker counts, hence
     * KFK_MESSAGE_MAX = KFK_BATCH_MAX less that header (kfk.h). The default, 1000000,
     * refused what the broker took: a dead-letter copy of a record near the broker's
     * limit could never be produced. */
    /* clang-format off */
    const char *const defaults[] = {
        "enable.idempotence",       "true",
        "enable.gapless.guarantee", "true",
        "message.timeout.ms",       "0",
        "linger.ms",                "0",
        "socket.nagle.disable",     "true",
        "partitioner",              "murmur2_random",
        "message.max.bytes",        max_bytes,
        /* How long the broker holds a write for the ISR's acknowledgements (acks=all,
         * which idempotence implies) before it answers REQUEST_TIMED_OUT, retried:
         * under socket.timeout.ms (kfk_conf.c), so the broker's answer comes first. A
         * follower that stops is out of the ISR within about 3 s (HA=1). */
        "request.timeout.ms",       "5000",
        NULL};
    /* clang-format on */
    rd_kafka_conf_t *c = kfk__conf_new(brokers, client_id, defaults, conf, err);
    if (!c)
        return NULL;
    rd_kafka_conf_set_dr_msg_cb(c, kfk_on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, why, sizeof(why));
    if (!rk) {
        rd_kafka_conf_destroy(c);
        err_set(err, ERR_INVALID, "kafka producer: %s", why);
        return NULL;
    }
    kfk_producer_t *p = common__xcalloc(1, sizeof(*p));
    p->rk = rk;
    atomic_init(&p->stop, false);
    if (pthread_create(&p->poller, NULL, kfk_poller, p) != 0) {
        rd_kafka_destroy(rk);
        free(p);
        err_set(err, ERR_INTERNAL, "kafka producer: cannot start its thread");
        return NULL;
    }
    return p;
}

void kfk_producer_free(kfk_producer_t *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->poller, NULL);
    if (rd_kafka_flush(p->rk, KFK_FREE_FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        LOG_WARN("kafka producer closed with undelivered messages",
                 LOG_INT("queued", rd_kafka_outq_len(p->rk)));
        /* Their reports (ERR_CANCELLED) must be served before destroy, which would
         * otherwise drop them and leave their batches referenced forever. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        int64_t end = clock_mono_us() + KFK_PURGE_DRAIN_MS * 1000;
        while (rd_kafka_outq_len(p->rk) > 0 && clock_mono_us() < end)
            rd_kafka_poll(p->rk, KFK_POLL_MS);
    }
    rd_kafka_destroy(p->rk);
    free(p);
}

int kfk_producer_flush(kfk_producer_t *p, int timeout_ms, err_t *err)
{
    if (rd_kafka_flush(p->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return err_set(err, ERR_TIMEOUT, "kafka flush: %d messages still queued",
                       rd_kafka_outq_len(p->rk));
    return 0;
}

int kfk_producer_ping(kfk_producer_t *p, int timeout_ms, err_t *err)
{
    char why[256];
    if (rd_kafka_fatal_error(p->rk, why, sizeof(why)) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return err_set(err, ERR_INTERNAL, "kafka producer failed: %s", why);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        char auth[512];
        kfk__auth_failure(auth, sizeof(auth));
        if (auth[0])
            return err_set(err, ERR_UNAVAILABLE, "kafka login refused: %s", auth);
        return err_set(err, ERR_UNAVAILABLE, "kafka: %s", rd_kafka_err2str(e));
    }
    rd_kafka_metadata_destroy(md);
    kfk__auth_clear();
    return 0;
}

/* Reserves the next slot of `b` and takes a reference for its report (before the
 * message exists: the report may arrive before kfk_produce returns). */
static kfk_slot_t *kfk_slot_take(kfk_batch_t *b)
{
    kfk_slot_t *s = NULL;
    pthread_mutex_lock(&b->mu);
    if (b->len < b->cap) {
        s = &b->slots[b->len++];
        *s = (kfk_slot_t){.batch = b};
        b->refs++;
    }
    pthread_mutex_unlock(&b->mu);
    return s;
}

/* Gives back a slot whose message was never queued (so no report will come). */
static void kfk_slot_return(kfk_batch_t *b)
{
    pthread_mutex_lock(&b->mu);
    b->len--;
    b->refs--;
    pthread_mutex_unlock(&b->mu);
}

int kfk_produce(kfk_producer_t *p, const kfk_out_msg_t *m, kfk_batch_t *b, err_t *err)
{
    if (!m->topic || !*m->topic)
        return err_set(err, ERR_INVALID, "kafka produce: no topic");
    kfk_slot_t *s = NULL;
    if (b && !(s = kfk_slot_take(b)))
        return err_set(err, ERR_EXHAUSTED, "kafka produce: batch of %zu is full", b->cap);
    rd_kafka_headers_t *h = rd_kafka_headers_new(m->n_headers);
    for (size_t i = 0; i < m->n_headers; i++)
        rd_kafka_header_add(h, m->headers[i].name, -1, m->headers[i].value,
                            (ssize_t)m->headers[i].len);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_KEY((void *)m->key, m->key_len),
        RD_KAFKA_V_VALUE((void *)m->value, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    rd_kafka_headers_destroy(h); /* producev takes them only on success */
    if (s)
        kfk_slot_return(b);
    kfk_count("kafka_produce_errors_total", "Kafka messages that failed delivery", m->topic);
    return kfk__fail(err, e, "kafka produce");
}
