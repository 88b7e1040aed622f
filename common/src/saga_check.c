/*
 * saga_check: the saga events' field rules (saga_check.h).
 */
#include "common/saga_check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/uuid.h"
#include "shop/common/v1/common.pb-c.h"
#include "shop/events/v1/events.pb-c.h"

/* The event being checked: its short type name for messages, and where they go. */
typedef struct saga_check_ctx {
    const char *type; /* "OrderCreated" */
    err_t *err;
} saga_check_ctx_t;

static int saga_check_fail(const saga_check_ctx_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int saga_check_fail(const saga_check_ctx_t *c, const char *fmt, ...)
{
    char why[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return err_set(c->err, ERR_INVALID, "%s: %s", c->type, why);
}

static int saga_check_uuid(const saga_check_ctx_t *c, const char *field, const char *v)
{
    return uuid_valid(v) ? 0 : saga_check_fail(c, "%s is not a uuid", field);
}

static int saga_check_currency(const saga_check_ctx_t *c, const char *v)
{
    return strcmp(v, SAGA_CURRENCY) == 0 ? 0 : saga_check_fail(c, "currency is not " SAGA_CURRENCY);
}

static int saga_check_cents(const saga_check_ctx_t *c, const char *field, int64_t v)
{
    return v >= 0 ? 0 : saga_check_fail(c, "%s is %" PRId64 ", below 0", field, v);
}

/* One of the enum's named values other than 0 (UNSPECIFIED). */
static int saga_check_enum(const saga_check_ctx_t *c, const char *field,
                           const ProtobufCEnumDescriptor *d, int v)
{
    if (v != 0 && protobuf_c_enum_descriptor_get_value(d, v))
        return 0;
    return saga_check_fail(c, "%s is %d, not a %s", field, v, d->short_name);
}

/* 1..SAGA_LINES_MAX priced lines whose sum is exactly total_cents. */
static int saga_check_order_lines(const saga_check_ctx_t *c,
                                  Shop__Events__V1__OrderLine *const *lines, size_t n,
                                  int64_t total_cents)
{
    if (n < 1 || n > SAGA_LINES_MAX)
        return saga_check_fail(c, "%zu lines, not 1..%d", n, SAGA_LINES_MAX);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        const Shop__Events__V1__OrderLine *l = lines[i];
        char field[48];
        snprintf(field, sizeof(field), "lines[%zu].product_id", i);
        if (saga_check_uuid(c, field, l->product_id) != 0)
            return c->err->code;
        if (l->quantity < 1 || l->quantity > SAGA_QUANTITY_MAX)
            return saga_check_fail(c, "lines[%zu].quantity is %" PRId32 ", not 1..%d", i,
                                   l->quantity, SAGA_QUANTITY_MAX);
        snprintf(field, sizeof(field), "lines[%zu].unit_price_cents", i);
        if (saga_check_cents(c, field, l->unit_price_cents) != 0)
            return c->err->code;
        int64_t line;
        if (__builtin_mul_overflow(l->unit_price_cents, (int64_t)l->quantity, &line) ||
            __builtin_add_overflow(sum, line, &sum))
            return saga_check_fail(c, "the lines' sum overflows");
    }
    if (total_cents != sum)
        return saga_check_fail(c, "total_cents is %" PRId64 ", the lines sum to %" PRId64,
                               total_cents, sum);
    return 0;
}

/* min..SAGA_LINES_MAX stock lines of 1..SAGA_LINES_MAX * SAGA_QUANTITY_MAX units. */
static int saga_check_stock_lines(const saga_check_ctx_t *c,
                                  Shop__Events__V1__StockLine *const *lines, size_t n, size_t min)
{
    if (n < min || n > SAGA_LINES_MAX)
        return saga_check_fail(c, "%zu lines, not %zu..%d", n, min, SAGA_LINES_MAX);
    for (size_t i = 0; i < n; i++) {
        char field[48];
        snprintf(field, sizeof(field), "lines[%zu].product_id", i);
        if (saga_check_uuid(c, field, lines[i]->product_id) != 0)
            return c->err->code;
        if (lines[i]->quantity < 1 || lines[i]->quantity > SAGA_LINES_MAX * SAGA_QUANTITY_MAX)
            return saga_check_fail(c, "lines[%zu].quantity is %" PRId32 ", not 1..%d", i,
                                   lines[i]->quantity, SAGA_LINES_MAX * SAGA_QUANTITY_MAX);
    }
    return 0;
}

/* ---- order.events ---- */

static int saga_check_order_created(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__OrderCreated *m = msg;
    int64_t at;
    if (saga_check_uuid(c, "order_id", m->order_id) || saga_check_uuid(c, "user_id", m->user_id) ||
        saga_check_order_lines(c, m->lines, m->n_lines, m->total_cents) ||
        saga_check_currency(c, m->currency))
        return c->err->code;
    if (clock_parse_rfc3339(m->created_at, &at) != 0)
        return saga_check_fail(c, "created_at is not an rfc 3339 time");
    return 0;
}

static int saga_check_order_confirmed(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__OrderConfirmed *m = msg;
    if (saga_check_uuid(c, "order_id", m->order_id) || saga_check_uuid(c, "user_id", m->user_id) ||
        saga_check_order_lines(c, m->lines, m->n_lines, m->total_cents) ||
        saga_check_currency(c, m->currency))
        return c->err->code;
    return 0;
}

static int saga_check_order_cancelled(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__OrderCancelled *m = msg;
    if (saga_check_uuid(c, "order_id", m->order_id) || saga_check_uuid(c, "user_id", m->user_id) ||
        saga_check_enum(c, "reason", &shop__common__v1__cancel_reason__descriptor, m->reason) ||
        saga_check_order_lines(c, m->lines, m->n_lines, m->total_cents) ||
        saga_check_currency(c, m->currency))
        return c->err->code;
    if (m->previous_status != SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_PENDING &&
        m->previous_status != SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED)
        return saga_check_fail(c, "previous_status is %d, not PENDING or CONFIRMED",
                               (int)m->previous_status);
    return 0;
}

/* ---- inventory.events ---- */

static int saga_check_stock_reserved(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__StockReserved *m = msg;
    if (saga_check_uuid(c, "order_id", m->order_id) || saga_check_uuid(c, "user_id", m->user_id) ||
        saga_check_cents(c, "total_cents", m->total_cents) || saga_check_currency(c, m->currency))
        return c->err->code;
    return 0;
}

static int saga_check_stock_rejected(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__StockRejected *m = msg;
    if (saga_check_uuid(c, "order_id", m->order_id) ||
        saga_check_enum(c, "reason", &shop__events__v1__reject_reason__descriptor, m->reason) ||
        saga_check_cents(c, "available", m->available))
        return c->err->code;
    bool names_product =
        m->reason == SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK ||
        m->reason == SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_UNKNOWN_PRODUCT;
    if (!names_product)
        return m->product_id[0] || m->requested != 0
                   ? saga_check_fail(c, "names a product for reason %d", (int)m->reason)
                   : 0;
    if (saga_check_uuid(c, "product_id", m->product_id) != 0)
        return c->err->code;
    if (m->requested < 1 || m->requested > SAGA_LINES_MAX * SAGA_QUANTITY_MAX)
        return saga_check_fail(c, "requested is %" PRId32 ", not 1..%d", m->requested,
                               SAGA_LINES_MAX * SAGA_QUANTITY_MAX);
    return 0;
}

static int saga_check_stock_committed(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__StockCommitted *m = msg;
    if (saga_check_uuid(c, "order_id", m->order_id) ||
        saga_check_stock_lines(c, m->lines, m->n_lines, 1))
        return c->err->code;
    return 0;
}

static int saga_check_stock_released(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__StockReleased *m = msg;
    if (saga_check_uuid(c, "order_id", m->order_id) ||
        saga_check_enum(c, "source", &shop__events__v1__release_source__descriptor, m->source))
        return c->err->code;
    if (m->source == SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_NONE)
        return m->n_lines ? saga_check_fail(c, "%zu lines, not 0 for source NONE", m->n_lines) : 0;
    return saga_check_stock_lines(c, m->lines, m->n_lines, 1);
}

/* ---- payment.events ---- */

/* The fields PaymentCompleted and PaymentRefunded share: a movement of the wallet. */
static int saga_check_payment_moved(const saga_check_ctx_t *c, const char *order_id,
                                    const char *user_id, int64_t amount_cents, const char *currency,
                                    const char *ledger_entry_id)
{
    if (saga_check_uuid(c, "order_id", order_id) || saga_check_uuid(c, "user_id", user_id) ||
        saga_check_cents(c, "amount_cents", amount_cents) || saga_check_currency(c, currency) ||
        saga_check_uuid(c, "ledger_entry_id", ledger_entry_id))
        return c->err->code;
    return 0;
}

static int saga_check_payment_completed(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__PaymentCompleted *m = msg;
    return saga_check_payment_moved(c, m->order_id, m->user_id, m->amount_cents, m->currency,
                                    m->ledger_entry_id);
}

static int saga_check_payment_failed(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__PaymentFailed *m = msg;
    if (saga_check_uuid(c, "order_id", m->order_id) ||
        saga_check_enum(c, "reason", &shop__events__v1__payment_failure_reason__descriptor,
                        m->reason) ||
        saga_check_cents(c, "amount_cents", m->amount_cents) || saga_check_currency(c, m->currency))
        return c->err->code;
    /* An invalid StockReserved may have named no user: then there is none to name. */
    if (m->reason ==
            SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INVALID_PAYMENT &&
        !m->user_id[0])
        return 0;
    return saga_check_uuid(c, "user_id", m->user_id);
}

static int saga_check_payment_refunded(const saga_check_ctx_t *c, const void *msg)
{
    const Shop__Events__V1__PaymentRefunded *m = msg;
    return saga_check_payment_moved(c, m->order_id, m->user_id, m->amount_cents, m->currency,
                                    m->ledger_entry_id);
}

static const struct {
    const ProtobufCMessageDescriptor *type;
    int (*check)(const saga_check_ctx_t *c, const void *msg);
} saga_check_types[] = {
    {&shop__events__v1__order_created__descriptor, saga_check_order_created},
    {&shop__events__v1__order_confirmed__descriptor, saga_check_order_confirmed},
    {&shop__events__v1__order_cancelled__descriptor, saga_check_order_cancelled},
    {&shop__events__v1__stock_reserved__descriptor, saga_check_stock_reserved},
    {&shop__events__v1__stock_rejected__descriptor, saga_check_stock_rejected},
    {&shop__events__v1__stock_committed__descriptor, saga_check_stock_committed},
    {&shop__events__v1__stock_released__descriptor, saga_check_stock_released},
    {&shop__events__v1__payment_completed__descriptor, saga_check_payment_completed},
    {&shop__events__v1__payment_failed__descriptor, saga_check_payment_failed},
    {&shop__events__v1__payment_refunded__descriptor, saga_check_payment_refunded},
};

int saga_check(const ProtobufCMessage *msg, err_t *err)
{
    for (size_t i = 0; msg && i < sizeof(saga_check_types) / sizeof(saga_check_types[0]); i++)
        if (msg->descriptor == saga_check_types[i].type) {
            saga_check_ctx_t c = {.type = msg->descriptor->short_name, .err = err};
            return saga_check_types[i].check(&c, msg);
        }
    return err_set(err, ERR_INVALID, "%s is not a saga event",
                   msg ? msg->descriptor->name : "a null message");
}

const ProtobufCMessageDescriptor *saga_event_type(const char *name)
{
    for (size_t i = 0; name && i < sizeof(saga_check_types) / sizeof(saga_check_types[0]); i++)
        if (strcmp(saga_check_types[i].type->name, name) == 0)
            return saga_check_types[i].type;
    return NULL;
}
