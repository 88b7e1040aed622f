/*
 * db against the real PostgreSQL of the test stack: the pool (leases, exhaustion,
 * recovery from killed backends), transactions (commit, rollback, retries of
 * serialization failures and deadlocks), error translation, parameters, bytea and
 * advisory locks. Each test works in a schema of its own (test_db_support.h).
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_util.h"
#include "common/arena.h"
#include "common/db.h"
#include "common/metrics.h"
#include "test_db_support.h"

static char schema[TDB_NAME_MAX], url[TDB_URL_MAX];
static db_pool_t *pool;

static void setup(void)
{
    tdb_schema_create(schema, url);
    err_t err = ERR_INIT;
    pool = db_pool_new(url, 4, &err);
    ck_assert_msg(pool, "%s", err.msg);
}

static void teardown(void)
{
    db_pool_free(pool);
    tdb_schema_drop(schema);
}

/* Runs one statement inside db_txn. */
typedef struct sql_ud {
    const char *sql;
    int n;
    const char *const *params;
} sql_ud_t;

static int fn_sql(db_conn_t *tx, void *ud, err_t *err)
{
    sql_ud_t *u = ud;
    arena_t *a = arena_new(0);
    int rc = db_exec(tx, a, u->sql, u->n, u->params, err) ? 0 : err->code;
    arena_free(a);
    return rc;
}

static int txn_sql(const char *sql, err_t *err)
{
    sql_ud_t u = {.sql = sql};
    return db_txn(pool, fn_sql, &u, err);
}

static void txn_ok(const char *sql)
{
    err_t err = ERR_INIT;
    int rc = txn_sql(sql, &err);
    ck_assert_msg(rc == 0, "%s: %s", sql, err.msg);
}

/* A value from a one-row query, over a fresh lease. */
static int64_t query_i64(const char *sql)
{
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 2000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_exec(c, a, sql, 0, NULL, &err);
    ck_assert_msg(r && db_res_rows(r) == 1, "%s: %s", sql, err.msg);
    int64_t v = db_res_i64(r, 0, 0);
    db_pool_release(pool, c);
    arena_free(a);
    return v;
}

static void terminate_backend(int64_t pid)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld, 5000)::int", (long long)pid);
    PGconn *pg = tdb_pg(tdb_base_url());
    ck_assert_int_eq(tdb_i64(pg, sql), 1);
    PQfinish(pg);
}

/* ---- pool ---- */

START_TEST(test_pool_reuses_a_released_connection)
{
    int open, in_use, size;
    int64_t pid1 = query_i64("SELECT pg_backend_pid()");
    db_pool_stats(pool, &open, &in_use, &size);
    ck_assert_int_eq(open, 1);
    ck_assert_int_eq(in_use, 0);
    ck_assert_int_eq(size, 4);

    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(pool, 1000, &err);
    ck_assert_ptr_nonnull(c);
    db_pool_stats(pool, &open, &in_use, NULL);
    ck_assert_int_eq(in_use, 1);
    db_pool_release(pool, c);

    ck_assert_int_eq(query_i64("SELECT pg_backend_pid()"), pid1);
    db_pool_stats(pool, &open, &in_use, NULL);
    ck_assert_int_eq(open, 1);
    ck_assert_int_eq(in_use, 0);
}
END_TEST

START_TEST(test_pool_acquire_fails_exhausted_after_its_timeout)
{
    err_t err = ERR_INIT;
    db_pool_t *p = db_pool_new(url, 2, &err);
    db_conn_t *a = db_pool_acquire(p, 1000, &err);
    db_conn_t *b = db_pool_acquire(p, 1000, &err);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);

    int64_t t0 = tdb_ms();
    ck_assert_ptr_null(db_pool_acquire(p, 150, &err));
    int64_t waited = tdb_ms() - t0;
    ck_assert_int_eq(err.code, ERR_EXHAUSTED);
    ck_assert_msg(waited >= 140 && waited < 2000, "waited %lld ms", (long long)waited);

    /* No waiting at all with timeout 0. */
    t0 = tdb_ms();
    ck_assert_ptr_null(db_pool_acquire(p, 0, &err));
    ck_assert_int_lt(tdb_ms() - t0, 50);

    db_pool_release(p, a);
    db_conn_t *c = db_pool_acquire(p, 0, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_pool_release(p, b);
    db_pool_release(p, c);
    db_pool_free(p);
}
END_TEST

typedef struct release_later {
    db_pool_t *pool;
    db_conn_t *conn;
} release_later_t;

