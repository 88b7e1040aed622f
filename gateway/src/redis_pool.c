/*
 * redis_pool: borrowed hiredis connections (redis_pool.h).
 */
#include "redis_pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "crypto.h"

#define REDIS_POOL_MAX 256

typedef struct redis_conn {
    redisContext *ctx; /* NULL until first used, or after an error */
    bool busy;
    uint64_t gen;      /* the pool's master generation it was opened for */
    redis_addr_t addr; /* where it is connected */
} redis_conn_t;

/* With Sentinels: where the master is, as they said last. */
typedef struct redis_sentinel_state {
    int n;                                   /* 0: no Sentinels (the URL's server) */
    redis_addr_t addrs[REDIS_SENTINELS_MAX]; /* REDIS_SENTINELS */
    char master_name[128];                   /* REDIS_MASTER_NAME */
    int64_t replica_wait_ms;                 /* WAIT after a durable write; 0: none */
    pthread_mutex_t resolving;               /* one resolution at a time */
    atomic_llong resolved_at_us;             /* the last resolution's end (monotonic) */
    int next;                                /* the Sentinel that answered last */
    /* Under the pool's lock: */
    uint64_t gen;            /* bumped when the master moved */
    bool stale;              /* the master was lost: ask before connecting */
    atomic_bool lost_logged; /* "redis master lost" logged for this spell */
} redis_sentinel_state_t;

struct redis_pool {
    char host[256]; /* the URL's server; with Sentinels, the master they named last */
    int port;
    char user[128];           /* "" = the default user (AUTH with the password alone) */
    char password[256];       /* "" = no AUTH */
    atomic_bool auth_refused; /* the last AUTH was refused (logged once per refusal spell) */
    int db;
    int64_t timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    redis_sentinel_state_t sentinel;
    int size;
    redis_conn_t conns[];
};

/* redis://[user][:password]@host:port[/db]: the userinfo up to its first ':' names the
 * user (none: the default user), the rest is the password. */
static int redis_parse_url(redis_pool_t *p, const char *url, err_t *err)
{
    const char *s = url;
    if (url == NULL || strncmp(s, "redis://", 8) != 0)
        return err_set(err, ERR_INVALID, "REDIS_URL: must start with redis://");
    s += 8;
    const char *at = strrchr(s, '@');
    if (at != NULL) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        const char *user_end = colon != NULL ? colon : at;
        size_t un = (size_t)(user_end - s);
        size_t pn = colon != NULL ? (size_t)(at - colon - 1) : 0;
        if (un >= sizeof(p->user))
            return err_set(err, ERR_INVALID, "REDIS_URL: user name too long");
        if (pn >= sizeof(p->password))
            return err_set(err, ERR_INVALID, "REDIS_URL: password too long");
        memcpy(p->user, s, un);
        memcpy(p->password, colon != NULL ? colon + 1 : "", pn);
        s = at + 1;
    }
    const char *colon = strrchr(s, ':');
    const char *slash = strchr(s, '/');
    if (colon == NULL || (slash != NULL && slash < colon) || colon == s)
        return err_set(err, ERR_INVALID, "REDIS_URL: expected redis://host:port[/db]");
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof(p->host))
        return err_set(err, ERR_INVALID, "REDIS_URL: host too long");
    memcpy(p->host, s, hl);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || port < 1 || port > 65535 || (*end != '\0' && *end != '/'))
        return err_set(err, ERR_INVALID, "REDIS_URL: bad port");
    if (*end == '/' && end[1] != '\0') {
        long db = strtol(end + 1, &end, 10);
        if (*end != '\0' || db < 0 || db > 15)
            return err_set(err, ERR_INVALID, "REDIS_URL: bad database number");
        p->db = (int)db;
    }
    p->port = (int)port;
    return 0;
}

