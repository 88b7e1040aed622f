/*
 * db_migrate and cmake/Migrations.cmake against the real PostgreSQL. The fixture sets
 * under migrations_test/ are embedded into this binary at build time ("dbtest" and
 * "dbtest_bad"); every test runs them in a schema of its own, where schema_migrations
 * lands too, so runs never see each other's history.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/db.h"
#include "common/uuid.h"
#include "test_db_support.h"

extern const db_migration_set_t dbtest_migrations;
extern const db_migration_set_t dbtest_bad_migrations;

static char schema[TDB_NAME_MAX], url[TDB_URL_MAX];
static db_pool_t *pool;
static PGconn *pg; /* raw, inside the schema, for assertions */

static void setup(void)
{
    tdb_schema_create(schema, url);
    err_t err = ERR_INIT;
    pool = db_pool_new(url, 2, &err);
    ck_assert_msg(pool, "%s", err.msg);
    pg = tdb_pg(url);
}

static void teardown(void)
{
    PQfinish(pg);
    db_pool_free(pool);
    tdb_schema_drop(schema);
}

/* A fixture file as the generator embeds it: byte for byte, CRLF read as LF. */
static char *read_fixture(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f, "cannot open %s", path);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    ck_assert(n > 0 && feof(f));
    fclose(f);
    char *o = buf;
    for (size_t i = 0; i < n; i++)
        if (!(buf[i] == '\r' && buf[i + 1] == '\n'))
            *o++ = buf[i];
    *o = '\0';
    return buf;
}

static int64_t count(const char *sql)
{
    return tdb_i64(pg, sql);
}

static void migrate_ok(const db_migration_set_t *sets, size_t n)
{
    err_t err = ERR_INIT;
    int rc = db_migrate(pool, sets, n, 5000, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
}

START_TEST(test_embedded_set_holds_the_files_in_version_order_verbatim)
{
    static const int versions[] = {1, 2, 10};
    static const char *const names[] = {"0001_create_items", "0002_escapes",
                                        "0010_crlf_line_endings"};
    const db_migration_set_t *s = &dbtest_migrations;
    ck_assert_str_eq(s->component, "dbtest");
    ck_assert_uint_eq(s->n, 3);
    for (size_t i = 0; i < s->n; i++) {
        ck_assert_int_eq(s->migrations[i].version, versions[i]);
        ck_assert_str_eq(s->migrations[i].name, names[i]);
        char path[512];
        snprintf(path, sizeof(path), "%s/ok/%s.sql", TDB_FIXTURE_DIR, names[i]);
        char *text = read_fixture(path);
        ck_assert_str_eq(s->migrations[i].sql, text);
        free(text);
    }
    ck_assert_str_eq(dbtest_bad_migrations.component, "dbtest_bad");
    ck_assert_uint_eq(dbtest_bad_migrations.n, 3);
    ck_assert_str_eq(common_migrations.component, "common");
    ck_assert_uint_eq(common_migrations.n, 2);
    ck_assert_str_eq(common_migrations.migrations[0].name, "0001_outbox_inbox");
    ck_assert_str_eq(common_migrations.migrations[1].name, "0002_outbox_queue_vacuum");
}
END_TEST

START_TEST(test_migrate_applies_each_file_once_in_order_and_records_it)
{
    migrate_ok(&dbtest_migrations, 1);
    ck_assert_int_eq(count("SELECT count(*) FROM dbt_log"), 3);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations WHERE component = 'dbtest'"), 3);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations WHERE component = 'dbtest'"
                           " AND (version, name) IN ((1, '0001_create_items'),"
                           " (2, '0002_escapes'), (10, '0010_crlf_line_endings'))"),
                     3);
    ck_assert_int_eq(count("SELECT dbt_answer()"), 42);
    ck_assert_int_eq(count("SELECT count(note) FROM dbt_items"), 0); /* 0010 added it */

    PGresult *r = PQexec(pg, "SELECT label FROM dbt_items WHERE id = 1");
    ck_assert_int_eq(PQntuples(r), 1);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "back\\slash \"dq\" ?\?= ?\?/ tab\there ünïcödé ✓");
    PQclear(r);

    /* A second start finds nothing to do. */
    migrate_ok(&dbtest_migrations, 1);
    ck_assert_int_eq(count("SELECT count(*) FROM dbt_log"), 3);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations"), 3);
}
END_TEST

typedef struct instance {
    pthread_barrier_t *start;
    int rc;
    err_t err;
} instance_t;

