/*
 * db_migrate: applies the migrations embedded at build time (cmake/Migrations.cmake)
 * that schema_migrations does not record yet.
 *
 * One leased connection holds pg_advisory_lock(DB_MIGRATE_LOCK_KEY) for the whole
 * run, so instances that start together take turns and the later ones find nothing
 * left to do. Each file runs in its own transaction with its schema_migrations row,
 * so a file is either applied and recorded, or neither.
 */
#include "db_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

#define DB_MIGRATE_BACKOFF_MIN_MS 100
#define DB_MIGRATE_BACKOFF_MAX_MS 2000

static const char create_table_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                       " component text NOT NULL,"
                                       " version int NOT NULL,"
                                       " name text NOT NULL,"
                                       " applied_at timestamptz NOT NULL DEFAULT now(),"
                                       " PRIMARY KEY (component, version))";

/* The generator sorts and deduplicates; a hand-built set may not. */
static int db_migrate_check_sets(const db_migration_set_t *sets, size_t n_sets, err_t *err)
{
    for (size_t i = 0; i < n_sets; i++) {
        const db_migration_set_t *s = &sets[i];
        if (!s->component || !*s->component || (s->n > 0 && !s->migrations))
            return err_set(err, ERR_INVALID, "migration set %zu has no component", i);
        for (size_t j = 0; j < s->n; j++) {
            const db_migration_t *m = &s->migrations[j];
            if (!m->name || !m->sql || m->version < 1 ||
                (j > 0 && m->version <= s->migrations[j - 1].version))
                return err_set(err, ERR_INVALID,
                               "migration set %s: entry %zu is unnamed or out of order",
                               s->component, j);
        }
    }
    return 0;
}

static const db_migration_t *db_migration_find(const db_migration_set_t *s, int version)
{
    for (size_t j = 0; j < s->n; j++)
        if (s->migrations[j].version == version)
            return &s->migrations[j];
    return NULL;
}

static bool db_migration_recorded(const PGresult *rec, int version)
{
    for (int row = 0; row < PQntuples(rec); row++)
        if (strtol(PQgetvalue(rec, row, 0), NULL, 10) == version)
            return true;
    return false;
}

/* Compares what the database recorded with what this program embeds. */
static int db_migration_history_check(const db_migration_set_t *s, const PGresult *rec, err_t *err)
{
    for (int row = 0; row < PQntuples(rec); row++) {
        int version = (int)strtol(PQgetvalue(rec, row, 0), NULL, 10);
        const char *name = PQgetvalue(rec, row, 1);
        const db_migration_t *m = db_migration_find(s, version);
        if (!m) {
            LOG_WARN("database has a migration this program does not know (a newer version ran)",
                     LOG_STR("component", s->component), LOG_INT("version", version),
                     LOG_STR("name", name));
        } else if (strcmp(m->name, name) != 0) {
            return err_set(err, ERR_PRECONDITION,
                           "migration %s version %d was applied as %s but this program has %s",
                           s->component, version, name, m->name);
        }
    }
    return 0;
}

/* The body of one migration's transaction. */
static int db_migration_run(db_conn_t *c, const char *component, const db_migration_t *m,
                            err_t *err)
{
    int rc = db__cmd(c, m->sql, err);
    if (rc)
        return rc;
    /* A COMMIT inside the file would leave the rest unprotected and the record apart. */
    if (PQtransactionStatus(c->pg) != PQTRANS_INTRANS)
        return err_set(err, ERR_INTERNAL, "the file ended the transaction itself");
    char version[16];
    snprintf(version, sizeof(version), "%d", m->version);
    const char *params[] = {component, version, m->name};
    PGresult *r =
        db__query(c, "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                  3, params, err);
    if (!r)
        return c->last_code;
    PQclear(r);
    return db__cmd(c, "COMMIT", err);
}

static int db_migration_apply(db_conn_t *c, const char *component, const db_migration_t *m,
                              err_t *err)
{
    int64_t t0 = clock_mono_us();
    int rc = db__cmd(c, "BEGIN", err);
    if (rc == 0)
        rc = db_migration_run(c, component, m, err);
    if (rc) {
        db__rollback(c);
        char cause[ERR_MSG_MAX];
        snprintf(cause, sizeof(cause), "%s", err->msg);
        return err_set(err, rc, "migration %s/%s failed: %s", component, m->name, cause);
    }
    LOG_INFO("migration applied", LOG_STR("component", component), LOG_STR("name", m->name),
             LOG_INT("duration_ms", (clock_mono_us() - t0) / 1000));
    return 0;
}

static int db_migrate_set(db_conn_t *c, const db_migration_set_t *s, err_t *err)
{
    const char *params[] = {s->component};
    PGresult *rec = db__query(c, "SELECT version, name FROM schema_migrations WHERE component = $1",
                              1, params, err);
    if (!rec)
        return c->last_code;
    int rc = db_migration_history_check(s, rec, err);
    for (size_t j = 0; rc == 0 && j < s->n; j++)
        if (!db_migration_recorded(rec, s->migrations[j].version))
            rc = db_migration_apply(c, s->component, &s->migrations[j], err);
    PQclear(rec);
    return rc;
}

/* One attempt: lease, lock, apply, unlock. */
static int db_migrate_once(db_pool_t *pool, const db_migration_set_t *sets, size_t n_sets,
                           err_t *err)
{
    db_conn_t *c = db_pool_acquire(pool, DB_TXN_ACQUIRE_MS, err);
    if (!c)
        return err->code;
    int rc = 0;
    char key[24];
    snprintf(key, sizeof(key), "%" PRId64, DB_MIGRATE_LOCK_KEY);
    const char *params[] = {key};
    PGresult *r = db__query(c, "SELECT pg_advisory_lock($1::bigint)", 1, params, err);
    if (!r) {
        rc = c->last_code;
        goto out;
    }
    PQclear(r);
    rc = db__cmd(c, create_table_sql, err);
    for (size_t i = 0; rc == 0 && i < n_sets; i++)
        rc = db_migrate_set(c, &sets[i], err);
    err_t unlock_err;
    /* A lock left on a pooled connection would block every other instance forever:
     * if it cannot be released, the connection is closed, which releases it. */
    if (db_advisory_unlock(c, DB_MIGRATE_LOCK_KEY, &unlock_err) != 0)
        c->broken = true;
out:
    db_pool_release(pool, c);
    return rc;
}

int db_migrate(db_pool_t *pool, const db_migration_set_t *sets, size_t n_sets, int64_t timeout_ms,
               err_t *err)
{
    err_t scratch;
    if (!err)
        err = &scratch;
    int rc = db_migrate_check_sets(sets, n_sets, err);
    if (rc)
        return rc;
    int64_t deadline = clock_mono_us() + timeout_ms * 1000;
    int64_t backoff_ms = DB_MIGRATE_BACKOFF_MIN_MS;
    for (;;) {
        err_clear(err);
        rc = db_migrate_once(pool, sets, n_sets, err);
        int64_t left_ms = (deadline - clock_mono_us()) / 1000;
        if ((rc != ERR_UNAVAILABLE && rc != ERR_EXHAUSTED) || left_ms <= 0)
            return rc;
        LOG_WARN("migrations waiting for postgresql", LOG_STR("error", err->msg),
                 LOG_INT("retry_ms", backoff_ms));
        clock_sleep_ms(backoff_ms < left_ms ? backoff_ms : left_ms);
        backoff_ms =
            backoff_ms * 2 < DB_MIGRATE_BACKOFF_MAX_MS ? backoff_ms * 2 : DB_MIGRATE_BACKOFF_MAX_MS;
    }
}
