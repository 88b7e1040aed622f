/*
 * product_repo: the SQL of product-svc (product_repo.h).
 */
#include "product_repo.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/uuid.h"

/* A product row as product_repo_row reads it. created_at and updated_at travel as
 * integer microseconds: exact, and formatted once, in C. */
#define PRODUCT_COLS                                                                               \
    "id::text, sku, name, description, currency, price_cents, active,"                             \
    " (extract(epoch FROM created_at) * 1000000)::bigint AS created_us,"                           \
    " (extract(epoch FROM updated_at) * 1000000)::bigint AS updated_us"

#define STOCK_COLS "product_id::text, available, reserved, sold"

static void product_repo_row(const db_res_t *r, int i, product_row_t *out)
{
    *out = (product_row_t){
        .id = db_res_str(r, i, 0),
        .sku = db_res_str(r, i, 1),
        .name = db_res_str(r, i, 2),
        .description = db_res_str(r, i, 3),
        .currency = db_res_str(r, i, 4),
        .price_cents = db_res_i64(r, i, 5),
        .active = db_res_bool(r, i, 6),
        .created_us = db_res_i64(r, i, 7),
        .updated_us = db_res_i64(r, i, 8),
    };
}

static void product_repo_stock_row(const db_res_t *r, int i, product_stock_t *out)
{
    *out = (product_stock_t){
        .product_id = db_res_str(r, i, 0),
        .available = db_res_i64(r, i, 1),
        .reserved = db_res_i64(r, i, 2),
        .sold = db_res_i64(r, i, 3),
    };
}

/* A PostgreSQL array literal "{a,b,...}" of ids (UUIDs) or of quantities. */
static const char *product_repo_id_array(arena_t *a, const char *const *ids, size_t n,
                                         size_t stride)
{
    size_t len = 3 + n * UUID_STR_LEN;
    char *out = arena_alloc(a, len), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        const char *id = *(const char *const *)((const char *)ids + i * stride);
        size_t k = strlen(id);
        if (k >= UUID_STR_LEN)
            k = UUID_STR_LEN - 1; /* callers pass validated UUIDs: never truncates */
        if (i)
            *p++ = ',';
        memcpy(p, id, k);
        p += k;
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

static const char *product_repo_line_ids(arena_t *a, const product_line_t *lines, size_t n)
{
    return product_repo_id_array(a, &lines[0].product_id, n, sizeof(lines[0]));
}

static const char *product_repo_line_quantities(arena_t *a, const product_line_t *lines, size_t n)
{
    char *out = arena_alloc(a, 3 + n * 21), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, i ? ",%" PRId64 : "%" PRId64, lines[i].quantity);
    *p++ = '}';
    *p = '\0';
    return out;
}

/* One product row (into *row) or its stock (into *stock), whichever is not NULL, or
 * ERR_NOT_FOUND "product not found". */
static int product_repo_one(db_pool_t *pool, arena_t *a, const char *sql, int n,
                            const char *const *params, product_row_t *row, product_stock_t *stock,
                            err_t *err)
{
    db_res_t *r = db_pool_exec_one(pool, a, "product not found", sql, n, params, err);
    if (!r)
        return err->code;
    if (row)
        product_repo_row(r, 0, row);
    if (stock)
        product_repo_stock_row(r, 0, stock);
    return 0;
}

static void product_repo_rows(arena_t *a, const db_res_t *r, product_row_t **out, size_t *n_out)
{
    size_t n = (size_t)db_res_rows(r);
    *out = n ? arena_calloc(a, n, sizeof(**out)) : NULL;
    for (size_t i = 0; i < n; i++)
        product_repo_row(r, (int)i, &(*out)[i]);
    *n_out = n;
}

/* ---- catalog ---- */

int product_repo_create(db_pool_t *pool, arena_t *a, const product_fields_t *f, product_row_t *out,
                        err_t *err)
{
    /* One statement, so the product never exists without its inventory row. */
    static const char sql[] =
        /* One clock reading for both timestamps: two column defaults would read the
         * clock twice, and a new product's updated_at must equal its created_at. */
        "WITH now AS (SELECT clock_timestamp() AS at),"
        " p AS (INSERT INTO products"
        " (id, sku, name, description, price_cents, currency, created_at, updated_at)"
        " SELECT $1::uuid, $2, $3, $4, $5::bigint, $6, at, at FROM now RETURNING " PRODUCT_COLS "),"
        " i AS (INSERT INTO inventory (product_id) VALUES ($1::uuid))"
        " SELECT * FROM p";
    char id[UUID_STR_LEN];
    uuid_new(id);
    const char *params[] = {
        id, f->sku, f->name, f->description, db_i64_param(a, f->price_cents), f->currency};
    return product_repo_one(pool, a, sql, 6, params, out, NULL, err);
}

