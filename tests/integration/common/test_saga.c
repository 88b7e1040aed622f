/*
 * saga consumer against the stack's PostgreSQL and Kafka: the inbox makes a
 * duplicate delivery harmless, poison messages and handlers that keep failing end
 * in <topic>.dlq with the reason in headers while the partition moves on, transient
 * failures are retried without counting towards the DLQ, events of other types are
 * acknowledged and skipped, and processed offsets are committed so the next member
 * of the group resumes after them. The failure and DLQ counters of the subscribed
 * topic exist at zero before any event, and the consumer's lag shows the messages
 * behind a blocked handler, then drains to zero, then goes with the consumer; with two
 * members each partition's lag is reported by its owner alone through rebalances.
 */
#include <check.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/metrics.h"
#include "common/uuid.h"
#include "saga_test_support.h"
#include "shop/events/v1/events.pb-c.h"

#define WAIT_MS 30000

static const char *const ORDER_CREATED = "shop.events.v1.OrderCreated";
static const char GARBAGE[] = "\xff\xff\xff\xff\xff";

/* What the handler is told to do with particular events. */
typedef struct script {
    char fail_id[UUID_STR_LEN];      /* fails with FAILED_PRECONDITION every time */
    char invalid_id[UUID_STR_LEN];   /* fails with INVALID_ARGUMENT every time */
    char transient_id[UUID_STR_LEN]; /* fails with UNAVAILABLE `transient_failures` times */
    int transient_failures;
    char disconnect_id[UUID_STR_LEN]; /* first call: its own db session is terminated */
    char block_id[UUID_STR_LEN];      /* waits until `release` is set */
    atomic_bool release;
    atomic_int block_calls;
    atomic_int fail_calls;
    atomic_int invalid_calls;
    atomic_int transient_calls;
    atomic_int disconnect_calls;
} script_t;

static int scripted_handler(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                            err_t *err)
{
    script_t *s = ctx;
    if (strcmp(ev->ce.id, s->fail_id) == 0) {
        atomic_fetch_add(&s->fail_calls, 1);
        return err_set(err, ERR_PRECONDITION, "scripted permanent failure");
    }
    if (strcmp(ev->ce.id, s->invalid_id) == 0) {
        atomic_fetch_add(&s->invalid_calls, 1);
        return err_set(err, ERR_INVALID, "scripted invalid event");
    }
    if (strcmp(ev->ce.id, s->transient_id) == 0 &&
        atomic_fetch_add(&s->transient_calls, 1) < s->transient_failures)
        return err_set(err, ERR_UNAVAILABLE, "scripted outage");
    if (strcmp(ev->ce.id, s->disconnect_id) == 0 &&
        atomic_fetch_add(&s->disconnect_calls, 1) == 0) {
        /* The server ends the session mid-transaction, as a restart would. */
        if (!db_execf(tx, a, err, "SELECT pg_terminate_backend(pg_backend_pid())", 0))
            return err->code;
        return err_set(err, ERR_INTERNAL, "the session survived its termination");
    }
    if (strcmp(ev->ce.id, s->block_id) == 0) {
        atomic_fetch_add(&s->block_calls, 1);
        while (!atomic_load(&s->release))
            usleep(10000);
    }
    return st_effect_handler(tx, a, ev, NULL, err);
}

static saga_consumer_t *start_consumer(st_env_t *e, kfk_producer_t *p, script_t *s,
                                       const char *group, int max_attempts)
{
    static const saga_route_t routes[] = {
        {&shop__events__v1__order_created__descriptor, scripted_handler, NULL}};
    const char *topics[] = {e->topic};
    saga_consumer_opts_t o = {.brokers = e->brokers,
                              .group = group,
                              .topics = topics,
                              .n_topics = 1,
                              .routes = routes,
                              .n_routes = 1,
                              .ctx = s,
                              .pool = e->pool,
                              .dlq_producer = p,
                              .max_attempts = max_attempts,
                              .backoff_base_ms = 10,
                              .backoff_max_ms = 100};
    err_t err = ERR_INIT;
    saga_consumer_t *c = saga_consumer_start(&o, &err);
    ck_assert_msg(c, "%s", err.msg);
    return c;
}

static kfk_producer_t *new_producer(st_env_t *e)
{
    err_t err = ERR_INIT;
    kfk_producer_t *p = kfk_producer_new(e->brokers, "test-saga", NULL, &err);
    ck_assert_msg(p, "%s", err.msg);
    return p;
}

