/*
 * user_saga: user-svc's steps of the choreography (docs/architecture.md §4 steps 3 and 9). Each
 * handler runs in the saga consumer's transaction, which already holds the event's
 * inbox row, so exact redeliveries never get here. What is left — the same step
 * under a new ce_id, a cancellation that overtook its charge — is decided from
 * order_payments, read and written under the order's lock ("order:<id>", which the
 * saga consumer takes with the user's wallet before the handler runs: see
 * user_saga_locks_of):
 *
 *   state \ event   StockReserved                          OrderCancelled
 *   (none)          debit if the balance covers it:        → TOMBSTONE (nothing sent)
 *                   → CHARGED, PaymentCompleted
 *                   else → FAILED, PaymentFailed
 *                   (INSUFFICIENT_FUNDS | UNKNOWN_USER)
 *   CHARGED         duplicate: ignored                     refund what was charged:
 *                                                          → REFUNDED, PaymentRefunded
 *   FAILED          duplicate: ignored                     nothing was charged: ignored
 *   REFUNDED        ignored                                duplicate: ignored
 *   TOMBSTONE       → FAILED, PaymentFailed                duplicate: ignored
 *                   (ORDER_CANCELLED), nothing charged
 *
 * The refund gives back the amount recorded at the charge, not the event's total.
 *
 * Every event is checked against the field rules of the saga events (saga_check.h)
 * before it has any effect. A StockReserved that breaks them (a user id that is not
 * a UUID, a negative total, another currency) charges nothing: from (none) or
 * TOMBSTONE it fails the payment (→ FAILED, PaymentFailed INVALID_PAYMENT with
 * amount 0 and the user id only if it is a UUID), so order-svc cancels the order and
 * product-svc releases its stock; from any other state it is a late copy and ignored.
 * An order id that is not a UUID, and an OrderCancelled that breaks the rules, have
 * no rejection event in the saga: they are errors that are not transient, retried a
 * few times by the consumer, then dead-lettered (an alert: order-svc never sends such
 * events).
 */
#include <stdbool.h>
#include <string.h>

#include "common/log.h"
#include "common/saga_check.h"
#include "common/uuid.h"
#include "shop/events/v1/events.pb-c.h"
#include "user.h"
#include "user_repo.h"

#define STATE_CHARGED   "CHARGED"
#define STATE_FAILED    "FAILED"
#define STATE_REFUNDED  "REFUNDED"
#define STATE_TOMBSTONE "TOMBSTONE"

typedef Shop__Events__V1__PaymentFailureReason user_saga_reason_t;

static bool user_saga_is(const char *state, const char *want)
{
    return strcmp(state, want) == 0;
}

/* Stores the order's new payment state and enqueues the event that announces it
 * (payment.events, keeping the trace of the event that caused it). */
static int user_saga_record(db_conn_t *tx, arena_t *a, const saga_event_t *ev,
                            const user_order_t *o, const ProtobufCMessage *msg, err_t *err)
{
    if (user_repo_order_set(tx, a, o, err) != 0 ||
        saga_emit(tx, a, USER_TOPIC_PAYMENTS, msg, ev->ce.traceparent, err) != 0)
        return err->code;
    return 0;
}

/* ---- StockReserved ---- */

/* Nothing charged: records FAILED and sends PaymentFailed naming o->user_id ("" when
 * the event named no valid user). */
static int user_saga_fail(db_conn_t *tx, arena_t *a, const saga_event_t *ev, user_order_t *o,
                          user_saga_reason_t reason, err_t *err)
{
    o->state = STATE_FAILED;
    o->payment_entry_id = o->refund_entry_id = NULL;
    Shop__Events__V1__PaymentFailed out = SHOP__EVENTS__V1__PAYMENT_FAILED__INIT;
    out.order_id = (char *)o->order_id;
    out.user_id = (char *)(o->user_id ? o->user_id : "");
    out.reason = reason;
    out.amount_cents = o->amount_cents;
    out.currency = (char *)o->currency;
    if (user_saga_record(tx, a, ev, o, &out.base, err) != 0)
        return err->code;
    LOG_INFO("payment failed", LOG_STR("order_id", o->order_id), LOG_STR("user_id", out.user_id),
             LOG_INT("reason", reason), LOG_INT("amount_cents", o->amount_cents));
    return 0;
}

/* Debits the wallet if it covers the total; else fails the payment. */
static int user_saga_charge(db_conn_t *tx, arena_t *a, const saga_event_t *ev, user_order_t *o,
                            err_t *err)
{
    user_charge_t outcome = USER_CHARGE_NO_WALLET;
    user_entry_t entry;
    if (user_repo_charge(tx, a, o->order_id, o->user_id, o->amount_cents, &outcome, &entry, err) !=
        0)
        return err->code;
    if (outcome != USER_CHARGE_OK) {
        user_saga_reason_t reason =
            outcome == USER_CHARGE_NO_FUNDS
                ? SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INSUFFICIENT_FUNDS
                : SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_UNKNOWN_USER;
        return user_saga_fail(tx, a, ev, o, reason, err);
    }
    o->state = STATE_CHARGED;
    o->currency = entry.currency;
    o->payment_entry_id = entry.id;
    Shop__Events__V1__PaymentCompleted out = SHOP__EVENTS__V1__PAYMENT_COMPLETED__INIT;
    out.order_id = (char *)o->order_id;
    out.user_id = (char *)o->user_id;
    out.amount_cents = o->amount_cents;
    out.currency = (char *)entry.currency;
    out.ledger_entry_id = (char *)entry.id;
    if (user_saga_record(tx, a, ev, o, &out.base, err) != 0)
        return err->code;
    LOG_INFO("payment completed", LOG_STR("order_id", o->order_id), LOG_STR("user_id", o->user_id),
             LOG_INT("amount_cents", o->amount_cents), LOG_STR("ledger_entry_id", entry.id));
    return 0;
}

