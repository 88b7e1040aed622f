/*
 * user_repo: the SQL of user-svc (user_repo.h).
 */
#include "user_repo.h"

#include <inttypes.h>
#include <string.h>

#include "common/uuid.h"

/* A user row as user_repo_user reads it (columns 0..4), from a relation named u.
 * created_at travels as integer microseconds: exact, and formatted once, in C. */
#define USER_COLS                                                                                  \
    "u.id::text, u.email, u.display_name, u.role,"                                                 \
    " (extract(epoch FROM u.created_at) * 1000000)::bigint"
#define USER_NCOLS 5

/* The profile columns (user_repo_profile), from a relation named p. */
#define PROFILE_COLS                                                                               \
    "p.phone, p.ship_line1, p.ship_line2, p.ship_city, p.ship_region, p.ship_postal_code,"         \
    " p.ship_country"

/* A ledger entry (user_repo_entry), as RETURNING or SELECT from ledger itself. */
#define ENTRY_COLS                                                                                 \
    "id::text, kind, amount_cents, currency, COALESCE(order_id::text, ''),"                        \
    " (extract(epoch FROM created_at) * 1000000)::bigint, seq"

#define PREFS_COLS "language, currency, marketing_opt_in"

/* What a statement about a user id that matches no row answers (db_pool_exec_one). */
#define USER_NOT_FOUND "user not found"

static void user_repo_user(const db_res_t *r, int i, user_row_t *out)
{
    *out = (user_row_t){
        .id = db_res_str(r, i, 0),
        .email = db_res_str(r, i, 1),
        .display_name = db_res_str(r, i, 2),
        .role = db_res_str(r, i, 3),
        .created_us = db_res_i64(r, i, 4),
    };
}

static void user_repo_profile(const db_res_t *r, int i, int col, user_profile_t *out)
{
    *out = (user_profile_t){
        .phone = db_res_str(r, i, col),
        .has_address = !db_res_null(r, i, col + 6),
        .address =
            {
                .line1 = db_res_str(r, i, col + 1),
                .line2 = db_res_str(r, i, col + 2),
                .city = db_res_str(r, i, col + 3),
                .region = db_res_str(r, i, col + 4),
                .postal_code = db_res_str(r, i, col + 5),
                .country = db_res_str(r, i, col + 6),
            },
    };
}

static void user_repo_entry(const db_res_t *r, int i, int col, user_entry_t *out)
{
    *out = (user_entry_t){
        .id = db_res_str(r, i, col),
        .kind = db_res_str(r, i, col + 1),
        .amount_cents = db_res_i64(r, i, col + 2),
        .currency = db_res_str(r, i, col + 3),
        .order_id = db_res_str(r, i, col + 4),
        .created_us = db_res_i64(r, i, col + 5),
        .seq = db_res_i64(r, i, col + 6),
    };
}

static void user_repo_prefs(const db_res_t *r, int i, user_prefs_t *out)
{
    *out = (user_prefs_t){
        .language = db_res_str(r, i, 0),
        .currency = db_res_str(r, i, 1),
        .marketing_opt_in = db_res_bool(r, i, 2),
    };
}

/* ---- accounts ---- */

/* Inserts a user and the rows every user has, in one statement: the parameters of
 * user_repo_insert_params. */
static const char user_repo_insert_sql[] =
    "WITH u AS (INSERT INTO users (id, email, password_hash, display_name, role)"
    " VALUES ($1, $2, $3, $4, $5) RETURNING *),"
    " p AS (INSERT INTO profiles (user_id) VALUES ($1)),"
    " f AS (INSERT INTO preferences (user_id) VALUES ($1)),"
    " w AS (INSERT INTO wallets (user_id) VALUES ($1))"
    " SELECT " USER_COLS " FROM u";

/* user_repo_insert_sql's parameters, for a new user with a fresh id. */
static const char *const *user_repo_insert_params(arena_t *a, const char *email, const char *hash,
                                                  const char *display_name, const char *role)
{
    char id[UUID_STR_LEN];
    uuid_new(id);
    const char **p = arena_calloc(a, 5, sizeof(*p));
    p[0] = arena_strdup(a, id);
    p[1] = email;
    p[2] = hash;
    p[3] = display_name;
    p[4] = role;
    return p;
}