int product_repo_get(db_pool_t *pool, arena_t *a, const char *id, product_row_t *out, err_t *err)
{
    static const char sql[] = "SELECT " PRODUCT_COLS " FROM products WHERE id = $1";
    return product_repo_one(pool, a, sql, 1, (const char *[]){id}, out, NULL, err);
}

int product_repo_batch_get(db_pool_t *pool, arena_t *a, const char *const *ids, size_t n,
                           product_row_t **out, size_t *n_out, err_t *err)
{
    static const char sql[] = "SELECT " PRODUCT_COLS " FROM products WHERE id = ANY($1::uuid[])";
    const char *params[] = {product_repo_id_array(a, ids, n, sizeof(ids[0]))};
    db_res_t *r = db_pool_exec(pool, a, sql, 1, params, err);
    if (!r)
        return err->code;
    product_repo_rows(a, r, out, n_out);
    return 0;
}

/* q as an ILIKE pattern matching it anywhere: its own % _ \ are taken literally. */
static const char *product_repo_like(arena_t *a, const char *q)
{
    char *out = arena_alloc(a, strlen(q) * 2 + 3), *p = out;
    *p++ = '%';
    for (; *q; q++) {
        if (*q == '%' || *q == '_' || *q == '\\')
            *p++ = '\\';
        *p++ = *q;
    }
    *p++ = '%';
    *p = '\0';
    return out;
}

int product_repo_list(db_pool_t *pool, arena_t *a, const product_page_query_t *q,
                      product_row_t **out, size_t *n_out, err_t *err)
{
    /* Keyset pagination on the immutable (created_at, id): a row committed before the
     * first page is on exactly one page whatever is inserted meanwhile. The cursor
     * time is rebuilt by integer arithmetic (to_timestamp(double) could be off by a
     * microsecond). Parameters are planned as values, so the unused branches fold. */
    static const char sql[] =
        "SELECT " PRODUCT_COLS " FROM products"
        " WHERE ($1::boolean OR active)"
        " AND ($2::text IS NULL OR sku ILIKE $2 OR name ILIKE $2 OR description ILIKE $2)"
        " AND ($3::bigint IS NULL OR (created_at, id) >"
        " (timestamptz 'epoch' + $3::bigint * interval '1 microsecond', $4::uuid))"
        " ORDER BY created_at, id LIMIT $5";
    const char *params[] = {
        q->include_inactive ? "true" : "false",
        q->q[0] ? product_repo_like(a, q->q) : NULL,
        q->has_after ? db_i64_param(a, q->after_us) : NULL,
        q->has_after ? q->after_id : NULL,
        db_i64_param(a, q->limit),
    };
    db_res_t *r = db_pool_exec(pool, a, sql, 5, params, err);
    if (!r)
        return err->code;
    product_repo_rows(a, r, out, n_out);
    return 0;
}

/* The condition of a write under If-Match: updated_at as integer microseconds, the
 * form PRODUCT_COLS reads it in; $n NULL means unconditional. */
#define PRODUCT_VERSION_IS(n)                                                                      \
    " AND ($" n "::bigint IS NULL OR (extract(epoch FROM updated_at) * 1000000)::bigint = $" n     \
    "::bigint)"

/* A conditional write that changed no row: the product is missing (NOT_FOUND, as
 * it is) or at another version (ERR_PRECONDITION). The write itself was the check;
 * this read only tells the two apart. */
static int product_repo_missed(db_pool_t *pool, arena_t *a, const char *id, int64_t expected_us,
                               err_t *err)
{
    if (expected_us < 0 || err->code != ERR_NOT_FOUND)
        return err->code;
    product_row_t cur;
    err_t e2 = ERR_INIT;
    if (product_repo_get(pool, a, id, &cur, &e2) != 0) {
        if (e2.code != ERR_NOT_FOUND)
            *err = e2;
        return err->code;
    }
    err_clear(err);
    return err_set_client(err, ERR_PRECONDITION,
                          "the product has changed since the version given (If-Match)");
}

