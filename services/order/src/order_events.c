/*
 * order_events: every event order-svc produces (OrderCreated, OrderConfirmed,
 * OrderCancelled on order.events), built from the order's row and enqueued through
 * the outbox in the caller's transaction (saga_emit). CreateOrder, the saga handlers,
 * CancelOrder and the sweeper call these; none builds an event itself.
 */
#include "common/clock.h"
#include "order.h"
#include "order_repo.h"
#include "shop/events/v1/events.pb-c.h"

/* The fields every order event carries, from the order's row: order_id, user_id,
 * lines, total_cents and currency. */
#define ORDER_EVENTS_FILL(ev, a, o)                                                                \
    do {                                                                                           \
        (ev).order_id = (char *)(o)->id;                                                           \
        (ev).user_id = (char *)(o)->user_id;                                                       \
        (ev).n_lines = (o)->n_lines;                                                               \
        (ev).lines = order_events_lines((a), (o));                                                 \
        (ev).total_cents = (o)->total_cents;                                                       \
        (ev).currency = (char *)(o)->currency;                                                     \
    } while (0)

/* The order's lines as event lines. */
static Shop__Events__V1__OrderLine **order_events_lines(arena_t *a, const order_row_t *o)
{
    Shop__Events__V1__OrderLine **out =
        o->n_lines ? arena_calloc(a, o->n_lines, sizeof(*out)) : NULL;
    for (size_t i = 0; i < o->n_lines; i++) {
        Shop__Events__V1__OrderLine *l = arena_alloc(a, sizeof(*l));
        *l = (Shop__Events__V1__OrderLine)SHOP__EVENTS__V1__ORDER_LINE__INIT;
        l->product_id = (char *)o->lines[i].product_id;
        l->quantity = o->lines[i].quantity;
        l->unit_price_cents = o->lines[i].unit_price_cents;
        out[i] = l;
    }
    return out;
}

int order_events_created(db_conn_t *tx, arena_t *a, const order_row_t *o, const char *traceparent,
                         err_t *err)
{
    Shop__Events__V1__OrderCreated ev = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    ORDER_EVENTS_FILL(ev, a, o);
    ev.created_at = clock_rfc3339_in(a, o->created_us);
    return saga_emit(tx, a, ORDER_TOPIC_ORDERS, &ev.base, traceparent, err);
}

int order_events_confirmed(db_conn_t *tx, arena_t *a, const order_row_t *o, const char *traceparent,
                           err_t *err)
{
    Shop__Events__V1__OrderConfirmed ev = SHOP__EVENTS__V1__ORDER_CONFIRMED__INIT;
    ORDER_EVENTS_FILL(ev, a, o);
    return saga_emit(tx, a, ORDER_TOPIC_ORDERS, &ev.base, traceparent, err);
}

int order_events_cancelled(db_conn_t *tx, arena_t *a, const order_row_t *o, const char *reason,
                           const char *from, const char *traceparent, err_t *err)
{
    Shop__Events__V1__OrderCancelled ev = SHOP__EVENTS__V1__ORDER_CANCELLED__INIT;
    ORDER_EVENTS_FILL(ev, a, o);
    ev.reason = order_reason_value(reason);
    ev.previous_status = order_status_value(from);
    return saga_emit(tx, a, ORDER_TOPIC_ORDERS, &ev.base, traceparent, err);
}
