/*
 * product_test_support: what the product-svc saga tests share — real product-svc
 * processes, products made through its gRPC API, order events produced to
 * order.events with CloudEvents headers, inventory.events read back, and the
 * product database inspected.
 *
 * The shared test stack's topics carry other tests' events too: every order and
 * product id here is a fresh UUID and only events keyed by this test's orders are
 * kept.
 */
#ifndef PRODUCT_TEST_SUPPORT_H
#define PRODUCT_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/kfk.h"
#include "common/rpc.h"
#include "common/uuid.h"
#include "shop/events/v1/events.pb-c.h"
#include "svc_proc.h"

#define PT_TIMEOUT_MS 60000

/* ---- one test's connections ---- */

/* The lines an order was announced with (pt_order_created), repeated by its
 * OrderConfirmed and OrderCancelled as order-svc does. */
typedef struct pt_order_lines {
    const char *order_id;
    Shop__Events__V1__OrderLine **lines;
    size_t n;
    int64_t total_cents;
} pt_order_lines_t;

/* A collected inventory event. */
typedef struct pt_event {
    const char *ce_id;
    const char *order_id;
    const char *type; /* "StockReserved", "StockRejected", ... (without the package) */
    const ProtobufCMessage *msg;
} pt_event_t;

typedef struct pt {
    arena_t *a;
    db_pool_t *db;
    rpc_channel_t *ch;
    kfk_producer_t *producer;
    kfk_consumer_t *consumer; /* inventory.events from the beginning, a fresh group */
    const char **orders;      /* the test's order ids: only their events are kept */
    size_t n_orders, cap_orders;
    pt_order_lines_t *lines; /* per order announced */
    size_t n_lines, cap_lines;
    const char **products; /* the test's products (deleted by pt_close) */
    size_t n_products, cap_products;
    pt_event_t *events;
    size_t n_events, cap_events;
} pt_t;

/* pt_open / pt_close: connections for a test talking to instance `svc`; pt_close
 * deletes the test's products, reservations and order states. */
void pt_open(pt_t *t, const svc_proc_t *svc);
void pt_close(pt_t *t);

/* pt_product: a new product (CreateProduct) with `available` units (SetStock). */
const char *pt_product(pt_t *t, int64_t available);

/* pt_set_stock: SetStock through the API. */
void pt_set_stock(pt_t *t, const char *product_id, int64_t available);

/* pt_order: a fresh order id, registered so its events are collected. */
const char *pt_order(pt_t *t);

/* An order line for pt_order_created. */
typedef struct pt_line {
    const char *product_id;
    int32_t quantity;
} pt_line_t;

/* Producing to order.events (key = order id) events that follow the field rules, as
 * order-svc sends them: OrderCreated with every line at 250 cents and the total of
 * the lines, and OrderConfirmed / OrderCancelled with the lines of the order's first
 * OrderCreated (one line of an unknown product if there was none). ce_id NULL means a
 * fresh one. The broker's ack is awaited. Returns the ce_id used (in the test's
 * arena). */
const char *pt_order_created(pt_t *t, const char *order_id, const pt_line_t *lines, size_t n,
                             const char *ce_id);
const char *pt_order_confirmed(pt_t *t, const char *order_id, const char *ce_id);
const char *pt_order_cancelled(pt_t *t, const char *order_id, const char *ce_id);

/* pt_order_created_event: the OrderCreated pt_order_created would send (in the test's
 * arena), for a test to break before pt_send. Records nothing. */
Shop__Events__V1__OrderCreated *pt_order_created_event(pt_t *t, const char *order_id,
                                                       const pt_line_t *lines, size_t n);

/* pt_send: produces `msg` to order.events with key `key`, as pt_order_created does. */
const char *pt_send(pt_t *t, const char *key, const ProtobufCMessage *msg, const char *ce_id);

/* pt_wait_events: consumes inventory.events until at least `want` events of the
 * test's orders were collected in all (copies of one ce_id count once), or the
 * timeout. Returns the number collected. */
size_t pt_wait_events(pt_t *t, size_t want);

/* pt_wait_processed: waits until product-svc's inbox holds ce_id, i.e. the event's
 * handler committed (and, since an order's events are consumed in order, every
 * event of that order produced before it). Fails the test after the timeout. */
void pt_wait_processed(pt_t *t, const char *ce_id);

/* pt_emitted: the events of `type` ("StockReserved", ...) product-svc wrote to its
 * outbox for the order: exactly what it decided to say, published or not. */
int64_t pt_emitted(pt_t *t, const char *order_id, const char *type);

/* pt_count: collected events of `type` ("StockReserved", ...) for order_id (NULL:
 * any of the test's orders). */
size_t pt_count(const pt_t *t, const char *type, const char *order_id);

/* pt_find: the first collected event of `type` for order_id; fails the test if none. */
const ProtobufCMessage *pt_find(const pt_t *t, const char *type, const char *order_id);

/* ---- the database ---- */

typedef struct pt_stock {
    int64_t available, reserved, sold, added;
} pt_stock_t;

/* pt_stock: the product's inventory row; asserts the invariants (every count >= 0,
 * available + reserved + sold = added). */
pt_stock_t pt_stock(pt_t *t, const char *product_id);

/* pt_order_state: order_states.state, or "" if there is no row. */
const char *pt_order_state(pt_t *t, const char *order_id);

/* pt_reservations: the order's reservation rows in `state` (NULL: any) and the sum
 * of their quantities into *units (may be NULL). */
int pt_reservations(pt_t *t, const char *order_id, const char *state, int64_t *units);

/* pt_i64: a single integer from SQL with up to two text parameters. */
int64_t pt_i64(pt_t *t, const char *sql, const char *p1, const char *p2);

#endif
