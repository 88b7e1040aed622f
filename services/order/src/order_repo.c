/*
 * order_repo: the SQL of order-svc (order_repo.h).
 */
#include "order_repo.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/uuid.h"

/* An order row as order_repo_row reads it. Times travel as integer microseconds:
 * exact, and formatted once, in C. */
#define ORDER_COLS                                                                                 \
    "id::text, user_id::text, status, coalesce(cancel_reason, ''), currency, total_cents,"         \
    " (extract(epoch FROM created_at) * 1000000)::bigint,"                                         \
    " (extract(epoch FROM updated_at) * 1000000)::bigint"

/* The hash of a canonical CreateOrder request (idempotency_keys.request_hash). */
#define ORDER_HASH(param) "encode(sha256(convert_to(" param ", 'UTF8')), 'hex')"

static void order_repo_row(const db_res_t *r, int i, order_row_t *out)
{
    *out = (order_row_t){
        .id = db_res_str(r, i, 0),
        .user_id = db_res_str(r, i, 1),
        .status = db_res_str(r, i, 2),
        .cancel_reason = db_res_str(r, i, 3),
        .currency = db_res_str(r, i, 4),
        .total_cents = db_res_i64(r, i, 5),
        .created_us = db_res_i64(r, i, 6),
        .updated_us = db_res_i64(r, i, 7),
    };
}

/* A PostgreSQL array literal "{...}" of n values, each printed by fmt_one. Values are
 * UUIDs or integers: nothing to quote. */
