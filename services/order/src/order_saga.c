/*
 * order_saga: order-svc's steps of the choreography (docs/architecture.md §4 steps 4, 5, 6 and
 * the timeline of 2, 7, 8, 9), and the cancellation the sweeper (step 10) and
 * CancelOrder (step 11) share.
 *
 * Each handler runs in the saga consumer's transaction, which already holds the
 * event's inbox row, so exact redeliveries never get here. Every status change is a
 * conditional UPDATE ... WHERE status = 'PENDING' (CONFIRMED for CancelOrder), which
 * also locks the order's row: of two writers racing for one order (a handler on
 * another instance, the sweeper, CancelOrder) the second waits, re-reads the row and
 * finds the status changed, so exactly one transition happens. Every event of a
 * known order appends the timeline row of its step (a transition appends a second one,
 * the "order_confirmed" / "order_cancelled" step); an event that no longer applies is
 * recorded as "ignored" and changes nothing. A step is the event's type (its
 * snake_case name), and the timeline holds one row per step (a unique key, migration
 * order/0002): every step happens at most once per order, so a second row could only
 * come from the same event under a new ce_id (a replay tool, a retrying foreign
 * producer), and that appends nothing. Events of orders this database does not know
 * (other services' tests, another fleet's orders) are acknowledged and skipped.
 *
 *   event \ status     PENDING                          CONFIRMED / CANCELLED
 *   StockReserved      timeline (user-svc charges)      timeline
 *   StockRejected      → CANCELLED(OUT_OF_STOCK),       timeline, ignored
 *                      OrderCancelled
 *   PaymentCompleted   → CONFIRMED, OrderConfirmed      timeline, ignored
 *   PaymentFailed      → CANCELLED(PAYMENT_FAILED),     timeline, ignored
 *                      OrderCancelled
 *   StockCommitted, StockReleased, PaymentRefunded      timeline
 *
 * StockRejected emits OrderCancelled although docs/architecture.md §4 step 4 needs none (nothing
 * is held): every cancellation then announces itself the same way, product-svc moves
 * its REJECTED state to RELEASED (StockReleased, source NONE) and user-svc records a
 * tombstone, so no participant is left with an order it believes is still running.
 *
 * Interleavings (events of one order come from two topics, so they meet in any order;
 * within order.events the relay keeps our own events in commit order):
 * - Timeout (sweeper) before StockReserved was consumed by user-svc: OrderCancelled
 *   follows OrderCreated on order.events, so product-svc always reserves (or rejects)
 *   before it releases. user-svc sees StockReserved and OrderCancelled in either
 *   order: cancelled first → tombstone, the late StockReserved charges nothing
 *   (PaymentFailed ORDER_CANCELLED, recorded here as ignored); charged first →
 *   PaymentCompleted (ignored here: the order is CANCELLED) and then the
 *   OrderCancelled refunds it (PaymentRefunded). Net charge 0 either way.
 * - Timeout racing with PaymentCompleted / PaymentFailed / StockRejected: both are
 *   conditional updates of the PENDING row; the loser changes nothing. If the
 *   payment lost, the money taken is refunded by the timeout's OrderCancelled.
 * - PaymentCompleted won: OrderConfirmed is enqueued before any later OrderCancelled
 *   of the order (the row lock orders the transactions, the relay keeps their ids in
 *   order), so product-svc commits before it restocks and user-svc refunds only what
 *   it charged.
 * - CancelOrder on a CONFIRMED order: OrderCancelled(previous CONFIRMED); product-svc
 *   restocks what it sold, user-svc refunds. CancelOrder on PENDING is refused, so a
 *   user can never race the saga.
 * - The same step re-sent under a new ce_id finds the status moved on: ignored.
 * Hence (docs/architecture.md §4 invariants) a CONFIRMED order was charged exactly once and
 * never sees an OrderCancelled unless it becomes CANCELLED; a CANCELLED order always
 * emitted one OrderCancelled, which undoes whatever the participants hold.
 *
 * Every event is checked against the field rules of the saga events (saga_check.h)
 * before it has any effect, and what it says of a known order is checked against the
 * order: StockReserved's total, PaymentCompleted's and PaymentRefunded's amount must be
 * the order's total and their user the order's user (a confirmation must match what
 * was charged; the checks run inside the transaction, before anything is written).
 * Rejections (StockRejected, PaymentFailed) are not matched: cancelling a PENDING order
 * is always safe, its OrderCancelled undoes whatever is held. The saga has no
 * rejection event for what order-svc consumes, so an event that fails a check is an
 * error that is not transient: the consumer retries it a few times, then dead-letters
 * it (an alert), and the order is left as it was — a PENDING order then ends by the
 * sweeper's timeout, whose OrderCancelled refunds and releases what is held.
 */
