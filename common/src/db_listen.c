/*
 * db_listen: one dedicated connection LISTENing on one channel.
 *
 * Notifications only wake the waiter; the caller's poll is the source of truth
 * (docs/architecture.md §4), so a lost connection is reported as "maybe" (a negative code)
 * rather than hidden, and reconnection backs off instead of spinning.
 */
#include "db_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"
#include "common/clock.h"

#define DB_LISTEN_BACKOFF_MIN_MS 100
#define DB_LISTEN_BACKOFF_MAX_MS 5000
#define DB_CHANNEL_MAX           63 /* NAMEDATALEN - 1 */

struct db_listener {
    char *url;
    char *channel;
    PGconn *pg;          /* NULL while disconnected */
    int64_t retry_at_us; /* monotonic time of the next reconnection attempt */
    int64_t backoff_ms;
};

/* Opens the connection and LISTENs; on failure leaves l->pg NULL. */
static int db_listener_connect(db_listener_t *l, err_t *err)
{
    PGconn *pg = db__connect(l->url, err);
    if (!pg)
        return ERR_UNAVAILABLE;
    int rc = 0;
    char *ident = PQescapeIdentifier(pg, l->channel, strlen(l->channel));
    if (!ident)
        common__oom(strlen(l->channel));
    char sql[16 + 2 * DB_CHANNEL_MAX + 2];
    snprintf(sql, sizeof(sql), "LISTEN %s", ident);
    PQfreemem(ident);
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = db__fail_pg(pg, r, err);
        PQfinish(pg);
        pg = NULL;
    }
    PQclear(r);
    l->pg = pg;
    return rc;
}

static void db_listener_drop(db_listener_t *l)
{
    PQfinish(l->pg);
    l->pg = NULL;
    l->retry_at_us = clock_mono_us();
    l->backoff_ms = DB_LISTEN_BACKOFF_MIN_MS;
}

db_listener_t *db_listener_new(const char *url, const char *channel, err_t *err)
{
    if (!url || !channel || !*channel || strlen(channel) > DB_CHANNEL_MAX) {
        err_set(err, ERR_INVALID, "listener channel must be 1 to %d bytes", DB_CHANNEL_MAX);
        return NULL;
    }
    db_listener_t *l = common__xcalloc(1, sizeof(*l));
    l->url = common__xstrdup(url);
    l->channel = common__xstrdup(channel);
    l->backoff_ms = DB_LISTEN_BACKOFF_MIN_MS;
    err_t ignored; /* PostgreSQL not up yet: db_listener_wait keeps trying */
    if (db_listener_connect(l, &ignored) != 0)
        db_listener_drop(l);
    return l;
}

void db_listener_free(db_listener_t *l)
{
    if (!l)
        return;
    PQfinish(l->pg);
    free(l->channel);
    free(l->url);
    free(l);
}

/* One reconnection attempt when its time has come, else sleeps until then (within
 * the caller's timeout). Always ERR_UNAVAILABLE: reconnected or not, notifications
 * may have been missed. */
static int db_listener_reconnect(db_listener_t *l, int timeout_ms)
{
    int64_t wait_ms = (l->retry_at_us - clock_mono_us()) / 1000;
    if (wait_ms > 0) {
        clock_sleep_ms(wait_ms < timeout_ms ? wait_ms : timeout_ms);
        return ERR_UNAVAILABLE;
    }
    err_t ignored;
    if (db_listener_connect(l, &ignored) == 0) {
        l->backoff_ms = DB_LISTEN_BACKOFF_MIN_MS;
        return ERR_UNAVAILABLE;
    }
    l->retry_at_us = clock_mono_us() + l->backoff_ms * 1000;
    l->backoff_ms =
        l->backoff_ms * 2 < DB_LISTEN_BACKOFF_MAX_MS ? l->backoff_ms * 2 : DB_LISTEN_BACKOFF_MAX_MS;
    return ERR_UNAVAILABLE;
}

/* Reads what arrived; 1 if it held notifications, 0 if not, negative if the
 * connection is gone. */
static int db_listener_drain(db_listener_t *l)
{
    if (!PQconsumeInput(l->pg) || PQstatus(l->pg) != CONNECTION_OK) {
        db_listener_drop(l);
        return ERR_UNAVAILABLE;
    }
    int got = 0;
    PGnotify *n;
    while ((n = PQnotifies(l->pg)) != NULL) {
        got = 1;
        PQfreemem(n);
    }
    return got;
}

int db_listener_wait(db_listener_t *l, int timeout_ms)
{
    if (!l->pg)
        return db_listener_reconnect(l, timeout_ms > 0 ? timeout_ms : 0);
    int64_t deadline = clock_mono_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
    for (;;) {
        int rc = db_listener_drain(l);
        if (rc != 0)
            return rc;
        int64_t left_ms = (deadline - clock_mono_us() + 999) / 1000;
        if (left_ms <= 0)
            return 0;
        struct pollfd pfd = {.fd = PQsocket(l->pg), .events = POLLIN};
        int n = poll(&pfd, 1, (int)left_ms);
        if (n < 0 && errno != EINTR) {
            db_listener_drop(l);
            return ERR_UNAVAILABLE;
        }
    }
}
