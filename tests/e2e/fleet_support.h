/*
 * fleet_support: what the order-svc saga test and the fleet end-to-end tests share —
 * the real service binaries as child processes on ports of their choosing, products,
 * users and orders made through the services' gRPC APIs (common's rpc client),
 * saga events produced and collected with CloudEvents headers, the three databases
 * inspected, and the docs/architecture.md §4 invariants checked over a test's own rows.
 *
 * The shared test stack carries other tests' rows and events too: every id here is a
 * fresh UUID, only the test's own rows are checked, and only events keyed by the
 * test's orders are collected. fs_close deletes the test's rows from the three
 * databases.
 *
 * Not thread-safe unless a function says so; the suites run with CK_NOFORK (gRPC does
 * not survive fork once started).
 */
#ifndef FLEET_SUPPORT_H
#define FLEET_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/kfk.h"
#include "common/rpc.h"
#include "common/uuid.h"
#include "shop/order/v1/order_service.pb-c.h"
#include "svc_proc.h"

#define FS_TIMEOUT_MS    60000
#define SVC_PROC_ENV_MAX 16

/* ---- one test's connections and rows ---- */

/* A collected saga event of one of the test's orders. */
typedef struct fs_event {
    const char *order_id;
    const char *type; /* "OrderCreated", "StockReserved", ... (without the package) */
    const char *topic;
    const ProtobufCMessage *msg;
} fs_event_t;

typedef struct fs {
    arena_t *a;
    db_pool_t *order_db, *product_db, *user_db; /* user_db NULL when USER_DATABASE_URL is
                                                   not needed (no user-svc) */
    rpc_channel_t *order, *product, *user;      /* user NULL without user-svc */
    kfk_producer_t *producer;
    kfk_consumer_t *consumer; /* every saga topic from the beginning, a fresh group */
    const char **orders, **products, **users; /* the test's rows (fs_close deletes) */
    size_t n_orders, n_products, n_users;
    size_t cap_orders, cap_products, cap_users;
    fs_event_t *events;
    size_t n_events, cap_events;
} fs_t;

/* fs_open: connections to the services listening on the given gRPC ports (user_port
 * 0: no user-svc). fs_close: deletes the test's rows and closes everything. */
void fs_open(fs_t *t, int order_port, int product_port, int user_port);
void fs_close(fs_t *t);

/* The metadata of a call as `user_id` with `role` ("customer" | "admin"). */
typedef struct fs_who {
    const char *user_id;
    const char *role;
} fs_who_t;

/* fs_call: calls `method` of `svc` on `ch` as `who` (NULL: no identity), with a 10 s
 * deadline; the status code (0 or a negative ERR_*) with *resp in `a` on success and
 * *err filled otherwise. Thread-safe for distinct arenas. */
int fs_call(rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc, const char *method,
            const ProtobufCMessage *req, const fs_who_t *who, arena_t *a, ProtobufCMessage **resp,
            err_t *err);

/* fs_admin: an admin identity (a fixed user id). */
extern const fs_who_t fs_admin;

/* fs_product: a new active product (CreateProduct) priced `price_cents` with
 * `available` units (SetStock). */
const char *fs_product(fs_t *t, int64_t price_cents, int64_t available);

/* fs_user: a new customer (CreateUser) whose wallet holds `balance` cents (one
 * Deposit if balance > 0). Needs user-svc. */
const char *fs_user(fs_t *t, int64_t balance);

/* fs_customer: a fresh user id that no user-svc knows (for tests without user-svc). */
const char *fs_customer(fs_t *t);

/* An order line for fs_create. */
typedef struct fs_line {
    const char *product_id;
    int32_t quantity;
} fs_line_t;

/* fs_create: CreateOrder as `user_id` with `key` (NULL: a fresh one). The order is
 * registered with the test. Returns the status code; *out (may be NULL) is the
 * response, in t->a. */
int fs_create(fs_t *t, const char *user_id, const char *key, const fs_line_t *lines, size_t n,
              Shop__Order__V1__CreateOrderResponse **out, err_t *err);

/* fs_create_ok: fs_create that must succeed; the new order. */
const Shop__Order__V1__Order *fs_create_ok(fs_t *t, const char *user_id, const fs_line_t *lines,
                                           size_t n);

/* fs_track: registers an order id (so its events are collected and its rows deleted). */
void fs_track(fs_t *t, const char *order_id);

