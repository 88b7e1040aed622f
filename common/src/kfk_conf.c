/*
 * kfk_conf: the configuration every librdkafka handle of ours starts from, with its
 * logs and errors routed into log.h and the process's credentials (kfk_auth_set), and
 * the one librdkafka → err_t translation.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/text.h"
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
    /* A refused login or TLS handshake also reaches the error callback, which says it
     * once per process with the settings to check (kfk_auth_failure_log); librdkafka's
     * own line repeats it per client and reconnect. */
    if (strcmp(fac, "FAIL") == 0 &&
        (strstr(buf, "SASL authentication error") || strstr(buf, "SSL handshake failed")))
        lvl = LOG_LEVEL_DEBUG;
    /* A connection lost in the middle of its login (a client closing, a broker going
     * away) is not a refused login: the loss itself is reported as such. */
    if (strcmp(fac, "FAIL") == 0 &&
        strstr(buf, "mechanism handshake failed: Local: Broker transport failure"))
        lvl = LOG_LEVEL_DEBUG;
    LOG__AT(lvl, "kafka", LOG_STR("client", rd_kafka_name(rk)), LOG_STR("facility", fac),
            LOG_STR("detail", buf));
}

/* ---- credentials ---- */

#define KFK_AUTH_FIELD_MAX 1024

/* PLAIN inside TLS: librdkafka before 2.6.1 (Debian 12 has 2.0.2) builds SCRAM's
 * client-final-message with the client nonce appended twice, which Kafka 4 refuses
 * (confluentinc/librdkafka#4895); with a newer librdkafka this can be SCRAM-SHA-512
 * again, the broker's users then made with kafka-configs (docs/decisions.md). */
const char kfk_sasl_mechanism[] = "PLAIN";

const cfg_entry_t kfk_auth_cfg_table[] = {
    {"KAFKA_USERNAME", CFG_STR, 0, 256, "", offsetof(kfk_auth_t, username),
     "Kafka principal, by convention the program's name (empty: plaintext without "
     "authentication, which the fleet's brokers refuse); with it SASL_SSL"},
    {"KAFKA_PASSWORD", CFG_SECRET, 0, 1024, "", offsetof(kfk_auth_t, password),
     "password of KAFKA_USERNAME"},
    {"TLS_CA_FILE", CFG_STR, 0, 4096, "", offsetof(kfk_auth_t, ca_file),
     "PEM file of the CA that verifies the fleet's servers (Kafka; empty: the system's "
     "CAs)"},
};
const size_t kfk_auth_cfg_n = sizeof(kfk_auth_cfg_table) / sizeof(kfk_auth_cfg_table[0]);

static pthread_mutex_t kfk_auth_mu = PTHREAD_MUTEX_INITIALIZER;
static char kfk_auth_user[KFK_AUTH_FIELD_MAX + 1];
static char kfk_auth_pass[KFK_AUTH_FIELD_MAX + 1];
static char kfk_auth_ca[KFK_AUTH_FIELD_MAX + 1];
static char kfk_auth_failed[512]; /* the last failure, "" since the last good ping */
static atomic_bool kfk_auth_logged;

int kfk_auth_set(const kfk_auth_t *a, err_t *err)
{
    const char *user = a && a->username ? a->username : "";
    const char *pass = a && a->password ? a->password : "";
    const char *ca = a && a->ca_file ? a->ca_file : "";
    if (*user && !*pass)
        return err_set(err, ERR_INVALID, "kafka user %s has no password", user);
    if (strlen(user) > KFK_AUTH_FIELD_MAX || strlen(pass) > KFK_AUTH_FIELD_MAX ||
        strlen(ca) > KFK_AUTH_FIELD_MAX)
        return err_set(err, ERR_INVALID, "kafka credentials longer than %d bytes",
                       KFK_AUTH_FIELD_MAX);
    pthread_mutex_lock(&kfk_auth_mu);
    snprintf(kfk_auth_user, sizeof(kfk_auth_user), "%s", user);
    snprintf(kfk_auth_pass, sizeof(kfk_auth_pass), "%s", *user ? pass : "");
    snprintf(kfk_auth_ca, sizeof(kfk_auth_ca), "%s", ca);
    pthread_mutex_unlock(&kfk_auth_mu);
    return 0;
}

void kfk__auth_failure(char *buf, size_t len)
{
    pthread_mutex_lock(&kfk_auth_mu);
    snprintf(buf, len, "%s", kfk_auth_failed);
    pthread_mutex_unlock(&kfk_auth_mu);
}

