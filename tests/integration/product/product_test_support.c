/*
 * product_test_support: real product-svc processes, their gRPC API, order events in
 * and inventory events out, and the product database (product_test_support.h).
 */
#include "product_test_support.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "shop/events/v1/events.pb-c.h"
#include "shop/product/v1/product_service.pb-c.h"

#define PT_SOURCE "/shop/product-test"

static const char *pt_env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && v[0], "%s is not set (start the test stack and export its env)", name);
    return v;
}

/* ---- processes ---- */

static char *pt_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    if (!buf)
        abort(); /* out of memory; also used outside tests, so no ck_assert */
    fclose(f);
    buf[n] = '\0';
    return buf;
}

int pt_log_count(const char *path, const char *a, const char *b)
{
    char *text = pt_slurp(path);
    int n = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n"))
        n += strstr(line, a) && (!b || strstr(line, b));
    free(text);
    return n;
}

/* The gRPC port from the "serving" line, 0 while there is none. */
static int pt_svc_port(const pt_svc_t *s)
{
    char *text = pt_slurp(s->log);
    int port = 0;
    const char *line = text ? strstr(text, "\"msg\":\"serving\"") : NULL;
    const char *p = line ? strstr(line, "\"grpc_port\":") : NULL;
    if (p)
        port = atoi(p + strlen("\"grpc_port\":"));
    free(text);
    return port;
}

/* True once the consumer logged an assignment of at least one partition. */
static bool pt_svc_assigned(const pt_svc_t *s)
{
    return pt_log_count(s->log, "kafka partitions assigned", NULL) >
           pt_log_count(s->log, "kafka partitions assigned", "\"partitions\":0");
}

static void pt_svc_exec(const pt_svc_t *s, const char *binary, pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
        _exit(127);
    int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
        _exit(127);
    setenv("DATABASE_URL", getenv("PRODUCT_DATABASE_URL"), 1);
    setenv("GRPC_ADDR", "127.0.0.1:0", 1);
    setenv("ADMIN_ADDR", "127.0.0.1:0", 1);
    setenv("DB_POOL_SIZE", "4", 1);
    setenv("SHUTDOWN_GRACE", "5s", 1);
    setenv("LOG_LEVEL", "info", 1);
    execl(binary, binary, (char *)NULL);
    _exit(127);
}

int pt_svc_start(pt_svc_t *s, const char *binary, int index)
{
    if (!getenv("PRODUCT_DATABASE_URL") || !getenv("KAFKA_BROKERS")) {
        fprintf(stderr, "PRODUCT_DATABASE_URL and KAFKA_BROKERS must be set\n");
        return -1;
    }
    *s = (pt_svc_t){0};
    snprintf(s->log, sizeof(s->log), "/tmp/product-svc-test-%d-%d.log", (int)getpid(), index);
    fflush(NULL);
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0)
        pt_svc_exec(s, binary, parent);
    int64_t end = clock_mono_us() + (int64_t)PT_TIMEOUT_MS * 1000;
    while (clock_mono_us() < end) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            fprintf(stderr, "product-svc %d exited (status %d), see %s\n", index, status, s->log);
            s->pid = 0;
            return -1;
        }
        if (!s->grpc_port)
            s->grpc_port = pt_svc_port(s);
        if (s->grpc_port && pt_svc_assigned(s))
            return 0;
        clock_sleep_ms(50);
    }
    fprintf(stderr, "product-svc %d not serving with partitions in time, see %s\n", index, s->log);
    return -1;
}

int pt_svc_stop(pt_svc_t *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 600; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (rc == 0)
                unlink(s->log);
            return rc;
        }
        clock_sleep_ms(50);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    return -1;
}

/* ---- connections ---- */