static void *instance_main(void *arg)
{
    instance_t *in = arg;
    err_t err = ERR_INIT;
    db_pool_t *p = db_pool_new(url, 1, &err);
    pthread_barrier_wait(in->start);
    in->rc = db_migrate(p, &dbtest_migrations, 1, 10000, &in->err);
    db_pool_free(p);
    return NULL;
}

START_TEST(test_concurrent_instances_apply_each_migration_exactly_once)
{
    enum { N = 4 };
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    instance_t in[N] = {0};
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        in[i].start = &start;
        pthread_create(&th[i], NULL, instance_main, &in[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < N; i++)
        ck_assert_msg(in[i].rc == 0, "instance %d: %s", i, in[i].err.msg);
    ck_assert_int_eq(count("SELECT count(*) FROM dbt_log"), 3);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations"), 3);
}
END_TEST

START_TEST(test_failing_migration_rolls_back_alone_and_names_its_file)
{
    err_t err = ERR_INIT;
    ck_assert_int_eq(db_migrate(pool, &dbtest_bad_migrations, 1, 5000, &err), ERR_INTERNAL);
    ck_assert_msg(strstr(err.msg, "migration dbtest_bad/0002_broken failed: postgresql 42P01"),
                  "%s", err.msg);
    ck_assert_msg(!strstr(err.msg, "dbt_no_such_table"), "sql leaked: %s", err.msg);
    ck_assert_int_eq(count("SELECT (to_regclass('dbt_bad_ok') IS NOT NULL)::int"), 1);
    ck_assert_int_eq(count("SELECT (to_regclass('dbt_bad_half') IS NOT NULL)::int"), 0);
    ck_assert_int_eq(count("SELECT (to_regclass('dbt_bad_never') IS NOT NULL)::int"), 0);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations WHERE component = "
                           "'dbtest_bad' AND version = 1"),
                     1);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations"), 1);

    /* The next start fails the same way, at the same file. */
    ck_assert_int_eq(db_migrate(pool, &dbtest_bad_migrations, 1, 5000, &err), ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "0002_broken"));
}
END_TEST

