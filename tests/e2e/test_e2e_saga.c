/*
 * The fleet end to end (docs/architecture.md §4): the real product-svc, user-svc and order-svc
 * binaries on the test stack's PostgreSQL databases and Kafka, products and wallets
 * seeded through their gRPC APIs, orders placed through order-svc's, and the outcome
 * checked in all three databases: status and reason, stock moved, money moved, and
 * the invariants (money and stock conserved, nothing reserved at rest, outboxes
 * drained, nothing dead-lettered). order-svc runs with SAGA_TIMEOUT=5s so that the
 * test with user-svc stopped does not wait 30 s.
 */
#include <check.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "common/clock.h"
#include "common/log.h"
#include "fleet_support.h"
#include "shop/common/v1/common.pb-c.h"
#include "shop/user/v1/user_service.pb-c.h"

#define SAGA_TIMEOUT_MS 5000
#define WAIT_MS         30000

#define PENDING        SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_PENDING
#define CONFIRMED      SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED
#define CANCELLED      SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED
#define OUT_OF_STOCK   SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_OUT_OF_STOCK
#define PAYMENT_FAILED SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_PAYMENT_FAILED
#define TIMEOUT        SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT
#define USER_REQUESTED SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_USER_REQUESTED

static svc_proc_t product_svc, user_svc, order_svc;
static fs_t T;

static int topic_partitions; /* of each saga topic */

/* Each service is alone in its consumer group and holds every partition of its topics,
 * so no event of this test waits on a member that is gone. */
static void setup(void)
{
    svc_wait_partitions((svc_proc_t *[]){&product_svc}, 1, topic_partitions, 120000);
    svc_wait_partitions((svc_proc_t *[]){&user_svc}, 1, 2 * topic_partitions, 120000);
    svc_wait_partitions((svc_proc_t *[]){&order_svc}, 1, 2 * topic_partitions, 120000);
    fs_open(&T, order_svc.grpc_port, product_svc.grpc_port, user_svc.grpc_port);
}

static void burst_free(void);

static void teardown(void)
{
    burst_free();
    /* A test that failed with user-svc stopped must not take the next ones down too. */
    int restarted = user_svc.pid > 0 ? 0 : svc_proc_restart(&user_svc);
    size_t dead_letters = fs_dlq_count(&T, NULL, WAIT_MS);
    fs_close(&T);
    ck_assert_int_eq(restarted, 0);
    ck_assert_uint_eq(dead_letters, 0);
}

/* Net money the user's ledger moved for the order (payments negative). */
static int64_t ledger_net(const char *order_id)
{
    return fs_i64(&T, T.user_db,
                  "SELECT coalesce(sum(amount_cents), 0) FROM ledger WHERE order_id = $1", order_id,
                  NULL);
}

static int64_t ledger_entries(const char *order_id, const char *kind)
{
    return fs_i64(&T, T.user_db, "SELECT count(*) FROM ledger WHERE order_id = $1 AND kind = $2",
                  order_id, kind);
}

static void assert_stock(const char *product, int64_t available, int64_t reserved, int64_t sold)
{
    fs_stock_t s = fs_stock(&T, product);
    ck_assert_msg(s.available == available && s.reserved == reserved && s.sold == sold,
                  "product %s: %" PRId64 "/%" PRId64 "/%" PRId64 ", want %" PRId64 "/%" PRId64
                  "/%" PRId64,
                  product, s.available, s.reserved, s.sold, available, reserved, sold);
}

/* Waits until product-svc holds nothing for its orders any more (reserved 0). */
static void wait_unreserved(const char *product)
{
    fs_wait_i64(&T, T.product_db, "SELECT reserved FROM inventory WHERE product_id = $1", product,
                NULL, 0, WAIT_MS);
}

