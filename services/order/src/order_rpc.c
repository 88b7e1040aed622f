/*
 * order_rpc: shop.order.v1.OrderService (proto/shop/order/v1/order_service.proto,
 * whose comments list the status codes of every method).
 *
 * Each handler: who is calling (x-user-id, x-user-role) → validate every field (all
 * violations at once, per field) → repository calls → answer. Order ids that are not
 * UUIDs are NOT_FOUND without asking the database; so are other users' orders, so
 * order ids cannot be probed.
 *
 * CreateOrder, in order: the idempotency key is looked up first (a replay is answered
 * from the database even while product-svc is down or a product has been archived
 * since), then the lines are priced by product-svc, then one transaction claims the
 * key, inserts the order PENDING with its lines and first timeline row, and enqueues
 * OrderCreated. Two concurrent creates with one key meet on the key's primary key:
 * the second waits for the first to commit, claims nothing, and answers the winner's
 * order (replayed) or ALREADY_EXISTS if its lines differ.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/page_token.h"
#include "common/rpc.h"
#include "common/text.h"
#include "common/uuid.h"
#include "order.h"
#include "order_repo.h"
#include "shop/order/v1/order_service.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"

#define ORDER_LINES_MAX     100
#define ORDER_QUANTITY_MAX  1000
#define ORDER_LIMIT_DEFAULT 20
#define ORDER_LIMIT_MAX     100
/* The longest product-svc call; a caller's deadline shortens it (3/4 of what is left,
 * the rest is for our own transaction). */
#define ORDER_PRICING_MAX_MS 2000

typedef Shop__Order__V1__OrderService_Service order_service_t;

static svc_t *order_rpc_svc(rpc_call_t *call)
{
    return rpc_call_ctx(call);
}

static db_pool_t *order_rpc_pool(rpc_call_t *call)
{
    return svc_pool(order_rpc_svc(call));
}

static order_ctx_t *order_rpc_state(rpc_call_t *call)
{
    return svc_user(order_rpc_svc(call));
}

/* ORDER_RPC(get_thing, GetThing, GET_THING) { body }: order_rpc_get_thing, the handler
 * of OrderService/GetThing (rpc.h RPC_METHOD). */
#define ORDER_RPC(name, Name, NAME)                                                                \
    RPC_METHOD(order_rpc_, order_service_t, Shop__Order__V1__, SHOP__ORDER__V1__, name, Name, NAME)

/* Who is calling: x-user-id is required (UNAUTHENTICATED without it). */
static int order_rpc_caller(rpc_call_t *call, rpc_caller_t *out, err_t *err)
{
    return rpc_call_caller(call, RPC_CALLER_ANY_ID, out, err);
}

