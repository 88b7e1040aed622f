/*
 * user_rpc: shop.user.v1.UserService (proto/shop/user/v1/user_service.proto, whose
 * comments list the status codes of every method).
 *
 * Each handler: who may call → validate every field (all violations at once, per
 * field) → whose user it is → one repository call → answer. Methods naming a user
 * need x-user-id (else UNAUTHENTICATED) and serve the caller's own user, or any user
 * for x-user-role "admin"; another user's id, a malformed id and an unknown id all
 * answer the same NOT_FOUND, so ids cannot be probed. CreateUser and
 * VerifyCredentials are anonymous (the gateway calls them before there is a user).
 *
 * Lengths are counted in characters (Unicode code points of well-formed UTF-8), not
 * bytes, as the contract states them in characters. Passwords are taken byte for
 * byte (no Unicode normalization): what a user types on one device must be what it
 * types on another. Passwords and hashes never appear in a log line or a message.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/page_token.h"
#include "common/rpc.h"
#include "common/svc.h"
#include "common/text.h"
#include "common/uuid.h"
#include "shop/user/v1/user_service.pb-c.h"
#include "user.h"
#include "user_repo.h"

#define USER_EMAIL_MAX       254
#define USER_EMAIL_LOCAL_MAX 64
#define USER_PASSWORD_MIN    8
#define USER_PASSWORD_MAX    128
#define USER_NAME_MAX        100
#define USER_LINE_MAX        200
#define USER_CITY_MAX        100
#define USER_POSTAL_MAX      20
#define USER_DEPOSIT_MAX     INT64_C(100000000)
#define USER_LIMIT_DEFAULT   20
#define USER_LIMIT_MAX       100

typedef Shop__User__V1__UserService_Service user_service_t;

static db_pool_t *user_rpc_pool(rpc_call_t *call)
{
    return svc_pool(rpc_call_ctx(call));
}

static user_password_t *user_rpc_passwords(rpc_call_t *call)
{
    const user_ctx_t *ctx = svc_user(rpc_call_ctx(call));
    return ctx->passwords;
}

/* USER_RPC(get_thing, GetThing, GET_THING) { body }: user_rpc_get_thing, the handler
 * of UserService/GetThing (rpc.h RPC_METHOD). */
#define USER_RPC(name, Name, NAME)                                                                 \
    RPC_METHOD(user_rpc_, user_service_t, Shop__User__V1__, SHOP__USER__V1__, name, Name, NAME)

/* ---- who calls ---- */

/* Methods naming a user: UNAUTHENTICATED without a well-formed x-user-id. */
static int user_rpc_authn(rpc_call_t *call, err_t *err)
{
    rpc_caller_t who = {0};
    return rpc_call_caller(call, RPC_CALLER_UUID_ID, &who, err);
}

/* The user the call may address, lower-case into *id: the caller's own, or any for
 * an admin. NOT_FOUND otherwise, worded as for an unknown user. */
static int user_rpc_owner(rpc_call_t *call, const char *user_id, const char **id, err_t *err)
{
    const char *caller = rpc_call_user_id(call);
    if (!uuid_valid(user_id) || !(rpc_call_is_admin(call) || strcasecmp(user_id, caller) == 0))
        return err_set_client(err, ERR_NOT_FOUND, "user not found");
    *id = text_ascii_lower(rpc_call_arena(call), user_id);
    return 0;
}

/* The end of the opening of a method on one user, after its caller and field
 * checks: the user it may address (user_rpc_owner), then time left. */
static int user_rpc_open(rpc_call_t *call, const char *user_id, const char **id, err_t *err)
{
    if (user_rpc_owner(call, user_id, id, err) != 0)
        return err->code;
    return rpc_call_check_deadline(call, err);
}

/* ---- text ---- */

/* A copy of s without surrounding ASCII blanks. */
static const char *user_rpc_trim(arena_t *a, const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return arena_strndup(a, s, n);
}

/* ---- validation shared with the create-admin command ---- */

/* One "@" between a non-empty local part (≤ 64 bytes) and a domain of non-empty
 * dot-separated labels; no blanks anywhere. */
