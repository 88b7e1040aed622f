/*
 * product_repo: every SQL statement of product-svc (migrations/product).
 *
 * Catalog and stock functions take the pool and run one statement (or two on one
 * leased connection) in autocommit; each statement is atomic on its own. Saga
 * functions take the handler's transaction. Results are copied into or borrowed
 * from the arena `a`. Ids passed in must be valid UUIDs (uuid_valid): callers
 * decide what a malformed id means.
 *
 * Return codes: 0; ERR_NOT_FOUND (no such product); ERR_CONFLICT (sku taken: the
 * message names products_sku_key); ERR_PRECONDITION (stock would go negative);
 * otherwise the translated database error (db.h). Thread-safe (a tx is used by one
 * thread).
 */
#ifndef PRODUCT_REPO_H
#define PRODUCT_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/err.h"

/* The unique constraint on products.sku (ERR_CONFLICT on create and update). */
#define PRODUCT_SKU_KEY "products_sku_key"

typedef struct product_row {
    const char *id;
    const char *sku;
    const char *name;
    const char *description;
    const char *currency;
    int64_t price_cents;
    bool active;
    int64_t created_us; /* microseconds since the epoch */
    int64_t updated_us;
} product_row_t;

typedef struct product_stock {
    const char *product_id;
    int64_t available;
    int64_t reserved;
    int64_t sold;
} product_stock_t;

/* Which fields of product_fields_t a write sets. */
enum {
    PRODUCT_F_SKU = 1 << 0,
    PRODUCT_F_NAME = 1 << 1,
    PRODUCT_F_DESCRIPTION = 1 << 2,
    PRODUCT_F_PRICE = 1 << 3,
    PRODUCT_F_CURRENCY = 1 << 4,
    PRODUCT_F_ACTIVE = 1 << 5,
};

/* Values to write, already validated; only the fields in `mask` are read. */
typedef struct product_fields {
    unsigned mask;
    const char *sku;
    const char *name;
    const char *description;
    const char *currency;
    int64_t price_cents;
    bool active;
} product_fields_t;

/* The fields' rules (product_fields.c). */
#define PRODUCT_SKU_MAX         64 /* A-Z a-z 0-9 . _ - */
#define PRODUCT_NAME_MAX        200
#define PRODUCT_DESCRIPTION_MAX 5000
#define PRODUCT_PRICE_MAX       INT64_C(1000000000)
#define PRODUCT_CURRENCY        "USD" /* the one currency accepted for now */

/* product_fields_check: checks the fields named in f->mask, adding one violation per
 * bad field to err (sku, name, description, price_cents, currency); f->currency
 * becomes "USD" for "". Returns err->code (0 when every field is valid). Pure. */
int product_fields_check(product_fields_t *f, err_t *err);

/* One page of ListProducts: rows after the cursor (if has_after) in (created_at, id)
 * order, at most `limit`. */
typedef struct product_page_query {
    const char *q; /* substring to find in sku, name or description; "" for all */
    bool include_inactive;
    bool has_after;
    int64_t after_us;
    const char *after_id;
    int limit;
} product_page_query_t;

/* One product's units in a saga step. */
typedef struct product_line {
    const char *product_id;
    int64_t quantity;
} product_line_t;

/* ---- catalog and stock (RPCs) ---- */

/* product_repo_create: inserts an active product (all fields of `f` but active)
 * with a fresh UUIDv7 and its zero inventory row; *out is the stored product. */
int product_repo_create(db_pool_t *pool, arena_t *a, const product_fields_t *f, product_row_t *out,
                        err_t *err);

/* product_repo_get: the product `id`, active or not. */
int product_repo_get(db_pool_t *pool, arena_t *a, const char *id, product_row_t *out, err_t *err);

/* product_repo_batch_get: the products among ids[0..n) (unknown ids are left out;
 * n >= 1), as an array in `a` in no particular order. */