redis_pool_t *redis_pool_new(const char *url, const char *password, int size, int64_t timeout_ms,
                             err_t *err)
{
    if (size < 1 || size > REDIS_POOL_MAX || timeout_ms < 1) {
        err_set(err, ERR_INVALID, "redis pool: size 1..%d and a positive timeout", REDIS_POOL_MAX);
        return NULL;
    }
    redis_pool_t *p = calloc(1, sizeof(*p) + (size_t)size * sizeof(redis_conn_t));
    if (p == NULL)
        abort();
    if (redis_parse_url(p, url, err) < 0)
        goto fail;
    if (password != NULL && password[0] != '\0') {
        if (strlen(password) >= sizeof(p->password)) {
            err_set(err, ERR_INVALID, "REDIS_PASSWORD: too long");
            goto fail;
        }
        snprintf(p->password, sizeof(p->password), "%s", password);
    }
    if (p->user[0] != '\0' && p->password[0] == '\0') {
        err_set(err, ERR_INVALID,
                "REDIS_URL names the user %s but no password is given (REDIS_PASSWORD,"
                " REDIS_PASSWORD_FILE or the URL)",
                p->user);
        goto fail;
    }
    p->size = size;
    p->timeout_ms = timeout_ms;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->sentinel.resolving, NULL);
    return p;
fail:
    memset(p->password, 0, sizeof(p->password));
    free(p);
    return NULL;
}

/* One host:port (or [v6]:port) of n bytes at s into a. */
static int redis_addr_parse(const char *s, size_t n, redis_addr_t *a, err_t *err)
{
    const char *end = s + n, *host = s, *host_end;
    if (n > 0 && s[0] == '[') {
        host = s + 1;
        host_end = memchr(host, ']', n - 1);
        if (host_end == NULL || host_end + 1 >= end || host_end[1] != ':')
            goto bad;
    } else {
        host_end = NULL;
        for (const char *q = s; q < end; q++)
            host_end = *q == ':' ? q : host_end;
        if (host_end == NULL || memchr(s, ':', (size_t)(host_end - s)) != NULL)
            goto bad; /* no port, or an IPv6 address without brackets */
    }
    size_t hl = (size_t)(host_end - host);
    const char *port = host_end + (host_end[0] == ']' ? 2 : 1);
    if (hl == 0 || hl >= sizeof(a->host) || port >= end || end - port > 5)
        goto bad;
    long v = 0;
    for (const char *q = port; q < end; q++) {
        if (*q < '0' || *q > '9')
            goto bad;
        v = v * 10 + (*q - '0');
    }
    if (v < 1 || v > 65535)
        goto bad;
    for (const char *q = host; q < host + hl; q++) {
        if (*q == ' ' || *q == '/' || *q == '@' || *q == '[' || *q == ']')
            goto bad;
    }
    memcpy(a->host, host, hl);
    a->host[hl] = '\0';
    a->port = (int)v;
    return 0;
bad:
    return err_set(err, ERR_INVALID,
                   "REDIS_SENTINELS: \"%.*s\" is not host:port (a comma list of host:port)",
                   (int)(n > 64 ? 64 : n), s);
}

int redis_sentinels_parse(const char *list, redis_addr_t *out, int max, err_t *err)
{
    int n = 0;
    if (list == NULL || list[0] == '\0')
        return err_set(err, ERR_INVALID, "REDIS_SENTINELS: empty (a comma list of host:port)");
    for (const char *s = list;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        if (n == max)
            return err_set(err, ERR_INVALID, "REDIS_SENTINELS: more than %d Sentinels", max);
        if (redis_addr_parse(s, len, &out[n], err) < 0)
            return err->code;
        n++;
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    return n;
}

int redis_pool_use_sentinels(redis_pool_t *p, const char *list, const char *master_name,
                             int64_t replica_wait_ms, err_t *err)
{
    redis_sentinel_state_t *st = &p->sentinel;
    int n = redis_sentinels_parse(list, st->addrs, REDIS_SENTINELS_MAX, err);
    if (n < 0)
        return n;
    if (master_name == NULL || master_name[0] == '\0' ||
        strlen(master_name) >= sizeof(st->master_name) || strpbrk(master_name, " \t\r\n") != NULL)
        return err_set(err, ERR_INVALID, "REDIS_MASTER_NAME: 1..%zu characters, no blanks",
                       sizeof(st->master_name) - 1);
    if (replica_wait_ms < 0 || (replica_wait_ms > 0 && replica_wait_ms >= p->timeout_ms))
        return err_set(err, ERR_INVALID,
                       "REDIS_REPLICA_WAIT: 0, or shorter than a command's timeout (%lld ms)",
                       (long long)p->timeout_ms);
    snprintf(st->master_name, sizeof(st->master_name), "%s", master_name);
    st->replica_wait_ms = replica_wait_ms;
    st->stale = true; /* ask before the first connection */
    st->n = n;
    return 0;
}

void redis_pool_free(redis_pool_t *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->size; i++) {
        if (p->conns[i].ctx != NULL)
            redisFree(p->conns[i].ctx);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->sentinel.resolving);
    memset(p->password, 0, sizeof(p->password));
    free(p);
}

