/*
 * product_saga: product-svc's steps of the choreography (docs/architecture.md §4 steps 2, 7,
 * 8). Each handler runs in the saga consumer's transaction, which already holds the
 * event's inbox row, so exact redeliveries never get here. What is left — the same
 * step under a new ce_id, a cancellation that overtook its order — is decided from
 * order_states, read and written under the order's lock ("order:<id>", which the saga
 * consumer takes with the products' inventory rows before the handler runs: see
 * product_saga_locks_of):
 *
 *   state \ event   OrderCreated             OrderConfirmed       OrderCancelled
 *   (none)          reserve all or none:     ignored (warning)    → TOMBSTONE,
 *                   → RESERVED, StockReserved                      StockReleased(NONE)
 *                   → REJECTED, StockRejected
 *   RESERVED        duplicate: ignored       → COMMITTED,         → RELEASED (reserved
 *                                            StockCommitted       → available), StockReleased
 *   COMMITTED       duplicate: ignored       duplicate: ignored   → RELEASED (sold →
 *                                                                 available), StockReleased
 *   REJECTED        duplicate: ignored       ignored (warning)    → RELEASED,
 *                                                                 StockReleased(NONE)
 *   TOMBSTONE       → RELEASED, StockRejected(ORDER_CANCELLED)    duplicate: ignored
 *   RELEASED        ignored                  ignored (warning)    duplicate: ignored
 *
 * Every event is checked against the field rules of the saga events (saga_check.h)
 * before it has any effect. An OrderCreated that breaks them reserves nothing: from
 * (none) it is rejected like a short order (→ REJECTED, StockRejected
 * INVALID_ORDER), so order-svc cancels the order and nothing stays held; from
 * TOMBSTONE it is rejected as cancelled, as any OrderCreated; from any other state it
 * is a late copy and ignored. An order id that is not a UUID, and an OrderConfirmed or
 * OrderCancelled that breaks the rules, have no rejection event in the saga: they are
 * errors that are not transient, retried a few times by the consumer, then
 * dead-lettered (an alert: order-svc never sends such events).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/saga_check.h"
#include "common/text.h"
#include "product.h"
#include "product_repo.h"
#include "shop/events/v1/events.pb-c.h"

#define STATE_RESERVED  "RESERVED"
#define STATE_REJECTED  "REJECTED"
#define STATE_COMMITTED "COMMITTED"
#define STATE_RELEASED  "RELEASED"
#define STATE_TOMBSTONE "TOMBSTONE"

static bool product_saga_is(const char *state, const char *want)
{
    return strcmp(state, want) == 0;
}

/* The event's StockLines for lines[0..n). */
static Shop__Events__V1__StockLine **product_saga_stock_lines(arena_t *a,
                                                              const product_line_t *lines, size_t n)
{
    Shop__Events__V1__StockLine **out = n ? arena_calloc(a, n, sizeof(*out)) : NULL;
    for (size_t i = 0; i < n; i++) {
        Shop__Events__V1__StockLine *l = arena_alloc(a, sizeof(*l));
        *l = (Shop__Events__V1__StockLine)SHOP__EVENTS__V1__STOCK_LINE__INIT;
        l->product_id = (char *)lines[i].product_id;
        l->quantity = (int32_t)lines[i].quantity; /* ≤ the sum of an order's int32 lines */
        out[i] = l;
    }
    return out;
}

/* ---- OrderCreated ---- */

static int product_saga_line_cmp(const void *x, const void *y)
{
    return strcmp(((const product_line_t *)x)->product_id, ((const product_line_t *)y)->product_id);
}

/* The distinct products of the order's (checked) lines, sorted by id (the lock
 * order), with their quantities summed. */
static size_t product_saga_merge(arena_t *a, const Shop__Events__V1__OrderCreated *oc,
                                 product_line_t **out)
{
    size_t n = oc->n_lines;
    product_line_t *lines = arena_calloc(a, n, sizeof(*lines));
    for (size_t i = 0; i < n; i++)
        lines[i] = (product_line_t){.product_id = text_ascii_lower(a, oc->lines[i]->product_id),
                                    .quantity = oc->lines[i]->quantity};
    qsort(lines, n, sizeof(*lines), product_saga_line_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && strcmp(lines[m - 1].product_id, lines[i].product_id) == 0)
            lines[m - 1].quantity += lines[i].quantity;
        else
            lines[m++] = lines[i];
    }
    *out = lines;
    return m;
}

