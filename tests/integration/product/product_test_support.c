/*
 * product_test_support: real product-svc processes, their gRPC API, order events in
 * and inventory events out, and the product database (product_test_support.h).
 */
#include "product_test_support.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "shop/events/v1/events.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"
#include "kafka_auth.h"
#include "saga_events.h"

#define PT_SOURCE "/shop/product-test"

static const char *pt_env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && v[0], "%s is not set (start the test stack and export its env)", name);
    return v;
}

/* ---- processes ---- */

/* ---- connections ---- */

void pt_open(pt_t *t, const svc_proc_t *svc)
{
    err_t err = ERR_INIT;
    char group[64], id[UUID_STR_LEN];
    *t = (pt_t){.a = arena_new(0)};
    t->db = db_pool_new(pt_env("PRODUCT_DATABASE_URL"), 2, &err);
    ck_assert_msg(t->db, "%s", err.msg);
    t->ch = svc_channel(svc->grpc_port);
    const char *brokers = pt_env("KAFKA_BROKERS");
    ka_admin();
    t->producer = kfk_producer_new(brokers, "product-test", NULL, &err);
    ck_assert_msg(t->producer, "%s", err.msg);
    uuid_new(id);
    snprintf(group, sizeof(group), "product-test-%s", id);
    t->consumer =
        kfk_consumer_new(brokers, group, (const char *[]){"inventory.events"}, 1, NULL, &err);
    ck_assert_msg(t->consumer, "%s", err.msg);
}

/* A PostgreSQL array literal of ids. */
static const char *pt_id_array(pt_t *t, const char *const *ids, size_t n)
{
    char *out = arena_alloc(t->a, 3 + n * UUID_STR_LEN), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, i ? ",%s" : "%s", ids[i]);
    strcpy(p, "}");
    return out;
}

/* Deletes what the test's orders and products left in the database. */
static void pt_cleanup(pt_t *t)
{
    const char *orders = pt_id_array(t, t->orders, t->n_orders);
    const char *products = pt_id_array(t, t->products, t->n_products);
    pt_i64(t, "DELETE FROM reservations WHERE order_id = ANY($1::uuid[])", orders, NULL);
    pt_i64(t, "DELETE FROM order_states WHERE order_id = ANY($1::uuid[])", orders, NULL);
    pt_i64(t, "DELETE FROM inventory WHERE product_id = ANY($1::uuid[])", products, NULL);
    pt_i64(t, "DELETE FROM products WHERE id = ANY($1::uuid[])", products, NULL);
}

void pt_close(pt_t *t)
{
    pt_cleanup(t);
    kfk_consumer_close(t->consumer);
    kfk_producer_free(t->producer);
    rpc_channel_free(t->ch);
    db_pool_free(t->db);
    free(t->orders);
    free(t->lines);
    free(t->products);
    free(t->events);
    arena_free(t->a);
}

/* ---- products through the API ---- */

/* Appends s to a growing list of strings. */
static const char *pt_push(const char ***list, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *list = realloc(*list, *cap * sizeof(**list));
        ck_assert_ptr_nonnull(*list);
    }
    return (*list)[(*n)++] = s;
}

static const rpc_metadata_t pt_admin_md[] = {
    {"x-user-id", "00000000-0000-7000-8000-0000000000ad"},
    {"x-user-role", "admin"},
};

static ProtobufCMessage *pt_call(pt_t *t, const char *method, const ProtobufCMessage *req)
{
    err_t err = ERR_INIT;
    ProtobufCMessage *resp = NULL;
    int rc = rpc_channel_call(t->ch, &shop__product__v1__product_service__descriptor, method, req,
                              t->a, &resp, pt_admin_md, 2, 10000, &err);
    ck_assert_msg(rc == 0, "%s: %s", method, err.msg);
    return resp;
}

void pt_set_stock(pt_t *t, const char *product_id, int64_t available)
{
    Shop__Product__V1__SetStockRequest set = SHOP__PRODUCT__V1__SET_STOCK_REQUEST__INIT;
    set.product_id = (char *)product_id;
    set.available = available;
    Shop__Product__V1__SetStockResponse *stock = (void *)pt_call(t, "SetStock", &set.base);
    ck_assert_int_eq(stock->stock->available, available);
}

