/*
 * outbox against the stack's PostgreSQL and Kafka: enqueue writes a publishable row
 * in the caller's transaction; the relay publishes in order per key, is woken by
 * NOTIFY; a relay process SIGKILLed mid-batch (three times) loses nothing and
 * reorders nothing, and a saga consumer's inbox then applies each event exactly
 * once; two relay processes never publish at once, and when the leader dies the
 * other takes over and drains.
 */
#include <check.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/outbox.h"
#include "common/trace.h"
#include "common/uuid.h"
#include "saga_test_support.h"
#include "shop/events/v1/events.pb-c.h"

#define WAIT_MS    30000
#define N_KEYS     20
#define KEY_PREFIX "order"

static const char *const UNPUBLISHED = "SELECT count(*) FROM outbox WHERE published_at IS NULL";
static const char *const PUBLISHED = "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL";

/* A lock key of this test run's own, so relays of other tests never compete. */
static int64_t random_lock_key(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned seed = (unsigned)(ts.tv_nsec ^ getpid());
    return ((int64_t)getpid() << 24 | (rand_r(&seed) & 0xffffff)) + 1;
}

static kfk_producer_t *new_producer(st_env_t *e)
{
    err_t err = ERR_INIT;
    kfk_producer_t *p = kfk_producer_new(e->brokers, "test-outbox", NULL, &err);
    ck_assert_msg(p, "%s", err.msg);
    return p;
}

static outbox_relay_t *start_relay(const char *url, kfk_producer_t *p, int64_t key, int poll_ms)
{
    outbox_relay_opts_t o = {
        .db_url = url, .producer = p, .lock_key = key, .poll_interval_ms = poll_ms};
    err_t err = ERR_INIT;
    outbox_relay_t *r = outbox_relay_start(&o, &err);
    ck_assert_msg(r, "%s", err.msg);
    return r;
}

/* ---- enqueue ---- */

typedef struct enqueue_case {
    st_env_t *e;
    const char *traceparent;
    bool fail_after; /* return an error after enqueueing: the transaction rolls back */
} enqueue_case_t;

static int enqueue_one(db_conn_t *tx, void *ud, err_t *err)
{
    enqueue_case_t *c = ud;
    Shop__Events__V1__OrderCreated ev = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    ev.order_id = "order-enq";
    ev.total_cents = 4200;
    int rc = outbox_enqueue(tx, c->e->a, c->e->topic, "order-enq", &ev.base, c->traceparent, err);
    if (rc == 0 && c->fail_after)
        rc = err_set(err, ERR_PRECONDITION, "business rule said no");
    return rc;
}