/* Finds the first line, in the event's order, that cannot be reserved: an unknown
 * product, or one whose available units (already locked) are fewer than the order's
 * total for it. Fills *rej and returns true, or returns false if every line fits. */
static bool product_saga_first_short(arena_t *a, const Shop__Events__V1__OrderCreated *oc,
                                     const product_line_t *merged, size_t n,
                                     const int64_t *available, Shop__Events__V1__StockRejected *rej)
{
    for (size_t i = 0; i < oc->n_lines; i++) {
        product_line_t key = {.product_id = text_ascii_lower(a, oc->lines[i]->product_id)};
        const product_line_t *m = bsearch(&key, merged, n, sizeof(*merged), product_saga_line_cmp);
        int64_t have = available[m - merged];
        if (have >= m->quantity)
            continue;
        rej->reason = have < 0 ? SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_UNKNOWN_PRODUCT
                               : SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK;
        rej->product_id = (char *)m->product_id;
        rej->requested = (int32_t)m->quantity; /* <= SAGA_LINES_MAX * SAGA_QUANTITY_MAX */
        rej->available = have < 0 ? 0 : have;
        return true;
    }
    return false;
}

/* Rejects an order, holding nothing. */
static int product_saga_reject(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                               const char *order_id, const char *state,
                               Shop__Events__V1__StockRejected *rej, err_t *err)
{
    rej->order_id = (char *)order_id;
    if (product_repo_order_state_set(tx, a, order_id, state, err) != 0 ||
        saga_emit(tx, a, PRODUCT_TOPIC_INVENTORY, &rej->base, ev->ce.traceparent, err) != 0)
        return err->code;
    LOG_INFO("stock rejected", LOG_STR("order_id", order_id), LOG_INT("reason", rej->reason),
             LOG_STR("product_id", rej->product_id), LOG_INT("requested", rej->requested),
             LOG_INT("available", rej->available));
    return 0;
}

/* Reserves every line or none. The inventory rows were locked (product_repo_order_stock)
 * before anything is checked, so the check and the conditional updates see the same
 * numbers and a rejection leaves nothing behind. */
static int product_saga_reserve(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                                const Shop__Events__V1__OrderCreated *oc, const char *order_id,
                                const product_line_t *lines, size_t n, const int64_t *available,
                                err_t *err)
{
    Shop__Events__V1__StockRejected rej = SHOP__EVENTS__V1__STOCK_REJECTED__INIT;
    if (product_saga_first_short(a, oc, lines, n, available, &rej))
        return product_saga_reject(tx, a, ev, order_id, STATE_REJECTED, &rej, err);

    Shop__Events__V1__StockReserved ok = SHOP__EVENTS__V1__STOCK_RESERVED__INIT;
    ok.order_id = (char *)order_id;
    ok.user_id = text_ascii_lower(a, oc->user_id);
    ok.total_cents = oc->total_cents;
    ok.currency = SAGA_CURRENCY;
    if (product_repo_reserve(tx, a, order_id, lines, n, err) != 0 ||
        product_repo_order_state_set(tx, a, order_id, STATE_RESERVED, err) != 0 ||
        saga_emit(tx, a, PRODUCT_TOPIC_INVENTORY, &ok.base, ev->ce.traceparent, err) != 0)
        return err->code;
    LOG_INFO("stock reserved", LOG_STR("order_id", order_id), LOG_INT("products", n));
    return 0;
}

/* Answers an OrderCreated from the order's state without reserving anything: the
 * order was cancelled first (TOMBSTONE), or the event is invalid (`invalid` holds
 * why), or a copy of a step already taken. */
static int product_saga_created_unreserved(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                                           const char *order_id, const char *state,
                                           const err_t *invalid, err_t *err)
{
    Shop__Events__V1__StockRejected rej = SHOP__EVENTS__V1__STOCK_REJECTED__INIT;
    if (product_saga_is(state, STATE_TOMBSTONE)) {
        /* Cancelled before we heard of it: reserve nothing, and say so once. */
        rej.reason = SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_ORDER_CANCELLED;
        return product_saga_reject(tx, a, ev, order_id, STATE_RELEASED, &rej, err);
    }
    if (state[0]) {
        if (invalid)
            LOG_WARN("invalid OrderCreated for an order already handled, ignored",
                     LOG_STR("order_id", order_id), LOG_STR("state", state),
                     LOG_STR("error", invalid->msg));
        else
            LOG_INFO("order already handled, OrderCreated ignored", LOG_STR("order_id", order_id),
                     LOG_STR("state", state));
        return 0;
    }
    LOG_WARN("invalid OrderCreated, nothing reserved", LOG_STR("order_id", order_id),
             LOG_STR("error", invalid->msg));
    rej.reason = SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INVALID_ORDER;
    return product_saga_reject(tx, a, ev, order_id, STATE_REJECTED, &rej, err);
}

