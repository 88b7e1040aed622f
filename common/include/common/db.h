/*
 * db: PostgreSQL for the services — a connection pool, transactions with bounded
 * retries, parameterized queries only, LISTEN/NOTIFY, and migrations.
 *
 * Results live in the caller's arena (PQclear is registered as a cleanup), so a
 * handler never frees a result by hand. SQL text is always a constant with $n
 * parameters; values are never spliced into it.
 *
 * SQLSTATE → err_code_t, translated here once:
 *   23505 unique_violation      → ERR_CONFLICT   (constraint name in the message)
 *   23514 check_violation,
 *   23503 foreign_key_violation → ERR_PRECONDITION
 *   22xxx data exceptions       → ERR_INVALID
 *   40001 / 40P01               → ERR_ABORTED    (db_txn retries these)
 *   57014 query_canceled        → ERR_TIMEOUT
 *   08xxx, 57P0x, lost socket   → ERR_UNAVAILABLE (the connection is dropped and
 *                                 reopened on next use)
 *   anything else               → ERR_INTERNAL
 */
#ifndef COMMON_DB_H
#define COMMON_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/err.h"

typedef struct db_pool db_pool_t;
typedef struct db_conn db_conn_t; /* a leased connection; inside db_txn, the transaction */
typedef struct db_res db_res_t;   /* a result; owned by the arena it was made in */

/* db_pool_new: a pool of up to `size` connections to `url` (a libpq URI or keyword
 * string). Connections open lazily and reopen after a failure, so the pool can be
 * created before PostgreSQL is up. Owned; free with db_pool_free (after every lease
 * is returned). Thread-safe. */
db_pool_t *db_pool_new(const char *url, int size, err_t *err);
void db_pool_free(db_pool_t *pool);

/* db_pool_acquire: leases a connection, waiting up to timeout_ms for one to be free;
 * NULL with ERR_EXHAUSTED (pool busy) or ERR_UNAVAILABLE (cannot connect).
 * db_pool_release returns it; a connection in a failed state is closed instead. */
db_conn_t *db_pool_acquire(db_pool_t *pool, int64_t timeout_ms, err_t *err);
void db_pool_release(db_pool_t *pool, db_conn_t *conn);

/* db_pool_ping: 0 if a connection answers `SELECT 1` now (readiness). */
int db_pool_ping(db_pool_t *pool, err_t *err);

/* db_pool_stats: connections open and leased (for /metrics). */
void db_pool_stats(db_pool_t *pool, int *open, int *in_use, int *size);

/* db_txn: leases a connection, BEGINs, calls fn(tx, ud, err), COMMITs if fn returned
 * 0, else ROLLBACKs and returns fn's code. Serialization failures and deadlocks
 * (ERR_ABORTED), from fn or from COMMIT, rerun the whole transaction up to
 * `DB_TXN_RETRIES` times with jittered backoff; fn must therefore have no effects
 * outside the transaction. Blocking; thread-safe. */
#define DB_TXN_RETRIES 5
typedef int (*db_txn_fn)(db_conn_t *tx, void *ud, err_t *err);
int db_txn(db_pool_t *pool, db_txn_fn fn, void *ud, err_t *err);

/* db_exec: runs one parameterized statement; params are text (NULL = SQL NULL).
 * Returns the result (rows or command status) or NULL with err set. The result
 * belongs to `a`. */
db_res_t *db_exec(db_conn_t *c, arena_t *a, const char *sql, int n_params,
                  const char *const *params, err_t *err);

/* db_execf: the same with the parameters as arguments: db_execf(c, a, err, sql, n, p1, ...). */
db_res_t *db_execf(db_conn_t *c, arena_t *a, err_t *err, const char *sql, int n_params, ...);

/* Result accessors (borrowed strings, valid as long as the arena). */
int db_res_rows(const db_res_t *r);
int64_t db_res_affected(const db_res_t *r); /* UPDATE/DELETE/INSERT row count */
bool db_res_null(const db_res_t *r, int row, int col);
const char *db_res_str(const db_res_t *r, int row, int col); /* "" for NULL */
int64_t db_res_i64(const db_res_t *r, int row, int col);     /* 0 for NULL */
bool db_res_bool(const db_res_t *r, int row, int col);      /* 't' */
/* db_res_bytea: decodes a bytea column into the arena; *len gets its length. */
const uint8_t *db_res_bytea(const db_res_t *r, arena_t *a, int row, int col, size_t *len);

/* db_bytea_param: encodes bytes as a bytea text parameter ("\x…") in the arena. */
const char *db_bytea_param(arena_t *a, const void *data, size_t len);

/* db_listener: a dedicated connection LISTENing on one channel (reconnects and
 * re-LISTENs by itself). db_listener_wait returns 1 if a notification arrived,
 * 0 on timeout, or a negative code (the caller should treat it as "maybe" and poll).
 * One thread uses a listener. */
typedef struct db_listener db_listener_t;
db_listener_t *db_listener_new(const char *url, const char *channel, err_t *err);
int db_listener_wait(db_listener_t *l, int timeout_ms);
void db_listener_free(db_listener_t *l);

/* Migrations: files migrations/<component>/NNNN_name.sql, embedded into the program at
 * build time (cmake shop_embed_migrations). db_migrate applies, in order, the ones
 * not yet recorded in schema_migrations(component, version, name, applied_at), each
 * in its own transaction, all under a PostgreSQL advisory lock so that N instances
 * starting together apply each migration once. Retries while PostgreSQL is
 * unreachable, up to timeout_ms. */
typedef struct db_migration {
    int version;
    const char *name; /* "0001_init" */
    const char *sql;
} db_migration_t;

typedef struct db_migration_set {
    const char *component; /* "common", "order", ... */
    const db_migration_t *migrations;
    size_t n;
} db_migration_set_t;

int db_migrate(db_pool_t *pool, const db_migration_set_t *sets, size_t n_sets, int64_t timeout_ms,
               err_t *err);

/* db_advisory_try_lock / unlock on a leased connection (session-level lock, released
 * also when the connection closes: that is how a dead relay's lock is taken over). */
int db_advisory_try_lock(db_conn_t *c, int64_t key, bool *got, err_t *err);
int db_advisory_unlock(db_conn_t *c, int64_t key, err_t *err);

#endif