START_TEST(test_enqueue_writes_a_publishable_row_in_the_callers_transaction)
{
    st_env_t e;
    st_setup(&e, "enqueue");
    err_t err = ERR_INIT;
    const char *trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    enqueue_case_t with_trace = {.e = &e, .traceparent = trace};
    enqueue_case_t bad_trace = {.e = &e, .traceparent = "not-a-trace"};
    enqueue_case_t rolled_back = {.e = &e, .fail_after = true};
    ck_assert_int_eq(db_txn(e.pool, enqueue_one, &with_trace, &err), 0);
    ck_assert_int_eq(db_txn(e.pool, enqueue_one, &bad_trace, &err), 0);
    ck_assert_int_eq(db_txn(e.pool, enqueue_one, &rolled_back, &err), ERR_PRECONDITION);
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM outbox"), 2);

    db_conn_t *c = db_pool_acquire(e.pool, 5000, &err);
    ck_assert_ptr_nonnull(c);
    db_res_t *r = db_execf(c, e.a, &err,
                           "SELECT topic, key, ce_id::text, ce_type, ce_source, traceparent,"
                           " payload, published_at IS NULL FROM outbox ORDER BY id",
                           0);
    ck_assert_msg(r, "%s", err.msg);
    ck_assert_str_eq(db_res_str(r, 0, 0), e.topic);
    ck_assert_str_eq(db_res_str(r, 0, 1), "order-enq");
    ck_assert(uuid_valid(db_res_str(r, 0, 2)));
    ck_assert_str_ne(db_res_str(r, 0, 2), db_res_str(r, 1, 2));
    ck_assert_str_eq(db_res_str(r, 0, 3), "shop.events.v1.OrderCreated");
    ck_assert_str_eq(db_res_str(r, 0, 4), "/shop/saga-test");
    ck_assert_str_eq(db_res_str(r, 0, 5), trace);
    ck_assert(db_res_null(r, 1, 5)); /* an invalid traceparent is dropped, not stored */
    ck_assert(db_res_bool(r, 0, 7));
    size_t len;
    const uint8_t *payload = db_res_bytea(r, e.a, 0, 6, &len);
    Shop__Events__V1__OrderCreated *oc =
        shop__events__v1__order_created__unpack(arena_protobuf_allocator(e.a), len, payload);
    ck_assert_ptr_nonnull(oc);
    ck_assert_str_eq(oc->order_id, "order-enq");
    ck_assert_int_eq(oc->total_cents, 4200);

    Shop__Events__V1__OrderCreated ev = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    ck_assert_int_eq(outbox_enqueue(c, e.a, e.topic, "", &ev.base, NULL, &err), ERR_INVALID);
    ck_assert_int_eq(outbox_enqueue(c, e.a, NULL, "k", &ev.base, NULL, &err), ERR_INVALID);
    /* An event the relay could never publish is refused in the writer's transaction,
     * not left at the head of the queue. */
    char *big = arena_alloc(e.a, KFK_MESSAGE_MAX);
    memset(big, 'x', KFK_MESSAGE_MAX - 1);
    big[KFK_MESSAGE_MAX - 1] = '\0';
    ev.order_id = big;
    ck_assert_int_eq(outbox_enqueue(c, e.a, e.topic, "k", &ev.base, NULL, &err), ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "maximum"));
    ck_assert_int_eq(outbox_set_source("/shop/has space"), ERR_INVALID);
    db_pool_release(e.pool, c);
    st_teardown(&e);
}
END_TEST

/* ---- in-process relay ---- */

