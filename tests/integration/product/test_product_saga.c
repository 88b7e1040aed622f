/*
 * product-svc as a saga participant (docs/architecture.md §4 steps 2, 7, 8), against the real
 * PostgreSQL and Kafka of the test stack, with two product-svc processes in one
 * consumer group for the whole run: order events go in on order.events, what comes
 * out on inventory.events and what the product database holds are checked, and every
 * stock read asserts that no count is negative and available + reserved + sold =
 * stock ever added.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "product_test_support.h"
#include "saga_events.h"
#include "shop/events/v1/events.pb-c.h"

#define PT_TCASE_TIMEOUT_S 180

static svc_proc_t svcs[2];

typedef Shop__Events__V1__StockRejected rejected_t;
typedef Shop__Events__V1__StockReleased released_t;
typedef Shop__Events__V1__StockCommitted committed_t;

static void expect_stock(pt_t *t, const char *product_id, int64_t available, int64_t reserved,
                         int64_t sold)
{
    pt_stock_t s = pt_stock(t, product_id);
    ck_assert_msg(s.available == available && s.reserved == reserved && s.sold == sold,
                  "stock of %s is %lld/%lld/%lld, expected %lld/%lld/%lld", product_id,
                  (long long)s.available, (long long)s.reserved, (long long)s.sold,
                  (long long)available, (long long)reserved, (long long)sold);
}

static void expect_rejected(const pt_t *t, const char *order_id, int reason, const char *product_id,
                            int32_t requested, int64_t available)
{
    const rejected_t *r = (const rejected_t *)pt_find(t, "StockRejected", order_id);
    ck_assert_str_eq(r->order_id, order_id);
    ck_assert_int_eq(r->reason, reason);
    ck_assert_str_eq(r->product_id, product_id);
    ck_assert_int_eq(r->requested, requested);
    ck_assert_int_eq(r->available, available);
}

/* The quantity of product_id among an event's stock lines (-1 if absent). */
static int64_t line_quantity(Shop__Events__V1__StockLine *const *lines, size_t n,
                             const char *product_id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(lines[i]->product_id, product_id) == 0)
            return lines[i]->quantity;
    return -1;
}

START_TEST(test_reserve_takes_every_line_or_none)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *a = pt_product(&t, 5), *b = pt_product(&t, 5), *c = pt_product(&t, 1);
    const char *ok = pt_order(&t), *short_c = pt_order(&t), *unknown = pt_order(&t);
    const char *split = pt_order(&t);
    char missing[UUID_STR_LEN];
    uuid_new(missing);
    pt_order_created(&t, ok, (pt_line_t[]){{a, 2}, {b, 3}}, 2, NULL);
    pt_order_created(&t, short_c, (pt_line_t[]){{a, 1}, {c, 2}, {b, 1}}, 3, NULL);
    pt_order_created(&t, unknown, (pt_line_t[]){{a, 1}, {missing, 1}}, 2, NULL);
    /* Two lines of one product count together: 1 + 1 > 1. */
    pt_order_created(&t, split, (pt_line_t[]){{c, 1}, {c, 1}}, 2, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 4), 4);

    const Shop__Events__V1__StockReserved *r = (const void *)pt_find(&t, "StockReserved", ok);
    ck_assert_str_eq(r->order_id, ok);
    ck_assert_str_eq(r->user_id, "00000000-0000-7000-8000-00000000c0de");
    ck_assert_int_eq(r->total_cents, 5 * 250);
    ck_assert_str_eq(r->currency, "USD");
    expect_rejected(&t, short_c, SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK,
                    c, 2, 1);
    expect_rejected(&t, unknown, SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_UNKNOWN_PRODUCT,
                    missing, 1, 0);
    expect_rejected(&t, split, SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK, c,
                    2, 1);
    ck_assert_uint_eq(pt_count(&t, "StockReserved", NULL), 1);
    ck_assert_uint_eq(pt_count(&t, "StockRejected", NULL), 3);

    /* Only the accepted order holds anything. */
    expect_stock(&t, a, 3, 2, 0);
    expect_stock(&t, b, 2, 3, 0);
    expect_stock(&t, c, 1, 0, 0);
    int64_t units;
    ck_assert_int_eq(pt_reservations(&t, ok, "RESERVED", &units), 2);
    ck_assert_int_eq(units, 5);
    ck_assert_str_eq(pt_order_state(&t, ok), "RESERVED");
    const char *rejected[] = {short_c, unknown, split};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(pt_reservations(&t, rejected[i], NULL, NULL), 0);
        ck_assert_str_eq(pt_order_state(&t, rejected[i]), "REJECTED");
    }
    pt_close(&t);
}
END_TEST