static bool order_rpc_same_id(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

/* An order id the database may be asked about; anything else is NOT_FOUND. */
static int order_rpc_known_id(arena_t *a, const char *id, const char **out, err_t *err)
{
    if (!(*out = uuid_canon(a, id)))
        return err_set_client(err, ERR_NOT_FOUND, "order not found");
    return 0;
}

/* ---- answers ---- */

/* rpc_msg_array builders: one order line, one timeline entry. */
static void *order_rpc_line(arena_t *a, const void *row)
{
    const order_line_t *r = row;
    Shop__Order__V1__OrderLine *l = rpc_msg_new(a, &shop__order__v1__order_line__descriptor);
    l->product_id = (char *)r->product_id;
    l->quantity = r->quantity;
    l->unit_price_cents = r->unit_price_cents;
    l->line_total_cents = (int64_t)r->quantity * r->unit_price_cents;
    return l;
}

static void *order_rpc_step(arena_t *a, const void *row)
{
    const order_step_t *r = row;
    Shop__Order__V1__TimelineEntry *t =
        rpc_msg_new(a, &shop__order__v1__timeline_entry__descriptor);
    t->step = (char *)r->step;
    t->status = order_status_value(r->status);
    t->detail = (char *)r->detail;
    t->at = clock_rfc3339_in(a, r->at_us);
    return t;
}

/* An order_row_t as the Order message (an rpc_msg_array builder). */
static void *order_rpc_order(arena_t *a, const void *row)
{
    const order_row_t *r = row;
    Shop__Order__V1__Order *o = rpc_msg_new(a, &shop__order__v1__order__descriptor);
    o->id = (char *)r->id;
    o->user_id = (char *)r->user_id;
    o->n_lines = r->n_lines;
    o->lines = (Shop__Order__V1__OrderLine **)rpc_msg_array(a, r->lines, r->n_lines,
                                                            sizeof(*r->lines), order_rpc_line);
    o->total_cents = r->total_cents;
    o->currency = (char *)r->currency;
    o->status = order_status_value(r->status);
    o->cancel_reason = order_reason_value(r->cancel_reason);
    o->created_at = clock_rfc3339_in(a, r->created_us);
    o->updated_at = clock_rfc3339_in(a, r->updated_us);
    o->n_timeline = r->n_timeline;
    o->timeline = (Shop__Order__V1__TimelineEntry **)rpc_msg_array(
        a, r->timeline, r->n_timeline, sizeof(*r->timeline), order_rpc_step);
    return o;
}

/* ---- CreateOrder: validation ---- */

/* Checks the lines and copies them, product ids in lower case, into o->lines. */
static void order_rpc_check_lines(arena_t *a, const Shop__Order__V1__CreateOrderRequest *req,
                                  order_row_t *o, err_t *err)
{
    if (req->n_lines < 1 || req->n_lines > ORDER_LINES_MAX) {
        err_field_add(err, "lines", "must hold 1..100 lines");
        return;
    }
    o->n_lines = req->n_lines;
    o->lines = arena_calloc(a, req->n_lines, sizeof(*o->lines));
    for (size_t i = 0; i < req->n_lines; i++) {
        const Shop__Order__V1__RequestedLine *l = req->lines[i];
        char field[64];
        snprintf(field, sizeof(field), "lines[%zu].product_id", i);
        if (!uuid_valid(l->product_id)) {
            err_field_add(err, field, "unknown product: not a uuid");
        } else {
            o->lines[i].product_id = text_ascii_lower(a, l->product_id);
            for (size_t k = 0; k < i; k++)
                if (o->lines[k].product_id &&
                    strcmp(o->lines[k].product_id, o->lines[i].product_id) == 0) {
                    err_field_add(err, field, "product listed twice (also lines[%zu])", k);
                    break;
                }
        }
        if (l->quantity < 1 || l->quantity > ORDER_QUANTITY_MAX) {
            snprintf(field, sizeof(field), "lines[%zu].quantity", i);
            err_field_add(err, field, "must be 1..1000");
        }
        o->lines[i].quantity = l->quantity;
    }
}

static int order_rpc_line_cmp(const void *x, const void *y)
{
    return strcmp(((const order_line_t *)x)->product_id, ((const order_line_t *)y)->product_id);
}

/* The canonical text of a request, whose hash decides whether a repeated key is the
 * same request: its lines sorted by product (each product appears once). */
static const char *order_rpc_canon(arena_t *a, const order_row_t *o)
{
    order_line_t *sorted = arena_memdup(a, o->lines, o->n_lines * sizeof(*o->lines));
    qsort(sorted, o->n_lines, sizeof(*sorted), order_rpc_line_cmp);
    char *out = arena_alloc(a, 4 + o->n_lines * (UUID_STR_LEN + 12)), *p = out;
    p += sprintf(p, "v1\n");
    for (size_t i = 0; i < o->n_lines; i++)
        p += sprintf(p, "%s*%" PRId32 "\n", sorted[i].product_id, sorted[i].quantity);
    return out;
}

static int order_rpc_check_create(rpc_call_t *call, const rpc_caller_t *who,
                                  const Shop__Order__V1__CreateOrderRequest *req, order_row_t *o,
                                  err_t *err)
{
    arena_t *a = rpc_call_arena(call);
    if (!order_rpc_same_id(req->user_id, who->user_id))
        return err_set_client(err, ERR_PERMISSION, "orders can only be placed for the caller");
    if (!uuid_valid(req->user_id))
        err_field_add(err, "user_id", "must be a uuid");
    rpc_idempotency_key_check(req->idempotency_key, err);
    order_rpc_check_lines(a, req, o, err);
    if (err->code != 0)
        return err->code;
    o->user_id = text_ascii_lower(a, req->user_id);
    return 0;
}

/* ---- CreateOrder: pricing through product-svc ---- */

/* The product-svc call's timeout, from what is left of the caller's deadline. */
static int order_rpc_pricing_budget(rpc_call_t *call, int64_t *ms, err_t *err)
{
    int64_t left = rpc_call_remaining_ms(call);
    *ms = left == INT64_MAX ? ORDER_PRICING_MAX_MS : left * 3 / 4;
    if (*ms > ORDER_PRICING_MAX_MS)
        *ms = ORDER_PRICING_MAX_MS;
    if (*ms < 1)
        return err_set_client(err, ERR_TIMEOUT, "deadline exceeded");
    return 0;
}

static int order_rpc_batch_get(rpc_call_t *call, const order_row_t *o,
                               Shop__Product__V1__BatchGetProductsResponse **out, err_t *err)
{
    arena_t *a = rpc_call_arena(call);
    Shop__Product__V1__BatchGetProductsRequest req =
        SHOP__PRODUCT__V1__BATCH_GET_PRODUCTS_REQUEST__INIT;
    req.n_product_ids = o->n_lines;
    req.product_ids = arena_calloc(a, o->n_lines, sizeof(*req.product_ids));
    for (size_t i = 0; i < o->n_lines; i++)
        req.product_ids[i] = (char *)o->lines[i].product_id;
    rpc_metadata_t md[RPC_CONTEXT_MD_MAX];
    size_t n_md = rpc_call_forward(call, md);
    int64_t budget_ms;
    if (order_rpc_pricing_budget(call, &budget_ms, err) != 0)
        return err->code;
    ProtobufCMessage *resp = NULL;
    err_t up = ERR_INIT;
    int rc = rpc_channel_call(order_rpc_state(call)->product,
                              &shop__product__v1__product_service__descriptor, "BatchGetProducts",
                              &req.base, a, &resp, md, n_md, budget_ms, &up);
    if (rc == 0) {
        *out = (Shop__Product__V1__BatchGetProductsResponse *)resp;
        return 0;
    }
    LOG_WARN("pricing failed", LOG_STR("error", up.msg), LOG_STR("code", err_code_name(rc)));
    if (rc == ERR_TIMEOUT && rpc_call_cancelled(call))
        return err_set_client(err, ERR_TIMEOUT, "deadline exceeded");
    if (err_is_transient(rc))
        return err_set(err, ERR_UNAVAILABLE, "product-svc unavailable");
    return err_set(err, ERR_INTERNAL, "product-svc BatchGetProducts: %s: %s", err_code_name(rc),
                   up.msg);
}

static const Shop__Product__V1__Product *
order_rpc_find_product(const Shop__Product__V1__BatchGetProductsResponse *r, const char *id)
{
    for (size_t i = 0; i < r->n_products; i++)
        if (order_rpc_same_id(r->products[i]->id, id))
            return r->products[i];
    return NULL;
}

/* Prices o's lines: unknown and archived products are field violations on their
 * line; products in two currencies are FAILED_PRECONDITION. Fills the unit prices,
 * o->total_cents and o->currency. */
static int order_rpc_price(rpc_call_t *call, order_row_t *o, err_t *err)
{
    Shop__Product__V1__BatchGetProductsResponse *resp = NULL;
    if (order_rpc_batch_get(call, o, &resp, err) != 0)
        return err->code;
    o->total_cents = 0;
    o->currency = NULL;
    bool mixed = false;
    for (size_t i = 0; i < o->n_lines; i++) {
        const Shop__Product__V1__Product *p = order_rpc_find_product(resp, o->lines[i].product_id);
        char field[64];
        snprintf(field, sizeof(field), "lines[%zu].product_id", i);
        if (!p) {
            err_field_add(err, field, "unknown product");
            continue;
        }
        if (!p->active) {
            err_field_add(err, field, "product is archived");
            continue;
        }
        o->lines[i].unit_price_cents = p->price_cents;
        /* price <= 1e9, quantity <= 1000, lines <= 100: far from overflowing */
        o->total_cents += p->price_cents * o->lines[i].quantity;
        if (!o->currency)
            o->currency = p->currency;
        else if (strcmp(o->currency, p->currency) != 0)
            mixed = true;
    }
    if (err->code == 0 && mixed)
        return err_set_client(err, ERR_PRECONDITION,
                              "the products are priced in different currencies");
    return err->code;
}

/* ---- CreateOrder: the transaction ---- */

typedef struct order_create {
    arena_t *a;
    order_row_t *o;
    const char *key;
    const char *canon;
    const char *traceparent;
    bool claimed;
} order_create_t;

static int order_rpc_create_txn(db_conn_t *tx, void *ud, err_t *err)
{
    order_create_t *c = ud;
    if (order_repo_create(tx, c->a, c->o, c->key, c->canon, &c->claimed, err) != 0 || !c->claimed)
        return err->code;
    return order_events_created(tx, c->a, c->o, c->traceparent, err);
}

/* The answer to a key already used: the order it made (replayed) if the request is
 * the same, else ALREADY_EXISTS. */
static int order_rpc_replay(rpc_call_t *call, const char *order_id, bool same, order_row_t *out,
                            err_t *err)
{
    if (!same) {
        err_set_client(err, ERR_CONFLICT, "idempotency key already used with other lines");
        return err_field_add(err, "idempotency_key", "was already used with other lines");
    }
    return order_repo_get(order_rpc_pool(call), rpc_call_arena(call), order_id, true, out, err);
}

/* Looks the key up; *found with *out filled (or an error) when it was used before. */
static int order_rpc_lookup(rpc_call_t *call, const order_row_t *o, const char *key,
                            const char *canon, bool *found, order_row_t *out, err_t *err)
{
    const char *order_id = NULL;
    bool same;
    if (order_repo_idem_find(order_rpc_pool(call), rpc_call_arena(call), o->user_id, key, canon,
                             &order_id, &same, err) != 0)
        return err->code;
    *found = order_id != NULL;
    return *found ? order_rpc_replay(call, order_id, same, out, err) : 0;
}

static int order_rpc_create(rpc_call_t *call, const Shop__Order__V1__CreateOrderRequest *req,
                            order_row_t *o, bool *replayed, err_t *err)
{
    arena_t *a = rpc_call_arena(call);
    rpc_caller_t who = {0};
    if (order_rpc_caller(call, &who, err) != 0 ||
        order_rpc_check_create(call, &who, req, o, err) != 0 ||
        rpc_call_check_deadline(call, err) != 0)
        return err->code;
    const char *canon = order_rpc_canon(a, o);
    if (order_rpc_lookup(call, o, req->idempotency_key, canon, replayed, o, err) != 0 || *replayed)
        return err->code;
    if (order_rpc_price(call, o, err) != 0 || rpc_call_check_deadline(call, err) != 0)
        return err->code;
    char id[UUID_STR_LEN];
    uuid_new(id);
    o->id = arena_strdup(a, id);
    order_create_t c = {.a = a,
                        .o = o,
                        .key = req->idempotency_key,
                        .canon = canon,
                        .traceparent = rpc_call_next_traceparent(call)};
    if (db_txn(order_rpc_pool(call), order_rpc_create_txn, &c, err) != 0)
        return err->code;
    if (!c.claimed) {
        /* A concurrent create with the same key committed first. */
        if (order_rpc_lookup(call, o, req->idempotency_key, canon, replayed, o, err) != 0)
            return err->code;
        if (!*replayed)
            return err_set_client(err, ERR_ABORTED, "idempotency key contended, retry");
        return 0;
    }
    o->timeline = arena_alloc(a, sizeof(*o->timeline));
    o->timeline[0] = (order_step_t){
        .step = "order_created", .status = ORDER_PENDING, .detail = "", .at_us = o->created_us};
    o->n_timeline = 1;
    LOG_INFO("order created", LOG_STR("order_id", o->id), LOG_STR("user_id", o->user_id),
             LOG_INT("lines", o->n_lines), LOG_INT("total_cents", o->total_cents));
    return 0;
}

ORDER_RPC(create_order, CreateOrder, CREATE_ORDER)
{
    order_row_t o = {0};
    bool replayed = false;
    if (order_rpc_create(call, req, &o, &replayed, err) != 0)
        return err->code;
    resp->order = order_rpc_order(a, &o);
    resp->replayed = replayed;
    return 0;
}

/* ---- GetOrder ---- */

/* The order `raw_id` if the caller may see it (owner or admin), else NOT_FOUND. */
static int order_rpc_visible(rpc_call_t *call, const char *raw_id, bool with_timeline,
                             rpc_caller_t *who, order_row_t *out, err_t *err)
{
    const char *id = NULL;
    if (order_rpc_caller(call, who, err) != 0 ||
        order_rpc_known_id(rpc_call_arena(call), raw_id, &id, err) != 0 ||
        rpc_call_check_deadline(call, err) != 0 ||
        order_repo_get(order_rpc_pool(call), rpc_call_arena(call), id, with_timeline, out, err) !=
            0)
        return err->code;
    if (!who->admin && !order_rpc_same_id(out->user_id, who->user_id))
        return err_set_client(err, ERR_NOT_FOUND, "order not found");
    return 0;
}

ORDER_RPC(get_order, GetOrder, GET_ORDER)
{
    rpc_caller_t who = {0};
    order_row_t o;
    if (order_rpc_visible(call, req->order_id, true, &who, &o, err) != 0)
        return err->code;
    resp->order = order_rpc_order(a, &o);
    return 0;
}

/* ---- ListOrders: page tokens ----
 * A token (page_token.h) holds the last row of the previous page, (created_at, id),
 * for the listing it was issued for: the listed user_id, or "*" for every user. */

#define ORDER_TOKEN_KIND "order.ListOrders"

/* The token after `last`; NULL if the row is out of a token's bounds (page_token.h). */
static char *order_rpc_token(rpc_call_t *call, const order_row_t *last, const char *scope)
{
    page_cursor_t c = {.pos = last->created_us};
    snprintf(c.id, sizeof(c.id), "%s", last->id);
    return page_token_encode(svc_page_key(order_rpc_svc(call)), rpc_call_arena(call),
                             ORDER_TOKEN_KIND, scope, &c);
}

static void order_rpc_parse_token(rpc_call_t *call, const char *token, const char *scope,
                                  order_page_query_t *q, err_t *err)
{
    page_cursor_t c;
    if (page_token_field(svc_page_key(order_rpc_svc(call)), ORDER_TOKEN_KIND, scope, token,
                         "user_id", PAGE_CURSOR_ROW, &c, err) != 0)
        return;
    q->has_after = true;
    q->after_us = c.pos;
    q->after_id = arena_strdup(rpc_call_arena(call), c.id);
}

/* ---- ListOrders ---- */

/* The page query; PERMISSION_DENIED for a customer listing another user (or all),
 * field violations for user_id, limit and page_token. *scope is the token scope. */
static int order_rpc_page_query(rpc_call_t *call, const Shop__Order__V1__ListOrdersRequest *req,
                                order_page_query_t *q, const char **scope, err_t *err)
{
    arena_t *a = rpc_call_arena(call);
    rpc_caller_t who = {0};
    if (order_rpc_caller(call, &who, err) != 0)
        return err->code;
    if (!who.admin && !order_rpc_same_id(req->user_id, who.user_id))
        return err_set_client(err, ERR_PERMISSION, "customers can only list their own orders");
    *q = (order_page_query_t){0};
    *scope = "*";
    if (req->user_id[0] && !uuid_valid(req->user_id))
        err_field_add(err, "user_id", "must be a uuid, or \"\" for every user");
    else if (req->user_id[0])
        *scope = q->user_id = text_ascii_lower(a, req->user_id);
    if (req->limit < 0 || req->limit > ORDER_LIMIT_MAX)
        err_field_add(err, "limit", "must be 0..100");
    q->limit = req->limit ? req->limit : ORDER_LIMIT_DEFAULT;
    if (req->page_token[0])
        order_rpc_parse_token(call, req->page_token, *scope, q, err);
    return err->code;
}

ORDER_RPC(list_orders, ListOrders, LIST_ORDERS)
{
    order_page_query_t q;
    const char *scope = NULL;
    order_row_t *rows;
    size_t n;
    bool more;
    if (order_rpc_page_query(call, req, &q, &scope, err) != 0 ||
        rpc_call_check_deadline(call, err) != 0)
        return err->code;
    int limit = q.limit++; /* one more row tells whether there is a next page */
    if (order_repo_list(order_rpc_pool(call), a, &q, &rows, &n, err) != 0)
        return err->code;
    resp->n_orders = rpc_page_take(n, limit, &more);
    resp->orders = (Shop__Order__V1__Order **)rpc_msg_array(a, rows, resp->n_orders, sizeof(*rows),
                                                            order_rpc_order);
    if (more && !(resp->next_page_token = order_rpc_token(call, &rows[limit - 1], scope)))
        return err_set(err, ERR_INTERNAL,
                       "order %s: created_at %" PRId64 " outside page tokens' bounds",
                       rows[limit - 1].id, rows[limit - 1].created_us);
    return 0;
}

/* ---- CancelOrder ---- */

typedef struct order_cancel_req {
    arena_t *a;
    const char *id;
    const rpc_caller_t *who;
    const char *traceparent;
    bool cancelled;
} order_cancel_req_t;

static int order_rpc_cancel_txn(db_conn_t *tx, void *ud, err_t *err)
{
    order_cancel_req_t *c = ud;
    order_row_t o;
    bool found;
    c->cancelled = false;
    if (order_repo_lock(tx, c->a, c->id, &o, &found, err) != 0)
        return err->code;
    if (!found || (!c->who->admin && !order_rpc_same_id(o.user_id, c->who->user_id)))
        return err_set_client(err, ERR_NOT_FOUND, "order not found");
    if (!order_rpc_same_id(o.user_id, c->who->user_id))
        return err_set_client(err, ERR_PERMISSION, "only the owner can cancel an order");
    if (strcmp(o.status, ORDER_PENDING) == 0)
        return err_set_client(err, ERR_PRECONDITION, "the order is still being processed");
    if (strcmp(o.status, ORDER_CONFIRMED) != 0)
        return 0; /* already cancelled: unchanged */
    order_cancel_t cancel = {.order_id = o.id,
                             .from = ORDER_CONFIRMED,
                             .reason = ORDER_REASON_USER_REQUESTED,
                             .detail = "cancelled by the user",
                             .traceparent = c->traceparent};
    return order_saga_cancel(tx, c->a, &cancel, &c->cancelled, err);
}

ORDER_RPC(cancel_order, CancelOrder, CANCEL_ORDER)
{
    rpc_caller_t who = {0};
    order_cancel_req_t c = {.a = a, .who = &who, .traceparent = rpc_call_next_traceparent(call)};
    order_row_t o;
    if (order_rpc_caller(call, &who, err) != 0 ||
        order_rpc_known_id(a, req->order_id, &c.id, err) != 0 ||
        rpc_call_check_deadline(call, err) != 0 ||
        db_txn(order_rpc_pool(call), order_rpc_cancel_txn, &c, err) != 0 ||
        order_repo_get(order_rpc_pool(call), a, c.id, true, &o, err) != 0)
        return err->code;
    resp->order = order_rpc_order(a, &o);
    return 0;
}

static order_service_t order_rpc_impl = SHOP__ORDER__V1__ORDER_SERVICE__INIT(order_rpc_);

ProtobufCService *const order_rpc_service = &order_rpc_impl.base;