int user_repo_create(db_pool_t *pool, arena_t *a, const char *email, const char *password_hash,
                     const char *display_name, const char *role, user_row_t *out, err_t *err)
{
    const char *const *params =
        user_repo_insert_params(a, email, password_hash, display_name, role);
    db_res_t *r = db_pool_exec(pool, a, user_repo_insert_sql, 5, params, err);
    if (!r)
        return err->code;
    user_repo_user(r, 0, out);
    return 0;
}

int user_repo_find_by_email(db_pool_t *pool, arena_t *a, const char *email, user_row_t *out,
                            const char **hash, err_t *err)
{
    static const char sql[] = "SELECT " USER_COLS ", u.password_hash FROM users u"
                              " WHERE lower(u.email COLLATE \"C\") = $1";
    db_res_t *r = db_pool_exec(pool, a, sql, 1, (const char *[]){email}, err);
    if (!r)
        return err->code;
    if (db_res_rows(r) == 0)
        return err_set_client(err, ERR_NOT_FOUND, "no user with that email");
    user_repo_user(r, 0, out);
    *hash = db_res_str(r, 0, USER_NCOLS);
    return 0;
}

typedef struct user_repo_admin {
    arena_t *a;
    const char *email, *hash, *display_name;
    user_row_t *out;
    bool created;
} user_repo_admin_t;

static int user_repo_admin_txn(db_conn_t *tx, void *ud, err_t *err)
{
    static const char promote[] =
        "UPDATE users u SET role = 'admin', password_hash = $2, updated_at = clock_timestamp()"
        " WHERE lower(u.email COLLATE \"C\") = lower($1 COLLATE \"C\") RETURNING " USER_COLS;
    user_repo_admin_t *x = ud;
    db_res_t *r = db_execf(tx, x->a, err, promote, 2, x->email, x->hash);
    if (!r)
        return err->code;
    x->created = db_res_rows(r) == 0;
    if (!x->created) {
        user_repo_user(r, 0, x->out);
        return 0;
    }
    const char *const *params =
        user_repo_insert_params(x->a, x->email, x->hash, x->display_name, "admin");
    if (!(r = db_exec(tx, x->a, user_repo_insert_sql, 5, params, err)))
        return err->code;
    user_repo_user(r, 0, x->out);
    return 0;
}

int user_repo_make_admin(db_pool_t *pool, arena_t *a, const char *email, const char *password_hash,
                         const char *display_name, user_row_t *out, bool *created, err_t *err)
{
    user_repo_admin_t x = {
        .a = a, .email = email, .hash = password_hash, .display_name = display_name, .out = out};
    if (db_txn(pool, user_repo_admin_txn, &x, err) != 0)
        return err->code;
    *created = x.created;
    return 0;
}

/* ---- profile and preferences ---- */

int user_repo_get(db_pool_t *pool, arena_t *a, const char *id, user_row_t *user,
                  user_profile_t *profile, err_t *err)
{
    static const char sql[] = "SELECT " USER_COLS ", " PROFILE_COLS
                              " FROM users u JOIN profiles p ON p.user_id = u.id WHERE u.id = $1";
    db_res_t *r = db_pool_exec_one(pool, a, USER_NOT_FOUND, sql, 1, (const char *[]){id}, err);
    if (!r)
        return err->code;
    user_repo_user(r, 0, user);
    user_repo_profile(r, 0, USER_NCOLS, profile);
    return 0;
}

