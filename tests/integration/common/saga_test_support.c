#include "saga_test_support.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "kafka_auth.h"
#include "common/metrics.h"
#include "common/outbox.h"
#include "common/uuid.h"
#include "shop/events/v1/events.pb-c.h"

#define ST_POOL_SIZE  4
#define ST_PARTITIONS 6
#define ST_ADMIN_MS   30000
#define ST_IDLE_MS    500

const char *st_getenv(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v, "%s is not set: run through make test", name);
    return v;
}

void st_name(const char *prefix, char sep, char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned seed = (unsigned)(ts.tv_nsec ^ (getpid() << 16));
    snprintf(out, n, "%s%c%d%c%08x", prefix, sep, (int)getpid(), sep, (unsigned)rand_r(&seed));
}

/* Runs one statement on a throwaway pool (schema creation and removal). */
static void st_admin_sql(const char *url, const char *sql)
{
    err_t err = ERR_INIT;
    db_pool_t *pool = db_pool_new(url, 1, &err);
    ck_assert_msg(pool, "%s", err.msg);
    db_conn_t *c = db_pool_acquire(pool, 10000, &err);
    ck_assert_msg(c, "%s", err.msg);
    arena_t *a = arena_new(0);
    ck_assert_msg(db_exec(c, a, sql, 0, NULL, &err), "%s: %s", sql, err.msg);
    arena_free(a);
    db_pool_release(pool, c);
    db_pool_free(pool);
}

/* A test that failed never reached its teardown: drop the schemas (and the topics
 * they list) of test processes that no longer exist. */
