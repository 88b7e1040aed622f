#include "test_db_support.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *tdb_base_url(void)
{
    const char *url = getenv("PRODUCT_DATABASE_URL");
    if (!url || !*url)
        url = getenv("ORDER_DATABASE_URL");
    ck_assert_msg(url && *url, "PRODUCT_DATABASE_URL is not set: run through make test");
    return url;
}

int64_t tdb_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tdb_name(const char *prefix, char out[TDB_NAME_MAX])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned seed = (unsigned)(ts.tv_nsec ^ (getpid() << 16));
    snprintf(out, TDB_NAME_MAX, "%s_%d_%08x", prefix, (int)getpid(), (unsigned)rand_r(&seed));
}

static void tdb_quiet(void *ud, const char *message)
{
}

PGconn *tdb_pg(const char *url)
{
    PGconn *pg = PQconnectdb(url);
    ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "connect: %s", PQerrorMessage(pg));
    PQsetNoticeProcessor(pg, tdb_quiet, NULL); /* "drop cascades to ..." is noise here */
    return pg;
}

void tdb_sql(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQerrorMessage(pg));
    PQclear(r);
}

int64_t tdb_i64(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                  PQerrorMessage(pg));
    int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static pid_t run_pid; /* the Check runner's pid, set in the parent before forks */

/* Drops the tdb_<pid>_* schemas for which drop(pid) is true. */
static void tdb_drop_schemas(int (*drop)(pid_t pid))
{
    PGconn *pg = tdb_pg(tdb_base_url());
    PGresult *r = PQexec(pg, "SELECT nspname FROM pg_namespace WHERE nspname ~ '^tdb_[0-9]+_'");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        if (!drop((pid_t)strtol(name + 4, NULL, 10)))
            continue;
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", name);
        PQclear(PQexec(pg, sql)); /* a concurrent sweeper may win: fine */
    }
    PQclear(r);
    PQfinish(pg);
}

static int tdb_pid_gone(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

static int tdb_pid_is_run(pid_t pid)
{
    return pid == run_pid;
}

void tdb_run_begin(void)
{
    run_pid = getpid();
    tdb_drop_schemas(tdb_pid_gone);
}

void tdb_run_end(void)
{
    tdb_drop_schemas(tdb_pid_is_run);
}

void tdb_schema_create(char schema[TDB_NAME_MAX], char url[TDB_URL_MAX])
{
    const char *base = tdb_base_url();
    char tag[TDB_NAME_MAX];
    tdb_name("x", tag);
    snprintf(schema, TDB_NAME_MAX, "tdb_%d_%s", (int)(run_pid ? run_pid : getpid()),
             strrchr(tag, '_') + 1);
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    PGconn *pg = tdb_pg(base);
    tdb_sql(pg, sql);
    PQfinish(pg);
    /* "-c search_path=<schema>" as a URI parameter. */
    snprintf(url, TDB_URL_MAX, "%s%coptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? '&' : '?', schema);
}

void tdb_schema_drop(const char *schema)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
    PGconn *pg = tdb_pg(tdb_base_url());
    tdb_sql(pg, sql);
    PQfinish(pg);
}
