/*
 * routes_orders: orders, through order-svc. Customers see their own orders
 * only; somebody else's order is 404 (the service answers NOT_FOUND), so ids
 * cannot be probed: an unknown id, a malformed one and somebody else's order get
 * the same status and body. FAILED_PRECONDITION means 422 when creating (the request
 * cannot be processed as asked: products priced in different currencies) and
 * 409 when cancelling (the order is still PENDING). An Idempotency-Key reused with
 * other lines is 422 (problem.h).
 */
#include <string.h>

#include "common/uuid.h"
#include "routes.h"
#include "shop/gateway/v1/gateway.pb-c.h"
#include "shop/order/v1/order_service.pb-c.h"

/* order-svc's NOT_FOUND for an unknown id and for somebody else's order alike. */
#define ORDERS_NOT_FOUND "order not found"

static const char *const orders_deny_create[] = {"user_id", "idempotency_key", NULL};
static const char *const orders_list_query[] = {"limit", "page_token", "user_id", NULL};
static const char *const orders_no_query[] = {NULL};

/* GetOrder and CancelOrder answer {order}: the order. */
static void orders_done_order(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 409, NULL);
        return;
    }
    const Shop__Order__V1__GetOrderResponse *res = (const void *)resp;
    routes_reply_message(r, 200, res->order != NULL ? &res->order->base : NULL);
}

static void orders_create_done(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0) {
        http_reply_error(r, err, 422, routes_idempotency_renames);
        return;
    }
    const Shop__Order__V1__CreateOrderResponse *res = (const void *)resp;
    if (res->order != NULL)
        http_header_add(r, "Location",
                        arena_sprintf(http_arena(r), "/api/v1/orders/%s", res->order->id));
    /* A replay (the same Idempotency-Key and lines) answers as the first request did
     * (draft-ietf-httpapi-idempotency-key-header): 202, with the order as it is now;
     * Idempotent-Replayed tells a client that cares. */
    if (res->replayed)
        http_header_add(r, "Idempotent-Replayed", "true");
    routes_reply_message(r, 202, res->order != NULL ? &res->order->base : NULL);
}

void routes_orders_create(http_req_t *r)
{
    const char *key = routes_idempotency_key(r);
    if (key == NULL)
        return;
    Shop__Order__V1__CreateOrderRequest *req = (void *)http_body_message(
        r, &shop__order__v1__create_order_request__descriptor, orders_deny_create, true);
    if (req == NULL)
        return;
    req->user_id = (char *)http_user_id(r);
    req->idempotency_key = (char *)key;
    routes_call(r, UPSTREAM_ORDER, "CreateOrder", &req->base, orders_create_done);
}

static void orders_list_done(http_req_t *r, int code, ProtobufCMessage *resp, const err_t *err)
{
    if (code != 0)
        http_reply_error(r, err, 409, NULL);
    else
        routes_reply_message(r, 200, resp);
}

void routes_orders_list(http_req_t *r)
{
    Shop__Order__V1__ListOrdersRequest req = SHOP__ORDER__V1__LIST_ORDERS_REQUEST__INIT;
    const char *token;
    if (!http_query_only(r, orders_list_query) || !routes_list_params(r, &req.limit, &token))
        return;
    req.page_token = (char *)token;
    /* Customers list their own orders; admins anybody's (user_id) or all. */
    const char *user = http_query(r, "user_id");
    if (user != NULL && !http_is_admin(r) && strcmp(user, http_user_id(r)) != 0) {
        http_reply_problem(r, 403, "only admins list other users' orders", NULL);
        return;
    }
    if (user != NULL && !uuid_valid(user)) {
        err_t err = ERR_INIT;
        err_field_add(&err, "query.user_id", "must be a UUID");
        http_reply_problem(r, 400, "invalid request", &err);
        return;
    }
    req.user_id = (char *)(user != NULL ? user : http_is_admin(r) ? "" : http_user_id(r));
    routes_call(r, UPSTREAM_ORDER, "ListOrders", &req.base, orders_list_done);
}

void routes_orders_get(http_req_t *r)
{
    const char *id = routes_path_id(r, ORDERS_NOT_FOUND);
    if (id == NULL || !http_query_only(r, orders_no_query))
        return;
    Shop__Order__V1__GetOrderRequest req = SHOP__ORDER__V1__GET_ORDER_REQUEST__INIT;
    req.order_id = (char *)id;
    routes_call(r, UPSTREAM_ORDER, "GetOrder", &req.base, orders_done_order);
}

void routes_orders_cancel(http_req_t *r)
{
    const char *id = routes_path_id(r, ORDERS_NOT_FOUND);
    if (id == NULL ||
        http_body_message(r, &shop__gateway__v1__empty__descriptor, NULL, false) == NULL)
        return;
    Shop__Order__V1__CancelOrderRequest req = SHOP__ORDER__V1__CANCEL_ORDER_REQUEST__INIT;
    req.order_id = (char *)id;
    routes_call(r, UPSTREAM_ORDER, "CancelOrder", &req.base, orders_done_order);
}
