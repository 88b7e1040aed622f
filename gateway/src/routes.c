/*
 * routes: the route table and the helpers every resource shares (routes.h).
 */
#include "routes.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/uuid.h"
#include "common/json_pb.h"

#define ROUTES_PAGE_TOKEN_MAX 512
#define ROUTES_IDEM_KEY_MAX   128

#define ROUTE(m, p, a, h)                                                                          \
    {                                                                                              \
        m, p, &(const http_route_t)                                                                \
        {                                                                                          \
            a, h                                                                                   \
        }                                                                                          \
    }

/* Every route of the API. tests/e2e/gateway checks this list against
 * gateway/openapi.json both ways. */
static const router_route_t routes[] = {
    ROUTE("POST", "/api/v1/auth/register", AUTH_NONE, routes_auth_register),
    ROUTE("POST", "/api/v1/auth/login", AUTH_NONE, routes_auth_login),
    ROUTE("POST", "/api/v1/auth/refresh", AUTH_NONE, routes_auth_refresh),
    ROUTE("POST", "/api/v1/auth/logout", AUTH_USER, routes_auth_logout),
    ROUTE("GET", "/api/v1/users/me", AUTH_USER, routes_users_get_me),
    ROUTE("PATCH", "/api/v1/users/me", AUTH_USER, routes_users_patch_me),
    ROUTE("GET", "/api/v1/users/me/preferences", AUTH_USER, routes_users_get_preferences),
    ROUTE("PUT", "/api/v1/users/me/preferences", AUTH_USER, routes_users_put_preferences),
    ROUTE("GET", "/api/v1/users/me/wallet", AUTH_USER, routes_users_get_wallet),
    ROUTE("POST", "/api/v1/users/me/wallet/deposits", AUTH_USER, routes_users_deposit),
    ROUTE("GET", "/api/v1/products", AUTH_OPTIONAL, routes_products_list),
    ROUTE("POST", "/api/v1/products", AUTH_ADMIN, routes_products_create),
    ROUTE("GET", "/api/v1/products/{id}", AUTH_OPTIONAL, routes_products_get),
    ROUTE("PATCH", "/api/v1/products/{id}", AUTH_ADMIN, routes_products_patch),
    ROUTE("DELETE", "/api/v1/products/{id}", AUTH_ADMIN, routes_products_archive),
    ROUTE("PUT", "/api/v1/products/{id}/stock", AUTH_ADMIN, routes_products_put_stock),
    ROUTE("POST", "/api/v1/orders", AUTH_USER, routes_orders_create),
    ROUTE("GET", "/api/v1/orders", AUTH_USER, routes_orders_list),
    ROUTE("GET", "/api/v1/orders/{id}", AUTH_USER, routes_orders_get),
    ROUTE("POST", "/api/v1/orders/{id}/cancel", AUTH_USER, routes_orders_cancel),
    ROUTE("GET", "/healthz", AUTH_NONE, routes_ops_healthz),
    ROUTE("GET", "/readyz", AUTH_NONE, routes_ops_readyz),
    ROUTE("GET", "/metrics", AUTH_NONE, routes_ops_metrics),
    ROUTE("GET", "/api/v1/openapi.json", AUTH_NONE, routes_ops_openapi),
};

const char *const routes_idempotency_renames[] = {"idempotency_key", "Idempotency-Key", NULL};

const router_route_t *routes_table(size_t *n)
{
    *n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

void routes_call(http_req_t *r, upstream_id_t up, const char *method, const ProtobufCMessage *req,
                 http_done_fn done)
{
    http_upstream(r, routes_app(r)->upstream[up], upstream_defs[up].service, method, req, done);
}

void routes_reply_message(http_req_t *r, int status, const ProtobufCMessage *msg)
{
    http_reply_json(r, status, msg != NULL ? json_pb_to_json(msg) : json_object());
}

static void routes_bad_param(http_req_t *r, const char *field, const char *desc)
{
    err_t err = ERR_INIT;
    err_field_add(&err, field, "%s", desc);
    http_reply_problem(r, 400, "invalid request", &err);
}

bool routes_list_params(http_req_t *r, int32_t *limit, const char **page_token)
{
    const char *l = http_query(r, "limit");
    *limit = 0;
    if (l != NULL) {
        char *end;
        errno = 0;
        long v = strtol(l, &end, 10);
        if (l[0] == '\0' || *end != '\0' || errno != 0 || v < 1 || v > 100 ||
            !isdigit((unsigned char)l[0])) {
            routes_bad_param(r, "query.limit", "must be an integer between 1 and 100");
            return false;
        }
        *limit = (int32_t)v;
    }
    const char *t = http_query(r, "page_token");
    if (t != NULL && strlen(t) > ROUTES_PAGE_TOKEN_MAX) {
        routes_bad_param(r, "query.page_token", "too long");
        return false;
    }
    *page_token = t != NULL ? t : "";
    return true;
}

const char *routes_idempotency_key(http_req_t *r)
{
    const char *k = http_header(r, "Idempotency-Key");
    size_t n = k != NULL ? strlen(k) : 0;
    bool ok = n >= 1 && n <= ROUTES_IDEM_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = k[i] >= 0x20 && k[i] <= 0x7e;
    if (!ok) {
        routes_bad_param(r, "Idempotency-Key",
                         "header required: 1..128 printable ASCII characters");
        return NULL;
    }
    return k;
}

const char *routes_path_id(http_req_t *r, const char *not_found)
{
    const char *id = http_param(r, "id");
    if (id == NULL || !uuid_valid(id)) {
        http_reply_problem(r, 404, not_found, NULL);
        return NULL;
    }
    char *low = arena_strdup(http_arena(r), id);
    for (char *p = low; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return low;
}

bool routes_update_mask(http_req_t *r, char ***mask, size_t *n)
{
    const json_t *body = http_body_json(r);
    *n = body != NULL ? json_object_size(body) : 0;
    if (*n == 0) {
        http_reply_problem(r, 400, "the body must name at least one field to change", NULL);
        return false;
    }
    *mask = arena_calloc(http_arena(r), *n, sizeof(char *));
    const char *key;
    json_t *v;
    size_t i = 0;
    json_object_foreach((json_t *)body, key, v)
    {
        (*mask)[i++] = arena_strdup(http_arena(r), key);
    }
    return true;
}