static void *release_after_100ms(void *arg)
{
    release_later_t *r = arg;
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    db_pool_release(r->pool, r->conn);
    return NULL;
}

START_TEST(test_pool_acquire_wakes_when_a_connection_is_released)
{
    err_t err = ERR_INIT;
    db_pool_t *p = db_pool_new(url, 1, &err);
    release_later_t r = {.pool = p, .conn = db_pool_acquire(p, 1000, &err)};
    ck_assert_ptr_nonnull(r.conn);
    pthread_t th;
    pthread_create(&th, NULL, release_after_100ms, &r);

    int64_t t0 = tdb_ms();
    db_conn_t *c = db_pool_acquire(p, 5000, &err);
    int64_t waited = tdb_ms() - t0;
    ck_assert_msg(c, "%s", err.msg);
    ck_assert_msg(waited >= 50 && waited < 2000, "waited %lld ms", (long long)waited);
    pthread_join(th, NULL);
    db_pool_release(p, c);
    db_pool_free(p);
}
END_TEST

static int fn_count_calls(db_conn_t *tx, void *ud, err_t *err)
{
    (*(int *)ud)++;
    return 0;
}

START_TEST(test_pool_reports_unavailable_when_postgres_is_unreachable)
{
    err_t err = ERR_INIT;
    /* Port 1 on loopback: nothing listens, the connection is refused at once. */
    db_pool_t *p = db_pool_new("postgresql://nobody:secret-pw@127.0.0.1:1/none", 2, &err);
    ck_assert_msg(p, "the pool opens lazily, so creating it must not fail: %s", err.msg);

    ck_assert_ptr_null(db_pool_acquire(p, 1000, &err));
    ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
    ck_assert_ptr_null(strstr(err.msg, "secret-pw"));
    ck_assert_int_eq(db_pool_ping(p, &err), ERR_UNAVAILABLE);

    int calls = 0;
    ck_assert_int_eq(db_txn(p, fn_count_calls, &calls, &err), ERR_UNAVAILABLE);
    ck_assert_int_eq(calls, 0);

    int open, in_use;
    db_pool_stats(p, &open, &in_use, NULL);
    ck_assert_int_eq(open, 0);
    ck_assert_int_eq(in_use, 0);
    db_pool_free(p);
}
END_TEST

static int fn_pid(db_conn_t *tx, void *ud, err_t *err)
{
    arena_t *a = arena_new(0);
    db_res_t *r = db_exec(tx, a, "SELECT pg_backend_pid()", 0, NULL, err);
    if (r)
        *(int64_t *)ud = db_res_i64(r, 0, 0);
    arena_free(a);
    return r ? 0 : err->code;
}

START_TEST(test_txn_replaces_an_idle_connection_whose_backend_was_killed)
{
    /* Transparent: the next db_txn succeeds without any ERR_UNAVAILABLE. */
    err_t err = ERR_INIT;
    int64_t pid1 = 0, pid2 = 0;
    ck_assert_int_eq(db_txn(pool, fn_pid, &pid1, &err), 0);
    terminate_backend(pid1);
    ck_assert_msg(db_txn(pool, fn_pid, &pid2, &err) == 0, "%s", err.msg);
    ck_assert_int_ne(pid1, pid2);

    /* A plain lease notices it too: the server's goodbye is waiting on the socket. */
    terminate_backend(pid2);
    ck_assert_int_ne(query_i64("SELECT pg_backend_pid()"), pid2);
    int open;
    db_pool_stats(pool, &open, NULL, NULL);
    ck_assert_int_eq(open, 1);
}
END_TEST

typedef struct kill_ud {
    int calls;
} kill_ud_t;

static int fn_killed_midway(db_conn_t *tx, void *ud, err_t *err)
{
    ((kill_ud_t *)ud)->calls++;
    arena_t *a = arena_new(0);
    db_res_t *r = db_exec(tx, a, "SELECT pg_backend_pid()", 0, NULL, err);
    ck_assert_ptr_nonnull(r);
    terminate_backend(db_res_i64(r, 0, 0));
    int rc = db_exec(tx, a, "SELECT 1", 0, NULL, err) ? 0 : err->code;
    arena_free(a);
    return rc;
}