/* Produces an OrderCreated (key, seq) with a fresh ce_id written into id. */
static void produce_order(st_env_t *e, kfk_producer_t *p, const char *key, int64_t seq,
                          char id[UUID_STR_LEN])
{
    size_t len;
    const uint8_t *v = st_pack_order(e, key, seq, &len);
    kfk_ce_t ce = st_ce(e, ORDER_CREATED, id);
    st_produce(e, p, key, v, len, &ce, NULL);
}

static int64_t effects_of(st_env_t *e, const char *ce_id)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM effects WHERE ce_id = '%s'", ce_id);
    return st_i64(e, sql);
}

static double topic_metric(st_env_t *e, const char *name, const char *extra)
{
    char topic[ST_NAME_MAX + 16];
    snprintf(topic, sizeof(topic), "topic=\"%s\"", e->topic);
    return st_metric(name, (const char *[]){topic, extra, NULL});
}

START_TEST(test_same_event_delivered_twice_has_its_effect_once)
{
    st_env_t e;
    st_setup(&e, "dup");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], a_id[UUID_STR_LEN], b_id[UUID_STR_LEN];
    st_name("test-saga", '-', group, sizeof(group));
    saga_consumer_t *c = start_consumer(&e, p, &s, group, 5);

    size_t len;
    const uint8_t *v = st_pack_order(&e, "order-dup", 0, &len);
    kfk_ce_t ce = st_ce(&e, ORDER_CREATED, a_id);
    st_produce(&e, p, "order-dup", v, len, &ce, NULL);
    st_produce(&e, p, "order-dup", v, len, &ce, NULL); /* the same ce_id again */
    produce_order(&e, p, "order-dup", 1, b_id);        /* after both, same partition */

    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 2, WAIT_MS), 2);
    ck_assert_int_eq(effects_of(&e, a_id), 1);
    ck_assert_int_eq(effects_of(&e, b_id), 1);
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM processed_events"), 2);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_duplicate_total", NULL), 1);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "outcome=\"duplicate\""),
                        1);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "outcome=\"ok\""), 2);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

START_TEST(test_poison_messages_go_to_the_dlq_and_the_partition_moves_on)
{
    st_env_t e;
    st_setup(&e, "poison");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], bad_id[UUID_STR_LEN], no_id[UUID_STR_LEN], ok_id[UUID_STR_LEN];
    st_name("test-saga", '-', group, sizeof(group));
    saga_consumer_t *c = start_consumer(&e, p, &s, group, 5);

    kfk_ce_t bad = st_ce(&e, ORDER_CREATED, bad_id);
    st_produce(&e, p, "order-poison", GARBAGE, sizeof(GARBAGE) - 1, &bad, NULL);
    size_t len;
    const uint8_t *v = st_pack_order(&e, "order-poison", 0, &len);
    kfk_ce_t no_ce_id = st_ce(&e, ORDER_CREATED, no_id);
    st_produce(&e, p, "order-poison", v, len, &no_ce_id, "ce_id");
    produce_order(&e, p, "order-poison", 0, ok_id);

    /* The valid event behind both poison messages is applied. */
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 1, WAIT_MS), 1);
    ck_assert_int_eq(effects_of(&e, ok_id), 1);

    st_record_t r[4];
    ck_assert_uint_eq(st_consume(&e, e.dlq, r, 4, 2, WAIT_MS), 2);
    /* Same key, so same DLQ partition, in the order they failed. */
    ck_assert_str_eq(r[0].key, "order-poison");
    ck_assert_uint_eq(r[0].len, sizeof(GARBAGE) - 1);
    ck_assert_int_eq(memcmp(r[0].value, GARBAGE, r[0].len), 0);
    ck_assert_str_eq(st_header(&r[0], "ce_id"), bad_id);
    ck_assert_str_eq(st_header(&r[0], "ce_type"), ORDER_CREATED);
    ck_assert_ptr_nonnull(strstr(st_header(&r[0], "dlq_error"), "does not decode"));
    ck_assert_str_eq(r[1].key, "order-poison");
    ck_assert_str_eq(st_header(&r[1], "dlq_error"), "missing header ce_id");
    ck_assert_ptr_null(st_header(&r[1], "ce_id"));
    for (int i = 0; i < 2; i++) {
        ck_assert_str_eq(st_header(&r[i], "dlq_code"), "INVALID_ARGUMENT");
        ck_assert_str_eq(st_header(&r[i], "dlq_attempts"), "1");
        ck_assert_str_eq(st_header(&r[i], "dlq_source_topic"), e.topic);
        ck_assert_str_eq(st_header(&r[i], "dlq_group"), group);
        ck_assert_ptr_nonnull(st_header(&r[i], "dlq_partition"));
    }
    ck_assert_int_lt(atoll(st_header(&r[0], "dlq_offset")), atoll(st_header(&r[1], "dlq_offset")));
    ck_assert_str_eq(st_header(&r[0], "dlq_partition"), st_header(&r[1], "dlq_partition"));
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_total", NULL), 2);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