static int product_saga_order_created(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                      err_t *err)
{
    const Shop__Events__V1__OrderCreated *oc = (const void *)ev->msg;
    const char *order_id = NULL, *state = NULL;
    if (saga_order_id(a, ev, oc->order_id, &order_id, err) != 0)
        return err->code;
    err_t invalid = ERR_INIT;
    if (saga_check(ev->msg, &invalid) != 0) {
        /* Nothing of the event is trusted: only the order's state is read. */
        if (product_repo_order_state(tx, a, order_id, &state, err) != 0)
            return err->code;
        return product_saga_created_unreserved(tx, a, ev, order_id, state, &invalid, err);
    }
    product_line_t *lines;
    size_t n = product_saga_merge(a, oc, &lines);
    int64_t *available = arena_calloc(a, n, sizeof(*available));
    if (product_repo_order_stock(tx, a, order_id, lines, n, &state, available, err) != 0)
        return err->code;
    if (state[0])
        return product_saga_created_unreserved(tx, a, ev, order_id, state, NULL, err);
    return product_saga_reserve(tx, a, ev, oc, order_id, lines, n, available, err);
}

/* ---- OrderConfirmed ---- */

/* The opening of OrderConfirmed and OrderCancelled: the event checked (saga_open),
 * then the order's state read ("" if never seen). */
static int product_saga_open(db_conn_t *tx, arena_t *a, const saga_event_t *ev, const char *raw_id,
                             const char **order_id, const char **state, err_t *err)
{
    if (saga_open(a, ev, raw_id, order_id, err) != 0 ||
        product_repo_order_state(tx, a, *order_id, state, err) != 0)
        return err->code;
    return 0;
}

static int product_saga_order_confirmed(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                                        void *ctx, err_t *err)
{
    const Shop__Events__V1__OrderConfirmed *oc = (const void *)ev->msg;
    const char *order_id = NULL, *state = NULL;
    if (product_saga_open(tx, a, ev, oc->order_id, &order_id, &state, err) != 0)
        return err->code;
    if (!product_saga_is(state, STATE_RESERVED)) {
        /* COMMITTED: a duplicate. Anything else: nothing is held for this order (an
         * upstream bug or a dead-lettered OrderCreated); there is nothing to sell. */
        if (product_saga_is(state, STATE_COMMITTED))
            LOG_INFO("order already committed, OrderConfirmed ignored",
                     LOG_STR("order_id", order_id));
        else
            LOG_WARN("OrderConfirmed for an order without a reservation, ignored",
                     LOG_STR("order_id", order_id), LOG_STR("state", state));
        return 0;
    }
    product_line_t *lines;
    size_t n;
    if (product_repo_move(tx, a, order_id, PRODUCT_MOVE_COMMIT, &lines, &n, err) != 0 ||
        product_repo_order_state_set(tx, a, order_id, STATE_COMMITTED, err) != 0)
        return err->code;
    Shop__Events__V1__StockCommitted out = SHOP__EVENTS__V1__STOCK_COMMITTED__INIT;
    out.order_id = (char *)order_id;
    out.n_lines = n;
    out.lines = product_saga_stock_lines(a, lines, n);
    if (saga_emit(tx, a, PRODUCT_TOPIC_INVENTORY, &out.base, ev->ce.traceparent, err) != 0)
        return err->code;
    LOG_INFO("stock committed", LOG_STR("order_id", order_id), LOG_INT("products", n));
    return 0;
}

/* ---- OrderCancelled ---- */

/* What a cancellation does from each state: the move (if stock is held) and the
 * StockReleased source. */
