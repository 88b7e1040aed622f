/*
 * saga_check: every saga event as its producer sends it passes, and each way of
 * breaking a field rule (proto/shop/events/v1/events.proto) fails with the field named.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_util.h"
#include "common/saga_check.h"
#include "shop/events/v1/events.pb-c.h"

#define ORDER   "0190a0a0-0000-7000-8000-0000000000a1"
#define USER    "0190a0a0-0000-7000-8000-0000000000b2"
#define PRODUCT "0190a0a0-0000-7000-8000-0000000000c3"
#define LEDGER  "0190a0a0-0000-7000-8000-0000000000d4"

/* Two lines of one product (allowed: product-svc sums them): 2 x 250 + 1 x 100. */
static Shop__Events__V1__OrderLine line0, line1;
static Shop__Events__V1__OrderLine *lines[2];
static Shop__Events__V1__StockLine stock0;
static Shop__Events__V1__StockLine *stock_lines[1];

static void reset_lines(void)
{
    line0 = (Shop__Events__V1__OrderLine)SHOP__EVENTS__V1__ORDER_LINE__INIT;
    line0.product_id = PRODUCT;
    line0.quantity = 2;
    line0.unit_price_cents = 250;
    line1 = line0;
    line1.quantity = 1;
    line1.unit_price_cents = 100;
    lines[0] = &line0;
    lines[1] = &line1;
    stock0 = (Shop__Events__V1__StockLine)SHOP__EVENTS__V1__STOCK_LINE__INIT;
    stock0.product_id = PRODUCT;
    stock0.quantity = 3;
    stock_lines[0] = &stock0;
}

static Shop__Events__V1__OrderCreated created(void)
{
    reset_lines();
    Shop__Events__V1__OrderCreated m = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    m.order_id = ORDER;
    m.user_id = USER;
    m.n_lines = 2;
    m.lines = lines;
    m.total_cents = 600;
    m.currency = "USD";
    m.created_at = "2026-01-02T03:04:05.678901Z";
    return m;
}

static Shop__Events__V1__OrderCancelled cancelled(void)
{
    reset_lines();
    Shop__Events__V1__OrderCancelled m = SHOP__EVENTS__V1__ORDER_CANCELLED__INIT;
    m.order_id = ORDER;
    m.user_id = USER;
    m.reason = SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT;
    m.n_lines = 2;
    m.lines = lines;
    m.total_cents = 600;
    m.currency = "USD";
    m.previous_status = SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_PENDING;
    return m;
}

static Shop__Events__V1__StockReserved reserved(void)
{
    Shop__Events__V1__StockReserved m = SHOP__EVENTS__V1__STOCK_RESERVED__INIT;
    m.order_id = ORDER;
    m.user_id = USER;
    m.total_cents = 600;
    m.currency = "USD";
    return m;
}

static Shop__Events__V1__PaymentCompleted completed(void)
{
    Shop__Events__V1__PaymentCompleted m = SHOP__EVENTS__V1__PAYMENT_COMPLETED__INIT;
    m.order_id = ORDER;
    m.user_id = USER;
    m.amount_cents = 600;
    m.currency = "USD";
    m.ledger_entry_id = LEDGER;
    return m;
}

static void expect_valid(const ProtobufCMessage *m)
{
    err_t err = ERR_INIT;
    ck_assert_msg(saga_check(m, &err) == 0, "%s: %s", m->descriptor->short_name, err.msg);
}

/* Fails with ERR_INVALID and a message that contains `want`. */
static void expect_invalid(const ProtobufCMessage *m, const char *want)
{
    err_t err = ERR_INIT;
    ck_assert_int_eq(saga_check(m, &err), ERR_INVALID);
    ck_assert_int_eq(err.code, ERR_INVALID);
    ck_assert_msg(strstr(err.msg, want), "\"%s\" does not say \"%s\"", err.msg, want);
}

START_TEST(test_order_created_as_order_svc_sends_it_passes)
{
    Shop__Events__V1__OrderCreated m = created();
    expect_valid(&m.base);
    m.total_cents = 0; /* a free order */
    line0.unit_price_cents = line1.unit_price_cents = 0;
    expect_valid(&m.base);
}
END_TEST

