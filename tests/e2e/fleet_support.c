/*
 * fleet_support: real service processes, their gRPC APIs, saga events and the three
 * databases (fleet_support.h).
 */
#include "fleet_support.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "shop/common/v1/common.pb-c.h"
#include "shop/events/v1/events.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"
#include "shop/user/v1/user_service.pb-c.h"
#include "kafka_auth.h"
#include "saga_events.h"

#define FS_SOURCE   "/shop/fleet-test"
#define FS_PASSWORD "fleet test password"

static const char *const fs_saga_topics[] = {"order.events", "inventory.events", "payment.events"};
static const char *const fs_dlq_topics[] = {"order.events.dlq", "inventory.events.dlq",
                                            "payment.events.dlq"};

const fs_who_t fs_admin = {"00000000-0000-7000-8000-0000000000ad", "admin"};

/* ---- connections ---- */

static rpc_channel_t *fs_channel(int port)
{
    return svc_channel(port);
}

static db_pool_t *fs_pool(const char *env)
{
    err_t err = ERR_INIT;
    db_pool_t *db = db_pool_new(svc_env(env), 4, &err);
    ck_assert_msg(db, "%s", err.msg);
    return db;
}

void fs_open(fs_t *t, int order_port, int product_port, int user_port)
{
    err_t err = ERR_INIT;
    char group[64], id[UUID_STR_LEN];
    *t = (fs_t){.a = arena_new(0)};
    t->order_db = fs_pool("ORDER_DATABASE_URL");
    t->product_db = fs_pool("PRODUCT_DATABASE_URL");
    t->order = fs_channel(order_port);
    t->product = fs_channel(product_port);
    if (user_port) {
        t->user_db = fs_pool("USER_DATABASE_URL");
        t->user = fs_channel(user_port);
    }
    const char *brokers = svc_env("KAFKA_BROKERS");
    ka_admin();
    t->producer = kfk_producer_new(brokers, "fleet-test", NULL, &err);
    ck_assert_msg(t->producer, "%s", err.msg);
    uuid_new(id);
    snprintf(group, sizeof(group), "fleet-test-%s", id);
    t->consumer = kfk_consumer_new(brokers, group, fs_saga_topics, 3, NULL, &err);
    ck_assert_msg(t->consumer, "%s", err.msg);
}

/* Appends s to a growing list of strings. */
static const char *fs_push(const char ***list, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *list = realloc(*list, *cap * sizeof(**list));
        ck_assert_ptr_nonnull(*list);
    }
    return (*list)[(*n)++] = s;
}

/* A PostgreSQL array literal of ids. */
static const char *fs_ids(fs_t *t, const char *const *ids, size_t n)
{
    char *out = arena_alloc(t->a, 3 + n * UUID_STR_LEN), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, i ? ",%s" : "%s", ids[i]);
    strcpy(p, "}");
    return out;
}

/* Deletes the test's rows (the outboxes and inboxes keep theirs: the relays prune
 * the one, the other is each service's memory of what it handled). */
