/*
 * routes: the REST API of docs/architecture.md §5, one file per resource (routes_auth.c,
 * routes_users.c, routes_products.c, routes_orders.c, routes_ops.c), and the
 * small helpers they share.
 *
 * Response bodies are the services' messages through json_pb. Where an RPC
 * answers one resource (GetProduct → Product, GetOrder → Order), the body is
 * that resource itself; where it answers several things (GetUser → user and
 * profile, lists with next_page_token), it is the whole response message.
 */
#ifndef GATEWAY_ROUTES_H
#define GATEWAY_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway.h"
#include "http.h"
#include "router.h"

/* routes_app: the gateway every handler shares (main wires it into the server). */
static inline gateway_t *routes_app(const http_req_t *r)
{
    return http_app(r);
}

/* routes_table: every route; n gets the count. Static storage. */
const router_route_t *routes_table(size_t *n);

/* Handlers, by resource. */
void routes_auth_register(http_req_t *r);
void routes_auth_login(http_req_t *r);
void routes_auth_refresh(http_req_t *r);
void routes_auth_logout(http_req_t *r);

void routes_users_get_me(http_req_t *r);
void routes_users_patch_me(http_req_t *r);
void routes_users_get_preferences(http_req_t *r);
void routes_users_put_preferences(http_req_t *r);
void routes_users_get_wallet(http_req_t *r);
void routes_users_deposit(http_req_t *r);

void routes_products_list(http_req_t *r);
void routes_products_get(http_req_t *r);
void routes_products_create(http_req_t *r);
void routes_products_patch(http_req_t *r);
void routes_products_archive(http_req_t *r);
void routes_products_put_stock(http_req_t *r);

void routes_orders_create(http_req_t *r);
void routes_orders_list(http_req_t *r);
void routes_orders_get(http_req_t *r);
void routes_orders_cancel(http_req_t *r);

void routes_ops_healthz(http_req_t *r);
void routes_ops_readyz(http_req_t *r);
void routes_ops_metrics(http_req_t *r);
void routes_ops_openapi(http_req_t *r);

/* ------------------------------------------------------------- helpers ---- */

/* routes_call: http_upstream to the service of row `up` (upstream.h): its channel
 * and its descriptor; `done` runs when the call ends. */
void routes_call(http_req_t *r, upstream_id_t up, const char *method, const ProtobufCMessage *req,
                 http_done_fn done);

/* routes_reply_message: status with msg rendered by json_pb (msg NULL → {}). */
void routes_reply_message(http_req_t *r, int status, const ProtobufCMessage *msg);

/* routes_list_params: `limit` (1..100; absent → 0, the service default) and
 * `page_token` (≤ 512 characters) from the query; false after replying 400. */
bool routes_list_params(http_req_t *r, int32_t *limit, const char **page_token);

/* routes_idempotency_key: the Idempotency-Key header, 1..128 printable ASCII;
 * NULL after replying 400 when missing or malformed. */
const char *routes_idempotency_key(http_req_t *r);

/* routes_path_id: the {id} capture when it is a UUID (lower-cased copy); NULL
 * after replying 404 with `not_found` as the detail otherwise (nothing can exist
 * there). not_found is the service's own NOT_FOUND message ("order not found"), so
 * a malformed id answers byte for byte as an unknown one or somebody else's. */
const char *routes_path_id(http_req_t *r, const char *not_found);

/* routes_update_mask: the top-level keys of the body (the fields a PATCH
 * names) into an arena array; false after replying 400 when there are none. */
bool routes_update_mask(http_req_t *r, char ***mask, size_t *n);

/* Renames of service field paths for problem errors[]: the idempotency key
 * comes from a header. */
extern const char *const routes_idempotency_renames[];

#endif