START_TEST(test_invalid_event_is_dead_lettered_at_once)
{
    st_env_t e;
    st_setup(&e, "invalid");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], next_id[UUID_STR_LEN];
    st_name("test-saga", '-', group, sizeof(group));
    size_t len;
    const uint8_t *v = st_pack_order(&e, "order-invalid", 0, &len);
    kfk_ce_t ce = st_ce(&e, ORDER_CREATED, s.invalid_id);
    saga_consumer_t *c = start_consumer(&e, p, &s, group, 5);
    st_produce(&e, p, "order-invalid", v, len, &ce, NULL);
    produce_order(&e, p, "order-invalid", 1, next_id);

    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 1, WAIT_MS), 1);
    st_record_t r[2];
    ck_assert_uint_eq(st_consume(&e, e.dlq, r, 2, 1, WAIT_MS), 1);
    ck_assert_str_eq(st_header(&r[0], "ce_id"), s.invalid_id);
    ck_assert_str_eq(st_header(&r[0], "dlq_attempts"), "1");
    ck_assert_str_eq(st_header(&r[0], "dlq_code"), "INVALID_ARGUMENT");
    ck_assert_int_eq(atomic_load(&s.invalid_calls), 1); /* no retry, no backoff */

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

START_TEST(test_handler_failing_for_good_is_dead_lettered_after_max_attempts)
{
    st_env_t e;
    st_setup(&e, "maxattempts");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], next_id[UUID_STR_LEN];
    st_name("test-saga", '-', group, sizeof(group));

    /* The id is known before the consumer can see the event. */
    size_t len;
    const uint8_t *v = st_pack_order(&e, "order-fail", 0, &len);
    kfk_ce_t ce = st_ce(&e, ORDER_CREATED, s.fail_id);
    saga_consumer_t *c = start_consumer(&e, p, &s, group, 3);
    st_produce(&e, p, "order-fail", v, len, &ce, NULL);
    produce_order(&e, p, "order-fail", 1, next_id);

    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 1, WAIT_MS), 1);
    ck_assert_int_eq(effects_of(&e, next_id), 1);
    ck_assert_int_eq(atomic_load(&s.fail_calls), 3);
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM processed_events WHERE ce_id = '%s'",
             s.fail_id);
    ck_assert_int_eq(st_i64(&e, sql), 0); /* rolled back with the failed handler */

    st_record_t r[2];
    ck_assert_uint_eq(st_consume(&e, e.dlq, r, 2, 1, WAIT_MS), 1);
    ck_assert_str_eq(st_header(&r[0], "ce_id"), s.fail_id);
    ck_assert_str_eq(st_header(&r[0], "dlq_attempts"), "3");
    ck_assert_str_eq(st_header(&r[0], "dlq_code"), "FAILED_PRECONDITION");
    ck_assert_str_eq(st_header(&r[0], "dlq_error"), "scripted permanent failure");
    ck_assert_int_eq(r[0].seq, 0);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_failed_total", NULL), 3);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

START_TEST(test_transient_failure_that_recovers_is_processed_once_not_dead_lettered)
{
    st_env_t e;
    st_setup(&e, "transient");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {.transient_failures = 4}; /* more than max_attempts */
    char group[ST_NAME_MAX], marker_id[UUID_STR_LEN], last_id[UUID_STR_LEN];
    st_name("test-saga", '-', group, sizeof(group));

    size_t len;
    const uint8_t *v = st_pack_order(&e, "order-flaky", 0, &len);
    kfk_ce_t ce = st_ce(&e, ORDER_CREATED, s.transient_id);
    saga_consumer_t *c = start_consumer(&e, p, &s, group, 2);
    st_produce(&e, p, "order-flaky", v, len, &ce, NULL);
    /* A poison marker: the DLQ's first entry for this key must be it, not the event. */
    kfk_ce_t marker = st_ce(&e, ORDER_CREATED, marker_id);
    st_produce(&e, p, "order-flaky", GARBAGE, sizeof(GARBAGE) - 1, &marker, NULL);
    produce_order(&e, p, "order-flaky", 1, last_id);

    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 2, WAIT_MS), 2);
    ck_assert_int_eq(effects_of(&e, s.transient_id), 1);
    ck_assert_int_eq(effects_of(&e, last_id), 1);
    ck_assert_int_eq(atomic_load(&s.transient_calls), 5);

    st_record_t r[2];
    ck_assert_uint_eq(st_consume(&e, e.dlq, r, 2, 1, WAIT_MS), 1);
    ck_assert_str_eq(st_header(&r[0], "ce_id"), marker_id);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

