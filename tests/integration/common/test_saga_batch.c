/*
 * The saga consumer's batches and parallel partitions against the stack's PostgreSQL
 * and Kafka: events already fetched are applied several to a transaction, a poison
 * or failing event in the middle of a batch is dead-lettered alone while every other
 * event takes effect once, a crash after the transaction committed but before the
 * offset was committed ends in a redelivery that the inbox skips, and partitions are
 * applied in parallel while each key keeps its order.
 */
#include <check.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "saga_test_support.h"
#include "shop/events/v1/events.pb-c.h"

#define WAIT_MS 30000

static const char *const ORDER_CREATED = "shop.events.v1.OrderCreated";
static const char GARBAGE[] = "\xff\xff\xff\xff\xff";

/* What the handler does besides recording its effect. */
typedef struct script {
    char fail_id[UUID_STR_LEN]; /* fails with FAILED_PRECONDITION every time */
    atomic_int fail_calls;
    int sleep_ms;          /* per event, inside the transaction */
    atomic_int in_flight;  /* handlers running right now */
    atomic_int max_flight; /* the most that ever ran at once */
} script_t;

static int scripted_handler(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                            err_t *err)
{
    script_t *s = ctx;
    if (strcmp(ev->ce.id, s->fail_id) == 0) {
        atomic_fetch_add(&s->fail_calls, 1);
        return err_set(err, ERR_PRECONDITION, "scripted permanent failure");
    }
    int now = atomic_fetch_add(&s->in_flight, 1) + 1;
    for (int max = atomic_load(&s->max_flight);
         now > max && !atomic_compare_exchange_weak(&s->max_flight, &max, now);)
        ;
    if (s->sleep_ms)
        clock_sleep_ms(s->sleep_ms);
    atomic_fetch_sub(&s->in_flight, 1);
    return st_effect_handler(tx, a, ev, NULL, err);
}

static const saga_route_t scripted_routes[] = {
    {&shop__events__v1__order_created__descriptor, scripted_handler, NULL}};

static saga_consumer_t *start_routes(st_env_t *e, db_pool_t *pool, kfk_producer_t *p, void *ctx,
                                     const char *group, int workers, int64_t commit_interval_ms,
                                     const saga_route_t *routes)
{
    const char *topics[] = {e->topic};
    saga_consumer_opts_t o = {.brokers = e->brokers,
                              .group = group,
                              .topics = topics,
                              .n_topics = 1,
                              .routes = routes,
                              .n_routes = 1,
                              .ctx = ctx,
                              .pool = pool,
                              .dlq_producer = p,
                              .max_attempts = 2,
                              .backoff_base_ms = 10,
                              .backoff_max_ms = 100,
                              .workers = workers,
                              .batch_max = 32,
                              .commit_interval_ms = commit_interval_ms};
    err_t err = ERR_INIT;
    saga_consumer_t *c = saga_consumer_start(&o, &err);
    ck_assert_msg(c, "%s", err.msg);
    return c;
}

static saga_consumer_t *start_consumer(st_env_t *e, db_pool_t *pool, kfk_producer_t *p, script_t *s,
                                       const char *group, int workers, int64_t commit_interval_ms)
{
    return start_routes(e, pool, p, s, group, workers, commit_interval_ms, scripted_routes);
}

