/*
 * kfk_reader: reads chosen partitions of topics without joining a consumer group and
 * without committing anything (operator tools: shopctl dlq): assign(), never
 * subscribe(). Each partition is read
 * from a start offset up to the high watermark it had when it was added, so a read
 * ends even while producers keep writing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "kfk_internal.h"

#define KFK_READER_META_MS 10000

struct kfk_reader {
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *parts; /* start offsets; .opaque holds the end */
    size_t open;                            /* partitions not read to their end yet */
    bool assigned;
};

kfk_reader_t *kfk_reader_new(const char *brokers, const char *client_id, err_t *err)
{
    char why[512];
    /* librdkafka 2.0 refuses assign() without a group.id ("Unknown group"). With
     * assign() the id joins nothing: no JoinGroup, and with these settings no offset
     * is ever stored or committed under it. */
    /* clang-format off */
    const char *const defaults[] = {
        "group.id",                 client_id,
        "enable.auto.commit",       "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof",     "true",
        "fetch.wait.max.ms",        "100",
        NULL};
    /* clang-format on */
    rd_kafka_conf_t *rc = kfk__conf_new(brokers, client_id, defaults, NULL, err);
    if (!rc)
        return NULL;
    kfk_reader_t *r = common__xcalloc(1, sizeof(*r));
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, rc, why, sizeof(why));
    if (!r->rk) {
        rd_kafka_conf_destroy(rc);
        free(r);
        err_set(err, ERR_INVALID, "kafka reader: %s", why);
        return NULL;
    }
    rd_kafka_poll_set_consumer(r->rk);
    r->parts = rd_kafka_topic_partition_list_new(8);
    return r;
}

void kfk_reader_free(kfk_reader_t *r)
{
    if (!r)
        return;
    if (r->assigned)
        rd_kafka_assign(r->rk, NULL);
    rd_kafka_topic_partition_list_destroy(r->parts);
    rd_kafka_consumer_close(r->rk);
    rd_kafka_destroy(r->rk);
    free(r);
}

int kfk_reader_partition_count(kfk_reader_t *r, const char *topic, err_t *err)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(r->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(r->rk, 0, t, &md, KFK_READER_META_MS);
    rd_kafka_topic_destroy(t);
    if (e)
        return kfk__fail(err, e, topic);
    int rc;
    if (md->topic_cnt != 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        rc = err_set(err, ERR_NOT_FOUND, "no topic %s", topic);
    else if (md->topics[0].err)
        rc = kfk__fail(err, md->topics[0].err, topic);
    else
        rc = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return rc;
}

int kfk_reader_add(kfk_reader_t *r, const char *topic, int32_t partition, int64_t from,
                   int64_t count, err_t *err)
{
    if (r->assigned)
        return err_set(err, ERR_PRECONDITION, "kfk_reader_add after the first read");
    int64_t low, high;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(r->rk, topic, partition, &low, &high, KFK_READER_META_MS);
    if (e)
        return kfk__fail(err, e, topic);
    if (from < 0)
        from = low;
    if (from < low || from > high)
        return err_set(err, ERR_NOT_FOUND, "%s:%d has offsets %lld..%lld, not %lld", topic,
                       (int)partition, (long long)low, (long long)high - 1, (long long)from);
    int64_t end = count > 0 && from + count < high ? from + count : high;
    if (from >= end)
        return 0; /* nothing to read */
    rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_add(r->parts, topic, partition);
    p->offset = from;
    p->opaque = (void *)(intptr_t)end;
    r->open++;
    return 0;
}

/* The end offset recorded for the message's partition (-1 if not one of ours). */
static int64_t kfk_reader_end(const kfk_reader_t *r, const rd_kafka_message_t *rm)
{
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_find(r->parts, rd_kafka_topic_name(rm->rkt), rm->partition);
    return p ? (int64_t)(intptr_t)p->opaque : -1;
}

/* Marks the message's partition as read to its end. */
static void kfk_reader_close_part(kfk_reader_t *r, const rd_kafka_message_t *rm)
{
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_find(r->parts, rd_kafka_topic_name(rm->rkt), rm->partition);
    if (p && p->opaque) {
        p->opaque = NULL;
        r->open--;
    }
}

kfk_msg_t *kfk_reader_next(kfk_reader_t *r, int timeout_ms, err_t *err)
{
    err_clear(err);
    if (!r->assigned && r->open > 0) {
        rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, r->parts);
        if (e) {
            kfk__fail(err, e, "kafka assign");
            return NULL;
        }
        r->assigned = true;
    }
    int64_t deadline = clock_mono_us() + (int64_t)timeout_ms * 1000;
    while (r->open > 0) {
        int64_t left_ms = (deadline - clock_mono_us()) / 1000;
        if (left_ms <= 0) {
            err_set(err, ERR_TIMEOUT, "kafka read: %zu partitions not read to their end", r->open);
            return NULL;
        }
        rd_kafka_message_t *rm = rd_kafka_consumer_poll(r->rk, (int)left_ms);
        if (!rm)
            continue;
        if (rm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            kfk_reader_close_part(r, rm);
            rd_kafka_message_destroy(rm);
            continue;
        }
        if (rm->err) {
            kfk__fail(err, rm->err, "kafka read");
            rd_kafka_message_destroy(rm);
            return NULL;
        }
        int64_t end = kfk_reader_end(r, rm);
        if (end < 0 || rm->offset >= end) {
            kfk_reader_close_part(r, rm);
            rd_kafka_message_destroy(rm);
            continue;
        }
        if (rm->offset + 1 >= end)
            kfk_reader_close_part(r, rm);
        return (kfk_msg_t *)rm;
    }
    return NULL;
}

int64_t kfk_msg_timestamp_ms(const kfk_msg_t *m)
{
    rd_kafka_timestamp_type_t type;
    int64_t ts = rd_kafka_message_timestamp((const rd_kafka_message_t *)m, &type);
    return type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts;
}