START_TEST(test_order_created_breaking_a_rule_fails_naming_the_field)
{
    Shop__Events__V1__OrderCreated m = created();
    m.order_id = "not-a-uuid";
    expect_invalid(&m.base, "OrderCreated: order_id is not a uuid");
    m = created();
    m.user_id = "";
    expect_invalid(&m.base, "user_id is not a uuid");
    m = created();
    line1.product_id = "0190a0a0-0000-7000-8000-0000000000c";
    expect_invalid(&m.base, "lines[1].product_id is not a uuid");
    m = created();
    line0.quantity = 0;
    m.total_cents = 100;
    expect_invalid(&m.base, "lines[0].quantity is 0, not 1..1000");
    m = created();
    line0.quantity = -2;
    m.total_cents = -400;
    expect_invalid(&m.base, "lines[0].quantity is -2");
    m = created();
    line0.quantity = 1001;
    m.total_cents = 1001 * 250 + 100;
    expect_invalid(&m.base, "lines[0].quantity is 1001");
    m = created();
    line1.unit_price_cents = -100;
    m.total_cents = 400;
    expect_invalid(&m.base, "lines[1].unit_price_cents is -100, below 0");
    m = created();
    m.total_cents = -600;
    expect_invalid(&m.base, "total_cents is -600, the lines sum to 600");
    m = created();
    m.total_cents = 601;
    expect_invalid(&m.base, "total_cents is 601, the lines sum to 600");
    m = created();
    line0.unit_price_cents = INT64_MAX / 2;
    expect_invalid(&m.base, "the lines' sum overflows");
    m = created();
    m.n_lines = 0;
    m.total_cents = 0;
    expect_invalid(&m.base, "0 lines, not 1..100");
    m = created();
    m.currency = "EUR";
    expect_invalid(&m.base, "currency is not USD");
    m = created();
    m.currency = "";
    expect_invalid(&m.base, "currency is not USD");
    m = created();
    m.created_at = "yesterday";
    expect_invalid(&m.base, "created_at is not an rfc 3339 time");
}
END_TEST

START_TEST(test_more_lines_than_an_order_may_have_fail)
{
    Shop__Events__V1__OrderCreated m = created();
    Shop__Events__V1__OrderLine *many[SAGA_LINES_MAX + 1];
    for (size_t i = 0; i <= SAGA_LINES_MAX; i++)
        many[i] = &line1;
    m.lines = many;
    m.n_lines = SAGA_LINES_MAX;
    m.total_cents = SAGA_LINES_MAX * 100;
    expect_valid(&m.base);
    m.n_lines = SAGA_LINES_MAX + 1;
    m.total_cents += 100;
    expect_invalid(&m.base, "101 lines, not 1..100");
}
END_TEST

START_TEST(test_order_cancelled_checks_reason_and_previous_status)
{
    Shop__Events__V1__OrderCancelled m = cancelled();
    expect_valid(&m.base);
    m.previous_status = SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED;
    expect_valid(&m.base);
    m.previous_status = SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED;
    expect_invalid(&m.base, "previous_status is 3, not PENDING or CONFIRMED");
    m = cancelled();
    m.reason = 0;
    expect_invalid(&m.base, "reason is 0, not a CancelReason");
    m.reason = 77;
    expect_invalid(&m.base, "reason is 77");
    m = cancelled();
    m.n_lines = 0;
    expect_invalid(&m.base, "0 lines");
    m = cancelled();
    m.total_cents = 0;
    expect_invalid(&m.base, "total_cents is 0, the lines sum to 600");
}
END_TEST