const char *pt_product(pt_t *t, int64_t available)
{
    char id[UUID_STR_LEN];
    uuid_new(id);
    Shop__Product__V1__CreateProductRequest create =
        SHOP__PRODUCT__V1__CREATE_PRODUCT_REQUEST__INIT;
    create.sku = arena_sprintf(t->a, "SAGA-%s", id);
    create.name = "saga test product";
    create.price_cents = 250;
    Shop__Product__V1__CreateProductResponse *created =
        (void *)pt_call(t, "CreateProduct", &create.base);
    const char *pid = created->product->id;
    pt_push(&t->products, &t->n_products, &t->cap_products, pid);
    pt_set_stock(t, pid, available);
    return pid;
}

const char *pt_order(pt_t *t)
{
    char id[UUID_STR_LEN];
    uuid_new(id);
    return pt_push(&t->orders, &t->n_orders, &t->cap_orders, arena_strdup(t->a, id));
}

/* ---- order events in ---- */

const char *pt_send(pt_t *t, const char *key, const ProtobufCMessage *msg, const char *ce_id)
{
    char id[UUID_STR_LEN];
    saga_send(t->producer, t->a, "order.events", key, msg, PT_SOURCE, ce_id, id);
    return arena_strdup(t->a, id);
}

static Shop__Events__V1__OrderLine **pt_lines(pt_t *t, const pt_line_t *lines, size_t n,
                                              int64_t *total)
{
    Shop__Events__V1__OrderLine **out = arena_calloc(t->a, n ? n : 1, sizeof(*out));
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = arena_alloc(t->a, sizeof(*out[i]));
        *out[i] = (Shop__Events__V1__OrderLine)SHOP__EVENTS__V1__ORDER_LINE__INIT;
        out[i]->product_id = (char *)lines[i].product_id;
        out[i]->quantity = lines[i].quantity;
        out[i]->unit_price_cents = 250;
        *total += 250 * (int64_t)lines[i].quantity;
    }
    return out;
}

Shop__Events__V1__OrderCreated *pt_order_created_event(pt_t *t, const char *order_id,
                                                       const pt_line_t *lines, size_t n)
{
    Shop__Events__V1__OrderCreated *ev = arena_alloc(t->a, sizeof(*ev));
    *ev = (Shop__Events__V1__OrderCreated)SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    ev->order_id = (char *)order_id;
    ev->user_id = "00000000-0000-7000-8000-00000000c0de";
    ev->n_lines = n;
    ev->lines = pt_lines(t, lines, n, &ev->total_cents);
    ev->currency = "USD";
    ev->created_at = clock_rfc3339_in(t->a, clock_now_us());
    return ev;
}

/* The lines the order was first announced with, or one line of an unknown product. */
static const pt_order_lines_t *pt_lines_of(pt_t *t, const char *order_id)
{
    for (size_t i = 0; i < t->n_lines; i++)
        if (strcmp(t->lines[i].order_id, order_id) == 0)
            return &t->lines[i];
    char *unknown = arena_alloc(t->a, UUID_STR_LEN);
    uuid_new(unknown);
    pt_order_lines_t *l = arena_alloc(t->a, sizeof(*l));
    *l = (pt_order_lines_t){.order_id = order_id, .n = 1};
    l->lines = pt_lines(t, (pt_line_t[]){{unknown, 1}}, 1, &l->total_cents);
    return l;
}

const char *pt_order_created(pt_t *t, const char *order_id, const pt_line_t *lines, size_t n,
                             const char *ce_id)
{
    Shop__Events__V1__OrderCreated *ev = pt_order_created_event(t, order_id, lines, n);
    bool seen = false;
    for (size_t i = 0; i < t->n_lines && !seen; i++)
        seen = strcmp(t->lines[i].order_id, order_id) == 0;
    if (!seen) {
        if (t->n_lines == t->cap_lines) {
            t->cap_lines = t->cap_lines ? t->cap_lines * 2 : 16;
            t->lines = realloc(t->lines, t->cap_lines * sizeof(*t->lines));
            ck_assert_ptr_nonnull(t->lines);
        }
        t->lines[t->n_lines++] = (pt_order_lines_t){
            .order_id = order_id, .lines = ev->lines, .n = n, .total_cents = ev->total_cents};
    }
    return pt_send(t, order_id, &ev->base, ce_id);
}