START_TEST(test_connection_lost_mid_handler_is_retried_and_applied_once)
{
    st_env_t e;
    st_setup(&e, "disconnect");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], next_id[UUID_STR_LEN];
    st_name("test-saga", '-', group, sizeof(group));

    size_t len;
    const uint8_t *v = st_pack_order(&e, "order-cut", 0, &len);
    kfk_ce_t ce = st_ce(&e, ORDER_CREATED, s.disconnect_id);
    saga_consumer_t *c = start_consumer(&e, p, &s, group, 1);
    st_produce(&e, p, "order-cut", v, len, &ce, NULL);
    produce_order(&e, p, "order-cut", 1, next_id);

    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 2, WAIT_MS), 2);
    ck_assert_int_eq(effects_of(&e, s.disconnect_id), 1);
    ck_assert_int_eq(atomic_load(&s.disconnect_calls), 2);
    /* max_attempts is 1: only a transient failure could have been retried. */
    ck_assert_double_eq(topic_metric(&e, "kafka_events_dlq_total", NULL), 0);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_failed_total", NULL), 1);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

START_TEST(test_events_of_other_types_are_acknowledged_and_skipped)
{
    st_env_t e;
    st_setup(&e, "ignored");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], other_id[UUID_STR_LEN], ok_id[UUID_STR_LEN];
    st_name("test-saga", '-', group, sizeof(group));
    saga_consumer_t *c = start_consumer(&e, p, &s, group, 5);

    Shop__Events__V1__StockReserved sr = SHOP__EVENTS__V1__STOCK_RESERVED__INIT;
    sr.order_id = "order-other";
    uint8_t buf[64];
    size_t len = shop__events__v1__stock_reserved__pack(&sr, buf);
    kfk_ce_t other = st_ce(&e, "shop.events.v1.StockReserved", other_id);
    st_produce(&e, p, "order-other", buf, len, &other, NULL);
    /* Types a hostile producer made up: skipped too, and counted without a series
     * of their own. */
    char forged_type[2][240], forged_id[2][UUID_STR_LEN];
    snprintf(forged_type[0], sizeof(forged_type[0]), "shop.events.v1.ForgedX%s", group);
    memset(forged_type[1], 'F', sizeof(forged_type[1]) - 1);
    forged_type[1][sizeof(forged_type[1]) - 1] = '\0';
    for (int i = 0; i < 2; i++) {
        kfk_ce_t forged = st_ce(&e, forged_type[i], forged_id[i]);
        st_produce(&e, p, "order-other", buf, len, &forged, NULL);
    }
    produce_order(&e, p, "order-other", 0, ok_id);

    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 1, WAIT_MS), 1);
    ck_assert_int_eq(effects_of(&e, ok_id), 1);
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM processed_events"), 1);
    char topic[ST_NAME_MAX + 16];
    snprintf(topic, sizeof(topic), "topic=\"%s\"", e.topic);
    ck_assert_double_eq(
        st_metric("kafka_events_consumed_total",
                  (const char *[]){topic, "outcome=\"ignored\"", "type=\"other\"", NULL}),
        3);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "type=\"other\""), 3);
    char *text = metrics_render(NULL);
    ck_assert_ptr_null(strstr(text, "Forged"));
    ck_assert_ptr_null(strstr(text, "FFFFFFFF"));
    ck_assert_ptr_null(strstr(text, "type=\"shop.events.v1.StockReserved\""));
    free(text);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