static void fs_cleanup(fs_t *t)
{
    const char *orders = fs_ids(t, t->orders, t->n_orders);
    const char *products = fs_ids(t, t->products, t->n_products);
    const char *users = fs_ids(t, t->users, t->n_users);
    static const char *const order_sql[] = {
        "DELETE FROM order_timeline WHERE order_id = ANY($1::uuid[])",
        "DELETE FROM order_lines WHERE order_id = ANY($1::uuid[])",
        "DELETE FROM idempotency_keys WHERE order_id = ANY($1::uuid[])",
        "DELETE FROM orders WHERE id = ANY($1::uuid[])",
    };
    for (size_t i = 0; i < sizeof(order_sql) / sizeof(order_sql[0]); i++)
        fs_i64(t, t->order_db, order_sql[i], orders, NULL);
    fs_i64(t, t->product_db,
           "DELETE FROM reservations WHERE order_id = ANY($1::uuid[])"
           " OR product_id = ANY($2::uuid[])",
           orders, products);
    fs_i64(t, t->product_db, "DELETE FROM order_states WHERE order_id = ANY($1::uuid[])", orders,
           NULL);
    fs_i64(t, t->product_db, "DELETE FROM inventory WHERE product_id = ANY($1::uuid[])", products,
           NULL);
    fs_i64(t, t->product_db, "DELETE FROM products WHERE id = ANY($1::uuid[])", products, NULL);
    if (!t->user_db)
        return;
    fs_i64(t, t->user_db,
           "DELETE FROM order_payments WHERE order_id = ANY($1::uuid[])"
           " OR user_id = ANY($2::uuid[])",
           orders, users);
    static const char *const user_sql[] = {
        "DELETE FROM ledger WHERE user_id = ANY($1::uuid[])",
        "DELETE FROM wallets WHERE user_id = ANY($1::uuid[])",
        "DELETE FROM preferences WHERE user_id = ANY($1::uuid[])",
        "DELETE FROM profiles WHERE user_id = ANY($1::uuid[])",
        "DELETE FROM users WHERE id = ANY($1::uuid[])",
    };
    for (size_t i = 0; i < sizeof(user_sql) / sizeof(user_sql[0]); i++)
        fs_i64(t, t->user_db, user_sql[i], users, NULL);
}

void fs_close(fs_t *t)
{
    fs_cleanup(t);
    kfk_consumer_close(t->consumer);
    kfk_producer_free(t->producer);
    rpc_channel_free(t->order);
    rpc_channel_free(t->product);
    rpc_channel_free(t->user);
    db_pool_free(t->order_db);
    db_pool_free(t->product_db);
    db_pool_free(t->user_db);
    free(t->orders);
    free(t->products);
    free(t->users);
    free(t->events);
    arena_free(t->a);
}

/* ---- calls ---- */

int fs_call(rpc_channel_t *ch, const ProtobufCServiceDescriptor *svc, const char *method,
            const ProtobufCMessage *req, const fs_who_t *who, arena_t *a, ProtobufCMessage **resp,
            err_t *err)
{
    const rpc_metadata_t md[] = {{"x-user-id", who ? who->user_id : ""},
                                 {"x-user-role", who ? who->role : ""}};
    return rpc_channel_call(ch, svc, method, req, a, resp, md, who ? 2 : 0, 10000, err);
}

static ProtobufCMessage *fs_call_ok(fs_t *t, rpc_channel_t *ch,
                                    const ProtobufCServiceDescriptor *svc, const char *method,
                                    const ProtobufCMessage *req, const fs_who_t *who)
{
    err_t err = ERR_INIT;
    ProtobufCMessage *resp = NULL;
    int rc = fs_call(ch, svc, method, req, who, t->a, &resp, &err);
    ck_assert_msg(rc == 0, "%s: %s %s", method, err_code_name(rc), err.msg);
    return resp;
}

const char *fs_product(fs_t *t, int64_t price_cents, int64_t available)
{
    char id[UUID_STR_LEN];
    uuid_new(id);
    const ProtobufCServiceDescriptor *d = &shop__product__v1__product_service__descriptor;
    Shop__Product__V1__CreateProductRequest create =
        SHOP__PRODUCT__V1__CREATE_PRODUCT_REQUEST__INIT;
    create.sku = arena_sprintf(t->a, "FLEET-%s", id);
    create.name = "fleet test product";
    create.price_cents = price_cents;
    Shop__Product__V1__CreateProductResponse *created =
        (void *)fs_call_ok(t, t->product, d, "CreateProduct", &create.base, &fs_admin);
    const char *pid = created->product->id;
    fs_push(&t->products, &t->n_products, &t->cap_products, pid);
    Shop__Product__V1__SetStockRequest set = SHOP__PRODUCT__V1__SET_STOCK_REQUEST__INIT;
    set.product_id = (char *)pid;
    set.available = available;
    fs_call_ok(t, t->product, d, "SetStock", &set.base, &fs_admin);
    return pid;
}

