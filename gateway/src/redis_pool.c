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

#include "common/log.h"
#include "crypto.h"

#define REDIS_POOL_MAX 256

typedef struct redis_conn {
    redisContext *ctx; /* NULL until first used, or after an error */
    bool busy;
} redis_conn_t;

struct redis_pool {
    char host[256];
    int port;
    char user[128];           /* "" = the default user (AUTH with the password alone) */
    char password[256];       /* "" = no AUTH */
    atomic_bool auth_refused; /* the last AUTH was refused (logged once per refusal spell) */
    int db;
    int64_t timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t freed;
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
    return p;
fail:
    memset(p->password, 0, sizeof(p->password));
    free(p);
    return NULL;
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

/* The server refused our credentials, or wants some we do not have (r: its error
 * reply): ERR_UNAVAILABLE naming the user and the server's answer (never the
 * password), logged once until Redis accepts us again (every request would
 * otherwise log it). */
static int redis_refused(redis_pool_t *p, const redisReply *r, err_t *err)
{
    err_set(err, ERR_UNAVAILABLE, "redis %s:%d refused the credentials of user %s: %.*s", p->host,
            p->port, redis_user_name(p), (int)r->len, r->str);
    if (!atomic_exchange(&p->auth_refused, true))
        LOG_ERR("redis refused the credentials", LOG_STR("user", redis_user_name(p)),
                LOG_STR("error", err->msg));
    return ERR_UNAVAILABLE;
}

/* AUTH [user] password on c's new connection; 0, or ERR_UNAVAILABLE (redis_refused). */
static int redis_auth(redis_pool_t *p, redis_conn_t *c, err_t *err)
{
    bool named = p->user[0] != '\0';
    const char *argv[] = {"AUTH", named ? p->user : p->password, p->password};
    redisReply *r = redisCommandArgv(c->ctx, named ? 3 : 2, argv, NULL);
    if (r == NULL)
        return err_set(err, ERR_UNAVAILABLE, "redis %s:%d: AUTH: %s", p->host, p->port,
                       c->ctx->errstr);
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR)
        rc = redis_refused(p, r, err);
    else if (atomic_exchange(&p->auth_refused, false))
        LOG_INFO("redis accepts the credentials again", LOG_STR("user", redis_user_name(p)));
    freeReplyObject(r);
    return rc;
}

/* Opens c's connection (AUTH and SELECT included); 0 or ERR_UNAVAILABLE. */
static int redis_connect(redis_pool_t *p, redis_conn_t *c, err_t *err)
{
    struct timeval tv = {.tv_sec = p->timeout_ms / 1000, .tv_usec = (p->timeout_ms % 1000) * 1000};
    c->ctx = redisConnectWithTimeout(p->host, p->port, tv);
    if (c->ctx == NULL || c->ctx->err != 0 || redisSetTimeout(c->ctx, tv) != REDIS_OK) {
        err_set(err, ERR_UNAVAILABLE, "redis %s:%d unreachable: %s", p->host, p->port,
                c->ctx != NULL ? c->ctx->errstr : "out of memory");
        goto fail;
    }
    if (p->password[0] != '\0' && redis_auth(p, c, err) < 0)
        goto fail;
    if (p->db != 0) {
        char db[8];
        snprintf(db, sizeof(db), "%d", p->db);
        redisReply *r = redisCommandArgv(c->ctx, 2, (const char *[]){"SELECT", db}, NULL);
        bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            err_set(err, ERR_UNAVAILABLE, "redis %s:%d refused SELECT %s", p->host, p->port, db);
            goto fail;
        }
    }
    return 0;
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
static redisReply *redis_error_reply(redis_pool_t *p, redisReply *r, err_t *err)
{
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0) {
        redis_refused(p, r, err);
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

/* Runs one command on c, connecting it first if needed; a command that fails on a
 * connection that was already open is retried once on a fresh one. */
static redisReply *redis_conn_command(redis_pool_t *p, redis_conn_t *c, int argc, const char **argv,
                                      const size_t *lens, err_t *err)
{
    redisReply *r = NULL;
    for (int attempt = 0; attempt < 2 && r == NULL; attempt++) {
        bool reused = c->ctx != NULL;
        if (!reused && redis_connect(p, c, err) < 0)
            break;
        r = redisCommandArgv(c->ctx, argc, argv, lens);
        if (r == NULL) {
            err_set(err, ERR_UNAVAILABLE, "redis: %s", c->ctx->errstr);
            redis_drop(c);
            if (!reused)
                break;
        }
    }
    return r;
}

static redis_conn_t *redis_acquire_or_fail(redis_pool_t *p, err_t *err)
{
    redis_conn_t *c = redis_acquire(p);
    if (c == NULL)
        err_set(err, ERR_UNAVAILABLE, "no redis connection free within %lld ms",
                (long long)p->timeout_ms);
    return c;
}

redisReply *redis_pool_command(redis_pool_t *p, int argc, const char **argv, const size_t *lens,
                               err_t *err)
{
    redis_conn_t *c = redis_acquire_or_fail(p, err);
    if (c == NULL)
        return NULL;
    redisReply *r = redis_conn_command(p, c, argc, argv, lens, err);
    redis_release(p, c);
    return redis_error_reply(p, r, err);
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
    redis_release(p, c);
    return redis_error_reply(p, r, err);
}