START_TEST(test_committed_offsets_let_the_next_member_resume_after_them)
{
    st_env_t e;
    st_setup(&e, "resume");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], id[UUID_STR_LEN];
    st_name("test-saga", '-', group, sizeof(group));

    saga_consumer_t *c = start_consumer(&e, p, &s, group, 5);
    for (int i = 0; i < 10; i++)
        produce_order(&e, p, i % 2 ? "order-r1" : "order-r2", i, id);
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 10, WAIT_MS), 10);
    saga_consumer_stop(c);

    for (int i = 10; i < 15; i++)
        produce_order(&e, p, i % 2 ? "order-r1" : "order-r2", i, id);
    c = start_consumer(&e, p, &s, group, 5);
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 15, WAIT_MS), 15);
    /* Nothing of the first ten came back to the second member. */
    ck_assert_double_eq(topic_metric(&e, "kafka_events_duplicate_total", NULL), 0);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "outcome=\"ok\""), 15);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

/* True when the registry renders exactly the line `series value`. */
static bool rendered_line(const char *series, const char *value)
{
    char line[512];
    snprintf(line, sizeof(line), "\n%s %s\n", series, value);
    char *text = metrics_render(NULL);
    bool found = strstr(text, line) != NULL;
    free(text);
    return found;
}

/* kafka_consumer_lag_messages of group (one partition in use), or -1 when absent. */
static double lag_of(const char *group)
{
    char frag[ST_NAME_MAX + 16];
    snprintf(frag, sizeof(frag), "group=\"%s\"", group);
    char *text = metrics_render(NULL);
    double v = -1;
    for (char *l = strtok(text, "\n"); l != NULL && v < 0; l = strtok(NULL, "\n")) {
        if (strncmp(l, "kafka_consumer_lag_messages{", 28) == 0 && strstr(l, frag) != NULL)
            v = strtod(strrchr(l, ' ') + 1, NULL);
    }
    free(text);
    return v;
}

/* The number of kafka_consumer_lag_messages series of group; *dups gets how many of
 * them repeat a partition already counted (an instance reporting one it lost). */
static int lag_series(const char *group, int *dups)
{
    char frag[ST_NAME_MAX + 16], seen[64][ST_NAME_MAX * 2];
    snprintf(frag, sizeof(frag), "group=\"%s\"", group);
    char *text = metrics_render(NULL);
    int n = 0;
    *dups = 0;
    for (char *l = strtok(text, "\n"); l != NULL; l = strtok(NULL, "\n")) {
        if (strncmp(l, "kafka_consumer_lag_messages{", 28) != 0 || strstr(l, frag) == NULL)
            continue;
        *strrchr(l, ' ') = '\0';
        for (int i = 0; i < n && i < 64; i++)
            *dups += strcmp(seen[i], l) == 0;
        if (n < 64)
            snprintf(seen[n], sizeof(seen[n]), "%s", l);
        n++;
    }
    free(text);
    return n;
}

/* Polls lag_series(group) every 50 ms until it is want without duplicates, or
 * timeout_ms passes; the last count, with its duplicates in *dups. */
static int wait_lag_series(const char *group, int want, int *dups, int timeout_ms)
{
    int n = lag_series(group, dups);
    for (int waited = 0; (n != want || *dups != 0) && waited < timeout_ms; waited += 50) {
        usleep(50000);
        n = lag_series(group, dups);
    }
    return n;
}

/* Polls lag_of(group) every 50 ms until it is want or timeout_ms passes; the last. */
static double wait_lag(const char *group, double want, int timeout_ms)
{
    double v = lag_of(group);
    for (int waited = 0; v != want && waited < timeout_ms; waited += 50) {
        usleep(50000);
        v = lag_of(group);
    }
    return v;
}

