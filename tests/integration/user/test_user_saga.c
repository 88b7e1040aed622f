/*
 * user-svc as a saga participant (docs/architecture.md §4 steps 3 and 9), against the real
 * PostgreSQL and Kafka of the test stack, with two user-svc processes in one consumer
 * group for the whole run: StockReserved goes in on inventory.events, OrderCancelled
 * on order.events, what comes out on payment.events and what the user database holds
 * are checked. Every balance read asserts that it is not negative and equals the sum
 * of the user's ledger.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "saga_events.h"
#include "shop/events/v1/events.pb-c.h"
#include "user_test_support.h"

#define UT_TCASE_TIMEOUT_S 300
#define UT_SETTLE_MS       1500
#define UT_PRICE           1000

static svc_proc_t svcs[2];

typedef Shop__Events__V1__PaymentCompleted completed_t;
typedef Shop__Events__V1__PaymentFailed failed_t;
typedef Shop__Events__V1__PaymentRefunded refunded_t;

enum {
    INSUFFICIENT_FUNDS =
        SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INSUFFICIENT_FUNDS,
    UNKNOWN_USER = SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_UNKNOWN_USER,
    ORDER_CANCELLED =
        SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_ORDER_CANCELLED,
    INVALID_PAYMENT =
        SHOP__EVENTS__V1__PAYMENT_FAILURE_REASON__PAYMENT_FAILURE_REASON_INVALID_PAYMENT,
};

/* Ledger rows of one order and kind. */
static int64_t ledger_rows(ut_t *t, const char *order_id, const char *kind)
{
    return ut_i64(t, "SELECT count(*) FROM ledger WHERE order_id = $1 AND kind = $2", order_id,
                  kind);
}

/* Outbox rows written for one order (every payment event the service ever emitted
 * for it, published or not). */
static int64_t outbox_rows(ut_t *t, const char *order_id)
{
    return ut_i64(t, "SELECT count(*) FROM outbox WHERE key = $1", order_id, NULL);
}

/* ---- 100 charges against a wallet that covers 30 ---- */

/* Samples a wallet's balance while the charges run: it must never read negative. */
typedef struct sampler {
    ut_t *t;
    const char *user_id;
    atomic_int stop;
    int64_t min;
    long samples;
} sampler_t;

static void *sample_balance(void *p)
{
    sampler_t *s = p;
    err_t err = ERR_INIT;
    arena_t *a = arena_new(0);
    while (!atomic_load(&s->stop)) {
        db_conn_t *c = db_pool_acquire(s->t->db, 10000, &err);
        db_res_t *r =
            c ? db_execf(c, a, &err, "SELECT balance_cents FROM wallets WHERE user_id = $1", 1,
                         s->user_id)
              : NULL;
        db_pool_release(s->t->db, c);
        if (r && db_res_rows(r) == 1) {
            int64_t b = db_res_i64(r, 0, 0);
            s->min = s->samples++ ? (b < s->min ? b : s->min) : b;
        }
        clock_sleep_ms(5);
    }
    arena_free(a);
    return NULL;
}

