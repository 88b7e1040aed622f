/*
 * routes_users: the caller's own account (/users/me...), through user-svc. The
 * user id always comes from the token, never from the request.
 */
#include <string.h>

#include "routes.h"
#include "shop/user/v1/user_service.pb-c.h"

static const char *const users_deny_patch[] = {"user_id", "update_mask", NULL};
static const char *const users_deny_deposit[] = {"user_id", "idempotency_key", NULL};
static const char *const users_list_query[] = {"limit", "page_token", NULL};
static const char *const users_no_query[] = {NULL};

/* Done functions: the whole response, or one field of it. */
static void users_done_whole(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0)
        http_reply_error(r, err, 409, NULL);
    else
        routes_reply_message(r, 200, resp);
}

static void users_done_preferences(http_req_t *r, int code, ProtobufCMessage *resp,
                                   const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, NULL);
        return;
    }
    /* GetPreferencesResponse and UpdatePreferencesResponse share their layout. */
    const Shop__User__V1__GetPreferencesResponse *res = (const void *)resp;
    routes_reply_message(r, 200, res->preferences != NULL ? &res->preferences->base : NULL);
}

void routes_users_get_me(http_req_t *r)
{
    if (!http_query_only(r, users_no_query))
        return;
    Shop__User__V1__GetUserRequest req = SHOP__USER__V1__GET_USER_REQUEST__INIT;
    req.user_id = (char *)http_user_id(r);
    routes_call(r, UPSTREAM_USER, "GetUser", &req.base, users_done_whole);
}

void routes_users_patch_me(http_req_t *r)
{
    Shop__User__V1__UpdateProfileRequest *req = (void *)http_body_message(
        r, &shop__user__v1__update_profile_request__descriptor, users_deny_patch, true);
    if (req == NULL || !routes_update_mask(r, &req->update_mask, &req->n_update_mask))
        return;
    req->user_id = (char *)http_user_id(r);
    routes_call(r, UPSTREAM_USER, "UpdateProfile", &req->base, users_done_whole);
}

void routes_users_get_preferences(http_req_t *r)
{
    if (!http_query_only(r, users_no_query))
        return;
    Shop__User__V1__GetPreferencesRequest req = SHOP__USER__V1__GET_PREFERENCES_REQUEST__INIT;
    req.user_id = (char *)http_user_id(r);
    routes_call(r, UPSTREAM_USER, "GetPreferences", &req.base, users_done_preferences);
}

void routes_users_put_preferences(http_req_t *r)
{
    static char *all[] = {"language", "currency", "marketing_opt_in"};
    Shop__User__V1__UpdatePreferencesRequest *req = (void *)http_body_message(
        r, &shop__user__v1__update_preferences_request__descriptor, users_deny_patch, true);
    if (req == NULL)
        return;
    /* PUT replaces the whole object: every field must be there. */
    err_t err = ERR_INIT;
    for (size_t i = 0; i < 3; i++) {
        if (json_object_get(http_body_json(r), all[i]) == NULL)
            err_field_add(&err, all[i], "required");
    }
    if (err.n_fields > 0) {
        http_reply_problem(r, 400, "invalid request", &err);
        return;
    }
    req->user_id = (char *)http_user_id(r);
    req->update_mask = all;
    req->n_update_mask = 3;
    routes_call(r, UPSTREAM_USER, "UpdatePreferences", &req->base, users_done_preferences);
}

void routes_users_get_wallet(http_req_t *r)
{
    Shop__User__V1__GetWalletRequest req = SHOP__USER__V1__GET_WALLET_REQUEST__INIT;
    const char *token;
    if (!http_query_only(r, users_list_query) || !routes_list_params(r, &req.limit, &token))
        return;
    req.page_token = (char *)token;
    req.user_id = (char *)http_user_id(r);
    routes_call(r, UPSTREAM_USER, "GetWallet", &req.base, users_done_whole);
}

static void users_deposit_done(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, routes_idempotency_renames);
        return;
    }
    /* A replay answers as the first request did (draft-ietf-httpapi-idempotency-key-
     * header): 201; `replayed` in the body and Idempotent-Replayed tell them apart. A
     * key reused with another amount is 422 (problem.h). */
    const Shop__User__V1__DepositResponse *res = (const void *)resp;
    if (res->replayed)
        http_header_add(r, "Idempotent-Replayed", "true");
    routes_reply_message(r, 201, resp);
}

void routes_users_deposit(http_req_t *r)
{
    const char *key = routes_idempotency_key(r);
    if (key == NULL)
        return;
    Shop__User__V1__DepositRequest *req = (void *)http_body_message(
        r, &shop__user__v1__deposit_request__descriptor, users_deny_deposit, true);
    if (req == NULL)
        return;
    req->user_id = (char *)http_user_id(r);
    req->idempotency_key = (char *)key;
    routes_call(r, UPSTREAM_USER, "Deposit", &req->base, users_deposit_done);
}