static bool user_rpc_email_shape(const char *e)
{
    const char *at = strchr(e, '@');
    if (!at || at == e || at - e > USER_EMAIL_LOCAL_MAX || strchr(at + 1, '@'))
        return false;
    const char *d = at + 1;
    size_t n = strlen(d);
    if (n == 0 || d[0] == '.' || d[n - 1] == '.' || strstr(d, ".."))
        return false;
    for (const char *p = e; *p; p++)
        if (isspace((unsigned char)*p))
            return false;
    return true;
}

int user_rpc_check_email(arena_t *a, const char *email, const char **out, err_t *err)
{
    const char *t = user_rpc_trim(a, email);
    long n = text_utf8_len(t, TEXT_NO_CONTROLS);
    if (n < 3 || n > USER_EMAIL_MAX || !user_rpc_email_shape(t))
        return err_field_add(err, "email",
                             "must be an email address: one @, no spaces, at most 254 characters");
    *out = t;
    return 0;
}

int user_rpc_check_password(const char *password, err_t *err)
{
    long n = text_utf8_len(password, TEXT_ALLOW_CONTROLS);
    if (n < 0)
        return err_field_add(err, "password", "must be utf-8 text");
    if (n < USER_PASSWORD_MIN || n > USER_PASSWORD_MAX)
        return err_field_add(err, "password", "must be 8..128 characters");
    return 0;
}

int user_rpc_check_display_name(arena_t *a, const char *name, const char **out, err_t *err)
{
    const char *t = user_rpc_trim(a, name);
    if (text_check_chars("display_name", t, 1, USER_NAME_MAX, err) != 0)
        return err->code;
    *out = t;
    return 0;
}

/* E.164: "+", a non-zero digit, then 1..14 digits. */
static void user_rpc_check_phone(const char *phone, err_t *err)
{
    size_t n = strlen(phone);
    bool ok = n >= 3 && n <= 16 && phone[0] == '+' && phone[1] >= '1' && phone[1] <= '9';
    for (size_t i = 2; ok && i < n; i++)
        ok = isdigit((unsigned char)phone[i]);
    if (!ok)
        err_field_add(err, "phone", "must be an e.164 number such as +14155550100, or empty");
}

static void user_rpc_check_address(const Shop__User__V1__Address *ad, err_t *err)
{
    text_check_chars("shipping_address.line1", ad->line1, 1, USER_LINE_MAX, err);
    text_check_chars("shipping_address.line2", ad->line2, 0, USER_LINE_MAX, err);
    text_check_chars("shipping_address.city", ad->city, 1, USER_CITY_MAX, err);
    text_check_chars("shipping_address.region", ad->region, 0, USER_CITY_MAX, err);
    text_check_chars("shipping_address.postal_code", ad->postal_code, 0, USER_POSTAL_MAX, err);
    const char *c = ad->country;
    if (strlen(c) != 2 || !isupper((unsigned char)c[0]) || !isupper((unsigned char)c[1]))
        err_field_add(err, "shipping_address.country",
                      "must be an iso 3166-1 alpha-2 code in upper case such as US");
}