START_TEST(test_hundred_concurrent_charges_against_thirty_covered_complete_exactly_thirty)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 30 * UT_PRICE);
    const char *orders[100];
    for (size_t i = 0; i < 100; i++)
        orders[i] = ut_order(&t);
    sampler_t s = {.t = &t, .user_id = user};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sample_balance, &s), 0);

    ut_stock_reserved_many(&t, orders, 100, user, UT_PRICE);
    size_t got = ut_wait_events(&t, 100, UT_SETTLE_MS);
    atomic_store(&s.stop, 1);
    pthread_join(th, NULL);

    ck_assert_int_eq(got, 100);
    ck_assert_int_eq(ut_count(&t, "PaymentCompleted", NULL), 30);
    ck_assert_int_eq(ut_count(&t, "PaymentFailed", NULL), 70);
    for (size_t i = 0; i < 100; i++) {
        ck_assert_int_eq(ut_count(&t, "PaymentCompleted", orders[i]) +
                             ut_count(&t, "PaymentFailed", orders[i]),
                         1);
        if (ut_count(&t, "PaymentFailed", orders[i])) {
            const failed_t *f = (const failed_t *)ut_find(&t, "PaymentFailed", orders[i]);
            ck_assert_int_eq(f->reason, INSUFFICIENT_FUNDS);
            ck_assert_int_eq(f->amount_cents, UT_PRICE);
            ck_assert_int_eq(ledger_rows(&t, orders[i], "payment"), 0);
            ck_assert_str_eq(ut_order_state(&t, orders[i]), "FAILED");
        } else {
            const completed_t *c = (const completed_t *)ut_find(&t, "PaymentCompleted", orders[i]);
            ck_assert_int_eq(c->amount_cents, UT_PRICE);
            ck_assert_str_eq(c->user_id, user);
            ck_assert_str_eq(c->currency, "USD");
            ck_assert_int_eq(ut_i64(&t,
                                    "SELECT count(*) FROM ledger WHERE id = $1::uuid AND"
                                    " order_id = $2 AND kind = 'payment' AND amount_cents = -1000",
                                    c->ledger_entry_id, orders[i]),
                             1);
            ck_assert_str_eq(ut_order_state(&t, orders[i]), "CHARGED");
        }
    }
    ck_assert_int_eq(ut_balance(&t, user), 0);
    ck_assert_int_eq(ut_i64(&t,
                            "SELECT count(*) FROM ledger WHERE user_id = $1 AND kind = 'payment'",
                            user, NULL),
                     30);
    ck_assert_msg(s.samples > 0 && s.min >= 0, "balance sampled %ld times, minimum %lld", s.samples,
                  (long long)s.min);
    ut_close(&t);
}
END_TEST

/* ---- duplicates ---- */

START_TEST(test_duplicated_stock_reserved_charges_once)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 5000);
    const char *order = ut_order(&t);
    char first[UUID_STR_LEN], semantic[UUID_STR_LEN];
    ut_stock_reserved(&t, order, user, 1200, NULL, first);
    ut_stock_reserved(&t, order, user, 1200, first, NULL);    /* the same event again */
    ut_stock_reserved(&t, order, user, 1200, NULL, semantic); /* the same step, new ce_id */
    ut_wait_processed(&t, semantic); /* after both copies, in partition order */

    ut_wait_events(&t, 1, UT_SETTLE_MS);
    ck_assert_int_eq(ut_count(&t, "PaymentCompleted", order), 1);
    ck_assert_int_eq(ut_count(&t, "PaymentFailed", order), 0);
    ck_assert_int_eq(ledger_rows(&t, order, "payment"), 1);
    ck_assert_int_eq(outbox_rows(&t, order), 1);
    ck_assert_int_eq(ut_balance(&t, user), 3800);
    ck_assert_str_eq(ut_order_state(&t, order), "CHARGED");
    ut_close(&t);
}
END_TEST

START_TEST(test_duplicated_order_cancelled_refunds_once)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 5000);
    const char *order = ut_order(&t);
    ut_stock_reserved(&t, order, user, 1500, NULL, NULL);
    ut_wait_order_state(&t, order, "CHARGED");
    ck_assert_int_eq(ut_balance(&t, user), 3500);

    char first[UUID_STR_LEN], semantic[UUID_STR_LEN];
    ut_order_cancelled(&t, order, user, 1500, NULL, first);
    ut_order_cancelled(&t, order, user, 1500, first, NULL);
    ut_order_cancelled(&t, order, user, 1500, NULL, semantic);
    ut_wait_processed(&t, semantic);

    ut_wait_events(&t, 2, UT_SETTLE_MS);
    ck_assert_int_eq(ut_count(&t, "PaymentCompleted", order), 1);
    ck_assert_int_eq(ut_count(&t, "PaymentRefunded", order), 1);
    const refunded_t *r = (const refunded_t *)ut_find(&t, "PaymentRefunded", order);
    ck_assert_int_eq(r->amount_cents, 1500);
    ck_assert_str_eq(r->user_id, user);
    ck_assert_int_eq(ut_i64(&t,
                            "SELECT count(*) FROM ledger WHERE id = $1::uuid AND kind = 'refund'"
                            " AND amount_cents = 1500",
                            r->ledger_entry_id, NULL),
                     1);
    ck_assert_int_eq(ledger_rows(&t, order, "refund"), 1);
    ck_assert_int_eq(outbox_rows(&t, order), 2);
    ck_assert_int_eq(ut_balance(&t, user), 5000);
    ck_assert_str_eq(ut_order_state(&t, order), "REFUNDED");
    ut_close(&t);
}
END_TEST