/* A free slot, waiting up to the timeout; NULL when none frees up. */
static redis_conn_t *redis_acquire(redis_pool_t *p)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += p->timeout_ms / 1000;
    until.tv_nsec += (p->timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    redis_conn_t *c = NULL;
    pthread_mutex_lock(&p->lock);
    while (c == NULL) {
        /* Prefer an open connection; take a closed slot only when none is idle. */
        for (int i = 0; i < p->size && c == NULL; i++)
            c = !p->conns[i].busy && p->conns[i].ctx != NULL ? &p->conns[i] : NULL;
        for (int i = 0; i < p->size && c == NULL; i++)
            c = !p->conns[i].busy ? &p->conns[i] : NULL;
        if (c == NULL && pthread_cond_timedwait(&p->freed, &p->lock, &until) != 0)
            break;
    }
    if (c != NULL)
        c->busy = true;
    pthread_mutex_unlock(&p->lock);
    return c;
}

static void redis_release(redis_pool_t *p, redis_conn_t *c)
{
    pthread_mutex_lock(&p->lock);
    c->busy = false;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

static void redis_drop(redis_conn_t *c)
{
    redisFree(c->ctx);
    c->ctx = NULL;
}

static const char *redis_user_name(const redis_pool_t *p)
{
    return p->user[0] != '\0' ? p->user : "default";
}

/* The server (or Sentinel) at a refused our credentials, or wants some we do not have
 * (r: its error reply): ERR_UNAVAILABLE naming the user and the server's answer (never
 * the password), logged once until Redis accepts us again (every request would
 * otherwise log it). */
static int redis_refused(redis_pool_t *p, const redis_addr_t *a, const redisReply *r, err_t *err)
{
    err_set(err, ERR_UNAVAILABLE, "redis %s:%d refused the credentials of user %s: %.*s", a->host,
            a->port, redis_user_name(p), (int)r->len, r->str);
    if (!atomic_exchange(&p->auth_refused, true))
        LOG_ERR("redis refused the credentials", LOG_STR("user", redis_user_name(p)),
                LOG_STR("error", err->msg));
    return ERR_UNAVAILABLE;
}

/* AUTH [user] password on ctx (connected to a); 0, or ERR_UNAVAILABLE (redis_refused). */
static int redis_auth(redis_pool_t *p, redisContext *ctx, const redis_addr_t *a, err_t *err)
{
    bool named = p->user[0] != '\0';
    const char *argv[] = {"AUTH", named ? p->user : p->password, p->password};
    redisReply *r = redisCommandArgv(ctx, named ? 3 : 2, argv, NULL);
    if (r == NULL)
        return err_set(err, ERR_UNAVAILABLE, "redis %s:%d: AUTH: %s", a->host, a->port,
                       ctx->errstr);
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR)
        rc = redis_refused(p, a, r, err);
    else if (atomic_exchange(&p->auth_refused, false))
        LOG_INFO("redis accepts the credentials again", LOG_STR("user", redis_user_name(p)));
    freeReplyObject(r);
    return rc;
}

/* A connection to a with its timeouts set and logged in (AUTH); NULL with err
 * ERR_UNAVAILABLE. */
static redisContext *redis_open(redis_pool_t *p, const redis_addr_t *a, int64_t timeout_ms,
                                err_t *err)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(a->host, a->port, tv);
    if (ctx == NULL || ctx->err != 0 || redisSetTimeout(ctx, tv) != REDIS_OK) {
        err_set(err, ERR_UNAVAILABLE, "redis %s:%d unreachable: %s", a->host, a->port,
                ctx != NULL ? ctx->errstr : "out of memory");
        goto fail;
    }
    if (p->password[0] != '\0' && redis_auth(p, ctx, a, err) < 0)
        goto fail;
    return ctx;
fail:
    if (ctx != NULL)
        redisFree(ctx);
    return NULL;
}

/* ---- Sentinels ---- */