static kfk_producer_t *new_producer(st_env_t *e)
{
    err_t err = ERR_INIT;
    kfk_producer_t *p = kfk_producer_new(e->brokers, "test-saga-batch", NULL, &err);
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

static double topic_metric(st_env_t *e, const char *name, const char *extra)
{
    char topic[ST_NAME_MAX + 16];
    snprintf(topic, sizeof(topic), "topic=\"%s\"", e->topic);
    return st_metric(name, (const char *[]){topic, extra, NULL});
}

/* The effects as records in the order they were written (identity order), so that
 * st_assert_order_per_key can check each key's sequence. */
static size_t effects_in_order(st_env_t *e, st_record_t *out, size_t cap)
{
    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(e->pool, 2000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_execf(c, e->a, &err, "SELECT key, seq FROM effects ORDER BY id", 0);
    ck_assert_msg(r, "%s", err.msg);
    size_t n = (size_t)db_res_rows(r);
    ck_assert_uint_le(n, cap);
    for (size_t i = 0; i < n; i++)
        out[i] = (st_record_t){.key = db_res_str(r, (int)i, 0), .seq = db_res_i64(r, (int)i, 1)};
    db_pool_release(e->pool, c);
    return n;
}

START_TEST(test_poison_in_the_middle_of_a_batch_is_dead_lettered_alone_the_rest_apply_once)
{
    st_env_t e;
    st_setup(&e, "bpoison");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {0};
    char group[ST_NAME_MAX], id[UUID_STR_LEN], garbage_id[UUID_STR_LEN];
    st_name("test-saga-batch", '-', group, sizeof(group));

    /* 20 events of one key, all on the broker before the consumer starts, so its
     * workers find several queued at once: event 7 does not decode, event 13's
     * handler always fails. */
    for (int i = 0; i < 20; i++) {
        if (i == 7) {
            kfk_ce_t bad = st_ce(&e, ORDER_CREATED, garbage_id);
            st_produce(&e, p, "order-b-00", GARBAGE, sizeof(GARBAGE) - 1, &bad, NULL);
        } else if (i == 13) {
            size_t len;
            const uint8_t *v = st_pack_order(&e, "order-b-00", i, &len);
            kfk_ce_t ce = st_ce(&e, ORDER_CREATED, s.fail_id);
            st_produce(&e, p, "order-b-00", v, len, &ce, NULL);
        } else {
            produce_order(&e, p, "order-b-00", i, id);
        }
    }
    saga_consumer_t *c = start_consumer(&e, e.pool, p, &s, group, 2, 0);

    st_record_t dlq[4];
    ck_assert_uint_eq(st_consume(&e, e.dlq, dlq, 4, 2, WAIT_MS), 2);
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 18, WAIT_MS), 18);
    ck_assert_int_eq(st_i64(&e, "SELECT count(DISTINCT ce_id) FROM effects"), 18);
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM processed_events"), 18);
    /* The two dead letters, in the order they met the consumer. */
    ck_assert_str_eq(st_header(&dlq[0], "ce_id"), garbage_id);
    ck_assert_str_eq(st_header(&dlq[1], "ce_id"), s.fail_id);
    ck_assert_str_eq(st_header(&dlq[1], "dlq_attempts"), "2");
    ck_assert_int_eq(atomic_load(&s.fail_calls), 2); /* once in the batch, once alone */
    /* Everything else in order: 0..6, 8..12, 14..19 as 18 consecutive effects. */
    st_record_t r[32];
    size_t n = effects_in_order(&e, r, 32);
    for (size_t i = 0; i < n; i++) {
        int64_t want = (int64_t)i + (i >= 7) + (i >= 12);
        ck_assert_int_eq(r[i].seq, want);
    }
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "outcome=\"ok\""), 18);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "outcome=\"dlq\""), 2);
    /* Batches did form: fewer transactions than events applied. */
    double tx = st_metric("saga_batch_events_count", NULL);
    double applied = st_metric("saga_batch_events_sum", NULL);
    ck_assert_msg(applied >= 18 && tx < applied, "%.0f events in %.0f transactions", applied, tx);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

/* The child: a consumer of the test's topic in `group` whose offsets would reach the
 * broker only after an hour; it runs until the parent kills it. */
static void consume_until_killed(st_env_t *e, const char *group)
{
    err_t err = ERR_INIT;
    db_pool_t *pool = db_pool_new(e->url, 2, &err);
    kfk_producer_t *p = pool ? kfk_producer_new(e->brokers, "test-saga-child", NULL, &err) : NULL;
    if (!p)
        _exit(3);
    script_t s = {0};
    start_consumer(e, pool, p, &s, group, 2, 3600 * 1000);
    for (;;)
        pause();
}

START_TEST(test_crash_after_commit_before_the_offset_commit_is_redelivered_and_skipped)
{
    st_env_t e;
    st_setup(&e, "bcrash");
    char group[ST_NAME_MAX], id[UUID_STR_LEN];
    st_name("test-saga-batch", '-', group, sizeof(group));
    /* Forked before this process has any Kafka client (threads do not survive fork). */
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0)
        consume_until_killed(&e, group);

    kfk_producer_t *p = new_producer(&e);
    for (int i = 0; i < 10; i++)
        produce_order(&e, p, i % 2 ? "order-c-01" : "order-c-00", i / 2, id);
    /* Every effect committed in PostgreSQL; no offset committed to Kafka yet. */
    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", 10, WAIT_MS), 10);
    kill(child, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFSIGNALED(status));

    /* The next member of the group starts from the last committed offsets, so gets all
     * ten again; the inbox recognizes each one. */
    script_t s = {0};
    saga_consumer_t *c = start_consumer(&e, e.pool, p, &s, group, 2, 0);
    int64_t deadline = clock_mono_us() + WAIT_MS * 1000;
    while (topic_metric(&e, "kafka_events_duplicate_total", NULL) < 10 &&
           clock_mono_us() < deadline)
        clock_sleep_ms(50);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_duplicate_total", NULL), 10);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_consumed_total", "outcome=\"ok\""), 0);
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM effects"), 10);
    ck_assert_int_eq(st_i64(&e, "SELECT count(DISTINCT ce_id) FROM effects"), 10);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

#define KEYS    24
#define PER_KEY 20

