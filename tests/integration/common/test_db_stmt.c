/*
 * What the db layer does to save round trips, against the test stack's PostgreSQL.
 * Prepared statements: a statement is prepared once per connection and executed by
 * name after that, a connection prepares at most DB_STMT_MAX statements (the rest run
 * unnamed), and the statements survive what ends a session — a killed backend, a
 * PostgreSQL restart, a DEALLOCATE behind the pool's back — without an error reaching
 * a transaction's caller. The transaction pipeline: BEGIN travels with the first
 * statement (which may still set the isolation level), statements sent without
 * waiting (db_execf_nowait) commit with the transaction, and when one fails, the next
 * statement or the commit fails with its error and nothing of the transaction stays.
 * Each test works in a schema of its own (test_db_support.h).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/arena.h"
#include "common/db.h"
#include "test_db_support.h"

#define STMT_LIMIT 128 /* DB_STMT_MAX in common/src/db_internal.h */

static char schema[TDB_NAME_MAX], url[TDB_URL_MAX];
static db_pool_t *pool;

static void setup(void)
{
    tdb_schema_create(schema, url);
    err_t err = ERR_INIT;
    pool = db_pool_new(url, 1, &err); /* one connection: every lease is the same session */
    ck_assert_msg(pool, "%s", err.msg);
}

static void teardown(void)
{
    db_pool_free(pool);
    tdb_schema_drop(schema);
}

/* One integer from a one-row statement on a fresh lease. */
static int64_t one_i64(const char *sql, const char *param)
{
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 2000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_execf(c, a, &err, sql, param ? 1 : 0, param);
    ck_assert_msg(r && db_res_rows(r) == 1, "%s: %s", sql, err.msg);
    int64_t v = db_res_i64(r, 0, 0);
    db_pool_release(pool, c);
    arena_free(a);
    return v;
}

static const char COUNT_SQL[] = "SELECT count(*) FROM generate_series(1, $1::int)";

/* How often this session ran COUNT_SQL as a prepared statement (-1: not prepared). */
static int64_t count_sql_executions(void)
{
    return one_i64("SELECT coalesce(sum(generic_plans + custom_plans), -1)::bigint"
                   " FROM pg_prepared_statements WHERE statement = $1",
                   COUNT_SQL);
}

typedef struct count_ud {
    int64_t got;
    int64_t backend;
} count_ud_t;

static int fn_count(db_conn_t *tx, void *ud, err_t *err)
{
    count_ud_t *u = ud;
    arena_t *a = arena_new(0);
    db_res_t *r = db_execf(tx, a, err, COUNT_SQL, 1, "7");
    db_res_t *pid = r ? db_execf(tx, a, err, "SELECT pg_backend_pid()", 0) : NULL;
    if (pid) {
        u->got = db_res_i64(r, 0, 0);
        u->backend = db_res_i64(pid, 0, 0);
    }
    arena_free(a);
    return pid ? 0 : err->code;
}