const char *fs_user(fs_t *t, int64_t balance)
{
    char id[UUID_STR_LEN];
    uuid_new(id);
    ck_assert_ptr_nonnull(t->user);
    const ProtobufCServiceDescriptor *d = &shop__user__v1__user_service__descriptor;
    Shop__User__V1__CreateUserRequest create = SHOP__USER__V1__CREATE_USER_REQUEST__INIT;
    create.email = arena_sprintf(t->a, "fleet-%s@test.example", id);
    create.password = FS_PASSWORD;
    create.display_name = "fleet test user";
    Shop__User__V1__CreateUserResponse *created =
        (void *)fs_call_ok(t, t->user, d, "CreateUser", &create.base, NULL);
    const char *uid = created->user->id;
    fs_push(&t->users, &t->n_users, &t->cap_users, uid);
    if (balance > 0) {
        Shop__User__V1__DepositRequest dep = SHOP__USER__V1__DEPOSIT_REQUEST__INIT;
        dep.user_id = (char *)uid;
        dep.amount_cents = balance;
        dep.currency = "USD";
        dep.idempotency_key = "initial";
        fs_who_t who = {uid, "customer"};
        Shop__User__V1__DepositResponse *r =
            (void *)fs_call_ok(t, t->user, d, "Deposit", &dep.base, &who);
        ck_assert_int_eq(r->balance_cents, balance);
    }
    return uid;
}

const char *fs_customer(fs_t *t)
{
    char id[UUID_STR_LEN];
    uuid_new(id);
    return fs_push(&t->users, &t->n_users, &t->cap_users, arena_strdup(t->a, id));
}

void fs_track(fs_t *t, const char *order_id)
{
    for (size_t i = 0; i < t->n_orders; i++)
        if (strcmp(t->orders[i], order_id) == 0)
            return;
    fs_push(&t->orders, &t->n_orders, &t->cap_orders, arena_strdup(t->a, order_id));
}

int fs_create(fs_t *t, const char *user_id, const char *key, const fs_line_t *lines, size_t n,
              Shop__Order__V1__CreateOrderResponse **out, err_t *err)
{
    char fresh[UUID_STR_LEN];
    uuid_new(fresh);
    Shop__Order__V1__CreateOrderRequest req = SHOP__ORDER__V1__CREATE_ORDER_REQUEST__INIT;
    req.user_id = (char *)user_id;
    req.idempotency_key = (char *)(key ? key : fresh);
    req.n_lines = n;
    req.lines = arena_calloc(t->a, n ? n : 1, sizeof(*req.lines));
    for (size_t i = 0; i < n; i++) {
        Shop__Order__V1__RequestedLine *l = arena_alloc(t->a, sizeof(*l));
        *l = (Shop__Order__V1__RequestedLine)SHOP__ORDER__V1__REQUESTED_LINE__INIT;
        l->product_id = (char *)lines[i].product_id;
        l->quantity = lines[i].quantity;
        req.lines[i] = l;
    }
    fs_who_t who = {user_id, "customer"};
    ProtobufCMessage *resp = NULL;
    int rc = fs_call(t->order, &shop__order__v1__order_service__descriptor, "CreateOrder",
                     &req.base, &who, t->a, &resp, err);
    if (rc == 0)
        fs_track(t, ((Shop__Order__V1__CreateOrderResponse *)resp)->order->id);
    if (out)
        *out = (Shop__Order__V1__CreateOrderResponse *)resp;
    return rc;
}

const Shop__Order__V1__Order *fs_create_ok(fs_t *t, const char *user_id, const fs_line_t *lines,
                                           size_t n)
{
    err_t err = ERR_INIT;
    Shop__Order__V1__CreateOrderResponse *resp;
    int rc = fs_create(t, user_id, NULL, lines, n, &resp, &err);
    ck_assert_msg(rc == 0, "CreateOrder: %s %s (%s: %s)", err_code_name(rc), err.msg,
                  err.n_fields ? err.fields[0].field : "",
                  err.n_fields ? err.fields[0].description : "");
    return resp->order;
}

