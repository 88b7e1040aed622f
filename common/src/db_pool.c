/*
 * db_pool: a fixed number of slots, each a lazily opened libpq connection.
 *
 * A mutex and a condition variable guard which slots are leased; connecting,
 * checking and closing happen outside the mutex so that one slow connect does not
 * stall every other lease. A slot whose connection failed is closed on release and
 * reopened by the next lease, which is how the pool survives a PostgreSQL restart.
 */
#include "db_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "cond_internal.h"

struct db_pool {
    char *url;
    int size;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a lease is returned */
    int open;          /* slots with a connection (guarded by mu) */
    int in_use;        /* leased slots (guarded by mu) */
    db_conn_t *conns;  /* `size` slots */
};

/* Process-wide gauges: several pools (tests, a program with two databases) add up. */
static metrics_gauge_t *g_open, *g_in_use, *g_size;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void db_pool_metrics_init(void)
{
    const char *help = "PostgreSQL connections by state";
    g_open = metrics_gauge("db_pool_connections", help, (const char *[]){"state", "open", NULL});
    g_in_use =
        metrics_gauge("db_pool_connections", help, (const char *[]){"state", "in_use", NULL});
    g_size = metrics_gauge("db_pool_size", "PostgreSQL connections allowed", NULL);
}

/* Server notices (e.g. "table ... does not exist, skipping") would go to stderr by
 * default; they are diagnostics, so they go to the debug log. */
static void db_notice(void *ud, const char *message)
{
    size_t n = strcspn(message, "\n");
    char line[256];
    snprintf(line, sizeof(line), "%.*s", (int)n, message);
    LOG_DEBUG("postgresql notice", LOG_STR("notice", line));
}

PGconn *db__connect(const char *url, err_t *err)
{
    /* Keywords before dbname are defaults: the expanded url overrides them. */
    const char *const keys[] = {"connect_timeout",  "keepalives",
                                "keepalives_idle",  "keepalives_interval",
                                "keepalives_count", "fallback_application_name",
                                "dbname",           NULL};
    const char *const vals[] = {"5", "1", "30", "10", "3", program_invocation_short_name,
                                url, NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg)
        common__oom(sizeof(void *));
    if (PQstatus(pg) != CONNECTION_OK) {
        /* libpq's message names host and port but never the password. */
        const char *m = PQerrorMessage(pg);
        err_set(err, ERR_UNAVAILABLE, "cannot connect to postgresql: %.*s", (int)strcspn(m, "\n"),
                m);
        PQfinish(pg);
        return NULL;
    }
    PQsetNoticeProcessor(pg, db_notice, NULL);
    return pg;
}

/* "5432", or a comma-separated list of them (one per host; empty: the default). */
static bool db_url_ports_ok(const char *v)
{
    for (const char *p = v;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        long port = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] < '0' || p[i] > '9' || port > 65535)
                return false;
            port = port * 10 + (p[i] - '0');
        }
        if (n > 0 && (port < 1 || port > 65535))
            return false;
        if (!end)
            return true;
        p = end + 1;
    }
}

static bool db_url_one_of(const char *v, const char *const *allowed)
{
    for (; *allowed; allowed++)
        if (strcmp(v, *allowed) == 0)
            return true;
    return false;
}

int db_url_check(const char *url, err_t *err)
{
    static const char *const sslmodes[] = {"disable",   "allow",       "prefer", "require",
                                           "verify-ca", "verify-full", NULL};
    static const char *const attrs[] = {"any",     "read-write",     "read-only", "primary",
                                        "standby", "prefer-standby", NULL};
    char *msg = NULL;
    PQconninfoOption *opts = url ? PQconninfoParse(url, &msg) : NULL;
    PQfreemem(msg); /* it may quote the url, password included */
    if (!opts)
        return err_set(err, ERR_INVALID,
                       "not a PostgreSQL connection URI (postgresql://user:password@host:port/db)"
                       " nor a keyword string (host=... port=... dbname=...)");
    int rc = 0;
    for (PQconninfoOption *o = opts; o->keyword && rc == 0; o++) {
        const char *k = o->keyword, *v = o->val;
        if (!v)
            continue;
        if (strcmp(k, "port") == 0 && !db_url_ports_ok(v))
            rc = err_set(err, ERR_INVALID, "the port must be a number 1..65535");
        else if (strcmp(k, "connect_timeout") == 0 && strspn(v, "0123456789") != strlen(v))
            rc = err_set(err, ERR_INVALID, "connect_timeout must be a number of seconds");
        else if (strcmp(k, "sslmode") == 0 && !db_url_one_of(v, sslmodes))
            rc = err_set(err, ERR_INVALID,
                         "sslmode must be disable, allow, prefer, require,"
                         " verify-ca or verify-full");
        else if (strcmp(k, "target_session_attrs") == 0 && !db_url_one_of(v, attrs))
            rc = err_set(err, ERR_INVALID, "target_session_attrs is not one libpq knows");
    }
    PQconninfoFree(opts);
    return rc;
}

db_pool_t *db_pool_new(const char *url, int size, err_t *err)
{
    if (!url || size < 1) {
        err_set(err, ERR_INVALID, "db pool needs a url and a size of at least 1");
        return NULL;
    }
    if (db_url_check(url, err) < 0)
        return NULL;
    pthread_once(&metrics_once, db_pool_metrics_init);
    db_pool_t *p = common__xcalloc(1, sizeof(*p));
    p->url = common__xstrdup(url);
    p->size = size;
    p->conns = common__xcalloc((size_t)size, sizeof(*p->conns));
    for (int i = 0; i < size; i++)
        p->conns[i].pool = p;
    pthread_mutex_init(&p->mu, NULL);
    /* Lease deadlines are monotonic so a wall-clock step cannot stretch them. */
    common__cond_init_monotonic(&p->cv);
    metrics_gauge_add(g_size, size);
    return p;
}

