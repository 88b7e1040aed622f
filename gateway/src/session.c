/*
 * session: Redis-backed sessions and rotating refresh tokens (session.h).
 */
#include "session.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/uuid.h"
#include "crypto.h"

struct session_store {
    redis_pool_t *pool;
    char prefix[64];
    int64_t ttl_ms;
};

/* The session scripts and logout are durable (redis_pool.h): with Sentinels their write
 * is on the replica when answered, so a session answered survives a failover
 * (docs/ha-redis.md). A call the pool retries after losing the master: create writes
 * new random keys (safe); a refresh applied twice is taken for a reuse and ends the
 * session, as the client's own retry with the same token would (no worse); DEL is
 * idempotent. */

/* KEYS: session, first token. ARGV: user_id, role, created, ttl_ms, sid. */
static redis_script_t session_create_lua = REDIS_SCRIPT_DURABLE(
    "redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'role', ARGV[2], 'created', ARGV[3], "
    "'gen', '1')\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "redis.call('SET', KEYS[2], ARGV[5] .. ':1', 'PX', ARGV[4])\n"
    "return 1\n");

/* KEYS: presented token, new token. ARGV: the session key prefix.
 * Returns {0} unknown, {-1, sid} reuse (session deleted), {1, sid, user, role, pttl}. */
static redis_script_t session_refresh_lua =
    REDIS_SCRIPT_DURABLE("local v = redis.call('GET', KEYS[1])\n"
                         "if not v then return {0} end\n"
                         "local sid, gen = string.match(v, '^(.+):(%d+)$')\n"
                         "if not sid then return {0} end\n"
                         "local skey = ARGV[1] .. sid\n"
                         "local s = redis.call('HMGET', skey, 'gen', 'user_id', 'role')\n"
                         "if not s[1] then return {0} end\n"
                         "if s[1] ~= gen then redis.call('DEL', skey) return {-1, sid} end\n"
                         "local ttl = redis.call('PTTL', skey)\n"
                         "if ttl <= 0 then return {0} end\n"
                         "local ng = tostring(tonumber(gen) + 1)\n"
                         "redis.call('HSET', skey, 'gen', ng)\n"
                         "redis.call('SET', KEYS[2], sid .. ':' .. ng, 'PX', ttl)\n"
                         "return {1, sid, s[2], s[3], ttl}\n");

session_store_t *session_store_new(redis_pool_t *pool, const char *prefix, int64_t ttl_ms)
{
    session_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->pool = pool;
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    s->ttl_ms = ttl_ms;
    return s;
}

void session_store_free(session_store_t *s)
{
    free(s);
}

void session_key(const session_store_t *s, const char *sid, char out[SESSION_KEY_MAX])
{
    snprintf(out, SESSION_KEY_MAX, "%ssess:%s", s->prefix, sid);
}

/* A fresh token into out and the key of its hash into key. */
static void session_new_token(const session_store_t *s, char out[SESSION_TOKEN_LEN],
                              char key[SESSION_KEY_MAX])
{
    unsigned char raw[32];
    crypto_random(raw, sizeof(raw));
    crypto_b64url(raw, sizeof(raw), out);
    char hash[CRYPTO_SHA256_HEX_LEN];
    crypto_sha256_hex(out, strlen(out), hash);
    snprintf(key, SESSION_KEY_MAX, "%srt:%s", s->prefix, hash);
}

static void session_copy(char *dst, size_t size, const redisReply *r)
{
    size_t n = r->type == REDIS_REPLY_STRING && r->len < size ? r->len : 0;
    memcpy(dst, n > 0 ? r->str : "", n);
    dst[n] = '\0';
}

int session_create(session_store_t *s, const char *user_id, const char *role, session_grant_t *out,
                   err_t *err)
{
    memset(out, 0, sizeof(*out));
    uuid_new(out->sid);
    snprintf(out->user_id, sizeof(out->user_id), "%s", user_id);
    snprintf(out->role, sizeof(out->role), "%s", role);
    char skey[SESSION_KEY_MAX], tkey[SESSION_KEY_MAX], created[24], ttl[24];
    session_key(s, out->sid, skey);
    session_new_token(s, out->refresh_token, tkey);
    snprintf(created, sizeof(created), "%lld", (long long)(clock_now_us() / 1000));
    snprintf(ttl, sizeof(ttl), "%lld", (long long)s->ttl_ms);
    const char *argv[] = {"2", skey, tkey, user_id, role, created, ttl, out->sid};
    redisReply *r = redis_pool_eval(s->pool, &session_create_lua, 8, argv, err);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    out->expires_in_ms = s->ttl_ms;
    return 0;
}

/* 43 base64url characters, the only shape this store issues. */
static bool session_token_well_formed(const char *t)
{
    size_t n = 0;
    for (; t[n] != '\0' && n < SESSION_TOKEN_LEN; n++) {
        char c = t[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return n == SESSION_TOKEN_LEN - 1;
}

int session_refresh(session_store_t *s, const char *refresh_token, session_grant_t *out, err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (refresh_token == NULL || !session_token_well_formed(refresh_token))
        return err_set(err, ERR_UNAUTHENTICATED, "refresh token malformed");
    char old_hash[CRYPTO_SHA256_HEX_LEN], old_key[SESSION_KEY_MAX], new_key[SESSION_KEY_MAX];
    char sprefix[SESSION_KEY_MAX];
    crypto_sha256_hex(refresh_token, strlen(refresh_token), old_hash);
    snprintf(old_key, sizeof(old_key), "%srt:%s", s->prefix, old_hash);
    snprintf(sprefix, sizeof(sprefix), "%ssess:", s->prefix);
    session_new_token(s, out->refresh_token, new_key);
    const char *argv[] = {"2", old_key, new_key, sprefix};
    redisReply *r = redis_pool_eval(s->pool, &session_refresh_lua, 4, argv, err);
    if (r == NULL)
        return err->code;
    int rc = 0;
    long long status = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                               r->element[0]->type == REDIS_REPLY_INTEGER
                           ? r->element[0]->integer
                           : 0;
    if (status == 1 && r->elements == 5) {
        session_copy(out->sid, sizeof(out->sid), r->element[1]);
        session_copy(out->user_id, sizeof(out->user_id), r->element[2]);
        session_copy(out->role, sizeof(out->role), r->element[3]);
        out->expires_in_ms = r->element[4]->integer;
    } else if (status == -1 && r->elements == 2) {
        char sid[SESSION_ID_LEN];
        session_copy(sid, sizeof(sid), r->element[1]);
        rc = err_set(err, ERR_UNAUTHENTICATED, "refresh token reuse: session %s revoked", sid);
    } else {
        rc = err_set(err, ERR_UNAUTHENTICATED, "refresh token unknown or session ended");
    }
    freeReplyObject(r);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int session_delete(session_store_t *s, const char *sid, err_t *err)
{
    char skey[SESSION_KEY_MAX];
    session_key(s, sid, skey);
    const char *argv[] = {"DEL", skey};
    redisReply *r = redis_pool_command_durable(s->pool, 2, argv, NULL, err);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return 0;
}
