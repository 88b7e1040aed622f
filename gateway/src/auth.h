/*
 * auth: the gateway's authentication policy, as a verdict the HTTP layer turns
 * into a reply (docs/architecture.md §5).
 *
 * A request names what its route needs (auth_need_t); auth_check looks at the
 * Authorization header and decides: the bearer token's checks (auth_jwt.h), then
 * the session and the per-user request budget in one Redis round trip (the budget
 * counts only while the session exists, ratelimit_hit_if), then the role. It
 * replies nothing and sets no header: the verdict carries the claims and the
 * budget's state, and what the reply should say follows from its outcome.
 */
#ifndef GATEWAY_AUTH_H
#define GATEWAY_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "auth_jwt.h"
#include "common/err.h"
#include "ratelimit.h"
#include "redis_pool.h"
#include "session.h"

/* Who may call a route. */
typedef enum {
    AUTH_NONE,     /* anyone; an Authorization header is ignored */
    AUTH_OPTIONAL, /* anyone; a token, when sent, must be valid (unauthenticated) */
    AUTH_USER,     /* a valid token (unauthenticated) */
    AUTH_ADMIN,    /* a valid token (unauthenticated) with role admin (forbidden) */
} auth_need_t;

typedef enum {
    AUTH_OK,              /* the request may go on */
    AUTH_UNAUTHENTICATED, /* no bearer token, or one that is invalid, expired or revoked */
    AUTH_FORBIDDEN,       /* a valid token without the role the route needs */
    AUTH_RATE_LIMITED,    /* the user's request budget is spent for this window */
    AUTH_UNAVAILABLE,     /* the checks could not be made (Redis): err says why */
} auth_outcome_t;

typedef struct auth_verdict {
    auth_outcome_t outcome;
    bool identified;     /* claims are a verified token's with a live session */
    bool token_missing;  /* UNAUTHENTICATED: no bearer token at all (not a bad one) */
    jwt_claims_t claims; /* the token's, as far as they were read ("" otherwise) */
    bool counted;        /* the request counted against `budget` (OK, FORBIDDEN, RATE_LIMITED) */
    const char *policy;  /* the budget's policy name, "user" (static) */
    ratelimit_state_t budget;
    err_t err; /* UNAVAILABLE: the failure */
} auth_verdict_t;

typedef struct auth auth_t;

typedef struct auth_opts {
    const jwt_keys_t *keys;       /* borrowed */
    redis_pool_t *redis;          /* borrowed */
    const session_store_t *store; /* borrowed */
    const char *redis_prefix;     /* of the budget's keys; borrowed */
    int64_t user_request_limit;   /* requests per user per window */
    int64_t user_window_ms;
} auth_opts_t;

/* auth_new: the policy over the borrowed keys, pool and store (they must outlive
 * it). Owned; free with auth_free (NULL accepted). */
auth_t *auth_new(const auth_opts_t *opts);
void auth_free(auth_t *a);

/* auth_check: the verdict on a request that needs `need` and sent the
 * Authorization header `authorization` (NULL when absent), at now_s. Fills *v
 * entirely. Counts the request against the user's budget when the token and its
 * session are good. Thread-safe. */
void auth_check(const auth_t *a, auth_need_t need, const char *authorization, int64_t now_s,
                auth_verdict_t *v);

#endif
