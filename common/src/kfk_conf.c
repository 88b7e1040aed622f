/*
 * kfk_conf: the configuration every librdkafka handle of ours starts from, with its
 * logs and errors routed into log.h, and the one librdkafka → err_t translation.
 */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "kfk_internal.h"

/* librdkafka logs with syslog levels: 0–3 emerg..err, 4 warning, 5–6 notice/info,
 * 7 debug. Called from librdkafka's threads; log.h is thread-safe. */
static void kfk_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    log_level_t lvl = level <= 3   ? LOG_LEVEL_ERROR
                      : level == 4 ? LOG_LEVEL_WARN
                      : level <= 6 ? LOG_LEVEL_INFO
                                   : LOG_LEVEL_DEBUG;
    /* Every producer warns that enable.gapless.guarantee is experimental: we chose it
     * (kfk_producer.c says why), so it is not worth a warning per start. */
    if (lvl == LOG_LEVEL_WARN && strcmp(fac, "CONFWARN") == 0 &&
        strstr(buf, "enable.gapless.guarantee") != NULL)
        lvl = LOG_LEVEL_DEBUG;
    LOG__AT(lvl, "kafka", LOG_STR("client", rd_kafka_name(rk)), LOG_STR("facility", fac),
            LOG_STR("detail", buf));
}

/* Errors the client reports outside any request: unreachable brokers (retried by
 * librdkafka itself, at most every reconnect.backoff.max.ms per broker, so the rate
 * is sane) and fatal errors, after which a producer is unusable. */
static void kfk_error_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        LOG_ERR("kafka fatal error: the client must be recreated",
                LOG_STR("client", rd_kafka_name(rk)), LOG_STR("error", rd_kafka_err2name(orig)),
                LOG_STR("detail", why));
        return;
    }
    LOG_WARN("kafka error", LOG_STR("client", rd_kafka_name(rk)),
             LOG_STR("error", rd_kafka_err2name((rd_kafka_resp_err_t)e)),
             LOG_STR("detail", reason));
}

static int kfk_conf_apply(rd_kafka_conf_t *conf, const char *const *kv, err_t *err)
{
    char why[512];
    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (kv[i + 1] == NULL)
            return err_set(err, ERR_INVALID, "kafka setting %s has no value", kv[i]);
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], why, sizeof(why)) != RD_KAFKA_CONF_OK)
            return err_set(err, ERR_INVALID, "kafka setting %s: %s", kv[i], why);
    }
    return 0;
}

/* One "[scheme://]host:port" of n bytes at s. */
static bool kfk_broker_ok(const char *s, size_t n)
{
    const char *end = s + n, *scheme = NULL;
    for (const char *p = s; p + 3 <= end; p++)
        if (memcmp(p, "://", 3) == 0) {
            scheme = p;
            break;
        }
    if (scheme)
        s = scheme + 3;
    const char *colon = NULL;
    for (const char *p = s; p < end; p++)
        if (*p == ':')
            colon = p;
    if (!colon || colon == s || colon + 1 == end || colon[-1] == '[')
        return false;
    long port = 0;
    for (const char *p = colon + 1; p < end; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            return false;
        port = port * 10 + (*p - '0');
    }
    for (const char *p = s; p < colon; p++)
        if (*p == ' ' || *p == '/' || *p == '@')
            return false;
    return port >= 1 && port <= 65535;
}

int kfk_brokers_check(const char *brokers, err_t *err)
{
    for (const char *p = brokers ? brokers : "";;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (!kfk_broker_ok(p, n))
            return err_set(err, ERR_INVALID,
                           "expected host:port[,host:port...] with ports 1..65535, got \"%.*s\"",
                           (int)(n > 80 ? 80 : n), p);
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

rd_kafka_conf_t *kfk__conf_new(const char *brokers, const char *client_id,
                               const char *const *defaults, const char *const *overrides,
                               err_t *err)
{
    if (brokers == NULL || *brokers == '\0') {
        err_set(err, ERR_INVALID, "kafka brokers are not set");
        return NULL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const base[] = {
        "bootstrap.servers", brokers,
        /* Brokers reap idle connections; each reap is not worth a log line. */
        "log.connection.close", "false", NULL};
    const char *const id[] = {"client.id", client_id, NULL};
    if (kfk_conf_apply(conf, base, err) != 0 || (client_id && kfk_conf_apply(conf, id, err) != 0) ||
        kfk_conf_apply(conf, defaults, err) != 0 || kfk_conf_apply(conf, overrides, err) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, kfk_log_cb);
    rd_kafka_conf_set_error_cb(conf, kfk_error_cb);
    return conf;
}

int kfk__code(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return ERR_OK;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return ERR_EXHAUSTED;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return ERR_NOT_FOUND;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return ERR_CANCELLED;
    /* The message or the request as such is refused: sending it again is refused
     * again (kfk_err_permanent). MSG_SIZE_TOO_LARGE comes from the producer's own
     * check (message.max.bytes) or from a broker whose topic takes less. */
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
        return ERR_INVALID;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return ERR_PERMISSION;
    case RD_KAFKA_RESP_ERR__STATE:
        return ERR_PRECONDITION;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
        return ERR_UNAVAILABLE;
    default:
        return ERR_INTERNAL;
    }
}

bool kfk_err_permanent(int code)
{
    return code == ERR_INVALID || code == ERR_PERMISSION;
}

int kfk__fail(err_t *err, rd_kafka_resp_err_t e, const char *what)
{
    return err_set(err, kfk__code(e), "%s: %s", what, rd_kafka_err2str(e));
}
