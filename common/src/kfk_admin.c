/*
 * kfk_admin: topic creation and deletion for tests and tooling (the shared brokers
 * have automatic topic creation off, docs/architecture.md §4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "kfk_internal.h"

#define KFK_ADMIN_NAME_MAX 249 /* Kafka's own limit on a topic name */

typedef enum { KFK_CREATE, KFK_DELETE } kfk_admin_op_t;

static int kfk_admin_check_names(const char *const *topics, size_t n, err_t *err)
{
    for (size_t i = 0; i < n; i++)
        if (!topics[i] || !*topics[i] || strlen(topics[i]) > KFK_ADMIN_NAME_MAX)
            return err_set(err, ERR_INVALID, "invalid topic name");
    return 0;
}

/* Checks the topic names before it opens the client, so a bad name costs no connection;
 * on success the caller destroys *rk. */
static int kfk_admin_open(const char *brokers, const char *const *topics, size_t n, rd_kafka_t **rk,
                          err_t *err)
{
    int rc = kfk_admin_check_names(topics, n, err);
    if (rc != 0)
        return rc;
    char why[512];
    rd_kafka_conf_t *c = kfk__conf_new(brokers, "kfk-admin", NULL, NULL, err);
    if (!c)
        return ERR_INVALID;
    *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, why, sizeof(why));
    if (!*rk) {
        rd_kafka_conf_destroy(c);
        return err_set(err, ERR_INVALID, "kafka admin: %s", why);
    }
    return 0;
}

/* Checks each topic's result; an outcome that already holds (exists when creating,
 * is gone when deleting) is success. */
static int kfk_admin_results(const rd_kafka_topic_result_t **res, size_t cnt,
                             rd_kafka_resp_err_t fine, err_t *err)
{
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == fine)
            continue;
        const char *why = rd_kafka_topic_result_error_string(res[i]);
        return err_set(err, kfk__code(e), "kafka topic %s: %s", rd_kafka_topic_result_name(res[i]),
                       why ? why : rd_kafka_err2str(e));
    }
    return 0;
}

/* The outcome of a CreateTopics or DeleteTopics request (ev NULL: no answer). */
static int kfk_admin_outcome(rd_kafka_event_t *ev, kfk_admin_op_t op, err_t *err)
{
    const rd_kafka_topic_result_t **res;
    size_t cnt = 0;
    if (!ev)
        return err_set(err, ERR_TIMEOUT, "kafka admin request timed out");
    if (rd_kafka_event_error(ev))
        return err_set(err, kfk__code(rd_kafka_event_error(ev)), "kafka admin: %s",
                       rd_kafka_event_error_string(ev));
    if (op == KFK_CREATE) {
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        return kfk_admin_results(res, cnt, RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS, err);
    }
    res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
    return kfk_admin_results(res, cnt, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, err);
}

/* The settings of a new topic: the fleet's maximum (kfk.h), whatever the broker's
 * default, then `conf`. */
