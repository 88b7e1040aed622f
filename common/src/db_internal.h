/*
 * db_internal: what the db_*.c files share — the connection and result bodies, the
 * one place that opens a libpq connection, and the one place that turns a libpq
 * failure into an err_t. Only db_*.c include this header (and libpq).
 */
#ifndef COMMON_DB_INTERNAL_H
#define COMMON_DB_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/db.h"

/* How many statements one connection keeps prepared; past that, statements run
 * unnamed (parsed and planned each time), so a program that builds SQL text at run
 * time cannot grow a backend's memory without bound. */
#define DB_STMT_MAX 128

/* A statement prepared on a connection under the name "s<index>". */
typedef struct db_stmt {
    uint64_t hash; /* of the SQL text */
    char *sql;     /* a copy of the text */
    bool ready;    /* the session has it, or a PREPARE of it is in the pipeline */
} db_stmt_t;

/* A pool slot. `pg` is NULL while the slot is closed; the pool's mutex guards
 * `leased`, the lease holder owns everything else. `stmts` are the statements
 * prepared on this `pg`: they die with the server session, so closing the connection
 * forgets them (db__stmt_forget). */
/* What the connection was sent, in pipeline mode, whose result is still to be read. */
typedef enum {
    DB_ITEM_BEGIN,
    DB_ITEM_PREPARE,
    DB_ITEM_STMT,
    DB_ITEM_NOWAIT,
    DB_ITEM_COMMIT
} db_item_kind_t;
typedef struct db_item {
    db_item_kind_t kind;
    int stmt; /* DB_ITEM_PREPARE: the statement's index (dropped if the prepare fails) */
} db_item_t;
#define DB_PIPE_MAX 32 /* items in flight before a sync is forced */

struct db_conn {
    PGconn *pg;
    db_pool_t *pool;
    bool leased;
    bool broken;    /* saw a connection-class error: close it on release */
    int last_code;  /* code of the last failed statement in this lease (0: none) */
    bool read_only; /* the server refused a write as read-only (25006) in this lease */
    db_stmt_t *stmts;
    int n_stmts;
    /* db_txn's transaction: BEGIN is not sent on its own but in front of the first
     * statement (begin_pending), and statements whose result nobody waits for
     * (db_execf_nowait) go out with the next one: items in flight, in order. */
    bool in_txn; /* inside db_txn's fn */
    bool begin_pending;
    bool begin_lost; /* the connection died with the pending BEGIN: nothing ran */
    db_item_t items[DB_PIPE_MAX];
    int n_items;
};

struct db_res {
    PGresult *pg; /* PQclear runs when the owning arena is freed */
};

/* db__connect: a new connection to `url` with the fleet's defaults (connect timeout,
 * TCP keepalives, fallback application_name), which settings in `url` override.
 * NULL with ERR_UNAVAILABLE if PostgreSQL cannot be reached or refuses us. */
PGconn *db__connect(const char *url, err_t *err);

/* db__fail: translates a failed statement (res may be NULL when libpq could not even
 * send it) into err following db.h's table, marks `c` broken on connection-class
 * failures and remembers the code in c->last_code. Returns the code. The message
 * carries the SQLSTATE and the server's primary message with every quoted fragment
 * that is not a schema identifier redacted: never the SQL text or parameter values. */
int db__fail(db_conn_t *c, const PGresult *res, err_t *err);

/* db__fail_pg: the same for a connection outside the pool (the listener). */
int db__fail_pg(PGconn *pg, const PGresult *res, err_t *err);

/* db__cmd: runs a parameterless command with the simple-query protocol (BEGIN,
 * COMMIT, a migration file) and discards the result. 0 or the translated code. */
int db__cmd(db_conn_t *c, const char *sql, err_t *err);

/* db__rollback: ROLLBACK if `c` is inside a transaction; a failure only marks `c`
 * broken (the error being reported is the one that led here). */
void db__rollback(db_conn_t *c);

/* db__query: runs a statement with text parameters and text results: prepared on
 * this connection the first time its text is seen (PQprepare) and executed by name
 * after that (PQexecPrepared), so PostgreSQL parses and analyses it once per session;
 * unnamed (PQexecParams) once DB_STMT_MAX statements are prepared. The caller
 * PQclears the result. NULL with err set (via db__fail) on any failure. */
PGresult *db__query(db_conn_t *c, const char *sql, int n_params, const char *const *params,
                    err_t *err);

/* db__stmt_forget: drops the record of c's prepared statements (the session that
 * held them is closed or about to be). */
void db__stmt_forget(db_conn_t *c);

/* The prepared-statement record (db_stmt.c). db__stmt_slot: sql's index, recorded
 * now if it is new (not ready: the caller prepares it under db__stmt_name(index) and
 * sets .ready once the PREPARE succeeded; a failed one stays not ready and is
 * prepared again on next use), or -1 when DB_STMT_MAX statements are recorded. */
#define DB_STMT_NAME_MAX 16
int db__stmt_slot(db_conn_t *c, const char *sql);
void db__stmt_name(int index, char out[DB_STMT_NAME_MAX]);

/* The transaction pipeline (db_pipe.c), used by db_txn. db__pipe_query is db__query
 * for a connection with a pending BEGIN or items in flight: it sends them and the
 * statement, then reads every result (the first error wins). db__pipe_nowait sends a
 * statement without reading its result. db__pipe_commit ends a transaction (0, or the
 * error of a statement in flight, or COMMIT's); db__pipe_abort reads what is in
 * flight and rolls back. */
PGresult *db__pipe_query(db_conn_t *c, const char *sql, int n_params, const char *const *params,
                         err_t *err);
int db__pipe_nowait(db_conn_t *c, const char *sql, int n_params, const char *const *params,
                    err_t *err);
int db__pipe_commit(db_conn_t *c, err_t *err);
void db__pipe_abort(db_conn_t *c);

#endif