/* How many of the orders an instance logged a stock decision for. */
static int handled_by(const svc_proc_t *svc, const char *const *orders, size_t n)
{
    int count = 0;
    for (size_t i = 0; i < n; i++)
        count += svc_log_count(svc->log, "\"msg\":\"stock re", orders[i]) > 0;
    return count;
}

START_TEST(test_fifty_concurrent_orders_for_ten_units_reserve_exactly_ten)
{
    enum { ORDERS = 50, UNITS = 10 };
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, UNITS);
    const char *orders[ORDERS];
    for (int i = 0; i < ORDERS; i++)
        orders[i] = pt_order(&t);
    for (int i = 0; i < ORDERS; i++)
        pt_order_created(&t, orders[i], (pt_line_t[]){{p, 1}}, 1, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, ORDERS), ORDERS);

    ck_assert_uint_eq(pt_count(&t, "StockReserved", NULL), UNITS);
    ck_assert_uint_eq(pt_count(&t, "StockRejected", NULL), ORDERS - UNITS);
    expect_stock(&t, p, 0, UNITS, 0);
    int reserved_orders = 0;
    for (int i = 0; i < ORDERS; i++) {
        ck_assert_int_eq(pt_emitted(&t, orders[i], "StockReserved") +
                             pt_emitted(&t, orders[i], "StockRejected"),
                         1);
        if (pt_count(&t, "StockRejected", orders[i]))
            expect_rejected(&t, orders[i],
                            SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK, p, 1,
                            0);
        reserved_orders += pt_reservations(&t, orders[i], "RESERVED", NULL);
    }
    ck_assert_int_eq(reserved_orders, UNITS);
    /* Both instances decided some of the orders. */
    int a = handled_by(&svcs[0], orders, ORDERS), b = handled_by(&svcs[1], orders, ORDERS);
    ck_assert_msg(a > 0 && b > 0, "instances handled %d and %d of %d orders", a, b, ORDERS);

    /* Cancelling every order gives every unit back, whoever held it. */
    for (int i = 0; i < ORDERS; i++)
        pt_order_cancelled(&t, orders[i], NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 2 * ORDERS), 2 * ORDERS);
    ck_assert_uint_eq(pt_count(&t, "StockReleased", NULL), ORDERS);
    expect_stock(&t, p, UNITS, 0, 0);
    pt_close(&t);
}
END_TEST

START_TEST(test_duplicated_order_created_reserves_once)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 10), *order = pt_order(&t);
    const char *ce_id = pt_order_created(&t, order, (pt_line_t[]){{p, 3}}, 1, NULL);
    pt_order_created(&t, order, (pt_line_t[]){{p, 3}}, 1, ce_id);
    pt_order_created(&t, order, (pt_line_t[]){{p, 3}}, 1, ce_id);
    /* The cancellation comes after the copies in the order's partition: once it is
     * handled, so are they. */
    pt_wait_processed(&t, pt_order_cancelled(&t, order, NULL));
    ck_assert_int_eq(pt_emitted(&t, order, "StockReserved"), 1);
    ck_assert_int_eq(
        pt_i64(&t, "SELECT count(*) FROM processed_events WHERE ce_id = $1", ce_id, NULL), 1);
    const released_t *rel;
    ck_assert_uint_eq(pt_wait_events(&t, 2), 2);
    ck_assert_uint_eq(pt_count(&t, "StockReserved", order), 1);
    rel = (const released_t *)pt_find(&t, "StockReleased", order);
    ck_assert_int_eq(line_quantity(rel->lines, rel->n_lines, p), 3);
    expect_stock(&t, p, 10, 0, 0);
    pt_close(&t);
}
END_TEST

