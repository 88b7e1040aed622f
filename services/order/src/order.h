/*
 * order-svc: what main.c, the RPC handlers, the saga handlers and the sweeper share.
 */
#ifndef ORDER_H
#define ORDER_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/err.h"
#include "common/rpc.h"
#include "common/saga.h"
#include "common/svc.h"

/* The topic order-svc produces to and the ones it consumes (docs/architecture.md §4). */
#define ORDER_TOPIC_ORDERS    "order.events"
#define ORDER_TOPIC_INVENTORY "inventory.events"
#define ORDER_TOPIC_PAYMENTS  "payment.events"

/* Statuses and cancel reasons as the database stores them (migrations/order). */
#define ORDER_PENDING   "PENDING"
#define ORDER_CONFIRMED "CONFIRMED"
#define ORDER_CANCELLED "CANCELLED"

#define ORDER_REASON_OUT_OF_STOCK   "OUT_OF_STOCK"
#define ORDER_REASON_PAYMENT_FAILED "PAYMENT_FAILED"
#define ORDER_REASON_TIMEOUT        "TIMEOUT"
#define ORDER_REASON_USER_REQUESTED "USER_REQUESTED"

/* order-svc's own settings (main.c reads them with the common ones). */
typedef struct order_cfg {
    const char *product_addr;  /* PRODUCT_ADDR: product-svc's gRPC target */
    int64_t saga_timeout_ms;   /* SAGA_TIMEOUT: PENDING longer than this is cancelled */
    int64_t sweep_interval_ms; /* SWEEP_INTERVAL: how often the sweeper looks */
    int64_t idem_retention_ms; /* IDEMPOTENCY_RETENTION: keys older than this are purged */
} order_cfg_t;

typedef struct order_sweeper order_sweeper_t;

/* The process's state, made by main.c's init hook (svc_user). */
typedef struct order_ctx {
    const order_cfg_t *cfg;
    rpc_channel_t *product; /* product-svc, for BatchGetProducts */
    order_sweeper_t *sweeper;
} order_ctx_t;

/* order_rpc_service: shop.order.v1.OrderService with its handlers (order_rpc.c). The
 * handlers expect rpc_call_ctx() to be the svc_t, whose svc_user is an order_ctx_t. */
extern ProtobufCService *const order_rpc_service;

/* order_saga_routes: the inventory and payment events order-svc handles
 * (order_saga.c). The handlers expect their ctx to be the svc_t. */
extern const saga_route_t order_saga_routes[];
extern const size_t order_saga_n_routes;

/* A cancellation, as the saga handlers, the sweeper and CancelOrder ask for it. */
typedef struct order_cancel {
    const char *order_id;     /* lower-case UUID */
    const char *from;         /* ORDER_PENDING or ORDER_CONFIRMED */
    const char *reason;       /* ORDER_REASON_* */
    const char *cause_step;   /* a timeline row for the event that caused it, or NULL */
    const char *cause_detail; /* its detail */
    const char *detail;       /* the "order_cancelled" row's detail */
    const char *traceparent;  /* for the event; NULL for none */
} order_cancel_t;

/* order_saga_cancel: moves c->order_id from c->from to CANCELLED with c->reason inside
 * `tx` (one conditional UPDATE, which also locks the row), appends the cause's and
 * the "order_cancelled" timeline rows, and enqueues OrderCancelled (previous_status =
 * c->from) on order.events. *cancelled tells whether the order was in c->from (false:
 * nothing was written). 0 or the database error (the caller's transaction must roll
 * back). Thread-safe (one tx per thread). */
int order_saga_cancel(db_conn_t *tx, arena_t *a, const order_cancel_t *c, bool *cancelled,
                      err_t *err);

/* order_status_value / order_reason_value: the shop.common.v1 OrderStatus and
 * CancelReason numbers of a stored status or cancel reason ("" and unknown text: 0,
 * UNSPECIFIED). Pure (order_status.c). */
int order_status_value(const char *status);
int order_reason_value(const char *reason);

/* The events order-svc produces (order_events.c): each is built from the order's row
 * `o` (its lines included) and enqueued on order.events inside `tx` (saga_emit, keyed
 * by o->id, carrying `traceparent`, NULL for none). 0 or the database error (the
 * caller's transaction must roll back). Scratch memory comes from `a`. Thread-safe
 * (one tx per thread).
 * order_events_created: OrderCreated (CreateOrder).
 * order_events_confirmed: OrderConfirmed (PaymentCompleted of a PENDING order).
 * order_events_cancelled: OrderCancelled with `reason` (ORDER_REASON_*) and
 * previous_status `from` (ORDER_PENDING or ORDER_CONFIRMED). */
struct order_row;
int order_events_created(db_conn_t *tx, arena_t *a, const struct order_row *o,
                         const char *traceparent, err_t *err);
int order_events_confirmed(db_conn_t *tx, arena_t *a, const struct order_row *o,
                           const char *traceparent, err_t *err);
int order_events_cancelled(db_conn_t *tx, arena_t *a, const struct order_row *o, const char *reason,
                           const char *from, const char *traceparent, err_t *err);

/* order_sweeper_start: a thread that, every cfg->sweep_interval_ms, cancels with
 * reason TIMEOUT the orders PENDING for longer than cfg->saga_timeout_ms (docs/architecture.md §4
 * step 10), 100 per transaction, skipping rows other instances hold. Owned; NULL with
 * err set if the thread cannot start. `pool` and `cfg` are borrowed and must outlive
 * the sweeper. */
order_sweeper_t *order_sweeper_start(db_pool_t *pool, const order_cfg_t *cfg, err_t *err);

/* order_sweeper_stop: lets the sweep in hand finish, joins the thread and frees the
 * sweeper. NULL is accepted. */
void order_sweeper_stop(order_sweeper_t *s);

#endif