/* Asks the Sentinel at s for the master's address; 0, or ERR_UNAVAILABLE. */
static int redis_sentinel_ask(redis_pool_t *p, const redis_addr_t *s, redis_addr_t *master,
                              err_t *err)
{
    /* A Sentinel answers at once or not at all: a short bound, so that a dead or frozen
     * one does not hold the resolution (and every caller waiting on it). */
    int64_t timeout_ms = p->timeout_ms < 500 ? p->timeout_ms : 500;
    redisContext *ctx = redis_open(p, s, timeout_ms, err);
    if (ctx == NULL)
        return ERR_UNAVAILABLE;
    const char *argv[] = {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", p->sentinel.master_name};
    redisReply *r = redisCommandArgv(ctx, 3, argv, NULL);
    int rc = 0;
    if (r == NULL) {
        rc = err_set(err, ERR_UNAVAILABLE, "redis sentinel %s:%d: %s", s->host, s->port,
                     ctx->errstr);
    } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0) {
        rc = redis_refused(p, s, r, err);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
               r->element[0]->type != REDIS_REPLY_STRING ||
               r->element[1]->type != REDIS_REPLY_STRING ||
               r->element[0]->len >= sizeof(master->host)) {
        rc = err_set(err, ERR_UNAVAILABLE, "redis sentinel %s:%d does not know the master %s%s%.*s",
                     s->host, s->port, p->sentinel.master_name,
                     r->type == REDIS_REPLY_ERROR ? ": " : "",
                     r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
                     r->type == REDIS_REPLY_ERROR ? r->str : "");
    } else {
        char *end;
        long port = strtol(r->element[1]->str, &end, 10);
        if (*end != '\0' || port < 1 || port > 65535) {
            rc = err_set(err, ERR_UNAVAILABLE, "redis sentinel %s:%d: bad port of the master",
                         s->host, s->port);
        } else {
            memcpy(master->host, r->element[0]->str, r->element[0]->len);
            master->host[r->element[0]->len] = '\0';
            master->port = (int)port;
        }
    }
    if (r != NULL)
        freeReplyObject(r);
    redisFree(ctx);
    return rc;
}

/* The master was lost (seen on a connection opened for generation gen): the next
 * connection asks the Sentinels first. */
static void redis_master_lost(redis_pool_t *p, uint64_t gen, const char *why)
{
    redis_sentinel_state_t *st = &p->sentinel;
    if (st->n == 0)
        return;
    pthread_mutex_lock(&p->lock);
    bool current = st->gen == gen; /* not a connection to a master already replaced */
    if (current)
        st->stale = true;
    pthread_mutex_unlock(&p->lock);
    if (current && !atomic_exchange(&st->lost_logged, true))
        LOG_WARN("redis master lost, asking the sentinels", LOG_STR("error", why));
}

/* Asks the Sentinels (in turn, from the one that answered last) for the master's
 * address and takes it; the caller holds st->resolving. 0, or ERR_UNAVAILABLE when
 * none answered. */