int user_repo_update_profile(db_pool_t *pool, arena_t *a, const char *id,
                             const user_profile_patch_t *p, user_row_t *user,
                             user_profile_t *profile, err_t *err)
{
    /* One statement: both rows change together or not at all. NULL means "not in the
     * mask" for the NOT NULL columns; the address columns follow $4. */
    static const char sql[] =
        "WITH u AS (UPDATE users SET display_name = COALESCE($2, display_name),"
        " updated_at = clock_timestamp() WHERE id = $1 RETURNING *),"
        " p AS (UPDATE profiles SET phone = COALESCE($3, phone),"
        " ship_line1 = CASE WHEN $4::boolean THEN $5::text ELSE ship_line1 END,"
        " ship_line2 = CASE WHEN $4::boolean THEN $6::text ELSE ship_line2 END,"
        " ship_city = CASE WHEN $4::boolean THEN $7::text ELSE ship_city END,"
        " ship_region = CASE WHEN $4::boolean THEN $8::text ELSE ship_region END,"
        " ship_postal_code = CASE WHEN $4::boolean THEN $9::text ELSE ship_postal_code END,"
        " ship_country = CASE WHEN $4::boolean THEN $10::text ELSE ship_country END,"
        " updated_at = clock_timestamp() WHERE user_id = $1 RETURNING *)"
        " SELECT " USER_COLS ", " PROFILE_COLS " FROM u JOIN p ON p.user_id = u.id";
    bool addr = p->mask & USER_F_ADDRESS, has = addr && p->profile.has_address;
    const user_address_t *ad = &p->profile.address;
    const char *params[] = {
        id,
        p->mask & USER_F_DISPLAY_NAME ? p->display_name : NULL,
        p->mask & USER_F_PHONE ? p->profile.phone : NULL,
        addr ? "true" : "false",
        has ? ad->line1 : NULL,
        has ? ad->line2 : NULL,
        has ? ad->city : NULL,
        has ? ad->region : NULL,
        has ? ad->postal_code : NULL,
        has ? ad->country : NULL,
    };
    db_res_t *r = db_pool_exec_one(pool, a, USER_NOT_FOUND, sql, 10, params, err);
    if (!r)
        return err->code;
    user_repo_user(r, 0, user);
    user_repo_profile(r, 0, USER_NCOLS, profile);
    return 0;
}

int user_repo_get_prefs(db_pool_t *pool, arena_t *a, const char *id, user_prefs_t *out, err_t *err)
{
    static const char sql[] = "SELECT " PREFS_COLS " FROM preferences WHERE user_id = $1";
    db_res_t *r = db_pool_exec_one(pool, a, USER_NOT_FOUND, sql, 1, (const char *[]){id}, err);
    if (!r)
        return err->code;
    user_repo_prefs(r, 0, out);
    return 0;
}

int user_repo_update_prefs(db_pool_t *pool, arena_t *a, const char *id, const user_prefs_patch_t *p,
                           user_prefs_t *out, err_t *err)
{
    static const char sql[] = "UPDATE preferences SET language = COALESCE($2, language),"
                              " currency = COALESCE($3, currency),"
                              " marketing_opt_in = COALESCE($4::boolean, marketing_opt_in),"
                              " updated_at = clock_timestamp()"
                              " WHERE user_id = $1 RETURNING " PREFS_COLS;
    const char *params[] = {
        id,
        p->mask & USER_F_LANGUAGE ? p->prefs.language : NULL,
        p->mask & USER_F_CURRENCY ? p->prefs.currency : NULL,
        p->mask & USER_F_MARKETING ? (p->prefs.marketing_opt_in ? "true" : "false") : NULL,
    };
    db_res_t *r = db_pool_exec_one(pool, a, USER_NOT_FOUND, sql, 4, params, err);
    if (!r)
        return err->code;
    user_repo_prefs(r, 0, out);
    return 0;
}

/* ---- wallet ---- */

int user_repo_wallet(db_pool_t *pool, arena_t *a, const char *id, int limit, int64_t before,
                     user_wallet_t *out, err_t *err)
{
    /* One statement, so one snapshot: the page and the balance agree. A wallet without
     * entries (on this page) is one row with NULL entry columns. */
    static const char sql[] =
        "SELECT w.balance_cents, w.currency, l.* FROM wallets w"
        " LEFT JOIN LATERAL (SELECT " ENTRY_COLS " FROM ledger"
        " WHERE user_id = w.user_id AND ($2::bigint IS NULL OR seq < $2::bigint)"
        " ORDER BY seq DESC LIMIT $3) l ON true"
        " WHERE w.user_id = $1 ORDER BY l.seq DESC";
    const char *params[] = {id, before > 0 ? db_i64_param(a, before) : NULL,
                            db_i64_param(a, limit)};
    db_res_t *r = db_pool_exec_one(pool, a, USER_NOT_FOUND, sql, 3, params, err);
    if (!r)
        return err->code;
    int rows = db_res_rows(r);
    *out = (user_wallet_t){.balance_cents = db_res_i64(r, 0, 0), .currency = db_res_str(r, 0, 1)};
    if (db_res_null(r, 0, 2))
        return 0;
    out->entries = arena_calloc(a, (size_t)rows, sizeof(*out->entries));
    for (int i = 0; i < rows; i++)
        user_repo_entry(r, i, 2, &out->entries[out->n_entries++]);
    return 0;
}

