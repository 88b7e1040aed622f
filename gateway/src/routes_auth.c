/*
 * routes_auth: register, login, refresh, logout (docs/architecture.md §5).
 *
 * Login and register are rate-limited per client IP and per account (the
 * canonical email, hashed so no address is stored in Redis): a refused
 * attempt answers 429 with Retry-After before any password work is done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/text.h"
#include "crypto.h"
#include "common/json_pb.h"
#include "problem.h"
#include "ratelimit.h"
#include "routes.h"
#include "shop/gateway/v1/gateway.pb-c.h"
#include "shop/user/v1/user_service.pb-c.h"

/* One rate limit hit, told in RateLimit headers; false after replying 429 (or 503
 * when Redis fails). */
static bool auth_limit(http_req_t *r, const char *name, const char *subject, int64_t limit)
{
    gateway_t *app = routes_app(r);
    char key[RATELIMIT_KEY_MAX];
    ratelimit_state_t st;
    err_t err = ERR_INIT;
    ratelimit_key(key, app->cfg->redis_prefix, name, subject);
    int rc = ratelimit_hit(app->redis, key, limit, app->cfg->auth_window_ms, &st, &err);
    if (rc == 0 || rc == ERR_EXHAUSTED)
        http_ratelimit_headers(r, name, &st, rc == ERR_EXHAUSTED);
    if (rc == 0)
        return true;
    if (rc == ERR_EXHAUSTED) {
        LOG_WARN("rate limited", LOG_STR("limit", name), LOG_STR("client", http_client_ip(r)));
        http_reply_problem(r, 429, "too many attempts, retry later", NULL);
    } else {
        http_reply_error(r, &err, 409, NULL);
    }
    return false;
}

/* The per-IP and per-account limits of one kind of attempt. The account is the
 * canonical email (text_email_canon, the form user-svc finds it by), so no spelling
 * of one address gets a budget of its own. */
static bool auth_limits(http_req_t *r, const char *kind, const char *email, int64_t ip_limit,
                        int64_t account_limit)
{
    char name[32], hash[CRYPTO_SHA256_HEX_LEN];
    const char *canon = text_email_canon(http_arena(r), email);
    crypto_sha256_hex(canon, strlen(canon), hash);
    snprintf(name, sizeof(name), "%s-ip", kind);
    if (!auth_limit(r, name, http_client_ip(r), ip_limit))
        return false;
    snprintf(name, sizeof(name), "%s-account", kind);
    return auth_limit(r, name, hash, account_limit);
}

/* --------------------------------------------------------------- register ---- */

static void auth_register_done(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, NULL);
        return;
    }
    const Shop__User__V1__CreateUserResponse *res = (const void *)resp;
    http_header_add(r, "Location", "/api/v1/users/me");
    routes_reply_message(r, 201, res->user != NULL ? &res->user->base : NULL);
}

void routes_auth_register(http_req_t *r)
{
    gateway_t *app = routes_app(r);
    Shop__User__V1__CreateUserRequest *req =
        (void *)http_body_message(r, &shop__user__v1__create_user_request__descriptor, NULL, true);
    if (req == NULL)
        return;
    if (!auth_limits(r, "register", req->email, app->cfg->register_ip_limit,
                     app->cfg->register_account_limit))
        return;
    routes_call(r, UPSTREAM_USER, "CreateUser", &req->base, auth_register_done);
}

/* ------------------------------------------------------------ tokens out ---- */

/* The token pair for a session: a new access token and the session's refresh
 * token. */
static void auth_reply_tokens(http_req_t *r, const session_grant_t *g)
{
    gateway_t *app = routes_app(r);
    err_t err = ERR_INIT;
    char *access =
        jwt_token_issue(app->keys, g->user_id, g->role, g->sid, clock_now_us() / 1000000, &err);
    if (access == NULL) {
        http_reply_error(r, &err, 409, NULL);
        return;
    }
    Shop__Gateway__V1__TokenResponse t = SHOP__GATEWAY__V1__TOKEN_RESPONSE__INIT;
    t.access_token = access;
    t.token_type = "Bearer";
    t.expires_in = jwt_keys_ttl_s(app->keys);
    t.refresh_token = (char *)g->refresh_token;
    t.refresh_expires_in = g->expires_in_ms / 1000;
    t.session_id = (char *)g->sid;
    routes_reply_message(r, 200, &t.base);
    free(access);
}

/* ------------------------------------------------------------------ login ---- */

static void auth_login_done(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code == ERR_UNAUTHENTICATED || code == ERR_NOT_FOUND) {
        http_reply_problem(r, 401, "invalid email or password", NULL);
        return;
    }
    if (code != 0) {
        http_reply_error(r, err, 409, NULL);
        return;
    }
    const Shop__User__V1__VerifyCredentialsResponse *res = (const void *)resp;
    char role[32];
    err_t e = ERR_INIT;
    if (res->user == NULL || !json_pb_enum_name(&shop__user__v1__role__descriptor, res->user->role,
                                                role, sizeof(role))) {
        err_set(&e, ERR_INTERNAL, "VerifyCredentials answered no user or no role");
        http_reply_error(r, &e, 409, NULL);
        return;
    }
    session_grant_t g;
    if (session_create(routes_app(r)->sessions, res->user->id, role, &g, &e) < 0) {
        http_reply_error(r, &e, 409, NULL);
        return;
    }
    LOG_INFO("login", LOG_STR("user_id", res->user->id), LOG_STR("sid", g.sid));
    auth_reply_tokens(r, &g);
}

void routes_auth_login(http_req_t *r)
{
    gateway_t *app = routes_app(r);
    Shop__User__V1__VerifyCredentialsRequest *req = (void *)http_body_message(
        r, &shop__user__v1__verify_credentials_request__descriptor, NULL, true);
    if (req == NULL)
        return;
    if (!auth_limits(r, "login", req->email, app->cfg->login_ip_limit,
                     app->cfg->login_account_limit))
        return;
    routes_call(r, UPSTREAM_USER, "VerifyCredentials", &req->base, auth_login_done);
}

/* ---------------------------------------------------------------- refresh ---- */

void routes_auth_refresh(http_req_t *r)
{
    Shop__Gateway__V1__RefreshRequest *req =
        (void *)http_body_message(r, &shop__gateway__v1__refresh_request__descriptor, NULL, true);
    if (req == NULL)
        return;
    session_grant_t g;
    err_t err = ERR_INIT;
    int rc = session_refresh(routes_app(r)->sessions, req->refresh_token, &g, &err);
    if (rc == ERR_UNAUTHENTICATED) {
        LOG_WARN("refresh refused", LOG_STR("reason", err.msg),
                 LOG_STR("client", http_client_ip(r)));
        http_reply_problem(r, 401, "the refresh token is invalid, used or expired", NULL);
        return;
    }
    if (rc != 0) {
        http_reply_error(r, &err, 409, NULL);
        return;
    }
    auth_reply_tokens(r, &g);
}

/* ----------------------------------------------------------------- logout ---- */

void routes_auth_logout(http_req_t *r)
{
    if (http_body_message(r, &shop__gateway__v1__empty__descriptor, NULL, false) == NULL)
        return;
    err_t err = ERR_INIT;
    if (session_delete(routes_app(r)->sessions, http_session_id(r), &err) < 0) {
        http_reply_error(r, &err, 409, NULL);
        return;
    }
    LOG_INFO("logout", LOG_STR("user_id", http_user_id(r)), LOG_STR("sid", http_session_id(r)));
    http_reply_empty(r, 204);
}