#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/text.h"
#include "order.h"
#include "order_repo.h"
#include "shop/events/v1/events.pb-c.h"

/* What an event does to a PENDING order. */
typedef enum { ORDER_SAGA_NOTE, ORDER_SAGA_CONFIRM, ORDER_SAGA_CANCEL } order_saga_action_t;

/* One event, as the generic handler applies it. */
typedef struct order_saga_step {
    const char *raw_id; /* the event's order_id */
    const char *step;   /* its timeline step */
    const char *detail;
    order_saga_action_t action;
    const char *reason;        /* ORDER_SAGA_CANCEL: the cancel reason */
    const char *cancel_detail; /* ORDER_SAGA_CANCEL: the order_cancelled row's detail */
    /* What the event says of the order, to match against it (see the top). */
    const char *user_id;   /* NULL: nothing to match */
    const int64_t *amount; /* NULL: nothing to match; else must be the order's total */
} order_saga_step_t;

int order_saga_cancel(db_conn_t *tx, arena_t *a, const order_cancel_t *c, bool *cancelled,
                      err_t *err)
{
    order_row_t o;
    if (order_repo_transition(tx, a, c->order_id, c->from, ORDER_CANCELLED, c->reason, &o,
                              cancelled, err) != 0 ||
        !*cancelled)
        return err->code;
    const order_note_t notes[] = {{c->cause_step, c->cause_detail}, {"order_cancelled", c->detail}};
    if (c->cause_step ? order_repo_timeline_add(tx, a, o.id, notes, 2, err) != 0
                      : order_repo_timeline_add(tx, a, o.id, notes + 1, 1, err) != 0)
        return err->code;
    if (order_events_cancelled(tx, a, &o, c->reason, c->from, c->traceparent, err) != 0)
        return err->code;
    LOG_INFO("order cancelled", LOG_STR("order_id", o.id), LOG_STR("reason", c->reason),
             LOG_STR("from", c->from));
    return 0;
}

/* ERR_INVALID unless what the event says of the order is what the order holds. */
static int order_saga_match(const saga_event_t *ev, const order_saga_step_t *s,
                            const order_row_t *o, err_t *err)
{
    if (s->user_id && strcasecmp(s->user_id, o->user_id) != 0)
        return err_set(err, ERR_INVALID, "%s: user_id is not the user of order %s", ev->ce.type,
                       o->id);
    if (s->amount && *s->amount != o->total_cents)
        return err_set(err, ERR_INVALID,
                       "%s: %" PRId64 " cents, but order %s totals %" PRId64 " cents", ev->ce.type,
                       *s->amount, o->id, o->total_cents);
    return 0;
}

/* PENDING → CONFIRMED with the payment's timeline row, OrderConfirmed and the
 * "order_confirmed" row. *done is false if the order was not PENDING. */
static int order_saga_confirm(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                              const char *order_id, const order_saga_step_t *s, bool *done,
                              err_t *err)
{
    order_row_t o;
    if (order_repo_transition(tx, a, order_id, ORDER_PENDING, ORDER_CONFIRMED, NULL, &o, done,
                              err) != 0 ||
        !*done || order_saga_match(ev, s, &o, err) != 0)
        return err->code;
    const order_note_t notes[] = {{s->step, s->detail}, {"order_confirmed", ""}};
    if (order_events_confirmed(tx, a, &o, ev->ce.traceparent, err) != 0 ||
        order_repo_timeline_add(tx, a, o.id, notes, 2, err) != 0)
        return err->code;
    LOG_INFO("order confirmed", LOG_STR("order_id", o.id), LOG_INT("total_cents", o.total_cents));
    return 0;
}