static const char *
order_repo_array(arena_t *a, size_t n, size_t width,
                 void (*fmt_one)(char *out, size_t cap, const void *ud, size_t i), const void *ud)
{
    size_t cap = 3 + n * (width + 1);
    char *out = arena_alloc(a, cap), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        fmt_one(p, width + 1, ud, i);
        p += strlen(p);
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

static void order_repo_fmt_product(char *out, size_t cap, const void *ud, size_t i)
{
    snprintf(out, cap, "%s", ((const order_line_t *)ud)[i].product_id);
}

static void order_repo_fmt_quantity(char *out, size_t cap, const void *ud, size_t i)
{
    snprintf(out, cap, "%" PRId32, ((const order_line_t *)ud)[i].quantity);
}

static void order_repo_fmt_price(char *out, size_t cap, const void *ud, size_t i)
{
    snprintf(out, cap, "%" PRId64, ((const order_line_t *)ud)[i].unit_price_cents);
}

static void order_repo_fmt_id(char *out, size_t cap, const void *ud, size_t i)
{
    snprintf(out, cap, "%s", ((const order_row_t *)ud)[i].id);
}

/* ---- reads ---- */

/* Everything a read transaction needs and fills. */
typedef struct order_repo_read {
    arena_t *a;
    const char *id;
    bool with_timeline;
    const order_page_query_t *q;
    order_row_t *rows;
    size_t n;
} order_repo_read_t;

static int order_repo_snapshot(db_conn_t *tx, arena_t *a, err_t *err)
{
    return db_execf(tx, a, err, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0)
               ? 0
               : err->code;
}

/* Fills the lines of rows[0..n) from one query over all of them. */
static int order_repo_lines_of(db_conn_t *tx, arena_t *a, order_row_t *rows, size_t n, err_t *err)
{
    static const char sql[] = "SELECT order_id::text, product_id::text, quantity, unit_price_cents"
                              " FROM order_lines WHERE order_id = ANY($1::uuid[])"
                              " ORDER BY order_id, line_no";
    if (n == 0)
        return 0;
    db_res_t *r =
        db_execf(tx, a, err, sql, 1, order_repo_array(a, n, UUID_STR_LEN, order_repo_fmt_id, rows));
    if (!r)
        return err->code;
    int total = db_res_rows(r);
    for (size_t k = 0; k < n; k++) {
        order_row_t *o = &rows[k];
        int first = -1, count = 0;
        for (int i = 0; i < total; i++) {
            if (strcmp(db_res_str(r, i, 0), o->id) != 0)
                continue;
            if (first < 0)
                first = i;
            count++;
        }
        o->n_lines = (size_t)count;
        o->lines = count ? arena_calloc(a, (size_t)count, sizeof(*o->lines)) : NULL;
        for (int i = 0; i < count; i++)
            o->lines[i] = (order_line_t){.product_id = db_res_str(r, first + i, 1),
                                         .quantity = (int32_t)db_res_i64(r, first + i, 2),
                                         .unit_price_cents = db_res_i64(r, first + i, 3)};
    }
    return 0;
}

static int order_repo_timeline_of(db_conn_t *tx, arena_t *a, order_row_t *o, err_t *err)
{
    static const char sql[] = "SELECT step, status, detail,"
                              " (extract(epoch FROM at) * 1000000)::bigint"
                              " FROM order_timeline WHERE order_id = $1 ORDER BY seq";
    db_res_t *r = db_execf(tx, a, err, sql, 1, o->id);
    if (!r)
        return err->code;
    o->n_timeline = (size_t)db_res_rows(r);
    o->timeline = o->n_timeline ? arena_calloc(a, o->n_timeline, sizeof(*o->timeline)) : NULL;
    for (size_t i = 0; i < o->n_timeline; i++)
        o->timeline[i] = (order_step_t){.step = db_res_str(r, (int)i, 0),
                                        .status = db_res_str(r, (int)i, 1),
                                        .detail = db_res_str(r, (int)i, 2),
                                        .at_us = db_res_i64(r, (int)i, 3)};
    return 0;
}

static int order_repo_get_txn(db_conn_t *tx, void *ud, err_t *err)
{
    order_repo_read_t *rd = ud;
    if (order_repo_snapshot(tx, rd->a, err) != 0)
        return err->code;
    db_res_t *r =
        db_execf(tx, rd->a, err, "SELECT " ORDER_COLS " FROM orders WHERE id = $1", 1, rd->id);
    if (!r)
        return err->code;
    if (db_res_rows(r) == 0)
        return err_set_client(err, ERR_NOT_FOUND, "order not found");
    order_repo_row(r, 0, rd->rows);
    if (order_repo_lines_of(tx, rd->a, rd->rows, 1, err) != 0)
        return err->code;
    return rd->with_timeline ? order_repo_timeline_of(tx, rd->a, rd->rows, err) : 0;
}

int order_repo_get(db_pool_t *pool, arena_t *a, const char *id, bool with_timeline,
                   order_row_t *out, err_t *err)
{
    order_repo_read_t rd = {.a = a, .id = id, .with_timeline = with_timeline, .rows = out};
    return db_txn(pool, order_repo_get_txn, &rd, err);
}

static int order_repo_list_txn(db_conn_t *tx, void *ud, err_t *err)
{
    /* Keyset pagination on the immutable (created_at, id), newest first. The cursor
     * time is rebuilt by integer arithmetic (to_timestamp(double) could be off by a
     * microsecond). Parameters are planned as values, so the unused branches fold. */
    static const char sql[] =
        "SELECT " ORDER_COLS " FROM orders"
        " WHERE ($1::uuid IS NULL OR user_id = $1::uuid)"
        " AND ($2::bigint IS NULL OR (created_at, id) <"
        " (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', $3::uuid))"
        " ORDER BY created_at DESC, id DESC LIMIT $4";
    order_repo_read_t *rd = ud;
    const order_page_query_t *q = rd->q;
    if (order_repo_snapshot(tx, rd->a, err) != 0)
        return err->code;
    db_res_t *r = db_execf(tx, rd->a, err, sql, 4, q->user_id,
                           q->has_after ? db_i64_param(rd->a, q->after_us) : NULL,
                           q->has_after ? q->after_id : NULL, db_i64_param(rd->a, q->limit));
    if (!r)
        return err->code;
    rd->n = (size_t)db_res_rows(r);
    rd->rows = rd->n ? arena_calloc(rd->a, rd->n, sizeof(*rd->rows)) : NULL;
    for (size_t i = 0; i < rd->n; i++)
        order_repo_row(r, (int)i, &rd->rows[i]);
    return order_repo_lines_of(tx, rd->a, rd->rows, rd->n, err);
}

int order_repo_list(db_pool_t *pool, arena_t *a, const order_page_query_t *q, order_row_t **out,
                    size_t *n_out, err_t *err)
{
    order_repo_read_t rd = {.a = a, .q = q};
    if (db_txn(pool, order_repo_list_txn, &rd, err) != 0)
        return err->code;
    *out = rd.rows;
    *n_out = rd.n;
    return 0;
}

int order_repo_idem_find(db_pool_t *pool, arena_t *a, const char *user_id, const char *key,
                         const char *canon, const char **order_id, bool *same, err_t *err)
{
    static const char sql[] = "SELECT order_id::text, request_hash = " ORDER_HASH(
        "$3::text") " FROM idempotency_keys WHERE user_id = $1 AND key = $2";
    db_res_t *r = db_pool_exec(pool, a, sql, 3, (const char *[]){user_id, key, canon}, err);
    if (!r)
        return err->code;
    *order_id = db_res_rows(r) ? db_res_str(r, 0, 0) : NULL;
    *same = db_res_rows(r) && db_res_bool(r, 0, 1);
    return 0;
}

/* ---- writes ---- */

int order_repo_create(db_conn_t *tx, arena_t *a, order_row_t *o, const char *key, const char *canon,
                      bool *claimed, err_t *err)
{
    /* The key, the order, its lines and its first timeline row in one statement. The
     * key's ON CONFLICT waits for a concurrent claim of the same key to commit or roll
     * back, then either skips (taken: nothing else is written) or inserts. The
     * foreign keys of the lines and of the key are checked after the order exists. */
    static const char sql[] =
        "WITH k AS (INSERT INTO idempotency_keys (user_id, key, order_id, request_hash)"
        " VALUES ($2::uuid, $8, $1::uuid, " ORDER_HASH(
            "$9::text") ")"
                        " ON CONFLICT DO NOTHING RETURNING order_id),"
                        /* One clock reading for both timestamps (see product_repo_create). */
                        " now AS (SELECT clock_timestamp() AS at),"
                        " o AS (INSERT INTO orders (id, user_id, total_cents, currency, "
                        "created_at, updated_at)"
                        " SELECT $1::uuid, $2::uuid, $3::bigint, $4, at, at FROM now, k"
                        " RETURNING " ORDER_COLS ", created_at),"
                        " l AS (INSERT INTO order_lines (order_id, line_no, product_id, quantity, "
                        "unit_price_cents)"
                        " SELECT $1, n - 1, p, q, c"
                        " FROM unnest($5::uuid[], $6::integer[], $7::bigint[]) WITH ORDINALITY AS "
                        "l(p, q, c, n)"
                        " WHERE EXISTS (SELECT 1 FROM k)),"
                        " t AS (INSERT INTO order_timeline (order_id, seq, step, status, detail, "
                        "at)"
                        " SELECT $1, 1, 'order_created', 'PENDING', '', created_at FROM o)"
                        " SELECT * FROM o";
    const size_t n = o->n_lines;
    db_res_t *r = db_execf(tx, a, err, sql, 9, o->id, o->user_id, db_i64_param(a, o->total_cents),
                           o->currency,
                           order_repo_array(a, n, UUID_STR_LEN, order_repo_fmt_product, o->lines),
                           order_repo_array(a, n, 11, order_repo_fmt_quantity, o->lines),
                           order_repo_array(a, n, 20, order_repo_fmt_price, o->lines), key, canon);
    if (!r)
        return err->code;
    *claimed = db_res_rows(r) == 1;
    if (!*claimed)
        return 0;
    order_row_t stored;
    order_repo_row(r, 0, &stored);
    o->status = stored.status;
    o->cancel_reason = stored.cancel_reason;
    o->created_us = stored.created_us;
    o->updated_us = stored.updated_us;
    return 0;
}

int order_repo_lock(db_conn_t *tx, arena_t *a, const char *id, order_row_t *out, bool *found,
                    err_t *err)
{
    db_res_t *r =
        db_execf(tx, a, err, "SELECT " ORDER_COLS " FROM orders WHERE id = $1 FOR UPDATE", 1, id);
    if (!r)
        return err->code;
    *found = db_res_rows(r) == 1;
    if (*found)
        order_repo_row(r, 0, out);
    return 0;
}

int order_repo_transition(db_conn_t *tx, arena_t *a, const char *id, const char *from,
                          const char *to, const char *reason, order_row_t *out, bool *done,
                          err_t *err)
{
    /* The update and the order's lines in one statement: a row per line, the order's
     * columns repeated (lines never change after the order's insert). */
    static const char sql[] =
        "WITH u AS (UPDATE orders SET status = $3, cancel_reason = $4,"
        " updated_at = clock_timestamp()"
        " WHERE id = $1 AND status = $2 RETURNING " ORDER_COLS ", id AS oid)"
        " SELECT u.*, l.product_id::text, l.quantity, l.unit_price_cents"
        " FROM u LEFT JOIN order_lines l ON l.order_id = u.oid ORDER BY l.line_no";
    db_res_t *r = db_execf(tx, a, err, sql, 4, id, from, to, reason);
    if (!r)
        return err->code;
    int rows = db_res_rows(r);
    *done = rows > 0;
    if (!*done)
        return 0;
    order_repo_row(r, 0, out);
    out->n_lines = db_res_null(r, 0, 9) ? 0 : (size_t)rows;
    out->lines = out->n_lines ? arena_calloc(a, out->n_lines, sizeof(*out->lines)) : NULL;
    for (size_t i = 0; i < out->n_lines; i++)
        out->lines[i] = (order_line_t){.product_id = db_res_str(r, (int)i, 9),
                                       .quantity = (int32_t)db_res_i64(r, (int)i, 10),
                                       .unit_price_cents = db_res_i64(r, (int)i, 11)};
    return 0;
}

int order_repo_timeline_add(db_conn_t *tx, arena_t *a, const char *order_id,
                            const order_note_t *notes, size_t n, err_t *err)
{
    /* One row per (order, step): a step the order already has is skipped, and the
     * steps that are new take the next seq numbers in their order (row_number over
     * them alone), so seq stays dense. The caller's row lock makes NOT EXISTS exact;
     * order_timeline_step_key enforces it whatever a caller does. */
    static const char one[] = "INSERT INTO order_timeline (order_id, seq, step, status, detail)"
                              " SELECT o.id, coalesce((SELECT max(t.seq) FROM order_timeline t"
                              " WHERE t.order_id = o.id), 0) + 1, $2, o.status, $3"
                              " FROM orders o WHERE o.id = $1"
                              " ON CONFLICT (order_id, step) DO NOTHING";
    static const char two[] =
        "INSERT INTO order_timeline (order_id, seq, step, status, detail)"
        " SELECT o.id, coalesce((SELECT max(t.seq) FROM order_timeline t"
        " WHERE t.order_id = o.id), 0) + row_number() OVER (ORDER BY s.n), s.step, o.status,"
        " s.detail"
        " FROM orders o, (VALUES ($2, $3, 1), ($4, $5, 2)) AS s(step, detail, n)"
        " WHERE o.id = $1 AND NOT EXISTS (SELECT 1 FROM order_timeline t"
        " WHERE t.order_id = o.id AND t.step = s.step) ORDER BY s.n"
        " ON CONFLICT (order_id, step) DO NOTHING";
    if (n == 1)
        return db_execf_nowait(tx, a, err, one, 3, order_id, notes[0].step, notes[0].detail);
    if (n != 2)
        return err_set(err, ERR_INVALID, "timeline: 1 or 2 rows at a time, not %zu", n);
    return db_execf_nowait(tx, a, err, two, 5, order_id, notes[0].step, notes[0].detail,
                           notes[1].step, notes[1].detail);
}

int order_repo_sweep_claim(db_conn_t *tx, arena_t *a, int64_t timeout_ms, int limit,
                           const char ***ids, size_t *n, err_t *err)
{
    /* orders_pending_idx serves the scan; the age is measured on the database's
     * clock, the one created_at was taken from. */
    static const char sql[] =
        "SELECT id::text FROM orders WHERE status = 'PENDING'"
        " AND created_at < clock_timestamp() - $1::bigint * interval '1 millisecond'"
        " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED";
    db_res_t *r = db_execf(tx, a, err, sql, 2, db_i64_param(a, timeout_ms), db_i64_param(a, limit));
    if (!r)
        return err->code;
    *n = (size_t)db_res_rows(r);
    *ids = *n ? arena_calloc(a, *n, sizeof(**ids)) : NULL;
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = db_res_str(r, (int)i, 0);
    return 0;
}

int order_repo_idem_purge(db_pool_t *pool, arena_t *a, int64_t retention_ms, int limit, size_t *n,
                          err_t *err)
{
    /* idempotency_keys_created_at_idx serves the scan; SKIP LOCKED leaves a key that a
     * CreateOrder is reading or claiming (and another sweeper's batch) alone. */
    static const char sql[] =
        "DELETE FROM idempotency_keys WHERE (user_id, key) IN ("
        "SELECT user_id, key FROM idempotency_keys"
        " WHERE created_at < clock_timestamp() - $1::bigint * interval '1 millisecond'"
        " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1";
    db_res_t *r =
        db_pool_exec(pool, a, sql, 2,
                     (const char *[]){db_i64_param(a, retention_ms), db_i64_param(a, limit)}, err);
    if (!r)
        return err->code;
    *n = (size_t)db_res_rows(r);
    return 0;
}