int product_repo_update(db_pool_t *pool, arena_t *a, const char *id, const product_fields_t *f,
                        int64_t expected_us, product_row_t *out, err_t *err)
{
    /* Every settable column is NOT NULL, so NULL means "not in the mask". */
    static const char sql[] = "UPDATE products SET sku = COALESCE($2, sku),"
                              " name = COALESCE($3, name),"
                              " description = COALESCE($4, description),"
                              " price_cents = COALESCE($5::bigint, price_cents),"
                              " currency = COALESCE($6, currency),"
                              " active = COALESCE($7::boolean, active),"
                              " updated_at = clock_timestamp()"
                              " WHERE id = $1" PRODUCT_VERSION_IS("8") " RETURNING " PRODUCT_COLS;
    const char *params[] = {
        id,
        f->mask & PRODUCT_F_SKU ? f->sku : NULL,
        f->mask & PRODUCT_F_NAME ? f->name : NULL,
        f->mask & PRODUCT_F_DESCRIPTION ? f->description : NULL,
        f->mask & PRODUCT_F_PRICE ? db_i64_param(a, f->price_cents) : NULL,
        f->mask & PRODUCT_F_CURRENCY ? f->currency : NULL,
        f->mask & PRODUCT_F_ACTIVE ? (f->active ? "true" : "false") : NULL,
        expected_us >= 0 ? db_i64_param(a, expected_us) : NULL,
    };
    if (product_repo_one(pool, a, sql, 8, params, out, NULL, err) != 0)
        return product_repo_missed(pool, a, id, expected_us, err);
    return 0;
}

int product_repo_archive(db_pool_t *pool, arena_t *a, const char *id, int64_t expected_us,
                         product_row_t *out, err_t *err)
{
    static const char sql[] =
        "UPDATE products SET active = false,"
        " updated_at = CASE WHEN active THEN clock_timestamp() ELSE updated_at END"
        " WHERE id = $1" PRODUCT_VERSION_IS("2") " RETURNING " PRODUCT_COLS;
    const char *params[] = {id, expected_us >= 0 ? db_i64_param(a, expected_us) : NULL};
    if (product_repo_one(pool, a, sql, 2, params, out, NULL, err) != 0)
        return product_repo_missed(pool, a, id, expected_us, err);
    return 0;
}

/* ---- stock ---- */

int product_repo_stock_set(db_pool_t *pool, arena_t *a, const char *id, int64_t available,
                           product_stock_t *out, err_t *err)
{
    /* The right-hand sides read the old row: added moves by the difference. */
    static const char sql[] = "UPDATE inventory SET added = added + ($2::bigint - available),"
                              " available = $2::bigint, updated_at = now()"
                              " WHERE product_id = $1 RETURNING " STOCK_COLS;
    const char *params[] = {id, db_i64_param(a, available)};
    return product_repo_one(pool, a, sql, 2, params, NULL, out, err);
}

int product_repo_stock_adjust(db_pool_t *pool, arena_t *a, const char *id, int64_t delta,
                              product_stock_t *out, err_t *err)
{
    static const char sql[] = "UPDATE inventory SET available = available + $2::bigint,"
                              " added = added + $2::bigint, updated_at = now()"
                              " WHERE product_id = $1 AND available + $2::bigint >= 0"
                              " RETURNING " STOCK_COLS;
    const char *params[] = {id, db_i64_param(a, delta)};
    int rc = product_repo_one(pool, a, sql, 2, params, NULL, out, err);
    if (rc != ERR_NOT_FOUND)
        return rc;
    /* No row updated: either no such product or the condition failed. */
    err_clear(err);
    if ((rc = product_repo_stock_get(pool, a, id, out, err)) != 0)
        return rc;
    return err_set_client(err, ERR_PRECONDITION, "product %s has %" PRId64 " available", id,
                          out->available);
}

int product_repo_stock_get(db_pool_t *pool, arena_t *a, const char *id, product_stock_t *out,
                           err_t *err)
{
    static const char sql[] = "SELECT " STOCK_COLS " FROM inventory WHERE product_id = $1";
    return product_repo_one(pool, a, sql, 1, (const char *[]){id}, NULL, out, err);
}

/* ---- saga ---- */

int product_repo_order_state(db_conn_t *tx, arena_t *a, const char *order_id, const char **state,
                             err_t *err)
{
    db_res_t *r =
        db_execf(tx, a, err, "SELECT state FROM order_states WHERE order_id = $1", 1, order_id);
    if (!r)
        return err->code;
    *state = db_res_rows(r) ? db_res_str(r, 0, 0) : "";
    return 0;
}

int product_repo_order_state_set(db_conn_t *tx, arena_t *a, const char *order_id, const char *state,
                                 err_t *err)
{
    static const char sql[] = "INSERT INTO order_states (order_id, state) VALUES ($1, $2)"
                              " ON CONFLICT (order_id)"
                              " DO UPDATE SET state = EXCLUDED.state, updated_at = now()";
    return db_execf_nowait(tx, a, err, sql, 2, order_id, state);
}