static int redis_resolve_locked(redis_pool_t *p, err_t *err)
{
    redis_sentinel_state_t *st = &p->sentinel;
    redis_addr_t master;
    int rc = ERR_UNAVAILABLE;
    for (int i = 0; i < st->n && rc < 0; i++) {
        int k = (st->next + i) % st->n;
        rc = redis_sentinel_ask(p, &st->addrs[k], &master, err);
        if (rc == 0)
            st->next = k;
    }
    atomic_store(&st->resolved_at_us, clock_mono_us());
    if (rc < 0) {
        char last[sizeof(err->msg)];
        snprintf(last, sizeof(last), "%s", err->msg);
        return err_set(err, ERR_UNAVAILABLE, "no redis sentinel answered (last: %s)", last);
    }
    pthread_mutex_lock(&p->lock);
    if (strcmp(master.host, p->host) != 0 || master.port != p->port) {
        LOG_INFO("redis master", LOG_STR("host", master.host), LOG_INT("port", master.port));
        memcpy(p->host, master.host, sizeof(p->host));
        p->port = master.port;
        st->gen++; /* every connection to the old one is dropped */
    }
    st->stale = false;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Where to connect: with Sentinels, the master they name (asking them first when the
 * master was lost), with its generation. One resolution at a time: a caller that
 * waited for another's takes its answer; at most one every REDIS_RESOLVE_BACKOFF_MS
 * (a Sentinel that still names a dead master is not asked in a loop). */
static int redis_target(redis_pool_t *p, redis_addr_t *a, uint64_t *gen, err_t *err)
{
    redis_sentinel_state_t *st = &p->sentinel;
    pthread_mutex_lock(&p->lock);
    bool stale = st->stale;
    uint64_t seen = st->gen;
    memcpy(a->host, p->host, sizeof(a->host));
    a->port = p->port;
    *gen = st->gen;
    pthread_mutex_unlock(&p->lock);
    if (st->n == 0 || !stale)
        return 0;

    int rc = 0;
    pthread_mutex_lock(&st->resolving);
    pthread_mutex_lock(&p->lock);
    bool done = !st->stale || st->gen != seen; /* resolved while we waited */
    pthread_mutex_unlock(&p->lock);
    if (!done) {
        int64_t at = atomic_load(&st->resolved_at_us);
        int64_t since_ms = (clock_mono_us() - at) / 1000;
        if (at != 0 && since_ms < REDIS_RESOLVE_BACKOFF_MS) {
            struct timespec pause = {0, (long)(REDIS_RESOLVE_BACKOFF_MS - since_ms) * 1000000L};
            nanosleep(&pause, NULL);
        }
        rc = redis_resolve_locked(p, err);
    }
    pthread_mutex_unlock(&st->resolving);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&p->lock);
    memcpy(a->host, p->host, sizeof(a->host));
    a->port = p->port;
    *gen = st->gen;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* With Sentinels, a master that works may still have been replaced: frozen (or cut
 * off) long enough for a failover, it answers again as a master until the Sentinels
 * demote it (up to 10 s later: their INFO period), and what it takes then is lost.
 * So the pool asks the Sentinels again when its answer is older than
 * REDIS_RESOLVE_MAX_AGE_MS: one caller does (the others go on, not waiting), and a
 * master that moved drops every connection to the old one. */
static void redis_refresh(redis_pool_t *p)
{
    redis_sentinel_state_t *st = &p->sentinel;
    if ((clock_mono_us() - atomic_load(&st->resolved_at_us)) / 1000 < REDIS_RESOLVE_MAX_AGE_MS ||
        pthread_mutex_trylock(&st->resolving) != 0)
        return;
    if ((clock_mono_us() - atomic_load(&st->resolved_at_us)) / 1000 >= REDIS_RESOLVE_MAX_AGE_MS) {
        err_t err = ERR_INIT;
        if (redis_resolve_locked(p, &err) < 0)
            LOG_DEBUG("redis: asking the sentinels again", LOG_STR("error", err.msg));
    }
    pthread_mutex_unlock(&st->resolving);
}

/* With Sentinels: the server at the end of ctx says it is the master (ROLE); a
 * replica (the old master, back) is a lost master. */
static int redis_check_master(redis_pool_t *p, redis_conn_t *c, err_t *err)
{
    redisReply *r = redisCommandArgv(c->ctx, 1, (const char *[]){"ROLE"}, NULL);
    bool master = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[0]->str, "master") == 0;
    if (!master)
        err_set(err, ERR_UNAVAILABLE, "redis %s:%d is not the master: %s", c->addr.host,
                c->addr.port,
                r == NULL                      ? c->ctx->errstr
                : r->type == REDIS_REPLY_ERROR ? r->str
                : r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                        r->element[0]->type == REDIS_REPLY_STRING
                    ? r->element[0]->str
                    : "unexpected ROLE reply");
    if (r != NULL)
        freeReplyObject(r);
    return master ? 0 : ERR_UNAVAILABLE;
}

/* Opens c's connection (AUTH, SELECT and, with Sentinels, ROLE included); 0 or
 * ERR_UNAVAILABLE. */
static int redis_connect(redis_pool_t *p, redis_conn_t *c, err_t *err)
{
    if (redis_target(p, &c->addr, &c->gen, err) < 0)
        return ERR_UNAVAILABLE;
    c->ctx = redis_open(p, &c->addr, p->timeout_ms, err);
    if (c->ctx == NULL)
        goto lost;
    if (p->db != 0) {
        char db[8];
        snprintf(db, sizeof(db), "%d", p->db);
        redisReply *r = redisCommandArgv(c->ctx, 2, (const char *[]){"SELECT", db}, NULL);
        bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            err_set(err, ERR_UNAVAILABLE, "redis %s:%d refused SELECT %s", c->addr.host,
                    c->addr.port, db);
            goto fail;
        }
    }
    if (p->sentinel.n > 0 && redis_check_master(p, c, err) < 0)
        goto lost;
    return 0;
