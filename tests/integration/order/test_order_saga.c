/*
 * order-svc's saga steps against the real binaries and the test stack: product-svc
 * prices and reserves for real; user-svc is not running, so this test plays its part
 * by producing PaymentCompleted / PaymentFailed to payment.events, and can produce
 * the late, repeated and malformed events a real user-svc never would. Two order-svc
 * instances share the consumer group and sweep the same database (SAGA_TIMEOUT 4 s),
 * so every check also covers N instances.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/log.h"
#include "fleet_support.h"
#include "shop/common/v1/common.pb-c.h"
#include "shop/events/v1/events.pb-c.h"

#define SAGA_TIMEOUT_MS 4000
#define WAIT_MS         20000

#define PENDING   SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_PENDING
#define CONFIRMED SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED
#define CANCELLED SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED

static svc_proc_t product_svc, order_svc[2];
static fs_t T;

static int topic_partitions; /* of each saga topic */

static void setup(void)
{
    /* Alone in their consumer groups, holding every partition: no event of this test
     * waits on a member (another test's) that is gone. */
    svc_wait_partitions((svc_proc_t *[]){&product_svc}, 1, topic_partitions, 120000);
    svc_wait_partitions((svc_proc_t *[]){&order_svc[0], &order_svc[1]}, 2, 2 * topic_partitions,
                        120000);
    fs_open(&T, order_svc[0].grpc_port, product_svc.grpc_port, 0);
    /* This test plays user-svc: a real one on the shared stack (another test's) would
     * answer StockReserved first. */
    db_pool_t *user_db = db_pool_new(svc_env("USER_DATABASE_URL"), 1, &(err_t)ERR_INIT);
    ck_assert_ptr_nonnull(user_db);
    fs_wait_unattended(&T, user_db, "user-svc", 120000);
    db_pool_free(user_db);
}

static void teardown(void)
{
    fs_close(&T);
}

static void pay(const Shop__Order__V1__Order *o, const char *ce_id)
{
    Shop__Events__V1__PaymentCompleted ev = SHOP__EVENTS__V1__PAYMENT_COMPLETED__INIT;
    char ledger[UUID_STR_LEN];
    uuid_new(ledger);
    ev.order_id = o->id;
    ev.user_id = o->user_id;
    ev.amount_cents = o->total_cents;
    ev.currency = "USD";
    ev.ledger_entry_id = ledger;
    fs_produce(&T, "payment.events", o->id, &ev.base, ce_id, NULL);
}

/* A PaymentCompleted for the order as user-svc would send it, for a test to alter. */
static Shop__Events__V1__PaymentCompleted payment_of(const Shop__Order__V1__Order *o)
{
    Shop__Events__V1__PaymentCompleted ev = SHOP__EVENTS__V1__PAYMENT_COMPLETED__INIT;
    ev.order_id = o->id;
    ev.user_id = o->user_id;
    ev.amount_cents = o->total_cents;
    ev.currency = "USD";
    ev.ledger_entry_id = arena_alloc(T.a, UUID_STR_LEN);
    uuid_new(ev.ledger_entry_id);
    return ev;
}

static void fail_payment_id(const Shop__Order__V1__Order *o, char *ce_id_out)
{
    Shop__Events__V1__PaymentFailed ev = SHOP__EVENTS__V1__PAYMENT_FAILED__INIT;
    ev.order_id = o->id;
    ev.user_id = o->user_id;
    ev.reason = SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INSUFFICIENT_FUNDS;
    ev.amount_cents = o->total_cents;
    ev.currency = "USD";
    fs_produce(&T, "payment.events", o->id, &ev.base, NULL, ce_id_out);
}

static void fail_payment(const Shop__Order__V1__Order *o)
{
    fail_payment_id(o, NULL);
}

/* Waits until order-svc's inbox holds every one of ids[0..n). */
static void wait_processed(char (*ids)[UUID_STR_LEN], size_t n)
{
    for (size_t i = 0; i < n; i++)
        fs_wait_i64(&T, T.order_db, "SELECT count(*) FROM processed_events WHERE ce_id = $1",
                    ids[i], NULL, 1, WAIT_MS);
}

