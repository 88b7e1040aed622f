/*
 * kfk_consumer: a consumer-group member for the saga (docs/architecture.md §4).
 *
 * Offsets: librdkafka neither stores nor commits anything by itself here. When the
 * caller says a message was processed (after its DB transaction committed), its
 * offset + 1 is stored; stored offsets are committed asynchronously, coalesced —
 * at most once per commit interval (default KFK_COMMIT_INTERVAL_MS), checked at each
 * poll — and synchronously before partitions are revoked and at close, so a clean
 * rebalance or shutdown redelivers nothing. A commit that fails or never happens (a
 * crash) only means redelivery, which the inbox absorbs; each commit is a request
 * the broker must write, so fewer of them cost it less.
 *
 * Rebalances use the cooperative protocol: only the partitions that move are
 * revoked, so the others keep flowing (incremental assign / unassign).
 *
 * Lag: kafka_consumer_lag_messages{group,topic,partition} for the partitions
 * assigned right now (kept here from the rebalance callback, so a revoked partition's
 * series disappears). librdkafka computes it in its statistics (every
 * KFK_STATS_INTERVAL_MS, delivered through our poll): the partition's end (the last
 * stable offset) minus the offset stored after the last processed message
 * (consumer_lag_stored), or minus the committed offset (consumer_lag) while nothing
 * was processed since the assignment, or minus the partition's start while the group
 * has committed nothing (auto.offset.reset is earliest). So it counts the messages not yet processed,
 * including those polled and waiting for a handler; it asks the broker nothing more
 * than the fetches do, and /metrics only reads the last numbers. A partition whose
 * numbers are not known yet reports nothing.
 *
 * kfk_msg_t is librdkafka's message itself behind our opaque type (no allocation).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "kfk_internal.h"

#define KFK_COMMIT_INTERVAL_MS 1000
#define KFK_STATS_INTERVAL_MS  "5000"
#define KFK_CLOSE_SYNC_WAIT_MS 5000

struct kfk_consumer {
    rd_kafka_t *rk;
    atomic_bool dirty; /* offsets stored since the last commit (set by any thread) */
    int64_t last_commit_us;
    int64_t commit_interval_us;
    kfk_revoke_fn on_revoke;
    void *on_revoke_ud;
    bool synced; /* a rebalance callback came: the group answered a SyncGroup */
    char *group;
    pthread_mutex_t mu;                        /* guards assigned */
    rd_kafka_topic_partition_list_t *assigned; /* what the lag gauge reports */
    metrics_collector_t *lag;
};

static rd_kafka_message_t *kfk_rm(const kfk_msg_t *m)
{
    return (rd_kafka_message_t *)m;
}

/* Commits the stored offsets of the current assignment. */
static void kfk_commit_stored(kfk_consumer_t *c, bool sync)
{
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, sync ? 0 : 1);
    if (sync && e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        LOG_WARN("kafka offset commit failed", LOG_STR("error", rd_kafka_err2str(e)));
    atomic_store(&c->dirty, false);
    c->last_commit_us = clock_mono_us();
}

/* Reports of asynchronous commits, served by kfk_consumer_poll. */
static void kfk_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                          rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
        LOG_WARN("kafka offset commit failed", LOG_STR("client", rd_kafka_name(rk)),
                 LOG_STR("error", rd_kafka_err2str(e)));
}

/* Lets the owner finish (or drop) its work on the revoked partitions. */
static void kfk_revoke_notify(kfk_consumer_t *c, const rd_kafka_topic_partition_list_t *parts)
{
    if (!c->on_revoke || parts->cnt == 0)
        return;
    kfk_partition_t *p = common__xcalloc((size_t)parts->cnt, sizeof(*p));
    for (int i = 0; i < parts->cnt; i++)
        p[i] = (kfk_partition_t){parts->elems[i].topic, parts->elems[i].partition};
    c->on_revoke(p, (size_t)parts->cnt, c->on_revoke_ud);
    free(p);
}

/* Keeps c->assigned in step with the assignment, for the lag gauge. */
static void kfk_track_assignment(kfk_consumer_t *c, const rd_kafka_topic_partition_list_t *parts,
                                 bool assign)
{
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        bool held = rd_kafka_topic_partition_list_find(c->assigned, p->topic, p->partition);
        if (assign && !held)
            rd_kafka_topic_partition_list_add(c->assigned, p->topic, p->partition)->offset = -1;
        else if (!assign && held)
            rd_kafka_topic_partition_list_del(c->assigned, p->topic, p->partition);
    }
    pthread_mutex_unlock(&c->mu);
}