lost:
    if (!atomic_load(&p->auth_refused))
        redis_master_lost(p, c->gen, err->msg);
fail:
    if (c->ctx != NULL)
        redis_drop(c);
    return ERR_UNAVAILABLE;
}

bool redis_pool_auth_refused(redis_pool_t *p)
{
    return atomic_load(&p->auth_refused);
}

/* A reply of type REDIS_REPLY_ERROR as NULL with err ERR_INTERNAL; NOAUTH (a server
 * that wants credentials the pool was not given) as a refusal (redis_refused). */
static redisReply *redis_error_reply(redis_pool_t *p, const redis_addr_t *a, redisReply *r,
                                     err_t *err)
{
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0) {
        redis_refused(p, a, r, err);
        freeReplyObject(r);
        r = NULL;
    } else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        err_set(err, ERR_INTERNAL, "redis: %.*s", (int)r->len, r->str);
        freeReplyObject(r);
        r = NULL;
    } else if (r != NULL && atomic_load_explicit(&p->auth_refused, memory_order_relaxed) &&
               atomic_exchange(&p->auth_refused, false)) {
        LOG_INFO("redis accepts the credentials again", LOG_STR("user", redis_user_name(p)));
    }
    return r;
}

/* An error reply that means this server is no longer (or not yet) the master to
 * write to: READONLY (a replica now: the old master, back), LOADING (still reading
 * its data), MASTERDOWN. The command did nothing there. Scripts' errors carry the
 * code after "ERR Error running script ... : " in some versions: looked for anywhere. */
static bool redis_reply_master_lost(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR &&
           (strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "LOADING", 7) == 0 ||
            strncmp(r->str, "MASTERDOWN", 10) == 0 || strstr(r->str, "-READONLY") != NULL ||
            strstr(r->str, " READONLY ") != NULL);
}

/* Runs one command on c, connecting it first if needed; a command that fails on a
 * connection that was already open is retried once on a fresh one. With Sentinels,
 * a connection opened for a master that has since moved is dropped first, and a
 * command that failed because the master was lost (I/O error or timeout, READONLY,
 * refused connection) is retried once on a connection to the master the Sentinels
 * name then. */
static redisReply *redis_conn_command(redis_pool_t *p, redis_conn_t *c, int argc, const char **argv,
                                      const size_t *lens, err_t *err)
{
    redisReply *r = NULL;
    bool ha = p->sentinel.n > 0;
    if (ha && c->ctx != NULL)
        redis_refresh(p);
    for (int attempt = 0; attempt < 2 && r == NULL; attempt++) {
        if (ha && c->ctx != NULL) {
            pthread_mutex_lock(&p->lock);
            bool moved = c->gen != p->sentinel.gen;
            pthread_mutex_unlock(&p->lock);
            if (moved)
                redis_drop(c);
        }
        bool reused = c->ctx != NULL;
        if (!reused && redis_connect(p, c, err) < 0) {
            if (ha && !atomic_load(&p->auth_refused))
                continue; /* a lost master: once more, after asking the Sentinels */
            break;
        }
        r = redisCommandArgv(c->ctx, argc, argv, lens);
        if (r == NULL) {
            err_set(err, ERR_UNAVAILABLE, "redis %s:%d: %s", c->addr.host, c->addr.port,
                    c->ctx->errstr);
            redis_master_lost(p, c->gen, err->msg);
            redis_drop(c);
            if (!reused && !ha)
                break;
        } else if (ha && redis_reply_master_lost(r)) {
            err_set(err, ERR_UNAVAILABLE, "redis %s:%d: %.*s", c->addr.host, c->addr.port,
                    (int)r->len, r->str);
            freeReplyObject(r);
            r = NULL;
            redis_master_lost(p, c->gen, err->msg);
            redis_drop(c);
        }
    }
    if (r != NULL && ha && atomic_load_explicit(&p->sentinel.lost_logged, memory_order_relaxed) &&
        atomic_exchange(&p->sentinel.lost_logged, false))
        LOG_INFO("redis master found", LOG_STR("host", c->addr.host),
                 LOG_INT("port", c->addr.port));
    return r;
}

/* With Sentinels and a replica wait: WAIT 1 on c after its write. 0 also when no
 * replica acknowledged in time (logged); ERR_UNAVAILABLE when the connection broke
 * (the write may be lost with the master). */