static void st_sweep_stale(const char *base, const char *brokers)
{
    err_t err = ERR_INIT;
    db_pool_t *pool = db_pool_new(base, 1, &err);
    ck_assert_msg(pool, "%s", err.msg);
    db_conn_t *c = db_pool_acquire(pool, 10000, &err);
    ck_assert_msg(c, "%s", err.msg);
    arena_t *a = arena_new(0);
    db_res_t *r =
        db_execf(c, a, &err, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tsaga\\_%'", 0);
    ck_assert_msg(r, "%s", err.msg);
    for (int i = 0; i < db_res_rows(r); i++) {
        const char *schema = db_res_str(r, i, 0);
        int pid = atoi(schema + strlen("tsaga_"));
        if (pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        db_res_t *t =
            db_execf(c, a, &err, arena_sprintf(a, "SELECT name FROM %s.test_topics", schema), 0);
        for (int j = 0; t && j < db_res_rows(t); j++) {
            const char *topic = db_res_str(t, j, 0);
            kfk_topics_delete(brokers, &topic, 1, ST_ADMIN_MS, &err);
        }
        db_execf(c, a, &err, arena_sprintf(a, "DROP SCHEMA IF EXISTS %s CASCADE", schema), 0);
    }
    arena_free(a);
    db_pool_release(pool, c);
    db_pool_free(pool);
}

void st_setup(st_env_t *e, const char *name)
{
    st_setup_with(e, name, NULL);
}

void st_setup_with(st_env_t *e, const char *name, const char *const *dlq_conf)
{
    err_t err = ERR_INIT;
    char sql[256];
    memset(e, 0, sizeof(*e));
    log_init("test", LOG_LEVEL_WARN);
    ka_admin();
    ck_assert_int_eq(outbox_set_source("/shop/saga-test"), 0);
    e->a = arena_new(0);
    e->brokers = st_getenv("KAFKA_BROKERS");
    const char *base = st_getenv("ORDER_DATABASE_URL");
    st_sweep_stale(base, e->brokers);

    st_name("tsaga", '_', e->schema, sizeof(e->schema));
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", e->schema);
    st_admin_sql(base, sql);
    snprintf(e->url, sizeof(e->url), "%s%coptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? '&' : '?', e->schema);
    e->pool = db_pool_new(e->url, ST_POOL_SIZE, &err);
    ck_assert_msg(e->pool, "%s", err.msg);
    ck_assert_msg(db_migrate(e->pool, &common_migrations, 1, 30000, &err) == 0, "%s", err.msg);
    st_exec(e, "CREATE TABLE effects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
               " ce_id uuid NOT NULL, key text NOT NULL, seq bigint NOT NULL)");

    char prefix[64];
    snprintf(prefix, sizeof(prefix), "test.%s", name);
    st_name(prefix, '.', e->topic, sizeof(e->topic));
    snprintf(e->dlq, sizeof(e->dlq), "%s.dlq", e->topic);
    const char *topics[] = {e->topic, e->dlq};
    st_exec(e, "CREATE TABLE test_topics (name text NOT NULL)");
    snprintf(sql, sizeof(sql), "INSERT INTO test_topics VALUES ('%s'), ('%s')", e->topic, e->dlq);
    st_exec(e, sql);
    ck_assert_msg(kfk_topics_create(e->brokers, topics, 1, ST_PARTITIONS, ST_ADMIN_MS, &err) == 0,
                  "%s", err.msg);
    ck_assert_msg(kfk_topics_create_with(e->brokers, topics + 1, 1, ST_PARTITIONS, dlq_conf,
                                         ST_ADMIN_MS, &err) == 0,
                  "%s", err.msg);
}

void st_teardown(st_env_t *e)
{
    err_t err = ERR_INIT;
    char sql[256];
    const char *topics[] = {e->topic, e->dlq};
    ck_assert_msg(kfk_topics_delete(e->brokers, topics, 2, ST_ADMIN_MS, &err) == 0, "%s", err.msg);
    db_pool_free(e->pool);
    snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", e->schema);
    st_admin_sql(st_getenv("ORDER_DATABASE_URL"), sql);
    arena_free(e->a);
}

static db_res_t *st_query(st_env_t *e, arena_t *a, const char *sql)
{
    err_t err = ERR_INIT;
    db_conn_t *c = db_pool_acquire(e->pool, 10000, &err);
    ck_assert_msg(c, "%s", err.msg);
    db_res_t *r = db_exec(c, a, sql, 0, NULL, &err);
    db_pool_release(e->pool, c);
    ck_assert_msg(r, "%s: %s", sql, err.msg);
    return r;
}

void st_exec(st_env_t *e, const char *sql)
{
    arena_t *a = arena_new(0);
    st_query(e, a, sql);
    arena_free(a);
}

int64_t st_i64(st_env_t *e, const char *sql)
{
    arena_t *a = arena_new(0);
    db_res_t *r = st_query(e, a, sql);
    ck_assert_msg(db_res_rows(r) == 1, "%s: %d rows", sql, db_res_rows(r));
    int64_t v = db_res_i64(r, 0, 0);
    arena_free(a);
    return v;
}

int64_t st_wait_i64(st_env_t *e, const char *sql, int64_t want, int timeout_ms)
{
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000, v;
    while ((v = st_i64(e, sql)) != want && clock_mono_us() < end)
        clock_sleep_ms(50);
    return v;
}

void st_key(const char *prefix, int i, char *out, size_t n)
{
    snprintf(out, n, "%s-%02d", prefix, i);
}

typedef struct st_round {
    const char *topic;
    const char *prefix;
    int n_keys;
    int64_t seq;
} st_round_t;

static int st_round_txn(db_conn_t *tx, void *ud, err_t *err)
{
    st_round_t *r = ud;
    arena_t *a = arena_new(0);
    int rc = 0;
    for (int i = 0; i < r->n_keys && rc == 0; i++) {
        char key[64];
        st_key(r->prefix, i, key, sizeof(key));
        Shop__Events__V1__OrderCreated ev = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
        ev.order_id = key;
        ev.total_cents = r->seq;
        ev.currency = "USD";
        rc = outbox_enqueue(tx, a, r->topic, key, &ev.base, NULL, err);
    }
    arena_free(a);
    return rc;
}

int st_enqueue_round(st_env_t *e, const char *prefix, int n_keys, int64_t seq)
{
    err_t err = ERR_INIT;
    st_round_t r = {.topic = e->topic, .prefix = prefix, .n_keys = n_keys, .seq = seq};
    int rc = db_txn(e->pool, st_round_txn, &r, &err);
    if (rc != 0)
        LOG_ERR("test enqueue failed", LOG_STR("error", err.msg));
    return rc;
}

const uint8_t *st_pack_order(st_env_t *e, const char *key, int64_t seq, size_t *len)
{
    Shop__Events__V1__OrderCreated ev = SHOP__EVENTS__V1__ORDER_CREATED__INIT;
    ev.order_id = (char *)key;
    ev.total_cents = seq;
    ev.currency = "USD";
    *len = protobuf_c_message_get_packed_size(&ev.base);
    uint8_t *buf = arena_alloc(e->a, *len + 1);
    protobuf_c_message_pack(&ev.base, buf);
    return buf;
}

kfk_ce_t st_ce(st_env_t *e, const char *type, char id[37])
{
    char *now = arena_alloc(e->a, CLOCK_RFC3339_LEN);
    uuid_new(id);
    clock_rfc3339(clock_now_us(), now);
    return (kfk_ce_t){.id = id, .type = type, .source = "/shop/saga-test", .time = now};
}

void st_produce(st_env_t *e, kfk_producer_t *p, const char *key, const void *value, size_t len,
                const kfk_ce_t *ce, const char *omit)
{
    err_t err = ERR_INIT;
    kfk_header_t all[KFK_CE_HEADERS_MAX], kept[KFK_CE_HEADERS_MAX];
    int n = kfk_ce_headers(ce, all, &err);
    ck_assert_msg(n > 0, "%s", err.msg);
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (!omit || strcmp(all[i].name, omit) != 0)
            kept[k++] = all[i];
    kfk_out_msg_t m = {.topic = e->topic,
                       .key = key,
                       .key_len = strlen(key),
                       .value = value,
                       .len = len,
                       .headers = kept,
                       .n_headers = k};
    kfk_batch_t *b = kfk_batch_new(1);
    ck_assert_msg(kfk_produce(p, &m, b, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(kfk_batch_wait(b, 30000), 0);
    ck_assert_msg(kfk_batch_status(b, 0, NULL, NULL, &err) == 0, "%s", err.msg);
    kfk_batch_free(b);
}

static void st_record_copy(st_env_t *e, const kfk_msg_t *m, st_record_t *r)
{
    size_t len;
    const void *key = kfk_msg_key(m, &len);
    r->key = arena_strndup(e->a, key ? key : "", key ? len : 0);
    const void *value = kfk_msg_value(m, &r->len);
    r->value = arena_memdup(e->a, value ? value : "", r->len);
    r->partition = kfk_msg_partition(m);
    r->offset = kfk_msg_offset(m);
    kfk_header_t *hs;
    r->n_headers = kfk_msg_headers(m, e->a, &hs);
    r->headers = hs;
    for (size_t i = 0; i < r->n_headers; i++) {
        hs[i].name = arena_strdup(e->a, hs[i].name);
        hs[i].value = arena_strndup(e->a, hs[i].value ? hs[i].value : "", hs[i].len);
    }
    const char *id = st_header(r, "ce_id");
    r->ce_id = id ? id : "";
    Shop__Events__V1__OrderCreated *oc =
        shop__events__v1__order_created__unpack(arena_protobuf_allocator(e->a), r->len, r->value);
    r->seq = oc ? oc->total_cents : -1;
}

size_t st_consume(st_env_t *e, const char *topic, st_record_t *out, size_t cap, size_t want,
                  int timeout_ms)
{
    err_t err = ERR_INIT;
    char group[ST_NAME_MAX];
    st_name("test-reader", '-', group, sizeof(group));
    kfk_consumer_t *c = kfk_consumer_new(e->brokers, group, (const char *[]){topic}, 1, NULL, &err);
    ck_assert_msg(c, "%s", err.msg);
    size_t n = 0;
    int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000, last = clock_mono_us();
    while (clock_mono_us() < end && !(n >= want && clock_mono_us() - last > ST_IDLE_MS * 1000)) {
        kfk_msg_t *m = kfk_consumer_poll(c, 100);
        if (!m)
            continue;
        if (n < cap)
            st_record_copy(e, m, &out[n]);
        n++;
        last = clock_mono_us();
        kfk_msg_free(m);
    }
    kfk_consumer_close(c);
    return n < cap ? n : cap;
}

const char *st_header(const st_record_t *r, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            v = r->headers[i].value;
    return v;
}

void st_assert_order_per_key(const st_record_t *r, size_t n, const char *prefix, int n_keys,
                             int64_t per_key, bool allow_dups)
{
    for (int k = 0; k < n_keys; k++) {
        char key[64];
        st_key(prefix, k, key, sizeof(key));
        int64_t next = 0, dups = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(r[i].key, key) != 0)
                continue;
            if (r[i].seq == next) {
                next++;
                continue;
            }
            ck_assert_msg(r[i].seq >= 0 && r[i].seq < next,
                          "%s: got %" PRId64 " where %" PRId64 " was due (reordered or lost)", key,
                          r[i].seq, next);
            dups++;
        }
        ck_assert_msg(next == per_key, "%s: only %" PRId64 " of %" PRId64 " arrived in order", key,
                      next, per_key);
        ck_assert_msg(allow_dups || dups == 0, "%s: %" PRId64 " duplicates", key, dups);
    }
}

int st_effect_handler(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx, err_t *err)
{
    const Shop__Events__V1__OrderCreated *oc = (const Shop__Events__V1__OrderCreated *)ev->msg;
    char seq[24];
    snprintf(seq, sizeof(seq), "%" PRId64, oc->total_cents);
    db_res_t *r = db_execf(tx, a, err, "INSERT INTO effects (ce_id, key, seq) VALUES ($1, $2, $3)",
                           3, ev->ce.id, ev->key, seq);
    return r ? 0 : err->code;
}

double st_metric(const char *name, const char *const *fragments)
{
    size_t len;
    char *text = metrics_render(&len);
    double v = 0;
    size_t nl = strlen(name);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, name, nl) != 0 || (line[nl] != ' ' && line[nl] != '{'))
            continue;
        bool match = true;
        for (size_t i = 0; fragments && fragments[i]; i++)
            match = match && strstr(line, fragments[i]) != NULL;
        if (match) {
            v = strtod(strrchr(line, ' ') + 1, NULL);
            break;
        }
    }
    free(text);
    return v;
}