/* Records an event that changes no status: a step of another participant, or one
 * that came after the order left PENDING. */
static int order_saga_note(db_conn_t *tx, arena_t *a, const saga_event_t *ev, const char *order_id,
                           const order_saga_step_t *s, err_t *err)
{
    order_row_t o;
    bool found;
    if (order_repo_lock(tx, a, order_id, &o, &found, err) != 0)
        return err->code;
    if (!found) {
        LOG_DEBUG("event for an unknown order ignored", LOG_STR("order_id", order_id),
                  LOG_STR("type", ev->ce.type));
        return 0;
    }
    if (order_saga_match(ev, s, &o, err) != 0)
        return err->code;
    const char *detail = s->detail;
    if (s->action != ORDER_SAGA_NOTE) {
        detail = arena_sprintf(a, "%s%signored: the order is already %s", s->detail,
                               s->detail[0] ? "; " : "", text_ascii_lower(a, o.status));
        LOG_INFO("event no longer applies, ignored", LOG_STR("order_id", o.id),
                 LOG_STR("type", ev->ce.type), LOG_STR("status", o.status));
    }
    return order_repo_timeline_add(tx, a, o.id, &(order_note_t){s->step, detail}, 1, err);
}

static int order_saga_apply(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                            const order_saga_step_t *s, err_t *err)
{
    const char *order_id = NULL;
    bool done = false;
    if (saga_open(a, ev, s->raw_id, &order_id, err) != 0)
        return err->code;
    if (s->action == ORDER_SAGA_CONFIRM &&
        order_saga_confirm(tx, a, ev, order_id, s, &done, err) != 0)
        return err->code;
    if (s->action == ORDER_SAGA_CANCEL) {
        order_cancel_t c = {.order_id = order_id,
                            .from = ORDER_PENDING,
                            .reason = s->reason,
                            .cause_step = s->step,
                            .cause_detail = s->detail,
                            .detail = s->cancel_detail,
                            .traceparent = ev->ce.traceparent};
        if (order_saga_cancel(tx, a, &c, &done, err) != 0)
            return err->code;
    }
    return done ? 0 : order_saga_note(tx, a, ev, order_id, s, err);
}

/* ---- the handlers ---- */

static int order_saga_stock_reserved(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                     err_t *err)
{
    const Shop__Events__V1__StockReserved *m = (const void *)ev->msg;
    order_saga_step_t s = {.raw_id = m->order_id,
                           .step = "stock_reserved",
                           .detail = "stock reserved for every line",
                           .action = ORDER_SAGA_NOTE,
                           .user_id = m->user_id,
                           .amount = &m->total_cents};
    return order_saga_apply(tx, a, ev, &s, err);
}

static const char *order_saga_reject_detail(arena_t *a, const Shop__Events__V1__StockRejected *m)
{
    switch (m->reason) {
    case SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK:
        return arena_sprintf(
            a, "insufficient stock for product %s: requested %" PRId32 ", available %" PRId64,
            m->product_id, m->requested, m->available);
    case SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_UNKNOWN_PRODUCT:
        return arena_sprintf(a, "unknown product %s", m->product_id);
    case SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_ORDER_CANCELLED:
        return "the order was already cancelled: nothing reserved";
    case SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INVALID_ORDER:
        return "the order was refused as invalid: nothing reserved";
    default:
        return "stock could not be reserved";
    }
}

static int order_saga_stock_rejected(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                     err_t *err)
{
    const Shop__Events__V1__StockRejected *m = (const void *)ev->msg;
    order_saga_step_t s = {.raw_id = m->order_id,
                           .step = "stock_rejected",
                           .detail = order_saga_reject_detail(a, m),
                           .action = ORDER_SAGA_CANCEL,
                           .reason = ORDER_REASON_OUT_OF_STOCK,
                           .cancel_detail = "out of stock"};
    return order_saga_apply(tx, a, ev, &s, err);
}

static int order_saga_payment_completed(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                                        void *ctx, err_t *err)
{
    const Shop__Events__V1__PaymentCompleted *m = (const void *)ev->msg;
    order_saga_step_t s = {
        .raw_id = m->order_id,
        .step = "payment_completed",
        .detail = arena_sprintf(a, "wallet charged %" PRId64 " cents", m->amount_cents),
        .action = ORDER_SAGA_CONFIRM,
        .user_id = m->user_id,
        .amount = &m->amount_cents};
    return order_saga_apply(tx, a, ev, &s, err);
}

