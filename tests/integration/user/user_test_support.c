/*
 * user_test_support: real user-svc processes, their gRPC API, saga events in and
 * payment events out, and the user database (user_test_support.h).
 */
#include "user_test_support.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "shop/events/v1/events.pb-c.h"
#include "shop/user/v1/user_service.pb-c.h"
#include "kafka_auth.h"
#include "saga_events.h"

#define UT_SOURCE   "/shop/user-test"
#define UT_PASSWORD "saga test password"

static const char *ut_env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && v[0], "%s is not set (start the test stack and export its env)", name);
    return v;
}

/* ---- processes ---- */

/* ---- connections ---- */

void ut_open(ut_t *t, const svc_proc_t *svc)
{
    err_t err = ERR_INIT;
    char group[64], id[UUID_STR_LEN];
    *t = (ut_t){.a = arena_new(0)};
    t->db = db_pool_new(ut_env("USER_DATABASE_URL"), 4, &err);
    ck_assert_msg(t->db, "%s", err.msg);
    t->ch = svc_channel(svc->grpc_port);
    const char *brokers = ut_env("KAFKA_BROKERS");
    ka_admin();
    t->producer = kfk_producer_new(brokers, "user-test", NULL, &err);
    ck_assert_msg(t->producer, "%s", err.msg);
    uuid_new(id);
    snprintf(group, sizeof(group), "user-test-%s", id);
    t->consumer =
        kfk_consumer_new(brokers, group, (const char *[]){"payment.events"}, 1, NULL, &err);
    ck_assert_msg(t->consumer, "%s", err.msg);
}

/* A PostgreSQL array literal of ids. */
static const char *ut_id_array(ut_t *t, const char *const *ids, size_t n)
{
    char *out = arena_alloc(t->a, 3 + n * UUID_STR_LEN), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, i ? ",%s" : "%s", ids[i]);
    strcpy(p, "}");
    return out;
}

/* Deletes what the test's users and orders left in the database (the outbox and the
 * inbox keep their rows: the relay prunes the one, the other is the service's
 * memory of what it handled). */
static void ut_cleanup(ut_t *t)
{
    const char *orders = ut_id_array(t, t->orders, t->n_orders);
    const char *users = ut_id_array(t, t->users, t->n_users);
    ut_i64(t,
           "WITH d AS (DELETE FROM order_payments WHERE order_id = ANY($1::uuid[])"
           " OR user_id = ANY($2::uuid[]) RETURNING 1) SELECT count(*) FROM d",
           orders, users);
    static const char *const tables[] = {"ledger", "wallets", "preferences", "profiles"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char *sql = arena_sprintf(t->a,
                                  "WITH d AS (DELETE FROM %s WHERE user_id = ANY($1::uuid[])"
                                  " RETURNING 1) SELECT count(*) FROM d",
                                  tables[i]);
        ut_i64(t, sql, users, NULL);
    }
    ut_i64(t,
           "WITH d AS (DELETE FROM users WHERE id = ANY($1::uuid[]) RETURNING 1)"
           " SELECT count(*) FROM d",
           users, NULL);
}

void ut_close(ut_t *t)
{
    ut_cleanup(t);
    kfk_consumer_close(t->consumer);
    kfk_producer_free(t->producer);
    rpc_channel_free(t->ch);
    db_pool_free(t->db);
    free(t->orders);
    free(t->users);
    free(t->events);
    arena_free(t->a);
}

/* ---- users through the API ---- */

/* Appends s to a growing list of strings. */
static const char *ut_push(const char ***list, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *list = realloc(*list, *cap * sizeof(**list));
        ck_assert_ptr_nonnull(*list);
    }
    return (*list)[(*n)++] = s;
}

static ProtobufCMessage *ut_call(ut_t *t, arena_t *a, const char *method, const char *user_id,
                                 const ProtobufCMessage *req)
{
    err_t err = ERR_INIT;
    ProtobufCMessage *resp = NULL;
    const rpc_metadata_t md[] = {{"x-user-id", user_id}, {"x-user-role", "customer"}};
    int rc = rpc_channel_call(t->ch, &shop__user__v1__user_service__descriptor, method, req, a,
                              &resp, md, user_id ? 2 : 0, 10000, &err);
    ck_assert_msg(rc == 0, "%s: %s", method, err.msg);
    return resp;
}

bool ut_deposit(ut_t *t, arena_t *a, const char *user_id, int64_t amount, const char *key,
                int64_t *balance, const char **entry_id)
{
    Shop__User__V1__DepositRequest req = SHOP__USER__V1__DEPOSIT_REQUEST__INIT;
    req.user_id = (char *)user_id;
    req.amount_cents = amount;
    req.idempotency_key = (char *)key;
    Shop__User__V1__DepositResponse *resp = (void *)ut_call(t, a, "Deposit", user_id, &req.base);
    if (balance)
        *balance = resp->balance_cents;
    if (entry_id)
        *entry_id = resp->entry->id;
    return resp->replayed;
}

