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
 *   25006 read_only_sql_transaction → ERR_UNAVAILABLE (dropped too: the session is on
 *                                 a server that takes no writes, a standby or a
 *                                 demoted primary; with a multi-host url and
 *                                 target_session_attrs=read-write the next connection
 *                                 finds the primary, docs/ha-postgres.md)
 *   anything else               → ERR_INTERNAL
 *
 * Error messages read "postgresql <SQLSTATE>[ (constraint <name>)]: <primary message>"
 * where every quoted fragment of the primary message that is not a schema identifier
 * (table, column, constraint, type) is replaced by "…": they never carry the SQL text
 * or parameter values, so they are safe to log. Use db_err_constraint to tell which
 * unique key or check was hit.
 *
 * Connections: db_pool_new's url is a libpq URI or keyword string. The pool adds
 * defaults that the url overrides: connect_timeout=5, TCP keepalives (idle 30 s,
 * interval 10 s, count 3) and fallback_application_name=<program name>.
 * statement_timeout and lock_timeout stay PostgreSQL's (none) unless the url sets
 * them (e.g. ?options=-cstatement_timeout%3D5000); a statement cancelled by them is
 * ERR_TIMEOUT. Session settings changed with SET (not SET LOCAL) stay on the pooled
 * connection: inside a transaction use SET LOCAL.
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

/* db_url_check: ERR_INVALID (a message that names no part of the url, which may hold
 * a password) unless `url` is a libpq URI or keyword string whose ports are numbers
 * 1..65535, whose connect_timeout is a number and whose sslmode and
 * target_session_attrs are values libpq knows: what would fail every connection
 * attempt the same way fails here, before the first one. */
int db_url_check(const char *url, err_t *err);

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
/* (acquire) timeout_ms <= 0 does not wait. An idle connection that the server closed
 * (restart, pg_terminate_backend) is noticed here and reopened. A lease is used by one
 * thread at a time. (release) accepts NULL; a connection left inside a transaction,
 * or that saw a connection-class error, is closed rather than reused. */

/* db_pool_ping: 0 if a connection answers `SELECT 1` now (readiness). */
int db_pool_ping(db_pool_t *pool, err_t *err);

/* db_pool_stats: connections open and leased (for /metrics). */
void db_pool_stats(db_pool_t *pool, int *open, int *in_use, int *size);

/* db_txn: leases a connection, BEGINs, calls fn(tx, ud, err), COMMITs if fn returned
 * 0, else ROLLBACKs and returns fn's code. BEGIN travels with fn's first statement
 * (libpq pipeline mode), so it costs no round trip of its own; a transaction that ran
 * no statement sends nothing. Serialization failures and deadlocks
 * (ERR_ABORTED), from fn or from COMMIT, rerun the whole transaction up to
 * `DB_TXN_RETRIES` times with jittered backoff; fn must therefore have no effects
 * outside the transaction. Blocking; thread-safe. */
#define DB_TXN_RETRIES 5
/* db_txn waits this long for a free connection before failing with ERR_EXHAUSTED. */
#define DB_TXN_ACQUIRE_MS 2000
/* More of db_txn's contract: BEGIN starts READ COMMITTED (the server default); fn may
 * run SET TRANSACTION ISOLATION LEVEL SERIALIZABLE as its first statement. Backoff
 * between attempts is 2, 4, 8, ... ms (capped at 100 ms), each jittered down to half.
 * A pooled connection that died while idle is replaced transparently (BEGIN is
 * retried once on a fresh connection), and so is one whose server refused a write as
 * read-only (25006: nothing of the transaction can have committed; the whole
 * transaction runs once more on a fresh connection). A connection lost inside fn or
 * during COMMIT (57P01 admin_shutdown included)
 * returns ERR_UNAVAILABLE without a retry: after a lost COMMIT the outcome is
 * unknown, so the caller decides (idempotency keys and the inbox make a retry safe).
 * If fn returns 0 after one of its statements failed, the transaction is rolled back
 * and that statement's code is returned. */
typedef int (*db_txn_fn)(db_conn_t *tx, void *ud, err_t *err);
int db_txn(db_pool_t *pool, db_txn_fn fn, void *ud, err_t *err);

/* One-shot helpers (db_txn.c): each leases a connection (waiting up to
 * DB_TXN_ACQUIRE_MS, else ERR_EXHAUSTED), works outside any explicit transaction and
 * gives the connection back before it returns. Results are owned by the arena.
 * Thread-safe.
 * db_pool_exec: db_exec on the leased connection; NULL with err set on failure.
 * db_pool_exec_one: db_pool_exec, and NULL with ERR_NOT_FOUND and the client message
 * `not_found` ("product not found") when the statement returns no row. */
db_res_t *db_pool_exec(db_pool_t *pool, arena_t *a, const char *sql, int n_params,
                       const char *const *params, err_t *err);
db_res_t *db_pool_exec_one(db_pool_t *pool, arena_t *a, const char *not_found, const char *sql,
                           int n_params, const char *const *params, err_t *err);