START_TEST(test_semantic_duplicate_order_created_reserves_once)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 10), *order = pt_order(&t);
    /* The same order announced twice under different event ids. */
    pt_order_created(&t, order, (pt_line_t[]){{p, 4}}, 1, NULL);
    pt_wait_processed(&t, pt_order_created(&t, order, (pt_line_t[]){{p, 4}}, 1, NULL));
    ck_assert_int_eq(pt_emitted(&t, order, "StockReserved"), 1);
    expect_stock(&t, p, 6, 4, 0);
    int64_t units;
    ck_assert_int_eq(pt_reservations(&t, order, NULL, &units), 1);
    ck_assert_int_eq(units, 4);
    ck_assert_uint_eq(pt_wait_events(&t, 1), 1);
    ck_assert_uint_eq(pt_count(&t, "StockReserved", order), 1);
    pt_close(&t);
}
END_TEST

START_TEST(test_cancel_before_create_leaves_a_tombstone_and_rejects_the_order)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 5), *order = pt_order(&t);
    pt_order_cancelled(&t, order, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 1), 1);
    const released_t *rel = (const released_t *)pt_find(&t, "StockReleased", order);
    ck_assert_int_eq(rel->source, SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_NONE);
    ck_assert_uint_eq(rel->n_lines, 0);
    ck_assert_str_eq(pt_order_state(&t, order), "TOMBSTONE");

    pt_order_created(&t, order, (pt_line_t[]){{p, 2}}, 1, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 2), 2);
    expect_rejected(&t, order, SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_ORDER_CANCELLED, "",
                    0, 0);
    expect_stock(&t, p, 5, 0, 0);
    ck_assert_int_eq(pt_reservations(&t, order, NULL, NULL), 0);
    ck_assert_str_eq(pt_order_state(&t, order), "RELEASED");

    /* Later copies of either step change nothing and say nothing. */
    pt_order_cancelled(&t, order, NULL);
    pt_wait_processed(&t, pt_order_created(&t, order, (pt_line_t[]){{p, 2}}, 1, NULL));
    ck_assert_int_eq(pt_emitted(&t, order, "StockReleased"), 1);
    ck_assert_int_eq(pt_emitted(&t, order, "StockRejected"), 1);
    ck_assert_int_eq(pt_emitted(&t, order, "StockReserved"), 0);
    expect_stock(&t, p, 5, 0, 0);
    ck_assert_int_eq(pt_reservations(&t, order, NULL, NULL), 0);
    pt_close(&t);
}
END_TEST

START_TEST(test_confirm_turns_the_reservation_into_sales)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 10), *q = pt_product(&t, 3), *order = pt_order(&t);
    pt_order_created(&t, order, (pt_line_t[]){{p, 4}, {q, 3}}, 2, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 1), 1);
    ck_assert_uint_eq(pt_count(&t, "StockReserved", order), 1);
    pt_order_confirmed(&t, order, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 2), 2);
    const committed_t *c = (const committed_t *)pt_find(&t, "StockCommitted", order);
    ck_assert_uint_eq(c->n_lines, 2);
    ck_assert_int_eq(line_quantity(c->lines, c->n_lines, p), 4);
    ck_assert_int_eq(line_quantity(c->lines, c->n_lines, q), 3);
    expect_stock(&t, p, 6, 0, 4);
    expect_stock(&t, q, 0, 0, 3);
    ck_assert_int_eq(pt_reservations(&t, order, "COMMITTED", NULL), 2);
    ck_assert_str_eq(pt_order_state(&t, order), "COMMITTED");

    /* A second confirmation (new event id) sells nothing more. */
    pt_wait_processed(&t, pt_order_confirmed(&t, order, NULL));
    ck_assert_int_eq(pt_emitted(&t, order, "StockCommitted"), 1);
    expect_stock(&t, p, 6, 0, 4);
    expect_stock(&t, q, 0, 0, 3);
    pt_close(&t);
}
END_TEST

