/*
 * order_repo: every SQL statement of order-svc (migrations/order).
 *
 * Read functions take the pool and read one consistent snapshot (a REPEATABLE READ,
 * READ ONLY transaction). Write functions take the caller's transaction: CreateOrder,
 * CancelOrder, the saga handlers and the sweeper compose them with order_events.c.
 * Results are copied into or borrowed from the arena `a`. Ids passed in must be valid
 * lower-case UUIDs (uuid_valid): callers decide what a malformed id means.
 *
 * Return codes: 0; ERR_NOT_FOUND (no such order); otherwise the translated database
 * error (db.h). Thread-safe (a tx is used by one thread).
 */
#ifndef ORDER_REPO_H
#define ORDER_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/err.h"

/* One priced line. */
typedef struct order_line {
    const char *product_id;
    int32_t quantity;
    int64_t unit_price_cents;
} order_line_t;

/* One timeline row. */
typedef struct order_step {
    const char *step;
    const char *status;
    const char *detail;
    int64_t at_us;
} order_step_t;

/* An order as stored. Times are microseconds since the epoch. */
typedef struct order_row {
    const char *id;
    const char *user_id;
    const char *status;        /* ORDER_PENDING, ORDER_CONFIRMED, ORDER_CANCELLED */
    const char *cancel_reason; /* "" unless CANCELLED */
    const char *currency;
    int64_t total_cents;
    int64_t created_us;
    int64_t updated_us;
    order_line_t *lines; /* in request order; NULL/0 where not loaded */
    size_t n_lines;
    order_step_t *timeline; /* oldest first; NULL/0 where not loaded */
    size_t n_timeline;
} order_row_t;

/* One page of ListOrders: the orders after the cursor (if has_after) in (created_at,
 * id) descending order, at most `limit`. */
typedef struct order_page_query {
    const char *user_id; /* NULL: every user's orders */
    bool has_after;
    int64_t after_us;
    const char *after_id;
    int limit;
} order_page_query_t;

/* ---- reads (pool) ---- */

/* order_repo_get: the order `id` with its lines and, if with_timeline, its timeline. */
int order_repo_get(db_pool_t *pool, arena_t *a, const char *id, bool with_timeline,
                   order_row_t *out, err_t *err);

/* order_repo_list: one page (see order_page_query_t), each order with its lines and
 * without its timeline, as an array in `a`. */
int order_repo_list(db_pool_t *pool, arena_t *a, const order_page_query_t *q, order_row_t **out,
                    size_t *n_out, err_t *err);

/* order_repo_idem_find: looks up CreateOrder's key (user_id, key). *order_id is the
 * order it created, or NULL if the key is unused; *same tells whether that request's
 * canonical text hashed like `canon`. */
int order_repo_idem_find(db_pool_t *pool, arena_t *a, const char *user_id, const char *key,
                         const char *canon, const char **order_id, bool *same, err_t *err);

/* ---- writes (inside the caller's transaction) ---- */

/* order_repo_create: claims CreateOrder's key (user_id, key) for o->id with the hash
 * of `canon` and, if the key was free, inserts o (id, user_id, total_cents, currency,
 * lines) as PENDING with its first timeline row ("order_created"), all in one
 * statement; then fills o->status, o->cancel_reason, o->created_us and o->updated_us.
 * *claimed is false, and nothing written, if the key was taken (by a committed
 * transaction; one still in flight is waited for). */
int order_repo_create(db_conn_t *tx, arena_t *a, order_row_t *o, const char *key, const char *canon,
                      bool *claimed, err_t *err);

/* order_repo_lock: locks the order's row until tx ends and reads it (without lines
 * or timeline). *found is false (and nothing locked) for an unknown order. */
int order_repo_lock(db_conn_t *tx, arena_t *a, const char *id, order_row_t *out, bool *found,
                    err_t *err);

/* order_repo_transition: the conditional UPDATE of every status change: status =
 * `to`, cancel_reason = `reason` (NULL unless `to` is CANCELLED) WHERE status =
 * `from`. *done tells whether the order was in `from`; if so the row is locked until
 * tx ends and *out is the updated order with its lines (without its timeline). */
int order_repo_transition(db_conn_t *tx, arena_t *a, const char *id, const char *from,
                          const char *to, const char *reason, order_row_t *out, bool *done,
                          err_t *err);

/* One timeline row to append. */
typedef struct order_note {
    const char *step;
    const char *detail;
} order_note_t;

/* order_repo_timeline_add: appends notes[0..n) (n is 1 or 2) as timeline rows, in
 * that order, with the order's current status, in one statement, skipping a note whose
 * step the order's timeline already has (one row per step: the first one stays). The
 * caller holds the order's row lock (order_repo_lock or a done transition), which keeps
 * seq dense and in commit order. */
int order_repo_timeline_add(db_conn_t *tx, arena_t *a, const char *order_id,
                            const order_note_t *notes, size_t n, err_t *err);

/* order_repo_sweep_claim: locks up to `limit` orders PENDING for longer than
 * timeout_ms, oldest first, skipping rows that other transactions hold (FOR UPDATE
 * SKIP LOCKED: N sweepers never wait for or repeat each other). Their ids go to
 * *ids (an array in `a`). */
int order_repo_sweep_claim(db_conn_t *tx, arena_t *a, int64_t timeout_ms, int limit,
                           const char ***ids, size_t *n, err_t *err);

/* order_repo_idem_purge: deletes up to `limit` idempotency keys created more than
 * retention_ms ago, oldest first, in one statement (its own transaction), skipping
 * rows that other transactions hold; *n: how many went. Once a key is gone, a
 * CreateOrder with it creates a new order. */
int order_repo_idem_purge(db_pool_t *pool, arena_t *a, int64_t retention_ms, int limit, size_t *n,
                          err_t *err);

#endif