/* Fails the test unless the order's timeline seq runs 1..n without a gap. */
static void assert_dense_timeline(const char *order_id)
{
    ck_assert_int_eq(fs_i64(&T, T.order_db,
                            "SELECT count(*) FILTER (WHERE seq BETWEEN 1 AND n) - n"
                            " FROM (SELECT seq, count(*) OVER () AS n FROM order_timeline"
                            " WHERE order_id = $1) t GROUP BY n",
                            order_id, NULL),
                     0);
}

/* A PENDING order whose stock product-svc reserved (StockReserved recorded). */
static const Shop__Order__V1__Order *reserved_order(const char *user, const fs_line_t *lines,
                                                    size_t n)
{
    const Shop__Order__V1__Order *o = fs_create_ok(&T, user, lines, n);
    return fs_wait_step(&T, user, o->id, "stock_reserved", WAIT_MS);
}

static void assert_steps(const Shop__Order__V1__Order *o, const char *const *steps, size_t n)
{
    ck_assert_uint_ge(o->n_timeline, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(strcmp(o->timeline[i]->step, steps[i]) == 0, "timeline[%zu] is %s, want %s",
                      i, o->timeline[i]->step, steps[i]);
}

static void assert_lines(Shop__Events__V1__OrderLine **lines, size_t n,
                         const Shop__Order__V1__Order *o)
{
    ck_assert_uint_eq(n, o->n_lines);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(lines[i]->product_id, o->lines[i]->product_id);
        ck_assert_int_eq(lines[i]->quantity, o->lines[i]->quantity);
        ck_assert_int_eq(lines[i]->unit_price_cents, o->lines[i]->unit_price_cents);
    }
}