START_TEST(test_relay_publishes_rows_in_order_per_key)
{
    st_env_t e;
    st_setup(&e, "order");
    kfk_producer_t *p = new_producer(&e);
    outbox_relay_t *r = start_relay(e.url, p, random_lock_key(), 500);
    const int rounds = 25;
    for (int seq = 0; seq < rounds; seq++)
        ck_assert_int_eq(st_enqueue_round(&e, KEY_PREFIX, N_KEYS, seq), 0);
    ck_assert_int_eq(st_wait_i64(&e, UNPUBLISHED, 0, WAIT_MS), 0);

    size_t total = (size_t)N_KEYS * rounds;
    st_record_t *recs = arena_calloc(e.a, total + 64, sizeof(*recs));
    size_t n = st_consume(&e, e.topic, recs, total + 64, total, WAIT_MS);
    ck_assert_uint_eq(n, total);
    st_assert_order_per_key(recs, n, KEY_PREFIX, N_KEYS, rounds, false);

    kfk_header_t *h = recs[0].headers;
    kfk_ce_t ce;
    err_t err = ERR_INIT;
    ck_assert_msg(kfk_ce_parse(h, recs[0].n_headers, e.a, &ce, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(ce.type, "shop.events.v1.OrderCreated");
    ck_assert_str_eq(ce.source, "/shop/saga-test");
    /* Rows written without a trace context are published as the roots of new traces
     * (the relay's PRODUCER span, span.h). */
    ck_assert(trace_parent_valid(ce.traceparent));
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM outbox WHERE ce_id = '%s'", ce.id);
    ck_assert_int_eq(st_i64(&e, sql), 1);

    ck_assert_double_eq(st_metric("outbox_published_total", NULL), (double)total);
    ck_assert_double_eq(st_metric("outbox_relay_leader", NULL), 1);
    outbox_relay_stop(r);
    ck_assert_double_eq(st_metric("outbox_relay_leader", NULL), 0);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

START_TEST(test_relay_is_woken_by_notify_not_by_its_poll)
{
    st_env_t e;
    st_setup(&e, "notify");
    kfk_producer_t *p = new_producer(&e);
    /* A 20 s poll: only NOTIFY can make it publish within a second. */
    outbox_relay_t *r = start_relay(e.url, p, random_lock_key(), 20000);
    int64_t end = clock_mono_us() + (int64_t)WAIT_MS * 1000;
    while (st_metric("outbox_relay_leader", NULL) != 1 && clock_mono_us() < end)
        clock_sleep_ms(20);
    ck_assert_double_eq(st_metric("outbox_relay_leader", NULL), 1);
    clock_sleep_ms(300); /* let the first (empty) scan finish and the relay sleep */

    /* A reader of the topic, in the group already, so that each event can be timed
     * from its commit to its arrival on Kafka. */
    char group[ST_NAME_MAX];
    st_name("test-outbox", '-', group, sizeof(group));
    err_t err = ERR_INIT;
    kfk_consumer_t *kc =
        kfk_consumer_new(e.brokers, group, (const char *[]){e.topic}, 1, NULL, &err);
    ck_assert_msg(kc, "%s", err.msg);
    for (int64_t t = clock_mono_us() + 3000 * 1000; clock_mono_us() < t;)
        kfk_msg_free(kfk_consumer_poll(kc, 100)); /* join the group, get the partitions */

    for (int i = 0; i < 3; i++) {
        int64_t t0 = clock_mono_us();
        ck_assert_int_eq(st_enqueue_round(&e, KEY_PREFIX, 1, i), 0);
        kfk_msg_t *m = NULL;
        while (!m && clock_mono_us() - t0 < 1000 * 1000)
            m = kfk_consumer_poll(kc, 50);
        ck_assert_msg(m, "event %d not on Kafka within a second", i);
        kfk_msg_free(m);
    }
    /* Its marks ride on the next scan: the poll (or the stop) flushes the last one. */
    outbox_relay_stop(r);
    ck_assert_int_eq(st_i64(&e, UNPUBLISHED), 0);
    kfk_consumer_close(kc);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

/* Which relay holds the advisory lock, by application_name: 1 (relay_a), 2
 * (relay_b), 3 (another), 0 (none); asserts there is never more than one holder. */
static int64_t lock_holder(st_env_t *e, int64_t key)
{
    char sql[640];
    snprintf(sql, sizeof(sql),
             "SELECT CASE WHEN count(*) > 1 THEN -1 ELSE coalesce(max(CASE a.application_name"
             " WHEN 'relay_a' THEN 1 WHEN 'relay_b' THEN 2 ELSE 3 END), 0) END"
             " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
             " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
             " AND l.classid = (%" PRId64 "::bigint >> 32)::oid"
             " AND l.objid = (%" PRId64 "::bigint & 4294967295)::oid",
             key, key);
    int64_t h = st_i64(e, sql);
    ck_assert_msg(h != -1, "two sessions hold the relay lock");
    return h;
}

START_TEST(test_relay_takes_its_lock_back_after_losing_its_connection)
{
    st_env_t e;
    st_setup(&e, "reconnect");
    kfk_producer_t *p = new_producer(&e);
    char url[ST_URL_MAX + 64];
    snprintf(url, sizeof(url), "%s&application_name=relay_inproc", e.url);
    int64_t key = random_lock_key();
    outbox_relay_t *r = start_relay(url, p, key, 500);
    for (int seq = 0; seq < 5; seq++)
        ck_assert_int_eq(st_enqueue_round(&e, KEY_PREFIX, N_KEYS, seq), 0);
    ck_assert_int_eq(st_wait_i64(&e, UNPUBLISHED, 0, WAIT_MS), 0);
    ck_assert_int_eq(lock_holder(&e, key), 3);

    /* PostgreSQL drops the relay's sessions (lock and LISTEN), as a restart would. */
    ck_assert_int_ge(st_i64(&e, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                " WHERE application_name = 'relay_inproc'"),
                     2);
    for (int seq = 5; seq < 10; seq++)
        ck_assert_int_eq(st_enqueue_round(&e, KEY_PREFIX, N_KEYS, seq), 0);
    ck_assert_int_eq(st_wait_i64(&e, UNPUBLISHED, 0, WAIT_MS), 0);
    ck_assert_int_eq(lock_holder(&e, key), 3);

    st_record_t *recs = arena_calloc(e.a, 400, sizeof(*recs));
    size_t n = st_consume(&e, e.topic, recs, 400, N_KEYS * 10, WAIT_MS);
    ck_assert_uint_ge(n, N_KEYS * 10);
    st_assert_order_per_key(recs, n, KEY_PREFIX, N_KEYS, 10, true);
    outbox_relay_stop(r);
    kfk_producer_free(p);
    st_teardown(&e);
}
END_TEST

/* ---- relay processes ---- */

typedef struct relay_proc {
    pid_t pid;
    char log[160];
} relay_proc_t;

/* Starts outbox_relay_proc with its stdout in a log file; it dies with us. */
static void relay_spawn(st_env_t *e, relay_proc_t *rp, const char *name, int64_t key, int batch,
                        int linger_ms)
{
    char url[ST_URL_MAX + 64], key_s[32], batch_s[16], linger_s[16];
    snprintf(url, sizeof(url), "%s&application_name=%s", e->url, name);
    snprintf(key_s, sizeof(key_s), "%" PRId64, key);
    snprintf(batch_s, sizeof(batch_s), "%d", batch);
    snprintf(linger_s, sizeof(linger_s), "%d", linger_ms);
    snprintf(rp->log, sizeof(rp->log), "/tmp/%s-%s.log", e->schema, name);
    pid_t parent = getpid();
    rp->pid = fork();
    ck_assert_int_ge(rp->pid, 0);
    if (rp->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave relays behind */
        if (getppid() != parent)
            _exit(1);
        int fd = open(rp->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
            _exit(1);
        execl(OUTBOX_RELAY_PROC, OUTBOX_RELAY_PROC, url, e->brokers, key_s, batch_s, linger_s,
              (char *)NULL);
        _exit(127);
    }
}

/* Sends sig and reaps; a SIGTERM must end in a clean exit. */
static void relay_end(relay_proc_t *rp, int sig)
{
    ck_assert_int_eq(kill(rp->pid, sig), 0);
    int status = 0;
    ck_assert_int_eq(waitpid(rp->pid, &status, 0), rp->pid);
    if (sig == SIGKILL)
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    else
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "relay exit status %d",
                      status);
}

static bool relay_log_has(const relay_proc_t *rp, const char *needle)
{
    FILE *f = fopen(rp->log, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Enqueues `rounds` rounds over N_KEYS keys, a few milliseconds apart, so relays
 * always have fresh rows while the test kills them. */
typedef struct writer {
    st_env_t *e;
    int rounds;
    pthread_t thread;
    atomic_int failures;
    atomic_bool done;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    for (int seq = 0; seq < w->rounds; seq++) {
        if (st_enqueue_round(w->e, KEY_PREFIX, N_KEYS, seq) != 0)
            atomic_fetch_add(&w->failures, 1);
        clock_sleep_ms(5);
    }
    atomic_store(&w->done, true);
    return NULL;
}

static void writer_start(writer_t *w, st_env_t *e, int rounds)
{
    *w = (writer_t){.e = e, .rounds = rounds};
    ck_assert_int_eq(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static void writer_join(writer_t *w)
{
    pthread_join(w->thread, NULL);
    ck_assert_int_eq(atomic_load(&w->failures), 0);
}

/* Consumes everything published and checks order per key over the whole run. */
static size_t assert_topic_in_order(st_env_t *e, int rounds)
{
    size_t total = (size_t)N_KEYS * (size_t)rounds, cap = total * 2;
    st_record_t *recs = arena_calloc(e->a, cap, sizeof(*recs));
    size_t n = st_consume(e, e->topic, recs, cap, total, WAIT_MS);
    ck_assert_uint_ge(n, total);
    st_assert_order_per_key(recs, n, KEY_PREFIX, N_KEYS, rounds, true);
    return n;
}

/* Share-locks the unpublished rows on a connection of our own, inside a transaction,
 * and waits until relay_a blocks marking them published (so it has produced them
 * and has their delivery reports). Returns the connection, still in the transaction. */
static db_conn_t *block_marking(st_env_t *e)
{
    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(e->pool, 5000, &err);
    ck_assert_msg(c, "%s", err.msg);
    arena_t *a = arena_new(0);
    ck_assert_msg(db_exec(c, a, "BEGIN", 0, NULL, &err), "%s", err.msg);
    ck_assert_msg(db_exec(c, a,
                          "SELECT count(*) FROM (SELECT id FROM outbox WHERE published_at IS NULL"
                          " FOR SHARE) locked",
                          0, NULL, &err),
                  "%s", err.msg);
    arena_free(a);
    const char *blocked = "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                          " 'relay_a' AND wait_event_type = 'Lock'"
                          " AND query LIKE '%UPDATE outbox SET published_at%'";
    ck_assert_msg(st_wait_i64(e, blocked, 1, WAIT_MS) == 1, "the relay never blocked in its mark");
    return c;
}

/* After the kill: the dead relay's UPDATE is still queued in its server session and
 * would commit once unblocked, as if the relay had died just after sending it. End
 * that session first, so the kill lands between delivery and mark. */
static void unblock_marking(st_env_t *e, db_conn_t *c)
{
    err_t err = ERR_INIT;
    st_i64(e, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
              " WHERE application_name = 'relay_a'");
    ck_assert_int_eq(st_wait_i64(e,
                                 "SELECT count(*) FROM pg_stat_activity"
                                 " WHERE application_name = 'relay_a'",
                                 0, WAIT_MS),
                     0);
    arena_t *a = arena_new(0);
    ck_assert_msg(db_exec(c, a, "ROLLBACK", 0, NULL, &err), "%s", err.msg);
    arena_free(a);
    db_pool_release(e->pool, c);
}

/* Runs a saga consumer with the effect handler over the topic until it has handled
 * all n messages (applied or skipped as duplicates). */
static void apply_with_inbox(st_env_t *e, size_t n)
{
    kfk_producer_t *p = new_producer(e);
    static const saga_route_t routes[] = {
        {&shop__events__v1__order_created__descriptor, st_effect_handler, NULL}};
    char group[ST_NAME_MAX], topic[ST_NAME_MAX + 16];
    st_name("test-outbox", '-', group, sizeof(group));
    snprintf(topic, sizeof(topic), "topic=\"%s\"", e->topic);
    const char *topics[] = {e->topic};
    saga_consumer_opts_t o = {.brokers = e->brokers,
                              .group = group,
                              .topics = topics,
                              .n_topics = 1,
                              .routes = routes,
                              .n_routes = 1,
                              .pool = e->pool,
                              .dlq_producer = p};
    err_t err = ERR_INIT;
    saga_consumer_t *c = saga_consumer_start(&o, &err);
    ck_assert_msg(c, "%s", err.msg);
    int64_t end = clock_mono_us() + (int64_t)WAIT_MS * 1000;
    double handled = 0;
    while (handled < (double)n && clock_mono_us() < end) {
        clock_sleep_ms(20);
        handled = st_metric("kafka_events_consumed_total",
                            (const char *[]){topic, "outcome=\"ok\"", NULL}) +
                  st_metric("kafka_events_consumed_total",
                            (const char *[]){topic, "outcome=\"duplicate\"", NULL});
    }
    saga_consumer_stop(c);
    kfk_producer_free(p);
    ck_assert_double_eq(handled, (double)n);
}

START_TEST(test_relay_process_killed_mid_batch_loses_and_reorders_nothing)
{
    st_env_t e;
    st_setup(&e, "sigkill");
    const int rounds = 100;
    int64_t key = random_lock_key();
    writer_t w;
    writer_start(&w, &e, rounds);

    /* Three relays die mid-batch: each runs a while, then the rows it is about to
     * mark are share-locked so that it produces them, gets their delivery reports
     * and blocks in its UPDATE; that is when it is killed. */
    relay_proc_t rp;
    for (int kill_no = 0; kill_no < 3; kill_no++) {
        int64_t before = st_i64(&e, PUBLISHED);
        relay_spawn(&e, &rp, "relay_a", key, 50, 1);
        int64_t end = clock_mono_us() + (int64_t)WAIT_MS * 1000;
        while (st_i64(&e, PUBLISHED) < before + 100 && clock_mono_us() < end)
            clock_sleep_ms(10);
        db_conn_t *blocker = block_marking(&e);
        relay_end(&rp, SIGKILL);
        unblock_marking(&e, blocker);
        unlink(rp.log);
    }

    relay_spawn(&e, &rp, "relay_a", key, 50, 1);
    writer_join(&w);
    ck_assert_int_eq(st_wait_i64(&e, UNPUBLISHED, 0, WAIT_MS), 0);
    relay_end(&rp, SIGTERM);
    unlink(rp.log);
    size_t n = assert_topic_in_order(&e, rounds);
    /* Each killed relay had delivered rows it never marked: they went out again. */
    ck_assert_uint_gt(n, (size_t)N_KEYS * rounds);

    /* Duplicates (if any) are absorbed: each event applied exactly once, in order. */
    apply_with_inbox(&e, n);
    int64_t total = (int64_t)N_KEYS * rounds;
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM effects"), total);
    ck_assert_int_eq(st_i64(&e, "SELECT count(DISTINCT ce_id) FROM effects"), total);
    ck_assert_int_eq(st_i64(&e, "SELECT count(*) FROM effects a JOIN effects b ON a.key = b.key"
                                " AND a.id < b.id AND a.seq > b.seq"),
                     0);
    st_teardown(&e);
}
END_TEST

START_TEST(test_two_relay_processes_never_publish_at_once)
{
    st_env_t e;
    st_setup(&e, "tworelays");
    const int rounds = 100;
    int64_t key = random_lock_key();
    writer_t w;
    writer_start(&w, &e, rounds);

    relay_proc_t rp[2];
    relay_spawn(&e, &rp[0], "relay_a", key, 50, 20);
    relay_spawn(&e, &rp[1], "relay_b", key, 50, 20);

    /* While both run and rows keep coming, one and the same process holds the lock. */
    int64_t leader = 0, end = clock_mono_us() + (int64_t)WAIT_MS * 1000;
    while ((leader == 0 || st_i64(&e, PUBLISHED) < 500) && clock_mono_us() < end) {
        int64_t h = lock_holder(&e, key);
        ck_assert_msg(leader == 0 || h == leader, "the lock moved from %" PRId64 " to %" PRId64,
                      leader, h);
        leader = h ? h : leader;
        clock_sleep_ms(20);
    }
    ck_assert_msg(leader == 1 || leader == 2, "no relay process took the lock");
    relay_proc_t *lead = &rp[leader - 1], *standby = &rp[2 - leader];
    ck_assert(relay_log_has(lead, "outbox relay acquired the lock"));
    ck_assert(!relay_log_has(standby, "outbox relay acquired the lock"));

    /* The leader dies; the standby takes over and drains what is left. */
    relay_end(lead, SIGKILL);
    writer_join(&w);
    end = clock_mono_us() + (int64_t)WAIT_MS * 1000;
    while (lock_holder(&e, key) != 3 - leader && clock_mono_us() < end)
        clock_sleep_ms(20);
    ck_assert_int_eq(lock_holder(&e, key), 3 - leader);
    ck_assert_int_eq(st_wait_i64(&e, UNPUBLISHED, 0, WAIT_MS), 0);
    ck_assert(relay_log_has(standby, "outbox relay acquired the lock"));
    relay_end(standby, SIGTERM);
    unlink(rp[0].log);
    unlink(rp[1].log);
    assert_topic_in_order(&e, rounds);
    st_teardown(&e);
}
END_TEST

static Suite *outbox_suite(void)
{
    Suite *s = suite_create("outbox");
    tcase_add_test(check_case(s, "enqueue", ST_TIMEOUT_S * 2),
                   test_enqueue_writes_a_publishable_row_in_the_callers_transaction);
    TCase *relay = check_case(s, "relay", ST_TIMEOUT_S * 2);
    tcase_add_test(relay, test_relay_publishes_rows_in_order_per_key);
    tcase_add_test(relay, test_relay_is_woken_by_notify_not_by_its_poll);
    tcase_add_test(relay, test_relay_takes_its_lock_back_after_losing_its_connection);
    TCase *procs = check_case(s, "processes", ST_TIMEOUT_S * 2);
    tcase_add_test(procs, test_relay_process_killed_mid_batch_loses_and_reorders_nothing);
    tcase_add_test(procs, test_two_relay_processes_never_publish_at_once);
    return s;
}

int main(void)
{
    return check_run(outbox_suite(), CK_FORK_GETENV);
}