/* fs_get: GetOrder as the owner; fails the test unless it succeeds. */
const Shop__Order__V1__Order *fs_get(fs_t *t, const char *user_id, const char *order_id);

/* fs_wait_status: polls GetOrder until the order has `status` (shop.common.v1
 * OrderStatus), failing the test after timeout_ms; the order. */
const Shop__Order__V1__Order *fs_wait_status(fs_t *t, const char *user_id, const char *order_id,
                                             int status, int timeout_ms);

/* fs_has_step: how many timeline entries of `o` have `step` (and, if detail_part is
 * not NULL, contain it in their detail). */
int fs_has_step(const Shop__Order__V1__Order *o, const char *step, const char *detail_part);

/* fs_wait_step: polls GetOrder until the timeline has `step`; the order. */
const Shop__Order__V1__Order *fs_wait_step(fs_t *t, const char *user_id, const char *order_id,
                                           const char *step, int timeout_ms);

/* ---- events ---- */

/* fs_produce: produces `msg` as a CloudEvent (ce_id NULL: a fresh one; the id used is
 * copied to ce_id_out when not NULL) to `topic` with key `key`, and waits for the
 * broker's ack. */
void fs_produce(fs_t *t, const char *topic, const char *key, const ProtobufCMessage *msg,
                const char *ce_id, char *ce_id_out);

/* fs_collect: consumes the saga topics until `timeout_ms` passed or, when want > 0, at
 * least `want` events of `type` for `order_id` (NULL: any of the test's orders) were
 * collected; then reads on for settle_ms (so unwanted extra events show). Returns
 * the count of such events. */
size_t fs_collect(fs_t *t, const char *type, const char *order_id, size_t want, int settle_ms,
                  int timeout_ms);

/* fs_count: collected events of `type` for order_id (NULL: any of the test's orders). */
size_t fs_count(const fs_t *t, const char *type, const char *order_id);

/* fs_find: the first collected event of `type` for order_id; fails the test if none. */
const ProtobufCMessage *fs_find(const fs_t *t, const char *type, const char *order_id);

/* fs_dlq_count: messages in the three .dlq topics keyed by one of the test's orders
 * (or by `extra_key` when not NULL), read from the beginning. */
size_t fs_dlq_count(fs_t *t, const char *extra_key, int timeout_ms);

/* ---- the databases ---- */

typedef struct fs_stock {
    int64_t available, reserved, sold, added;
} fs_stock_t;

/* fs_stock: the product's inventory row (product database). */
fs_stock_t fs_stock(fs_t *t, const char *product_id);

/* fs_balance: the user's wallet balance (user database). */
int64_t fs_balance(fs_t *t, const char *user_id);

/* fs_i64: a single integer from SQL on `db` with up to two text parameters. */
int64_t fs_i64(fs_t *t, db_pool_t *db, const char *sql, const char *p1, const char *p2);

/* fs_wait_i64: polls fs_i64 until it yields `want`, failing the test after
 * timeout_ms; the last value. */
int64_t fs_wait_i64(fs_t *t, db_pool_t *db, const char *sql, const char *p1, const char *p2,
                    int64_t want, int timeout_ms);

/* fs_wait_unattended: waits until no connection of a process named `program`
 * (application_name, e.g. "user-svc") is open on `db`: no instance of it runs against
 * the shared stack (another test's, or one just stopped that is still draining).
 * Fails the test after timeout_ms. */
void fs_wait_unattended(fs_t *t, db_pool_t *db, const char *program, int timeout_ms);

/* fs_invariants: checks docs/architecture.md §4's invariants over the test's orders, products
 * and users, with every order terminal: balance = deposits - Σ totals of CONFIRMED
 * orders per wallet, one net charge per CONFIRMED order and none per CANCELLED one;
 * available + reserved + sold = added, reserved = 0 and sold = Σ quantities of
 * CONFIRMED orders per product; nothing negative; the three outboxes hold no
 * unpublished row of the test's orders. NULL when all hold, else a description of
 * the first that does not (in t->a). */
const char *fs_invariants(fs_t *t);

/* fs_wait_invariants: polls fs_invariants until they hold; fails the test with the
 * last violation after timeout_ms. */
void fs_wait_invariants(fs_t *t, int timeout_ms);

#endif