START_TEST(test_payment_completed_confirms_and_emits_order_confirmed)
{
    const char *user = fs_customer(&T);
    const char *p1 = fs_product(&T, 250, 10), *p2 = fs_product(&T, 1000, 5);
    fs_line_t lines[] = {{p1, 2}, {p2, 1}};
    const Shop__Order__V1__Order *o = reserved_order(user, lines, 2);
    ck_assert_int_eq(o->status, PENDING);
    ck_assert_int_eq(o->total_cents, 1500);
    pay(o, NULL);
    o = fs_wait_step(&T, user, o->id, "stock_committed", WAIT_MS);
    ck_assert_int_eq(o->status, CONFIRMED);
    ck_assert_int_eq(o->cancel_reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_UNSPECIFIED);
    static const char *const steps[] = {"order_created", "stock_reserved", "payment_completed",
                                        "order_confirmed", "stock_committed"};
    assert_steps(o, steps, 5);
    ck_assert_int_eq(o->timeline[0]->status, PENDING);
    ck_assert_int_eq(o->timeline[2]->status, CONFIRMED);
    ck_assert_ptr_nonnull(strstr(o->timeline[2]->detail, "1500 cents"));

    /* OrderCreated and OrderConfirmed carry the priced lines, exactly once each. */
    fs_collect(&T, "OrderConfirmed", o->id, 1, 1000, WAIT_MS);
    ck_assert_uint_eq(fs_count(&T, "OrderCreated", o->id), 1);
    ck_assert_uint_eq(fs_count(&T, "OrderConfirmed", o->id), 1);
    ck_assert_uint_eq(fs_count(&T, "OrderCancelled", o->id), 0);
    const Shop__Events__V1__OrderCreated *created =
        (const void *)fs_find(&T, "OrderCreated", o->id);
    ck_assert_str_eq(created->user_id, user);
    ck_assert_int_eq(created->total_cents, 1500);
    ck_assert_str_eq(created->currency, "USD");
    ck_assert_str_eq(created->created_at, o->created_at);
    assert_lines(created->lines, created->n_lines, o);
    const Shop__Events__V1__OrderConfirmed *confirmed =
        (const void *)fs_find(&T, "OrderConfirmed", o->id);
    ck_assert_int_eq(confirmed->total_cents, 1500);
    assert_lines(confirmed->lines, confirmed->n_lines, o);

    fs_stock_t s = fs_stock(&T, p1);
    ck_assert_int_eq(s.available, 8);
    ck_assert_int_eq(s.sold, 2);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_payment_failed_cancels_emits_order_cancelled_and_releases_stock)
{
    const char *user = fs_customer(&T);
    const char *p = fs_product(&T, 300, 4);
    fs_line_t lines[] = {{p, 3}};
    const Shop__Order__V1__Order *o = reserved_order(user, lines, 1);
    ck_assert_int_eq(fs_stock(&T, p).reserved, 3);
    fail_payment(o);
    o = fs_wait_step(&T, user, o->id, "stock_released", WAIT_MS);
    ck_assert_int_eq(o->status, CANCELLED);
    ck_assert_int_eq(o->cancel_reason,
                     SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_PAYMENT_FAILED);
    static const char *const steps[] = {"order_created", "stock_reserved", "payment_failed",
                                        "order_cancelled", "stock_released"};
    assert_steps(o, steps, 5);
    ck_assert_ptr_nonnull(strstr(o->timeline[2]->detail, "insufficient funds"));
    ck_assert_ptr_nonnull(strstr(o->timeline[4]->detail, "reserved stock released"));

    fs_collect(&T, "OrderCancelled", o->id, 1, 1000, WAIT_MS);
    ck_assert_uint_eq(fs_count(&T, "OrderCancelled", o->id), 1);
    ck_assert_uint_eq(fs_count(&T, "OrderConfirmed", o->id), 0);
    const Shop__Events__V1__OrderCancelled *c = (const void *)fs_find(&T, "OrderCancelled", o->id);
    ck_assert_int_eq(c->reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_PAYMENT_FAILED);
    ck_assert_int_eq(c->previous_status, PENDING);
    ck_assert_int_eq(c->total_cents, 900);
    ck_assert_str_eq(c->user_id, user);
    assert_lines(c->lines, c->n_lines, o);
    fs_stock_t s = fs_stock(&T, p);
    ck_assert_int_eq(s.available, 4);
    ck_assert_int_eq(s.reserved, 0);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_stock_rejected_cancels_out_of_stock_and_announces_it)
{
    const char *user = fs_customer(&T);
    const char *plenty = fs_product(&T, 100, 50), *scarce = fs_product(&T, 100, 1);
    fs_line_t lines[] = {{plenty, 1}, {scarce, 2}};
    const Shop__Order__V1__Order *o = fs_create_ok(&T, user, lines, 2);
    o = fs_wait_step(&T, user, o->id, "stock_released", WAIT_MS);
    ck_assert_int_eq(o->status, CANCELLED);
    ck_assert_int_eq(o->cancel_reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_OUT_OF_STOCK);
    static const char *const steps[] = {"order_created", "stock_rejected", "order_cancelled",
                                        "stock_released"};
    assert_steps(o, steps, 4);
    char *want =
        arena_sprintf(T.a, "insufficient stock for product %s: requested 2, available 1", scarce);
    ck_assert_str_eq(o->timeline[1]->detail, want);
    ck_assert_str_eq(o->timeline[3]->detail, "no stock was held");

    fs_collect(&T, "OrderCancelled", o->id, 1, 1000, WAIT_MS);
    const Shop__Events__V1__OrderCancelled *c = (const void *)fs_find(&T, "OrderCancelled", o->id);
    ck_assert_int_eq(c->reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_OUT_OF_STOCK);
    ck_assert_uint_eq(fs_count(&T, "StockReserved", o->id), 0);
    ck_assert_int_eq(fs_stock(&T, plenty).available, 50);
    ck_assert_int_eq(fs_stock(&T, scarce).available, 1);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_late_payment_after_timeout_is_recorded_and_ignored)
{
    const char *user = fs_customer(&T);
    const char *p = fs_product(&T, 700, 3);
    fs_line_t lines[] = {{p, 1}};
    int64_t start = clock_mono_us();
    const Shop__Order__V1__Order *o = reserved_order(user, lines, 1);
    o = fs_wait_status(&T, user, o->id, CANCELLED, WAIT_MS);
    ck_assert_int_ge((clock_mono_us() - start) / 1000, SAGA_TIMEOUT_MS - 100);
    ck_assert_int_eq(o->cancel_reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT);
    ck_assert_int_eq(fs_has_step(o, "order_cancelled", "timeout: not completed within 4s"), 1);

    pay(o, NULL);
    o = fs_wait_step(&T, user, o->id, "payment_completed", WAIT_MS);
    ck_assert_int_eq(o->status, CANCELLED);
    ck_assert_int_eq(fs_has_step(o, "payment_completed", "ignored: the order is already cancelled"),
                     1);
    ck_assert_int_eq(fs_has_step(o, "order_confirmed", NULL), 0);
    o = fs_wait_step(&T, user, o->id, "stock_released", WAIT_MS);

    fs_collect(&T, "OrderCancelled", o->id, 1, 1500, WAIT_MS);
    ck_assert_uint_eq(fs_count(&T, "OrderConfirmed", o->id), 0);
    ck_assert_uint_eq(fs_count(&T, "OrderCancelled", o->id), 1);
    const Shop__Events__V1__OrderCancelled *c = (const void *)fs_find(&T, "OrderCancelled", o->id);
    ck_assert_int_eq(c->reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT);
    ck_assert_int_eq(fs_stock(&T, p).available, 3);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_steps_repeated_under_new_ids_leave_one_timeline_row_per_step)
{
    const char *user = fs_customer(&T);
    const char *p = fs_product(&T, 200, 5);
    fs_line_t lines[] = {{p, 2}};
    const Shop__Order__V1__Order *o = reserved_order(user, lines, 1);
    pay(o, NULL);
    o = fs_wait_step(&T, user, o->id, "stock_committed", WAIT_MS);
    ck_assert_int_eq(o->status, CONFIRMED);
    /* Every step again under new ids (twice each), and a failure and a rejection that
     * come too late (twice each as well). */
    Shop__Events__V1__StockReserved sr = SHOP__EVENTS__V1__STOCK_RESERVED__INIT;
    sr.order_id = o->id;
    sr.user_id = o->user_id;
    sr.total_cents = o->total_cents;
    sr.currency = "USD";
    Shop__Events__V1__StockCommitted sc = SHOP__EVENTS__V1__STOCK_COMMITTED__INIT;
    Shop__Events__V1__StockLine sl = SHOP__EVENTS__V1__STOCK_LINE__INIT;
    sl.product_id = (char *)p;
    sl.quantity = 2;
    Shop__Events__V1__StockLine *sls[] = {&sl};
    sc.order_id = o->id;
    sc.n_lines = 1;
    sc.lines = sls;
    Shop__Events__V1__StockRejected rej = SHOP__EVENTS__V1__STOCK_REJECTED__INIT;
    rej.order_id = o->id;
    rej.reason = SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK;
    rej.product_id = (char *)p;
    rej.requested = 2;
    Shop__Events__V1__PaymentCompleted pc = payment_of(o);
    char ids[10][UUID_STR_LEN];
    size_t n = 0;
    for (int round = 0; round < 2; round++) {
        fs_produce(&T, "inventory.events", o->id, &sr.base, NULL, ids[n++]);
        fs_produce(&T, "payment.events", o->id, &pc.base, NULL, ids[n++]);
        fs_produce(&T, "inventory.events", o->id, &sc.base, NULL, ids[n++]);
        fail_payment_id(o, ids[n++]);
        fs_produce(&T, "inventory.events", o->id, &rej.base, NULL, ids[n++]);
    }
    wait_processed(ids, n);
    o = fs_get(&T, user, o->id);
    ck_assert_int_eq(o->status, CONFIRMED);
    static const char *const steps[] = {"order_created", "stock_reserved", "payment_completed",
                                        "order_confirmed", "stock_committed"};
    assert_steps(o, steps, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(fs_has_step(o, steps[i], NULL), 1);
    ck_assert_int_eq(fs_has_step(o, "payment_completed", "ignored"), 0);
    ck_assert_int_eq(fs_has_step(o, "payment_failed", "ignored: the order is already confirmed"),
                     1);
    ck_assert_int_eq(fs_has_step(o, "stock_rejected", "ignored"), 1);
    ck_assert_int_eq(fs_has_step(o, "order_cancelled", NULL), 0);
    ck_assert_uint_eq(o->n_timeline, 7);
    assert_dense_timeline(o->id);

    fs_collect(&T, "OrderConfirmed", o->id, 1, 1500, WAIT_MS);
    ck_assert_uint_eq(fs_count(&T, "OrderConfirmed", o->id), 1);
    ck_assert_uint_eq(fs_count(&T, "OrderCancelled", o->id), 0);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_payment_not_matching_the_order_is_dead_lettered_and_the_order_times_out)
{
    const char *user = fs_customer(&T);
    const char *p = fs_product(&T, 300, 5);
    fs_line_t lines[] = {{p, 2}};
    const Shop__Order__V1__Order *o = reserved_order(user, lines, 1);
    /* Another amount, another user, a negative amount, no ledger entry: none confirms. */
    Shop__Events__V1__PaymentCompleted more = payment_of(o), other = payment_of(o),
                                       negative = payment_of(o), unbooked = payment_of(o);
    more.amount_cents = o->total_cents + 1;
    other.user_id = (char *)fs_customer(&T);
    negative.amount_cents = -o->total_cents;
    unbooked.ledger_entry_id = "";
    const ProtobufCMessage *bad[] = {&more.base, &other.base, &negative.base, &unbooked.base};
    for (size_t i = 0; i < 4; i++)
        fs_produce(&T, "payment.events", o->id, bad[i], NULL, NULL);
    o = fs_wait_status(&T, user, o->id, CANCELLED, SAGA_TIMEOUT_MS + WAIT_MS);
    ck_assert_int_eq(o->cancel_reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT);
    /* Each is retried a few times before its dead letter; the order's later events
     * wait behind them in the partition. */
    int64_t end = clock_mono_us() + (int64_t)WAIT_MS * 1000;
    size_t dead;
    while ((dead = fs_dlq_count(&T, NULL, WAIT_MS)) < 4 && clock_mono_us() < end)
        clock_sleep_ms(500);
    ck_assert_uint_eq(dead, 4);
    o = fs_get(&T, user, o->id);
    ck_assert_int_eq(fs_has_step(o, "payment_completed", NULL), 0);
    ck_assert_int_eq(fs_has_step(o, "order_confirmed", NULL), 0);
    fs_collect(&T, "OrderCancelled", o->id, 1, 1500, WAIT_MS);
    ck_assert_uint_eq(fs_count(&T, "OrderConfirmed", o->id), 0);
    fs_wait_invariants(&T, WAIT_MS);
    ck_assert_int_eq(fs_stock(&T, p).available, 5);
}
END_TEST

START_TEST(test_invalid_order_and_payment_rejections_cancel_the_order)
{
    const char *user = fs_customer(&T);
    const char *p = fs_product(&T, 100, 10);
    fs_line_t lines[] = {{p, 1}};
    const Shop__Order__V1__Order *refused = reserved_order(user, lines, 1);
    const Shop__Order__V1__Order *unpaid = reserved_order(user, lines, 1);
    /* As product-svc and user-svc answer an OrderCreated and a StockReserved that break
     * the field rules. */
    Shop__Events__V1__StockRejected rej = SHOP__EVENTS__V1__STOCK_REJECTED__INIT;
    rej.order_id = refused->id;
    rej.reason = SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INVALID_ORDER;
    rej.product_id = "";
    fs_produce(&T, "inventory.events", refused->id, &rej.base, NULL, NULL);
    Shop__Events__V1__PaymentFailed pf = SHOP__EVENTS__V1__PAYMENT_FAILED__INIT;
    pf.order_id = unpaid->id;
    pf.user_id = "";
    pf.reason = SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INVALID_PAYMENT;
    pf.currency = "USD";
    fs_produce(&T, "payment.events", unpaid->id, &pf.base, NULL, NULL);

    refused = fs_wait_step(&T, user, refused->id, "stock_released", WAIT_MS);
    ck_assert_int_eq(refused->status, CANCELLED);
    ck_assert_int_eq(refused->cancel_reason,
                     SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_OUT_OF_STOCK);
    ck_assert_int_eq(fs_has_step(refused, "stock_rejected", "refused as invalid"), 1);
    unpaid = fs_wait_step(&T, user, unpaid->id, "stock_released", WAIT_MS);
    ck_assert_int_eq(unpaid->status, CANCELLED);
    ck_assert_int_eq(unpaid->cancel_reason,
                     SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_PAYMENT_FAILED);
    ck_assert_int_eq(fs_has_step(unpaid, "payment_failed", "refused as invalid"), 1);
    fs_wait_invariants(&T, WAIT_MS);
    ck_assert_int_eq(fs_stock(&T, p).available, 10);
}
END_TEST

START_TEST(test_cancel_of_confirmed_order_emits_order_cancelled_and_restocks)
{
    const char *user = fs_customer(&T);
    const char *p = fs_product(&T, 450, 6);
    fs_line_t lines[] = {{p, 4}};
    const Shop__Order__V1__Order *o = reserved_order(user, lines, 1);
    pay(o, NULL);
    o = fs_wait_step(&T, user, o->id, "stock_committed", WAIT_MS);
    ck_assert_int_eq(fs_stock(&T, p).sold, 4);

    Shop__Order__V1__CancelOrderRequest req = SHOP__ORDER__V1__CANCEL_ORDER_REQUEST__INIT;
    req.order_id = o->id;
    fs_who_t owner = {user, "customer"};
    err_t err = ERR_INIT;
    ProtobufCMessage *resp;
    for (int round = 0; round < 2; round++) { /* the second is a no-op */
        int rc = fs_call(T.order, &shop__order__v1__order_service__descriptor, "CancelOrder",
                         &req.base, &owner, T.a, &resp, &err);
        ck_assert_msg(rc == 0, "%s", err.msg);
        const Shop__Order__V1__Order *c = ((Shop__Order__V1__CancelOrderResponse *)resp)->order;
        ck_assert_int_eq(c->status, CANCELLED);
        ck_assert_int_eq(c->cancel_reason,
                         SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_USER_REQUESTED);
        ck_assert_int_eq(fs_has_step(c, "order_cancelled", "cancelled by the user"), 1);
    }
    o = fs_wait_step(&T, user, o->id, "stock_released", WAIT_MS);
    ck_assert_int_eq(fs_has_step(o, "stock_released", "sold stock restocked"), 1);
    fs_collect(&T, "OrderCancelled", o->id, 1, 1500, WAIT_MS);
    ck_assert_uint_eq(fs_count(&T, "OrderCancelled", o->id), 1);
    const Shop__Events__V1__OrderCancelled *c = (const void *)fs_find(&T, "OrderCancelled", o->id);
    ck_assert_int_eq(c->previous_status, CONFIRMED);
    ck_assert_int_eq(c->reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_USER_REQUESTED);
    ck_assert_int_eq(c->total_cents, 1800);
    fs_stock_t s = fs_stock(&T, p);
    ck_assert_int_eq(s.available, 6);
    ck_assert_int_eq(s.sold, 0);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_unknown_orders_are_skipped_and_malformed_events_dead_lettered)
{
    char unknown[UUID_STR_LEN], ce_id[UUID_STR_LEN], poison_key[64];
    uuid_new(unknown);
    Shop__Events__V1__PaymentCompleted ev = SHOP__EVENTS__V1__PAYMENT_COMPLETED__INIT;
    ev.order_id = unknown;
    ev.user_id = (char *)fs_customer(&T);
    ev.amount_cents = 100;
    ev.currency = "USD";
    ev.ledger_entry_id = unknown;
    fs_produce(&T, "payment.events", unknown, &ev.base, NULL, ce_id);
    /* Handled (the inbox has it) without creating anything. */
    fs_wait_i64(&T, T.order_db, "SELECT count(*) FROM processed_events WHERE ce_id = $1", ce_id,
                NULL, 1, WAIT_MS);
    ck_assert_int_eq(
        fs_i64(&T, T.order_db, "SELECT count(*) FROM orders WHERE id = $1", unknown, NULL), 0);
    ck_assert_int_eq(fs_i64(&T, T.order_db,
                            "SELECT count(*) FROM order_timeline WHERE order_id = $1", unknown,
                            NULL),
                     0);

    char id[UUID_STR_LEN];
    uuid_new(id);
    snprintf(poison_key, sizeof(poison_key), "poison-%s", id);
    ev.order_id = "not-a-uuid";
    fs_produce(&T, "payment.events", poison_key, &ev.base, NULL, NULL);
    int64_t end = clock_mono_us() + (int64_t)WAIT_MS * 1000;
    size_t n;
    while ((n = fs_dlq_count(&T, poison_key, WAIT_MS)) == 0 && clock_mono_us() < end)
        clock_sleep_ms(500);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(fs_dlq_count(&T, unknown, WAIT_MS), 0);
}
END_TEST

START_TEST(test_sweeper_cancels_each_timed_out_order_once_across_instances)
{
    enum { N = 30 };
    const char *p = fs_product(&T, 100, 1000);
    fs_line_t lines[] = {{p, 1}};
    const char *users[N], *ids[N];
    for (int i = 0; i < N; i++) {
        users[i] = fs_customer(&T);
        ids[i] = fs_create_ok(&T, users[i], lines, 1)->id;
    }
    for (int i = 0; i < N; i++) {
        const Shop__Order__V1__Order *o =
            fs_wait_status(&T, users[i], ids[i], CANCELLED, SAGA_TIMEOUT_MS + WAIT_MS);
        ck_assert_int_eq(o->cancel_reason, SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT);
        ck_assert_int_eq(fs_has_step(o, "order_cancelled", NULL), 1);
    }
    /* Exactly one OrderCancelled per order, after its OrderCreated on order.events. */
    fs_collect(&T, "OrderCancelled", NULL, N, 1500, WAIT_MS);
    ck_assert_uint_eq(fs_count(&T, "OrderCancelled", NULL), N);
    for (int i = 0; i < N; i++) {
        long created = -1, cancelled = -1;
        for (size_t k = 0; k < T.n_events; k++) {
            if (strcmp(T.events[k].order_id, ids[i]) != 0)
                continue;
            if (strcmp(T.events[k].type, "OrderCreated") == 0)
                created = (long)k;
            if (strcmp(T.events[k].type, "OrderCancelled") == 0)
                cancelled = (long)k;
        }
        ck_assert_msg(created >= 0 && created < cancelled,
                      "order %s: created at %ld, cancelled at %ld", ids[i], created, cancelled);
    }
    fs_wait_invariants(&T, WAIT_MS);
    ck_assert_int_eq(fs_stock(&T, p).available, 1000);
}
END_TEST

static Suite *order_saga_suite(void)
{
    Suite *s = suite_create("order_saga");
    TCase *tc = check_case(s, "steps", 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_payment_completed_confirms_and_emits_order_confirmed);
    tcase_add_test(tc, test_payment_failed_cancels_emits_order_cancelled_and_releases_stock);
    tcase_add_test(tc, test_stock_rejected_cancels_out_of_stock_and_announces_it);
    tcase_add_test(tc, test_late_payment_after_timeout_is_recorded_and_ignored);
    tcase_add_test(tc, test_steps_repeated_under_new_ids_leave_one_timeline_row_per_step);
    tcase_add_test(tc,
                   test_payment_not_matching_the_order_is_dead_lettered_and_the_order_times_out);
    tcase_add_test(tc, test_invalid_order_and_payment_rejections_cancel_the_order);
    tcase_add_test(tc, test_cancel_of_confirmed_order_emits_order_cancelled_and_restocks);
    tcase_add_test(tc, test_unknown_orders_are_skipped_and_malformed_events_dead_lettered);
    tcase_add_test(tc, test_sweeper_cancels_each_timed_out_order_once_across_instances);
    return s;
}

int main(void)
{
    log_init("fleet-test", LOG_LEVEL_WARN); /* the test's own Kafka clients are quiet */
    char product_env[1100], order_env[1100], product_addr[64];
    snprintf(product_env, sizeof(product_env), "DATABASE_URL=%s", svc_env("PRODUCT_DATABASE_URL"));
    snprintf(order_env, sizeof(order_env), "DATABASE_URL=%s", svc_env("ORDER_DATABASE_URL"));
    int status = EXIT_FAILURE;
    if ((topic_partitions = svc_topic_partitions("order.events")) < 0)
        goto out;
    if (svc_proc_start(&product_svc, PRODUCT_SVC, "product-svc",
                       (const char *const[]){product_env, NULL}) != 0)
        goto out;
    snprintf(product_addr, sizeof(product_addr), "PRODUCT_ADDR=127.0.0.1:%d",
             product_svc.grpc_port);
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof(name), "order-svc-%d", i);
        const char *env[] = {order_env, product_addr, "SAGA_TIMEOUT=4s", "SWEEP_INTERVAL=200ms",
                             NULL};
        if (svc_proc_start(&order_svc[i], svc_program("ORDER_SVC_PROGRAM", ORDER_SVC), name, env) !=
            0)
            goto out;
    }
    /* gRPC does not survive fork once started: one process for every test. */
    status = check_run(order_saga_suite(), CK_NOFORK);
out:
    for (int i = 0; i < 2; i++)
        if (svc_proc_stop(&order_svc[i]) != 0)
            status = EXIT_FAILURE;
    if (svc_proc_stop(&product_svc) != 0)
        status = EXIT_FAILURE;
    for (int i = 0; i < 2; i++)
        svc_proc_free(&order_svc[i], status != EXIT_SUCCESS);
    svc_proc_free(&product_svc, status != EXIT_SUCCESS);
    return status;
}