void kfk__auth_clear(void)
{
    pthread_mutex_lock(&kfk_auth_mu);
    kfk_auth_failed[0] = '\0';
    pthread_mutex_unlock(&kfk_auth_mu);
    atomic_store(&kfk_auth_logged, false);
}

/* A refused login (wrong user or password, a client without credentials, a broker
 * certificate the CA does not verify): librdkafka retries it at every reconnect, and
 * it cannot heal by itself, so the first is an error naming the settings to check and
 * the repeats are debug lines. */
static void kfk_auth_failure_log(rd_kafka_t *rk, int e, const char *reason)
{
    pthread_mutex_lock(&kfk_auth_mu);
    snprintf(kfk_auth_failed, sizeof(kfk_auth_failed), "%s", reason);
    char user[KFK_AUTH_FIELD_MAX + 1];
    snprintf(user, sizeof(user), "%s", kfk_auth_user);
    pthread_mutex_unlock(&kfk_auth_mu);
    const char *what = e == RD_KAFKA_RESP_ERR__SSL ? "kafka TLS failed: check TLS_CA_FILE"
                                                   : "kafka authentication failed: check "
                                                     "KAFKA_USERNAME and KAFKA_PASSWORD";
    if (atomic_exchange(&kfk_auth_logged, true))
        LOG_DEBUG(what, LOG_STR("client", rd_kafka_name(rk)), LOG_STR("user", user),
                  LOG_STR("detail", reason));
    else
        LOG_ERR(what, LOG_STR("client", rd_kafka_name(rk)), LOG_STR("user", user),
                LOG_STR("error", rd_kafka_err2name((rd_kafka_resp_err_t)e)),
                LOG_STR("detail", reason));
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
    if (e == RD_KAFKA_RESP_ERR__AUTHENTICATION || e == RD_KAFKA_RESP_ERR__SSL) {
        kfk_auth_failure_log(rk, e, reason);
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

int kfk_instance_id_check(const char *id, err_t *err)
{
    size_t n = strlen(id);
    if (n > 249)
        return err_set(err, ERR_INVALID, "at most 249 characters, got %zu", n);
    for (size_t i = 0; i < n; i++)
        if (!text_name_char(id[i]))
            return err_set(err, ERR_INVALID,
                           "only letters, digits, '.', '_' and '-', got \"%.64s\"", id);
    return 0;
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
        "log.connection.close", "false",
        /* A request without an answer this long is failed and retried elsewhere (a
         * produce: with the same sequence numbers, which the broker de-duplicates).
         * A broker that stops answering without closing its connections (frozen, a
         * lost host) keeps the default's 60 s of in-flight requests; meanwhile its
         * partitions have other leaders within about 3 s (HA=1: docs/ha-kafka.md),
         * but an idempotent producer moves a partition only once its in-flight
         * requests are done. A 15 s freeze of a leader: the first write
         * acknowledged again after 16.3 s by default, 7.1 s at 6 s. */
        "socket.timeout.ms", "6000", NULL};
    const char *const id[] = {"client.id", client_id, NULL};
    char user[KFK_AUTH_FIELD_MAX + 1], pass[KFK_AUTH_FIELD_MAX + 1], ca[KFK_AUTH_FIELD_MAX + 1];
    pthread_mutex_lock(&kfk_auth_mu);
    memcpy(user, kfk_auth_user, sizeof(user));
    memcpy(pass, kfk_auth_pass, sizeof(pass));
    memcpy(ca, kfk_auth_ca, sizeof(ca));
    pthread_mutex_unlock(&kfk_auth_mu);
    const char *const sasl[] = {"security.protocol",
                                "SASL_SSL",
                                "sasl.mechanisms",
                                kfk_sasl_mechanism,
                                "sasl.username",
                                user,
                                "sasl.password",
                                pass,
                                NULL};
    const char *const tls[] = {"ssl.ca.location", ca, NULL};
    int rc = kfk_conf_apply(conf, base, err);
    if (rc == 0 && client_id)
        rc = kfk_conf_apply(conf, id, err);
    if (rc == 0 && *user)
        rc = kfk_conf_apply(conf, sasl, err);
    if (rc == 0 && *user && *ca)
        rc = kfk_conf_apply(conf, tls, err);
    if (rc == 0)
        rc = kfk_conf_apply(conf, defaults, err);
    if (rc == 0)
        rc = kfk_conf_apply(conf, overrides, err);
    explicit_bzero(pass, sizeof(pass));
    if (rc != 0) {
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
