/*
 * migrations/order against the real PostgreSQL, in a schema of its own (test_db_support):
 * 0002 (one timeline row per step) applied to a database that 0001 created and that
 * holds the duplicate timeline rows earlier versions appended. Each (order, step) keeps
 * its first row, every order's seq is renumbered 1..n in the old order, orders without
 * duplicates are untouched, and the database then refuses a second row for a step.
 * (order-svc's inserts skip such a row: test_order_saga and test_e2e_saga.)
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_util.h"
#include "common/db.h"
#include "test_db_support.h"

extern const db_migration_set_t order_migrations;

#define ORDER_A "0190a0a0-0000-7000-8000-00000000000a"
#define ORDER_B "0190a0a0-0000-7000-8000-00000000000b"
#define ORDER_C "0190a0a0-0000-7000-8000-00000000000c"

static char schema[TDB_NAME_MAX], url[TDB_URL_MAX];
static db_pool_t *pool;
static PGconn *pg;

static void setup(void)
{
    tdb_schema_create(schema, url);
    err_t err = ERR_INIT;
    pool = db_pool_new(url, 1, &err);
    ck_assert_msg(pool, "%s", err.msg);
    pg = tdb_pg(url);
}

static void teardown(void)
{
    PQfinish(pg);
    db_pool_free(pool);
    tdb_schema_drop(schema);
}

static void migrate(size_t n)
{
    db_migration_set_t set = {
        .component = "order", .migrations = order_migrations.migrations, .n = n};
    err_t err = ERR_INIT;
    ck_assert_msg(db_migrate(pool, &set, 1, 5000, &err) == 0, "%s", err.msg);
}

/* The order's timeline as "seq:step:detail" lines in seq order. */
static void timeline(const char *order_id, char *out, size_t cap)
{
    const char *params[] = {order_id};
    PGresult *r = PQexecParams(pg,
                               "SELECT string_agg(seq || ':' || step || ':' || detail, E'\\n'"
                               " ORDER BY seq) FROM order_timeline WHERE order_id = $1",
                               1, NULL, params, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

static void expect_timeline(const char *order_id, const char *want)
{
    char got[2048];
    timeline(order_id, got, sizeof(got));
    ck_assert_str_eq(got, want);
}

START_TEST(test_0002_keeps_the_first_row_of_each_step_and_renumbers_densely)
{
    migrate(1);
    tdb_sql(pg, "INSERT INTO orders (id, user_id, status, cancel_reason, total_cents, currency)"
                " VALUES ('" ORDER_A "', '" ORDER_A "', 'CONFIRMED', NULL, 500, 'USD'),"
                " ('" ORDER_B "', '" ORDER_B "', 'PENDING', NULL, 500, 'USD'),"
                " ('" ORDER_C "', '" ORDER_C "', 'CANCELLED', 'USER_REQUESTED', 500, 'USD')");
    /* A: a replayed PaymentCompleted noted as ignored after the confirmation. C: the
     * compensations replayed, interleaved. B: nothing twice. */
    tdb_sql(pg, "INSERT INTO order_timeline (order_id, seq, step, status, detail) VALUES"
                " ('" ORDER_A "', 1, 'order_created', 'PENDING', ''),"
                " ('" ORDER_A "', 2, 'stock_reserved', 'PENDING', ''),"
                " ('" ORDER_A "', 3, 'payment_completed', 'CONFIRMED', 'charged'),"
                " ('" ORDER_A "', 4, 'order_confirmed', 'CONFIRMED', ''),"
                " ('" ORDER_A "', 5, 'payment_completed', 'CONFIRMED', 'charged; ignored'),"
                " ('" ORDER_A "', 6, 'stock_committed', 'CONFIRMED', ''),"
                " ('" ORDER_B "', 1, 'order_created', 'PENDING', ''),"
                " ('" ORDER_B "', 2, 'stock_reserved', 'PENDING', ''),"
                " ('" ORDER_C "', 1, 'order_created', 'PENDING', ''),"
                " ('" ORDER_C "', 2, 'order_cancelled', 'CANCELLED', ''),"
                " ('" ORDER_C "', 3, 'stock_released', 'CANCELLED', 'first'),"
                " ('" ORDER_C "', 4, 'payment_refunded', 'CANCELLED', 'first'),"
                " ('" ORDER_C "', 5, 'stock_released', 'CANCELLED', 'again'),"
                " ('" ORDER_C "', 6, 'payment_refunded', 'CANCELLED', 'again'),"
                " ('" ORDER_C "', 7, 'payment_refunded', 'CANCELLED', 'and again')");

    migrate(order_migrations.n);
    expect_timeline(ORDER_A, "1:order_created:\n"
                             "2:stock_reserved:\n"
                             "3:payment_completed:charged\n"
                             "4:order_confirmed:\n"
                             "5:stock_committed:");
    expect_timeline(ORDER_B, "1:order_created:\n"
                             "2:stock_reserved:");
    expect_timeline(ORDER_C, "1:order_created:\n"
                             "2:order_cancelled:\n"
                             "3:stock_released:first\n"
                             "4:payment_refunded:first");

    /* The database refuses a second row for a step... */
    PGresult *r = PQexec(pg, "INSERT INTO order_timeline (order_id, seq, step, status)"
                             " VALUES ('" ORDER_C "', 5, 'stock_released', 'CANCELLED')");
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23505");
    ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME), "order_timeline_step_key");
    PQclear(r);
    /* ...and still takes a new step. */
    tdb_sql(pg, "INSERT INTO order_timeline (order_id, seq, step, status)"
                " VALUES ('" ORDER_B "', 3, 'payment_completed', 'PENDING')");
    ck_assert_int_eq(tdb_i64(pg, "SELECT count(*) FROM order_timeline"), 12);
}
END_TEST

START_TEST(test_0002_on_an_empty_database)
{
    migrate(order_migrations.n);
    ck_assert_int_eq(tdb_i64(pg, "SELECT count(*) FROM pg_constraint"
                                 " WHERE conname = 'order_timeline_step_key'"
                                 " AND connamespace = current_schema()::regnamespace"),
                     1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("order_migrate");
    TCase *tc = check_case(s, "migrations", 60);
    tcase_add_unchecked_fixture(tc, tdb_run_begin, tdb_run_end);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_0002_keeps_the_first_row_of_each_step_and_renumbers_densely);
    tcase_add_test(tc, test_0002_on_an_empty_database);
    return check_run(s, CK_FORK_GETENV);
}