START_TEST(test_txn_reports_unavailable_when_the_backend_dies_midway_then_recovers)
{
    err_t err = ERR_INIT;
    kill_ud_t k = {0};
    ck_assert_int_eq(db_txn(pool, fn_killed_midway, &k, &err), ERR_UNAVAILABLE);
    ck_assert_int_eq(k.calls, 1); /* not retried: the caller decides */

    int open, in_use;
    db_pool_stats(pool, &open, &in_use, NULL);
    ck_assert_int_eq(open, 0);
    ck_assert_int_eq(in_use, 0);
    txn_ok("SELECT 1");
}
END_TEST

/* The pool's one open connection made read-only, as if its server had become a standby
 * (25006 read_only_sql_transaction on the next write): what a failover looks like to a
 * session that outlived it. Returns that session's backend pid. */
static int64_t make_the_open_connection_read_only(void)
{
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 1000, &err);
    ck_assert_msg(c, "%s", err.msg);
    ck_assert_ptr_nonnull(db_exec(c, a, "SET default_transaction_read_only = on", 0, NULL, &err));
    db_res_t *r = db_exec(c, a, "SELECT pg_backend_pid()", 0, NULL, &err);
    ck_assert_ptr_nonnull(r);
    int64_t pid = db_res_i64(r, 0, 0);
    db_pool_release(pool, c);
    arena_free(a);
    int open;
    db_pool_stats(pool, &open, NULL, NULL);
    ck_assert_int_eq(open, 1);
    return pid;
}

START_TEST(test_a_write_refused_as_read_only_is_unavailable_and_drops_the_connection)
{
    txn_ok("CREATE TABLE t (id int)");
    int64_t pid = make_the_open_connection_read_only();
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    ck_assert_ptr_null(db_pool_exec(pool, a, "INSERT INTO t VALUES (1)", 0, NULL, &err));
    ck_assert_int_eq(err.code, ERR_UNAVAILABLE);
    ck_assert_msg(strstr(err.msg, "25006") != NULL, "%s", err.msg);
    int open;
    db_pool_stats(pool, &open, NULL, NULL);
    ck_assert_int_eq(open, 0); /* dropped: the next lease connects again */

    ck_assert_ptr_nonnull(db_pool_exec(pool, a, "INSERT INTO t VALUES (2)", 0, NULL, &err));
    ck_assert_int_ne(query_i64("SELECT pg_backend_pid()"), pid);
    ck_assert_int_eq(query_i64("SELECT count(*) FROM t"), 1);
    arena_free(a);
}
END_TEST

typedef struct insert_ud {
    int calls;
} insert_ud_t;

static int fn_insert_counting(db_conn_t *tx, void *ud, err_t *err)
{
    ((insert_ud_t *)ud)->calls++;
    arena_t *a = arena_new(0);
    int rc = db_exec(tx, a, "INSERT INTO t VALUES (1)", 0, NULL, err) ? 0 : err->code;
    if (rc == 0)
        rc = db_exec(tx, a, "INSERT INTO t VALUES (2)", 0, NULL, err) ? 0 : err->code;
    arena_free(a);
    return rc;
}

