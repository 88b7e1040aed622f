/*
 * The local infrastructure answers as the rest of the fleet expects: each service's
 * PostgreSQL with its own role, over verified TLS only (docs/trust.md), Redis with
 * its ACL users only, and Kafka with the saga topics, headers, consumer groups and
 * manual offset commits. Settings come from the environment that tests/run.sh
 * exports (deploy/local/stack.sh env).
 */
#include <check.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_util.h"
#include "common/kfk.h"
#include "kafka_auth.h"
#include "stack_env.h"

static const char *const services[] = {"order", "product", "user"};
static const char *const topics[] = {"order.events",         "inventory.events",
                                     "payment.events",       "order.events.dlq",
                                     "inventory.events.dlq", "payment.events.dlq"};
#define N_TOPICS (sizeof(topics) / sizeof(topics[0]))

static const char *env_required(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v, "%s is not set: run through make test", name);
    return v;
}

static const char *db_url(const char *svc)
{
    char name[64];
    snprintf(name, sizeof(name), "%s_DATABASE_URL", svc);
    for (char *p = name; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return env_required(name);
}

START_TEST(test_each_service_database_accepts_its_own_role)
{
    const char *svc = services[_i];
    PGconn *c = PQconnectdb(db_url(svc));
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s: %s", svc, PQerrorMessage(c));

    PGresult *r = PQexec(c, "SELECT current_user, current_database()");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), svc);
    ck_assert_str_eq(PQgetvalue(r, 0, 1), svc);
    PQclear(r);

    /* Over TLS 1.3, the server's certificate checked against the stack's CA and name. */
    ck_assert_int_eq(PQsslInUse(c), 1);
    ck_assert_str_eq(PQsslAttribute(c, "protocol"), "TLSv1.3");
    PQconninfoOption *opts = PQconninfo(c);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "sslmode") == 0)
            ck_assert_str_eq(o->val, "verify-full");
    PQconninfoFree(opts);

    /* The role owns its schema: it can create what its migrations will create. */
    r = PQexec(c, "CREATE TABLE infra_probe (id int PRIMARY KEY); DROP TABLE infra_probe");
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", svc, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}
END_TEST

START_TEST(test_a_service_role_cannot_enter_another_service_database)
{
    /* order's credentials against product's cluster: each service owns its data. */
    char url[512];
    const char *order = db_url("order"), *product = db_url("product");
    const char *order_host = strchr(order, '@'), *product_host = strchr(product, '@');
    ck_assert_ptr_nonnull(order_host);
    ck_assert_ptr_nonnull(product_host);
    snprintf(url, sizeof(url), "%.*s%s", (int)(order_host - order), order, product_host);

    PGconn *c = PQconnectdb(url);
    ck_assert_int_ne(PQstatus(c), CONNECTION_OK);
    /* Refused before any password is asked: no pg_hba.conf line lets order in there. */
    ck_assert_msg(strstr(PQerrorMessage(c), "no pg_hba.conf entry") != NULL, "%s",
                  PQerrorMessage(c));
    PQfinish(c);
}
END_TEST

/* pg_refused SVC KEY VALUE...: SVC's URL with these settings on top (NULL-ended
 * pairs) does not connect; the error message, for the caller to check (static). */
static const char *pg_refused(const char *svc, const char *const *extra)
{
    static char msg[512];
    const char *keys[8] = {"dbname"}, *vals[8] = {db_url(svc)};
    int n = 1;
    for (; extra[2 * (n - 1)] != NULL && n < 7; n++) {
        keys[n] = extra[2 * (n - 1)];
        vals[n] = extra[2 * (n - 1) + 1];
    }
    keys[n] = vals[n] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    ck_assert_msg(PQstatus(c) != CONNECTION_OK, "%s connected with %s=%s", svc, keys[1], vals[1]);
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
    PQfinish(c);
    return msg;
}

START_TEST(test_a_plaintext_connection_is_refused)
{
    const char *m = pg_refused(services[_i], (const char *[]){"sslmode", "disable", NULL});
    ck_assert_msg(strstr(m, "pg_hba.conf rejects connection") && strstr(m, "no encryption"), "%s",
                  m);
}
END_TEST

START_TEST(test_verify_full_refuses_a_server_not_named_as_asked)
{
    /* The right server at the right address, asked for under another name. */
    const char *m = pg_refused(
        services[_i], (const char *[]){"host", "db.example.com", "hostaddr", "127.0.0.1", NULL});
    ck_assert_msg(strstr(m, "does not match host name \"db.example.com\""), "%s", m);
}
END_TEST