static int user_saga_stock_reserved(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                    err_t *err)
{
    const Shop__Events__V1__StockReserved *sr = (const void *)ev->msg;
    const char *order_id;
    user_order_t o;
    err_t invalid = ERR_INIT;
    bool valid = saga_check(ev->msg, &invalid) == 0;
    if (saga_order_id(a, ev, sr->order_id, &order_id, err) != 0 ||
        user_repo_order_get(tx, a, order_id, &o, err) != 0)
        return err->code;
    if (o.state[0] && !user_saga_is(o.state, STATE_TOMBSTONE)) {
        if (valid)
            LOG_INFO("order already handled, StockReserved ignored", LOG_STR("order_id", order_id),
                     LOG_STR("state", o.state));
        else
            LOG_WARN("invalid StockReserved for an order already handled, ignored",
                     LOG_STR("order_id", order_id), LOG_STR("state", o.state),
                     LOG_STR("error", invalid.msg));
        return 0;
    }
    /* Only checked fields go on: an invalid event's amount is not one to repeat. */
    o.user_id = uuid_canon(a, sr->user_id);
    o.amount_cents = valid ? sr->total_cents : 0;
    o.currency = USER_CURRENCY;
    if (!valid) {
        LOG_WARN("invalid StockReserved, nothing charged", LOG_STR("order_id", order_id),
                 LOG_STR("error", invalid.msg));
        return user_saga_fail(
            tx, a, ev, &o,
            SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INVALID_PAYMENT, err);
    }
    if (user_saga_is(o.state, STATE_TOMBSTONE))
        return user_saga_fail(
            tx, a, ev, &o,
            SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_ORDER_CANCELLED, err);
    return user_saga_charge(tx, a, ev, &o, err);
}

/* ---- OrderCancelled ---- */

static int user_saga_refund(db_conn_t *tx, arena_t *a, const saga_event_t *ev, user_order_t *o,
                            err_t *err)
{
    user_entry_t entry;
    if (user_repo_refund(tx, a, o->order_id, o->user_id, o->amount_cents, &entry, err) != 0)
        return err->code;
    o->state = STATE_REFUNDED;
    o->refund_entry_id = entry.id;
    Shop__Events__V1__PaymentRefunded out = SHOP__EVENTS__V1__PAYMENT_REFUNDED__INIT;
    out.order_id = (char *)o->order_id;
    out.user_id = (char *)o->user_id;
    out.amount_cents = o->amount_cents;
    out.currency = (char *)o->currency;
    out.ledger_entry_id = (char *)entry.id;
    if (user_saga_record(tx, a, ev, o, &out.base, err) != 0)
        return err->code;
    LOG_INFO("payment refunded", LOG_STR("order_id", o->order_id), LOG_STR("user_id", o->user_id),
             LOG_INT("amount_cents", o->amount_cents), LOG_STR("ledger_entry_id", entry.id));
    return 0;
}

static int user_saga_order_cancelled(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx,
                                     err_t *err)
{
    const Shop__Events__V1__OrderCancelled *oc = (const void *)ev->msg;
    const char *order_id;
    user_order_t o;
    if (saga_open(a, ev, oc->order_id, &order_id, err) != 0 ||
        user_repo_order_get(tx, a, order_id, &o, err) != 0)
        return err->code;
    if (user_saga_is(o.state, STATE_CHARGED))
        return user_saga_refund(tx, a, ev, &o, err);
    if (o.state[0]) {
        LOG_INFO("nothing to refund, OrderCancelled ignored", LOG_STR("order_id", order_id),
                 LOG_STR("state", o.state));
        return 0;
    }
    /* Never seen: a tombstone, so that a late StockReserved charges nothing. */
    o.state = STATE_TOMBSTONE;
    o.user_id = uuid_canon(a, oc->user_id);
    o.currency = USER_CURRENCY;
    if (user_repo_order_set(tx, a, &o, err) != 0)
        return err->code;
    LOG_INFO("order cancelled before payment, tombstone recorded", LOG_STR("order_id", order_id));
    return 0;
}

/* ---- shared locks (saga_locks_fn) ---- */

/* The order's payment state (its charge comes on inventory.events, its cancellation
 * on order.events: two partitions) and the user's wallet (other orders of the user). */
static size_t user_saga_locks_of(arena_t *a, const char *order_id, const char *user_id,
                                 const char ***out)
{
    *out = arena_calloc(a, 2, sizeof(**out));
    (*out)[0] = saga_lock_name(a, "order", order_id);
    (*out)[1] = saga_lock_name(a, "wallet", user_id);
    return 2;
}

static size_t user_saga_reserved_locks(const saga_event_t *ev, arena_t *a, const char ***out)
{
    const Shop__Events__V1__StockReserved *m = (const void *)ev->msg;
    return user_saga_locks_of(a, m->order_id, m->user_id, out);
}

static size_t user_saga_cancelled_locks(const saga_event_t *ev, arena_t *a, const char ***out)
{
    const Shop__Events__V1__OrderCancelled *m = (const void *)ev->msg;
    return user_saga_locks_of(a, m->order_id, m->user_id, out);
}

const saga_route_t user_saga_routes[] = {
    {&shop__events__v1__stock_reserved__descriptor, user_saga_stock_reserved,
     user_saga_reserved_locks},
    {&shop__events__v1__order_cancelled__descriptor, user_saga_order_cancelled,
     user_saga_cancelled_locks},
};
const size_t user_saga_n_routes = sizeof(user_saga_routes) / sizeof(user_saga_routes[0]);