START_TEST(test_txn_runs_again_on_a_fresh_connection_after_a_read_only_refusal)
{
    txn_ok("CREATE TABLE t (id int)");
    make_the_open_connection_read_only();
    err_t err = ERR_INIT;
    insert_ud_t u = {0};
    ck_assert_msg(db_txn(pool, fn_insert_counting, &u, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(u.calls, 2); /* refused on the read-only session, then committed */
    ck_assert_int_eq(query_i64("SELECT count(*) FROM t"), 2);
}
END_TEST

/* HA=1's URL names every node of a service (deploy/local/lib.sh db_url): libpq tries
 * them in turn and keeps the one that takes writes. Here the first host refuses
 * connections (a dead primary) and the second is the test stack's server. */
START_TEST(test_pool_follows_a_multi_host_url_to_the_server_that_takes_writes)
{
    char multi[TDB_URL_MAX + 64];
    const char *at = strchr(url, '@');
    ck_assert_ptr_nonnull(at);
    snprintf(multi, sizeof(multi), "%.*s127.0.0.1:1,%s&target_session_attrs=read-write",
             (int)(at + 1 - url), url, at + 1);
    err_t err = ERR_INIT;
    ck_assert_msg(db_url_check(multi, &err) == 0, "%s", err.msg);
    db_pool_t *p = db_pool_new(multi, 1, &err);
    ck_assert_msg(p, "%s", err.msg);
    ck_assert_msg(db_pool_ping(p, &err) == 0, "%s", err.msg);
    db_pool_free(p);
}
END_TEST

START_TEST(test_release_closes_a_connection_left_inside_a_transaction)
{
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    txn_ok("CREATE TABLE t (id int)");
    db_conn_t *c = db_pool_acquire(pool, 1000, &err);
    ck_assert_ptr_nonnull(db_exec(c, a, "BEGIN", 0, NULL, &err));
    ck_assert_ptr_nonnull(db_exec(c, a, "INSERT INTO t VALUES (1)", 0, NULL, &err));
    db_pool_release(pool, c);

    int open;
    db_pool_stats(pool, &open, NULL, NULL);
    ck_assert_int_eq(open, 0);
    ck_assert_int_eq(query_i64("SELECT count(*) FROM t"), 0);
    arena_free(a);
}
END_TEST

/* The value of one series in the rendered registry (-1 if absent). */
static double metric(const char *series)
{
    char *text = metrics_render(NULL);
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", series);
    const char *p = strstr(text, needle);
    double v = p ? strtod(p + strlen(needle), NULL) : -1;
    free(text);
    return v;
}

START_TEST(test_pool_ping_answers_and_metrics_show_the_pool)
{
    err_t err = ERR_INIT;
    ck_assert_int_eq(db_pool_ping(pool, &err), 0);
    double before = metric("db_query_duration_seconds_count");
    txn_ok("SELECT 1");
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 1000, &err);
    ck_assert_ptr_nonnull(db_exec(c, a, "SELECT 1", 0, NULL, &err));
    ck_assert_double_eq(metric("db_pool_connections{state=\"in_use\"}"), 1);
    db_pool_release(pool, c);
    arena_free(a);

    ck_assert_double_eq(metric("db_query_duration_seconds_count") - (before > 0 ? before : 0), 2);
    ck_assert_double_eq(metric("db_pool_connections{state=\"open\"}"), 1);
    ck_assert_double_eq(metric("db_pool_connections{state=\"in_use\"}"), 0);
    ck_assert_double_eq(metric("db_pool_size"), 4);
}
END_TEST

/* ---- transactions ---- */

START_TEST(test_txn_commits_when_fn_succeeds)
{
    txn_ok("CREATE TABLE t (id int PRIMARY KEY)");
    txn_ok("INSERT INTO t VALUES (1)");
    ck_assert_int_eq(query_i64("SELECT count(*) FROM t"), 1);
}
END_TEST

static int fn_insert_then_fail(db_conn_t *tx, void *ud, err_t *err)
{
    arena_t *a = arena_new(0);
    ck_assert_ptr_nonnull(db_exec(tx, a, "INSERT INTO t VALUES (1)", 0, NULL, err));
    arena_free(a);
    return err_set(err, ERR_NOT_FOUND, "product not found");
}

START_TEST(test_txn_rolls_back_and_keeps_fn_error_when_fn_fails)
{
    txn_ok("CREATE TABLE t (id int PRIMARY KEY)");
    err_t err = ERR_INIT;
    ck_assert_int_eq(db_txn(pool, fn_insert_then_fail, NULL, &err), ERR_NOT_FOUND);
    ck_assert_str_eq(err.msg, "product not found");
    ck_assert_int_eq(query_i64("SELECT count(*) FROM t"), 0);
}
END_TEST

static int fn_ignore_failure(db_conn_t *tx, void *ud, err_t *err)
{
    arena_t *a = arena_new(0);
    ck_assert_ptr_nonnull(db_exec(tx, a, "INSERT INTO t VALUES (2)", 0, NULL, err));
    ck_assert_ptr_null(db_exec(tx, a, "INSERT INTO t VALUES (1)", 0, NULL, err));
    arena_free(a);
    return 0; /* a bug: the failure above is ignored */
}

START_TEST(test_txn_does_not_report_success_when_fn_ignores_a_failed_statement)
{
    txn_ok("CREATE TABLE t (id int PRIMARY KEY)");
    txn_ok("INSERT INTO t VALUES (1)");
    err_t err = ERR_INIT;
    ck_assert_int_eq(db_txn(pool, fn_ignore_failure, NULL, &err), ERR_CONFLICT);
    ck_assert_int_eq(query_i64("SELECT count(*) FROM t WHERE id = 2"), 0);
}
END_TEST

static int fn_always_aborted(db_conn_t *tx, void *ud, err_t *err)
{
    (*(int *)ud)++;
    return err_set(err, ERR_ABORTED, "conflict");
}

START_TEST(test_txn_gives_up_after_db_txn_retries)
{
    err_t err = ERR_INIT;
    int calls = 0;
    int64_t t0 = tdb_ms();
    ck_assert_int_eq(db_txn(pool, fn_always_aborted, &calls, &err), ERR_ABORTED);
    ck_assert_int_eq(calls, DB_TXN_RETRIES + 1);
    /* Backoff 1..2 + 2..4 + 4..8 + 8..16 + 16..32 ms: bounded, but real. */
    int64_t took = tdb_ms() - t0;
    ck_assert_msg(took >= 30 && took < 2000, "took %lld ms", (long long)took);
}
END_TEST

/* Two transactions that each read what the other writes. Both wait at a barrier on
 * their first attempt so that the conflict happens every time. */
typedef struct race {
    pthread_barrier_t barrier;
    int attempts; /* all threads, atomically */
    bool serializable;
    const char *stmt[2][2]; /* per racer: before and after the barrier */
} race_t;

typedef struct racer {
    race_t *race;
    int idx, attempt;
    err_t err;
    int rc;
} racer_t;

static int fn_race(db_conn_t *tx, void *ud, err_t *err)
{
    racer_t *r = ud;
    __atomic_add_fetch(&r->race->attempts, 1, __ATOMIC_SEQ_CST);
    arena_t *a = arena_new(0);
    int rc = 0;
    if (r->race->serializable &&
        !db_exec(tx, a, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0, NULL, err))
        rc = err->code;
    if (rc == 0 && !db_exec(tx, a, r->race->stmt[r->idx][0], 0, NULL, err))
        rc = err->code;
    if (r->attempt++ == 0)
        pthread_barrier_wait(&r->race->barrier);
    if (rc == 0 && !db_exec(tx, a, r->race->stmt[r->idx][1], 0, NULL, err))
        rc = err->code;
    arena_free(a);
    return rc;
}

static void *racer_main(void *arg)
{
    racer_t *r = arg;
    r->rc = db_txn(pool, fn_race, r, &r->err);
    return NULL;
}

static void run_race(race_t *race)
{
    pthread_barrier_init(&race->barrier, NULL, 2);
    racer_t r[2] = {{.race = race, .idx = 0}, {.race = race, .idx = 1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, racer_main, &r[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&race->barrier);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(r[i].rc == 0, "racer %d: %s", i, r[i].err.msg);
    ck_assert_int_ge(race->attempts, 3); /* one of them ran again */
}

START_TEST(test_txn_retries_a_serialization_failure_until_both_commit)
{
    txn_ok("CREATE TABLE t (v int NOT NULL)");
    const char *read = "SELECT coalesce(sum(v), 0) FROM t";
    const char *write = "INSERT INTO t SELECT coalesce(sum(v), 0) + 1 FROM t";
    race_t race = {.serializable = true, .stmt = {{read, write}, {read, write}}};
    run_race(&race);
    /* Serial outcome only: the retried one saw the other's row (1 then 2, never 1, 1). */
    ck_assert_int_eq(query_i64("SELECT count(*) FROM t"), 2);
    ck_assert_int_eq(query_i64("SELECT max(v) FROM t"), 2);
}
END_TEST

START_TEST(test_txn_retries_a_deadlock_victim_until_both_commit)
{
    txn_ok("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)");
    txn_ok("INSERT INTO t VALUES (1, 0), (2, 0)");
    const char *one = "UPDATE t SET v = v + 1 WHERE id = 1";
    const char *two = "UPDATE t SET v = v + 1 WHERE id = 2";
    race_t race = {.stmt = {{one, two}, {two, one}}}; /* opposite lock order */
    run_race(&race);
    ck_assert_int_eq(query_i64("SELECT sum(v) FROM t"), 4);
}
END_TEST

/* ---- errors, parameters, results ---- */

static void setup_errors_table(void)
{
    txn_ok("CREATE TABLE parent (id int PRIMARY KEY)");
    txn_ok("CREATE TABLE acct (id int PRIMARY KEY, email text NOT NULL,"
           " balance int NOT NULL CONSTRAINT acct_balance_nonneg CHECK (balance >= 0),"
           " parent_id int REFERENCES parent (id),"
           " CONSTRAINT acct_email_key UNIQUE (email))");
}

static int insert_acct(const char *id, const char *email, const char *balance, const char *parent,
                       err_t *err)
{
    const char *params[] = {id, email, balance, parent};
    sql_ud_t u = {"INSERT INTO acct (id, email, balance, parent_id) VALUES ($1, $2, $3, $4)", 4,
                  params};
    return db_txn(pool, fn_sql, &u, err);
}

START_TEST(test_unique_violation_is_conflict_naming_the_constraint_not_the_value)
{
    setup_errors_table();
    err_t err = ERR_INIT;
    ck_assert_int_eq(insert_acct("1", "secret@example.com", "0", NULL, &err), 0);
    ck_assert_int_eq(insert_acct("2", "secret@example.com", "0", NULL, &err), ERR_CONFLICT);
    ck_assert_msg(db_err_constraint(&err, "acct_email_key"), "%s", err.msg);
    ck_assert(!db_err_constraint(&err, "acct_pkey"));
    ck_assert_ptr_nonnull(strstr(err.msg, "23505"));
    ck_assert_msg(!strstr(err.msg, "secret"), "value leaked: %s", err.msg);

    ck_assert_int_eq(insert_acct("1", "other@example.com", "0", NULL, &err), ERR_CONFLICT);
    ck_assert_msg(db_err_constraint(&err, "acct_pkey"), "%s", err.msg);
}
END_TEST

START_TEST(test_check_and_foreign_key_violations_are_preconditions)
{
    setup_errors_table();
    err_t err = ERR_INIT;
    ck_assert_int_eq(insert_acct("1", "a@example.com", "-5", NULL, &err), ERR_PRECONDITION);
    ck_assert_msg(db_err_constraint(&err, "acct_balance_nonneg"), "%s", err.msg);
    ck_assert_ptr_nonnull(strstr(err.msg, "23514"));

    ck_assert_int_eq(insert_acct("1", "a@example.com", "5", "42", &err), ERR_PRECONDITION);
    ck_assert_msg(db_err_constraint(&err, "acct_parent_id_fkey"), "%s", err.msg);
    ck_assert_ptr_nonnull(strstr(err.msg, "23503"));
}
END_TEST

START_TEST(test_bad_syntax_is_internal_and_the_message_carries_no_sql)
{
    err_t err = ERR_INIT;
    ck_assert_int_eq(txn_sql("SELEC secret_column FROM secret_table", &err), ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "42601"));
    ck_assert_msg(!strstr(err.msg, "secret") && !strstr(err.msg, "SELEC"), "sql leaked: %s",
                  err.msg);

    ck_assert_int_eq(txn_sql("SELECT 1 FROM secret_table", &err), ERR_INTERNAL);
    ck_assert_msg(!strstr(err.msg, "secret"), "sql leaked: %s", err.msg);
}
END_TEST

START_TEST(test_bad_input_is_invalid_and_the_message_carries_no_value)
{
    err_t err = ERR_INIT;
    /* The value holds quotes too, so a naive quote-pairing redaction would leak it. */
    const char *params[] = {"secret\"-1\" and \"more secret"};
    sql_ud_t u = {"SELECT $1::int", 1, params};
    ck_assert_int_eq(db_txn(pool, fn_sql, &u, &err), ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "22P02"));
    ck_assert_msg(!strstr(err.msg, "secret") && !strstr(err.msg, "-1"), "value leaked: %s",
                  err.msg);
}
END_TEST

static int fn_slow(db_conn_t *tx, void *ud, err_t *err)
{
    arena_t *a = arena_new(0);
    int rc = 0;
    if (!db_exec(tx, a, "SET LOCAL statement_timeout = '50ms'", 0, NULL, err) ||
        !db_exec(tx, a, "SELECT pg_sleep(5)", 0, NULL, err))
        rc = err->code;
    arena_free(a);
    return rc;
}

START_TEST(test_statement_timeout_is_timeout)
{
    err_t err = ERR_INIT;
    int64_t t0 = tdb_ms();
    ck_assert_int_eq(db_txn(pool, fn_slow, NULL, &err), ERR_TIMEOUT);
    ck_assert_int_lt(tdb_ms() - t0, 3000);
    ck_assert_ptr_nonnull(strstr(err.msg, "57014"));
    txn_ok("SELECT 1"); /* SET LOCAL did not outlive the transaction */
    ck_assert_int_eq(query_i64("SELECT count(*) FROM pg_settings WHERE name = "
                               "'statement_timeout' AND setting = '0'"),
                     1);
}
END_TEST

START_TEST(test_parameters_with_sql_metacharacters_are_stored_literally)
{
    static const char *const values[] = {
        "'; DROP TABLE t; --", "\\x00\\'",         "$1 $2 ?", "\"quoted\" 'single'",
        "ünïcödé ✓",           "line\nbreak\ttab", "%s%n%d",  "",
    };
    size_t n = sizeof(values) / sizeof(values[0]);
    txn_ok("CREATE TABLE t (id int PRIMARY KEY, v text)");
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 1000, &err);
    for (size_t i = 0; i < n; i++) {
        char id[8];
        snprintf(id, sizeof(id), "%zu", i);
        ck_assert_msg(db_execf(c, a, &err, "INSERT INTO t VALUES ($1, $2)", 2, id, values[i]), "%s",
                      err.msg);
    }
    ck_assert_ptr_nonnull(db_execf(c, a, &err, "INSERT INTO t VALUES (99, $1)", 1, NULL));
    db_res_t *r = db_exec(c, a, "SELECT id, v FROM t ORDER BY id", 0, NULL, &err);
    ck_assert_int_eq(db_res_rows(r), (int)n + 1);
    for (size_t i = 0; i < n; i++) {
        ck_assert(!db_res_null(r, (int)i, 1));
        ck_assert_str_eq(db_res_str(r, (int)i, 1), values[i]);
    }
    ck_assert(db_res_null(r, (int)n, 1));
    ck_assert_str_eq(db_res_str(r, (int)n, 1), "");
    db_pool_release(pool, c);
    arena_free(a);
}
END_TEST