/* The lag of one partition's statistics, -1 if unknown. */
static int64_t kfk_stats_lag(json_t *part)
{
    json_t *stored = json_object_get(part, "consumer_lag_stored");
    json_t *committed = json_object_get(part, "consumer_lag");
    if (json_is_integer(stored) && json_integer_value(stored) >= 0)
        return json_integer_value(stored);
    if (json_is_integer(committed) && json_integer_value(committed) >= 0)
        return json_integer_value(committed);
    /* Nothing committed by the group yet: it starts at the beginning (earliest). */
    json_int_t end = json_integer_value(json_object_get(part, "ls_offset"));
    json_int_t lo = json_integer_value(json_object_get(part, "lo_offset"));
    return end >= 0 && lo >= 0 && end >= lo ? end - lo : -1;
}

/* librdkafka's statistics (served by kfk_consumer_poll): the lag of each assigned
 * partition. Returns 0: librdkafka frees the text. */
static int kfk_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    kfk_consumer_t *c = opaque;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *topics = json_object_get(root, "topics");
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->assigned->cnt; i++) {
        rd_kafka_topic_partition_t *p = &c->assigned->elems[i];
        char key[16];
        snprintf(key, sizeof(key), "%" PRId32, p->partition);
        json_t *part =
            json_object_get(json_object_get(json_object_get(topics, p->topic), "partitions"), key);
        p->offset = part ? kfk_stats_lag(part) : -1;
    }
    pthread_mutex_unlock(&c->mu);
    json_decref(root);
    return 0;
}

/* The collector of kafka_consumer_lag_messages (runs under the registry lock). */
static void kfk_lag_collect(metrics_sink_t *sink, void *ud)
{
    kfk_consumer_t *c = ud;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->assigned->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &c->assigned->elems[i];
        if (p->offset < 0)
            continue;
        char part[16];
        snprintf(part, sizeof(part), "%" PRId32, p->partition);
        metrics_sink_gauge(
            sink, (const char *[]){"group", c->group, "topic", p->topic, "partition", part, NULL},
            (double)p->offset);
    }
    pthread_mutex_unlock(&c->mu);
}

static void kfk_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                             rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kfk_consumer_t *c = opaque;
    c->synced = true; /* librdkafka calls it after every SyncGroup answered (kfk_settle) */
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t legacy = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        LOG_INFO("kafka partitions assigned", LOG_STR("client", rd_kafka_name(rk)),
                 LOG_INT("partitions", parts->cnt));
        kfk_track_assignment(c, parts, true);
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            legacy = rd_kafka_assign(rk, parts);
    } else {
        LOG_INFO("kafka partitions revoked", LOG_STR("client", rd_kafka_name(rk)),
                 LOG_INT("partitions", parts->cnt), LOG_BOOL("lost", rd_kafka_assignment_lost(rk)));
        kfk_revoke_notify(c, parts);
        kfk_track_assignment(c, parts, false);
        /* Still ours until unassigned: commit what was processed so the next owner
         * starts after it. A lost assignment cannot commit any more. */
        if (!rd_kafka_assignment_lost(rk))
            kfk_commit_stored(c, true);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            legacy = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        LOG_ERR("kafka rebalance failed", LOG_STR("error", rd_kafka_error_string(error)));
        rd_kafka_error_destroy(error);
    } else if (legacy != RD_KAFKA_RESP_ERR_NO_ERROR) {
        LOG_ERR("kafka rebalance failed", LOG_STR("error", rd_kafka_err2str(legacy)));
    }
}