const char *ut_user(ut_t *t, int64_t balance)
{
    char id[UUID_STR_LEN];
    uuid_new(id);
    Shop__User__V1__CreateUserRequest create = SHOP__USER__V1__CREATE_USER_REQUEST__INIT;
    create.email = arena_sprintf(t->a, "saga-%s@test.example", id);
    create.password = UT_PASSWORD;
    create.display_name = "saga test user";
    Shop__User__V1__CreateUserResponse *created =
        (void *)ut_call(t, t->a, "CreateUser", NULL, &create.base);
    const char *uid = created->user->id;
    ut_push(&t->users, &t->n_users, &t->cap_users, uid);
    if (balance > 0) {
        int64_t after = 0;
        ck_assert(!ut_deposit(t, t->a, uid, balance, "initial", &after, NULL));
        ck_assert_int_eq(after, balance);
    }
    return uid;
}

const char *ut_order(ut_t *t)
{
    char id[UUID_STR_LEN];
    uuid_new(id);
    return ut_push(&t->orders, &t->n_orders, &t->cap_orders, arena_strdup(t->a, id));
}

/* ---- saga events in ---- */

static Shop__Events__V1__StockReserved ut_reserved_msg(const char *order_id, const char *user_id,
                                                       int64_t total)
{
    Shop__Events__V1__StockReserved ev = SHOP__EVENTS__V1__STOCK_RESERVED__INIT;
    ev.order_id = (char *)order_id;
    ev.user_id = (char *)user_id;
    ev.total_cents = total;
    ev.currency = "USD";
    return ev;
}

void ut_stock_reserved(ut_t *t, const char *order_id, const char *user_id, int64_t total,
                       const char *ce_id, char *ce_id_out)
{
    Shop__Events__V1__StockReserved ev = ut_reserved_msg(order_id, user_id, total);
    kfk_batch_t *b = kfk_batch_new(1);
    saga_produce(t->producer, t->a, b, "inventory.events", order_id, &ev.base, UT_SOURCE, ce_id,
                 ce_id_out);
    saga_batch_done(b);
}

void ut_stock_reserved_many(ut_t *t, const char *const *order_ids, size_t n, const char *user_id,
                            int64_t total)
{
    kfk_batch_t *b = kfk_batch_new(n);
    for (size_t i = 0; i < n; i++) {
        Shop__Events__V1__StockReserved ev = ut_reserved_msg(order_ids[i], user_id, total);
        saga_produce(t->producer, t->a, b, "inventory.events", order_ids[i], &ev.base, UT_SOURCE,
                     NULL, NULL);
    }
    saga_batch_done(b);
}

void ut_send(ut_t *t, const char *topic, const char *key, const ProtobufCMessage *msg,
             const char *ce_id, char *ce_id_out)
{
    kfk_batch_t *b = kfk_batch_new(1);
    saga_produce(t->producer, t->a, b, topic, key, msg, UT_SOURCE, ce_id, ce_id_out);
    saga_batch_done(b);
}

void ut_order_cancelled(ut_t *t, const char *order_id, const char *user_id, int64_t total,
                        const char *ce_id, char *ce_id_out)
{
    char product[UUID_STR_LEN];
    uuid_new(product);
    Shop__Events__V1__OrderLine line = SHOP__EVENTS__V1__ORDER_LINE__INIT;
    line.product_id = product;
    line.quantity = 1;
    line.unit_price_cents = total;
    Shop__Events__V1__OrderLine *lines[] = {&line};
    Shop__Events__V1__OrderCancelled ev = SHOP__EVENTS__V1__ORDER_CANCELLED__INIT;
    ev.order_id = (char *)order_id;
    ev.user_id = (char *)user_id;
    ev.reason = SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_USER_REQUESTED;
    ev.n_lines = 1;
    ev.lines = lines;
    ev.total_cents = total;
    ev.currency = "USD";
    ev.previous_status = SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_CONFIRMED;
    ut_send(t, "order.events", order_id, &ev.base, ce_id, ce_id_out);
}

/* ---- payment events out ---- */

static const ProtobufCMessageDescriptor *const ut_payment_types[] = {
    &shop__events__v1__payment_completed__descriptor,
    &shop__events__v1__payment_failed__descriptor,
    &shop__events__v1__payment_refunded__descriptor,
};

