/*
 * user_repo: every SQL statement of user-svc (migrations/user).
 *
 * Account, profile, preference and wallet functions take the pool and run one
 * statement in autocommit, or one db_txn where several statements must agree. Saga
 * functions take the handler's transaction. Results are borrowed from or copied into
 * the arena `a`. Ids passed in must be lower-case UUIDs (uuid_valid): callers decide
 * what a malformed id means.
 *
 * Money moves only through conditional updates of wallets, each in the transaction
 * of the ledger row that explains it, so balance_cents = Σ ledger.amount_cents of the
 * user at every commit and never goes below 0.
 *
 * Return codes: 0; ERR_NOT_FOUND (no such user); ERR_CONFLICT (email taken: the
 * message names USER_EMAIL_KEY; a deposit key reused for another request); otherwise
 * the translated database error (db.h). Thread-safe (a tx is used by one thread).
 */
#ifndef USER_REPO_H
#define USER_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/db.h"
#include "common/err.h"

/* The unique index on lower(users.email). */
#define USER_EMAIL_KEY "users_email_canon_key"

typedef struct user_row {
    const char *id;
    const char *email;
    const char *display_name;
    const char *role; /* "customer" | "admin" */
    int64_t created_us;
} user_row_t;

typedef struct user_address {
    const char *line1;
    const char *line2;
    const char *city;
    const char *region;
    const char *postal_code;
    const char *country;
} user_address_t;

typedef struct user_profile {
    const char *phone; /* "" when none */
    bool has_address;
    user_address_t address;
} user_profile_t;

typedef struct user_prefs {
    const char *language;
    const char *currency;
    bool marketing_opt_in;
} user_prefs_t;

/* Which fields a profile or preferences patch writes. */
enum {
    USER_F_DISPLAY_NAME = 1 << 0,
    USER_F_PHONE = 1 << 1,
    USER_F_ADDRESS = 1 << 2,
    USER_F_LANGUAGE = 1 << 3,
    USER_F_CURRENCY = 1 << 4,
    USER_F_MARKETING = 1 << 5,
};

/* Validated values; only the fields in `mask` are read. */
typedef struct user_profile_patch {
    unsigned mask;
    const char *display_name;
    user_profile_t profile; /* has_address false with USER_F_ADDRESS clears it */
} user_profile_patch_t;

typedef struct user_prefs_patch {
    unsigned mask;
    user_prefs_t prefs;
} user_prefs_patch_t;

typedef struct user_entry {
    const char *id;
    const char *kind; /* "deposit" | "payment" | "refund" */
    int64_t amount_cents;
    const char *currency;
    const char *order_id; /* "" for deposits */
    int64_t created_us;
    int64_t seq; /* the page key: larger is newer */
} user_entry_t;

typedef struct user_wallet {
    int64_t balance_cents;
    const char *currency;
    user_entry_t *entries; /* newest first */
    size_t n_entries;
} user_wallet_t;

typedef struct user_deposit {
    int64_t balance_cents; /* after the deposit (after nothing, for a replay) */
    const char *currency;
    user_entry_t entry;
    bool replayed;
} user_deposit_t;

/* ---- accounts ---- */

/* user_repo_create: inserts a user with a fresh UUIDv7 and `role`, together with its
 * profile, default preferences and an empty USD wallet (one statement). */
int user_repo_create(db_pool_t *pool, arena_t *a, const char *email, const char *password_hash,
                     const char *display_name, const char *role, user_row_t *out, err_t *err);

/* user_repo_find_by_email: the user whose email's canonical form is `email`, which
 * must be canonical already (text_email_canon), with its password hash (*hash, in
 * `a`). */
int user_repo_find_by_email(db_pool_t *pool, arena_t *a, const char *email, user_row_t *out,
                            const char **hash, err_t *err);

/* user_repo_make_admin: the create-admin command. Creates an admin (as
 * user_repo_create) or, when the email is taken case-insensitively, gives that
 * account the admin role and the new password hash. *created tells which. */