START_TEST(test_bytea_round_trips_every_byte_value)
{
    uint8_t data[512];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + (i >> 8));
    txn_ok("CREATE TABLE t (id int PRIMARY KEY, b bytea)");
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 1000, &err);
    const char *p = db_bytea_param(a, data, sizeof(data));
    ck_assert_ptr_nonnull(db_execf(c, a, &err, "INSERT INTO t VALUES (1, $1)", 1, p));
    ck_assert_ptr_nonnull(
        db_execf(c, a, &err, "INSERT INTO t VALUES (2, $1)", 1, db_bytea_param(a, "", 0)));
    ck_assert_ptr_nonnull(db_execf(c, a, &err, "INSERT INTO t VALUES (3, NULL)", 0));

    db_res_t *r = db_exec(c, a, "SELECT b, length(b) FROM t ORDER BY id", 0, NULL, &err);
    size_t len = 99;
    const uint8_t *got = db_res_bytea(r, a, 0, 0, &len);
    ck_assert_uint_eq(len, sizeof(data));
    ck_assert_int_eq(db_res_i64(r, 0, 1), (int64_t)sizeof(data));
    ck_assert_mem_eq(got, data, sizeof(data));
    got = db_res_bytea(r, a, 1, 0, &len);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_null(db_res_bytea(r, a, 2, 0, &len));
    ck_assert_uint_eq(len, 0);
    db_pool_release(pool, c);
    arena_free(a);
}
END_TEST