START_TEST(test_partitions_apply_in_parallel_and_each_key_keeps_its_order)
{
    st_env_t e;
    st_setup(&e, "bparallel");
    kfk_producer_t *p = new_producer(&e);
    script_t s = {.sleep_ms = 2};
    char group[ST_NAME_MAX];
    st_name("test-saga-batch", '-', group, sizeof(group));

    /* 24 keys over the topic's 6 partitions, 20 events each, written in rounds. */
    char id[UUID_STR_LEN], key[64];
    for (int64_t seq = 0; seq < PER_KEY; seq++)
        for (int k = 0; k < KEYS; k++) {
            st_key("order-p", k, key, sizeof(key));
            produce_order(&e, p, key, seq, id);
        }
    saga_consumer_t *c = start_consumer(&e, e.pool, p, &s, group, 4, 0);

    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", KEYS * PER_KEY, WAIT_MS),
                     KEYS * PER_KEY);
    static st_record_t r[KEYS * PER_KEY + 16];
    size_t n = effects_in_order(&e, r, sizeof(r) / sizeof(r[0]));
    st_assert_order_per_key(r, n, "order-p", KEYS, PER_KEY, false);
    ck_assert_msg(atomic_load(&s.max_flight) >= 2, "handlers never ran in parallel (max %d)",
                  atomic_load(&s.max_flight));

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

/* Each event adds one to two shared rows, "left" then "right" for even keys and the
 * other way round for odd ones: the textbook deadlock between two batches, unless the
 * route names both rows so that every transaction locks them first, in one order. */
static int crossing_handler(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                            err_t *err)
{
    static const char sql[] = "UPDATE counters SET n = n + 1 WHERE name = $1";
    bool odd = (ev->key[strlen(ev->key) - 1] - '0') % 2;
    if (!db_execf(tx, a, err, sql, 1, odd ? "right" : "left") ||
        !db_execf(tx, a, err, sql, 1, odd ? "left" : "right"))
        return err->code;
    return st_effect_handler(tx, a, ev, NULL, err);
}

static size_t crossing_locks(const saga_event_t *ev, arena_t *a, const char ***out)
{
    static const char *names[] = {"counter:right", "counter:left"};
    *out = names;
    return 2;
}

static int64_t deadlocks(st_env_t *e)
{
    return st_i64(e, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
}

START_TEST(test_batches_locking_the_same_rows_in_opposite_orders_never_deadlock)
{
    static const saga_route_t routes[] = {
        {&shop__events__v1__order_created__descriptor, crossing_handler, crossing_locks}};
    st_env_t e;
    st_setup(&e, "bcross");
    st_exec(&e, "CREATE TABLE counters (name text PRIMARY KEY, n bigint NOT NULL)");
    st_exec(&e, "INSERT INTO counters VALUES ('left', 0), ('right', 0)");
    kfk_producer_t *p = new_producer(&e);
    char group[ST_NAME_MAX], id[UUID_STR_LEN], key[64];
    st_name("test-saga-batch", '-', group, sizeof(group));
    for (int64_t seq = 0; seq < PER_KEY; seq++)
        for (int k = 0; k < KEYS; k++) {
            st_key("order-x", k, key, sizeof(key));
            produce_order(&e, p, key, seq, id);
        }
    int64_t before = deadlocks(&e);
    saga_consumer_t *c = start_routes(&e, e.pool, p, NULL, group, 4, 0, routes);

    ck_assert_int_eq(st_wait_i64(&e, "SELECT count(*) FROM effects", KEYS * PER_KEY, WAIT_MS),
                     KEYS * PER_KEY);
    ck_assert_int_eq(st_i64(&e, "SELECT sum(n) FROM counters"), 2 * KEYS * PER_KEY);
    clock_sleep_ms(1500); /* backends report their statistics at most once a second */
    ck_assert_int_eq(deadlocks(&e) - before, 0);
    ck_assert_double_eq(topic_metric(&e, "kafka_events_failed_total", NULL), 0);

    saga_consumer_stop(c);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

static Suite *saga_batch_suite(void)
{
    Suite *s = suite_create("saga_batch");
    tcase_add_test(check_case(s, "poison", ST_TIMEOUT_S * 2),
                   test_poison_in_the_middle_of_a_batch_is_dead_lettered_alone_the_rest_apply_once);
    tcase_add_test(check_case(s, "crash", ST_TIMEOUT_S * 2),
                   test_crash_after_commit_before_the_offset_commit_is_redelivered_and_skipped);
    TCase *parallel = check_case(s, "parallel", ST_TIMEOUT_S * 2);
    tcase_add_test(parallel, test_partitions_apply_in_parallel_and_each_key_keeps_its_order);
    tcase_add_test(parallel, test_batches_locking_the_same_rows_in_opposite_orders_never_deadlock);
    return s;
}

int main(void)
{
    return check_run(saga_batch_suite(), CK_FORK_GETENV);
}