/* ---- out of order ---- */

START_TEST(test_order_cancelled_before_stock_reserved_charges_nothing)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 5000);
    const char *order = ut_order(&t);
    ut_order_cancelled(&t, order, user, 700, NULL, NULL);
    ut_wait_order_state(&t, order, "TOMBSTONE");
    char late[UUID_STR_LEN];
    ut_stock_reserved(&t, order, user, 700, NULL, late);
    ut_wait_processed(&t, late);

    ut_wait_events(&t, 1, UT_SETTLE_MS);
    ck_assert_int_eq(ut_count(&t, "PaymentCompleted", order), 0);
    ck_assert_int_eq(ut_count(&t, "PaymentFailed", order), 1);
    const failed_t *f = (const failed_t *)ut_find(&t, "PaymentFailed", order);
    ck_assert_int_eq(f->reason, ORDER_CANCELLED);
    ck_assert_int_eq(ledger_rows(&t, order, "payment"), 0);
    ck_assert_int_eq(ut_balance(&t, user), 5000);
    ck_assert_str_eq(ut_order_state(&t, order), "FAILED");
    ut_close(&t);
}
END_TEST

START_TEST(test_order_cancelled_after_a_failed_payment_refunds_nothing)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 100);
    const char *order = ut_order(&t);
    ut_stock_reserved(&t, order, user, 700, NULL, NULL);
    ut_wait_order_state(&t, order, "FAILED");
    char cancel[UUID_STR_LEN];
    ut_order_cancelled(&t, order, user, 700, NULL, cancel);
    ut_wait_processed(&t, cancel);

    ut_wait_events(&t, 1, UT_SETTLE_MS);
    ck_assert_int_eq(ut_count(&t, "PaymentFailed", order), 1);
    ck_assert_int_eq(ut_count(&t, "PaymentRefunded", order), 0);
    ck_assert_int_eq(((const failed_t *)ut_find(&t, "PaymentFailed", order))->reason,
                     INSUFFICIENT_FUNDS);
    ck_assert_int_eq(ledger_rows(&t, order, "refund"), 0);
    ck_assert_int_eq(ut_balance(&t, user), 100);
    ck_assert_str_eq(ut_order_state(&t, order), "FAILED");
    ut_close(&t);
}
END_TEST

START_TEST(test_stock_reserved_for_an_unknown_user_fails_the_payment)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    char stranger[UUID_STR_LEN];
    uuid_new(stranger);
    const char *order = ut_order(&t);
    ut_stock_reserved(&t, order, stranger, 500, NULL, NULL);

    ut_wait_events(&t, 1, UT_SETTLE_MS);
    ck_assert_int_eq(ut_count(&t, "PaymentFailed", NULL), 1);
    const failed_t *f = (const failed_t *)ut_find(&t, "PaymentFailed", order);
    ck_assert_int_eq(f->reason, UNKNOWN_USER);
    ck_assert_str_eq(f->user_id, stranger);
    ck_assert_int_eq(f->amount_cents, 500);
    ck_assert_int_eq(ledger_rows(&t, order, "payment"), 0);
    ut_close(&t);
}
END_TEST

/* ---- invalid events ---- */