START_TEST(test_happy_path_confirms_moves_stock_to_sold_and_charges_once)
{
    const char *user = fs_user(&T, 10000);
    const char *p1 = fs_product(&T, 250, 10), *p2 = fs_product(&T, 1200, 3);
    fs_line_t lines[] = {{p1, 2}, {p2, 1}};
    const Shop__Order__V1__Order *o = fs_create_ok(&T, user, lines, 2);
    ck_assert_int_eq(o->status, PENDING);
    ck_assert_int_eq(o->total_cents, 1700);
    o = fs_wait_status(&T, user, o->id, CONFIRMED, WAIT_MS);
    o = fs_wait_step(&T, user, o->id, "stock_committed", WAIT_MS);
    static const char *const steps[] = {"order_created", "stock_reserved", "payment_completed",
                                        "order_confirmed", "stock_committed"};
    ck_assert_uint_eq(o->n_timeline, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_str_eq(o->timeline[i]->step, steps[i]);
    assert_stock(p1, 8, 0, 2);
    assert_stock(p2, 2, 0, 1);
    ck_assert_int_eq(fs_balance(&T, user), 10000 - 1700);
    ck_assert_int_eq(ledger_entries(o->id, "payment"), 1);
    ck_assert_int_eq(ledger_net(o->id), -1700);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_line_short_of_stock_cancels_out_of_stock_holding_nothing)
{
    const char *user = fs_user(&T, 10000);
    const char *plenty = fs_product(&T, 100, 20), *scarce = fs_product(&T, 100, 1);
    fs_line_t lines[] = {{plenty, 5}, {scarce, 2}};
    const Shop__Order__V1__Order *o = fs_create_ok(&T, user, lines, 2);
    o = fs_wait_status(&T, user, o->id, CANCELLED, WAIT_MS);
    ck_assert_int_eq(o->cancel_reason, OUT_OF_STOCK);
    ck_assert_int_eq(fs_has_step(o, "stock_rejected", scarce), 1);
    fs_wait_invariants(&T, WAIT_MS);
    assert_stock(plenty, 20, 0, 0);
    assert_stock(scarce, 1, 0, 0);
    ck_assert_int_eq(fs_balance(&T, user), 10000);
    ck_assert_int_eq(
        fs_i64(&T, T.user_db, "SELECT count(*) FROM ledger WHERE order_id = $1", o->id, NULL), 0);
}
END_TEST

START_TEST(test_not_enough_money_cancels_payment_failed_and_releases_stock)
{
    const char *user = fs_user(&T, 400);
    const char *p = fs_product(&T, 250, 5);
    fs_line_t lines[] = {{p, 2}};
    const Shop__Order__V1__Order *o = fs_create_ok(&T, user, lines, 1);
    o = fs_wait_status(&T, user, o->id, CANCELLED, WAIT_MS);
    ck_assert_int_eq(o->cancel_reason, PAYMENT_FAILED);
    ck_assert_int_eq(fs_has_step(o, "payment_failed", "insufficient funds to pay 500 cents"), 1);
    wait_unreserved(p);
    o = fs_wait_step(&T, user, o->id, "stock_released", WAIT_MS);
    assert_stock(p, 5, 0, 0);
    ck_assert_int_eq(fs_balance(&T, user), 400);
    ck_assert_int_eq(ledger_net(o->id), 0);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_cancel_of_confirmed_order_refunds_and_restocks)
{
    const char *user = fs_user(&T, 5000);
    const char *p = fs_product(&T, 800, 4);
    fs_line_t lines[] = {{p, 3}};
    const Shop__Order__V1__Order *o = fs_create_ok(&T, user, lines, 1);
    o = fs_wait_step(&T, user, o->id, "stock_committed", WAIT_MS);
    ck_assert_int_eq(o->status, CONFIRMED);
    ck_assert_int_eq(fs_balance(&T, user), 5000 - 2400);
    assert_stock(p, 1, 0, 3);

    Shop__Order__V1__CancelOrderRequest req = SHOP__ORDER__V1__CANCEL_ORDER_REQUEST__INIT;
    req.order_id = (char *)o->id;
    fs_who_t owner = {user, "customer"};
    err_t err = ERR_INIT;
    ProtobufCMessage *resp;
    int rc = fs_call(T.order, &shop__order__v1__order_service__descriptor, "CancelOrder", &req.base,
                     &owner, T.a, &resp, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    const Shop__Order__V1__Order *c = ((Shop__Order__V1__CancelOrderResponse *)resp)->order;
    ck_assert_int_eq(c->status, CANCELLED);
    ck_assert_int_eq(c->cancel_reason, USER_REQUESTED);

    o = fs_wait_step(&T, user, o->id, "payment_refunded", WAIT_MS);
    o = fs_wait_step(&T, user, o->id, "stock_released", WAIT_MS);
    ck_assert_int_eq(fs_has_step(o, "stock_released", "sold stock restocked"), 1);
    assert_stock(p, 4, 0, 0);
    ck_assert_int_eq(fs_balance(&T, user), 5000);
    ck_assert_int_eq(ledger_entries(o->id, "payment"), 1);
    ck_assert_int_eq(ledger_entries(o->id, "refund"), 1);
    ck_assert_int_eq(ledger_net(o->id), 0);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

/* The databases of the services that handle an event of `type` (those that route it:
 * an event of a type a service does not route leaves no inbox row there). */
static size_t consumers_of(const char *type, db_pool_t *out[2])
{
    size_t n = 0;
    if (strncmp(type, "Order", 5) == 0)
        out[n++] = T.product_db;
    if (strcmp(type, "OrderCancelled") == 0 || strcmp(type, "StockReserved") == 0)
        out[n++] = T.user_db;
    if (strncmp(type, "Stock", 5) == 0 || strncmp(type, "Payment", 7) == 0)
        out[n++] = T.order_db;
    return n;
}

/* Rows the three outboxes ever held for the order (every event any service sent). */
static int64_t events_sent(const char *order_id)
{
    db_pool_t *dbs[] = {T.order_db, T.product_db, T.user_db};
    int64_t n = 0;
    for (size_t i = 0; i < 3; i++)
        n += fs_i64(&T, dbs[i], "SELECT count(*) FROM outbox WHERE key = $1", order_id, NULL);
    return n;
}

START_TEST(test_every_event_replayed_under_new_ids_takes_effect_once)
{
    static const char *const types[] = {
        "OrderCreated",   "StockReserved",  "PaymentCompleted", "OrderConfirmed",
        "StockCommitted", "OrderCancelled", "StockReleased",    "PaymentRefunded",
    };
    enum { N = sizeof(types) / sizeof(types[0]) };
    const char *user = fs_user(&T, 5000);
    const char *p = fs_product(&T, 700, 6);
    fs_line_t lines[] = {{p, 3}};
    const Shop__Order__V1__Order *o = fs_create_ok(&T, user, lines, 1);
    fs_wait_step(&T, user, o->id, "stock_committed", WAIT_MS);
    Shop__Order__V1__CancelOrderRequest req = SHOP__ORDER__V1__CANCEL_ORDER_REQUEST__INIT;
    req.order_id = (char *)o->id;
    fs_who_t owner = {user, "customer"};
    err_t err = ERR_INIT;
    ProtobufCMessage *resp;
    ck_assert_int_eq(fs_call(T.order, &shop__order__v1__order_service__descriptor, "CancelOrder",
                             &req.base, &owner, T.a, &resp, &err),
                     0);
    fs_wait_step(&T, user, o->id, "payment_refunded", WAIT_MS);
    o = fs_wait_step(&T, user, o->id, "stock_released", WAIT_MS);
    fs_wait_invariants(&T, WAIT_MS);
    const size_t steps = o->n_timeline;
    ck_assert_uint_eq(steps, 8);
    const int64_t sent = events_sent(o->id);
    ck_assert_int_eq(sent, N);

    /* Every event of the saga again, each under a new ce_id, as a replay tool would. */
    for (size_t i = 0; i < N; i++)
        ck_assert_uint_eq(fs_collect(&T, types[i], o->id, 1, 0, WAIT_MS), 1);
    char ids[N][UUID_STR_LEN];
    for (size_t i = 0; i < N; i++) {
        const fs_event_t *e = NULL;
        for (size_t k = 0; k < T.n_events && !e; k++)
            if (strcmp(T.events[k].type, types[i]) == 0 && strcmp(T.events[k].order_id, o->id) == 0)
                e = &T.events[k];
        fs_produce(&T, e->topic, o->id, e->msg, NULL, ids[i]);
    }
    for (size_t i = 0; i < N; i++) {
        db_pool_t *dbs[2];
        for (size_t k = 0, n = consumers_of(types[i], dbs); k < n; k++)
            fs_wait_i64(&T, dbs[k], "SELECT count(*) FROM processed_events WHERE ce_id = $1",
                        ids[i], NULL, 1, WAIT_MS);
    }

    /* One timeline row per step, one charge and one refund, the stock back, and not
     * one event more. */
    const Shop__Order__V1__Order *after = fs_get(&T, user, o->id);
    ck_assert_uint_eq(after->n_timeline, steps);
    for (size_t i = 0; i < steps; i++) {
        ck_assert_str_eq(after->timeline[i]->step, o->timeline[i]->step);
        ck_assert_int_eq(fs_has_step(after, o->timeline[i]->step, NULL), 1);
    }
    ck_assert_int_eq(after->status, CANCELLED);
    ck_assert_int_eq(ledger_entries(o->id, "payment"), 1);
    ck_assert_int_eq(ledger_entries(o->id, "refund"), 1);
    ck_assert_int_eq(fs_balance(&T, user), 5000);
    assert_stock(p, 6, 0, 0);
    ck_assert_int_eq(fs_i64(&T, T.product_db,
                            "SELECT count(*) FROM reservations WHERE order_id = $1", o->id, NULL),
                     1);
    ck_assert_int_eq(events_sent(o->id), sent);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

START_TEST(test_same_idempotency_key_twice_makes_one_order)
{
    const char *user = fs_user(&T, 5000);
    const char *p = fs_product(&T, 300, 10);
    fs_line_t lines[] = {{p, 2}};
    char key[64], id[UUID_STR_LEN];
    uuid_new(id);
    snprintf(key, sizeof(key), "checkout-%s", id);
    err_t err = ERR_INIT;
    Shop__Order__V1__CreateOrderResponse *first, *second;
    ck_assert_int_eq(fs_create(&T, user, key, lines, 1, &first, &err), 0);
    ck_assert(!first->replayed);
    ck_assert_int_eq(fs_create(&T, user, key, lines, 1, &second, &err), 0);
    ck_assert(second->replayed);
    ck_assert_str_eq(second->order->id, first->order->id);
    fs_wait_status(&T, user, first->order->id, CONFIRMED, WAIT_MS);
    /* A replay after the saga finished answers the order as it is now. */
    ck_assert_int_eq(fs_create(&T, user, key, lines, 1, &second, &err), 0);
    ck_assert(second->replayed);
    ck_assert_int_eq(second->order->status, CONFIRMED);

    ck_assert_int_eq(
        fs_i64(&T, T.order_db, "SELECT count(*) FROM orders WHERE user_id = $1", user, NULL), 1);
    ck_assert_int_eq(fs_i64(&T, T.order_db,
                            "SELECT count(*) FROM outbox WHERE key = $1"
                            " AND ce_type = 'shop.events.v1.OrderCreated'",
                            first->order->id, NULL),
                     1);
    fs_wait_invariants(&T, WAIT_MS);
    ck_assert_int_eq(fs_balance(&T, user), 5000 - 600);
    assert_stock(p, 8, 0, 2);
}
END_TEST

START_TEST(test_user_svc_down_times_out_and_charges_nothing_when_it_returns)
{
    const char *user = fs_user(&T, 3000);
    const char *p = fs_product(&T, 500, 5);
    ck_assert_int_eq(svc_proc_stop(&user_svc), 0);
    /* The shared stack's user-svc consumer group must really be empty: another test's
     * user-svc would charge the order. */
    fs_wait_unattended(&T, T.user_db, "user-svc", 120000);
    fs_line_t lines[] = {{p, 2}};
    int64_t start = clock_mono_us();
    const Shop__Order__V1__Order *o = fs_create_ok(&T, user, lines, 1);
    o = fs_wait_step(&T, user, o->id, "stock_reserved", WAIT_MS);
    o = fs_wait_status(&T, user, o->id, CANCELLED, SAGA_TIMEOUT_MS + WAIT_MS);
    ck_assert_int_ge((clock_mono_us() - start) / 1000, SAGA_TIMEOUT_MS - 100);
    ck_assert_int_eq(o->cancel_reason, TIMEOUT);
    ck_assert_int_eq(fs_has_step(o, "order_cancelled", "timeout"), 1);
    wait_unreserved(p);
    assert_stock(p, 5, 0, 0);

    /* user-svc comes back and finds StockReserved and OrderCancelled waiting, in either
     * order: it charges nothing, or charges and refunds. */
    ck_assert_int_eq(svc_proc_restart(&user_svc), 0);
    fs_wait_i64(&T, T.user_db,
                "SELECT count(*) FROM order_payments WHERE order_id = $1"
                " AND state IN ('FAILED', 'REFUNDED')",
                o->id, NULL, 1, WAIT_MS);
    o = fs_get(&T, user, o->id);
    ck_assert_int_eq(o->status, CANCELLED);
    ck_assert_int_eq(o->cancel_reason, TIMEOUT);
    ck_assert_int_eq(fs_balance(&T, user), 3000);
    ck_assert_int_eq(ledger_net(o->id), 0);
    fs_wait_invariants(&T, WAIT_MS);
}
END_TEST

/* ---- 200 concurrent orders ---- */

enum { N_ORDERS = 200, N_USERS = 10, N_PRODUCTS = 6 };

typedef struct burst {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    int failed;
    char ids[N_ORDERS][UUID_STR_LEN];
    char errors[ERR_MSG_MAX + 32];
} burst_t;

typedef struct burst_call {
    burst_t *b;
    int i;
    arena_t *a;
} burst_call_t;

/* The burst's state, freed by teardown also when the test failed half way (every
 * call has finished by then: the test waits for all before any assertion). */
static burst_t *burst;
static burst_call_t burst_calls[N_ORDERS];

static void burst_free(void)
{
    if (!burst)
        return;
    for (int i = 0; i < N_ORDERS; i++) {
        arena_free(burst_calls[i].a);
        burst_calls[i].a = NULL;
    }
    pthread_cond_destroy(&burst->cv);
    pthread_mutex_destroy(&burst->mu);
    free(burst);
    burst = NULL;
}

static void burst_done(void *ud, int code, ProtobufCMessage *resp, const err_t *err)
{
    burst_call_t *c = ud;
    burst_t *b = c->b;
    pthread_mutex_lock(&b->mu);
    if (code == 0)
        snprintf(b->ids[c->i], UUID_STR_LEN, "%s",
                 ((Shop__Order__V1__CreateOrderResponse *)resp)->order->id);
    else if (b->failed++ == 0)
        snprintf(b->errors, sizeof(b->errors), "%s: %s", err_code_name(code), err->msg);
    b->pending--;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* A random order of 1..3 distinct products, 1..3 units each. */
static Shop__Order__V1__CreateOrderRequest *
burst_request(arena_t *a, unsigned *seed, const char *user, const char *const *products)
{
    Shop__Order__V1__CreateOrderRequest *req = arena_alloc(a, sizeof(*req));
    *req = (Shop__Order__V1__CreateOrderRequest)SHOP__ORDER__V1__CREATE_ORDER_REQUEST__INIT;
    char key[UUID_STR_LEN];
    uuid_new(key);
    req->user_id = (char *)user;
    req->idempotency_key = arena_strdup(a, key);
    req->n_lines = 1 + rand_r(seed) % 3;
    req->lines = arena_calloc(a, req->n_lines, sizeof(*req->lines));
    int first = rand_r(seed) % N_PRODUCTS;
    for (size_t k = 0; k < req->n_lines; k++) {
        Shop__Order__V1__RequestedLine *l = arena_alloc(a, sizeof(*l));
        *l = (Shop__Order__V1__RequestedLine)SHOP__ORDER__V1__REQUESTED_LINE__INIT;
        l->product_id = (char *)products[(first + (int)k) % N_PRODUCTS];
        l->quantity = 1 + rand_r(seed) % 3;
        req->lines[k] = l;
    }
    return req;
}

START_TEST(test_200_concurrent_orders_end_terminal_with_invariants_holding)
{
    const char *users[N_USERS], *products[N_PRODUCTS];
    for (int i = 0; i < N_USERS; i++)
        users[i] = fs_user(&T, 2500);
    for (int i = 0; i < N_PRODUCTS; i++)
        products[i] = fs_product(&T, 100 * (i + 1), 15);
    unsigned seed = (unsigned)clock_now_us();
    fprintf(stderr, "concurrent orders: seed %u\n", seed);

    burst_t *b = burst = calloc(1, sizeof(*b));
    burst_call_t *calls = burst_calls;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->pending = N_ORDERS;
    for (int i = 0; i < N_ORDERS; i++) {
        calls[i] = (burst_call_t){.b = b, .i = i, .a = arena_new(0)};
        const char *user = users[i % N_USERS];
        rpc_metadata_t md[] = {{"x-user-id", user}, {"x-user-role", "customer"}};
        err_t err = ERR_INIT;
        Shop__Order__V1__CreateOrderRequest *req = burst_request(calls[i].a, &seed, user, products);
        int rc = rpc_channel_call_async(T.order, &shop__order__v1__order_service__descriptor,
                                        "CreateOrder", &req->base, calls[i].a, md, 2, 60000,
                                        burst_done, &calls[i], &err);
        if (rc != 0) /* not started: counted as done and failed, asserted below */
            burst_done(&calls[i], rc, NULL, &err);
    }
    pthread_mutex_lock(&b->mu);
    while (b->pending > 0)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    ck_assert_msg(b->failed == 0, "%d CreateOrder calls failed, first: %s", b->failed, b->errors);
    for (int i = 0; i < N_ORDERS; i++)
        fs_track(&T, b->ids[i]);
    ck_assert_uint_eq(T.n_orders, N_ORDERS); /* 200 distinct orders */

    /* Every order terminal within SAGA_TIMEOUT plus a margin, then the invariants. */
    fs_wait_invariants(&T, SAGA_TIMEOUT_MS + 60000);
    int64_t by_status[5] = {0}; /* confirmed, then by cancel reason */
    for (int i = 0; i < N_ORDERS; i++) {
        const Shop__Order__V1__Order *o = fs_get(&T, users[i % N_USERS], b->ids[i]);
        ck_assert_int_ne(o->status, PENDING);
        ck_assert((int)o->status == CONFIRMED ||
                  ((int)o->cancel_reason >= OUT_OF_STOCK && (int)o->cancel_reason <= TIMEOUT));
        by_status[(int)o->status == CONFIRMED ? 0 : (int)o->cancel_reason]++;
    }
    fprintf(stderr,
            "concurrent orders: %" PRId64 " confirmed, %" PRId64 " out of stock, %" PRId64
            " payment failed, %" PRId64 " timed out\n",
            by_status[0], by_status[1], by_status[2], by_status[3]);
    ck_assert_int_gt(by_status[0], 0);
    ck_assert_int_gt(by_status[1] + by_status[2] + by_status[3], 0);
}
END_TEST

static Suite *e2e_suite(void)
{
    Suite *s = suite_create("e2e_saga");
    TCase *tc = check_case(s, "fleet", 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_happy_path_confirms_moves_stock_to_sold_and_charges_once);
    tcase_add_test(tc, test_line_short_of_stock_cancels_out_of_stock_holding_nothing);
    tcase_add_test(tc, test_not_enough_money_cancels_payment_failed_and_releases_stock);
    tcase_add_test(tc, test_cancel_of_confirmed_order_refunds_and_restocks);
    tcase_add_test(tc, test_every_event_replayed_under_new_ids_takes_effect_once);
    tcase_add_test(tc, test_same_idempotency_key_twice_makes_one_order);
    tcase_add_test(tc, test_user_svc_down_times_out_and_charges_nothing_when_it_returns);
    tcase_add_test(tc, test_200_concurrent_orders_end_terminal_with_invariants_holding);
    return s;
}

static int start_fleet(void)
{
    if ((topic_partitions = svc_topic_partitions("order.events")) < 0)
        return -1;
    static char product_env[1100], user_env[1100], order_env[1100], product_addr[64];
    snprintf(product_env, sizeof(product_env), "DATABASE_URL=%s", svc_env("PRODUCT_DATABASE_URL"));
    snprintf(user_env, sizeof(user_env), "DATABASE_URL=%s", svc_env("USER_DATABASE_URL"));
    snprintf(order_env, sizeof(order_env), "DATABASE_URL=%s", svc_env("ORDER_DATABASE_URL"));
    if (svc_proc_start(&product_svc, PRODUCT_SVC, "product-svc",
                       (const char *const[]){product_env, NULL}) != 0 ||
        svc_proc_start(&user_svc, USER_SVC, "user-svc", (const char *const[]){user_env, NULL}) != 0)
        return -1;
    snprintf(product_addr, sizeof(product_addr), "PRODUCT_ADDR=127.0.0.1:%d",
             product_svc.grpc_port);
    const char *env[] = {order_env, product_addr, "SAGA_TIMEOUT=5s", "SWEEP_INTERVAL=200ms", NULL};
    return svc_proc_start(&order_svc, svc_program("ORDER_SVC_PROGRAM", ORDER_SVC), "order-svc",
                          env);
}

int main(void)
{
    log_init("fleet-test", LOG_LEVEL_WARN); /* the test's own Kafka clients are quiet */
    int status = EXIT_FAILURE;
    if (start_fleet() == 0)
        /* gRPC does not survive fork once started: one process for every test. */
        status = check_run(e2e_suite(), CK_NOFORK);
    svc_proc_t *procs[] = {&order_svc, &user_svc, &product_svc};
    for (size_t i = 0; i < 3; i++) {
        if (svc_proc_stop(procs[i]) != 0)
            status = EXIT_FAILURE;
        svc_proc_free(procs[i], status != EXIT_SUCCESS);
    }
    return status;
}