static int redis_conn_wait(redis_pool_t *p, redis_conn_t *c, err_t *err)
{
    if (p->sentinel.n == 0 || p->sentinel.replica_wait_ms <= 0 || c->ctx == NULL)
        return 0;
    char ms[24];
    snprintf(ms, sizeof(ms), "%lld", (long long)p->sentinel.replica_wait_ms);
    redisReply *r = redisCommandArgv(c->ctx, 3, (const char *[]){"WAIT", "1", ms}, NULL);
    if (r == NULL) {
        err_set(err, ERR_UNAVAILABLE, "redis %s:%d: WAIT: %s", c->addr.host, c->addr.port,
                c->ctx->errstr);
        redis_master_lost(p, c->gen, err->msg);
        redis_drop(c);
        return ERR_UNAVAILABLE;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer < 1)
        LOG_DEBUG("redis: no replica acknowledged a write in time",
                  LOG_INT("wait_ms", p->sentinel.replica_wait_ms));
    else if (r->type == REDIS_REPLY_ERROR)
        LOG_WARN("redis: WAIT refused", LOG_STR("error", r->str));
    freeReplyObject(r);
    return 0;
}

static redis_conn_t *redis_acquire_or_fail(redis_pool_t *p, err_t *err)
{
    redis_conn_t *c = redis_acquire(p);
    if (c == NULL)
        err_set(err, ERR_UNAVAILABLE, "no redis connection free within %lld ms",
                (long long)p->timeout_ms);
    return c;
}

static redisReply *redis_pool_run(redis_pool_t *p, bool durable, int argc, const char **argv,
                                  const size_t *lens, err_t *err)
{
    redis_conn_t *c = redis_acquire_or_fail(p, err);
    if (c == NULL)
        return NULL;
    redisReply *r = redis_conn_command(p, c, argc, argv, lens, err);
    if (r != NULL && r->type != REDIS_REPLY_ERROR && durable && redis_conn_wait(p, c, err) < 0) {
        freeReplyObject(r);
        r = NULL;
    }
    redis_addr_t at = c->addr;
    redis_release(p, c);
    return redis_error_reply(p, &at, r, err);
}

redisReply *redis_pool_command(redis_pool_t *p, int argc, const char **argv, const size_t *lens,
                               err_t *err)
{
    return redis_pool_run(p, false, argc, argv, lens, err);
}

redisReply *redis_pool_command_durable(redis_pool_t *p, int argc, const char **argv,
                                       const size_t *lens, err_t *err)
{
    return redis_pool_run(p, true, argc, argv, lens, err);
}

static const char *redis_script_sha1(redis_script_t *s)
{
    static pthread_mutex_t naming = PTHREAD_MUTEX_INITIALIZER;
    if (!atomic_load_explicit(&s->named, memory_order_acquire)) {
        pthread_mutex_lock(&naming);
        if (!atomic_load_explicit(&s->named, memory_order_relaxed)) {
            crypto_sha1_hex(s->text, strlen(s->text), s->sha1);
            atomic_store_explicit(&s->named, true, memory_order_release);
        }
        pthread_mutex_unlock(&naming);
    }
    return s->sha1;
}

redisReply *redis_pool_eval(redis_pool_t *p, redis_script_t *script, int argc, const char **argv,
                            err_t *err)
{
    if (argc < 1 || argc > REDIS_EVAL_ARGS_MAX) {
        err_set(err, ERR_INVALID, "redis script: 1..%d arguments", REDIS_EVAL_ARGS_MAX);
        return NULL;
    }
    const char *cmd[REDIS_EVAL_ARGS_MAX + 2] = {"EVALSHA", redis_script_sha1(script)};
    memcpy(cmd + 2, argv, (size_t)argc * sizeof(*argv));
    redis_conn_t *c = redis_acquire_or_fail(p, err);
    if (c == NULL)
        return NULL;
    redisReply *r = redis_conn_command(p, c, argc + 2, cmd, NULL, err);
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        cmd[0] = "EVAL";
        cmd[1] = script->text;
        r = redis_conn_command(p, c, argc + 2, cmd, NULL, err);
    }
    if (r != NULL && r->type != REDIS_REPLY_ERROR && script->durable &&
        redis_conn_wait(p, c, err) < 0) {
        freeReplyObject(r);
        r = NULL;
    }
    redis_addr_t at = c->addr;
    redis_release(p, c);
    return redis_error_reply(p, &at, r, err);
}
