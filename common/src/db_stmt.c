/*
 * db_stmt: the prepared statements of a pooled connection, and db__query.
 *
 * PQexecParams sends an unnamed statement that PostgreSQL parses, analyses and plans on
 * every call; for the short statements the services run, that is most of the server's
 * CPU per statement. So each connection prepares a statement the first time it runs
 * that SQL text and executes it by name afterwards. The record of what is prepared
 * lives with the connection slot and is dropped whenever the session ends (close on
 * release, reconnect after a restart): a fresh session prepares again on first use.
 *
 * Lookup is by the text's hash, then the text itself; a linear scan of at most
 * DB_STMT_MAX entries is cheaper than the statement's round trip by far.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "db_internal.h"

/* 64-bit FNV-1a. */
static uint64_t db_stmt_hash(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

void db__stmt_name(int index, char out[DB_STMT_NAME_MAX])
{
    snprintf(out, DB_STMT_NAME_MAX, "s%d", index);
}

void db__stmt_forget(db_conn_t *c)
{
    for (int i = 0; i < c->n_stmts; i++)
        free(c->stmts[i].sql);
    free(c->stmts);
    c->stmts = NULL;
    c->n_stmts = 0;
}

int db__stmt_slot(db_conn_t *c, const char *sql)
{
    uint64_t h = db_stmt_hash(sql);
    for (int i = 0; i < c->n_stmts; i++)
        if (c->stmts[i].hash == h && strcmp(c->stmts[i].sql, sql) == 0)
            return i;
    if (c->n_stmts == DB_STMT_MAX)
        return -1;
    if (!c->stmts)
        c->stmts = common__xcalloc(DB_STMT_MAX, sizeof(*c->stmts));
    c->stmts[c->n_stmts] = (db_stmt_t){.hash = h, .sql = common__xstrdup(sql)};
    return c->n_stmts++;
}

/* The index of sql's prepared statement on c, preparing it now if the session does
 * not have it yet; -1 when it must run unnamed (no room). On a failed prepare (bad
 * SQL, lost connection) returns -2 with err set through db__fail. */
static int db_stmt_prepared(db_conn_t *c, const char *sql, int n_params, err_t *err)
{
    int i = db__stmt_slot(c, sql);
    if (i < 0 || c->stmts[i].ready)
        return i;
    char name[DB_STMT_NAME_MAX];
    db__stmt_name(i, name);
    PGresult *r = PQprepare(c->pg, name, sql, n_params, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        db__fail(c, r, err);
        PQclear(r);
        return -2;
    }
    PQclear(r);
    c->stmts[i].ready = true;
    return i;
}

PGresult *db__query(db_conn_t *c, const char *sql, int n_params, const char *const *params,
                    err_t *err)
{
    if (c->begin_pending || c->n_items > 0)
        return db__pipe_query(c, sql, n_params, params, err);
    int i = db_stmt_prepared(c, sql, n_params, err);
    if (i == -2)
        return NULL;
    PGresult *r;
    if (i >= 0) {
        char name[DB_STMT_NAME_MAX];
        db__stmt_name(i, name);
        r = PQexecPrepared(c->pg, name, n_params, params, NULL, NULL, 0);
    } else {
        r = PQexecParams(c->pg, sql, n_params, NULL, params, NULL, NULL, 0);
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    db__fail(c, r, err);
    PQclear(r);
    return NULL;
}