static int product_saga_release_plan(const char *state, product_move_t *move,
                                     Shop__Events__V1__ReleaseSource *source)
{
    if (product_saga_is(state, STATE_RESERVED)) {
        *move = PRODUCT_MOVE_RELEASE;
        *source = SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_RESERVED;
        return 1;
    }
    if (product_saga_is(state, STATE_COMMITTED)) {
        *move = PRODUCT_MOVE_RESTOCK;
        *source = SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_SOLD;
        return 1;
    }
    *source = SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_NONE;
    return 0;
}

static int product_saga_order_cancelled(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                                        void *ctx, err_t *err)
{
    const Shop__Events__V1__OrderCancelled *oc = (const void *)ev->msg;
    const char *order_id = NULL, *state = NULL;
    if (product_saga_open(tx, a, ev, oc->order_id, &order_id, &state, err) != 0)
        return err->code;
    if (product_saga_is(state, STATE_TOMBSTONE) || product_saga_is(state, STATE_RELEASED)) {
        LOG_INFO("order already cancelled, OrderCancelled ignored", LOG_STR("order_id", order_id),
                 LOG_STR("state", state));
        return 0;
    }
    product_move_t move;
    Shop__Events__V1__StockReleased out = SHOP__EVENTS__V1__STOCK_RELEASED__INIT;
    product_line_t *lines = NULL;
    size_t n = 0;
    if (product_saga_release_plan(state, &move, &out.source) &&
        product_repo_move(tx, a, order_id, move, &lines, &n, err) != 0)
        return err->code;
    /* Never seen: a tombstone, so that a late OrderCreated is rejected. */
    const char *next = state[0] ? STATE_RELEASED : STATE_TOMBSTONE;
    if (product_repo_order_state_set(tx, a, order_id, next, err) != 0)
        return err->code;
    out.order_id = (char *)order_id;
    out.n_lines = n;
    out.lines = product_saga_stock_lines(a, lines, n);
    if (saga_emit(tx, a, PRODUCT_TOPIC_INVENTORY, &out.base, ev->ce.traceparent, err) != 0)
        return err->code;
    LOG_INFO("stock released", LOG_STR("order_id", order_id), LOG_STR("from", state),
             LOG_STR("to", next), LOG_INT("products", n));
    return 0;
}

/* ---- shared locks (saga_locks_fn) ---- */

/* The order (its order_states row: two deliveries of one step, say during a
 * rebalance, must not both act) and the inventory rows of its products (orders of
 * other partitions reserve, sell and restock the same products). */
static size_t product_saga_locks_of(arena_t *a, const char *order_id,
                                    Shop__Events__V1__OrderLine *const *lines, size_t n,
                                    const char ***out)
{
    /* Taken before the event is checked: an event with more lines than an order may
     * have is rejected without touching inventory, so it locks its order only. */
    if (n > SAGA_LINES_MAX)
        n = 0;
    *out = arena_calloc(a, n + 1, sizeof(**out));
    (*out)[0] = saga_lock_name(a, "order", order_id);
    for (size_t i = 0; i < n; i++)
        (*out)[i + 1] = saga_lock_name(a, "inventory", lines[i]->product_id);
    return n + 1;
}

static size_t product_saga_created_locks(const saga_event_t *ev, arena_t *a, const char ***out)
{
    const Shop__Events__V1__OrderCreated *m = (const void *)ev->msg;
    return product_saga_locks_of(a, m->order_id, m->lines, m->n_lines, out);
}

static size_t product_saga_confirmed_locks(const saga_event_t *ev, arena_t *a, const char ***out)
{
    const Shop__Events__V1__OrderConfirmed *m = (const void *)ev->msg;
    return product_saga_locks_of(a, m->order_id, m->lines, m->n_lines, out);
}

static size_t product_saga_cancelled_locks(const saga_event_t *ev, arena_t *a, const char ***out)
{
    const Shop__Events__V1__OrderCancelled *m = (const void *)ev->msg;
    return product_saga_locks_of(a, m->order_id, m->lines, m->n_lines, out);
}

const saga_route_t product_saga_routes[] = {
    {&shop__events__v1__order_created__descriptor, product_saga_order_created,
     product_saga_created_locks},
    {&shop__events__v1__order_confirmed__descriptor, product_saga_order_confirmed,
     product_saga_confirmed_locks},
    {&shop__events__v1__order_cancelled__descriptor, product_saga_order_cancelled,
     product_saga_cancelled_locks},
};
const size_t product_saga_n_routes = sizeof(product_saga_routes) / sizeof(product_saga_routes[0]);
