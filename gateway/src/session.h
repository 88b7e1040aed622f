/*
 * session: login sessions and refresh tokens in Redis (docs/architecture.md §5).
 *
 * Keys (all under the configured prefix, e.g. "gw:"):
 *   <prefix>sess:<sid>   hash {user_id, role, created (ms), gen}; expires at the
 *                        session's absolute end (REFRESH_TOKEN_TTL after login),
 *                        never extended
 *   <prefix>rt:<sha256>  "<sid>:<gen>" for every refresh token ever issued in the
 *                        session, expiring with it
 *
 * A refresh token is 256 random bits (43 base64url characters); only its SHA-256
 * is stored. Using the token of the current generation rotates: gen + 1 and a new
 * token. Presenting a token of an older generation means it was copied: the whole
 * session is deleted (both the thief's and the user's tokens die). Logout deletes
 * the session, so access tokens naming its sid are refused at once. Every step
 * that reads and writes runs as one Lua script, so concurrent refreshes cannot
 * both win.
 */
#ifndef GATEWAY_SESSION_H
#define GATEWAY_SESSION_H

#include <stdint.h>

#include "common/err.h"
#include "redis_pool.h"

#define SESSION_TOKEN_LEN 44 /* 43 characters and the NUL */
#define SESSION_ID_LEN    37
#define SESSION_FIELD_MAX 64
#define SESSION_KEY_MAX   192 /* a Redis key of this store: prefix + "sess:" + id */

typedef struct session_store session_store_t;

/* What login and refresh hand back to the client. */
typedef struct session_grant {
    char sid[SESSION_ID_LEN];
    char user_id[SESSION_FIELD_MAX];
    char role[SESSION_FIELD_MAX];
    char refresh_token[SESSION_TOKEN_LEN];
    int64_t expires_in_ms; /* until the session's absolute end */
} session_grant_t;

/* session_store_new: sessions in `pool` (borrowed, must outlive the store) under
 * `prefix` (copied), each living ttl_ms. Returns an owned store. */
session_store_t *session_store_new(redis_pool_t *pool, const char *prefix, int64_t ttl_ms);

/* session_store_free: NULL is accepted. */
void session_store_free(session_store_t *s);

/* session_create: a new session for user_id/role with its first refresh token.
 * Returns 0 and *out, or ERR_UNAVAILABLE / ERR_INTERNAL (Redis). Thread-safe. */
int session_create(session_store_t *s, const char *user_id, const char *role, session_grant_t *out,
                   err_t *err);

/* session_key: the Redis key of session sid. A session exists (not logged out,
 * revoked or expired) while this key does: the gateway checks it in the same round
 * trip as the caller's request budget (ratelimit_hit_if). */
void session_key(const session_store_t *s, const char *sid, char out[SESSION_KEY_MAX]);

/* session_refresh: rotates `refresh_token`: 0 and *out with the session's
 * identity and a new token. ERR_UNAUTHENTICATED for a token that is malformed,
 * unknown or whose session ended; also for a token of an older generation, after
 * deleting its session (err->msg says "reuse"). Thread-safe. */
int session_refresh(session_store_t *s, const char *refresh_token, session_grant_t *out,
                    err_t *err);

/* session_delete: ends session sid (no error when it does not exist). Thread-safe. */
int session_delete(session_store_t *s, const char *sid, err_t *err);

#endif