const Shop__Order__V1__Order *fs_get(fs_t *t, const char *user_id, const char *order_id)
{
    Shop__Order__V1__GetOrderRequest req = SHOP__ORDER__V1__GET_ORDER_REQUEST__INIT;
    req.order_id = (char *)order_id;
    fs_who_t who = {user_id, "customer"};
    Shop__Order__V1__GetOrderResponse *resp = (void *)fs_call_ok(
        t, t->order, &shop__order__v1__order_service__descriptor, "GetOrder", &req.base, &who);
    return resp->order;
}

int fs_has_step(const Shop__Order__V1__Order *o, const char *step, const char *detail_part)
{
    int n = 0;
    for (size_t i = 0; i < o->n_timeline; i++)
        n += strcmp(o->timeline[i]->step, step) == 0 &&
             (!detail_part || strstr(o->timeline[i]->detail, detail_part));
    return n;
}

/* Polls GetOrder until done(o, arg) or timeout_ms; fails the test with `what`. */
static const Shop__Order__V1__Order *
fs_poll_order(fs_t *t, const char *user_id, const char *order_id, int timeout_ms,
              bool (*done)(const Shop__Order__V1__Order *, const void *), const void *arg,
              const char *what)
{
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;
    const Shop__Order__V1__Order *o;
    for (;;) {
        o = fs_get(t, user_id, order_id);
        if (done(o, arg))
            return o;
        if (clock_mono_us() >= end)
            break;
        clock_sleep_ms(25);
    }
    ck_abort_msg("order %s: no %s within %d ms (status %d, reason %d, %zu timeline entries)",
                 order_id, what, timeout_ms, (int)o->status, (int)o->cancel_reason, o->n_timeline);
    return NULL;
}

static bool fs_status_is(const Shop__Order__V1__Order *o, const void *arg)
{
    return (int)o->status == *(const int *)arg;
}

static bool fs_step_is(const Shop__Order__V1__Order *o, const void *arg)
{
    return fs_has_step(o, arg, NULL) > 0;
}

const Shop__Order__V1__Order *fs_wait_status(fs_t *t, const char *user_id, const char *order_id,
                                             int status, int timeout_ms)
{
    return fs_poll_order(t, user_id, order_id, timeout_ms, fs_status_is, &status,
                         arena_sprintf(t->a, "status %d", status));
}

const Shop__Order__V1__Order *fs_wait_step(fs_t *t, const char *user_id, const char *order_id,
                                           const char *step, int timeout_ms)
{
    return fs_poll_order(t, user_id, order_id, timeout_ms, fs_step_is, step,
                         arena_sprintf(t->a, "step %s", step));
}

/* ---- events ---- */

void fs_produce(fs_t *t, const char *topic, const char *key, const ProtobufCMessage *msg,
                const char *ce_id, char *ce_id_out)
{
    saga_send(t->producer, t->a, topic, key, msg, FS_SOURCE, ce_id, ce_id_out);
}

static const ProtobufCMessageDescriptor *const fs_event_types[] = {
    &shop__events__v1__order_created__descriptor,
    &shop__events__v1__order_confirmed__descriptor,
    &shop__events__v1__order_cancelled__descriptor,
    &shop__events__v1__stock_reserved__descriptor,
    &shop__events__v1__stock_rejected__descriptor,
    &shop__events__v1__stock_committed__descriptor,
    &shop__events__v1__stock_released__descriptor,
    &shop__events__v1__payment_completed__descriptor,
    &shop__events__v1__payment_failed__descriptor,
    &shop__events__v1__payment_refunded__descriptor,
};

static const char *fs_known_order(const fs_t *t, const void *key, size_t len)
{
    return saga_key_in((const char *const *)t->orders, t->n_orders, key, len);
}