START_TEST(test_stock_events_check_their_lines_and_reasons)
{
    reset_lines();
    Shop__Events__V1__StockCommitted sc = SHOP__EVENTS__V1__STOCK_COMMITTED__INIT;
    sc.order_id = ORDER;
    sc.n_lines = 1;
    sc.lines = stock_lines;
    expect_valid(&sc.base);
    stock0.quantity = SAGA_LINES_MAX * SAGA_QUANTITY_MAX + 1;
    expect_invalid(&sc.base, "lines[0].quantity is 100001");
    stock0.quantity = 3;
    sc.n_lines = 0;
    expect_invalid(&sc.base, "StockCommitted: 0 lines, not 1..100");

    Shop__Events__V1__StockReleased rel = SHOP__EVENTS__V1__STOCK_RELEASED__INIT;
    rel.order_id = ORDER;
    rel.source = SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_NONE;
    expect_valid(&rel.base);
    rel.n_lines = 1;
    rel.lines = stock_lines;
    expect_invalid(&rel.base, "1 lines, not 0 for source NONE");
    rel.source = SHOP__EVENTS__V1__RELEASE_SOURCE__RELEASE_SOURCE_SOLD;
    expect_valid(&rel.base);
    rel.n_lines = 0;
    expect_invalid(&rel.base, "0 lines, not 1..100");
    rel.source = 0;
    expect_invalid(&rel.base, "source is 0");

    Shop__Events__V1__StockRejected rej = SHOP__EVENTS__V1__STOCK_REJECTED__INIT;
    rej.order_id = ORDER;
    rej.reason = SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INSUFFICIENT_STOCK;
    rej.product_id = PRODUCT;
    rej.requested = 3;
    rej.available = 1;
    expect_valid(&rej.base);
    rej.requested = 0;
    expect_invalid(&rej.base, "requested is 0");
    rej.requested = 3;
    rej.available = -1;
    expect_invalid(&rej.base, "available is -1, below 0");
    rej.available = 1;
    rej.product_id = "";
    expect_invalid(&rej.base, "product_id is not a uuid");
    rej = (Shop__Events__V1__StockRejected)SHOP__EVENTS__V1__STOCK_REJECTED__INIT;
    rej.order_id = ORDER;
    rej.reason = SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_INVALID_ORDER;
    expect_valid(&rej.base);
    rej.reason = SHOP__EVENTS__V1__REJECT_REASON__REJECT_REASON_ORDER_CANCELLED;
    expect_valid(&rej.base);
    rej.product_id = PRODUCT;
    expect_invalid(&rej.base, "names a product for reason 3");
    rej.product_id = "";
    rej.reason = 0;
    expect_invalid(&rej.base, "reason is 0, not a RejectReason");
}
END_TEST

START_TEST(test_stock_reserved_and_payments_check_money_and_ids)
{
    Shop__Events__V1__StockReserved sr = reserved();
    expect_valid(&sr.base);
    sr.total_cents = -1;
    expect_invalid(&sr.base, "StockReserved: total_cents is -1, below 0");
    sr = reserved();
    sr.currency = "usd";
    expect_invalid(&sr.base, "currency is not USD");
    sr = reserved();
    sr.user_id = "not-a-user";
    expect_invalid(&sr.base, "user_id is not a uuid");

    Shop__Events__V1__PaymentCompleted pc = completed();
    expect_valid(&pc.base);
    pc.ledger_entry_id = "";
    expect_invalid(&pc.base, "ledger_entry_id is not a uuid");
    pc = completed();
    pc.amount_cents = -600;
    expect_invalid(&pc.base, "amount_cents is -600");

    Shop__Events__V1__PaymentFailed pf = SHOP__EVENTS__V1__PAYMENT_FAILED__INIT;
    pf.order_id = ORDER;
    pf.user_id = USER;
    pf.reason = SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INSUFFICIENT_FUNDS;
    pf.amount_cents = 600;
    pf.currency = "USD";
    expect_valid(&pf.base);
    pf.user_id = "";
    expect_invalid(&pf.base, "user_id is not a uuid");
    /* An invalid StockReserved may have named no user. */
    pf.reason = SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INVALID_PAYMENT;
    pf.amount_cents = 0;
    expect_valid(&pf.base);
    pf.reason = 5;
    expect_invalid(&pf.base, "reason is 5");

    Shop__Events__V1__PaymentRefunded pr = SHOP__EVENTS__V1__PAYMENT_REFUNDED__INIT;
    pr.order_id = ORDER;
    pr.user_id = USER;
    pr.amount_cents = 600;
    pr.currency = "USD";
    pr.ledger_entry_id = LEDGER;
    expect_valid(&pr.base);
    pr.currency = "EUR";
    expect_invalid(&pr.base, "PaymentRefunded: currency is not USD");
}
END_TEST

START_TEST(test_a_message_that_is_no_saga_event_fails)
{
    Shop__Events__V1__OrderLine l = SHOP__EVENTS__V1__ORDER_LINE__INIT;
    expect_invalid(&l.base, "shop.events.v1.OrderLine is not a saga event");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("saga_check");
    TCase *tc = check_case(s, "rules", 10);
    tcase_add_test(tc, test_order_created_as_order_svc_sends_it_passes);
    tcase_add_test(tc, test_order_created_breaking_a_rule_fails_naming_the_field);
    tcase_add_test(tc, test_more_lines_than_an_order_may_have_fail);
    tcase_add_test(tc, test_order_cancelled_checks_reason_and_previous_status);
    tcase_add_test(tc, test_stock_events_check_their_lines_and_reasons);
    tcase_add_test(tc, test_stock_reserved_and_payments_check_money_and_ids);
    tcase_add_test(tc, test_a_message_that_is_no_saga_event_fails);
    return check_run(s, CK_FORK_GETENV);
}