static void record(const char *version, const char *name)
{
    static const db_migration_set_t none = {"dbtest_none", NULL, 0};
    migrate_ok(&none, 1); /* creates schema_migrations */
    const char *params[] = {version, name};
    PGresult *r = PQexecParams(
        pg, "INSERT INTO schema_migrations (component, version, name) VALUES ('dbtest', $1, $2)", 2,
        NULL, params, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
}

START_TEST(test_rewritten_history_is_refused_before_anything_runs)
{
    record("1", "0001_renamed");
    err_t err = ERR_INIT;
    ck_assert_int_eq(db_migrate(pool, &dbtest_migrations, 1, 5000, &err), ERR_PRECONDITION);
    ck_assert_msg(strstr(err.msg, "0001_renamed") && strstr(err.msg, "0001_create_items"), "%s",
                  err.msg);
    ck_assert_int_eq(count("SELECT (to_regclass('dbt_log') IS NOT NULL)::int"), 0);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations"), 1);
}
END_TEST

START_TEST(test_versions_from_a_newer_program_are_tolerated)
{
    record("99", "0099_from_the_future");
    migrate_ok(&dbtest_migrations, 1);
    ck_assert_int_eq(count("SELECT count(*) FROM dbt_log"), 3);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations"), 4);
}
END_TEST

START_TEST(test_migrate_retries_an_unreachable_postgres_until_its_timeout)
{
    err_t err = ERR_INIT;
    db_pool_t *p = db_pool_new("postgresql://nobody:x@127.0.0.1:1/none", 1, &err);
    int64_t t0 = tdb_ms();
    ck_assert_int_eq(db_migrate(p, &dbtest_migrations, 1, 400, &err), ERR_UNAVAILABLE);
    int64_t took = tdb_ms() - t0;
    ck_assert_msg(took >= 350 && took < 3000, "gave up after %lld ms", (long long)took);
    db_pool_free(p);
}
END_TEST

START_TEST(test_migrate_rejects_a_set_out_of_order)
{
    static const db_migration_t m[] = {{2, "0002_b", "SELECT 1"}, {1, "0001_a", "SELECT 1"}};
    static const db_migration_set_t set = {"dbtest_disorder", m, 2};
    err_t err = ERR_INIT;
    ck_assert_int_eq(db_migrate(pool, &set, 1, 1000, &err), ERR_INVALID);
    ck_assert_int_eq(count("SELECT (to_regclass('schema_migrations') IS NOT NULL)::int"), 0);
}
END_TEST

static int fn_outbox_insert(db_conn_t *tx, void *ud, err_t *err)
{
    arena_t *a = arena_new(0);
    int rc = db_execf(tx, a, err,
                      "INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, payload)"
                      " VALUES ('test.outbox', 'k1', $1, 'shop.events.v1.Test', 'test', $2)",
                      2, (const char *)ud, db_bytea_param(a, "\x08\x01", 2))
                 ? 0
                 : err->code;
    arena_free(a);
    return rc;
}

static int fn_inbox_insert(db_conn_t *tx, void *ud, err_t *err)
{
    arena_t *a = arena_new(0);
    int rc = db_execf(tx, a, err,
                      "INSERT INTO processed_events (ce_id, ce_type, topic)"
                      " VALUES ($1, 'shop.events.v1.Test', 'test.outbox')",
                      1, (const char *)ud)
                 ? 0
                 : err->code;
    arena_free(a);
    return rc;
}

START_TEST(test_common_migrations_create_the_outbox_and_the_inbox)
{
    const db_migration_set_t sets[] = {common_migrations, dbtest_migrations};
    migrate_ok(sets, 2);
    ck_assert_int_eq(count("SELECT count(*) FROM schema_migrations WHERE component = 'common'"
                           " AND version = 1 AND name = '0001_outbox_inbox'"),
                     1);
    ck_assert_int_eq(count("SELECT count(*) FROM pg_indexes WHERE indexname ="
                           " 'outbox_unpublished_idx' AND schemaname = current_schema()"
                           " AND indexdef LIKE '%WHERE (published_at IS NULL)'"),
                     1);
    /* A queue: vacuumed after a fixed number of changed rows, whatever its size. */
    ck_assert_int_eq(count("SELECT count(*) FROM pg_class WHERE oid = 'outbox'::regclass"
                           " AND 'autovacuum_vacuum_threshold=2000' = ANY(reloptions)"
                           " AND 'autovacuum_vacuum_scale_factor=0' = ANY(reloptions)"),
                     1);

    /* Every insert wakes the relay's channel, without anyone calling pg_notify. Other
     * tests may insert into their own outbox at the same time: drain first. */
    err_t err = ERR_INIT;
    db_listener_t *l = db_listener_new(tdb_base_url(), "outbox", &err);
    ck_assert_ptr_nonnull(l);
    for (int i = 0; i < 100 && db_listener_wait(l, 0) != 0; i++)
        ;
    char id[UUID_STR_LEN];
    uuid_new(id);
    ck_assert_msg(db_txn(pool, fn_outbox_insert, id, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(db_listener_wait(l, 5000), 1);
    db_listener_free(l);
    ck_assert_int_eq(count("SELECT count(*) FROM outbox WHERE published_at IS NULL"
                           " AND ce_time IS NOT NULL AND created_at IS NOT NULL"
                           " AND payload = '\\x0801'::bytea"),
                     1);

    ck_assert_int_eq(db_txn(pool, fn_outbox_insert, id, &err), ERR_CONFLICT);
    ck_assert_msg(db_err_constraint(&err, "outbox_ce_id_key"), "%s", err.msg);
    ck_assert_int_eq(db_txn(pool, fn_inbox_insert, id, &err), 0);
    ck_assert_int_eq(db_txn(pool, fn_inbox_insert, id, &err), ERR_CONFLICT);
    ck_assert_msg(db_err_constraint(&err, "processed_events_pkey"), "%s", err.msg);
}
END_TEST

static Suite *db_migrate_suite(void)
{
    Suite *s = suite_create("db_migrate");
    TCase *tc = check_case(s, "migrate", 60);
    tcase_add_unchecked_fixture(tc, tdb_run_begin, tdb_run_end);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_embedded_set_holds_the_files_in_version_order_verbatim);
    tcase_add_test(tc, test_migrate_applies_each_file_once_in_order_and_records_it);
    tcase_add_test(tc, test_concurrent_instances_apply_each_migration_exactly_once);
    tcase_add_test(tc, test_failing_migration_rolls_back_alone_and_names_its_file);
    tcase_add_test(tc, test_rewritten_history_is_refused_before_anything_runs);
    tcase_add_test(tc, test_versions_from_a_newer_program_are_tolerated);
    tcase_add_test(tc, test_migrate_retries_an_unreachable_postgres_until_its_timeout);
    tcase_add_test(tc, test_migrate_rejects_a_set_out_of_order);
    tcase_add_test(tc, test_common_migrations_create_the_outbox_and_the_inbox);
    return s;
}

int main(void)
{
    return check_run(db_migrate_suite(), CK_FORK_GETENV);
}