static int kfk_subscribe(rd_kafka_t *rk, const char *const *topics, size_t n, err_t *err)
{
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(sub, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    return e ? kfk__fail(err, e, "kafka subscribe") : 0;
}

static void kfk_consumer_free_state(kfk_consumer_t *c)
{
    rd_kafka_topic_partition_list_destroy(c->assigned);
    pthread_mutex_destroy(&c->mu);
    free(c->group);
    free(c);
}

kfk_consumer_t *kfk_consumer_new(const char *brokers, const char *group, const char *const *topics,
                                 size_t n_topics, const char *const *conf, err_t *err)
{
    char why[512], fetch_bytes[16];
    snprintf(fetch_bytes, sizeof(fetch_bytes), "%d", KFK_BATCH_MAX);
    if (!group || !*group || n_topics == 0) {
        err_set(err, ERR_INVALID, "kafka consumer needs a group and at least one topic");
        return NULL;
    }
    /* clang-format off */
    const char *const defaults[] = {
        "group.id",                      group,
        "partition.assignment.strategy", "cooperative-sticky",
        "enable.auto.commit",            "false",
        "enable.auto.offset.store",      "false",
        "auto.offset.reset",             "earliest",
        /* A fetch waits on the broker up to this long for data, and is answered the
         * moment data lands (fetch.min.bytes=1): the wait costs no latency, while a
         * short one makes every idle consumer ask again and again. At 10 ms the three
         * services kept the local broker at 16 % of a core with nothing to do; at
         * 500 ms (the Java client's default) at 2.5 %, with the same end-to-end
         * latency (bench/README.md, "Kafka settings"). */
        "fetch.wait.max.ms",             "500",
        /* The fleet's maximum batch (kfk.h), so a fetch of one partition holds at
         * least one whole record of any size the broker takes (librdkafka's
         * default is the same 1 MiB; the broker would send one larger batch anyway).
         * fetch.max.bytes (50 MiB) and receive.message.max.bytes (100 MB) stay
         * above it. */
        "max.partition.fetch.bytes",     fetch_bytes,
        "socket.nagle.disable",          "true",
        /* A service may start before its topics exist: notice them within 10 s, not
         * the default 5 min. */
        "topic.metadata.refresh.interval.ms", "10000",
        /* An instance that dies without leaving the group holds its partitions until
         * its session times out: 10 s rather than the default 45 s, well inside the
         * saga timeout (docs/architecture.md §4 invariant 1). */
        "session.timeout.ms",            "10000",
        "heartbeat.interval.ms",         "2000",
        /* The lag gauge's numbers (kfk_on_stats). */
        "statistics.interval.ms",        KFK_STATS_INTERVAL_MS,
        NULL};
    /* clang-format on */
    rd_kafka_conf_t *rc = kfk__conf_new(brokers, group, defaults, conf, err);
    if (!rc)
        return NULL;
    kfk_consumer_t *c = common__xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    c->assigned = rd_kafka_topic_partition_list_new(0);
    rd_kafka_conf_set_opaque(rc, c);
    rd_kafka_conf_set_rebalance_cb(rc, kfk_on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(rc, kfk_on_commit);
    rd_kafka_conf_set_stats_cb(rc, kfk_on_stats);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, rc, why, sizeof(why));
    if (!c->rk) {
        rd_kafka_conf_destroy(rc);
        err_set(err, ERR_INVALID, "kafka consumer: %s", why);
        goto fail;
    }
    /* Errors and commit reports are served by our poll, on the caller's thread. */
    rd_kafka_poll_set_consumer(c->rk);
    if (kfk_subscribe(c->rk, topics, n_topics, err) != 0)
        goto fail;
    atomic_init(&c->dirty, false);
    c->last_commit_us = clock_mono_us();
    c->commit_interval_us = KFK_COMMIT_INTERVAL_MS * 1000;
    c->group = common__xstrdup(group);
    c->lag = metrics_collector_add(
        "kafka_consumer_lag_messages",
        "Messages of an assigned partition the group has not processed yet", kfk_lag_collect, c);
    return c;
fail:
    if (c->rk)
        rd_kafka_destroy(c->rk);
    kfk_consumer_free_state(c);
    return NULL;
}

void kfk_consumer_on_revoke(kfk_consumer_t *c, kfk_revoke_fn fn, void *ud)
{
    c->on_revoke = fn;
    c->on_revoke_ud = ud;
}

void kfk_consumer_set_commit_interval(kfk_consumer_t *c, int64_t ms)
{
    c->commit_interval_us = (ms > 0 ? ms : KFK_COMMIT_INTERVAL_MS) * 1000;
}

kfk_msg_t *kfk_consumer_poll(kfk_consumer_t *c, int timeout_ms)
{
    if (atomic_load(&c->dirty) && clock_mono_us() - c->last_commit_us >= c->commit_interval_us)
        kfk_commit_stored(c, false);
    rd_kafka_message_t *rm = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (!rm)
        return NULL;
    if (rm->err) {
        LOG_WARN("kafka consumer error", LOG_STR("client", rd_kafka_name(c->rk)),
                 LOG_STR("topic", rm->rkt ? rd_kafka_topic_name(rm->rkt) : ""),
                 LOG_STR("error", rd_kafka_message_errstr(rm)));
        rd_kafka_message_destroy(rm);
        return NULL;
    }
    return (kfk_msg_t *)rm;
}

int kfk_consumer_commit(kfk_consumer_t *c, const kfk_msg_t *m, err_t *err)
{
    rd_kafka_message_t *rm = kfk_rm(m);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(rm->rkt), rm->partition)->offset =
        rm->offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        e = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return err_set(err, ERR_PRECONDITION, "kafka offset store %s[%d]: %s",
                       rd_kafka_topic_name(rm->rkt), (int)rm->partition, rd_kafka_err2str(e));
    atomic_store(&c->dirty, true);
    return 0;
}

