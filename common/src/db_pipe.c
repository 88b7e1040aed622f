/*
 * db_pipe: the round trips of a db_txn transaction, saved with libpq's pipeline mode.
 *
 * A statement is a round trip: the client sends, the server wakes, runs and answers,
 * the client wakes. On a small machine those wake-ups cost more CPU than a short
 * statement itself. Two round trips of every transaction carry nothing the caller
 * waits for: BEGIN, and statements whose result is not needed (an outbox insert, a
 * state upsert: db_execf_nowait). So db_txn does not send BEGIN by itself: the first
 * statement takes it along, and a statement sent "nowait" goes out at once but its
 * result is read together with the next statement's, or with COMMIT. An empty
 * transaction sends nothing at all.
 *
 * Errors keep their meaning: results are read in order and the first failure is the
 * one reported (by the call that synced, with the failing statement's SQLSTATE and
 * message); everything after it in the pipeline was not run. A statement prepared in
 * the pipeline counts as prepared only once its PREPARE succeeded.
 */
#include "db_internal.h"

static int db_pipe_lost(db_conn_t *c, err_t *err)
{
    c->broken = true; /* whatever is in flight is unknown: never reuse the session */
    return db__fail(c, NULL, err);
}

static void db_pipe_log(db_conn_t *c, db_item_kind_t kind, int stmt)
{
    c->items[c->n_items++] = (db_item_t){.kind = kind, .stmt = stmt};
}

/* Pipeline mode on, and the pending BEGIN sent first. */
static int db_pipe_enter(db_conn_t *c, err_t *err)
{
    if (PQpipelineStatus(c->pg) == PQ_PIPELINE_OFF && !PQenterPipelineMode(c->pg))
        return db_pipe_lost(c, err);
    if (c->begin_pending) {
        c->begin_pending = false;
        if (!PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
            return db_pipe_lost(c, err);
        db_pipe_log(c, DB_ITEM_BEGIN, -1);
    }
    return 0;
}

/* Sends one statement (its PREPARE first if the session lacks it) as an item. */
static int db_pipe_send(db_conn_t *c, const char *sql, int n_params, const char *const *params,
                        db_item_kind_t kind, err_t *err)
{
    char name[DB_STMT_NAME_MAX];
    int i = db__stmt_slot(c, sql);
    if (i >= 0)
        db__stmt_name(i, name);
    if (i >= 0 && !c->stmts[i].ready) {
        if (!PQsendPrepare(c->pg, name, sql, n_params, NULL))
            return db_pipe_lost(c, err);
        db_pipe_log(c, DB_ITEM_PREPARE, i);
        c->stmts[i].ready = true; /* for the rest of this pipeline; undone if it fails */
    }
    int sent = i >= 0 ? PQsendQueryPrepared(c->pg, name, n_params, params, NULL, NULL, 0)
                      : PQsendQueryParams(c->pg, sql, n_params, NULL, params, NULL, NULL, 0);
    if (!sent)
        return db_pipe_lost(c, err);
    db_pipe_log(c, kind, -1);
    return 0;
}

/* One item's result. The first failure sets *rc; the result of the DB_ITEM_STMT is
 * kept in *keep if all went well before it. */
static void db_pipe_result(db_conn_t *c, const db_item_t *it, PGresult *r, PGresult **keep, int *rc,
                           err_t *err)
{
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok && it->kind == DB_ITEM_PREPARE)
        c->stmts[it->stmt].ready = false;
    if (!ok && st != PGRES_PIPELINE_ABORTED && *rc == 0) {
        *rc = db__fail(c, r, err);
        c->begin_lost = it->kind == DB_ITEM_BEGIN && *rc == ERR_UNAVAILABLE;
    }
    if (ok && it->kind == DB_ITEM_STMT && *rc == 0)
        *keep = r;
    else
        PQclear(r);
}

/* Marks a sync point and reads the result of every item in flight; pipeline mode off
 * again. The DB_ITEM_STMT's result (if any, and if nothing failed) is returned. */
static PGresult *db_pipe_sync(db_conn_t *c, int *rc, err_t *err)
{
    PGresult *keep = NULL;
    *rc = 0;
    if (!PQpipelineSync(c->pg)) {
        *rc = db_pipe_lost(c, err);
        goto out;
    }
    for (int k = 0; k < c->n_items; k++) {
        PGresult *r = PQgetResult(c->pg);
        if (!r || PQstatus(c->pg) == CONNECTION_BAD) {
            PQclear(r); /* the session is gone, and every statement it had */
            int lost = db_pipe_lost(c, *rc ? NULL : err);
            *rc = *rc ? *rc : lost;
            c->begin_lost = c->begin_lost || c->items[k].kind == DB_ITEM_BEGIN;
            goto out;
        }
        db_pipe_result(c, &c->items[k], r, &keep, rc, err);
        PGresult *extra = PQgetResult(c->pg); /* NULL ends each item's results */
        if (extra) {
            PQclear(extra);
            c->broken = true;
        }
    }
    PGresult *s = PQgetResult(c->pg);
    if (PQresultStatus(s) != PGRES_PIPELINE_SYNC || !PQexitPipelineMode(c->pg))
        c->broken = true;
    PQclear(s);
out:
    c->n_items = 0;
    if (*rc) {
        PQclear(keep);
        keep = NULL;
    }
    return keep;
}

PGresult *db__pipe_query(db_conn_t *c, const char *sql, int n_params, const char *const *params,
                         err_t *err)
{
    int rc;
    if (db_pipe_enter(c, err) != 0 || db_pipe_send(c, sql, n_params, params, DB_ITEM_STMT, err))
        return NULL;
    return db_pipe_sync(c, &rc, err);
}

int db__pipe_nowait(db_conn_t *c, const char *sql, int n_params, const char *const *params,
                    err_t *err)
{
    int rc = 0;
    if (c->n_items + 3 > DB_PIPE_MAX) /* room for BEGIN, a PREPARE and this one */
        db_pipe_sync(c, &rc, err);
    if (rc != 0)
        return rc;
    if (db_pipe_enter(c, err) != 0 || db_pipe_send(c, sql, n_params, params, DB_ITEM_NOWAIT, err))
        return err->code;
    return 0;
}

int db__pipe_commit(db_conn_t *c, err_t *err)
{
    int rc = 0;
    if (c->begin_pending) { /* nothing was sent: there is no transaction to end */
        c->begin_pending = false;
        return 0;
    }
    if (c->n_items == 0)
        return db__cmd(c, "COMMIT", err);
    if (db_pipe_enter(c, err) != 0)
        return err->code;
    if (!PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
        return db_pipe_lost(c, err);
    db_pipe_log(c, DB_ITEM_COMMIT, -1);
    db_pipe_sync(c, &rc, err);
    /* A statement in flight failed: the server skipped the rest, COMMIT included, so
     * the transaction is still open (and aborted) and must be rolled back. */
    if (rc != 0 && !c->broken)
        db__rollback(c);
    return rc;
}

void db__pipe_abort(db_conn_t *c)
{
    c->begin_pending = false;
    if (c->n_items > 0) {
        int rc;
        err_t ignored; /* the error being reported is the one that led here */
        db_pipe_sync(c, &rc, &ignored);
    }
    if (!c->broken)
        db__rollback(c);
}