START_TEST(test_cancel_after_confirm_restocks_once)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 10), *order = pt_order(&t);
    pt_order_created(&t, order, (pt_line_t[]){{p, 4}}, 1, NULL);
    pt_order_confirmed(&t, order, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 2), 2);
    expect_stock(&t, p, 6, 0, 4);
    pt_order_cancelled(&t, order, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 3), 3);
    const released_t *rel = (const released_t *)pt_find(&t, "StockReleased", order);
    ck_assert_int_eq(rel->source, SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_SOLD);
    ck_assert_uint_eq(rel->n_lines, 1);
    ck_assert_int_eq(line_quantity(rel->lines, rel->n_lines, p), 4);
    expect_stock(&t, p, 10, 0, 0);
    ck_assert_int_eq(pt_reservations(&t, order, "RELEASED", NULL), 1);
    ck_assert_str_eq(pt_order_state(&t, order), "RELEASED");

    /* Cancelling again, or a stray confirmation, moves nothing. */
    pt_order_cancelled(&t, order, NULL);
    pt_wait_processed(&t, pt_order_confirmed(&t, order, NULL));
    ck_assert_int_eq(pt_emitted(&t, order, "StockReleased"), 1);
    ck_assert_int_eq(pt_emitted(&t, order, "StockCommitted"), 1);
    expect_stock(&t, p, 10, 0, 0);
    pt_close(&t);
}
END_TEST

START_TEST(test_cancel_of_a_pending_order_releases_its_reservation)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 10), *q = pt_product(&t, 2), *order = pt_order(&t);
    pt_order_created(&t, order, (pt_line_t[]){{p, 5}, {q, 2}}, 2, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 1), 1);
    expect_stock(&t, p, 5, 5, 0);
    expect_stock(&t, q, 0, 2, 0);
    pt_order_cancelled(&t, order, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 2), 2);
    const released_t *rel = (const released_t *)pt_find(&t, "StockReleased", order);
    ck_assert_int_eq(rel->source, SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_RESERVED);
    ck_assert_uint_eq(rel->n_lines, 2);
    ck_assert_int_eq(line_quantity(rel->lines, rel->n_lines, p), 5);
    ck_assert_int_eq(line_quantity(rel->lines, rel->n_lines, q), 2);
    expect_stock(&t, p, 10, 0, 0);
    expect_stock(&t, q, 2, 0, 0);
    ck_assert_int_eq(pt_reservations(&t, order, "RELEASED", NULL), 2);

    /* A confirmation that arrives after the cancellation sells nothing. */
    pt_wait_processed(&t, pt_order_confirmed(&t, order, NULL));
    ck_assert_int_eq(pt_emitted(&t, order, "StockCommitted"), 0);
    expect_stock(&t, p, 10, 0, 0);
    expect_stock(&t, q, 2, 0, 0);
    pt_close(&t);
}
END_TEST

START_TEST(test_set_stock_during_a_reservation_keeps_stock_conserved)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 10), *order = pt_order(&t);
    pt_order_created(&t, order, (pt_line_t[]){{p, 4}}, 1, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 1), 1);
    expect_stock(&t, p, 6, 4, 0);
    /* An operator recounts the shelf while the order is pending: only available
     * changes, and the recount is what was added. */
    pt_set_stock(&t, p, 2);
    expect_stock(&t, p, 2, 4, 0);
    ck_assert_int_eq(pt_stock(&t, p).added, 6);
    pt_order_cancelled(&t, order, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 2), 2);
    expect_stock(&t, p, 6, 0, 0);
    pt_set_stock(&t, p, 0);
    expect_stock(&t, p, 0, 0, 0);
    ck_assert_int_eq(pt_stock(&t, p).added, 0);
    pt_close(&t);
}
END_TEST

/* ---- invalid events ---- */

typedef Shop__Events__V1__OrderCreated created_t;

/* Ways to break an OrderCreated of one line {p, 1} at 250 cents (total 250). */
static void break_total_negative(created_t *e)
{
    e->total_cents = -250;
}
static void break_currency(created_t *e)
{
    e->currency = "EUR";
}
static void break_quantity_zero(created_t *e)
{
    e->lines[0]->quantity = 0;
    e->total_cents = 0;
}
static void break_quantity_negative(created_t *e)
{
    e->lines[0]->quantity = -3;
    e->total_cents = -750;
}
static void break_quantity_too_big(created_t *e)
{
    e->lines[0]->quantity = 1001;
    e->total_cents = 1001 * 250;
}
static void break_price_negative(created_t *e)
{
    e->lines[0]->unit_price_cents = -250;
    e->total_cents = -250;
}
static void break_total_not_the_sum(created_t *e)
{
    e->total_cents = 1;
}
static void break_user_id(created_t *e)
{
    e->user_id = "not-a-user";
}
static void break_product_id(created_t *e)
{
    e->lines[0]->product_id = "not-a-product";
}
static void break_no_lines(created_t *e)
{
    e->n_lines = 0;
    e->total_cents = 0;
}
static void break_created_at(created_t *e)
{
    e->created_at = "yesterday";
}