int kfk_consumer_ping(kfk_consumer_t *c, err_t *err)
{
    char why[256];
    if (rd_kafka_fatal_error(c->rk, why, sizeof(why)) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return err_set(err, ERR_INTERNAL, "kafka consumer failed: %s", why);
    return 0;
}

/* librdkafka 2.0.2 (Debian 12) aborts in rd_kafka_destroy when the member joined its
 * group (a JoinGroup answered) but no SyncGroup was answered since: the
 * cooperative-sticky assignor's state is still NULL and its destructor asserts it is
 * not (librdkafka issue 4312, fixed in 2.3.0). A service stopped within seconds of its
 * start did. So a member that joined waits, serving its rebalance callback, until the
 * group syncs (each sync ends in a callback: rd_kafka_cgrp_handle_assignment); a
 * message fetched meanwhile is dropped unprocessed, its offset not stored, so the next
 * owner gets it. A member that has not joined is safe: once closing, librdkafka
 * ignores a JoinGroup answer. Returns whether rd_kafka_destroy is safe. */
static bool kfk_settle(kfk_consumer_t *c)
{
    int64_t deadline = clock_mono_us() + KFK_CLOSE_SYNC_WAIT_MS * 1000;
    while (!c->synced) {
        const char *protocol = rd_kafka_rebalance_protocol(c->rk);
        if (protocol && strcmp(protocol, "NONE") == 0)
            return true;
        if (clock_mono_us() >= deadline)
            return false;
        rd_kafka_message_t *rm = rd_kafka_consumer_poll(c->rk, 100);
        if (rm)
            rd_kafka_message_destroy(rm);
    }
    return true;
}

void kfk_consumer_close(kfk_consumer_t *c)
{
    if (!c)
        return;
    metrics_collector_remove(c->lag);
    if (atomic_load(&c->dirty))
        kfk_commit_stored(c, true);
    bool destroyable = kfk_settle(c);
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(c->rk);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        LOG_WARN("kafka consumer close", LOG_STR("error", rd_kafka_err2str(e)));
    if (!destroyable) {
        /* Left to the process's exit rather than abort it; still reachable (librdkafka's
         * threads hold the handle, the handle holds c). */
        LOG_ERR("kafka consumer closed but not destroyed: its group never synced",
                LOG_STR("client", rd_kafka_name(c->rk)), LOG_STR("group", c->group));
        return;
    }
    rd_kafka_destroy(c->rk);
    kfk_consumer_free_state(c);
}

/* ---- messages ---- */

const char *kfk_msg_topic(const kfk_msg_t *m)
{
    return rd_kafka_topic_name(kfk_rm(m)->rkt);
}

int32_t kfk_msg_partition(const kfk_msg_t *m)
{
    return kfk_rm(m)->partition;
}

int64_t kfk_msg_offset(const kfk_msg_t *m)
{
    return kfk_rm(m)->offset;
}

const void *kfk_msg_key(const kfk_msg_t *m, size_t *len)
{
    *len = kfk_rm(m)->key_len;
    return kfk_rm(m)->key;
}

const void *kfk_msg_value(const kfk_msg_t *m, size_t *len)
{
    *len = kfk_rm(m)->len;
    return kfk_rm(m)->payload;
}

const void *kfk_msg_header(const kfk_msg_t *m, const char *name, size_t *len)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    *len = 0;
    if (rd_kafka_message_headers(kfk_rm(m), &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, name, &v, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return v;
}

size_t kfk_msg_headers(const kfk_msg_t *m, arena_t *a, kfk_header_t **out)
{
    rd_kafka_headers_t *h = NULL;
    *out = NULL;
    if (rd_kafka_message_headers(kfk_rm(m), &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    size_t n = rd_kafka_header_cnt(h);
    if (n == 0)
        return 0;
    kfk_header_t *hs = arena_calloc(a, n, sizeof(*hs));
    for (size_t i = 0; i < n; i++)
        rd_kafka_header_get_all(h, i, &hs[i].name, &hs[i].value, &hs[i].len);
    *out = hs;
    return n;
}

int kfk_msg_ce(const kfk_msg_t *m, arena_t *a, kfk_ce_t *out, err_t *err)
{
    kfk_header_t *hs;
    size_t n = kfk_msg_headers(m, a, &hs);
    return kfk_ce_parse(hs, n, a, out, err);
}

void kfk_msg_free(kfk_msg_t *m)
{
    if (m)
        rd_kafka_message_destroy(kfk_rm(m));
}
