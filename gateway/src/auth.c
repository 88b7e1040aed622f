/*
 * auth: bearer token → session and budget → role (auth.h).
 */
#include "auth.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

#define AUTH_BEARER     "Bearer "
#define AUTH_BEARER_LEN 7

struct auth {
    auth_opts_t o;
};

auth_t *auth_new(const auth_opts_t *opts)
{
    auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        abort();
    a->o = *opts;
    return a;
}

void auth_free(auth_t *a)
{
    free(a);
}

/* The session and the budget in one round trip; 0, ERR_EXHAUSTED (counted, over),
 * ERR_UNAUTHENTICATED (no such session) or the store's failure. */
static int auth_budget(const auth_t *a, auth_verdict_t *v)
{
    char skey[SESSION_KEY_MAX], key[RATELIMIT_KEY_MAX];
    session_key(a->o.store, v->claims.sid, skey);
    ratelimit_key(key, a->o.redis_prefix, v->policy, v->claims.sub);
    int rc = ratelimit_hit_if(a->o.redis, skey, key, a->o.user_request_limit, a->o.user_window_ms,
                              &v->budget, &v->err);
    v->counted = rc == 0 || rc == ERR_EXHAUSTED;
    if (rc == ERR_NOT_FOUND)
        rc = err_set(&v->err, ERR_UNAUTHENTICATED, "session %s does not exist", v->claims.sid);
    return rc;
}

static auth_outcome_t auth_outcome(int rc)
{
    switch (rc) {
    case 0:
        return AUTH_OK;
    case ERR_UNAUTHENTICATED:
        return AUTH_UNAUTHENTICATED;
    case ERR_EXHAUSTED:
        return AUTH_RATE_LIMITED;
    default:
        return AUTH_UNAVAILABLE;
    }
}

void auth_check(const auth_t *a, auth_need_t need, const char *authorization, int64_t now_s,
                auth_verdict_t *v)
{
    memset(v, 0, sizeof(*v));
    err_clear(&v->err);
    v->policy = "user";
    if (need == AUTH_NONE || (need == AUTH_OPTIONAL && authorization == NULL))
        return;
    if (authorization == NULL || strncasecmp(authorization, AUTH_BEARER, AUTH_BEARER_LEN) != 0) {
        v->outcome = AUTH_UNAUTHENTICATED;
        v->token_missing = true;
        return;
    }
    int rc =
        jwt_token_verify(a->o.keys, authorization + AUTH_BEARER_LEN, now_s, &v->claims, &v->err);
    if (rc == 0)
        rc = auth_budget(a, v);
    if (rc == ERR_UNAUTHENTICATED)
        LOG_INFO("token refused", LOG_STR("reason", v->err.msg));
    v->outcome = auth_outcome(rc);
    if (rc != 0)
        return;
    v->identified = true;
    if (need == AUTH_ADMIN && strcmp(v->claims.role, "admin") != 0)
        v->outcome = AUTH_FORBIDDEN;
}