int product_repo_batch_get(db_pool_t *pool, arena_t *a, const char *const *ids, size_t n,
                           product_row_t **out, size_t *n_out, err_t *err);

/* product_repo_list: one page (see product_page_query_t). */
int product_repo_list(db_pool_t *pool, arena_t *a, const product_page_query_t *q,
                      product_row_t **out, size_t *n_out, err_t *err);

/* product_repo_update: writes the fields in f->mask (at least one) and bumps
 * updated_at. expected_us >= 0: only if updated_at is exactly that (one
 * conditional UPDATE), else ERR_PRECONDITION (the product exists) or
 * ERR_NOT_FOUND; -1: unconditional. */
int product_repo_update(db_pool_t *pool, arena_t *a, const char *id, const product_fields_t *f,
                        int64_t expected_us, product_row_t *out, err_t *err);

/* product_repo_archive: active = false (updated_at moves only if it was active);
 * expected_us as for product_repo_update. */
int product_repo_archive(db_pool_t *pool, arena_t *a, const char *id, int64_t expected_us,
                         product_row_t *out, err_t *err);

/* product_repo_stock_set: available = `available` (>= 0), counting the difference as
 * stock added or removed. */
int product_repo_stock_set(db_pool_t *pool, arena_t *a, const char *id, int64_t available,
                           product_stock_t *out, err_t *err);

/* product_repo_stock_adjust: available += delta in one conditional update;
 * ERR_PRECONDITION (nothing changed, *out = the current stock) if it would go
 * negative. */
int product_repo_stock_adjust(db_pool_t *pool, arena_t *a, const char *id, int64_t delta,
                              product_stock_t *out, err_t *err);

/* product_repo_stock_get: the product's available / reserved / sold. */
int product_repo_stock_get(db_pool_t *pool, arena_t *a, const char *id, product_stock_t *out,
                           err_t *err);

/* ---- saga (inside the handler's transaction) ---- */

/* product_repo_order_state: the order's state (order_states.state) into *state, ""
 * when the order was never seen. */
int product_repo_order_state(db_conn_t *tx, arena_t *a, const char *order_id, const char **state,
                             err_t *err);

/* product_repo_order_state_set: inserts or updates the order's state. */
int product_repo_order_state_set(db_conn_t *tx, arena_t *a, const char *order_id, const char *state,
                                 err_t *err);

/* product_repo_order_stock: in one statement, the order's state into *state ("" when
 * the order was never seen; the caller holds the order's lock) and the inventory rows of
 * lines[0..n) — sorted by product_id, without duplicates, lower-case — locked, with
 * available[i] set to line i's available units, or -1 for an unknown product. */
int product_repo_order_stock(db_conn_t *tx, arena_t *a, const char *order_id,
                             const product_line_t *lines, size_t n, const char **state,
                             int64_t *available, err_t *err);

/* product_repo_reserve: for every line (locked, checked), available -= quantity and
 * reserved += quantity with the condition available >= quantity, and records the
 * RESERVED reservations of the order. ERR_ABORTED (retry the transaction) if a line
 * did not update, which the locks make impossible. */
int product_repo_reserve(db_conn_t *tx, arena_t *a, const char *order_id,
                         const product_line_t *lines, size_t n, err_t *err);

/* How a saga step moves an order's units. */
typedef enum {
    PRODUCT_MOVE_COMMIT,  /* RESERVED → COMMITTED: reserved → sold */
    PRODUCT_MOVE_RELEASE, /* RESERVED → RELEASED: reserved → available */
    PRODUCT_MOVE_RESTOCK, /* COMMITTED → RELEASED: sold → available */
} product_move_t;

/* product_repo_move: applies `move` to every reservation of the order in the move's
 * source state and to their inventory rows (locked in product order first). The
 * lines moved are returned in `a` (*n may be 0). */
int product_repo_move(db_conn_t *tx, arena_t *a, const char *order_id, product_move_t move,
                      product_line_t **lines, size_t *n, err_t *err);

#endif