START_TEST(test_result_accessors_read_types_and_affected_rows)
{
    txn_ok("CREATE TABLE t (id int PRIMARY KEY, n bigint, ok bool)");
    txn_ok("INSERT INTO t VALUES (1, 9007199254740993, true), (2, -7, false), (3, NULL, NULL)");
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 1000, &err);
    db_res_t *r = db_exec(c, a, "SELECT n, ok FROM t ORDER BY id", 0, NULL, &err);
    ck_assert_int_eq(db_res_rows(r), 3);
    ck_assert_int_eq(db_res_i64(r, 0, 0), INT64_C(9007199254740993));
    ck_assert(db_res_bool(r, 0, 1));
    ck_assert_int_eq(db_res_i64(r, 1, 0), -7);
    ck_assert(!db_res_bool(r, 1, 1));
    ck_assert(db_res_null(r, 2, 0));
    ck_assert_int_eq(db_res_i64(r, 2, 0), 0);
    ck_assert(!db_res_bool(r, 2, 1));

    r = db_execf(c, a, &err, "UPDATE t SET ok = true WHERE id >= $1", 1, "2");
    ck_assert_int_eq(db_res_affected(r), 2);
    ck_assert_int_eq(db_res_rows(r), 0);
    r = db_execf(c, a, &err, "DELETE FROM t WHERE id = $1", 1, "42");
    ck_assert_int_eq(db_res_affected(r), 0);

    ck_assert_ptr_null(db_exec(c, a, "SELECT $1::int", -1, NULL, &err));
    ck_assert_int_eq(err.code, ERR_INVALID);
    db_pool_release(pool, c);
    arena_free(a);
}
END_TEST