START_TEST(test_counters_exist_at_zero_and_lag_rises_and_drains)
{
    enum { BEHIND = 7 };
    st_env_t e;
    st_setup(&e, "lag");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], id[UUID_STR_LEN], series[ST_NAME_MAX * 3];
    st_name("test-saga", '-', group, sizeof(group));
    saga_consumer_t *c = start_consumer(&e, p, &s, group, 5);

    /* Before any event: an increase() alert needs these at 0, not absent. */
    snprintf(series, sizeof(series), "kafka_events_dlq_total{topic=\"%s\"}", e.topic);
    ck_assert_msg(rendered_line(series, "0"), "%s not at 0", series);
    snprintf(series, sizeof(series), "kafka_events_dlq_dropped_total{topic=\"%s\"}", e.topic);
    ck_assert_msg(rendered_line(series, "0"), "%s not at 0", series);
    snprintf(series, sizeof(series), "kafka_events_failed_total{topic=\"%s\",type=\"%s\"}", e.topic,
             ORDER_CREATED);
    ck_assert_msg(rendered_line(series, "0"), "%s not at 0", series);
    snprintf(series, sizeof(series),
             "kafka_events_consumed_total{outcome=\"dlq\",topic=\"%s\",type=\"%s\"}", e.topic,
             ORDER_CREATED);
    ck_assert_msg(rendered_line(series, "0"), "%s not at 0", series);

    /* One event processed; then one holds the handler, and it and the ones behind it
     * on its partition are lag. */
    produce_order(&e, p, "order-lag", 0, id);
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 1, WAIT_MS), 1);
    produce_order(&e, p, "order-lag", 1, s.block_id);
    for (int waited = 0; atomic_load(&s.block_calls) == 0 && waited < WAIT_MS; waited += 50)
        usleep(50000);
    ck_assert_int_eq(atomic_load(&s.block_calls), 1);
    for (int i = 2; i < 2 + BEHIND; i++)
        produce_order(&e, p, "order-lag", i, id);
    ck_assert_double_eq(wait_lag(group, BEHIND + 1, WAIT_MS), BEHIND + 1);

    atomic_store(&s.release, true);
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", BEHIND + 2, WAIT_MS),
                     BEHIND + 2);
    ck_assert_double_eq(wait_lag(group, 0, WAIT_MS), 0);

    /* A consumer that is gone reports no partitions. */
    saga_consumer_stop(c);
    ck_assert_double_eq(lag_of(group), -1);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

/* Two members of a group: each partition reports its lag from its owner only, before,
 * during and after the rebalances (a revoked partition's series goes). */
START_TEST(test_lag_follows_the_assignment_through_rebalances)
{
    enum { PARTITIONS = 6 };
    st_env_t e;
    st_setup(&e, "lagmove");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX];
    int dups;
    st_name("test-saga", '-', group, sizeof(group));
    saga_consumer_t *a = start_consumer(&e, p, &s, group, 5);
    ck_assert_int_eq(wait_lag_series(group, PARTITIONS, &dups, WAIT_MS), PARTITIONS);
    saga_consumer_t *b = start_consumer(&e, p, &s, group, 5);
    /* While the group rebalances a partition may briefly report from neither member, never
     * from both. */
    for (int i = 0; i < 100; i++) {
        ck_assert_int_le(lag_series(group, &dups), PARTITIONS);
        ck_assert_int_eq(dups, 0);
        usleep(50000);
    }
    ck_assert_int_eq(wait_lag_series(group, PARTITIONS, &dups, WAIT_MS), PARTITIONS);
    saga_consumer_stop(a);
    ck_assert_int_eq(wait_lag_series(group, PARTITIONS, &dups, WAIT_MS), PARTITIONS);
    saga_consumer_stop(b);
    ck_assert_int_eq(lag_series(group, &dups), 0);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

static Suite *saga_suite(void)
{
    Suite *s = suite_create("saga");
    tcase_add_test(check_case(s, "inbox", ST_TIMEOUT_S * 2),
                   test_same_event_delivered_twice_has_its_effect_once);
    tcase_add_test(check_case(s, "poison", ST_TIMEOUT_S * 2),
                   test_poison_messages_go_to_the_dlq_and_the_partition_moves_on);
    TCase *retry = check_case(s, "retry", ST_TIMEOUT_S * 2);
    tcase_add_test(retry, test_handler_failing_for_good_is_dead_lettered_after_max_attempts);
    tcase_add_test(retry, test_invalid_event_is_dead_lettered_at_once);
    tcase_add_test(retry, test_transient_failure_that_recovers_is_processed_once_not_dead_lettered);
    tcase_add_test(retry, test_connection_lost_mid_handler_is_retried_and_applied_once);
    tcase_add_test(check_case(s, "routing", ST_TIMEOUT_S * 2),
                   test_events_of_other_types_are_acknowledged_and_skipped);
    tcase_add_test(check_case(s, "commit", ST_TIMEOUT_S * 2),
                   test_committed_offsets_let_the_next_member_resume_after_them);
    tcase_add_test(check_case(s, "lag", ST_TIMEOUT_S * 2),
                   test_counters_exist_at_zero_and_lag_rises_and_drains);
    tcase_add_test(check_case(s, "lagmove", ST_TIMEOUT_S * 2),
                   test_lag_follows_the_assignment_through_rebalances);
    return s;
}

int main(void)
{
    return check_run(saga_suite(), CK_FORK_GETENV);
}