void db_pool_free(db_pool_t *pool)
{
    if (!pool)
        return;
    for (int i = 0; i < pool->size; i++) {
        if (pool->conns[i].pg) {
            PQfinish(pool->conns[i].pg);
            metrics_gauge_add(g_open, -1);
        }
        db__stmt_forget(&pool->conns[i]);
    }
    metrics_gauge_add(g_in_use, -pool->in_use);
    metrics_gauge_add(g_size, -pool->size);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool->conns);
    free(pool->url);
    free(pool);
}

/* An idle connection has nothing to read unless the server said goodbye (a FATAL
 * error, then EOF) or sent a notice: poll without waiting and, while something is
 * there, let libpq read it. One read may stop after the error message, before the
 * EOF, hence the few rounds; each is a non-blocking syscall. */
static bool db_conn_alive(PGconn *pg)
{
    for (int round = 0; round < 4; round++) {
        if (PQstatus(pg) != CONNECTION_OK)
            return false;
        struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
        if (poll(&pfd, 1, 0) <= 0)
            return true;
        if (!PQconsumeInput(pg))
            return false;
        PGnotify *n; /* also parses what arrived (an idle-time error becomes a notice) */
        while ((n = PQnotifies(pg)) != NULL)
            PQfreemem(n);
    }
    return PQstatus(pg) == CONNECTION_OK;
}

/* Waits for a free slot and marks it leased; prefers one that is already open. */
static db_conn_t *db_pool_lease_slot(db_pool_t *p, int64_t timeout_ms, err_t *err)
{
    struct timespec deadline = clock_mono_deadline(timeout_ms > 0 ? timeout_ms : 0);
    db_conn_t *slot = NULL;
    pthread_mutex_lock(&p->mu);
    while (p->in_use == p->size) {
        if (timeout_ms <= 0 || pthread_cond_timedwait(&p->cv, &p->mu, &deadline) == ETIMEDOUT) {
            if (p->in_use == p->size)
                goto out;
        }
    }
    for (int i = 0; i < p->size; i++) {
        db_conn_t *c = &p->conns[i];
        if (!c->leased && (!slot || (!slot->pg && c->pg)))
            slot = c;
    }
    slot->leased = true;
    p->in_use++;
    metrics_gauge_add(g_in_use, 1);
out:
    pthread_mutex_unlock(&p->mu);
    if (!slot)
        err_set(err, ERR_EXHAUSTED, "db pool: all %d connections busy", p->size);
    return slot;
}

/* Closes the slot's connection (outside the mutex: PQfinish writes to the socket). */
static void db_pool_close_slot(db_pool_t *p, db_conn_t *c)
{
    PQfinish(c->pg);
    c->pg = NULL;
    db__stmt_forget(c);
    pthread_mutex_lock(&p->mu);
    p->open--;
    pthread_mutex_unlock(&p->mu);
    metrics_gauge_add(g_open, -1);
}

static void db_pool_unlease(db_pool_t *p, db_conn_t *c)
{
    pthread_mutex_lock(&p->mu);
    c->leased = false;
    p->in_use--;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    metrics_gauge_add(g_in_use, -1);
}

db_conn_t *db_pool_acquire(db_pool_t *pool, int64_t timeout_ms, err_t *err)
{
    db_conn_t *c = db_pool_lease_slot(pool, timeout_ms, err);
    if (!c)
        return NULL;
    if (c->pg && !db_conn_alive(c->pg))
        db_pool_close_slot(pool, c);
    if (!c->pg) {
        c->pg = db__connect(pool->url, err);
        if (!c->pg) {
            db_pool_unlease(pool, c);
            return NULL;
        }
        pthread_mutex_lock(&pool->mu);
        pool->open++;
        pthread_mutex_unlock(&pool->mu);
        metrics_gauge_add(g_open, 1);
    }
    c->broken = false;
    c->last_code = 0;
    c->read_only = false;
    return c;
}

void db_pool_release(db_pool_t *pool, db_conn_t *conn)
{
    if (!conn)
        return;
    /* A connection still inside a transaction would hand its locks and half-done work
     * to the next lease; closing it makes the server roll back. */
    if (conn->broken || PQstatus(conn->pg) != CONNECTION_OK ||
        PQtransactionStatus(conn->pg) != PQTRANS_IDLE ||
        PQpipelineStatus(conn->pg) != PQ_PIPELINE_OFF)
        db_pool_close_slot(pool, conn);
    conn->begin_pending = false;
    conn->in_txn = false;
    conn->n_items = 0;
    db_pool_unlease(pool, conn);
}

int db_pool_ping(db_pool_t *pool, err_t *err)
{
    err_t e = ERR_INIT;
    db_conn_t *c = db_pool_acquire(pool, DB_TXN_ACQUIRE_MS, &e);
    int rc = c ? db__cmd(c, "SELECT 1", &e) : e.code;
    db_pool_release(pool, c);
    if (rc && err)
        *err = e;
    return rc;
}

void db_pool_stats(db_pool_t *pool, int *open, int *in_use, int *size)
{
    pthread_mutex_lock(&pool->mu);
    if (open)
        *open = pool->open;
    if (in_use)
        *in_use = pool->in_use;
    if (size)
        *size = pool->size;
    pthread_mutex_unlock(&pool->mu);
}