typedef struct user_repo_dep {
    arena_t *a;
    const char *id, *currency, *key;
    int64_t amount;
    user_deposit_t *out;
} user_repo_dep_t;

/* The replay of a deposit key: the original entry if the request was the same. */
static int user_repo_deposit_replay(db_conn_t *tx, user_repo_dep_t *d, err_t *err)
{
    static const char sql[] = "SELECT " ENTRY_COLS " FROM ledger"
                              " WHERE user_id = $1 AND idempotency_key = $2 AND kind = 'deposit'";
    db_res_t *r = db_execf(tx, d->a, err, sql, 2, d->id, d->key);
    if (!r)
        return err->code;
    if (db_res_rows(r) == 0) /* the conflicting row vanished: ledger rows never do */
        return err_set_client(err, ERR_ABORTED, "deposit key conflict without a row, retry");
    user_repo_entry(r, 0, 0, &d->out->entry);
    if (d->out->entry.amount_cents != d->amount || strcmp(d->out->entry.currency, d->currency) != 0)
        return err_set_client(err, ERR_CONFLICT,
                              "idempotency key already used for another deposit");
    d->out->replayed = true;
    return 0;
}

static int user_repo_deposit_txn(db_conn_t *tx, void *ud, err_t *err)
{
    /* The wallet row is locked first: deposits of one user serialize, so a repeat of
     * a key waits for the first to commit and then finds its entry. */
    static const char lock[] =
        "SELECT balance_cents, currency FROM wallets WHERE user_id = $1 FOR UPDATE";
    static const char insert[] =
        "INSERT INTO ledger (id, user_id, kind, amount_cents, currency, idempotency_key)"
        " VALUES ($1, $2, 'deposit', $3::bigint, $4, $5)"
        " ON CONFLICT (user_id, idempotency_key) WHERE kind = 'deposit' DO NOTHING"
        " RETURNING " ENTRY_COLS;
    static const char credit[] =
        "UPDATE wallets SET balance_cents = balance_cents + $2::bigint,"
        " updated_at = clock_timestamp() WHERE user_id = $1 RETURNING balance_cents";
    user_repo_dep_t *d = ud;
    *d->out = (user_deposit_t){0};
    db_res_t *r = db_execf(tx, d->a, err, lock, 1, d->id);
    if (!r)
        return err->code;
    if (db_res_rows(r) == 0)
        return err_set_client(err, ERR_NOT_FOUND, "user not found");
    d->out->balance_cents = db_res_i64(r, 0, 0);
    d->out->currency = db_res_str(r, 0, 1);
    char entry_id[UUID_STR_LEN];
    uuid_new(entry_id);
    const char *amount = db_i64_param(d->a, d->amount);
    if (!(r = db_execf(tx, d->a, err, insert, 5, entry_id, d->id, amount, d->currency, d->key)))
        return err->code;
    if (db_res_rows(r) == 0)
        return user_repo_deposit_replay(tx, d, err);
    user_repo_entry(r, 0, 0, &d->out->entry);
    if (!(r = db_execf(tx, d->a, err, credit, 2, d->id, amount)))
        return err->code;
    d->out->balance_cents = db_res_i64(r, 0, 0);
    return 0;
}

int user_repo_deposit(db_pool_t *pool, arena_t *a, const char *id, int64_t amount_cents,
                      const char *currency, const char *key, user_deposit_t *out, err_t *err)
{
    user_repo_dep_t d = {
        .a = a, .id = id, .currency = currency, .key = key, .amount = amount_cents, .out = out};
    return db_txn(pool, user_repo_deposit_txn, &d, err);
}

/* ---- saga ---- */

/* NULL for SQL NULL (db_res_str says ""). */
static const char *user_repo_opt(const db_res_t *r, int i, int col)
{
    return db_res_null(r, i, col) ? NULL : db_res_str(r, i, col);
}