START_TEST(test_advisory_lock_is_held_by_one_session_at_a_time)
{
    err_t err = ERR_INIT;
    int64_t key = (int64_t)tdb_ms() * 1000 + (getpid() & 0x3ff); /* unique per run */
    db_conn_t *a = db_pool_acquire(pool, 1000, &err);
    db_conn_t *b = db_pool_acquire(pool, 1000, &err);
    bool got = false;
    ck_assert_int_eq(db_advisory_try_lock(a, key, &got, &err), 0);
    ck_assert(got);
    ck_assert_int_eq(db_advisory_try_lock(b, key, &got, &err), 0);
    ck_assert(!got);
    ck_assert_int_eq(db_advisory_unlock(a, key, &err), 0);
    ck_assert_int_eq(db_advisory_try_lock(b, key, &got, &err), 0);
    ck_assert(got);
    ck_assert_int_eq(db_advisory_unlock(a, key, &err), ERR_PRECONDITION);
    ck_assert_int_eq(db_advisory_unlock(b, key, &err), 0);
    db_pool_release(pool, a);
    db_pool_release(pool, b);
}
END_TEST

/* Each test gets a schema and a pool of its own; the run bracket drops what is left. */
static TCase *db_case(Suite *s, const char *name)
{
    TCase *tc = check_case(s, name, 30);
    tcase_add_unchecked_fixture(tc, tdb_run_begin, tdb_run_end);
    tcase_add_checked_fixture(tc, setup, teardown);
    return tc;
}