/* db_exec: runs one parameterized statement; params are text (NULL = SQL NULL).
 * Returns the result (rows or command status) or NULL with err set. The result
 * belongs to `a`. */
db_res_t *db_exec(db_conn_t *c, arena_t *a, const char *sql, int n_params,
                  const char *const *params, err_t *err);

/* db_execf: the same with the parameters as arguments: db_execf(c, a, err, sql, n, p1, ...). */
db_res_t *db_execf(db_conn_t *c, arena_t *a, err_t *err, const char *sql, int n_params, ...);

/* db_execf_nowait: inside db_txn, sends a statement whose result the caller does not
 * need (an insert, an upsert) without waiting: its result is read with the next
 * statement's or with COMMIT, one round trip for both. If it fails, that next call
 * (or db_txn) fails with its error, and nothing after it ran. Do not use it where the
 * caller must tell one failure from another (db_err_constraint). Outside a
 * transaction it runs at once. 0, or the code of a failure seen so far. */
int db_execf_nowait(db_conn_t *c, arena_t *a, err_t *err, const char *sql, int n_params, ...);

/* db_err_constraint: true if err reports a violation of the named constraint (unique,
 * check or foreign key), e.g. db_err_constraint(&err, "users_email_key"). */
bool db_err_constraint(const err_t *err, const char *constraint);

/* Result accessors (borrowed strings, valid as long as the arena). */
int db_res_rows(const db_res_t *r);
int64_t db_res_affected(const db_res_t *r); /* UPDATE/DELETE/INSERT row count */
bool db_res_null(const db_res_t *r, int row, int col);
const char *db_res_str(const db_res_t *r, int row, int col); /* "" for NULL */
int64_t db_res_i64(const db_res_t *r, int row, int col);     /* 0 for NULL */
bool db_res_bool(const db_res_t *r, int row, int col);       /* 't' */
/* db_res_bytea: decodes a bytea column into the arena; *len gets its length (NULL and
 * 0 for SQL NULL). */
const uint8_t *db_res_bytea(const db_res_t *r, arena_t *a, int row, int col, size_t *len);

/* db_i64_param: v as a decimal text parameter in the arena. */
const char *db_i64_param(arena_t *a, int64_t v);

/* db_bytea_param: encodes bytes as a bytea text parameter ("\x…") in the arena. */
const char *db_bytea_param(arena_t *a, const void *data, size_t len);

/* db_listener: a dedicated connection LISTENing on one channel (reconnects and
 * re-LISTENs by itself). db_listener_wait returns 1 if a notification arrived,
 * 0 on timeout, or a negative code (the caller should treat it as "maybe" and poll).
 * One thread uses a listener.
 * (new) connects and LISTENs before returning when PostgreSQL answers; when it does
 * not, the listener is still returned and connects in db_listener_wait, so a program
 * can start before its database. NULL with ERR_INVALID only for a bad channel name
 * (empty or longer than 63 bytes). Owned; free with db_listener_free (NULL accepted).
 * (wait) several notifications that arrived together count as one. ERR_UNAVAILABLE
 * means the connection was lost, was just re-established (notifications sent while it
 * was down are missed), or cannot be re-established yet; reconnection attempts back
 * off from 100 ms to 5 s and each may block up to the connect timeout. */
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
/* More of db_migrate's contract:
 * - The lock is pg_advisory_lock(DB_MIGRATE_LOCK_KEY) on one leased connection; other
 *   instances block on it for as long as the holder works (timeout_ms bounds only the
 *   wait for PostgreSQL to answer). A holder that dies releases it with its session.
 * - Sets are applied in the order given, each set in version order. A missing version
 *   below one already applied (a migration merged late) is applied too.
 * - A recorded version whose name differs from this program's (history was rewritten)
 *   fails with ERR_PRECONDITION before anything is applied; a recorded version that
 *   this program does not know (a newer program ran) is logged as a warning and left.
 * - A failing file is rolled back alone (earlier ones stay applied) and reported as
 *   "migration <component>/<name> failed: <db error>" with the db error's code.
 * - Migration files must not contain transaction control (BEGIN/COMMIT) nor
 *   statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY).
 * Returns 0, the codes above, ERR_UNAVAILABLE / ERR_EXHAUSTED after timeout_ms.
 * Blocking; thread-safe. */
#define DB_MIGRATE_LOCK_KEY INT64_C(0x73686f706d696772) /* "shopmigr" */

/* The outbox and inbox tables (migrations/common), applied to every service database
 * before the service's own set. */
extern const db_migration_set_t common_migrations;

/* db_advisory_try_lock / unlock on a leased connection (session-level lock, released
 * also when the connection closes: that is how a dead relay's lock is taken over). */
int db_advisory_try_lock(db_conn_t *c, int64_t key, bool *got, err_t *err);
int db_advisory_unlock(db_conn_t *c, int64_t key, err_t *err);
/* (try_lock) 0 with *got telling whether the lock is now held (it nests: each success
 * needs its own unlock). (unlock) 0, or ERR_PRECONDITION if this session did not hold
 * it. Both return the translated code when the statement fails. */

#endif