/* Keeps m if it is an event of one of the test's orders. */
static void fs_keep(fs_t *t, const kfk_msg_t *m)
{
    size_t key_len;
    const void *key = kfk_msg_key(m, &key_len);
    const char *order = fs_known_order(t, key, key_len), *type;
    ProtobufCMessage *msg =
        order ? saga_decode(m, fs_event_types, sizeof(fs_event_types) / sizeof(fs_event_types[0]),
                            t->a, &type)
              : NULL;
    if (!msg)
        return;
    if (t->n_events == t->cap_events) {
        t->cap_events = t->cap_events ? t->cap_events * 2 : 256;
        t->events = realloc(t->events, t->cap_events * sizeof(*t->events));
        ck_assert_ptr_nonnull(t->events);
    }
    t->events[t->n_events++] = (fs_event_t){
        .order_id = order, .type = type, .topic = arena_strdup(t->a, kfk_msg_topic(m)), .msg = msg};
}

size_t fs_collect(fs_t *t, const char *type, const char *order_id, size_t want, int settle_ms,
                  int timeout_ms)
{
    int64_t now = clock_mono_us(), end = now + (int64_t)timeout_ms * 1000, settle_end = 0;
    while ((now = clock_mono_us()) < end && (!settle_end || now < settle_end)) {
        kfk_msg_t *m = kfk_consumer_poll(t->consumer, 100);
        if (m)
            fs_keep(t, m);
        kfk_msg_free(m);
        if (!settle_end && want > 0 && fs_count(t, type, order_id) >= want)
            settle_end = clock_mono_us() + (int64_t)settle_ms * 1000;
    }
    return fs_count(t, type, order_id);
}

size_t fs_count(const fs_t *t, const char *type, const char *order_id)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_events; i++)
        n += strcmp(t->events[i].type, type) == 0 &&
             (!order_id || strcmp(t->events[i].order_id, order_id) == 0);
    return n;
}

const ProtobufCMessage *fs_find(const fs_t *t, const char *type, const char *order_id)
{
    for (size_t i = 0; i < t->n_events; i++)
        if (strcmp(t->events[i].type, type) == 0 && strcmp(t->events[i].order_id, order_id) == 0)
            return t->events[i].msg;
    ck_abort_msg("no %s for order %s", type, order_id);
    return NULL;
}

size_t fs_dlq_count(fs_t *t, const char *extra_key, int timeout_ms)
{
    err_t err = ERR_INIT;
    char group[64], id[UUID_STR_LEN];
    uuid_new(id);
    snprintf(group, sizeof(group), "fleet-dlq-%s", id);
    kfk_consumer_t *c =
        kfk_consumer_new(svc_env("KAFKA_BROKERS"), group, fs_dlq_topics, 3, NULL, &err);
    ck_assert_msg(c, "%s", err.msg);
    size_t n = 0;
    /* Read until the topics stay quiet for 2 s (the first poll also joins the group). */
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;
    int64_t quiet_end = clock_mono_us() + 5000000;
    while (clock_mono_us() < end && clock_mono_us() < quiet_end) {
        kfk_msg_t *m = kfk_consumer_poll(c, 100);
        if (!m)
            continue;
        quiet_end = clock_mono_us() + 2000000;
        size_t len;
        const void *key = kfk_msg_key(m, &len);
        n += fs_known_order(t, key, len) != NULL ||
             (extra_key && key && len == strlen(extra_key) && memcmp(key, extra_key, len) == 0);
        kfk_msg_free(m);
    }
    kfk_consumer_close(c);
    return n;
}

/* ---- the databases ---- */