/* Checks the characters of one subtag: `n` letters (alpha) or digits. */
static bool user_rpc_subtag(const char *s, size_t n, bool alpha)
{
    for (size_t i = 0; i < n; i++)
        if (alpha ? !isalpha((unsigned char)s[i]) : !isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* A BCP 47 tag of the shape language[-Script][-REGION] ("en", "en-US", "zh-Hant-TW",
 * "es-419"), in canonical case, or NULL. Tags compare case-insensitively, so
 * "EN-us" is accepted as "en-US". */
static const char *user_rpc_language(arena_t *a, const char *tag)
{
    size_t len = strlen(tag);
    if (len < 2 || len > 12)
        return NULL;
    char *out = arena_strdup(a, tag);
    char *p = out;
    size_t n = strcspn(p, "-");
    if (n < 2 || n > 3 || !user_rpc_subtag(p, n, true))
        return NULL;
    for (size_t i = 0; i < n; i++)
        p[i] = (char)tolower((unsigned char)p[i]);
    p += n;
    bool script_ok = true, region_ok = true;
    while (*p == '-') {
        p++;
        n = strcspn(p, "-");
        if (n == 4 && script_ok && region_ok && user_rpc_subtag(p, 4, true)) {
            p[0] = (char)toupper((unsigned char)p[0]);
            for (size_t i = 1; i < 4; i++)
                p[i] = (char)tolower((unsigned char)p[i]);
            script_ok = false;
        } else if (region_ok && ((n == 2 && user_rpc_subtag(p, 2, true)) ||
                                 (n == 3 && user_rpc_subtag(p, 3, false)))) {
            for (size_t i = 0; i < n; i++)
                p[i] = (char)toupper((unsigned char)p[i]);
            script_ok = region_ok = false;
        } else {
            return NULL;
        }
        p += n;
    }
    return *p ? NULL : out;
}

/* ---- page tokens ----
 * A token (page_token.h) holds the seq of the last entry of the previous page, for
 * the wallet it was issued for (the scope is its user id). */

#define USER_TOKEN_KIND "user.GetWallet"

/* The token after the entry `seq` of user_id's wallet; NULL if seq is out of bounds. */
static char *user_rpc_token(rpc_call_t *call, const char *user_id, int64_t seq)
{
    page_cursor_t c = {.pos = seq};
    return page_token_encode(svc_page_key(rpc_call_ctx(call)), rpc_call_arena(call),
                             USER_TOKEN_KIND, user_id, &c);
}

/* The seq a token stands for, or 0 with a violation on page_token. */
static int64_t user_rpc_parse_token(rpc_call_t *call, const char *user_id, const char *token,
                                    err_t *err)
{
    page_cursor_t c;
    if (page_token_field(svc_page_key(rpc_call_ctx(call)), USER_TOKEN_KIND, user_id, token,
                         "user_id", PAGE_CURSOR_SEQ, &c, err) != 0)
        return 0;
    return c.pos;
}

/* ---- answers ---- */

static Shop__User__V1__User *user_rpc_user(arena_t *a, const user_row_t *r)
{
    Shop__User__V1__User *u = rpc_msg_new(a, &shop__user__v1__user__descriptor);
    u->id = (char *)r->id;
    u->email = (char *)r->email;
    u->display_name = (char *)r->display_name;
    u->role = strcmp(r->role, "admin") == 0 ? SHOP__USER__V1__ROLE__ROLE_ADMIN
                                            : SHOP__USER__V1__ROLE__ROLE_CUSTOMER;
    u->created_at = clock_rfc3339_in(a, r->created_us);
    return u;
}

static Shop__User__V1__Profile *user_rpc_profile(arena_t *a, const user_row_t *u,
                                                 const user_profile_t *p)
{
    Shop__User__V1__Profile *out = rpc_msg_new(a, &shop__user__v1__profile__descriptor);
    out->display_name = (char *)u->display_name;
    out->phone = (char *)p->phone;
    if (p->has_address) {
        Shop__User__V1__Address *ad = rpc_msg_new(a, &shop__user__v1__address__descriptor);
        ad->line1 = (char *)p->address.line1;
        ad->line2 = (char *)p->address.line2;
        ad->city = (char *)p->address.city;
        ad->region = (char *)p->address.region;
        ad->postal_code = (char *)p->address.postal_code;
        ad->country = (char *)p->address.country;
        out->shipping_address = ad;
    }
    return out;
}

static Shop__User__V1__Preferences *user_rpc_prefs(arena_t *a, const user_prefs_t *p)
{
    Shop__User__V1__Preferences *out = rpc_msg_new(a, &shop__user__v1__preferences__descriptor);
    out->language = (char *)p->language;
    out->currency = (char *)p->currency;
    out->marketing_opt_in = p->marketing_opt_in;
    return out;
}

/* A user_entry_t as the LedgerEntry message (an rpc_msg_array builder). */
static void *user_rpc_entry(arena_t *a, const void *row)
{
    const user_entry_t *e = row;
    Shop__User__V1__LedgerEntry *out = rpc_msg_new(a, &shop__user__v1__ledger_entry__descriptor);
    out->id = (char *)e->id;
    out->kind = strcmp(e->kind, "deposit") == 0
                    ? SHOP__USER__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_DEPOSIT
                : strcmp(e->kind, "payment") == 0
                    ? SHOP__USER__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_PAYMENT
                    : SHOP__USER__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_REFUND;
    out->amount_cents = e->amount_cents;
    out->currency = (char *)e->currency;
    out->order_id = (char *)e->order_id;
    out->created_at = clock_rfc3339_in(a, e->created_us);
    return out;
}

/* ---- accounts ---- */

/* A taken email is ALREADY_EXISTS with the field named. Returns err->code. */
static int user_rpc_email_taken(err_t *err)
{
    return rpc_conflict_field(err, db_err_constraint(err, USER_EMAIL_KEY),
                              "email already registered", "email", "is already registered");
}

USER_RPC(create_user, CreateUser, CREATE_USER)
{
    const char *email = NULL, *name = NULL;
    char hash[USER_PASSWORD_HASH_MAX];
    user_row_t row;
    user_rpc_check_email(a, req->email, &email, err);
    user_rpc_check_password(req->password, err);
    user_rpc_check_display_name(a, req->display_name, &name, err);
    if (err->code != 0 || rpc_call_check_deadline(call, err) != 0 ||
        user_password_hash(user_rpc_passwords(call), req->password, rpc_call_remaining_ms(call),
                           hash, err) != 0 ||
        user_repo_create(user_rpc_pool(call), a, email, hash, name, "customer", &row, err) != 0) {
        explicit_bzero(hash, sizeof(hash));
        return user_rpc_email_taken(err);
    }
    explicit_bzero(hash, sizeof(hash));
    LOG_INFO("user created", LOG_STR("user_id", row.id));
    resp->user = user_rpc_user(a, &row);
    return 0;
}

/* Bounds what VerifyCredentials hashes; says nothing about any account. */
static int user_rpc_check_login(const char *email, const char *password, err_t *err)
{
    long email_len = text_utf8_len(email, TEXT_ALLOW_CONTROLS);
    long password_len = text_utf8_len(password, TEXT_ALLOW_CONTROLS);
    if (email_len < 1 || email_len > USER_EMAIL_MAX)
        err_field_add(err, "email", "must be 1..254 characters of utf-8 text");
    if (password_len < 1 || password_len > USER_PASSWORD_MAX)
        err_field_add(err, "password", "must be 1..128 characters of utf-8 text");
    return err->code;
}

USER_RPC(verify_credentials, VerifyCredentials, VERIFY_CREDENTIALS)
{
    user_row_t row;
    const char *hash = NULL, *email = text_email_canon(a, req->email);
    if (user_rpc_check_login(email, req->password, err) != 0 ||
        rpc_call_check_deadline(call, err) != 0)
        return err->code;
    /* Known or not, exactly one argon2id verification runs: an unknown email is
     * checked against the dummy hash, and both failures read the same. */
    int rc = user_repo_find_by_email(user_rpc_pool(call), a, email, &row, &hash, err);
    if (rc != 0 && rc != ERR_NOT_FOUND)
        return err->code;
    err_clear(err);
    if (user_password_verify(user_rpc_passwords(call), rc == 0 ? hash : NULL, req->password,
                             rpc_call_remaining_ms(call), err) != 0)
        return err->code;
    LOG_INFO("credentials verified", LOG_STR("user_id", row.id));
    resp->user = user_rpc_user(a, &row);
    return 0;
}

/* ---- profile ---- */

USER_RPC(get_user, GetUser, GET_USER)
{
    const char *id;
    user_row_t user;
    user_profile_t profile;
    if (user_rpc_authn(call, err) != 0 || user_rpc_open(call, req->user_id, &id, err) != 0 ||
        user_repo_get(user_rpc_pool(call), a, id, &user, &profile, err) != 0)
        return err->code;
    resp->user = user_rpc_user(a, &user);
    resp->profile = user_rpc_profile(a, &user, &profile);
    return 0;
}

/* The patch named by update_mask; field violations for the mask and the values. */
static int user_rpc_profile_patch(arena_t *a, const Shop__User__V1__UpdateProfileRequest *req,
                                  user_profile_patch_t *p, err_t *err)
{
    static const text_mask_name_t names[] = {{"display_name", USER_F_DISPLAY_NAME},
                                             {"phone", USER_F_PHONE},
                                             {"shipping_address", USER_F_ADDRESS}};
    *p = (user_profile_patch_t){0};
    p->mask = text_mask_bits(req->update_mask, req->n_update_mask, names, 3, err);
    if (p->mask & USER_F_DISPLAY_NAME)
        user_rpc_check_display_name(a, req->display_name, &p->display_name, err);
    if ((p->mask & USER_F_PHONE) && req->phone[0])
        user_rpc_check_phone(req->phone, err);
    p->profile.phone = req->phone;
    const Shop__User__V1__Address *ad = req->shipping_address;
    if ((p->mask & USER_F_ADDRESS) && ad) {
        user_rpc_check_address(ad, err);
        p->profile.has_address = true;
        p->profile.address = (user_address_t){.line1 = ad->line1,
                                              .line2 = ad->line2,
                                              .city = ad->city,
                                              .region = ad->region,
                                              .postal_code = ad->postal_code,
                                              .country = ad->country};
    }
    return err->code;
}

USER_RPC(update_profile, UpdateProfile, UPDATE_PROFILE)
{
    const char *id;
    user_profile_patch_t patch;
    user_row_t user;
    user_profile_t profile;
    if (user_rpc_authn(call, err) != 0 || user_rpc_profile_patch(a, req, &patch, err) != 0 ||
        user_rpc_open(call, req->user_id, &id, err) != 0 ||
        user_repo_update_profile(user_rpc_pool(call), a, id, &patch, &user, &profile, err) != 0)
        return err->code;
    LOG_INFO("profile updated", LOG_STR("user_id", id), LOG_INT("fields", patch.mask));
    resp->user = user_rpc_user(a, &user);
    resp->profile = user_rpc_profile(a, &user, &profile);
    return 0;
}

/* ---- preferences ---- */

USER_RPC(get_preferences, GetPreferences, GET_PREFERENCES)
{
    const char *id;
    user_prefs_t prefs;
    if (user_rpc_authn(call, err) != 0 || user_rpc_open(call, req->user_id, &id, err) != 0 ||
        user_repo_get_prefs(user_rpc_pool(call), a, id, &prefs, err) != 0)
        return err->code;
    resp->preferences = user_rpc_prefs(a, &prefs);
    return 0;
}

static int user_rpc_prefs_patch(arena_t *a, const Shop__User__V1__UpdatePreferencesRequest *req,
                                user_prefs_patch_t *p, err_t *err)
{
    static const text_mask_name_t names[] = {{"language", USER_F_LANGUAGE},
                                             {"currency", USER_F_CURRENCY},
                                             {"marketing_opt_in", USER_F_MARKETING}};
    *p = (user_prefs_patch_t){0};
    p->mask = text_mask_bits(req->update_mask, req->n_update_mask, names, 3, err);
    if ((p->mask & USER_F_LANGUAGE) && !(p->prefs.language = user_rpc_language(a, req->language)))
        err_field_add(err, "language", "must be a bcp 47 language tag such as en or en-US");
    if ((p->mask & USER_F_CURRENCY) && strcmp(req->currency, USER_CURRENCY) != 0)
        err_field_add(err, "currency", "must be USD");
    p->prefs.currency = USER_CURRENCY;
    p->prefs.marketing_opt_in = req->marketing_opt_in;
    return err->code;
}

USER_RPC(update_preferences, UpdatePreferences, UPDATE_PREFERENCES)
{
    const char *id;
    user_prefs_patch_t patch;
    user_prefs_t prefs;
    if (user_rpc_authn(call, err) != 0 || user_rpc_prefs_patch(a, req, &patch, err) != 0 ||
        user_rpc_open(call, req->user_id, &id, err) != 0 ||
        user_repo_update_prefs(user_rpc_pool(call), a, id, &patch, &prefs, err) != 0)
        return err->code;
    LOG_INFO("preferences updated", LOG_STR("user_id", id), LOG_INT("fields", patch.mask));
    resp->preferences = user_rpc_prefs(a, &prefs);
    return 0;
}

/* ---- wallet ---- */

USER_RPC(get_wallet, GetWallet, GET_WALLET)
{
    const char *id = NULL;
    int64_t before = 0;
    user_wallet_t w;
    /* The wallet first: a token is checked against the wallet it was issued for. */
    if (user_rpc_authn(call, err) == 0 && user_rpc_owner(call, req->user_id, &id, err) == 0) {
        if (req->limit < 0 || req->limit > USER_LIMIT_MAX)
            err_field_add(err, "limit", "must be 1..100, or 0 for 20");
        if (req->page_token[0])
            before = user_rpc_parse_token(call, id, req->page_token, err);
    }
    int limit = req->limit ? req->limit : USER_LIMIT_DEFAULT;
    /* One more entry than asked tells whether there is a next page. */
    if (err->code != 0 || rpc_call_check_deadline(call, err) != 0 ||
        user_repo_wallet(user_rpc_pool(call), a, id, limit + 1, before, &w, err) != 0)
        return err->code;
    resp->balance_cents = w.balance_cents;
    resp->currency = (char *)w.currency;
    bool more;
    resp->n_entries = rpc_page_take(w.n_entries, limit, &more);
    resp->entries = (Shop__User__V1__LedgerEntry **)rpc_msg_array(
        a, w.entries, resp->n_entries, sizeof(*w.entries), user_rpc_entry);
    if (more && !(resp->next_page_token = user_rpc_token(call, id, w.entries[limit - 1].seq)))
        return err_set(err, ERR_INTERNAL,
                       "wallet of %s: seq %" PRId64 " outside page tokens' bounds", id,
                       w.entries[limit - 1].seq);
    return 0;
}

static int user_rpc_check_deposit(const Shop__User__V1__DepositRequest *req, err_t *err)
{
    if (req->amount_cents < 1 || req->amount_cents > USER_DEPOSIT_MAX)
        err_field_add(err, "amount_cents", "must be 1..100000000");
    if (req->currency[0] && strcmp(req->currency, USER_CURRENCY) != 0)
        err_field_add(err, "currency", "must be USD");
    rpc_idempotency_key_check(req->idempotency_key, err);
    return err->code;
}

/* A reused key is ALREADY_EXISTS with the field named. Returns err->code. */
static int user_rpc_key_reused(err_t *err)
{
    return rpc_conflict_field(err, true, "idempotency key already used for another deposit",
                              "idempotency_key",
                              "was already used with another amount or currency");
}

USER_RPC(deposit, Deposit, DEPOSIT)
{
    const char *id;
    user_deposit_t d;
    if (user_rpc_authn(call, err) != 0 || user_rpc_check_deposit(req, err) != 0 ||
        user_rpc_open(call, req->user_id, &id, err) != 0 ||
        user_repo_deposit(user_rpc_pool(call), a, id, req->amount_cents, USER_CURRENCY,
                          req->idempotency_key, &d, err) != 0)
        return user_rpc_key_reused(err);
    LOG_INFO("deposit", LOG_STR("user_id", id), LOG_INT("amount_cents", req->amount_cents),
             LOG_BOOL("replayed", d.replayed), LOG_STR("ledger_entry_id", d.entry.id));
    resp->balance_cents = d.balance_cents;
    resp->currency = (char *)d.currency;
    resp->entry = user_rpc_entry(a, &d.entry);
    resp->replayed = d.replayed;
    return 0;
}

static user_service_t user_rpc_impl = SHOP__USER__V1__USER_SERVICE__INIT(user_rpc_);

ProtobufCService *const user_rpc_service = &user_rpc_impl.base;