static const char *order_saga_payment_detail(arena_t *a, const Shop__Events__V1__PaymentFailed *m)
{
    switch (m->reason) {
    case SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INSUFFICIENT_FUNDS:
        return arena_sprintf(a, "insufficient funds to pay %" PRId64 " cents", m->amount_cents);
    case SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_UNKNOWN_USER:
        return "no wallet for the user";
    case SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_ORDER_CANCELLED:
        return "the order was already cancelled: nothing charged";
    case SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INVALID_PAYMENT:
        return "the payment was refused as invalid: nothing charged";
    default:
        return "the wallet could not pay";
    }
}

static int order_saga_payment_failed(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                     err_t *err)
{
    const Shop__Events__V1__PaymentFailed *m = (const void *)ev->msg;
    order_saga_step_t s = {.raw_id = m->order_id,
                           .step = "payment_failed",
                           .detail = order_saga_payment_detail(a, m),
                           .action = ORDER_SAGA_CANCEL,
                           .reason = ORDER_REASON_PAYMENT_FAILED,
                           .cancel_detail = "payment failed"};
    return order_saga_apply(tx, a, ev, &s, err);
}

static int order_saga_stock_committed(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                      err_t *err)
{
    const Shop__Events__V1__StockCommitted *m = (const void *)ev->msg;
    order_saga_step_t s = {.raw_id = m->order_id,
                           .step = "stock_committed",
                           .detail = "reserved stock sold",
                           .action = ORDER_SAGA_NOTE};
    return order_saga_apply(tx, a, ev, &s, err);
}

static int order_saga_stock_released(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                     err_t *err)
{
    const Shop__Events__V1__StockReleased *m = (const void *)ev->msg;
    const char *detail = m->source == SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_RESERVED
                             ? "reserved stock released"
                         : m->source == SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_SOLD
                             ? "sold stock restocked"
                             : "no stock was held";
    order_saga_step_t s = {.raw_id = m->order_id,
                           .step = "stock_released",
                           .detail = detail,
                           .action = ORDER_SAGA_NOTE};
    return order_saga_apply(tx, a, ev, &s, err);
}

static int order_saga_payment_refunded(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                       err_t *err)
{
    const Shop__Events__V1__PaymentRefunded *m = (const void *)ev->msg;
    order_saga_step_t s = {
        .raw_id = m->order_id,
        .step = "payment_refunded",
        .detail = arena_sprintf(a, "wallet refunded %" PRId64 " cents", m->amount_cents),
        .action = ORDER_SAGA_NOTE,
        .user_id = m->user_id,
        .amount = &m->amount_cents};
    return order_saga_apply(tx, a, ev, &s, err);
}

/* saga_locks_fn: the order itself. Its events come on two topics (inventory.events,
 * payment.events), so two workers may hold events of one order, each in a batch with
 * other orders. */
static size_t order_saga_locks(const saga_event_t *ev, arena_t *a, const char ***out)
{
    *out = arena_calloc(a, 1, sizeof(**out));
    (*out)[0] = saga_lock_name(a, "order", ev->key);
    return 1;
}

const saga_route_t order_saga_routes[] = {
    {&shop__events__v1__stock_reserved__descriptor, order_saga_stock_reserved, order_saga_locks},
    {&shop__events__v1__stock_rejected__descriptor, order_saga_stock_rejected, order_saga_locks},
    {&shop__events__v1__stock_committed__descriptor, order_saga_stock_committed, order_saga_locks},
    {&shop__events__v1__stock_released__descriptor, order_saga_stock_released, order_saga_locks},
    {&shop__events__v1__payment_completed__descriptor, order_saga_payment_completed,
     order_saga_locks},
    {&shop__events__v1__payment_failed__descriptor, order_saga_payment_failed, order_saga_locks},
    {&shop__events__v1__payment_refunded__descriptor, order_saga_payment_refunded,
     order_saga_locks},
};
const size_t order_saga_n_routes = sizeof(order_saga_routes) / sizeof(order_saga_routes[0]);