START_TEST(test_invalid_order_created_reserves_nothing_and_is_rejected)
{
    static void (*const breaks[])(created_t *) = {
        break_total_negative,    break_currency,         break_quantity_zero,
        break_quantity_negative, break_quantity_too_big, break_price_negative,
        break_total_not_the_sum, break_user_id,          break_product_id,
        break_no_lines,          break_created_at,
    };
    enum { N = sizeof(breaks) / sizeof(breaks[0]) };
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 2000);
    const char *orders[N + 1];
    for (size_t i = 0; i < N; i++) {
        orders[i] = pt_order(&t);
        created_t *e = pt_order_created_event(&t, orders[i], (pt_line_t[]){{p, 1}}, 1);
        breaks[i](e);
        pt_send(&t, orders[i], &e->base, NULL);
    }
    /* More lines than an order may have, each of which the stock could serve. */
    orders[N] = pt_order(&t);
    pt_line_t many[101];
    for (size_t i = 0; i < 101; i++)
        many[i] = (pt_line_t){p, 1};
    pt_send(&t, orders[N], &pt_order_created_event(&t, orders[N], many, 101)->base, NULL);

    ck_assert_uint_eq(pt_wait_events(&t, N + 1), N + 1);
    for (size_t i = 0; i <= N; i++) {
        ck_assert_msg(pt_count(&t, "StockRejected", orders[i]) == 1, "case %zu not rejected", i);
        expect_rejected(&t, orders[i], SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INVALID_ORDER,
                        "", 0, 0);
        ck_assert_int_eq(pt_reservations(&t, orders[i], NULL, NULL), 0);
        ck_assert_str_eq(pt_order_state(&t, orders[i]), "REJECTED");
    }
    ck_assert_uint_eq(pt_count(&t, "StockReserved", NULL), 0);
    expect_stock(&t, p, 2000, 0, 0);

    /* The valid OrderCreated arriving after the invalid one reserves nothing either (the
     * order was refused), and its cancellation holds nothing to give back. */
    pt_order_created(&t, orders[0], (pt_line_t[]){{p, 1}}, 1, NULL);
    pt_wait_processed(&t, pt_order_cancelled(&t, orders[0], NULL));
    ck_assert_int_eq(pt_emitted(&t, orders[0], "StockReserved"), 0);
    ck_assert_int_eq(pt_emitted(&t, orders[0], "StockRejected"), 1);
    ck_assert_uint_eq(pt_wait_events(&t, N + 2), N + 2);
    const released_t *rel = (const released_t *)pt_find(&t, "StockReleased", orders[0]);
    ck_assert_int_eq(rel->source, SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_NONE);
    ck_assert_str_eq(pt_order_state(&t, orders[0]), "RELEASED");
    expect_stock(&t, p, 2000, 0, 0);
    pt_close(&t);
}
END_TEST

START_TEST(test_invalid_copy_of_a_reserved_order_changes_nothing)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 10), *order = pt_order(&t);
    pt_order_created(&t, order, (pt_line_t[]){{p, 4}}, 1, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 1), 1);
    /* A replay with another currency must neither reserve again nor reject the order. */
    created_t *e = pt_order_created_event(&t, order, (pt_line_t[]){{p, 4}}, 1);
    break_currency(e);
    pt_wait_processed(&t, pt_send(&t, order, &e->base, NULL));
    ck_assert_int_eq(pt_emitted(&t, order, "StockReserved"), 1);
    ck_assert_int_eq(pt_emitted(&t, order, "StockRejected"), 0);
    ck_assert_str_eq(pt_order_state(&t, order), "RESERVED");
    expect_stock(&t, p, 6, 4, 0);
    pt_close(&t);
}
END_TEST