static count_ud_t txn_count(void)
{
    count_ud_t u = {0};
    err_t err = ERR_INIT;
    ck_assert_msg(db_txn(pool, fn_count, &u, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(u.got, 7);
    return u;
}

START_TEST(test_a_statement_is_prepared_once_per_connection_and_run_by_name)
{
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(one_i64(COUNT_SQL, "5"), 5);
    ck_assert_int_eq(count_sql_executions(), 3);
    txn_count();
    ck_assert_int_eq(count_sql_executions(), 4);
}
END_TEST

START_TEST(test_past_the_limit_statements_run_unnamed_and_still_work)
{
    char sql[64];
    for (int i = 0; i < STMT_LIMIT + 20; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d + $1::int", i);
        ck_assert_int_eq(one_i64(sql, "1"), i + 1);
    }
    ck_assert_int_eq(one_i64("SELECT count(*) FROM pg_prepared_statements", NULL), STMT_LIMIT);
}
END_TEST

static void stack(const char *command)
{
    const char *profile = getenv("STACK_PROFILE");
    ck_assert_msg(profile && strcmp(profile, "test") == 0,
                  "STACK_PROFILE=test is required to restart the test stack's PostgreSQL");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s %s postgres/product >/dev/null 2>&1", STACK_SH, command);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

START_TEST(test_prepared_statements_survive_a_postgresql_restart)
{
    count_ud_t before = txn_count();
    ck_assert_int_eq(count_sql_executions(), 1);
    stack("kill");
    stack("start");
    /* The pool notices the dead session at the next lease, reconnects, and the new
     * session prepares the statement again on first use: no error reaches us. */
    count_ud_t after = txn_count();
    ck_assert_int_ne(before.backend, after.backend);
    ck_assert_int_eq(one_i64(COUNT_SQL, "7"), 7);
    ck_assert_int_eq(count_sql_executions(), 2);
}
END_TEST

START_TEST(test_a_statement_dropped_behind_the_pool_reruns_the_transaction)
{
    count_ud_t before = txn_count();
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 2000, &err);
    ck_assert_ptr_nonnull(db_execf(c, a, &err, "DEALLOCATE ALL", 0));
    db_pool_release(pool, c);
    arena_free(a);
    /* The session lost COUNT_SQL: that connection is replaced and the transaction runs
     * again on a fresh one. */
    count_ud_t after = txn_count();
    ck_assert_int_ne(before.backend, after.backend);
}
END_TEST

/* ---- the transaction pipeline ---- */

typedef struct rows_ud {
    int first, n;     /* ids first .. first + n - 1, sent without waiting */
    bool then_select; /* then a statement that waits */
    int64_t seen;     /* what that statement saw */
    err_t select_err; /* its error */
} rows_ud_t;

static int fn_rows(db_conn_t *tx, void *ud, err_t *err)
{
    rows_ud_t *u = ud;
    arena_t *a = arena_new(0);
    int rc = 0;
    for (int i = 0; i < u->n && rc == 0; i++)
        rc = db_execf_nowait(tx, a, err, "INSERT INTO t (id) VALUES ($1::int)", 1,
                             arena_sprintf(a, "%d", u->first + i));
    if (rc == 0 && u->then_select) {
        db_res_t *r = db_execf(tx, a, &u->select_err, "SELECT count(*) FROM t", 0);
        u->seen = r ? db_res_i64(r, 0, 0) : -1;
        if (!r)
            rc = err_set(err, u->select_err.code, "%s", u->select_err.msg);
    }
    arena_free(a);
    return rc;
}

static void create_table_t(void)
{
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    db_conn_t *c = db_pool_acquire(pool, 2000, &err);
    ck_assert_ptr_nonnull(db_execf(c, a, &err, "CREATE TABLE t (id int PRIMARY KEY)", 0));
    db_pool_release(pool, c);
    arena_free(a);
}

START_TEST(test_statements_sent_without_waiting_commit_with_the_transaction)
{
    create_table_t();
    /* More than the pipeline holds at once: it is flushed on the way. */
    rows_ud_t u = {.first = 1, .n = 100, .then_select = true};
    err_t err = ERR_INIT;
    ck_assert_msg(db_txn(pool, fn_rows, &u, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(u.seen, 100); /* the waiting statement sees all that went before */
    ck_assert_int_eq(one_i64("SELECT count(*) FROM t", NULL), 100);
}
END_TEST

START_TEST(test_a_failed_statement_sent_without_waiting_fails_the_next_one)
{
    create_table_t();
    rows_ud_t first = {.first = 1, .n = 1};
    err_t err = ERR_INIT;
    ck_assert_int_eq(db_txn(pool, fn_rows, &first, &err), 0);
    /* ids 0, 1 (taken) and 2 without waiting, then a SELECT: it reports the duplicate. */
    rows_ud_t dup = {.first = 0, .n = 3, .then_select = true};
    ck_assert_int_eq(db_txn(pool, fn_rows, &dup, &err), ERR_CONFLICT);
    ck_assert_int_eq(dup.select_err.code, ERR_CONFLICT);
    ck_assert(db_err_constraint(&dup.select_err, "t_pkey"));
    ck_assert_int_eq(one_i64("SELECT count(*) FROM t", NULL), 1); /* id 0 rolled back */
}
END_TEST

START_TEST(test_a_failed_statement_sent_without_waiting_fails_the_commit)
{
    create_table_t();
    rows_ud_t first = {.first = 1, .n = 1};
    err_t err = ERR_INIT;
    ck_assert_int_eq(db_txn(pool, fn_rows, &first, &err), 0);
    int64_t backend = one_i64("SELECT pg_backend_pid()", NULL);
    rows_ud_t dup = {.first = 0, .n = 3}; /* 0, 1 (taken), 2; nothing waits */
    ck_assert_int_eq(db_txn(pool, fn_rows, &dup, &err), ERR_CONFLICT);
    ck_assert(db_err_constraint(&err, "t_pkey"));
    ck_assert_int_eq(one_i64("SELECT count(*) FROM t", NULL), 1);
    /* Rolled back, not thrown away: the same session serves the next lease. */
    ck_assert_int_eq(one_i64("SELECT pg_backend_pid()", NULL), backend);
}
END_TEST

static int fn_isolation(db_conn_t *tx, void *ud, err_t *err)
{
    arena_t *a = arena_new(0);
    db_res_t *r = db_execf(tx, a, err, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0)
                      ? db_execf(tx, a, err, "SHOW transaction_isolation", 0)
                      : NULL;
    if (r)
        snprintf(ud, 32, "%s", db_res_str(r, 0, 0));
    arena_free(a);
    return r ? 0 : err->code;
}

START_TEST(test_the_first_statement_runs_inside_the_transaction)
{
    char level[32] = "";
    err_t err = ERR_INIT;
    ck_assert_msg(db_txn(pool, fn_isolation, level, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(level, "serializable");
}
END_TEST

static Suite *db_stmt_suite(void)
{
    Suite *s = suite_create("db_stmt");
    TCase *tc = check_case(s, "prepared", 60);
    tcase_add_unchecked_fixture(tc, tdb_run_begin, tdb_run_end);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_statement_is_prepared_once_per_connection_and_run_by_name);
    tcase_add_test(tc, test_past_the_limit_statements_run_unnamed_and_still_work);
    tcase_add_test(tc, test_a_statement_dropped_behind_the_pool_reruns_the_transaction);
    tcase_add_test(tc, test_prepared_statements_survive_a_postgresql_restart);
    TCase *pipe = check_case(s, "pipeline", 60);
    tcase_add_unchecked_fixture(pipe, tdb_run_begin, tdb_run_end);
    tcase_add_checked_fixture(pipe, setup, teardown);
    tcase_add_test(pipe, test_statements_sent_without_waiting_commit_with_the_transaction);
    tcase_add_test(pipe, test_a_failed_statement_sent_without_waiting_fails_the_next_one);
    tcase_add_test(pipe, test_a_failed_statement_sent_without_waiting_fails_the_commit);
    tcase_add_test(pipe, test_the_first_statement_runs_inside_the_transaction);
    return s;
}

int main(void)
{
    return check_run(db_stmt_suite(), CK_FORK_GETENV);
}
