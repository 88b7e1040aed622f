/*
 * saga_test_support: what the outbox and saga integration tests share.
 *
 * Each test works in a schema of its own in ORDER_DATABASE_URL's database (reached
 * through a pool url whose search_path points at it, with common_migrations applied
 * there) and on topics of its own (test.<name>.<random> and its .dlq, 6 partitions),
 * so tests never see each other's rows or messages and a rerun starts clean.
 * Teardown drops the schema and deletes the topics; a failed test never gets there,
 * so setup also sweeps the schemas of test processes that no longer exist, with the
 * topics each lists in its table test_topics.
 *
 * Events are shop.events.v1.OrderCreated with key = order_id and total_cents as a
 * per-key sequence number. The effect handler records each applied event in the
 * table `effects` (id identity, ce_id, key, seq), in the inbox's transaction.
 */
#ifndef SAGA_TEST_SUPPORT_H
#define SAGA_TEST_SUPPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/kfk.h"
#include "common/saga.h"

#define ST_NAME_MAX  96
#define ST_URL_MAX   1024
#define ST_TIMEOUT_S 60

typedef struct st_env {
    char schema[ST_NAME_MAX];
    char url[ST_URL_MAX]; /* the stack's order database, search_path = schema */
    char topic[ST_NAME_MAX];
    char dlq[ST_NAME_MAX + 8];
    const char *brokers;
    db_pool_t *pool; /* on url */
    arena_t *a;      /* scratch for the test, freed by teardown */
} st_env_t;

/* One consumed message, copied into the env's arena. */
typedef struct st_record {
    const char *key;
    int64_t seq; /* OrderCreated.total_cents, or -1 if the value is not one */
    const char *ce_id;
    int32_t partition;
    int64_t offset;
    const uint8_t *value;
    size_t len;
    kfk_header_t *headers;
    size_t n_headers;
} st_record_t;

/* A required environment variable (fails the test if unset). */
const char *st_getenv(const char *name);

/* A fresh name "<prefix><sep><pid><sep><hex>". */
void st_name(const char *prefix, char sep, char *out, size_t n);

/* Schema, migrations, effects table and topics for a test named `name`. */
void st_setup(st_env_t *e, const char *name);

/* st_setup with topic settings for the dead-letter topic (kfk_topics_create_with). */
void st_setup_with(st_env_t *e, const char *name, const char *const *dlq_conf);
void st_teardown(st_env_t *e);

/* SQL in the test's schema: a statement, and a single integer result. */
void st_exec(st_env_t *e, const char *sql);
int64_t st_i64(st_env_t *e, const char *sql);

/* Polls `sql` every 50 ms until it yields `want` or timeout_ms passes; the last value. */
int64_t st_wait_i64(st_env_t *e, const char *sql, int64_t want, int timeout_ms);

/* Enqueues, in one transaction, one OrderCreated with total_cents = seq for each of
 * keys "<prefix>-00" .. "<prefix>-<n_keys - 1>". 0 or the error (logged); no
 * assertion, so a writer thread may call it. */
int st_enqueue_round(st_env_t *e, const char *prefix, int n_keys, int64_t seq);

/* The name of key i as st_enqueue_round writes it. */
void st_key(const char *prefix, int i, char *out, size_t n);

/* An OrderCreated (order_id = key, total_cents = seq) packed into the env's arena. */
const uint8_t *st_pack_order(st_env_t *e, const char *key, int64_t seq, size_t *len);

/* Valid CloudEvents attributes for `type` with a fresh id (written into id). */
kfk_ce_t st_ce(st_env_t *e, const char *type, char id[37]);

/* Produces one message to e->topic, with ce's headers minus `omit` (NULL: none), and
 * asserts the broker acknowledged it. */
void st_produce(st_env_t *e, kfk_producer_t *p, const char *key, const void *value, size_t len,
                const kfk_ce_t *ce, const char *omit);

/* Reads `topic` from the beginning in a fresh group until at least `want` messages
 * arrived and none came for 500 ms, or timeout_ms passed. Returns the count (≤ cap). */
size_t st_consume(st_env_t *e, const char *topic, st_record_t *out, size_t cap, size_t want,
                  int timeout_ms);

/* The last value of a header of a consumed record, NUL-terminated, or NULL. */
const char *st_header(const st_record_t *r, const char *name);

/* Asserts that, per key, the first occurrences of the sequence numbers are exactly
 * 0, 1, ..., per_key - 1 in order (later copies of an already seen number are
 * duplicates and allowed only if allow_dups), for keys "<prefix>-00".. */
void st_assert_order_per_key(const st_record_t *r, size_t n, const char *prefix, int n_keys,
                             int64_t per_key, bool allow_dups);

/* The effect handler: inserts (ce_id, key, seq) into effects. */
int st_effect_handler(db_conn_t *tx, arena_t *a, const saga_event_t *ev, void *ctx, err_t *err);

/* A metric's value from the process registry: the first series of `name` whose label
 * text contains every fragment (e.g. "outcome=\"dlq\""); 0 if absent. */
double st_metric(const char *name, const char *const *fragments);

#endif