int product_repo_order_stock(db_conn_t *tx, arena_t *a, const char *order_id,
                             const product_line_t *lines, size_t n, const char **state,
                             int64_t *available, err_t *err)
{
    /* One statement: the state (the caller holds the order's lock, taken by an earlier
     * statement, so this snapshot is fresh) and the inventory rows, locked in
     * product_id order (LockRows runs above the sort); one row even without any. */
    static const char sql[] =
        "WITH i AS (SELECT product_id::text AS id, available FROM inventory"
        " WHERE product_id = ANY($2::uuid[]) ORDER BY product_id FOR UPDATE)"
        " SELECT (SELECT state FROM order_states WHERE order_id = $1), i.id, i.available"
        " FROM (VALUES (1)) AS one (x) LEFT JOIN i ON true ORDER BY i.id";
    db_res_t *r = db_execf(tx, a, err, sql, 2, order_id, product_repo_line_ids(a, lines, n));
    if (!r)
        return err->code;
    *state = db_res_str(r, 0, 0);
    /* Both sides are in the same order (lower-case UUID text sorts like uuid). */
    int rows = db_res_null(r, 0, 1) ? 0 : db_res_rows(r), j = 0;
    for (size_t k = 0; k < n; k++) {
        if (j < rows && strcmp(db_res_str(r, j, 1), lines[k].product_id) == 0)
            available[k] = db_res_i64(r, j++, 2);
        else
            available[k] = -1;
    }
    return 0;
}

int product_repo_reserve(db_conn_t *tx, arena_t *a, const char *order_id,
                         const product_line_t *lines, size_t n, err_t *err)
{
    /* The units and the reservation rows in one statement: each updated inventory row
     * gives one reservation. */
    static const char sql[] =
        "WITH u AS (UPDATE inventory i SET available = i.available - l.q,"
        " reserved = i.reserved + l.q, updated_at = now()"
        " FROM unnest($2::uuid[], $3::bigint[]) AS l(p, q)"
        " WHERE i.product_id = l.p AND i.available >= l.q RETURNING i.product_id, l.q)"
        " INSERT INTO reservations (order_id, product_id, quantity)"
        " SELECT $1::uuid, product_id, q FROM u";
    db_res_t *r = db_execf(tx, a, err, sql, 3, order_id, product_repo_line_ids(a, lines, n),
                           product_repo_line_quantities(a, lines, n));
    if (!r)
        return err->code;
    if (db_res_affected(r) != (int64_t)n)
        return err_set(err, ERR_ABORTED, "order %s: %" PRId64 " of %zu lines reserved", order_id,
                       db_res_affected(r), n);
    return 0;
}

/* The statement of one move: the reservations and their units together. It locks the
 * inventory rows in no particular order: the saga consumer already holds the order's
 * products (saga_locks_fn), so another batch cannot hold one of them and wait for
 * another, and a stock RPC locks a single row. */
typedef struct product_move_sql {
    const char *from;
    const char *update;
} product_move_sql_t;

#define PRODUCT_MOVE_SQL(to, counts)                                                               \
    "WITH r AS (UPDATE reservations SET state = '" to "', updated_at = now()"                      \
    " WHERE order_id = $1 AND state = $2 RETURNING product_id, quantity)"                          \
    " UPDATE inventory i SET " counts ", updated_at = now() FROM r"                                \
    " WHERE i.product_id = r.product_id RETURNING i.product_id::text, r.quantity"

static const product_move_sql_t product_move_sql[] = {
    [PRODUCT_MOVE_COMMIT] = {"RESERVED",
                             PRODUCT_MOVE_SQL("COMMITTED", "reserved = i.reserved - r.quantity,"
                                                           " sold = i.sold + r.quantity")},
    [PRODUCT_MOVE_RELEASE] = {"RESERVED", PRODUCT_MOVE_SQL(
                                              "RELEASED", "reserved = i.reserved - r.quantity,"
                                                          " available = i.available + r.quantity")},
    [PRODUCT_MOVE_RESTOCK] = {"COMMITTED",
                              PRODUCT_MOVE_SQL("RELEASED",
                                               "sold = i.sold - r.quantity,"
                                               " available = i.available + r.quantity")},
};

int product_repo_move(db_conn_t *tx, arena_t *a, const char *order_id, product_move_t move,
                      product_line_t **lines, size_t *n, err_t *err)
{
    const product_move_sql_t *m = &product_move_sql[move];
    db_res_t *r = db_execf(tx, a, err, m->update, 2, order_id, m->from);
    if (!r)
        return err->code;
    *n = (size_t)db_res_rows(r);
    *lines = *n ? arena_calloc(a, *n, sizeof(**lines)) : NULL;
    for (size_t i = 0; i < *n; i++)
        (*lines)[i] = (product_line_t){.product_id = db_res_str(r, (int)i, 0),
                                       .quantity = db_res_i64(r, (int)i, 1)};
    return 0;
}