START_TEST(test_invalid_stock_reserved_charges_nothing_and_fails_the_payment)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 5000);
    static const struct {
        int64_t total;
        const char *currency;
        bool bad_user;
    } cases[] = {
        {-500, "USD", false}, /* a negative amount */
        {500, "EUR", false},  /* another currency */
        {500, "", false},     /* no currency */
        {500, "USD", true},   /* a user id that is not a uuid */
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    const char *orders[N];
    for (size_t i = 0; i < N; i++) {
        orders[i] = ut_order(&t);
        Shop__Events__V1__StockReserved ev = SHOP__EVENTS__V1__STOCK_RESERVED__INIT;
        ev.order_id = (char *)orders[i];
        ev.user_id = (char *)(cases[i].bad_user ? "not-a-user-id" : user);
        ev.total_cents = cases[i].total;
        ev.currency = (char *)cases[i].currency;
        ut_send(&t, "inventory.events", orders[i], &ev.base, NULL, NULL);
    }
    ut_wait_events(&t, N, UT_SETTLE_MS);
    for (size_t i = 0; i < N; i++) {
        ck_assert_int_eq(ut_count(&t, "PaymentFailed", orders[i]), 1);
        ck_assert_int_eq(ut_count(&t, "PaymentCompleted", orders[i]), 0);
        const failed_t *f = (const failed_t *)ut_find(&t, "PaymentFailed", orders[i]);
        ck_assert_int_eq(f->reason, INVALID_PAYMENT);
        ck_assert_int_eq(f->amount_cents, 0);
        ck_assert_str_eq(f->currency, "USD");
        ck_assert_str_eq(f->user_id, cases[i].bad_user ? "" : user);
        ck_assert_int_eq(ledger_rows(&t, orders[i], "payment"), 0);
        ck_assert_str_eq(ut_order_state(&t, orders[i]), "FAILED");
    }
    ck_assert_int_eq(ut_balance(&t, user), 5000);

    /* A valid StockReserved for a refused order comes too late: still nothing charged. */
    char late[UUID_STR_LEN];
    ut_stock_reserved(&t, orders[0], user, 500, NULL, late);
    ut_wait_processed(&t, late);
    ck_assert_int_eq(outbox_rows(&t, orders[0]), 1);
    ck_assert_int_eq(ledger_rows(&t, orders[0], "payment"), 0);
    ck_assert_int_eq(ut_balance(&t, user), 5000);
    ut_close(&t);
}
END_TEST

START_TEST(test_invalid_copy_of_a_charged_order_changes_nothing)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 5000);
    const char *order = ut_order(&t);
    ut_stock_reserved(&t, order, user, 1200, NULL, NULL);
    ut_wait_order_state(&t, order, "CHARGED");
    /* The same step replayed with a negative amount neither charges nor fails it. */
    char replay[UUID_STR_LEN];
    ut_stock_reserved(&t, order, user, -1200, NULL, replay);
    ut_wait_processed(&t, replay);
    ck_assert_int_eq(outbox_rows(&t, order), 1);
    ck_assert_int_eq(ledger_rows(&t, order, "payment"), 1);
    ck_assert_int_eq(ut_balance(&t, user), 3800);
    ck_assert_str_eq(ut_order_state(&t, order), "CHARGED");
    ut_close(&t);
}
END_TEST

START_TEST(test_invalid_order_cancelled_is_dead_lettered_and_refunds_nothing)
{
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 5000);
    const char *order = ut_order(&t);
    ut_stock_reserved(&t, order, user, 1500, NULL, NULL);
    ut_wait_order_state(&t, order, "CHARGED");
    /* Its total is not the sum of its (no) lines. */
    Shop__Events__V1__OrderCancelled bad = SHOP__EVENTS__V1__ORDER_CANCELLED__INIT;
    bad.order_id = (char *)order;
    bad.user_id = (char *)user;
    bad.reason = SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_USER_REQUESTED;
    bad.total_cents = 1500;
    bad.currency = "USD";
    bad.previous_status = SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED;
    ut_send(&t, "order.events", order, &bad.base, NULL, NULL);
    ck_assert_uint_eq(
        saga_dlq_wait(getenv("KAFKA_BROKERS"), "order.events.dlq", order, UT_TIMEOUT_MS), 1);
    ck_assert_int_eq(ledger_rows(&t, order, "refund"), 0);
    ck_assert_int_eq(ut_balance(&t, user), 3500);
    ck_assert_str_eq(ut_order_state(&t, order), "CHARGED");
    /* The valid one refunds. */
    ut_order_cancelled(&t, order, user, 1500, NULL, NULL);
    ut_wait_order_state(&t, order, "REFUNDED");
    ck_assert_int_eq(ledger_rows(&t, order, "refund"), 1);
    ck_assert_int_eq(ut_balance(&t, user), 5000);
    ut_close(&t);
}
END_TEST

/* ---- deposits ---- */

typedef struct depositor {
    ut_t *t;
    const char *user_id;
    const char *key;
    bool replayed;
    int64_t balance;
    const char *entry_id;
    arena_t *a;
} depositor_t;

