/*
 * order_sweeper: docs/architecture.md §4 step 10 — orders still PENDING after SAGA_TIMEOUT are
 * cancelled with reason TIMEOUT, which emits OrderCancelled so that product-svc
 * releases what it reserved and user-svc refunds what it charged (or records a
 * tombstone so that a late StockReserved charges nothing).
 *
 * Each sweep claims at most ORDER_SWEEP_BATCH orders per transaction with FOR UPDATE
 * SKIP LOCKED, oldest first, and repeats while batches come back full. With N
 * instances each sweeper skips the rows another one (or a saga handler) holds, so
 * nobody waits and no order is cancelled twice; a row a handler is changing is
 * looked at again on the next sweep, and the conditional UPDATE of
 * order_saga_cancel re-checks PENDING anyway.
 *
 * The same thread deletes CreateOrder's idempotency keys older than
 * IDEMPOTENCY_RETENTION (the IETF Idempotency-Key draft's retention period), at most
 * ORDER_IDEM_PURGE_BATCH per statement, repeating while batches come back full: short
 * statements that hold few row locks, so a CreateOrder never waits long behind them.
 * A key is thus kept at least the retention and at most a SWEEP_INTERVAL longer;
 * once gone, the same key creates a new order.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "order.h"
#include "order_repo.h"

#define ORDER_SWEEP_BATCH      100
#define ORDER_IDEM_PURGE_BATCH 500

struct order_sweeper {
    db_pool_t *pool;
    const order_cfg_t *cfg;
    char detail[96]; /* the order_cancelled row's detail */
    metrics_counter_t *cancelled;
    metrics_counter_t *purged;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    atomic_bool stop;  /* set under mu, so the waiter cannot miss it */
};

/* One sweep transaction's input and result. */
typedef struct order_sweep {
    order_sweeper_t *s;
    arena_t *a;
    size_t claimed;
    size_t cancelled;
} order_sweep_t;

static int order_sweeper_txn(db_conn_t *tx, void *ud, err_t *err)
{
    order_sweep_t *sw = ud;
    const char **ids;
    sw->claimed = sw->cancelled = 0;
    if (order_repo_sweep_claim(tx, sw->a, sw->s->cfg->saga_timeout_ms, ORDER_SWEEP_BATCH, &ids,
                               &sw->claimed, err) != 0)
        return err->code;
    for (size_t i = 0; i < sw->claimed; i++) {
        order_cancel_t c = {.order_id = ids[i],
                            .from = ORDER_PENDING,
                            .reason = ORDER_REASON_TIMEOUT,
                            .detail = sw->s->detail};
        bool done;
        if (order_saga_cancel(tx, sw->a, &c, &done, err) != 0)
            return err->code;
        sw->cancelled += done;
    }
    return 0;
}

/* Sweeps until a batch comes back short (or stop is asked). 0 or the db error. */
static int order_sweeper_sweep(order_sweeper_t *s, err_t *err)
{
    order_sweep_t sw = {.s = s};
    do {
        sw.a = arena_new(0);
        int rc = db_txn(s->pool, order_sweeper_txn, &sw, err);
        arena_free(sw.a);
        if (rc != 0)
            return rc;
        if (sw.cancelled) {
            metrics_counter_add(s->cancelled, sw.cancelled);
            LOG_INFO("pending orders timed out", LOG_INT("cancelled", sw.cancelled));
        }
    } while (sw.claimed == ORDER_SWEEP_BATCH && !atomic_load(&s->stop));
    size_t purged;
    do {
        arena_t *a = arena_new(0);
        int rc = order_repo_idem_purge(s->pool, a, s->cfg->idem_retention_ms,
                                       ORDER_IDEM_PURGE_BATCH, &purged, err);
        arena_free(a);
        if (rc != 0)
            return rc;
        metrics_counter_add(s->purged, purged);
    } while (purged == ORDER_IDEM_PURGE_BATCH && !atomic_load(&s->stop));
    return 0;
}

/* Waits up to ms or until stop; true if stop was asked. */
static bool order_sweeper_wait(order_sweeper_t *s, int64_t ms)
{
    int64_t deadline_us = clock_mono_us() + ms * 1000;
    struct timespec ts = {.tv_sec = deadline_us / 1000000,
                          .tv_nsec = (long)(deadline_us % 1000000) * 1000};
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stop) && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
        ;
    bool stop = atomic_load(&s->stop);
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *order_sweeper_main(void *ud)
{
    order_sweeper_t *s = ud;
    bool failing = false;
    do {
        err_t err = ERR_INIT;
        if (order_sweeper_sweep(s, &err) != 0) {
            /* Warn once per outage: the next sweep retries anyway. */
            if (!failing)
                LOG_WARN("order sweep failed, retrying", LOG_STR("error", err.msg),
                         LOG_STR("code", err_code_name(err.code)));
            failing = true;
        } else if (failing) {
            LOG_INFO("order sweep recovered");
            failing = false;
        }
    } while (!order_sweeper_wait(s, s->cfg->sweep_interval_ms));
    return NULL;
}

static void order_sweeper_detail(char *buf, size_t n, int64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, n, "timeout: not completed within %llds", (long long)(ms / 1000));
    else
        snprintf(buf, n, "timeout: not completed within %lldms", (long long)ms);
}

order_sweeper_t *order_sweeper_start(db_pool_t *pool, const order_cfg_t *cfg, err_t *err)
{
    order_sweeper_t *s = calloc(1, sizeof(*s));
    if (!s) {
        err_set(err, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    s->pool = pool;
    s->cfg = cfg;
    order_sweeper_detail(s->detail, sizeof(s->detail), cfg->saga_timeout_ms);
    s->cancelled =
        metrics_counter("order_sweeper_cancelled_total",
                        "orders cancelled because they stayed PENDING past SAGA_TIMEOUT", NULL);
    s->purged = metrics_counter("order_idempotency_keys_purged_total",
                                "idempotency keys deleted after IDEMPOTENCY_RETENTION", NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    int rc = pthread_create(&s->thread, NULL, order_sweeper_main, s);
    if (rc != 0) {
        err_set(err, ERR_INTERNAL, "cannot start the sweeper thread (error %d)", rc);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    return s;
}

void order_sweeper_stop(order_sweeper_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stop, true);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