int user_repo_order_get(db_conn_t *tx, arena_t *a, const char *order_id, user_order_t *out,
                        err_t *err)
{
    static const char sql[] = "SELECT state, user_id::text, amount_cents, currency,"
                              " payment_entry_id::text, refund_entry_id::text"
                              " FROM order_payments WHERE order_id = $1";
    db_res_t *r = db_execf(tx, a, err, sql, 1, order_id);
    if (!r)
        return err->code;
    *out = (user_order_t){.order_id = order_id, .state = "", .currency = ""};
    if (db_res_rows(r) == 0)
        return 0;
    out->state = db_res_str(r, 0, 0);
    out->user_id = user_repo_opt(r, 0, 1);
    out->amount_cents = db_res_i64(r, 0, 2);
    out->currency = db_res_str(r, 0, 3);
    out->payment_entry_id = user_repo_opt(r, 0, 4);
    out->refund_entry_id = user_repo_opt(r, 0, 5);
    return 0;
}

int user_repo_order_set(db_conn_t *tx, arena_t *a, const user_order_t *o, err_t *err)
{
    static const char sql[] =
        "INSERT INTO order_payments (order_id, user_id, state, amount_cents, currency,"
        " payment_entry_id, refund_entry_id) VALUES ($1, $2, $3, $4::bigint, $5, $6, $7)"
        " ON CONFLICT (order_id) DO UPDATE SET user_id = EXCLUDED.user_id,"
        " state = EXCLUDED.state, amount_cents = EXCLUDED.amount_cents,"
        " currency = EXCLUDED.currency, payment_entry_id = EXCLUDED.payment_entry_id,"
        " refund_entry_id = EXCLUDED.refund_entry_id, updated_at = clock_timestamp()";
    return db_execf_nowait(tx, a, err, sql, 7, o->order_id, o->user_id, o->state,
                           db_i64_param(a, o->amount_cents), o->currency, o->payment_entry_id,
                           o->refund_entry_id);
}

int user_repo_charge(db_conn_t *tx, arena_t *a, const char *order_id, const char *user_id,
                     int64_t amount_cents, user_charge_t *outcome, user_entry_t *entry, err_t *err)
{
    /* The condition and the debit are one update: concurrent charges of one wallet
     * queue on its row and each re-checks the balance it finally sees. */
    static const char debit[] =
        "WITH w AS (UPDATE wallets SET balance_cents = balance_cents - $3::bigint,"
        " updated_at = clock_timestamp()"
        " WHERE user_id = $2 AND balance_cents >= $3::bigint RETURNING user_id, currency)"
        " INSERT INTO ledger (id, user_id, kind, amount_cents, currency, order_id)"
        " SELECT $4, user_id, 'payment', -$3::bigint, currency, $1 FROM w RETURNING " ENTRY_COLS;
    static const char exists[] = "SELECT 1 FROM wallets WHERE user_id = $1";
    char entry_id[UUID_STR_LEN];
    uuid_new(entry_id);
    db_res_t *r =
        db_execf(tx, a, err, debit, 4, order_id, user_id, db_i64_param(a, amount_cents), entry_id);
    if (!r)
        return err->code;
    if (db_res_rows(r) == 1) {
        user_repo_entry(r, 0, 0, entry);
        *outcome = USER_CHARGE_OK;
        return 0;
    }
    if (!(r = db_execf(tx, a, err, exists, 1, user_id)))
        return err->code;
    *outcome = db_res_rows(r) ? USER_CHARGE_NO_FUNDS : USER_CHARGE_NO_WALLET;
    return 0;
}

int user_repo_refund(db_conn_t *tx, arena_t *a, const char *order_id, const char *user_id,
                     int64_t amount_cents, user_entry_t *entry, err_t *err)
{
    static const char sql[] =
        "WITH w AS (UPDATE wallets SET balance_cents = balance_cents + $3::bigint,"
        " updated_at = clock_timestamp() WHERE user_id = $2 RETURNING user_id, currency)"
        " INSERT INTO ledger (id, user_id, kind, amount_cents, currency, order_id)"
        " SELECT $4, user_id, 'refund', $3::bigint, currency, $1 FROM w RETURNING " ENTRY_COLS;
    char entry_id[UUID_STR_LEN];
    uuid_new(entry_id);
    db_res_t *r =
        db_execf(tx, a, err, sql, 4, order_id, user_id, db_i64_param(a, amount_cents), entry_id);
    if (!r)
        return err->code;
    if (db_res_rows(r) == 0)
        return err_set(err, ERR_NOT_FOUND, "wallet of user %s not found", user_id);
    user_repo_entry(r, 0, 0, entry);
    return 0;
}