static int kfk_admin_topic_conf(rd_kafka_NewTopic_t *nt, const char *topic, const char *const *conf,
                                err_t *err)
{
    char max_bytes[16];
    snprintf(max_bytes, sizeof(max_bytes), "%d", KFK_BATCH_MAX);
    if (rd_kafka_NewTopic_set_config(nt, "max.message.bytes", max_bytes) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return err_set(err, ERR_INVALID, "kafka topic %s: cannot set max.message.bytes", topic);
    for (size_t i = 0; conf && conf[i]; i += 2)
        if (!conf[i + 1] ||
            rd_kafka_NewTopic_set_config(nt, conf[i], conf[i + 1]) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return err_set(err, ERR_INVALID, "kafka topic %s: cannot set %s", topic, conf[i]);
    return 0;
}

/* Sends one CreateTopics or DeleteTopics request and waits for its result. */
static int kfk_admin_request(rd_kafka_t *rk, kfk_admin_op_t op, const char *const *topics, size_t n,
                             int partitions, const char *const *conf, int timeout_ms, err_t *err)
{
    char why[512];
    int rc = 0;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(
        rk, op == KFK_CREATE ? RD_KAFKA_ADMIN_OP_CREATETOPICS : RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, why, sizeof(why));
    rd_kafka_AdminOptions_set_operation_timeout(o, timeout_ms, why, sizeof(why));
    rd_kafka_NewTopic_t **nt = common__xcalloc(n, sizeof(*nt));
    rd_kafka_DeleteTopic_t **dt = common__xcalloc(n, sizeof(*dt));
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (op == KFK_DELETE)
            dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
        else if (!(nt[i] = rd_kafka_NewTopic_new(topics[i], partitions, 1, why, sizeof(why))))
            rc = err_set(err, ERR_INVALID, "kafka topic %s: %s", topics[i], why);
        else
            rc = kfk_admin_topic_conf(nt[i], topics[i], conf, err);
    }
    if (rc == 0) {
        if (op == KFK_CREATE)
            rd_kafka_CreateTopics(rk, nt, n, o, q);
        else
            rd_kafka_DeleteTopics(rk, dt, n, o, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
        rc = kfk_admin_outcome(ev, op, err);
        if (ev)
            rd_kafka_event_destroy(ev);
    }
    for (size_t i = 0; i < n; i++) {
        if (nt[i])
            rd_kafka_NewTopic_destroy(nt[i]);
        if (dt[i])
            rd_kafka_DeleteTopic_destroy(dt[i]);
    }
    free(nt);
    free(dt);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    return rc;
}

/* True when the metadata lists every topic with all its partitions led. */
static bool kfk_admin_visible(const struct rd_kafka_metadata *md, const char *const *topics,
                              size_t n, int partitions)
{
    for (size_t i = 0; i < n; i++) {
        bool ok = false;
        for (int t = 0; t < md->topic_cnt && !ok; t++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[t];
            if (strcmp(mt->topic, topics[i]) != 0 || mt->err || mt->partition_cnt != partitions)
                continue;
            ok = true;
            for (int p = 0; p < mt->partition_cnt; p++)
                ok = ok && mt->partitions[p].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                     mt->partitions[p].leader >= 0;
        }
        if (!ok)
            return false;
    }
    return true;
}

static int kfk_admin_wait_visible(rd_kafka_t *rk, const char *const *topics, size_t n,
                                  int partitions, int timeout_ms, err_t *err)
{
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;
    do {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 1, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            bool ok = kfk_admin_visible(md, topics, n, partitions);
            rd_kafka_metadata_destroy(md);
            if (ok)
                return 0;
        }
        clock_sleep_ms(50);
    } while (clock_mono_us() < end);
    return err_set(err, ERR_TIMEOUT, "kafka: created topics did not show up in metadata");
}

int kfk_topics_create(const char *brokers, const char *const *topics, size_t n, int partitions,
                      int timeout_ms, err_t *err)
{
    return kfk_topics_create_with(brokers, topics, n, partitions, NULL, timeout_ms, err);
}

int kfk_topics_create_with(const char *brokers, const char *const *topics, size_t n, int partitions,
                           const char *const *conf, int timeout_ms, err_t *err)
{
    if (n == 0 || partitions < 1)
        return err_set(err, ERR_INVALID, "kafka topics: nothing to create");
    rd_kafka_t *rk = NULL;
    int rc = kfk_admin_open(brokers, topics, n, &rk, err);
    if (rc != 0)
        return rc;
    rc = kfk_admin_request(rk, KFK_CREATE, topics, n, partitions, conf, timeout_ms, err);
    if (rc == 0)
        rc = kfk_admin_wait_visible(rk, topics, n, partitions, timeout_ms, err);
    rd_kafka_destroy(rk);
    return rc;
}

int kfk_topics_delete(const char *brokers, const char *const *topics, size_t n, int timeout_ms,
                      err_t *err)
{
    if (n == 0)
        return 0;
    rd_kafka_t *rk = NULL;
    int rc = kfk_admin_open(brokers, topics, n, &rk, err);
    if (rc != 0)
        return rc;
    rc = kfk_admin_request(rk, KFK_DELETE, topics, n, 0, NULL, timeout_ms, err);
    rd_kafka_destroy(rk);
    return rc;
}