const char *pt_order_confirmed(pt_t *t, const char *order_id, const char *ce_id)
{
    const pt_order_lines_t *l = pt_lines_of(t, order_id);
    Shop__Events__V1__OrderConfirmed ev = SHOP__EVENTS__V1__ORDER_CONFIRMED__INIT;
    ev.order_id = (char *)order_id;
    ev.user_id = "00000000-0000-7000-8000-00000000c0de";
    ev.n_lines = l->n;
    ev.lines = l->lines;
    ev.total_cents = l->total_cents;
    ev.currency = "USD";
    return pt_send(t, order_id, &ev.base, ce_id);
}

const char *pt_order_cancelled(pt_t *t, const char *order_id, const char *ce_id)
{
    const pt_order_lines_t *l = pt_lines_of(t, order_id);
    Shop__Events__V1__OrderCancelled ev = SHOP__EVENTS__V1__ORDER_CANCELLED__INIT;
    ev.order_id = (char *)order_id;
    ev.user_id = "00000000-0000-7000-8000-00000000c0de";
    ev.reason = SHOP__COMMON__V1__CANCEL_REASON__CANCEL_REASON_TIMEOUT;
    ev.n_lines = l->n;
    ev.lines = l->lines;
    ev.total_cents = l->total_cents;
    ev.currency = "USD";
    ev.previous_status = SHOP__COMMON__V1__ORDER_STATUS__ORDER_STATUS_PENDING;
    return pt_send(t, order_id, &ev.base, ce_id);
}

/* ---- inventory events out ---- */

static const ProtobufCMessageDescriptor *const pt_inventory_types[] = {
    &shop__events__v1__stock_reserved__descriptor,
    &shop__events__v1__stock_rejected__descriptor,
    &shop__events__v1__stock_committed__descriptor,
    &shop__events__v1__stock_released__descriptor,
};

/* Keeps m if it is an event of one of the test's orders (once per ce_id). */
static void pt_collect(pt_t *t, const kfk_msg_t *m)
{
    size_t key_len, type_len, id_len;
    const void *key = kfk_msg_key(m, &key_len);
    const char *order = saga_key_in((const char *const *)t->orders, t->n_orders, key, key_len);
    const char *ce_type = kfk_msg_header(m, "ce_type", &type_len);
    const char *ce_id = kfk_msg_header(m, "ce_id", &id_len);
    if (!order || !ce_type || !ce_id)
        return;
    ce_id = arena_strndup(t->a, ce_id, id_len);
    for (size_t i = 0; i < t->n_events; i++)
        if (strcmp(t->events[i].ce_id, ce_id) == 0)
            return; /* the relay published it again: at least once */
    const char *type;
    ProtobufCMessage *msg =
        saga_decode(m, pt_inventory_types,
                    sizeof(pt_inventory_types) / sizeof(pt_inventory_types[0]), t->a, &type);
    ck_assert_msg(msg, "unexpected event type %.*s on inventory.events", (int)type_len, ce_type);
    if (t->n_events == t->cap_events) {
        t->cap_events = t->cap_events ? t->cap_events * 2 : 64;
        t->events = realloc(t->events, t->cap_events * sizeof(*t->events));
        ck_assert_ptr_nonnull(t->events);
    }
    t->events[t->n_events++] =
        (pt_event_t){.ce_id = ce_id, .order_id = order, .type = type, .msg = msg};
}

