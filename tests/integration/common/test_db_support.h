/*
 * test_db_support: what the db integration tests share. Each test works in a schema of
 * its own (tdb_<pid>_<random>), reached through a pool url whose search_path points at
 * it, so tests never see each other's tables and a rerun on the same stack starts clean.
 */
#ifndef TEST_DB_SUPPORT_H
#define TEST_DB_SUPPORT_H

#include <libpq-fe.h>
#include <stdint.h>

#define TDB_NAME_MAX 64
#define TDB_URL_MAX  1024

/* The stack's PRODUCT_DATABASE_URL (or ORDER_DATABASE_URL); fails the test if unset. */
const char *tdb_base_url(void);

/* A fresh random name "<prefix>_<pid>_<hex>" for schemas, channels and tables. */
void tdb_name(const char *prefix, char out[TDB_NAME_MAX]);

/* The run's bracket, as an unchecked fixture (it runs in Check's parent process):
 * begin drops the schemas of earlier runs whose process is gone (a failed assertion
 * ends a forked test before its teardown); end drops every schema of this run. */
void tdb_run_begin(void);
void tdb_run_end(void);

/* Creates a schema "tdb_<runner pid>_<hex>" and writes into url a pool url that works
 * inside it. */
void tdb_schema_create(char schema[TDB_NAME_MAX], char url[TDB_URL_MAX]);
void tdb_schema_drop(const char *schema);

/* A raw libpq connection (asserts it opened); PQfinish it. */
PGconn *tdb_pg(const char *url);

/* Runs SQL on a raw connection and asserts it succeeded. */
void tdb_sql(PGconn *pg, const char *sql);

/* The first column of the first row of a query, as an integer. */
int64_t tdb_i64(PGconn *pg, const char *sql);

/* Monotonic milliseconds, for timing assertions. */
int64_t tdb_ms(void);

#endif