static void *deposit_once(void *p)
{
    depositor_t *d = p;
    d->replayed = ut_deposit(d->t, d->a, d->user_id, 2500, d->key, &d->balance, &d->entry_id);
    return NULL;
}

START_TEST(test_concurrent_deposits_with_the_same_key_apply_once)
{
    enum { N = 8 };
    ut_t t;
    ut_open(&t, &svcs[0]);
    const char *user = ut_user(&t, 0);
    char key[UUID_STR_LEN];
    uuid_new(key);
    depositor_t d[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        d[i] = (depositor_t){.t = &t, .user_id = user, .key = key, .a = arena_new(0)};
        ck_assert_int_eq(pthread_create(&th[i], NULL, deposit_once, &d[i]), 0);
    }
    int fresh = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        fresh += !d[i].replayed;
        ck_assert_str_eq(d[i].entry_id, d[0].entry_id);
        ck_assert_int_eq(d[i].balance, 2500);
    }
    ck_assert_int_eq(fresh, 1);
    ck_assert_int_eq(ut_balance(&t, user), 2500);
    ck_assert_int_eq(ut_i64(&t, "SELECT count(*) FROM ledger WHERE user_id = $1", user, NULL), 1);
    /* Another key is another deposit. */
    ck_assert(!ut_deposit(&t, t.a, user, 2500, "second", NULL, NULL));
    ck_assert_int_eq(ut_balance(&t, user), 5000);
    for (int i = 0; i < N; i++)
        arena_free(d[i].a);
    ut_close(&t);
}
END_TEST

/* ---- two instances ---- */

/* Lines that mean "this instance handled a payment step". */
static int handled(const svc_proc_t *s)
{
    return svc_log_count(s->log, "\"msg\":\"payment ", NULL) +
           svc_log_count(s->log, "tombstone recorded", NULL) +
           svc_log_count(s->log, "ignored", "\"order_id\"");
}

START_TEST(test_both_instances_handled_saga_events)
{
    /* Runs after the tests above: with the group's partitions split between the two
     * processes, each of them must have applied some of those events. */
    int a = handled(&svcs[0]), b = handled(&svcs[1]);
    ck_assert_msg(a > 0 && b > 0, "events handled: instance 0 %d, instance 1 %d", a, b);
}
END_TEST

static Suite *user_saga_suite(void)
{
    Suite *s = suite_create("user_saga");
    TCase *tc = tcase_create("saga");
    tcase_set_timeout(tc, UT_TCASE_TIMEOUT_S);
    tcase_add_test(tc,
                   test_hundred_concurrent_charges_against_thirty_covered_complete_exactly_thirty);
    tcase_add_test(tc, test_duplicated_stock_reserved_charges_once);
    tcase_add_test(tc, test_duplicated_order_cancelled_refunds_once);
    tcase_add_test(tc, test_order_cancelled_before_stock_reserved_charges_nothing);
    tcase_add_test(tc, test_order_cancelled_after_a_failed_payment_refunds_nothing);
    tcase_add_test(tc, test_stock_reserved_for_an_unknown_user_fails_the_payment);
    tcase_add_test(tc, test_invalid_stock_reserved_charges_nothing_and_fails_the_payment);
    tcase_add_test(tc, test_invalid_copy_of_a_charged_order_changes_nothing);
    tcase_add_test(tc, test_invalid_order_cancelled_is_dead_lettered_and_refunds_nothing);
    tcase_add_test(tc, test_concurrent_deposits_with_the_same_key_apply_once);
    tcase_add_test(tc, test_both_instances_handled_saga_events);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Two instances in one consumer group for every test; started before Check forks
     * the tests, stopped (and required to drain cleanly) after the last. */
    for (int i = 0; i < 2; i++)
        if (svc_proc_start_db(&svcs[i], USER_SVC, i, "USER_DATABASE_URL") != 0) {
            for (int k = 0; k < i; k++)
                svc_proc_end(&svcs[k]);
            return EXIT_FAILURE;
        }
    SRunner *sr = srunner_create(user_saga_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int i = 0; i < 2; i++) {
        int rc = svc_proc_end(&svcs[i]);
        if (rc != 0) {
            fprintf(stderr, "user-svc %d exited %d after SIGTERM, see %s\n", i, rc, svcs[i].log);
            failed++;
        }
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