size_t pt_wait_events(pt_t *t, size_t want)
{
    int64_t end = clock_mono_us() + (int64_t)PT_TIMEOUT_MS * 1000;
    while (t->n_events < want && clock_mono_us() < end) {
        kfk_msg_t *m = kfk_consumer_poll(t->consumer, 100);
        if (m)
            pt_collect(t, m);
        kfk_msg_free(m);
    }
    return t->n_events;
}

void pt_wait_processed(pt_t *t, const char *ce_id)
{
    int64_t end = clock_mono_us() + (int64_t)PT_TIMEOUT_MS * 1000;
    while (pt_i64(t, "SELECT count(*) FROM processed_events WHERE ce_id = $1", ce_id, NULL) == 0) {
        ck_assert_msg(clock_mono_us() < end, "event %s not processed in time", ce_id);
        clock_sleep_ms(20);
    }
}

int64_t pt_emitted(pt_t *t, const char *order_id, const char *type)
{
    char *ce_type = arena_sprintf(t->a, "shop.events.v1.%s", type);
    return pt_i64(t, "SELECT count(*) FROM outbox WHERE key = $1 AND ce_type = $2", order_id,
                  ce_type);
}

size_t pt_count(const pt_t *t, const char *type, const char *order_id)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_events; i++)
        n += strcmp(t->events[i].type, type) == 0 &&
             (!order_id || strcmp(t->events[i].order_id, order_id) == 0);
    return n;
}

const ProtobufCMessage *pt_find(const pt_t *t, const char *type, const char *order_id)
{
    for (size_t i = 0; i < t->n_events; i++)
        if (strcmp(t->events[i].type, type) == 0 && strcmp(t->events[i].order_id, order_id) == 0)
            return t->events[i].msg;
    ck_abort_msg("no %s for order %s", type, order_id);
    return NULL;
}

/* ---- the database ---- */

static db_res_t *pt_query(pt_t *t, const char *sql, int n, const char *p1, const char *p2)
{
    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(t->db, 5000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_execf(c, t->a, &err, sql, n, p1, p2);
    db_pool_release(t->db, c);
    ck_assert_msg(r, "%s: %s", sql, err.msg);
    return r;
}

int64_t pt_i64(pt_t *t, const char *sql, const char *p1, const char *p2)
{
    db_res_t *r = pt_query(t, sql, p2 ? 2 : p1 ? 1 : 0, p1, p2);
    return db_res_rows(r) ? db_res_i64(r, 0, 0) : 0;
}

pt_stock_t pt_stock(pt_t *t, const char *product_id)
{
    db_res_t *r = pt_query(t,
                           "SELECT available, reserved, sold, added FROM inventory"
                           " WHERE product_id = $1",
                           1, product_id, NULL);
    ck_assert_int_eq(db_res_rows(r), 1);
    pt_stock_t s = {db_res_i64(r, 0, 0), db_res_i64(r, 0, 1), db_res_i64(r, 0, 2),
                    db_res_i64(r, 0, 3)};
    ck_assert_msg(s.available >= 0 && s.reserved >= 0 && s.sold >= 0,
                  "negative stock for %s: %lld/%lld/%lld", product_id, (long long)s.available,
                  (long long)s.reserved, (long long)s.sold);
    ck_assert_msg(s.available + s.reserved + s.sold == s.added,
                  "stock not conserved for %s: %lld + %lld + %lld != %lld", product_id,
                  (long long)s.available, (long long)s.reserved, (long long)s.sold,
                  (long long)s.added);
    return s;
}

const char *pt_order_state(pt_t *t, const char *order_id)
{
    db_res_t *r =
        pt_query(t, "SELECT state FROM order_states WHERE order_id = $1", 1, order_id, NULL);
    return db_res_rows(r) ? db_res_str(r, 0, 0) : "";
}

int pt_reservations(pt_t *t, const char *order_id, const char *state, int64_t *units)
{
    db_res_t *r = pt_query(t,
                           "SELECT count(*), coalesce(sum(quantity), 0) FROM reservations"
                           " WHERE order_id = $1 AND ($2::text IS NULL OR state = $2)",
                           2, order_id, state);
    if (units)
        *units = db_res_i64(r, 0, 1);
    return (int)db_res_i64(r, 0, 0);
}