START_TEST(test_malformed_order_id_and_invalid_confirmation_are_dead_lettered)
{
    pt_t t;
    pt_open(&t, &svcs[0]);
    const char *p = pt_product(&t, 10), *order = pt_order(&t);
    char id[UUID_STR_LEN];
    uuid_new(id);
    const char *poison_key = arena_sprintf(t.a, "poison-%s", id);
    created_t *e = pt_order_created_event(&t, "not-a-uuid", (pt_line_t[]){{p, 1}}, 1);
    pt_send(&t, poison_key, &e->base, NULL);

    pt_order_created(&t, order, (pt_line_t[]){{p, 3}}, 1, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 1), 1);
    /* An OrderConfirmed whose total is not its lines' sum sells nothing. */
    Shop__Events__V1__OrderConfirmed bad = SHOP__EVENTS__V1__ORDER_CONFIRMED__INIT;
    bad.order_id = (char *)order;
    bad.user_id = "00000000-0000-7000-8000-00000000c0de";
    bad.n_lines = e->n_lines;
    bad.lines = e->lines;
    bad.total_cents = 999;
    bad.currency = "USD";
    pt_send(&t, order, &bad.base, NULL);

    const char *brokers = getenv("KAFKA_BROKERS");
    ck_assert_uint_eq(saga_dlq_wait(brokers, "order.events.dlq", poison_key, PT_TIMEOUT_MS), 1);
    ck_assert_uint_eq(saga_dlq_wait(brokers, "order.events.dlq", order, PT_TIMEOUT_MS), 1);
    ck_assert_int_eq(pt_emitted(&t, order, "StockCommitted"), 0);
    ck_assert_str_eq(pt_order_state(&t, order), "RESERVED");
    expect_stock(&t, p, 7, 3, 0);
    /* The valid one still sells. */
    pt_order_confirmed(&t, order, NULL);
    ck_assert_uint_eq(pt_wait_events(&t, 2), 2);
    ck_assert_uint_eq(pt_count(&t, "StockCommitted", order), 1);
    expect_stock(&t, p, 7, 0, 3);
    pt_close(&t);
}
END_TEST

static Suite *product_saga_suite(void)
{
    Suite *s = suite_create("product_saga");
    TCase *tc = tcase_create("saga");
    tcase_set_timeout(tc, PT_TCASE_TIMEOUT_S);
    tcase_add_test(tc, test_reserve_takes_every_line_or_none);
    tcase_add_test(tc, test_fifty_concurrent_orders_for_ten_units_reserve_exactly_ten);
    tcase_add_test(tc, test_duplicated_order_created_reserves_once);
    tcase_add_test(tc, test_semantic_duplicate_order_created_reserves_once);
    tcase_add_test(tc, test_cancel_before_create_leaves_a_tombstone_and_rejects_the_order);
    tcase_add_test(tc, test_confirm_turns_the_reservation_into_sales);
    tcase_add_test(tc, test_cancel_after_confirm_restocks_once);
    tcase_add_test(tc, test_cancel_of_a_pending_order_releases_its_reservation);
    tcase_add_test(tc, test_set_stock_during_a_reservation_keeps_stock_conserved);
    tcase_add_test(tc, test_invalid_order_created_reserves_nothing_and_is_rejected);
    tcase_add_test(tc, test_invalid_copy_of_a_reserved_order_changes_nothing);
    tcase_add_test(tc, test_malformed_order_id_and_invalid_confirmation_are_dead_lettered);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Two instances in one consumer group for every test; started before Check forks
     * the tests, stopped (and their clean exit checked) after. */
    int failed = 1;
    if (svc_proc_start_db(&svcs[0], PRODUCT_SVC, 0, "PRODUCT_DATABASE_URL") != 0 ||
        svc_proc_start_db(&svcs[1], PRODUCT_SVC, 1, "PRODUCT_DATABASE_URL") != 0)
        goto out;
    SRunner *sr = srunner_create(product_saga_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
out:
    for (int i = 0; i < 2; i++) {
        if (!svcs[i].pid)
            continue;
        int status = svc_proc_end(&svcs[i]);
        if (status != 0) {
            fprintf(stderr, "product-svc %d exited with %d after SIGTERM, see %s\n", i, status,
                    svcs[i].log);
            failed++;
        }
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
