/*
 * db_txn: what runs on a connection leased for it and given back: transactions
 * (db_txn, retried on ERR_ABORTED) and one-shot statements outside any explicit
 * transaction (db_pool_exec, db_pool_exec_one). It sits above both db_pool.c (leases) and
 * db_query.c / db_pipe.c (statements), so neither of those depends on the other's
 * caller.
 */
#include "db_internal.h"

#include <stdint.h>

#include "common/clock.h"
#include "common/span.h"

#define DB_BACKOFF_BASE_MS 2
#define DB_BACKOFF_CAP_MS  100

/* ---- transactions ---- */

/* Exponential backoff with jitter in [d/2, d], so that transactions that collided
 * once do not collide again in lockstep. */
static int64_t db_backoff_ms(int attempt)
{
    static _Thread_local uint64_t rng;
    if (rng == 0)
        rng = (uint64_t)clock_mono_us() ^ (uint64_t)(uintptr_t)&rng;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    int64_t d = DB_BACKOFF_BASE_MS << (attempt < 6 ? attempt : 6);
    d = d < DB_BACKOFF_CAP_MS ? d : DB_BACKOFF_CAP_MS;
    return d / 2 + (int64_t)(rng % (uint64_t)(d / 2 + 1));
}

/* One attempt. BEGIN goes out with fn's first statement (db_pipe.c); *not_done tells
 * that nothing of the transaction can have committed although the connection failed:
 * it died with the BEGIN (nothing ran), or its server refused a write as read-only
 * (25006: the session is on a standby or a demoted primary, where nothing is written). */
static int db_txn_once(db_pool_t *pool, db_txn_fn fn, void *ud, err_t *err, bool *not_done)
{
    db_conn_t *c = db_pool_acquire(pool, DB_TXN_ACQUIRE_MS, err);
    if (!c)
        return err->code;
    c->begin_pending = true;
    c->begin_lost = false;
    c->in_txn = true;
    int rc = fn(c, ud, err);
    c->in_txn = false;
    /* COMMIT of a failed transaction "succeeds" as a ROLLBACK: never report that as
     * success. The failed statement's own code keeps ERR_ABORTED retryable. */
    if (rc == 0 && PQtransactionStatus(c->pg) == PQTRANS_INERROR)
        rc = err_set(err, c->last_code ? c->last_code : ERR_INTERNAL,
                     "transaction rolled back: fn returned success after a failed statement");
    if (rc == 0)
        rc = db__pipe_commit(c, err);
    else
        db__pipe_abort(c);
    *not_done = c->begin_lost || c->read_only;
    db_pool_release(pool, c);
    return rc;
}

static int db_txn_retry(db_pool_t *pool, db_txn_fn fn, void *ud, err_t *err, int *attempts)
{
    bool retried_fresh = false;
    for (int attempt = 0;; attempt++) {
        err_clear(err);
        bool not_done = false;
        int rc = db_txn_once(pool, fn, ud, err, &not_done);
        *attempts = attempt + 1;
        /* A pooled connection can die between the liveness check and BEGIN, or be on a
         * server that became read-only (a failover); nothing has committed, so one more
         * try on a fresh connection (which finds the primary) is safe. */
        if (rc == ERR_UNAVAILABLE && not_done && !retried_fresh) {
            retried_fresh = true;
            attempt--;
            continue;
        }
        if (rc != ERR_ABORTED || attempt == DB_TXN_RETRIES)
            return rc;
        clock_sleep_ms(db_backoff_ms(attempt));
    }
}

/* A transaction made for a sampled span (span_current: an RPC's or saga event's)
 * gets a CLIENT span "db.txn" of its own, retries included; not the statements. */
int db_txn(db_pool_t *pool, db_txn_fn fn, void *ud, err_t *err)
{
    err_t scratch;
    if (!err)
        err = &scratch;
    int attempts = 0;
    const span_t *cur = span_current();
    if (cur == NULL || !span_recording(cur))
        return db_txn_retry(pool, fn, ud, err, &attempts);
    span_t s;
    span_start(&s, SPAN_CLIENT, "db.txn", span_traceparent(cur));
    span_set_str(&s, "db.system", "postgresql");
    int rc = db_txn_retry(pool, fn, ud, err, &attempts);
    span_set_int(&s, "db.txn.attempts", attempts);
    if (rc != 0)
        span_fail(&s, err->msg);
    span_end(&s);
    return rc;
}

/* ---- one-shot statements ---- */

db_res_t *db_pool_exec(db_pool_t *pool, arena_t *a, const char *sql, int n_params,
                       const char *const *params, err_t *err)
{
    db_conn_t *c = db_pool_acquire(pool, DB_TXN_ACQUIRE_MS, err);
    if (!c)
        return NULL;
    db_res_t *r = db_exec(c, a, sql, n_params, params, err);
    db_pool_release(pool, c);
    return r;
}

db_res_t *db_pool_exec_one(db_pool_t *pool, arena_t *a, const char *not_found, const char *sql,
                           int n_params, const char *const *params, err_t *err)
{
    db_res_t *r = db_pool_exec(pool, a, sql, n_params, params, err);
    if (r && db_res_rows(r) == 0) {
        err_set_client(err, ERR_NOT_FOUND, "%s", not_found);
        return NULL;
    }
    return r;
}