static Suite *db_suite(void)
{
    Suite *s = suite_create("db");
    TCase *pool_tc = db_case(s, "pool");
    tcase_add_test(pool_tc, test_pool_reuses_a_released_connection);
    tcase_add_test(pool_tc, test_pool_acquire_fails_exhausted_after_its_timeout);
    tcase_add_test(pool_tc, test_pool_acquire_wakes_when_a_connection_is_released);
    tcase_add_test(pool_tc, test_pool_reports_unavailable_when_postgres_is_unreachable);
    tcase_add_test(pool_tc, test_txn_replaces_an_idle_connection_whose_backend_was_killed);
    tcase_add_test(pool_tc,
                   test_txn_reports_unavailable_when_the_backend_dies_midway_then_recovers);
    tcase_add_test(pool_tc,
                   test_a_write_refused_as_read_only_is_unavailable_and_drops_the_connection);
    tcase_add_test(pool_tc, test_txn_runs_again_on_a_fresh_connection_after_a_read_only_refusal);
    tcase_add_test(pool_tc, test_pool_follows_a_multi_host_url_to_the_server_that_takes_writes);
    tcase_add_test(pool_tc, test_release_closes_a_connection_left_inside_a_transaction);
    tcase_add_test(pool_tc, test_pool_ping_answers_and_metrics_show_the_pool);

    TCase *txn_tc = db_case(s, "txn");
    tcase_add_test(txn_tc, test_txn_commits_when_fn_succeeds);
    tcase_add_test(txn_tc, test_txn_rolls_back_and_keeps_fn_error_when_fn_fails);
    tcase_add_test(txn_tc, test_txn_does_not_report_success_when_fn_ignores_a_failed_statement);
    tcase_add_test(txn_tc, test_txn_gives_up_after_db_txn_retries);
    tcase_add_test(txn_tc, test_txn_retries_a_serialization_failure_until_both_commit);
    tcase_add_test(txn_tc, test_txn_retries_a_deadlock_victim_until_both_commit);

    TCase *q_tc = db_case(s, "query");
    tcase_add_test(q_tc, test_unique_violation_is_conflict_naming_the_constraint_not_the_value);
    tcase_add_test(q_tc, test_check_and_foreign_key_violations_are_preconditions);
    tcase_add_test(q_tc, test_bad_syntax_is_internal_and_the_message_carries_no_sql);
    tcase_add_test(q_tc, test_bad_input_is_invalid_and_the_message_carries_no_value);
    tcase_add_test(q_tc, test_statement_timeout_is_timeout);
    tcase_add_test(q_tc, test_parameters_with_sql_metacharacters_are_stored_literally);
    tcase_add_test(q_tc, test_bytea_round_trips_every_byte_value);
    tcase_add_test(q_tc, test_result_accessors_read_types_and_affected_rows);
    tcase_add_test(q_tc, test_advisory_lock_is_held_by_one_session_at_a_time);
    return s;
}

int main(void)
{
    return check_run(db_suite(), CK_FORK_GETENV);
}