static db_res_t *fs_query(fs_t *t, db_pool_t *db, const char *sql, const char *p1, const char *p2)
{
    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(db, 5000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_execf(c, t->a, &err, sql, p2 ? 2 : p1 ? 1 : 0, p1, p2);
    db_pool_release(db, c);
    ck_assert_msg(r, "%s: %s", sql, err.msg);
    return r;
}

int64_t fs_i64(fs_t *t, db_pool_t *db, const char *sql, const char *p1, const char *p2)
{
    db_res_t *r = fs_query(t, db, sql, p1, p2);
    return db_res_rows(r) ? db_res_i64(r, 0, 0) : 0;
}

int64_t fs_wait_i64(fs_t *t, db_pool_t *db, const char *sql, const char *p1, const char *p2,
                    int64_t want, int timeout_ms)
{
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000, v;
    while ((v = fs_i64(t, db, sql, p1, p2)) != want && clock_mono_us() < end)
        clock_sleep_ms(50);
    ck_assert_msg(v == want, "%s: %" PRId64 ", want %" PRId64, sql, v, want);
    return v;
}

void fs_wait_unattended(fs_t *t, db_pool_t *db, const char *program, int timeout_ms)
{
    fs_wait_i64(t, db,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = $1",
                program, NULL, 0, timeout_ms);
}

fs_stock_t fs_stock(fs_t *t, const char *product_id)
{
    db_res_t *r = fs_query(t, t->product_db,
                           "SELECT available, reserved, sold, added FROM inventory"
                           " WHERE product_id = $1",
                           product_id, NULL);
    ck_assert_int_eq(db_res_rows(r), 1);
    return (fs_stock_t){db_res_i64(r, 0, 0), db_res_i64(r, 0, 1), db_res_i64(r, 0, 2),
                        db_res_i64(r, 0, 3)};
}

int64_t fs_balance(fs_t *t, const char *user_id)
{
    db_res_t *r = fs_query(t, t->user_db, "SELECT balance_cents FROM wallets WHERE user_id = $1",
                           user_id, NULL);
    ck_assert_int_eq(db_res_rows(r), 1);
    return db_res_i64(r, 0, 0);
}

/* A (text id, bigint) result as a lookup: the value for id, or 0. */
static int64_t fs_lookup(const db_res_t *r, const char *id)
{
    for (int i = 0; i < db_res_rows(r); i++)
        if (strcmp(db_res_str(r, i, 0), id) == 0)
            return db_res_i64(r, i, 1);
    return 0;
}

/* Money (needs user-svc): per wallet and per order. */
static const char *fs_money_invariants(fs_t *t, const char *orders, const char *users)
{
    db_res_t *wallets = fs_query(
        t, t->user_db,
        "SELECT w.user_id::text, w.balance_cents,"
        " coalesce((SELECT sum(amount_cents) FROM ledger l WHERE l.user_id = w.user_id), 0),"
        " coalesce((SELECT sum(amount_cents) FROM ledger l WHERE l.user_id = w.user_id"
        " AND kind = 'deposit'), 0)"
        " FROM wallets w WHERE w.user_id = ANY($1::uuid[])",
        users, NULL);
    db_res_t *confirmed = fs_query(t, t->order_db,
                                   "SELECT user_id::text, sum(total_cents) FROM orders"
                                   " WHERE id = ANY($1::uuid[]) AND status = 'CONFIRMED'"
                                   " GROUP BY user_id",
                                   orders, NULL);
    for (int i = 0; i < db_res_rows(wallets); i++) {
        const char *u = db_res_str(wallets, i, 0);
        int64_t balance = db_res_i64(wallets, i, 1), ledger = db_res_i64(wallets, i, 2),
                deposits = db_res_i64(wallets, i, 3), spent = fs_lookup(confirmed, u);
        if (balance < 0 || balance != ledger || balance != deposits - spent)
            return arena_sprintf(t->a,
                                 "wallet %s: balance %" PRId64 ", ledger %" PRId64
                                 ", deposits %" PRId64 " - confirmed %" PRId64,
                                 u, balance, ledger, deposits, spent);
    }
    db_res_t *charged = fs_query(t, t->user_db,
                                 "SELECT order_id::text, -sum(amount_cents) FROM ledger"
                                 " WHERE order_id = ANY($1::uuid[]) GROUP BY order_id",
                                 orders, NULL);
    db_res_t *all = fs_query(t, t->order_db,
                             "SELECT id::text, CASE status WHEN 'CONFIRMED' THEN total_cents"
                             " ELSE 0 END FROM orders WHERE id = ANY($1::uuid[])",
                             orders, NULL);
    for (int i = 0; i < db_res_rows(all); i++) {
        const char *o = db_res_str(all, i, 0);
        if (fs_lookup(charged, o) != db_res_i64(all, i, 1))
            return arena_sprintf(t->a, "order %s: charged net %" PRId64 ", want %" PRId64, o,
                                 fs_lookup(charged, o), db_res_i64(all, i, 1));
    }
    return NULL;
}

static const char *fs_stock_invariants(fs_t *t, const char *orders, const char *products)
{
    db_res_t *inv = fs_query(t, t->product_db,
                             "SELECT product_id::text, available, reserved, sold, added"
                             " FROM inventory WHERE product_id = ANY($1::uuid[])",
                             products, NULL);
    db_res_t *sold = fs_query(t, t->order_db,
                              "SELECT l.product_id::text, sum(l.quantity) FROM order_lines l"
                              " JOIN orders o ON o.id = l.order_id"
                              " WHERE o.id = ANY($1::uuid[]) AND o.status = 'CONFIRMED'"
                              " GROUP BY l.product_id",
                              orders, NULL);
    for (int i = 0; i < db_res_rows(inv); i++) {
        const char *p = db_res_str(inv, i, 0);
        int64_t av = db_res_i64(inv, i, 1), re = db_res_i64(inv, i, 2), so = db_res_i64(inv, i, 3),
                ad = db_res_i64(inv, i, 4), want = fs_lookup(sold, p);
        if (av < 0 || re != 0 || so < 0 || av + re + so != ad || so != want)
            return arena_sprintf(t->a,
                                 "product %s: available %" PRId64 " reserved %" PRId64
                                 " sold %" PRId64 " added %" PRId64 ", confirmed quantity %" PRId64,
                                 p, av, re, so, ad, want);
    }
    return NULL;
}

static const char *fs_invariants_in(fs_t *t)
{
    const char *orders = fs_ids(t, t->orders, t->n_orders);
    const char *products = fs_ids(t, t->products, t->n_products);
    const char *users = fs_ids(t, t->users, t->n_users);
    int64_t pending = fs_i64(t, t->order_db,
                             "SELECT count(*) FROM orders WHERE id = ANY($1::uuid[])"
                             " AND status = 'PENDING'",
                             orders, NULL);
    if (pending)
        return arena_sprintf(t->a, "%" PRId64 " orders still PENDING", pending);
    int64_t twice = fs_i64(t, t->order_db,
                           "SELECT count(*) FROM (SELECT order_id, step FROM order_timeline"
                           " WHERE order_id = ANY($1::uuid[]) AND step IN ('order_created',"
                           " 'order_confirmed', 'order_cancelled') GROUP BY order_id, step"
                           " HAVING count(*) > 1) x",
                           orders, NULL);
    if (twice)
        return arena_sprintf(t->a, "%" PRId64 " orders with a transition recorded twice", twice);
    const char *why = fs_stock_invariants(t, orders, products);
    if (!why && t->user_db)
        why = fs_money_invariants(t, orders, users);
    if (why)
        return why;
    db_pool_t *dbs[] = {t->order_db, t->product_db, t->user_db};
    static const char *const names[] = {"order", "product", "user"};
    for (size_t i = 0; i < 3; i++) {
        if (!dbs[i])
            continue;
        int64_t n = fs_i64(t, dbs[i],
                           "SELECT count(*) FROM outbox WHERE key = ANY($1::text[])"
                           " AND published_at IS NULL",
                           orders, NULL);
        if (n)
            return arena_sprintf(t->a, "%s outbox: %" PRId64 " unpublished rows", names[i], n);
    }
    return NULL;
}

const char *fs_invariants(fs_t *t)
{
    /* Polled in loops: the queries' results go to a scratch arena. */
    arena_t *keep = t->a;
    t->a = arena_new(0);
    const char *why = fs_invariants_in(t);
    why = why ? arena_strdup(keep, why) : NULL;
    arena_free(t->a);
    t->a = keep;
    return why;
}

void fs_wait_invariants(fs_t *t, int timeout_ms)
{
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;
    const char *why;
    while ((why = fs_invariants(t)) && clock_mono_us() < end)
        clock_sleep_ms(100);
    ck_assert_msg(!why, "invariant does not hold after %d ms: %s", timeout_ms, why);
}