void pt_open(pt_t *t, const pt_svc_t *svc)
{
    err_t err = ERR_INIT;
    char group[64], id[UUID_STR_LEN];
    *t = (pt_t){.a = arena_new(0)};
    t->db = db_pool_new(pt_env("PRODUCT_DATABASE_URL"), 2, &err);
    ck_assert_msg(t->db, "%s", err.msg);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", svc->grpc_port);
    t->ch = rpc_channel_new(target, NULL, &err);
    ck_assert_msg(t->ch, "%s", err.msg);
    const char *brokers = pt_env("KAFKA_BROKERS");
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

static const char *pt_produce(pt_t *t, const char *order_id, const ProtobufCMessage *msg,
                              const char *ce_id)
{
    err_t err = ERR_INIT;
    char id[UUID_STR_LEN], now[CLOCK_RFC3339_LEN];
    if (ce_id)
        snprintf(id, sizeof(id), "%s", ce_id);
    else
        uuid_new(id);
    clock_rfc3339(clock_now_us(), now);
    kfk_ce_t ce = {.id = id, .type = msg->descriptor->name, .source = PT_SOURCE, .time = now};
    kfk_header_t headers[KFK_CE_HEADERS_MAX];
    int n = kfk_ce_headers(&ce, headers, &err);
    ck_assert_msg(n > 0, "%s", err.msg);
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = arena_alloc(t->a, len ? len : 1);
    protobuf_c_message_pack(msg, buf);
    kfk_out_msg_t m = {.topic = "order.events",
                       .key = order_id,
                       .key_len = strlen(order_id),
                       .value = buf,
                       .len = len,
                       .headers = headers,
                       .n_headers = (size_t)n};
    kfk_batch_t *b = kfk_batch_new(1);
    ck_assert_msg(kfk_produce(t->producer, &m, b, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(kfk_batch_wait(b, 30000), 0);
    ck_assert_msg(kfk_batch_status(b, 0, NULL, NULL, &err) == 0, "%s", err.msg);
    kfk_batch_free(b);
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

const char *pt_order_created(pt_t *t, const char *order_id, const pt_line_t *lines, size_t n,
                             const char *ce_id)
{
    char now[CLOCK_RFC3339_LEN];
    clock_rfc3339(clock_now_us(), now);
    Shop__Events__V1__OrderCreated ev = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    ev.order_id = (char *)order_id;
    ev.user_id = "00000000-0000-7000-8000-00000000c0de";
    ev.n_lines = n;
    ev.lines = pt_lines(t, lines, n, &ev.total_cents);
    ev.currency = "USD";
    ev.created_at = now;
    return pt_produce(t, order_id, &ev.base, ce_id);
}

const char *pt_order_confirmed(pt_t *t, const char *order_id, const char *ce_id)
{
    Shop__Events__V1__OrderConfirmed ev = SHOP__EVENTS__V1__ORDER_CONFIRMED__INIT;
    ev.order_id = (char *)order_id;
    ev.user_id = "00000000-0000-7000-8000-00000000c0de";
    ev.currency = "USD";
    return pt_produce(t, order_id, &ev.base, ce_id);
}

const char *pt_order_cancelled(pt_t *t, const char *order_id, const char *ce_id)
{
    Shop__Events__V1__OrderCancelled ev = SHOP__EVENTS__V1__ORDER_CANCELLED__INIT;
    ev.order_id = (char *)order_id;
    ev.user_id = "00000000-0000-7000-8000-00000000c0de";
    ev.currency = "USD";
    return pt_produce(t, order_id, &ev.base, ce_id);
}

/* ---- inventory events out ---- */

static const ProtobufCMessageDescriptor *const pt_inventory_types[] = {
    &shop__events__v1__stock_reserved__descriptor,
    &shop__events__v1__stock_rejected__descriptor,
    &shop__events__v1__stock_committed__descriptor,
    &shop__events__v1__stock_released__descriptor,
};

static const char *pt_known_order(const pt_t *t, const void *key, size_t len)
{
    for (size_t i = 0; key && i < t->n_orders; i++)
        if (strlen(t->orders[i]) == len && memcmp(t->orders[i], key, len) == 0)
            return t->orders[i];
    return NULL;
}

/* Keeps m if it is an event of one of the test's orders. */
static void pt_collect(pt_t *t, const kfk_msg_t *m)
{
    size_t key_len, type_len, len;
    const void *key = kfk_msg_key(m, &key_len);
    const char *order = pt_known_order(t, key, key_len);
    const char *type = kfk_msg_header(m, "ce_type", &type_len);
    size_t id_len;
    const char *ce_id = kfk_msg_header(m, "ce_id", &id_len);
    if (!order || !type || !ce_id)
        return;
    ce_id = arena_strndup(t->a, ce_id, id_len);
    for (size_t i = 0; i < t->n_events; i++)
        if (strcmp(t->events[i].ce_id, ce_id) == 0)
            return; /* the relay published it again: at least once */
    for (size_t i = 0; i < sizeof(pt_inventory_types) / sizeof(pt_inventory_types[0]); i++) {
        const ProtobufCMessageDescriptor *d = pt_inventory_types[i];
        if (strlen(d->name) != type_len || memcmp(d->name, type, type_len) != 0)
            continue;
        const void *value = kfk_msg_value(m, &len);
        ProtobufCMessage *msg =
            protobuf_c_message_unpack(d, arena_protobuf_allocator(t->a), len, value);
        ck_assert_msg(msg, "%s for order %s does not decode", d->name, order);
        if (t->n_events == t->cap_events) {
            t->cap_events = t->cap_events ? t->cap_events * 2 : 64;
            t->events = realloc(t->events, t->cap_events * sizeof(*t->events));
            ck_assert_ptr_nonnull(t->events);
        }
        t->events[t->n_events++] = (pt_event_t){
            .ce_id = ce_id, .order_id = order, .type = strrchr(d->name, '.') + 1, .msg = msg};
        return;
    }
    ck_abort_msg("unexpected event type %.*s on inventory.events", (int)type_len, type);
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