START_TEST(test_verify_full_refuses_a_certificate_of_a_foreign_ca)
{
    char dir[] = "/tmp/infra-ca-XXXXXX", cmd[512], ca[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
             " -subj /CN=foreign -keyout %s/ca.key -out %s/ca.crt 2>/dev/null",
             dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    const char *m = pg_refused(services[_i], (const char *[]){"sslrootcert", ca, NULL});
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_msg(strstr(m, "certificate verify failed"), "%s", m);
}
END_TEST

START_TEST(test_a_service_role_reaches_no_other_database_of_its_cluster)
{
    const char *m = pg_refused(services[_i], (const char *[]){"dbname", "postgres", NULL});
    ck_assert_msg(strstr(m, "no pg_hba.conf entry"), "%s", m);
}
END_TEST

/* A connection to the stack's Redis, not authenticated yet. */
static redisContext *redis_connect(void)
{
    const char *url = env_required("REDIS_URL");
    char host[128];
    int port;
    const char *at = strchr(url, '@');
    ck_assert_int_eq(
        sscanf(at != NULL ? at + 1 : url + strlen("redis://"), "%127[^:]:%d", host, &port), 2);
    struct timeval tv = {.tv_sec = 5};
    redisContext *r = redisConnectWithTimeout(host, port, tv);
    ck_assert_msg(r && !r->err, "redis: %s", r ? r->errstr : "out of memory");
    return r;
}

/* redis_expect_error: cmd's reply is an error starting with prefix. */
static void redis_expect_error(redisContext *r, const char *prefix, const char *cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    redisReply *reply = redisvCommand(r, cmd, ap);
    va_end(ap);
    ck_assert_ptr_nonnull(reply);
    ck_assert_msg(reply->type == REDIS_REPLY_ERROR &&
                      strncmp(reply->str, prefix, strlen(prefix)) == 0,
                  "%s: %s", cmd, reply->str != NULL ? reply->str : "(not an error)");
    freeReplyObject(reply);
}

START_TEST(test_redis_refuses_whoever_has_no_password_of_its_acl)
{
    redisContext *r = redis_connect();
    redis_expect_error(r, "NOAUTH", "PING");
    redis_expect_error(r, "NOAUTH", "GET gw:x");
    /* The default user is off, whatever the password; AUTH with a password alone is
     * the default user's. */
    redis_expect_error(r, "WRONGPASS", "AUTH default %s", "");
    redis_expect_error(r, "WRONGPASS", "AUTH default nopass");
    char *pw = stack_env_secret("REDIS_PASSWORD_FILE");
    redis_expect_error(r, "WRONGPASS", "AUTH %s", pw);
    redis_expect_error(r, "WRONGPASS", "AUTH default %s", pw);
    redis_expect_error(r, "WRONGPASS", "AUTH gateway %s-not", pw);
    redis_expect_error(r, "WRONGPASS", "AUTH admin %s", pw);
    redis_expect_error(r, "NOAUTH", "PING");
    free(pw);
    redisFree(r);
}
END_TEST

START_TEST(test_redis_answers_ping_and_persists_with_aof)
{
    redisContext *r = redis_connect();
    char *pw = stack_env_secret("REDIS_ADMIN_PASSWORD_FILE");
    redisReply *reply = redisCommand(r, "AUTH admin %s", pw);
    free(pw);
    ck_assert_ptr_nonnull(reply);
    ck_assert_msg(reply->type == REDIS_REPLY_STATUS, "%s", reply->str);
    freeReplyObject(reply);
    reply = redisCommand(r, "PING");
    ck_assert_ptr_nonnull(reply);
    ck_assert_int_eq(reply->type, REDIS_REPLY_STATUS);
    ck_assert_str_eq(reply->str, "PONG");
    freeReplyObject(reply);

    reply = redisCommand(r, "CONFIG GET appendonly");
    ck_assert_ptr_nonnull(reply);
    ck_assert_int_eq(reply->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(reply->elements, 2);
    ck_assert_str_eq(reply->element[1]->str, "yes");
    freeReplyObject(reply);
    redisFree(r);
}
END_TEST

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    ck_assert_msg(rd_kafka_conf_set(conf, k, v, err, sizeof(err)) == RD_KAFKA_CONF_OK, "%s: %s", k,
                  err);
}

/* The broker as the stack's admin (SASL_SSL), as every client of the fleet must. */
static rd_kafka_conf_t *kafka_conf(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", env_required("KAFKA_BROKERS"));
    const char *user = getenv("KAFKA_ADMIN_USERNAME");
    if (user && *user) {
        char pass[1025];
        ck_assert_int_eq(ka_password(getenv("KAFKA_ADMIN_PASSWORD_FILE"), pass, sizeof(pass)), 0);
        conf_set(conf, "security.protocol", "SASL_SSL");
        conf_set(conf, "sasl.mechanisms", kfk_sasl_mechanism);
        conf_set(conf, "sasl.username", user);
        conf_set(conf, "sasl.password", pass);
        conf_set(conf, "ssl.ca.location", env_required("TLS_CA_FILE"));
    }
    return conf;
}

START_TEST(test_every_saga_topic_has_six_partitions)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kafka_conf(), err, sizeof(err));
    ck_assert_msg(rk != NULL, "%s", err);
    const struct rd_kafka_metadata *md = NULL;
    ck_assert_int_eq(rd_kafka_metadata(rk, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

    for (size_t t = 0; t < N_TOPICS; t++) {
        int found = 0;
        for (int i = 0; i < md->topic_cnt; i++) {
            if (strcmp(md->topics[i].topic, topics[t]) != 0)
                continue;
            found = 1;
            ck_assert_int_eq(md->topics[i].err, RD_KAFKA_RESP_ERR_NO_ERROR);
            ck_assert_msg(md->topics[i].partition_cnt == 6, "%s has %d partitions", topics[t],
                          md->topics[i].partition_cnt);
        }
        ck_assert_msg(found, "topic %s is missing", topics[t]);
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
}
END_TEST

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    *(rd_kafka_resp_err_t *)m->_private = m->err;
}

START_TEST(test_each_topic_carries_a_message_with_headers_through_a_group_with_manual_commit)
{
    char err[512], key[64], group[96];
    snprintf(key, sizeof(key), "infra-%ld-%d", (long)time(NULL), (int)getpid());
    snprintf(group, sizeof(group), "infra-test-%s", key);
    char ce_id[40] = "";
    FILE *uuid = fopen("/proc/sys/kernel/random/uuid", "r");
    ck_assert_ptr_nonnull(uuid);
    ck_assert_ptr_nonnull(fgets(ce_id, sizeof(ce_id), uuid));
    fclose(uuid);
    ce_id[strcspn(ce_id, "\n")] = '\0';
    ck_assert_uint_eq(strlen(ce_id), 36);

    /* Produce one message per topic, idempotently, waiting for each delivery report. */
    rd_kafka_conf_t *pconf = kafka_conf();
    conf_set(pconf, "enable.idempotence", "true");
    conf_set(pconf, "linger.ms", "0");
    rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
    ck_assert_msg(producer != NULL, "%s", err);
    rd_kafka_resp_err_t delivered[N_TOPICS];
    for (size_t t = 0; t < N_TOPICS; t++) {
        delivered[t] = RD_KAFKA_RESP_ERR__IN_PROGRESS;
        /* Valid CloudEvents headers with a type no service routes, so the services'
         * saga consumers acknowledge and skip it instead of dead-lettering it. */
        rd_kafka_headers_t *h = rd_kafka_headers_new(7);
        rd_kafka_header_add(h, "ce_id", -1, ce_id, -1);
        rd_kafka_header_add(h, "ce_type", -1, "shop.test.v1.InfraProbe", -1);
        rd_kafka_header_add(h, "ce_source", -1, "/shop/test-infra", -1);
        rd_kafka_header_add(h, "ce_time", -1, "2026-01-01T00:00:00Z", -1);
        rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
        rd_kafka_header_add(h, "content-type", -1, "application/protobuf", -1);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(topics[t]), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)topics[t], strlen(topics[t])),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE(&delivered[t]), RD_KAFKA_V_END);
        ck_assert_msg(e == RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(e));
    }
    ck_assert_int_eq(rd_kafka_flush(producer, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (size_t t = 0; t < N_TOPICS; t++)
        ck_assert_msg(delivered[t] == RD_KAFKA_RESP_ERR_NO_ERROR, "%s: %s", topics[t],
                      rd_kafka_err2str(delivered[t]));
    rd_kafka_destroy(producer);

    /* Consume them in a fresh group, committing each offset by hand. */
    rd_kafka_conf_t *cconf = kafka_conf();
    conf_set(cconf, "group.id", group);
    conf_set(cconf, "enable.auto.commit", "false");
    conf_set(cconf, "auto.offset.reset", "earliest");
    conf_set(cconf, "partition.assignment.strategy", "cooperative-sticky");
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    ck_assert_msg(consumer != NULL, "%s", err);
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new((int)N_TOPICS);
    for (size_t t = 0; t < N_TOPICS; t++)
        rd_kafka_topic_partition_list_add(sub, topics[t], RD_KAFKA_PARTITION_UA);
    ck_assert_int_eq(rd_kafka_subscribe(consumer, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);

    int seen[N_TOPICS] = {0};
    size_t n_seen = 0;
    rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_new(6);
    for (time_t end = time(NULL) + 60; n_seen < N_TOPICS && time(NULL) < end;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 500);
        if (!m)
            continue;
        if (m->err || m->key_len != strlen(key) || memcmp(m->key, key, m->key_len) != 0) {
            rd_kafka_message_destroy(m);
            continue;
        }
        const char *topic = rd_kafka_topic_name(m->rkt);
        size_t t = 0;
        while (t < N_TOPICS && strcmp(topics[t], topic) != 0)
            t++;
        ck_assert_uint_lt(t, N_TOPICS);
        ck_assert_int_eq((int)m->len, (int)strlen(topic));

        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vlen;
        ck_assert_int_eq(rd_kafka_message_headers(m, &h), RD_KAFKA_RESP_ERR_NO_ERROR);
        ck_assert_int_eq(rd_kafka_header_get_last(h, "ce_id", &v, &vlen),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        ck_assert_int_eq((int)vlen, (int)strlen(ce_id));
        ck_assert_int_eq(memcmp(v, ce_id, vlen), 0);
        ck_assert_int_eq(rd_kafka_header_get_last(h, "ce_type", &v, &vlen),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        ck_assert_int_eq(memcmp(v, "shop.test.v1.InfraProbe", vlen), 0);

        ck_assert_int_eq(rd_kafka_commit_message(consumer, m, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_add(committed, topic, m->partition)->offset = m->offset + 1;
        if (!seen[t]++)
            n_seen++;
        rd_kafka_message_destroy(m);
    }
    ck_assert_msg(n_seen == N_TOPICS, "consumed %zu of %zu topics", n_seen, N_TOPICS);

    /* The broker kept the committed offsets for the group. */
    rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_copy(committed);
    ck_assert_int_eq(rd_kafka_committed(consumer, want, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int i = 0; i < want->cnt; i++)
        ck_assert_msg(want->elems[i].offset >= committed->elems[i].offset,
                      "%s[%d]: committed %lld, expected %lld", want->elems[i].topic,
                      want->elems[i].partition, (long long)want->elems[i].offset,
                      (long long)committed->elems[i].offset);
    rd_kafka_topic_partition_list_destroy(want);
    rd_kafka_topic_partition_list_destroy(committed);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
}
END_TEST

static Suite *infra_suite(void)
{
    Suite *s = suite_create("infra");
    TCase *pg = check_case(s, "postgres", 30);
    tcase_add_loop_test(pg, test_each_service_database_accepts_its_own_role, 0, 3);
    tcase_add_test(pg, test_a_service_role_cannot_enter_another_service_database);
    tcase_add_loop_test(pg, test_a_plaintext_connection_is_refused, 0, 3);
    tcase_add_loop_test(pg, test_verify_full_refuses_a_server_not_named_as_asked, 0, 3);
    tcase_add_loop_test(pg, test_verify_full_refuses_a_certificate_of_a_foreign_ca, 0, 3);
    tcase_add_loop_test(pg, test_a_service_role_reaches_no_other_database_of_its_cluster, 0, 3);

    TCase *redis = check_case(s, "redis", 30);
    tcase_add_test(redis, test_redis_answers_ping_and_persists_with_aof);
    tcase_add_test(redis, test_redis_refuses_whoever_has_no_password_of_its_acl);

    TCase *kafka = check_case(s, "kafka", 120);
    tcase_add_test(kafka, test_every_saga_topic_has_six_partitions);
    tcase_add_test(
        kafka, test_each_topic_carries_a_message_with_headers_through_a_group_with_manual_commit);
    return s;
}

int main(void)
{
    return check_run(infra_suite(), CK_FORK_GETENV);
}