/* Keeps m if it is an event of one of the test's orders. */
static void ut_collect(ut_t *t, const kfk_msg_t *m)
{
    size_t key_len, type_len;
    const void *key = kfk_msg_key(m, &key_len);
    const char *order = saga_key_in((const char *const *)t->orders, t->n_orders, key, key_len);
    const char *ce_type = kfk_msg_header(m, "ce_type", &type_len);
    if (!order || !ce_type)
        return;
    const char *type;
    ProtobufCMessage *msg = saga_decode(
        m, ut_payment_types, sizeof(ut_payment_types) / sizeof(ut_payment_types[0]), t->a, &type);
    ck_assert_msg(msg, "unexpected event type %.*s on payment.events", (int)type_len, ce_type);
    if (t->n_events == t->cap_events) {
        t->cap_events = t->cap_events ? t->cap_events * 2 : 128;
        t->events = realloc(t->events, t->cap_events * sizeof(*t->events));
        ck_assert_ptr_nonnull(t->events);
    }
    t->events[t->n_events++] = (ut_event_t){.order_id = order, .type = type, .msg = msg};
}

size_t ut_wait_events(ut_t *t, size_t want, int settle_ms)
{
    int64_t now = clock_mono_us(), end = now + (int64_t)UT_TIMEOUT_MS * 1000, settle_end = 0;
    while ((now = clock_mono_us()) < end && (!settle_end || now < settle_end)) {
        kfk_msg_t *m = kfk_consumer_poll(t->consumer, 100);
        if (m)
            ut_collect(t, m);
        kfk_msg_free(m);
        if (!settle_end && t->n_events >= want)
            settle_end = clock_mono_us() + (int64_t)settle_ms * 1000;
    }
    return t->n_events;
}

size_t ut_count(const ut_t *t, const char *type, const char *order_id)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_events; i++)
        n += strcmp(t->events[i].type, type) == 0 &&
             (!order_id || strcmp(t->events[i].order_id, order_id) == 0);
    return n;
}

const ProtobufCMessage *ut_find(const ut_t *t, const char *type, const char *order_id)
{
    for (size_t i = 0; i < t->n_events; i++)
        if (strcmp(t->events[i].type, type) == 0 && strcmp(t->events[i].order_id, order_id) == 0)
            return t->events[i].msg;
    ck_abort_msg("no %s for order %s among %zu events", type, order_id, t->n_events);
    return NULL;
}

/* ---- the database ---- */

int64_t ut_i64(ut_t *t, const char *sql, const char *p1, const char *p2)
{
    err_t err = ERR_INIT;
    int n = p2 ? 2 : p1 ? 1 : 0;
    db_conn_t *c = db_pool_acquire(t->db, 10000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_execf(c, t->a, &err, sql, n, p1, p2);
    db_pool_release(t->db, c);
    ck_assert_msg(r, "%s: %s", sql, err.msg);
    ck_assert_int_eq(db_res_rows(r), 1);
    return db_res_i64(r, 0, 0);
}

int64_t ut_balance(ut_t *t, const char *user_id)
{
    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(t->db, 10000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_execf(c, t->a, &err,
                           "SELECT w.balance_cents, (SELECT COALESCE(sum(amount_cents), 0)"
                           " FROM ledger l WHERE l.user_id = w.user_id)::bigint"
                           " FROM wallets w WHERE w.user_id = $1",
                           1, user_id);
    db_pool_release(t->db, c);
    ck_assert_msg(r, "%s", err.msg);
    ck_assert_int_eq(db_res_rows(r), 1);
    int64_t balance = db_res_i64(r, 0, 0), sum = db_res_i64(r, 0, 1);
    ck_assert_msg(balance >= 0, "balance of %s is %" PRId64, user_id, balance);
    ck_assert_msg(balance == sum, "balance of %s is %" PRId64 " but its ledger sums to %" PRId64,
                  user_id, balance, sum);
    return balance;
}

const char *ut_order_state(ut_t *t, const char *order_id)
{
    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(t->db, 10000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_execf(c, t->a, &err, "SELECT state FROM order_payments WHERE order_id = $1", 1,
                           order_id);
    db_pool_release(t->db, c);
    ck_assert_msg(r, "%s", err.msg);
    return db_res_rows(r) ? db_res_str(r, 0, 0) : "";
}

void ut_wait_order_state(ut_t *t, const char *order_id, const char *state)
{
    int64_t end = clock_mono_us() + (int64_t)UT_TIMEOUT_MS * 1000;
    const char *now = ut_order_state(t, order_id);
    while (strcmp(now, state) != 0 && clock_mono_us() < end) {
        clock_sleep_ms(25);
        now = ut_order_state(t, order_id);
    }
    ck_assert_msg(strcmp(now, state) == 0, "order %s is \"%s\", expected %s", order_id, now, state);
}

void ut_wait_processed(ut_t *t, const char *ce_id)
{
    static const char sql[] = "SELECT count(*) FROM processed_events WHERE ce_id = $1";
    int64_t end = clock_mono_us() + (int64_t)UT_TIMEOUT_MS * 1000;
    while (ut_i64(t, sql, ce_id, NULL) == 0) {
        ck_assert_msg(clock_mono_us() < end, "event %s was not handled in time", ce_id);
        clock_sleep_ms(25);
    }
}