int user_repo_make_admin(db_pool_t *pool, arena_t *a, const char *email, const char *password_hash,
                         const char *display_name, user_row_t *out, bool *created, err_t *err);

/* ---- profile and preferences ---- */

/* user_repo_get: the user and its profile. */
int user_repo_get(db_pool_t *pool, arena_t *a, const char *id, user_row_t *user,
                  user_profile_t *profile, err_t *err);

/* user_repo_update_profile: writes the fields in p->mask (display_name on users,
 * the rest on profiles, in one statement); *user and *profile are the result. */
int user_repo_update_profile(db_pool_t *pool, arena_t *a, const char *id,
                             const user_profile_patch_t *p, user_row_t *user,
                             user_profile_t *profile, err_t *err);

/* user_repo_get_prefs / user_repo_update_prefs: the preferences (after writing the
 * fields in p->mask). */
int user_repo_get_prefs(db_pool_t *pool, arena_t *a, const char *id, user_prefs_t *out, err_t *err);
int user_repo_update_prefs(db_pool_t *pool, arena_t *a, const char *id, const user_prefs_patch_t *p,
                           user_prefs_t *out, err_t *err);

/* ---- wallet ---- */

/* user_repo_wallet: the balance and at most `limit` ledger entries, newest first,
 * older than seq `before` (0: from the newest), read from one snapshot so the page
 * agrees with the balance. */
int user_repo_wallet(db_pool_t *pool, arena_t *a, const char *id, int limit, int64_t before,
                     user_wallet_t *out, err_t *err);

/* user_repo_deposit: credits amount_cents (> 0) with a deposit entry, idempotently
 * per (user, key): a key already used with the same amount and currency answers the
 * original entry with replayed = true and moves nothing; with another amount or
 * currency it is ERR_CONFLICT. */
int user_repo_deposit(db_pool_t *pool, arena_t *a, const char *id, int64_t amount_cents,
                      const char *currency, const char *key, user_deposit_t *out, err_t *err);

/* ---- saga (inside the handler's transaction) ---- */

/* What user-svc did for one order (order_payments); state "" when never seen. */
typedef struct user_order {
    const char *order_id;
    const char *state;   /* "CHARGED" | "FAILED" | "REFUNDED" | "TOMBSTONE" | "" */
    const char *user_id; /* NULL when unknown */
    int64_t amount_cents;
    const char *currency;
    const char *payment_entry_id; /* NULL unless charged */
    const char *refund_entry_id;  /* NULL unless refunded */
} user_order_t;

/* user_repo_order_get: the order's row into *out (state "" if none). */
int user_repo_order_get(db_conn_t *tx, arena_t *a, const char *order_id, user_order_t *out,
                        err_t *err);

/* user_repo_order_set: inserts or replaces the order's row with *o. */
int user_repo_order_set(db_conn_t *tx, arena_t *a, const user_order_t *o, err_t *err);

/* The outcome of a charge. */
typedef enum {
    USER_CHARGE_OK,        /* debited; *entry is the payment */
    USER_CHARGE_NO_FUNDS,  /* balance below the amount: nothing moved */
    USER_CHARGE_NO_WALLET, /* no such user: nothing moved */
} user_charge_t;

/* user_repo_charge: debits amount_cents (≥ 0) from the user's wallet if the balance
 * covers it (one conditional update) and writes the payment entry for the order. */
int user_repo_charge(db_conn_t *tx, arena_t *a, const char *order_id, const char *user_id,
                     int64_t amount_cents, user_charge_t *outcome, user_entry_t *entry, err_t *err);

/* user_repo_refund: credits amount_cents back to the user with the refund entry of
 * the order. ERR_NOT_FOUND if the wallet is gone. */
int user_repo_refund(db_conn_t *tx, arena_t *a, const char *order_id, const char *user_id,
                     int64_t amount_cents, user_entry_t *entry, err_t *err);

#endif
