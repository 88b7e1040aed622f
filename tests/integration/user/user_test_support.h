/*
 * user_test_support: what the user-svc saga tests share — real user-svc processes,
 * users and deposits made through its gRPC API (common's rpc client), saga events
 * produced to inventory.events and order.events with CloudEvents headers,
 * payment.events read back, and the user database inspected.
 *
 * The shared test stack's topics carry other tests' events too: every order id here
 * is a fresh UUID and only events keyed by this test's orders are kept. Every user
 * has a fresh email; ut_close deletes the test's users, their wallets and ledgers, and
 * its orders' payment state.
 */
#ifndef USER_TEST_SUPPORT_H
#define USER_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/kfk.h"
#include "common/rpc.h"
#include "common/uuid.h"
#include "svc_proc.h"

#define UT_TIMEOUT_MS 90000

/* ---- one test's connections ---- */

/* A collected payment event. */
typedef struct ut_event {
    const char *order_id;
    const char *type; /* "PaymentCompleted", "PaymentFailed", "PaymentRefunded" */
    const ProtobufCMessage *msg;
} ut_event_t;

typedef struct ut {
    arena_t *a;
    db_pool_t *db;
    rpc_channel_t *ch;
    kfk_producer_t *producer;
    kfk_consumer_t *consumer; /* payment.events from the beginning, a fresh group */
    const char **orders;      /* the test's order ids: only their events are kept */
    size_t n_orders, cap_orders;
    const char **users; /* the test's users (deleted by ut_close) */
    size_t n_users, cap_users;
    ut_event_t *events;
    size_t n_events, cap_events;
} ut_t;

/* ut_open / ut_close: connections for a test talking to instance `svc`; ut_close
 * deletes the test's users and its orders' payment state. */
void ut_open(ut_t *t, const svc_proc_t *svc);
void ut_close(ut_t *t);

/* ut_user: a new customer (CreateUser) whose wallet holds `balance` cents (one
 * Deposit, if balance > 0). */
const char *ut_user(ut_t *t, int64_t balance);

/* ut_deposit: Deposit through the API as the user; the answer's replayed flag, the
 * balance after it into *balance (may be NULL). Thread-safe with ut_t's arena unused:
 * scratch memory comes from `a`. Fails the test unless the call succeeds. */
bool ut_deposit(ut_t *t, arena_t *a, const char *user_id, int64_t amount, const char *key,
                int64_t *balance, const char **entry_id);

/* ut_order: a fresh order id, registered so its events are collected. */
const char *ut_order(ut_t *t);

/* Producing (key = order id) events that follow the field rules; OrderCancelled
 * carries one line (of a product nobody sells) at `total`. ce_id NULL means a fresh
 * one; the id used is written to ce_id_out (UUID_STR_LEN) when not NULL. The broker's
 * ack is awaited. */
void ut_stock_reserved(ut_t *t, const char *order_id, const char *user_id, int64_t total,
                       const char *ce_id, char *ce_id_out);
void ut_order_cancelled(ut_t *t, const char *order_id, const char *user_id, int64_t total,
                        const char *ce_id, char *ce_id_out);

/* ut_send: produces `msg` (any event, valid or not) to `topic` with key `key`, as the
 * functions above do. */
void ut_send(ut_t *t, const char *topic, const char *key, const ProtobufCMessage *msg,
             const char *ce_id, char *ce_id_out);

/* ut_stock_reserved_many: one StockReserved per order, all queued at once, then every
 * ack awaited. */
void ut_stock_reserved_many(ut_t *t, const char *const *order_ids, size_t n, const char *user_id,
                            int64_t total);

/* ut_wait_events: consumes payment.events until at least `want` events of the test's
 * orders were collected in all, then keeps reading for `settle_ms` more (so that
 * unwanted extra events show). Returns the number collected. */
size_t ut_wait_events(ut_t *t, size_t want, int settle_ms);

/* ut_count: collected events of `type` for order_id (NULL: any of the test's orders). */
size_t ut_count(const ut_t *t, const char *type, const char *order_id);

/* ut_find: the first collected event of `type` for order_id; fails the test if none. */
const ProtobufCMessage *ut_find(const ut_t *t, const char *type, const char *order_id);

/* ---- the database ---- */

/* ut_balance: the user's wallet balance; asserts it is >= 0 and equals the sum of the
 * user's ledger (read in one statement). */
int64_t ut_balance(ut_t *t, const char *user_id);

/* ut_order_state: order_payments.state, or "" if there is no row. */
const char *ut_order_state(ut_t *t, const char *order_id);

/* ut_wait_order_state: polls until the order's state is `state`; fails the test after
 * UT_TIMEOUT_MS. */
void ut_wait_order_state(ut_t *t, const char *order_id, const char *state);

/* ut_wait_processed: polls until the inbox holds ce_id (the event was handled, and so
 * was everything before it in its partition); fails the test after UT_TIMEOUT_MS. */
void ut_wait_processed(ut_t *t, const char *ce_id);

/* ut_i64: a single integer from SQL with up to two text parameters. */
int64_t ut_i64(ut_t *t, const char *sql, const char *p1, const char *p2);

#endif
